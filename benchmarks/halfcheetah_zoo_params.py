"""Train ClippedPPO (or SB3's PPO) on HalfCheetah-v4 with the RL Zoo's PPO hyperparameters, evaluating as it goes.

This is the core issue's acceptance run; it uses the library directly (no RL Zoo) with the same settings as the
Zoo's ``ppo.yml`` entry: ``VecNormalize``, 1 env, 512 steps, batch 64, 20 epochs, gamma 0.98, lambda 0.92, ...

Example (300k steps, seed 0)::

    python -m benchmarks.halfcheetah_zoo_params --algo clippedppo --seed 0 --timesteps 300000 \
        --out runs/halfcheetah_300k/clippedppo_seed0

Writes into ``--out`` (which must not exist yet, so no finished run is overwritten): ``evaluations.npz`` (the
format of SB3's ``EvalCallback``: timesteps, results, ep_lengths), ``progress.csv`` (SB3 logger),
``summary.json`` (command, machine, versions, final and best evaluation, wall-clock time) and the trained
model and ``VecNormalize`` statistics.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch as th

from benchmarks.common import machine_info, zoo_hyperparams


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algo", choices=["clippedppo", "ppo"], default="clippedppo")
    parser.add_argument("--env", default="HalfCheetah-v4")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timesteps", type=int, default=300_000)
    parser.add_argument("--eval-freq", type=int, default=10_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, required=True, help="output folder; must not exist")
    args = parser.parse_args(argv)

    if args.out.exists():
        parser.error(f"--out {args.out} exists; refusing to overwrite a previous run")
    th.set_num_threads(args.threads)

    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import EvalCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_clippedppo import ClippedPPO

    tmp_out = args.out.with_name(args.out.name + ".partial")
    if tmp_out.exists():
        parser.error(f"{tmp_out} exists (an interrupted run?); remove it first")
    tmp_out.mkdir(parents=True)
    hyperparams, normalize = zoo_hyperparams("HalfCheetah-v4")  # the RL Zoo's PPO block, from benchmarks/hyperparams.yml
    assert normalize
    env = VecNormalize(make_vec_env(args.env, n_envs=1, seed=args.seed))
    eval_env = VecNormalize(make_vec_env(args.env, n_envs=1, seed=args.seed + 1000), training=False, norm_reward=False)
    algo = ClippedPPO if args.algo == "clippedppo" else PPO
    model = algo("MlpPolicy", env, seed=args.seed, device="cpu", verbose=0, **hyperparams)
    model.set_logger(configure(str(tmp_out), ["csv", "stdout"]))
    eval_callback = EvalCallback(
        eval_env,
        n_eval_episodes=args.eval_episodes,
        eval_freq=args.eval_freq,
        log_path=str(tmp_out),
        deterministic=True,
        verbose=0,
    )
    start = time.perf_counter()
    model.learn(args.timesteps, callback=eval_callback)
    wall = time.perf_counter() - start
    model.save(tmp_out / "model.zip")
    env.save(str(tmp_out / "vecnormalize.pkl"))

    evaluations = np.load(tmp_out / "evaluations.npz")
    means = evaluations["results"].mean(axis=1)
    summary = {
        "command": "python -m benchmarks.halfcheetah_zoo_params " + " ".join(sys.argv[1:] if argv is None else argv),
        "algo": args.algo,
        "env": args.env,
        "seed": args.seed,
        "timesteps": args.timesteps,
        "hyperparameters": {k: (repr(v) if k == "policy_kwargs" else v) for k, v in hyperparams.items()},
        "eval": {"freq": args.eval_freq, "episodes": args.eval_episodes, "deterministic": True},
        "final_eval_mean": float(means[-1]),
        "final_eval_std": float(evaluations["results"][-1].std()),
        "best_eval_mean": float(means.max()),
        "wall_clock_s": wall,
        "steps_per_s": args.timesteps / wall,
        "machine": machine_info(),
    }
    (tmp_out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    tmp_out.rename(args.out)
    print(json.dumps({k: summary[k] for k in ("algo", "seed", "final_eval_mean", "best_eval_mean", "steps_per_s")}))
    return summary


if __name__ == "__main__":
    main()
