"""ClippedPPO's speed with given thread counts for torch and NumPy's BLAS during ``learn``, in one process, alternating.

Each variant ``torchT-blasB`` replaces the thread rule of ``sb3_clippedppo.threads`` (for this measurement only) with
``torch.set_num_threads(T)`` and ``threadpoolctl`` BLAS limit ``B`` while ``learn`` runs. ``torch2-blas2`` is what
ClippedPPO did before the rule on a 2-core machine (both pools at torch's default); the rule gives ``torch1-blasB`` with
``B = batch_size // sb3_clippedppo.threads.ROWS_PER_BLAS_THREAD`` (at least 1). Settings: the RL Zoo's
HalfCheetah-v4 block (VecNormalize, 512 steps, 20 epochs, 256x256 ReLU), with ``--batch-size``.

Example::

    python -m benchmarks.thread_pools --variants torch2-blas2 torch2-blas1 torch1-blas2 torch1-blas1 --batch-size 64

prints steps per second per variant and repetition, then the medians.
"""

import argparse
import contextlib
import re
import statistics
import time
import warnings
from collections.abc import Iterator

import threadpoolctl
import torch as th

from benchmarks.common import machine_info, zoo_hyperparams


@contextlib.contextmanager
def fixed_threads(torch_threads: int, blas_threads: int) -> Iterator[None]:
    """torch and BLAS at the given counts, restored at exit."""
    before = th.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=blas_threads, user_api="blas"):
        th.set_num_threads(torch_threads)
        try:
            yield
        finally:
            th.set_num_threads(before)


def steps_per_second(variant: str, batch_size: int, steps: int, seed: int) -> float:
    """One model on the Zoo's HalfCheetah-v4 settings, one warm-up rollout, then ``learn(steps)`` timed."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_clippedppo import clipped_ppo

    match = re.fullmatch(r"torch(\d+)-blas(\d+)", variant)
    if match is None:
        raise ValueError(f"variant must be torchT-blasB, got {variant!r}")
    torch_threads, blas_threads = int(match.group(1)), int(match.group(2))
    hyperparams, _ = zoo_hyperparams("HalfCheetah-v4")
    env = VecNormalize(make_vec_env("HalfCheetah-v4", n_envs=1, seed=seed), gamma=hyperparams["gamma"])
    model = clipped_ppo.ClippedPPO("MlpPolicy", env, seed=seed, device="cpu", **{**hyperparams, "batch_size": batch_size})
    original = clipped_ppo.learning_threads
    clipped_ppo.learning_threads = lambda fast_path, batch: fixed_threads(torch_threads, blas_threads)  # type: ignore[assignment]
    try:
        model.learn(model.n_steps)
        start = time.perf_counter()
        model.learn(steps, reset_num_timesteps=False)
        return steps / (time.perf_counter() - start)
    finally:
        clipped_ppo.learning_threads = original


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=["torch2-blas2", "torch2-blas1", "torch1-blas2", "torch1-blas1"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2048)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    machine = machine_info()
    print(f"{machine['cpu']}, {machine['cores']} cores, commit {machine['commit']}; batch {args.batch_size}, "
          f"{args.steps} steps")  # fmt: skip
    results: dict[str, list[float]] = {variant: [] for variant in args.variants}
    for rep in range(args.reps):
        for variant in args.variants:  # alternating
            results[variant].append(steps_per_second(variant, args.batch_size, args.steps, rep))
            print(f"rep {rep} {variant}: {results[variant][-1]:.0f} steps/s", flush=True)
    medians = {variant: statistics.median(values) for variant, values in results.items()}
    for variant, value in medians.items():
        print(f"{variant}: median {value:.0f} steps/s")
    return medians


if __name__ == "__main__":
    main()
