"""Profile one ``learn`` call of ClippedPPO (or SB3's PPO) on HalfCheetah-v4 with cProfile; print the top functions.

Example (SB3's default settings, 5 rollouts of 2048 steps after a warm-up rollout)::

    python -m benchmarks.profile_learn --algo clippedppo --setting sb3-defaults --top 15

To profile an older version of the package, put its checkout first on ``PYTHONPATH``; the output names the file the
package was imported from.
"""

import argparse
import cProfile
import io
import pstats
import time
from pathlib import Path

import torch as th

from benchmarks.common import git_commit, zoo_hyperparams
from benchmarks.throughput import SETTINGS


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algo", choices=["clippedppo", "ppo"], default="clippedppo")
    parser.add_argument("--setting", choices=list(SETTINGS), default="sb3-defaults")
    parser.add_argument("--rollouts", type=int, default=5, help="rollouts (and updates) profiled after one warm-up")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    th.set_num_threads(1)

    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    import sb3_clippedppo
    from sb3_clippedppo import ClippedPPO

    block, _ = SETTINGS[args.setting]
    hyperparams, normalize = zoo_hyperparams(block) if block else ({}, False)
    env = make_vec_env("HalfCheetah-v4", n_envs=1, seed=0)
    if normalize:
        env = VecNormalize(env)
    model = (ClippedPPO if args.algo == "clippedppo" else PPO)("MlpPolicy", env, seed=0, device="cpu", **hyperparams)
    steps = model.n_steps * model.n_envs
    model.learn(steps)  # warm-up
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    model.learn(args.rollouts * steps, reset_num_timesteps=False)
    profiler.disable()
    wall = time.perf_counter() - start
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(args.top)
    header = (
        f"{args.algo}, {args.setting}: {args.rollouts * steps} steps in {wall:.2f} s under cProfile "
        f"({args.rollouts * steps / wall:.0f} steps/s); sb3_clippedppo from {sb3_clippedppo.__file__}; "
        f"commit {git_commit(Path(sb3_clippedppo.__file__).resolve().parents[1])}"
    )
    report = header + "\n" + "\n".join(line for line in out.getvalue().splitlines() if line.strip())
    print(report)
    return report


if __name__ == "__main__":
    main()
