"""Learning tests: ClippedPPO solves small tasks within a time budget (3 minutes each on 2 CPU cores).

Thresholds (mean deterministic return over 20 evaluation episodes on separately seeded environments):
- CartPole-v1 (RL Zoo PPO hyperparameters, 100k steps): >= 475 (the maximum is 500).
- Pendulum-v1 (RL Zoo PPO hyperparameters without gSDE, 200k steps): >= -400 (a random policy scores about
  -1200; a swing-up policy about -150 to -250).
- InvertedPendulum-v4 (SB3 defaults with n_steps=512, 40k steps): >= 950 (the maximum is 1000).
"""

import time

import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import LinearSchedule

from sb3_clippedppo import ClippedPPO

TIME_BUDGET_S = 180.0


def train_and_evaluate(env_id: str, n_envs: int, timesteps: int, seed: int = 0, **kwargs) -> tuple[float, float]:
    th.set_num_threads(1)
    start = time.perf_counter()
    model = ClippedPPO("MlpPolicy", make_vec_env(env_id, n_envs=n_envs, seed=seed), seed=seed, **kwargs)
    model.learn(timesteps)
    elapsed = time.perf_counter() - start
    mean_return, _ = evaluate_policy(model, make_vec_env(env_id, n_envs=1, seed=seed + 100), n_eval_episodes=20)
    return float(mean_return), elapsed


# The RL Zoo's PPO settings for Pendulum-v1, without gSDE (also used by test_options.py)
PENDULUM = dict(n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10, learning_rate=1e-3, clip_range=0.2)
CARTPOLE = dict(n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                learning_rate=LinearSchedule(1e-3, 0.0, 1.0), clip_range=LinearSchedule(0.2, 0.0, 1.0))  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "env_id, n_envs, timesteps, hyperparams, threshold",
    [
        ("CartPole-v1", 8, 100_000, CARTPOLE, 475),
        ("Pendulum-v1", 4, 200_000, PENDULUM, -400),
        ("InvertedPendulum-v4", 1, 40_000, dict(n_steps=512), 950),
    ],
    ids=["cartpole", "pendulum", "inverted-pendulum"],
)
def test_learns_within_the_time_budget(env_id, n_envs, timesteps, hyperparams, threshold):
    mean_return, elapsed = train_and_evaluate(env_id, n_envs=n_envs, timesteps=timesteps, **hyperparams)
    assert mean_return >= threshold, mean_return
    assert elapsed < TIME_BUDGET_S, elapsed
