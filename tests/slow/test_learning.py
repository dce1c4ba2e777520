"""Learning tests: ClippedPPO, each of its options and a custom SB3 policy learn small tasks.

Thresholds (mean deterministic return over 20 evaluation episodes on separately seeded environments); the budgets come
from learning curves of these runs (seed 0): where the run is past its threshold with a margin, not the RL Zoo's full
budgets, which the checks do not need.
- CartPole-v1 (RL Zoo PPO hyperparameters, 50k steps; their schedules span the run): >= 475 (the maximum is 500;
  measured 500 at 50k, as at 100k).
- Pendulum-v1 (RL Zoo PPO hyperparameters without gSDE, 100k steps): >= -400 (a random policy scores about -1200; a
  swing-up policy about -150 to -250; measured -215 at 100k, -243 at 60k, -269 at 200k).
- InvertedPendulum-v4 (SB3 defaults with n_steps=512, 20k steps): median over seeds 0-2 >= 950 (the maximum is 1000;
  measured 1000 from 15k with seed 0 on one CPU; on another (AMD EPYC, family 25 model 17) seed 0 is at 308 at 20k and
  1000 at 25k, seeds 1-4 at 1000 at 20k: one seed's run depends on the CPU's floating point, so the check takes 3).

Torch runs on one thread (the ``one_torch_thread`` fixture), as when the thresholds were measured. How long a run takes
is not checked here: timings belong in ``benchmarks/``.
"""

import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import LinearSchedule

from sb3_clippedppo import ClippedPPO
from tests.unit.test_custom_policies import CustomActorCriticPolicy

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def train_and_evaluate(env_id: str, n_envs: int, timesteps: int, seed: int = 0, **kwargs) -> float:
    model = ClippedPPO("MlpPolicy", make_vec_env(env_id, n_envs=n_envs, seed=seed), seed=seed, **kwargs)
    model.learn(timesteps)
    mean_return, _ = evaluate_policy(model, make_vec_env(env_id, n_envs=1, seed=seed + 100), n_eval_episodes=20)
    return float(mean_return)


# The RL Zoo's PPO settings for Pendulum-v1, without gSDE
PENDULUM = dict(n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10, learning_rate=1e-3, clip_range=0.2)
CARTPOLE = dict(n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                learning_rate=LinearSchedule(1e-3, 0.0, 1.0), clip_range=LinearSchedule(0.2, 0.0, 1.0))  # fmt: skip


@pytest.mark.parametrize(
    "env_id, n_envs, timesteps, hyperparams, threshold, seeds",
    [
        ("CartPole-v1", 8, 50_000, CARTPOLE, 475, (0,)),
        ("Pendulum-v1", 4, 100_000, PENDULUM, -400, (0,)),
        ("InvertedPendulum-v4", 1, 20_000, dict(n_steps=512), 950, (0, 1, 2)),
    ],
    ids=["cartpole", "pendulum", "inverted-pendulum"],
)
def test_learns(env_id, n_envs, timesteps, hyperparams, threshold, seeds):
    returns = [train_and_evaluate(env_id, n_envs=n_envs, timesteps=timesteps, seed=seed, **hyperparams) for seed in seeds]
    assert np.median(returns) >= threshold, returns


@pytest.mark.parametrize(
    "option, timesteps, threshold",
    [
        # Pendulum-v1, 4 envs, the RL Zoo's PPO settings (as above); a random policy scores about -1200. Measured (seed 0)
        # at 100k with seeds 0 and 1: vf_lr -213/-215, kl_penalty -207/-210, state-dependent std -212/-228 (-363/-266
        # at 80k). The KL-adaptive rate learns later and less steadily (it raises the rate while early stopping keeps
        # the KL below 2 * target): at 120k -433 with seed 0 but -1255 with seed 1, hence its 200k (-484/-403).
        (dict(learning_rate=5e-4, vf_learning_rate=2e-3), 100_000, -400),
        (dict(policy_objective="kl_penalty", kl_coef=1.0, kl_penalty_target=0.01), 100_000, -400),
        (dict(policy_kwargs=dict(state_dependent_std=True)), 100_000, -450),
        (dict(target_kl=0.02, kl_adaptive_lr=True), 200_000, -700),
    ],
    ids=["vf_learning_rate", "kl_penalty", "state_dependent_std", "kl_adaptive_lr"],
)
def test_each_option_learns_pendulum(option, timesteps, threshold):
    mean_return = train_and_evaluate("Pendulum-v1", n_envs=4, timesteps=timesteps, **{**PENDULUM, **option})
    assert mean_return >= threshold, mean_return


def test_sb3s_custom_policy_example_learns_cartpole():
    """SB3's documented custom policy (a subclass of SB3's ActorCriticPolicy), trained through autograd."""
    env = make_vec_env("CartPole-v1", n_envs=8, seed=0)
    model = ClippedPPO(CustomActorCriticPolicy, env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                       learning_rate=1e-3, seed=0)  # fmt: skip
    model.learn(30_000)
    # A random policy lasts about 22 steps; seeds 0-3 measured 178, 146, 127, 138 (mean of the last 100 episodes)
    assert np.mean([info["r"] for info in model.ep_info_buffer]) > 100
