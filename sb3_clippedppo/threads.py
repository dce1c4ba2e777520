"""Thread counts while ClippedPPO learns: at most one thread pool at a time uses more than one thread.

Two thread pools can work for a ``learn`` call: torch's (OpenMP, with MKL inside it) and NumPy's BLAS library
(OpenBLAS with pthreads in NumPy's wheels). Each starts with one thread per core, and after each parallel operation
each keeps its threads spinning for a while, waiting for the next one. When both pools are multi-threaded and the
work alternates between them (the fast path's NumPy matrix products, then torch's Adam step, each few hundred
microseconds long), their spinning threads take the cores from each other's working threads: on a 2-core machine with
torch's default of 2 threads, ClippedPPO on the RL Zoo's HalfCheetah-v4 settings ran at 225 steps/s instead of 1,266
with one thread (``python -m benchmarks.thread_pools``). So while ``learn`` runs, :func:`learning_threads` gives the
threads of the budget to one pool only:

- the **budget** is ``torch.get_num_threads()`` when ``learn`` starts: torch's default (one thread per core), or what
  the user set with ``torch.set_num_threads`` (the RL Zoo's ``--num-threads``);
- **autograd** (every policy the fast path does not take): torch keeps the budget, as in Stable-Baselines3's PPO, and
  NumPy's BLAS gets one thread (NumPy does no matrix product there worth a second thread);
- **fast path** (:mod:`sb3_clippedppo.fast_mlp`, whose arithmetic is NumPy's): torch gets one thread (what is left to it,
  the Adam step, the gradient-norm clip and the batched evaluation of the rollout, is too small to split), and NumPy's
  BLAS gets ``batch_size // ROWS_PER_BLAS_THREAD`` threads, at least one and at most the budget. A minibatch's matrix
  products have ``batch_size`` rows (or sum over them): measured on a 2-core AMD EPYC with 256-wide layers, a second
  BLAS thread does not pay with 64 rows (1,147 against 1,266 steps/s), hardly with 128 (2,039 against 1,968), and pays
  with 256 (2,216 against 1,888) and 512 (2,311 against 1,935; ``python -m benchmarks.thread_pools --batch-size N``).

Both counts are restored when ``learn`` returns or raises. ``torch.set_num_threads`` is process-wide: two ``learn`` calls
running at once in threads of one process (Optuna's ``n_jobs > 1``) share it; run such trials in processes instead
(the RL Zoo's ``--optimize`` with one ``--n-jobs`` per process, as ``benchmarks/search.py`` does).
"""

import contextlib
from collections.abc import Iterator
from typing import NamedTuple

import threadpoolctl
import torch as th

# Rows of a minibatch per BLAS thread on the fast path (see the module's docstring).
ROWS_PER_BLAS_THREAD = 128


class ThreadCounts(NamedTuple):
    """Threads of each pool while ``learn`` runs."""

    torch: int  # torch.set_num_threads (OpenMP and MKL)
    blas: int  # NumPy's BLAS library, through threadpoolctl


def learning_thread_counts(budget: int, fast_path: bool, batch_size: int) -> ThreadCounts:
    """
    The threads of each pool while ``learn`` runs (the rule of the module's docstring).

    :param budget: threads available to the run, at least 1 (``torch.get_num_threads()`` when ``learn`` starts).
    :param fast_path: whether the update runs through :mod:`sb3_clippedppo.fast_mlp`.
    :param batch_size: the minibatch size, at least 1.
    :return: the counts; at most one of them is above 1, and neither is above ``budget``.
    :raises ValueError: for a budget or batch size below 1.
    """
    if budget < 1:
        raise ValueError(f"budget must be >= 1 thread, got {budget}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not fast_path:
        return ThreadCounts(torch=budget, blas=1)
    return ThreadCounts(torch=1, blas=max(1, min(budget, batch_size // ROWS_PER_BLAS_THREAD)))


@contextlib.contextmanager
def learning_threads(fast_path: bool, batch_size: int) -> Iterator[ThreadCounts]:
    """
    A context in which torch and NumPy's BLAS use :func:`learning_thread_counts` threads, with the budget
    ``torch.get_num_threads()`` at entry; both counts are restored at exit.

    :param fast_path: whether the update runs through :mod:`sb3_clippedppo.fast_mlp`.
    :param batch_size: the minibatch size.
    :return: (as the context's value) the counts in force.
    """
    budget = th.get_num_threads()
    counts = learning_thread_counts(budget, fast_path, batch_size)
    with threadpoolctl.threadpool_limits(limits=counts.blas, user_api="blas"):
        th.set_num_threads(counts.torch)
        try:
            yield counts
        finally:
            th.set_num_threads(budget)
