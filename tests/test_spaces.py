"""Every observation space, action space and policy alias that SB3's PPO accepts: learn, predict, save and load (the
same predictions after loading), and the identity tasks learned to SB3's own thresholds (SB3's tests/test_identity.py:
mean return above 90 of 100 over 20 episodes)."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.envs import (
    FakeImageEnv,
    IdentityEnv,
    IdentityEnvBox,
    IdentityEnvMultiBinary,
    IdentityEnvMultiDiscrete,
    SimpleMultiObsEnv,
)
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_clippedppo import ClippedPPO

DIM = 4


@pytest.mark.parametrize(
    "make_env", [lambda: IdentityEnv(DIM), lambda: IdentityEnvMultiDiscrete(DIM), lambda: IdentityEnvMultiBinary(DIM)],
    ids=["discrete", "multidiscrete", "multibinary"],
)  # fmt: skip
def test_identity_tasks_with_discrete_spaces(make_env):
    """Observation and action spaces Discrete, MultiDiscrete, MultiBinary (SB3's settings: gamma 0.4, 3000 steps)."""
    th.set_num_threads(1)
    env = DummyVecEnv([make_env])
    model = ClippedPPO("MlpPolicy", env, gamma=0.4, seed=1).learn(3000)
    evaluate_policy(model, env, n_eval_episodes=20, reward_threshold=90, warn=False)  # raises below the threshold
    obs = env.envs[0].reset()[0]
    assert np.shape(model.predict(obs)[0]) == np.shape(obs)


def test_identity_task_with_box_spaces():
    """Box observations and actions (SB3's settings: 2x64 units, gamma 0.95, 3000 steps)."""
    th.set_num_threads(1)
    env = IdentityEnvBox(eps=0.5)
    model = ClippedPPO("MlpPolicy", env, policy_kwargs=dict(net_arch=[64, 64]), seed=0, gamma=0.95).learn(3000)
    evaluate_policy(model, env, n_eval_episodes=20, reward_threshold=90, warn=False)


class DiscreteObservationBoxActionEnv(gym.Env):
    """Discrete observations with Box actions: reward for an action close to the observed cell's centre."""

    def __init__(self):
        self.observation_space = spaces.Discrete(5)
        self.action_space = spaces.Box(-1, 1, (2,), np.float32)
        self.state, self.t = 0, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state, self.t = int(self.np_random.integers(5)), 0
        return self.state, {}

    def step(self, action):
        reward = -float(np.abs(np.asarray(action) - (self.state / 2.0 - 1.0)).sum())
        self.state, self.t = int(self.np_random.integers(5)), self.t + 1
        return self.state, reward, False, self.t >= 20, {}


SPACES = {
    # name: (policy, env factory, extra arguments)
    "box-box": ("MlpPolicy", lambda: IdentityEnvBox(eps=0.5), {}),
    "discrete-discrete": ("MlpPolicy", lambda: IdentityEnv(DIM), {}),
    "discrete-box": ("MlpPolicy", DiscreteObservationBoxActionEnv, {}),
    "multidiscrete": ("MlpPolicy", lambda: IdentityEnvMultiDiscrete(DIM), {}),
    "multibinary": ("MlpPolicy", lambda: IdentityEnvMultiBinary(DIM), {}),
    "image-discrete": ("CnnPolicy", lambda: FakeImageEnv(screen_height=40, screen_width=40, n_channels=1), {}),
    "image-box-separate-extractors": (
        "CnnPolicy",
        lambda: FakeImageEnv(screen_height=40, screen_width=40, n_channels=3, discrete=False),
        dict(policy_kwargs=dict(share_features_extractor=False, normalize_images=True)),
    ),
    "image-with-mlp": ("MlpPolicy", lambda: FakeImageEnv(screen_height=8, screen_width=8, n_channels=1), {}),
    "dict": ("MultiInputPolicy", lambda: SimpleMultiObsEnv(random_start=False), {}),
    "dict-kl-penalty": (
        "MultiInputPolicy",
        lambda: SimpleMultiObsEnv(random_start=False),
        dict(policy_objective="kl_penalty"),
    ),
    "discrete-batch-size-1": (
        "MlpPolicy",
        lambda: IdentityEnv(DIM),
        dict(batch_size=1, n_steps=16, normalize_advantage=False),
    ),
}


def observations_of(env, n=6):
    """A batch of n observations from the vectorized env's own spaces (through its wrappers, e.g. image transposition)."""
    first = env.reset()
    batch = [first] + [env.step(np.array([env.action_space.sample()]))[0] for _ in range(n - 1)]
    if isinstance(first, dict):
        return {key: np.concatenate([b[key] for b in batch]) for key in first}
    return np.concatenate(batch)


@pytest.mark.parametrize("name", list(SPACES))
def test_learn_predict_save_load(name, tmp_path):
    policy, make_env, kwargs = SPACES[name]
    th.set_num_threads(1)
    arguments = {"n_steps": 32, "batch_size": 16, "n_epochs": 2, "seed": 0, **kwargs}
    model = ClippedPPO(policy, make_env(), **arguments)
    before = model.policy.parameters_to_vector()
    model.learn(64)
    assert model.num_timesteps == 64 and not np.array_equal(before, model.policy.parameters_to_vector())

    obs = observations_of(model.get_env())
    actions, _ = model.predict(obs, deterministic=True)
    action_space = model.action_space
    assert actions.shape == (6, *action_space.shape)
    assert all(action_space.contains(np.asarray(a, dtype=action_space.dtype)) for a in actions)

    model.save(tmp_path / "model")
    loaded = ClippedPPO.load(tmp_path / "model", env=make_env())
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], actions)
    np.testing.assert_array_equal(loaded.policy.parameters_to_vector(), model.policy.parameters_to_vector())
    loaded.learn(32, reset_num_timesteps=False)  # and training goes on
    assert loaded.num_timesteps == 96


@pytest.mark.slow  # needs the dmc extra (dm-control through shimmy); 16 s
def test_dm_control_walker_walk_with_multi_input_policy(tmp_path):
    """DM Control's native Dict observations (orientations, a scalar height, velocity), no FlattenObservation."""
    shimmy = pytest.importorskip("shimmy")
    assert shimmy
    th.set_num_threads(1)
    env = gym.make("dm_control/walker-walk-v0")
    assert isinstance(env.observation_space, spaces.Dict) and env.observation_space["height"].shape == ()
    model = ClippedPPO("MultiInputPolicy", env, n_steps=512, batch_size=128, n_epochs=2, seed=0)
    model.learn(3000)
    assert model.num_timesteps == 3072 and len(model.ep_info_buffer) >= 3  # episodes of 1000 steps
    obs, _ = env.reset(seed=1)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action)
    model.save(tmp_path / "walker")
    np.testing.assert_array_equal(ClippedPPO.load(tmp_path / "walker").predict(obs, deterministic=True)[0], action)
