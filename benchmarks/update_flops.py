"""The update's arithmetic against the machine's limit: achieved GFLOP/s of ClippedPPO's ``train()`` (one update)
against a plain float32 matrix-multiply peak measured on the same core (issue 25's arithmetic lever).

The model uses a hyperparameter block (default: the shipped ``hyperparams/clippedppo.yml`` HalfCheetah-v4 entry,
256x256 ReLU, minibatches of 64, 20 epochs on 512 steps) with ``VecNormalize`` when the block asks for it. After a
warm-up ``learn`` of one rollout, ``train()`` is timed on that rollout ``--reps`` times, under the thread rule that
``learn`` applies (:mod:`sb3_clippedppo.threads`). Its floating-point operations are counted for the matrix products
only: per minibatch of ``B`` rows and each ``Linear(in, out)`` of actor and critic, ``2 B in out`` forward, ``2 B in out``
for the weight gradient and ``2 B in out`` for the input gradient (all layers but the first); element-wise work is left
out, so the figure is a lower bound. The peaks: a 1024x1024x1024 product (large-matrix peak) and the update's own
product shapes, in NumPy on one BLAS thread.

Example::

    python -m benchmarks.update_flops --out benchmarks/results/profile/update_flops.json
"""

import argparse
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import threadpoolctl

from benchmarks import common
from benchmarks.common import SHIPPED_YML, machine_info, zoo_hyperparams, zoo_n_envs


def linear_shapes(model: Any) -> list[tuple[int, int]]:
    """``(in_features, out_features)`` of every ``Linear`` layer of the actor and the critic (feature extractor
    excluded: ``FlattenExtractor`` has none)."""
    import torch as th

    policy = model.policy
    modules = [policy.mlp_extractor.policy_net, policy.action_net, policy.mlp_extractor.value_net, policy.value_net]
    return [(m.in_features, m.out_features) for module in modules for m in module.modules() if isinstance(m, th.nn.Linear)]


def update_flops(shapes: list[tuple[int, int]], first_inputs: int, rows: int) -> float:
    """Matrix-product operations of one minibatch of ``rows``: forward, weight gradient, and input gradient except for
    the layers fed by the observations (``first_inputs`` features)."""
    total = 0.0
    for inputs, outputs in shapes:
        total += (4 if inputs == first_inputs else 6) * rows * inputs * outputs
    return total


def gemm_gflops(m: int, k: int, n: int, seconds: float = 0.5) -> float:
    """GFLOP/s of ``(m, k) @ (k, n)`` float32 products in NumPy on one BLAS thread, best of 5 batches."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    out = np.empty((m, n), dtype=np.float32)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        np.matmul(a, b, out=out)
        number = max(1, int(seconds / max(1e-7, _time(lambda: np.matmul(a, b, out=out), 3) / 3) / 5))
        best = min(_time(lambda: np.matmul(a, b, out=out), number) / number for _ in range(5))
    return 2.0 * m * k * n / best / 1e9


def _time(function: Any, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        function()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="HalfCheetah-v4", help="the hyperparameter block and environment")
    parser.add_argument("--conf", type=Path, default=SHIPPED_YML, help="the hyperparameter file")
    parser.add_argument("--reps", type=int, default=5, help="timed updates (default 5)")
    common.add_out_arguments(parser)
    args = parser.parse_args(argv)
    common.check_out(parser, args)
    if args.reps < 1:
        parser.error(f"--reps must be >= 1, got {args.reps}")

    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_clippedppo import ClippedPPO
    from sb3_clippedppo.threads import learning_threads

    hyperparams, normalize = zoo_hyperparams(args.env, args.conf)
    hyperparams.pop("n_timesteps", None)
    env = make_vec_env(args.env, n_envs=zoo_n_envs(args.env, args.conf), seed=0)
    model = ClippedPPO("MlpPolicy", VecNormalize(env) if normalize else env, seed=0, device="cpu", **hyperparams)
    model.learn(model.n_steps * model.n_envs)
    transitions = model.n_steps * model.n_envs
    minibatches_per_epoch = math.ceil(transitions / model.batch_size)
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
        epochs = model._n_updates - epochs_before
        seconds.append(elapsed)
        gflops.append(epochs * epoch_flops / elapsed / 1e9)
    peaks = {"1024x1024x1024": gemm_gflops(1024, 1024, 1024)}
    for inputs, outputs in sorted(set(shapes)):
        peaks[f"{model.batch_size}x{inputs}x{outputs}"] = gemm_gflops(model.batch_size, inputs, outputs)
    achieved = statistics.median(gflops)
    results = {
        "command": "python -m benchmarks.update_flops " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "machine": machine_info(),
        "setting": {"env": args.env, "conf": str(args.conf), "batch_size": model.batch_size, "n_epochs": model.n_epochs,
                    "transitions": transitions, "minibatches_per_epoch": minibatches_per_epoch, "linear_layers": shapes,
                    "fast_path": model.uses_fast_path},  # fmt: skip
        "update_seconds": seconds,
        "update_gflops": gflops,
        "median_update_gflops": achieved,
        "gemm_peak_gflops_one_thread": peaks,
        "fraction_of_large_gemm_peak": achieved / peaks["1024x1024x1024"],
    }
    print(f"update: {statistics.median(seconds):.3f} s, {achieved:.2f} GFLOP/s (matrix products only); one-thread GEMM "
          + ", ".join(f"{shape}: {value:.1f}" for shape, value in peaks.items())
          + f" GFLOP/s; {results['fraction_of_large_gemm_peak']:.0%} of the large-matrix peak")  # fmt: skip
    common.write_results(args.out, results)
    return results


if __name__ == "__main__":
    main()
