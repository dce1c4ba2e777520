"""Spaces, learned: SB3's identity tasks to SB3's own thresholds (SB3's tests/test_identity.py: mean return above 90 of
100 over 20 episodes), and DM Control's native Dict observations (needs the dmc extra)."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvBox, IdentityEnvMultiBinary, IdentityEnvMultiDiscrete
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_clippedppo import ClippedPPO

DIM = 4

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(
    "make_env", [lambda: IdentityEnv(DIM), lambda: IdentityEnvMultiDiscrete(DIM), lambda: IdentityEnvMultiBinary(DIM)],
    ids=["discrete", "multidiscrete", "multibinary"],
)  # fmt: skip
def test_identity_tasks_with_discrete_spaces(make_env):
    """Observation and action spaces Discrete, MultiDiscrete, MultiBinary (SB3's settings: gamma 0.4, 3000 steps)."""
    env = DummyVecEnv([make_env])
    model = ClippedPPO("MlpPolicy", env, gamma=0.4, seed=1).learn(3000)
    evaluate_policy(model, env, n_eval_episodes=20, reward_threshold=90, warn=False)  # raises below the threshold
    obs = env.envs[0].reset()[0]
    assert np.shape(model.predict(obs)[0]) == np.shape(obs)


def test_identity_task_with_box_spaces():
    """Box observations and actions (SB3's settings: 2x64 units, gamma 0.95, 3000 steps)."""
    env = IdentityEnvBox(eps=0.5)
    model = ClippedPPO("MlpPolicy", env, policy_kwargs=dict(net_arch=[64, 64]), seed=0, gamma=0.95).learn(3000)
    mean_return, _ = evaluate_policy(model, env, n_eval_episodes=20, reward_threshold=90, warn=False)
    assert mean_return >= 90


def test_dm_control_walker_walk_with_multi_input_policy(tmp_path):
    """DM Control's native Dict observations (orientations, a scalar height, velocity), no FlattenObservation."""
    import shimmy  # the dmc extra: an error, not a skip, where it is missing

    assert shimmy
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
