"""The thread counts in force while ClippedPPO learns (sb3_clippedppo.threads), without timing anything."""

import pytest
import threadpoolctl
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from sb3_clippedppo import ClippedPPO
from sb3_clippedppo.threads import ROWS_PER_BLAS_THREAD, ThreadCounts, learning_thread_counts


def blas_threads() -> list[int]:
    """Threads of every BLAS library loaded in this process (NumPy's OpenBLAS at least)."""
    threads = [info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"]
    assert threads, "NumPy's BLAS library is not visible to threadpoolctl"
    return threads


@pytest.mark.parametrize(
    "budget, fast_path, batch_size, expected",
    [
        (2, False, 64, ThreadCounts(torch=2, blas=1)),  # autograd: torch keeps the budget, as in SB3's PPO
        (16, False, 4096, ThreadCounts(torch=16, blas=1)),
        (2, True, 64, ThreadCounts(torch=1, blas=1)),  # fast path, small minibatches: one thread in all
        (2, True, ROWS_PER_BLAS_THREAD - 1, ThreadCounts(torch=1, blas=1)),
        (2, True, 2 * ROWS_PER_BLAS_THREAD, ThreadCounts(torch=1, blas=2)),
        (2, True, 100 * ROWS_PER_BLAS_THREAD, ThreadCounts(torch=1, blas=2)),  # never above the budget
        (16, True, 4 * ROWS_PER_BLAS_THREAD, ThreadCounts(torch=1, blas=4)),
        (1, True, 100 * ROWS_PER_BLAS_THREAD, ThreadCounts(torch=1, blas=1)),  # one thread reserved: one thread used
        (1, False, 64, ThreadCounts(torch=1, blas=1)),
    ],
)
def test_rule(budget, fast_path, batch_size, expected):
    counts = learning_thread_counts(budget, fast_path, batch_size)
    assert counts == expected
    assert min(counts) == 1  # at most one pool with more than one thread


@pytest.mark.parametrize("budget, batch_size", [(0, 64), (2, 0)])
def test_rule_rejects_bad_input(budget, batch_size):
    with pytest.raises(ValueError, match="budget" if budget < 1 else "batch_size"):
        learning_thread_counts(budget, True, batch_size)


class RecordThreads(BaseCallback):
    """Records (torch threads, BLAS threads) at every step and during every update."""

    def __init__(self, fail_at_step: int | None = None):
        super().__init__()
        self.seen: list[tuple[int, list[int]]] = []
        self.fail_at_step = fail_at_step

    def _on_step(self) -> bool:
        self.seen.append((th.get_num_threads(), blas_threads()))
        if self.fail_at_step is not None and self.n_calls >= self.fail_at_step:
            raise RuntimeError("callback failed")
        return True


@pytest.mark.parametrize(
    "fast_path, batch_size", [(True, 64), (True, 2 * ROWS_PER_BLAS_THREAD), (False, 64), (False, 2 * ROWS_PER_BLAS_THREAD)]
)
def test_learn_follows_the_rule_and_restores_the_counts(fast_path, batch_size):
    n_steps = 2 * ROWS_PER_BLAS_THREAD
    model = ClippedPPO(
        "MlpPolicy", make_vec_env("Pendulum-v1", n_envs=1), n_steps=n_steps, batch_size=batch_size, n_epochs=1,
        fast_path=fast_path, seed=0,
    )  # fmt: skip
    assert model.uses_fast_path is fast_path
    callback = RecordThreads()
    train, in_update = model.train, []

    def recording_train() -> None:
        in_update.append((th.get_num_threads(), blas_threads()))
        train()

    model.train = recording_train  # type: ignore[method-assign]
    budget = th.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        th.set_num_threads(2)  # the budget of a 2-core machine, whatever this one has
        try:
            blas_before = blas_threads()
            model.learn(2 * n_steps, callback=callback)
            assert th.get_num_threads() == 2 and blas_threads() == blas_before  # restored
        finally:
            th.set_num_threads(budget)
    expected = learning_thread_counts(2, fast_path, batch_size)
    assert len(in_update) == 2 and len(callback.seen) == 2 * n_steps
    for torch_threads, blas in [*callback.seen, *in_update]:
        assert torch_threads == expected.torch
        assert blas == [expected.blas] * len(blas)


def test_counts_are_restored_when_learn_raises():
    model = ClippedPPO("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=1), n_steps=32, batch_size=32, seed=0)
    budget = th.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        th.set_num_threads(2)
        try:
            with pytest.raises(RuntimeError, match="callback failed"):
                model.learn(64, callback=RecordThreads(fail_at_step=5))
            assert th.get_num_threads() == 2
            assert blas_threads() == [2] * len(blas_threads())
        finally:
            th.set_num_threads(budget)
