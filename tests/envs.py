"""Small deterministic environments for the tests."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from sb3_contrib.common.envs import InvalidActionEnvDiscrete, InvalidActionEnvMultiBinary, InvalidActionEnvMultiDiscrete


class CounterEnv(gym.Env):
    """
    Observation: the step count within the episode (shape (1,)); reward 1 every step (or ``reward_fn(t)``).
    The episode terminates after ``terminate_at`` steps if given; wrap it in a TimeLimit to truncate instead.
    """

    def __init__(self, terminate_at: int | None = None, reward_fn=None, discrete: bool = False):
        self.observation_space = spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.action_space = spaces.Discrete(2) if discrete else spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.terminate_at = terminate_at
        self.reward_fn = reward_fn
        self.t = 0
        self.total_steps = 0
        self.last_action = None

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], dtype=np.float32), {}

    def step(self, action):
        self.last_action = np.array(action)
        self.t += 1
        self.total_steps += 1
        reward = 1.0 if self.reward_fn is None else float(self.reward_fn(self.total_steps))
        terminated = self.terminate_at is not None and self.t >= self.terminate_at
        return np.array([float(self.t)], dtype=np.float32), reward, terminated, False, {}


def counter_env(terminate_at=None, time_limit=None, reward_fn=None, discrete=False):
    """A factory for DummyVecEnv."""

    def make():
        env = CounterEnv(terminate_at, reward_fn, discrete)
        return gym.wrappers.TimeLimit(env, time_limit) if time_limit else env

    return make


def masked_envs(n_invalid_discrete: int, n_invalid_multidiscrete: int, n_invalid_multibinary: int) -> list:
    """sb3-contrib's three masked test environments (``Discrete`` 20 actions, ``MultiDiscrete`` [4, 5], ``MultiBinary``
    4) with the given numbers of invalid actions, as ``pytest.param`` factories with ids ``discrete``,
    ``multidiscrete`` and ``multibinary``."""
    return [
        pytest.param(lambda: InvalidActionEnvDiscrete(dim=20, n_invalid_actions=n_invalid_discrete), id="discrete"),
        pytest.param(
            lambda: InvalidActionEnvMultiDiscrete(dims=[4, 5], n_invalid_actions=n_invalid_multidiscrete), id="multidiscrete"
        ),
        pytest.param(lambda: InvalidActionEnvMultiBinary(dims=4, n_invalid_actions=n_invalid_multibinary), id="multibinary"),
    ]
