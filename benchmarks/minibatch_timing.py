"""Where the fast path's update time goes, on one minibatch of SB3's default PPO settings (HalfCheetah-v4, 64x64 tanh).

Prints, each the median over alternating repetitions (minimum of 3 timings of ``--number`` calls each), in one process
on one thread:

- forward + backward of one minibatch of 64: autograd (``ppo_loss``), the closed form in torch (as on a GPU) and in
  NumPy (as on the CPU);
- one whole update (``train()``, 320 minibatches) with the closed form in torch and in NumPy;
- ``torch.tanh`` against ``numpy.tanh`` on a 64x64 float32 array;
- a 64x256 by 256x256 float32 NumPy product with OpenBLAS's default threads and held to one: wall and CPU time.

Example::

    python -m benchmarks.minibatch_timing > benchmarks/results/profile/minibatch_timing.txt
"""

import argparse
import resource
import statistics
import time
import timeit

import numpy as np
import threadpoolctl
import torch as th

from benchmarks.common import git_commit, machine_info


def median_time(functions: dict, reps: int, number: int) -> dict[str, float]:
    """Median over ``reps`` alternations of the best of 3 timings, in microseconds per call."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(reps):
        for name, function in functions.items():
            times[name].append(min(timeit.repeat(function, number=number, repeat=3)) / number * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def cpu_and_wall(function, number: int) -> tuple[float, float]:
    """Wall and CPU time (all threads) per call, microseconds."""
    start_cpu, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(number):
        function()
    wall, end_cpu = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    cpu = end_cpu.ru_utime - start_cpu.ru_utime + end_cpu.ru_stime - start_cpu.ru_stime
    return wall / number * 1e6, cpu / number * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--number", type=int, default=300)
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    from stable_baselines3.common.env_util import make_vec_env

    from sb3_clippedppo import ClippedPPO
    from sb3_clippedppo.fast_mlp import ClosedFormBackend
    from sb3_clippedppo.losses import LossCoefficients, normalize_advantages, ppo_loss

    machine = machine_info()
    print(f"# {__doc__.splitlines()[0]}\nmachine: {machine['cpu']}, {machine['cores']} cores; commit {git_commit()}")
    model = ClippedPPO("MlpPolicy", make_vec_env("HalfCheetah-v4", n_envs=1, seed=0), seed=0, device="cpu")
    blas = threadpoolctl.ThreadpoolController()
    with blas.limit(limits=1, user_api="blas"):
        model.learn(2048)
        batch = next(iter(model.rollout_buffer.minibatches(64)))
        advantages = normalize_advantages(batch.advantages)
        coefficients = LossCoefficients(0.2, None, 0.0, 0.5)
        policy = model.policy

        def autograd() -> None:
            policy.optimizer.zero_grad(set_to_none=False)
            ppo_loss(policy, batch, advantages, coefficients).loss.backward()

        def closed_form(array_module):
            backend = ClosedFormBackend(policy, array_module)
            backend.prepare()
            return lambda: backend.backward(backend.loss(batch, advantages, coefficients))

        minibatch = median_time(
            {"autograd": autograd, "closed form, torch": closed_form(th), "closed form, numpy": closed_form(np)},
            args.reps,
            args.number,
        )
        print("\n## forward + backward, one minibatch of 64 (us)")
        for name, value in minibatch.items():
            print(f"- {name}: {value:.0f}")

        def update(array_module):
            def run() -> None:
                model.backend.array_module = array_module
                model.train()

            return run

        updates = median_time({"torch": update(th), "numpy": update(np)}, args.reps, 1)
        print("\n## one update, train() with 320 minibatches (s)")
        for name, value in updates.items():
            print(f"- closed form in {name}: {value / 1e6:.3f}")
        model.backend.array_module = None

    x = th.randn(64, 64)
    tanh = median_time({"torch.tanh": lambda: th.tanh(x), "numpy.tanh": lambda: np.tanh(x.numpy())}, args.reps, 5000)
    print("\n## tanh of a 64x64 float32 array (us)")
    for name, value in tanh.items():
        print(f"- {name}: {value:.1f}")

    a, b = np.random.default_rng(0).standard_normal((2, 256, 256)).astype(np.float32)
    a = a[:64]
    print("\n## 64x256 by 256x256 float32 NumPy product (us per call)")
    for label, limit in (("held to 1 thread", 1), ("OpenBLAS default threads", None)):  # one thread first: no spinning
        with blas.limit(limits=limit, user_api="blas") if limit else threadpoolctl.threadpool_limits(limits=None):
            wall, cpu = cpu_and_wall(lambda: a @ b, 2000)
        print(f"- {label}: wall {wall:.0f}, CPU {cpu:.0f}")


if __name__ == "__main__":
    main()
