"""Layered tests: ``tests/unit/`` (fast, with only the ``test`` extra: ``python -m pytest tests/unit``) and ``tests/slow/``
(learning runs, the RL Zoo's command lines, the ONNX export, the wheel install, the benchmarks and their Ray cluster;
``tests/slow/conftest.py`` marks them ``slow``). ``python -m pytest`` runs both.

The session runs torch on one thread (:func:`torch_on_one_thread`, restored at its end), and every test leaves the
thread counts as it found them (:func:`thread_counts_are_restored`): ``torch.set_num_threads`` and threadpoolctl's
limits are process-wide, so a test that changed them would change the speed, and possibly the float rounding, of every
test after it. A test that needs other counts asks for :func:`one_torch_thread` or :func:`thread_counts`, which restore
them.
"""

from collections.abc import Callable, Iterator

import pytest
import threadpoolctl
import torch as th


def blas_thread_counts() -> dict[str, int]:
    """Threads of each BLAS library loaded in this process (NumPy's OpenBLAS at least), by file path."""
    controller = threadpoolctl.ThreadpoolController().select(user_api="blas")
    return {library.filepath: library.num_threads for library in controller.lib_controllers}


def set_blas_thread_counts(counts: dict[str, int]) -> None:
    """Set each BLAS library of ``counts`` that is loaded to its count."""
    for library in threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers:
        if library.filepath in counts:
            library.set_num_threads(counts[library.filepath])


@pytest.fixture(scope="session", autouse=True)
def torch_on_one_thread() -> Iterator[None]:
    """Torch on one thread for the whole session (restored at its end). The tests' networks are small: with two or more
    OpenMP threads, on a machine whose cores are busy (CI's 2 cores with a test's subprocess beside it, or a benchmark
    running alongside), spinning threads made them several times slower (test_custom_policies.py: 71 s against 13 s
    with one thread, on 2 shared cores). Tests about threads set their own counts (``thread_counts``)."""
    before = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(before)


@pytest.fixture(autouse=True)
def thread_counts_are_restored() -> Iterator[None]:
    """Fails a test that leaves torch's thread count or a BLAS library's different from what it found (after restoring
    them, so that the tests after it are not affected)."""
    torch_before, blas_before = th.get_num_threads(), blas_thread_counts()
    yield
    torch_after = th.get_num_threads()
    blas_after = {path: count for path, count in blas_thread_counts().items() if path in blas_before}
    if torch_after == torch_before and blas_after == blas_before:
        return
    th.set_num_threads(torch_before)
    set_blas_thread_counts(blas_before)
    pytest.fail(
        f"the test left the thread counts changed: torch {torch_before} -> {torch_after}, BLAS {blas_before} -> "
        f"{blas_after}; use the one_torch_thread or thread_counts fixture, which restore them"
    )


@pytest.fixture
def thread_counts() -> Iterator[Callable[..., None]]:
    """``thread_counts(torch=n, blas=m)`` sets torch's and every BLAS library's thread counts for the rest of the test
    (either may be left out); both are restored after it."""
    torch_before, blas_before = th.get_num_threads(), blas_thread_counts()

    def set_counts(torch: int | None = None, blas: int | None = None) -> None:
        if torch is not None:
            th.set_num_threads(torch)
        if blas is not None:
            set_blas_thread_counts(dict.fromkeys(blas_thread_counts(), blas))

    yield set_counts
    th.set_num_threads(torch_before)
    set_blas_thread_counts(blas_before)


@pytest.fixture
def one_torch_thread(thread_counts: Callable[..., None]) -> None:
    """Torch on one thread for the test (restored after it), whatever the session's count: the learning tests'
    thresholds were measured so, and ``learn`` derives both pools' counts from it (``sb3_clippedppo.threads``), which
    gives BLAS one thread too."""
    thread_counts(torch=1)
