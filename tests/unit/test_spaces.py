"""Every observation space, action space and policy alias that SB3's PPO accepts: learn, predict, save and load (the
same predictions after loading). The identity tasks learned to SB3's thresholds and DM Control's Dict observations are
in ``tests/slow/test_spaces_learning.py``."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.envs import (
    FakeImageEnv,
    IdentityEnv,
    IdentityEnvBox,
    IdentityEnvMultiBinary,
    IdentityEnvMultiDiscrete,
    SimpleMultiObsEnv,
)

from sb3_clippedppo import ClippedPPO

DIM = 4


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
