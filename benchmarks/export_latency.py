"""Latency of one action: the exported ONNX policy in onnxruntime against ``model.predict``, in one process, alternating.

The model has the shipped HalfCheetah-v4 entry's architecture (``hyperparams/clippedppo.yml``: 256x256 ReLU, ``normalize:
true``); latency does not depend on the weights, so it trains for one rollout only. It is exported with its
``VecNormalize`` folded in (:func:`sb3_clippedppo.export.export_onnx`). Each repetition times, on the same 1,000 raw
HalfCheetah-v4 observations, one call per observation (batch of one):

- ``onnxruntime``: ``session.run(None, {"observation": obs[None]})`` on the raw float64 observation;
- ``predict``: ``model.predict(vec_normalize.normalize_obs(obs), deterministic=True)``, what the RL Zoo's ``enjoy`` does
  (and the evaluations during training, through SB3's ``evaluate_policy``);
- ``predict_torch``: the same through SB3's own ``BasePolicy.predict`` (PyTorch), which ClippedPPO's ``predict`` replaces
  for deterministic MLP actions on the CPU: the ``predict`` lever of issue 25.

Thread settings: ``default`` (torch's and onnxruntime's defaults: one thread per core) and ``1`` (both at one thread).

Example::

    python -m benchmarks.export_latency --reps 5 --threads default 1 --out benchmarks/results/export/latency.json

prints the microseconds per action of each repetition and the medians; ``--out`` writes them with the machine.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common
from benchmarks.common import SHIPPED_YML, machine_info, zoo_hyperparams, zoo_n_envs

ENV_ID = "HalfCheetah-v4"


def observations(n: int, seed: int) -> np.ndarray:
    """``n`` raw observations from HalfCheetah-v4 episodes with random actions."""
    import gymnasium as gym

    env = gym.make(ENV_ID)
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


def measure(threads: str, reps: int, seed: int, folder: Path) -> dict[str, Any]:
    """Medians and repetitions of both ways at one thread setting."""
    import onnxruntime as ort
    import torch as th
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.policies import BasePolicy
    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_clippedppo import ClippedPPO
    from sb3_clippedppo.export import export_onnx

    default_threads = th.get_num_threads()
    options = ort.SessionOptions()
    if threads == "1":
        th.set_num_threads(1)
        options.intra_op_num_threads = options.inter_op_num_threads = 1
    try:
        hyperparams, normalize = zoo_hyperparams(ENV_ID, SHIPPED_YML)
        env = make_vec_env(ENV_ID, n_envs=zoo_n_envs(ENV_ID, SHIPPED_YML), seed=seed)
        vec_normalize = VecNormalize(env, gamma=hyperparams["gamma"]) if normalize else None
        model = ClippedPPO("MlpPolicy", vec_normalize or env, seed=seed, device="cpu", **hyperparams)
        model.learn(model.n_steps * model.n_envs)
        path = export_onnx(model, folder / f"policy-{threads}.onnx", vec_normalize=vec_normalize)
        session = ort.InferenceSession(str(path), options)
        batch = observations(1000, seed)

        def onnxruntime_action(obs: np.ndarray) -> np.ndarray:
            return session.run(None, {"observation": obs[None]})[0][0]

        def predict_action(obs: np.ndarray) -> np.ndarray:
            normalized = vec_normalize.normalize_obs(obs) if vec_normalize is not None else obs
            return model.predict(normalized, deterministic=True)[0]

        def predict_torch_action(obs: np.ndarray) -> np.ndarray:
            normalized = vec_normalize.normalize_obs(obs) if vec_normalize is not None else obs
            return BasePolicy.predict(model.policy, normalized, deterministic=True)[0]

        ways = {"onnxruntime": onnxruntime_action, "predict": predict_action, "predict_torch": predict_torch_action}
        for act in ways.values():  # warm-up
            microseconds_per_call(act, batch[:100])
        timings: dict[str, list[float]] = {name: [] for name in ways}
        for rep in range(reps):
            order = list(ways) if rep % 2 == 0 else list(reversed(ways))
            for name in order:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="alternating repetitions (default 5)")
    parser.add_argument("--threads", nargs="+", default=["default"], choices=["default", "1"], help="thread settings")
    parser.add_argument("--seed", type=int, default=0)
    common.add_out_arguments(parser)
    args = parser.parse_args(argv)
    common.check_out(parser, args)
    if args.reps < 1:
        parser.error(f"--reps must be >= 1, got {args.reps}")
    results: dict[str, Any] = {
        "command": "python -m benchmarks.export_latency " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine_info(),
        "seed": args.seed,
        "observations": 1000,
    }
    import onnxruntime

    results["machine"]["versions"]["onnxruntime"] = onnxruntime.__version__
    with tempfile.TemporaryDirectory() as folder:
        for threads in args.threads:
            results[f"threads_{threads}"] = measure(threads, args.reps, args.seed, Path(folder))
    for threads in args.threads:
        entry = results[f"threads_{threads}"]
        medians = entry["median_us_per_action"]
        print(f"threads {threads}: onnxruntime {medians['onnxruntime']:.1f} us, predict {medians['predict']:.1f} us "
              f"({entry['speedup_onnxruntime_over_predict']:.1f}x), SB3's torch predict {medians['predict_torch']:.1f} us "
              f"({entry['speedup_predict_over_predict_torch']:.1f}x slower than predict)")  # fmt: skip
    common.write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
