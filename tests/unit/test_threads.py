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


def record_update_threads(model: ClippedPPO) -> list:
    """Make ``model.train`` record torch's and BLAS's thread counts at each update's start; returns the record."""
    train, in_update = model.train, []

    def recording_train() -> None:
        in_update.append((th.get_num_threads(), blas_threads()))
        train()

    model.train = recording_train  # type: ignore[method-assign]
    return in_update


@pytest.mark.parametrize(
    "fast_path, batch_size", [(True, 64), (True, 2 * ROWS_PER_BLAS_THREAD), (False, 64), (False, 2 * ROWS_PER_BLAS_THREAD)]
)
def test_learn_follows_the_rule_and_restores_the_counts(fast_path, batch_size, thread_counts):
    n_steps = 2 * ROWS_PER_BLAS_THREAD
    model = ClippedPPO(
        "MlpPolicy", make_vec_env("Pendulum-v1", n_envs=1), n_steps=n_steps, batch_size=batch_size, n_epochs=1,
        fast_path=fast_path, seed=0,
    )  # fmt: skip
    assert model.uses_fast_path is fast_path
    callback, in_update = RecordThreads(), record_update_threads(model)
    thread_counts(torch=2, blas=2)  # the budget of a 2-core machine, whatever this one has
    model.learn(2 * n_steps, callback=callback)
    assert th.get_num_threads() == 2 and blas_threads() == [2] * len(blas_threads())  # restored
    expected = learning_thread_counts(2, fast_path, batch_size)
    assert len(in_update) == 2 and len(callback.seen) == 2 * n_steps
    for torch_threads, blas in [*callback.seen, *in_update]:
        assert torch_threads == expected.torch
        assert blas == [expected.blas] * len(blas)


def test_counts_are_restored_when_learn_raises(thread_counts):
    model = ClippedPPO("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=1), n_steps=32, batch_size=32, seed=0)
    thread_counts(torch=2, blas=2)
    with pytest.raises(RuntimeError, match="callback failed"):
        model.learn(64, callback=RecordThreads(fail_at_step=5))
    assert th.get_num_threads() == 2
    assert blas_threads() == [2] * len(blas_threads())


@pytest.mark.parametrize(
    "fast_path, torch_threads, blas_threads_before", [(True, 2, 1), (False, 1, 2)], ids=["fast-path", "autograd"]
)
def test_manage_threads_false_leaves_both_pools_alone(fast_path, torch_threads, blas_threads_before, thread_counts,
                                                      tmp_path):  # fmt: skip
    """With manage_threads=False, learn neither sets nor restores a thread count: during the rollout, the update and
    after learn, torch and BLAS keep the distinctive counts set before it, which the default rule would change."""
    batch_size = 2 * ROWS_PER_BLAS_THREAD
    model = ClippedPPO("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=1), n_steps=batch_size, batch_size=batch_size,
                       n_epochs=1, fast_path=fast_path, manage_threads=False, seed=0)  # fmt: skip
    assert model.uses_fast_path is fast_path and model.manage_threads is False
    thread_counts(torch=torch_threads, blas=blas_threads_before)
    assert learning_thread_counts(torch_threads, fast_path, batch_size) != (torch_threads, blas_threads_before)
    callback, in_update = RecordThreads(), record_update_threads(model)
    model.learn(2 * batch_size, callback=callback)
    assert len(in_update) == 2 and len(callback.seen) == 2 * batch_size
    for torch_during, blas_during in [*callback.seen, *in_update]:
        assert torch_during == torch_threads
        assert blas_during == [blas_threads_before] * len(blas_during)
    assert th.get_num_threads() == torch_threads and blas_threads() == [blas_threads_before] * len(blas_threads())
    model.save(tmp_path / "model")  # the choice is saved with the model
    assert ClippedPPO.load(tmp_path / "model").manage_threads is False


def test_the_default_follows_the_rule_from_distinctive_counts(thread_counts):
    """The default (manage_threads=True) with the same distinctive counts before learn: the rule's counts during it."""
    batch_size = 2 * ROWS_PER_BLAS_THREAD
    model = ClippedPPO("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=1), n_steps=batch_size, batch_size=batch_size,
                       n_epochs=1, seed=0)  # fmt: skip
    assert model.uses_fast_path and model.manage_threads is True
    thread_counts(torch=2, blas=1)
    callback = RecordThreads()
    model.learn(batch_size, callback=callback)
    expected = learning_thread_counts(2, True, batch_size)
    assert expected == ThreadCounts(torch=1, blas=2)
    assert {(torch_threads, tuple(blas)) for torch_threads, blas in callback.seen} == {
        (expected.torch, (expected.blas,) * len(blas_threads()))
    }
    assert th.get_num_threads() == 2 and blas_threads() == [1] * len(blas_threads())  # restored
