"""SB3's identity test (``tests/test_identity.py::test_discrete``) over many seeds, for ClippedPPO and SB3's PPO.

SB3's test trains ``MlpPolicy`` on ``IdentityEnvMultiDiscrete(4)`` (or ``IdentityEnv``, ``IdentityEnvMultiBinary``) with
``gamma=0.4`` and SB3's other defaults for 2,500 steps (two rollouts of 2,048), then requires a mean reward of at least 90
over 20 deterministic episodes, with one seed (3). Run over many seeds, it tells whether one algorithm's miss at one seed
is seed luck or a difference in the algorithm.

Example::

    python -m benchmarks.identity --env multidiscrete --seeds 0 1 2 3 4 5 6 7 8 9

prints the mean reward per seed for both algorithms, alternating, and how many seeds pass the threshold.
"""

import argparse
import statistics

import torch as th

ENVS = ("discrete", "multidiscrete", "multibinary")
THRESHOLD = 90.0


def identity_reward(algo: str, env_name: str, seed: int, timesteps: int = 2500) -> float:
    """Train as SB3's test does and return the mean reward of 20 deterministic episodes (100 at most)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.envs import IdentityEnv, IdentityEnvMultiBinary, IdentityEnvMultiDiscrete
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sb3_clippedppo import ClippedPPO

    envs = {"discrete": IdentityEnv, "multidiscrete": IdentityEnvMultiDiscrete, "multibinary": IdentityEnvMultiBinary}
    make = envs[env_name]
    env = DummyVecEnv([lambda: make(4)])
    model = (ClippedPPO if algo == "clippedppo" else PPO)("MlpPolicy", env, gamma=0.4, seed=seed).learn(timesteps)
    mean, _ = evaluate_policy(model, env, n_eval_episodes=20, warn=False)
    return float(mean)


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", choices=ENVS, default="multidiscrete")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    parser.add_argument("--timesteps", type=int, default=2500)
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    rewards: dict[str, list[float]] = {"clippedppo": [], "ppo": []}
    for seed in args.seeds:
        for algo in rewards:  # alternating
            rewards[algo].append(identity_reward(algo, args.env, seed, args.timesteps))
        print(f"seed {seed}: ClippedPPO {rewards['clippedppo'][-1]:.2f}, SB3 PPO {rewards['ppo'][-1]:.2f}", flush=True)
    for algo, values in rewards.items():
        passed = sum(value >= THRESHOLD for value in values)
        print(f"{algo}: median {statistics.median(values):.2f}, mean {statistics.mean(values):.2f}, "
              f"{passed}/{len(values)} seeds >= {THRESHOLD:.0f}")  # fmt: skip
    return rewards


if __name__ == "__main__":
    main()
