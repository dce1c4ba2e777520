"""Thread counts while ClippedPPO learns (``manage_threads=True``, the default): at most one thread pool at a time uses
more than one thread.

Two thread pools can work for a ``learn`` call: torch's (OpenMP, with MKL inside it) and NumPy's BLAS library (OpenBLAS
with pthreads in NumPy's wheels). Each keeps its threads spinning for a while after a parallel operation; when both are
multi-threaded and the work alternates between them, their spinning threads take the cores from each other's working
threads. The rule (:func:`learning_thread_counts`), with the **budget** ``torch.get_num_threads()`` when ``learn``
starts (torch's default of one thread per core, or the user's ``torch.set_num_threads``, the RL Zoo's ``--num-threads``):

- **autograd**: torch keeps the budget, as in Stable-Baselines3's PPO; NumPy's BLAS gets one thread;
- **fast path** (whose arithmetic is NumPy's): torch gets one thread; NumPy's BLAS gets ``batch_size //
  ROWS_PER_BLAS_THREAD`` threads (a minibatch's matrix products have ``batch_size`` rows), at least one and at most
  the budget.

Both counts are restored when ``learn`` returns or raises. ``ClippedPPO(manage_threads=False)`` leaves both pools alone,
for programs that set threads themselves (Ray actors, Optuna's ``n_jobs``, an application embedding the trainer):
``torch.set_num_threads`` is process-wide, so two ``learn`` calls running at once in threads of one process share it.
The measurements behind the rule are in the documentation ("How it works", threads).
"""

import contextlib
from collections.abc import Iterator
from typing import NamedTuple

import threadpoolctl
import torch as th

# Rows of a minibatch per BLAS thread on the fast path (see the module's docstring; measured in the docs).
ROWS_PER_BLAS_THREAD = 128


class ThreadCounts(NamedTuple):
    """Threads of each pool while ``learn`` runs."""

    torch: int  # torch.set_num_threads (OpenMP and MKL)
    blas: int  # NumPy's BLAS library, through threadpoolctl


def learning_thread_counts(budget: int, fast_path: bool, batch_size: int) -> ThreadCounts:
    """
    The threads of each pool while ``learn`` runs (the rule of the module's docstring).

    :param budget: threads available to the run, at least 1 (``torch.get_num_threads()`` when ``learn`` starts).
    :param fast_path: whether the update runs through the closed form (:mod:`sb3_clippedppo.backends.closed_form`).
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

    :param fast_path: whether the update runs through the closed form (:mod:`sb3_clippedppo.backends.closed_form`).
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
