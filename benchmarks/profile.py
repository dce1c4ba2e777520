"""Where ClippedPPO's time goes, a measurement per subcommand, every model built from a Zoo entry (:mod:`benchmarks.builder`).

- ``split``: seconds of rollout, update and evaluation (and the environments' own steps inside them) per ``--interval``
  steps, for ClippedPPO and SB3's PPO with the same entry (issue 25: what bounds the time-to-return ratio at equal
  settings). Each measurement is a fresh process with torch's default threads, as ``rl_zoo3.train`` runs: the entry's
  environments, one warm-up rollout and update, then ``learn(interval)`` with the protocol's evaluation inside it (SB3's
  ``EvalCallback``: deterministic episodes on the entry's evaluation environment with the training statistics, once per
  ``interval`` steps, as the Zoo's ``--eval-freq``). The seconds are split by wrapping ``collect_rollouts`` (minus the
  evaluation, which runs in its callback) and ``train``; what is left (logging, schedules) is ``other``. The two
  algorithms alternate, ``--reps`` pairs; the summary is the median of each part and the ratio SB3 PPO / ClippedPPO.
  SB3 PPO's total over ClippedPPO's environment steps (``ratio_bound``) is the most any implementation could reach at
  these settings while it steps the environments and learns one after the other.
- ``flops``: the update's achieved GFLOP/s in its matrix products against a one-thread float32 GEMM peak on the same
  core. After a warm-up ``learn`` of one rollout, ``train()`` is timed ``--reps`` times under ``learn``'s thread rule
  (:func:`sb3_clippedppo.threads.learning_threads`). Operations are counted for the matrix products only (per minibatch
  of ``B`` rows and ``Linear(in, out)`` of actor and critic: ``2 B in out`` forward, as much for the weight gradient and
  for the input gradient, except for the layers fed by the observations), so the figure is a lower bound.
- ``latency``: one action, the exported ONNX policy in onnxruntime against ``model.predict`` (through ``VecNormalize``,
  as the Zoo's ``enjoy`` and the evaluations during training) and SB3's torch ``BasePolicy.predict``, one call per raw
  observation on the same 1,000 HalfCheetah-v4 observations, alternating; at torch's and onnxruntime's default threads
  and at one thread.
- ``cprofile``: cProfile of one ``learn`` call (one thread), top functions by own time.
- ``masking``: steps per second of ClippedPPO against sb3-contrib's ``MaskablePPO`` on sb3-contrib's
  ``InvalidActionEnvDiscrete`` (``dim=80``, 60 invalid actions per state) with MLP policies and each one's defaults
  (MaskablePPO's are SB3 PPO's), torch's default threads (issue 38): each run a fresh process timing ``learn(--steps)``,
  ``--reps`` alternating pairs, medians and the per-pair ratio.

Examples (the committed measurements, shipped HalfCheetah-v4 entry)::

    python -m benchmarks.profile split --reps 7 --out benchmarks/results/profile/time_split.json
    python -m benchmarks.profile flops --reps 5 --out benchmarks/results/profile/update_flops.json
    python -m benchmarks.profile latency --reps 5 --threads default 1 --out benchmarks/results/export/latency.json
    python -m benchmarks.profile masking --reps 5 --out benchmarks/results/profile/masking.json

Each keeps an existing ``--out`` unless given ``--overwrite`` (checked before measuring).
"""

import argparse
import cProfile
import io
import json
import math
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import builder

PARTS = ("rollout", "update", "evaluation", "other", "total")
# Inside the rollout and the evaluation: the environments' own steps (``VecEnv.step``: the simulator, SB3's wrappers and
# ``VecNormalize``), the same work for both algorithms
ENVIRONMENT_PARTS = ("rollout_env_steps", "evaluation_env_steps")
LATENCY_WAYS = ("onnxruntime", "predict", "predict_torch")


def warm_model(algo: str, entry: builder.Entry, seed: int) -> Any:
    """The entry's model after one warm-up rollout and update."""
    model = builder.build(algo, entry, seed=seed)
    model.learn(model.n_steps * model.n_envs)
    return model


def measure_split(algo: str, entry: builder.Entry, interval: int, eval_episodes: int, seed: int) -> dict[str, float]:
    """One ``split`` measurement in this process: the seconds of each part of ``learn(interval)`` (module docstring)."""
    from stable_baselines3.common.callbacks import EvalCallback

    model = warm_model(algo, entry, seed)
    eval_env = builder.make_env(entry, seed, eval_env=True)
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

    evaluation = EvalCallback(eval_env, n_eval_episodes=eval_episodes, eval_freq=max(interval // model.n_envs, 1), verbose=0)
    evaluation._on_step = timed("evaluation", evaluation._on_step)  # type: ignore[method-assign]
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


def split(args: argparse.Namespace) -> dict[str, Any]:
    """``split``: the algorithms alternate in fresh processes; medians and ratios."""
    entry = builder.read_entry(args.env, args.conf)
    if args.child:
        print(json.dumps(measure_split(args.child, entry, args.interval, args.eval_episodes, args.seed)))
        return {}
    runs: dict[str, list[dict[str, float]]] = {algo: [] for algo in builder.ALGORITHMS}
    for rep in range(args.reps):
        for algo in builder.ALGORITHMS:
            command = [sys.executable, "-m", "benchmarks.profile", "split", "--child", algo, "--env", args.env, "--conf",
                       str(args.conf), "--interval", str(args.interval), "--eval-episodes", str(args.eval_episodes),
                       "--seed", str(args.seed + rep)]  # fmt: skip
            result = subprocess.run(command, cwd=builder.ROOT, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
            runs[algo].append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(algo, {part: round(value, 2) for part, value in runs[algo][-1].items()}, flush=True)
    parts = PARTS + ENVIRONMENT_PARTS
    medians = {algo: {part: statistics.median(run[part] for run in runs[algo]) for part in parts} for algo in runs}
    ratios = {part: medians["ppo"][part] / medians["clippedppo"][part] for part in parts if medians["clippedppo"][part] > 0}
    environment = medians["clippedppo"]["rollout_env_steps"] + medians["clippedppo"]["evaluation_env_steps"]
    results = {
        "setting": {"env": args.env, "conf": str(args.conf), "interval": args.interval, "eval_episodes": args.eval_episodes,
                    "seeds": [args.seed + rep for rep in range(args.reps)]},  # fmt: skip
        "seconds": runs,
        "median_seconds": medians,
        "ratio_ppo_over_clippedppo": ratios,
        "ratio_bound": medians["ppo"]["total"] / environment,
    }
    print("| part | ClippedPPO s | SB3 PPO s | SB3 PPO / ClippedPPO |\n|---|---|---|---|")
    for part in parts:
        ratio = f"{ratios[part]:.2f}x" if part in ratios else "-"
        print(f"| {part} | {medians['clippedppo'][part]:.2f} | {medians['ppo'][part]:.2f} | {ratio} |")
    print(f"SB3 PPO's total / ClippedPPO's environment steps (the bound at these settings): {results['ratio_bound']:.2f}x")
    return results


def linear_shapes(model: Any) -> list[tuple[int, int]]:
    """``(in_features, out_features)`` of every ``Linear`` layer of the actor and the critic."""
    import torch as th

    policy = model.policy
    modules = [policy.mlp_extractor.policy_net, policy.action_net, policy.mlp_extractor.value_net, policy.value_net]
    return [(m.in_features, m.out_features) for module in modules for m in module.modules() if isinstance(m, th.nn.Linear)]


def update_flops(shapes: list[tuple[int, int]], first_inputs: int, rows: int) -> float:
    """Matrix-product operations of one minibatch of ``rows``: forward, weight gradient, and input gradient except for
    the layers fed by the observations (``first_inputs`` features)."""
    return float(sum((4 if inputs == first_inputs else 6) * rows * inputs * outputs for inputs, outputs in shapes))


def gemm_gflops(m: int, k: int, n: int, seconds: float = 0.5) -> float:
    """GFLOP/s of ``(m, k) @ (k, n)`` float32 products in NumPy on one BLAS thread, best of 5 batches."""
    import threadpoolctl

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    out = np.empty((m, n), dtype=np.float32)

    def elapsed(number: int) -> float:
        start = time.perf_counter()
        for _ in range(number):
            np.matmul(a, b, out=out)
        return time.perf_counter() - start

    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        np.matmul(a, b, out=out)
        number = max(1, int(seconds / max(1e-7, elapsed(3) / 3) / 5))
        best = min(elapsed(number) / number for _ in range(5))
    return 2.0 * m * k * n / best / 1e9


def flops(args: argparse.Namespace) -> dict[str, Any]:
    """``flops``: the update's GFLOP/s against the GEMM peaks."""
    from sb3_clippedppo.threads import learning_threads

    model = warm_model("clippedppo", builder.read_entry(args.env, args.conf), seed=args.seed)
    transitions = model.n_steps * model.n_envs
    shapes = linear_shapes(model)
    first_inputs = int(np.prod(model.observation_space.shape))
    full, last = divmod(transitions, model.batch_size)
    epoch_flops = full * update_flops(shapes, first_inputs, model.batch_size) + update_flops(shapes, first_inputs, last)
    seconds, gflops = [], []
    for _ in range(args.reps):
        epochs_before = model._n_updates
        with learning_threads(model.uses_fast_path, model.batch_size):
            start = time.perf_counter()
            model.train()
            elapsed = time.perf_counter() - start
        seconds.append(elapsed)
        gflops.append((model._n_updates - epochs_before) * epoch_flops / elapsed / 1e9)
    peaks = {"1024x1024x1024": gemm_gflops(1024, 1024, 1024)}
    for inputs, outputs in sorted(set(shapes)):
        peaks[f"{model.batch_size}x{inputs}x{outputs}"] = gemm_gflops(model.batch_size, inputs, outputs)
    achieved = statistics.median(gflops)
    results = {
        "setting": {"env": args.env, "conf": str(args.conf), "batch_size": model.batch_size, "n_epochs": model.n_epochs,
                    "transitions": transitions, "minibatches_per_epoch": math.ceil(transitions / model.batch_size),
                    "linear_layers": shapes, "fast_path": model.uses_fast_path},  # fmt: skip
        "update_seconds": seconds,
        "update_gflops": gflops,
        "median_update_gflops": achieved,
        "gemm_peak_gflops_one_thread": peaks,
        "fraction_of_large_gemm_peak": achieved / peaks["1024x1024x1024"],
    }
    print(f"update: {statistics.median(seconds):.3f} s, {achieved:.2f} GFLOP/s (matrix products only); one-thread GEMM "
          + ", ".join(f"{shape}: {value:.1f}" for shape, value in peaks.items())
          + f" GFLOP/s; {results['fraction_of_large_gemm_peak']:.0%} of the large-matrix peak")  # fmt: skip
    return results


def observations(env_id: str, n: int, seed: int) -> np.ndarray:
    """``n`` raw observations from episodes with random actions."""
    import gymnasium as gym

    env = gym.make(env_id)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    collected = []
    for _ in range(n):
        collected.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    return np.stack(collected)


def microseconds_per_call(act: Any, batch: np.ndarray) -> float:
    start = time.perf_counter()
    for obs in batch:
        act(obs)
    return (time.perf_counter() - start) / len(batch) * 1e6


def measure_latency(entry: builder.Entry, threads: str, reps: int, seed: int, folder: Path) -> dict[str, Any]:
    """``latency`` at one thread setting: every way's microseconds per action, repetitions and medians."""
    import onnxruntime as ort
    import torch as th
    from stable_baselines3.common.policies import BasePolicy
    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_clippedppo.export import export_onnx

    default_threads = th.get_num_threads()
    options = ort.SessionOptions()
    if threads == "1":
        th.set_num_threads(1)
        options.intra_op_num_threads = options.inter_op_num_threads = 1
    try:
        model = warm_model("clippedppo", entry, seed)  # latency does not depend on the weights
        env = model.get_env()
        vec_normalize = env if isinstance(env, VecNormalize) else None
        path = export_onnx(model, folder / f"policy-{threads}.onnx", vec_normalize=vec_normalize)
        session = ort.InferenceSession(str(path), options)
        batch = observations(entry.env_id, 1000, seed)

        def normalized(obs: np.ndarray) -> np.ndarray:
            return vec_normalize.normalize_obs(obs) if vec_normalize is not None else obs

        ways = {
            "onnxruntime": lambda obs: session.run(None, {"observation": obs[None]})[0][0],
            "predict": lambda obs: model.predict(normalized(obs), deterministic=True)[0],
            "predict_torch": lambda obs: BasePolicy.predict(model.policy, normalized(obs), deterministic=True)[0],
        }
        for act in ways.values():  # warm-up
            microseconds_per_call(act, batch[:100])
        timings: dict[str, list[float]] = {name: [] for name in ways}
        for rep in range(reps):
            for name in list(ways) if rep % 2 == 0 else list(reversed(ways)):
                timings[name].append(microseconds_per_call(ways[name], batch))
                print(f"threads {threads} rep {rep}: {name} {timings[name][-1]:.1f} us/action", flush=True)
        medians = {name: statistics.median(values) for name, values in timings.items()}
        return {
            "torch_threads": th.get_num_threads(),
            "onnxruntime_intra_op_threads": options.intra_op_num_threads or "default (one per core)",
            "us_per_action": timings,
            "median_us_per_action": medians,
            "speedup_onnxruntime_over_predict": medians["predict"] / medians["onnxruntime"],
            "speedup_predict_over_predict_torch": medians["predict_torch"] / medians["predict"],
        }
    finally:
        th.set_num_threads(default_threads)


def latency(args: argparse.Namespace) -> dict[str, Any]:
    """``latency``: every thread setting in turn."""
    import onnxruntime

    entry = builder.read_entry(args.env, args.conf)
    results: dict[str, Any] = {"seed": args.seed, "observations": 1000, "onnxruntime": onnxruntime.__version__}
    with tempfile.TemporaryDirectory() as folder:
        for threads in args.threads:
            results[f"threads_{threads}"] = measure_latency(entry, threads, args.reps, args.seed, Path(folder))
    for threads in args.threads:
        entry_results = results[f"threads_{threads}"]
        medians = entry_results["median_us_per_action"]
        print(f"threads {threads}: onnxruntime {medians['onnxruntime']:.1f} us, predict {medians['predict']:.1f} us, "
              f"SB3's torch predict {medians['predict_torch']:.1f} us")  # fmt: skip
    return results


MASKED_ALGORITHMS = ("clippedppo", "maskableppo")


def masked_run(algo: str, steps: int, seed: int) -> dict[str, Any]:
    """``masking``'s child: one ``learn(steps)`` on ``InvalidActionEnvDiscrete``, timed, with masks (the default of
    both algorithms when the environment offers them)."""
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.envs import InvalidActionEnvDiscrete

    from sb3_clippedppo import ClippedPPO

    model = {"clippedppo": ClippedPPO, "maskableppo": MaskablePPO}[algo](
        "MlpPolicy", InvalidActionEnvDiscrete(dim=80, n_invalid_actions=60), seed=seed
    )
    start = time.perf_counter()
    model.learn(steps)
    seconds = time.perf_counter() - start
    masks = model.rollout_buffer.action_masks
    return {"algo": algo, "steps": model.num_timesteps, "seconds": seconds, "steps_per_s": model.num_timesteps / seconds,
            "fast_path": getattr(model, "uses_fast_path", None), "masked": bool(masks.size and not masks.all())}  # fmt: skip


def masking(args: argparse.Namespace) -> dict[str, Any]:
    """``masking``: ``--reps`` alternating pairs of fresh processes (:func:`masked_run`)."""
    if args.child:
        print(json.dumps(masked_run(args.child, args.steps, args.seed)))
        return {}
    runs: dict[str, list[dict[str, Any]]] = {algo: [] for algo in MASKED_ALGORITHMS}
    ratios = []
    for pair in range(args.reps):
        order = MASKED_ALGORITHMS if pair % 2 == 0 else MASKED_ALGORITHMS[::-1]
        for algo in order:
            command = [sys.executable, "-m", "benchmarks.profile", "masking", "--child", algo, "--steps", str(args.steps),
                       "--seed", str(args.seed), "--out", str(args.out)]  # fmt: skip
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            runs[algo].append(json.loads(output.strip().splitlines()[-1]))
        ratios.append(runs["clippedppo"][-1]["steps_per_s"] / runs["maskableppo"][-1]["steps_per_s"])
    medians = {algo: statistics.median(r["steps_per_s"] for r in group) for algo, group in runs.items()}
    print(f"steps/s, medians of {args.reps}: ClippedPPO {medians['clippedppo']:.0f}, "
          f"MaskablePPO {medians['maskableppo']:.0f}; "
          f"ratio {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")  # fmt: skip
    return {"environment": "sb3_contrib InvalidActionEnvDiscrete(dim=80, n_invalid_actions=60), MlpPolicy, defaults",
            "threads": "default", "steps": args.steps, "runs": runs, "median_steps_per_s": medians,
            "ratios": ratios, "median_ratio": statistics.median(ratios)}  # fmt: skip


def cprofile(args: argparse.Namespace) -> dict[str, Any]:
    """``cprofile``: one ``learn`` call of ``--rollouts`` rollouts after a warm-up one, one torch thread."""
    import torch as th

    import sb3_clippedppo

    th.set_num_threads(1)
    model = warm_model(args.algo, builder.read_entry(args.env, args.conf), seed=args.seed)
    steps = args.rollouts * model.n_steps * model.n_envs
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    model.learn(steps, reset_num_timesteps=False)
    profiler.disable()
    wall = time.perf_counter() - start
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.top)
    text = (f"{args.algo}, {args.env} ({args.conf}): {steps} steps in {wall:.2f} s under cProfile ({steps / wall:.0f} "
            f"steps/s); sb3_clippedppo from {sb3_clippedppo.__file__}\n"
            + "\n".join(line for line in out.getvalue().splitlines() if line.strip()))  # fmt: skip
    print(text)
    return {"setting": {"algo": args.algo, "env": args.env, "conf": str(args.conf), "steps": steps}, "seconds": wall,
            "profile": text}  # fmt: skip


def parser() -> argparse.ArgumentParser:
    """The command line: a subcommand per measurement."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    helps = {"split": "rollout, update and evaluation seconds, ClippedPPO against SB3's PPO",
             "flops": "the update's GFLOP/s against a GEMM peak", "latency": "one action: onnxruntime, predict, torch",
             "cprofile": "cProfile of one learn call",
             "masking": "steps per second with action masks, ClippedPPO against MaskablePPO"}  # fmt: skip
    for name, text in helps.items():
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("--env", default="HalfCheetah-v4", help="the entry and its environment")
        command.add_argument("--conf", type=Path, default=builder.SHIPPED_YML, help="the Zoo hyperparameter file")
        command.add_argument("--seed", type=int, default=0)
        if name != "cprofile":
            command.add_argument("--reps", type=int, default=5, help="repetitions (split: alternating pairs)")
            builder.add_out_arguments(command)
    commands.choices["split"].add_argument("--interval", type=int, default=20_000, help="steps measured; one evaluation")
    commands.choices["split"].add_argument("--eval-episodes", type=int, default=10)
    commands.choices["split"].add_argument("--child", choices=builder.ALGORITHMS, help=argparse.SUPPRESS)
    commands.choices["latency"].add_argument("--threads", nargs="+", default=["default"], choices=["default", "1"])
    commands.choices["cprofile"].add_argument("--algo", choices=builder.ALGORITHMS, default="clippedppo")
    commands.choices["cprofile"].add_argument("--rollouts", type=int, default=5, help="rollouts profiled after a warm-up")
    commands.choices["cprofile"].add_argument("--top", type=int, default=15)
    commands.choices["masking"].add_argument("--steps", type=int, default=20_480, help="steps of each learn call")
    commands.choices["masking"].add_argument("--child", choices=MASKED_ALGORITHMS, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    command_parser = parser()
    args = command_parser.parse_args(argv)
    for name in ("reps", "interval", "eval_episodes", "rollouts", "top", "steps"):
        if getattr(args, name, 1) < 1:
            command_parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.command == "cprofile":
        return cprofile(args)
    if not getattr(args, "child", None):
        builder.check_out(command_parser, args)
    results = {"split": split, "flops": flops, "latency": latency, "masking": masking}[args.command](args)
    if results:  # not a child
        results = {"command": "python -m benchmarks.profile " + " ".join(argv), "machine": builder.machine_info(), **results}
        builder.write_results(args.out, results)
    return results


if __name__ == "__main__":
    main()
