"""Where a run's wall-clock time goes: rollout, update and evaluation, per ``--interval`` steps, for ClippedPPO and SB3's PPO
with the same hyperparameter block (issue 25: what bounds the time-to-return ratio at the same settings).

Each measurement is a fresh process with torch's default threads, as ``rl_zoo3.train`` runs (ClippedPPO applies its
own thread rule inside ``learn``, :mod:`sb3_clippedppo.threads`): the block's environments (``VecNormalize`` when it asks
for it), one warm-up rollout and update, then ``learn(interval)`` with the protocol's evaluation inside it (SB3's
``EvalCallback``: 10 deterministic episodes on a separate environment with the training statistics, once per
``interval`` steps, as the Zoo's ``--eval-freq``). The seconds are split by wrapping ``collect_rollouts`` (minus the
evaluation, which runs in its callback) and ``train``; what is left (logging, schedules) is ``other``. Inside the rollout
and the evaluation, the environments' own ``step`` calls are timed too (the same work for both algorithms: the floor of
those parts). The two algorithms alternate, ``--reps`` pairs; the summary is the median of each part and the ratio
SB3 PPO / ClippedPPO.

Two more ClippedPPO measurements alternate with them (:func:`measure_overlap`): the same steps with each update after
its rollout, as ``learn`` runs them, and with each update in a forked process beside the next rollout and the
evaluation: the most that issue 25's optional lever, overlapping the next rollout with the update, could give.

Example (the shipped HalfCheetah-v4 entry)::

    python -m benchmarks.time_split --env HalfCheetah-v4 --conf hyperparams/clippedppo.yml --reps 3

A quick reading of the result: for the same steps to a threshold, the time-to-return ratio at equal settings is the ratio
of the totals; the environment's own stepping (rollout and evaluation) is the same work for both, so SB3 PPO's total over
ClippedPPO's environment steps (``ratio_bound``) is the most any implementation could reach on these settings while it
steps the environments and learns one after the other.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.common import SHIPPED_YML, machine_info, zoo_hyperparams, zoo_n_envs

ALGORITHMS = ("clippedppo", "ppo")
PARTS = ("rollout", "update", "evaluation", "other", "total")
# Inside the rollout and the evaluation: the environments' own steps (``VecEnv.step``: the simulator, SB3's wrappers and
# ``VecNormalize``), the same work for both algorithms
ENVIRONMENT_PARTS = ("rollout_env_steps", "evaluation_env_steps")
# ClippedPPO's steps with each update after its rollout (as learn) or beside the next one (measure_overlap)
OVERLAP_MODES = ("sequential", "overlapped")


def build(algo: str, env_id: str, conf: Path, seed: int) -> tuple[Any, Any, int]:
    """The block's model (after a warm-up rollout and update), its evaluation environment and ``n_envs``."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_clippedppo import ClippedPPO

    hyperparams, normalize = zoo_hyperparams(env_id, conf)
    hyperparams.pop("n_timesteps", None)
    n_envs = zoo_n_envs(env_id, conf)
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    eval_env = make_vec_env(env_id, n_envs=1, seed=seed + 1000)
    if normalize:
        env = VecNormalize(env, gamma=hyperparams.get("gamma", 0.99))
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
    model = (ClippedPPO if algo == "clippedppo" else PPO)("MlpPolicy", env, seed=seed, device="cpu", **hyperparams)
    model.learn(model.n_steps * n_envs)  # warm-up: one rollout and one update
    return model, eval_env, n_envs


def protocol_evaluation(eval_env: Any, n_envs: int, interval: int, eval_episodes: int) -> Any:
    """The protocol's evaluation: SB3's ``EvalCallback``, ``eval_episodes`` deterministic episodes per ``interval`` steps."""
    from stable_baselines3.common.callbacks import EvalCallback

    return EvalCallback(eval_env, n_eval_episodes=eval_episodes, eval_freq=max(interval // n_envs, 1), verbose=0)


def measure(algo: str, env_id: str, conf: Path, interval: int, eval_episodes: int, seed: int) -> dict[str, float]:
    """One measurement in this process: seconds of each part of ``learn(interval)`` (see the module's docstring)."""
    model, eval_env, n_envs = build(algo, env_id, conf, seed)
    env: Any = model.get_env()
    seconds = dict.fromkeys(PARTS + ENVIRONMENT_PARTS, 0.0)

    def timed(name: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[name] += time.perf_counter() - start

        return wrapper

    evaluation = protocol_evaluation(eval_env, n_envs, interval, eval_episodes)
    evaluation._on_step = timed("evaluation", evaluation._on_step)
    env.step = timed("rollout_env_steps", env.step)
    eval_env.step = timed("evaluation_env_steps", eval_env.step)
    model.collect_rollouts = timed("rollout", model.collect_rollouts)
    model.train = timed("update", model.train)
    start = time.perf_counter()
    model.learn(interval, callback=evaluation, reset_num_timesteps=False)
    seconds["total"] = time.perf_counter() - start
    seconds["rollout"] -= seconds["evaluation"]  # the evaluation runs inside the rollout, in the callback
    seconds["other"] = seconds["total"] - seconds["rollout"] - seconds["update"] - seconds["evaluation"]
    return seconds


def _update_copies(connection: Any, env_id: str, conf: Path, seed: int) -> None:
    """The forked process of :func:`measure_overlap`: a ClippedPPO copy of its own, one update per message."""
    import threadpoolctl
    import torch as th

    th.set_num_threads(1)
    model, _, _ = build("clippedppo", env_id, conf, seed)
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        connection.send(True)
        while connection.recv():
            model.train()
            connection.send(True)


def measure_overlap(env_id: str, conf: Path, interval: int, eval_episodes: int, seed: int,
                    overlapped: bool) -> dict[str, float]:
    """
    Seconds of ``interval`` steps of ClippedPPO with one evaluation, either as ``learn`` runs them (each rollout, then
    its update, with ``learn``'s thread counts) or with each update in a forked process (one torch and one BLAS thread)
    while this process (one of each) collects the next rollout and runs the evaluation: what overlapping the next
    rollout with the update, issue 25's optional lever, could give at most. A bound, not the lever: the forked process
    updates a copy of the model on that copy's own rollout, so no rollout or parameter is sent and no policy is stale.

    :return: ``total`` seconds, and ``waiting``: the part of it this process waited for an update to finish.
    """
    import multiprocessing

    import threadpoolctl
    import torch as th

    from sb3_clippedppo.threads import learning_threads

    model, eval_env, n_envs = build("clippedppo", env_id, conf, seed)
    evaluation = protocol_evaluation(eval_env, n_envs, interval, eval_episodes)
    _, callback = model._setup_learn(interval, callback=evaluation, reset_num_timesteps=False)
    callback.on_training_start(locals(), globals())
    rollouts = -(-interval // (model.n_steps * n_envs))  # as learn(interval): until at least interval steps
    waiting = 0.0
    if not overlapped:
        with learning_threads(model.uses_fast_path, model.batch_size):
            start = time.perf_counter()
            for _ in range(rollouts):
                model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)
                model.train()
            return {"total": time.perf_counter() - start, "waiting": waiting}
    context = multiprocessing.get_context("fork")
    connection, child_end = context.Pipe()
    updater = context.Process(target=_update_copies, args=(child_end, env_id, conf, seed + 1), daemon=True)
    updater.start()
    child_end.close()  # the child's end lives in the child only: if the child dies, recv raises EOFError
    torch_threads = th.get_num_threads()
    try:
        connection.recv()  # the copy is built
        th.set_num_threads(1)
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            start = time.perf_counter()
            for _ in range(rollouts):
                connection.send(True)
                model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)
                wait_start = time.perf_counter()
                connection.recv()
                waiting += time.perf_counter() - wait_start
            total = time.perf_counter() - start
        connection.send(False)
    finally:
        th.set_num_threads(torch_threads)
        updater.join(timeout=60)
        if updater.is_alive():
            updater.kill()
    return {"total": total, "waiting": waiting}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="HalfCheetah-v4", help="the hyperparameter block and environment")
    parser.add_argument("--conf", type=Path, default=SHIPPED_YML, help="the hyperparameter file (both algorithms)")
    parser.add_argument("--interval", type=int, default=20_000, help="steps measured; one evaluation among them")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3, help="alternating pairs of measurements")
    parser.add_argument("--seed", type=int, default=0)
    common.add_out_arguments(parser)
    parser.add_argument("--child", choices=ALGORITHMS + OVERLAP_MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    common.check_out(parser, args)
    for name in ("interval", "eval_episodes", "reps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.child in ALGORITHMS:
        print(json.dumps(measure(args.child, args.env, args.conf, args.interval, args.eval_episodes, args.seed)))
        return {}
    if args.child in OVERLAP_MODES:
        overlapped = args.child == "overlapped"
        print(json.dumps(measure_overlap(args.env, args.conf, args.interval, args.eval_episodes, args.seed, overlapped)))
        return {}

    runs: dict[str, list[dict[str, float]]] = {variant: [] for variant in ALGORITHMS + OVERLAP_MODES}
    for rep in range(args.reps):
        for algo in ALGORITHMS + OVERLAP_MODES:
            command = [sys.executable, "-m", "benchmarks.time_split", "--child", algo, "--env", args.env, "--conf",
                       str(args.conf), "--interval", str(args.interval), "--eval-episodes", str(args.eval_episodes),
                       "--seed", str(args.seed + rep)]  # fmt: skip
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
            runs[algo].append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(algo, {part: round(value, 2) for part, value in runs[algo][-1].items()}, flush=True)
    parts = PARTS + ENVIRONMENT_PARTS
    medians = {algo: {part: statistics.median(run[part] for run in runs[algo]) for part in parts} for algo in ALGORITHMS}
    ratios = {part: medians["ppo"][part] / medians["clippedppo"][part] for part in parts if medians["clippedppo"][part] > 0}
    overlap = {mode: statistics.median(run["total"] for run in runs[mode]) for mode in OVERLAP_MODES}
    gain, ratio_overlapped = overlap["sequential"] / overlap["overlapped"], medians["ppo"]["total"] / overlap["overlapped"]
    environment = medians["clippedppo"]["rollout_env_steps"] + medians["clippedppo"]["evaluation_env_steps"]
    results = {
        "command": "python -m benchmarks.time_split " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "setting": {
            "env": args.env,
            "conf": str(args.conf),
            "interval": args.interval,
            "eval_episodes": args.eval_episodes,
            "seeds": [args.seed + rep for rep in range(args.reps)],
        },
        "seconds": {algo: runs[algo] for algo in ALGORITHMS},
        "median_seconds": medians,
        "ratio_ppo_over_clippedppo": ratios,
        "ratio_bound": medians["ppo"]["total"] / environment,
        "overlap": {
            "seconds": {mode: runs[mode] for mode in OVERLAP_MODES},
            "median_total_seconds": overlap,
            "gain": gain,  # the median of the loop in turn over the median beside
            "ratio_ppo_over_overlapped": ratio_overlapped,
        },
    }
    print("| part | ClippedPPO s | SB3 PPO s | SB3 PPO / ClippedPPO |\n|---|---|---|---|")
    for part in parts:
        ratio = f"{ratios[part]:.2f}x" if part in ratios else "-"
        print(f"| {part} | {medians['clippedppo'][part]:.2f} | {medians['ppo'][part]:.2f} | {ratio} |")
    print(f"SB3 PPO's total / ClippedPPO's environment steps (the bound at these settings): {results['ratio_bound']:.2f}x")
    print(f"ClippedPPO's total with each update after its rollout {overlap['sequential']:.2f} s, beside the next rollout "
          f"(the overlap's bound) {overlap['overlapped']:.2f} s: {gain:.2f}x; SB3 PPO's total over the latter "
          f"{ratio_overlapped:.2f}x")
    common.write_results(args.out, results)
    return results


if __name__ == "__main__":
    main()
