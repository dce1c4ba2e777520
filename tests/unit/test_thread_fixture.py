"""The fixture of tests/conftest.py that keeps thread counts from leaking between tests: a test that changes torch's or
BLAS's count fails (and the count is restored for the tests after it); one that uses the restoring fixtures passes."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

INNER_TESTS = '''
import threadpoolctl
import torch


def test_leaks_torch_threads():
    torch.set_num_threads(torch.get_num_threads() + 1)


def test_leaks_blas_threads():
    threadpoolctl.threadpool_limits(limits=3, user_api="blas")  # not used as a context: never restored


def test_after_the_leaks(thread_counts):
    assert torch.get_num_threads() == 2, "restored after the leak"
    thread_counts(torch=1, blas=1)


def test_with_one_torch_thread(one_torch_thread):
    assert torch.get_num_threads() == 1
'''


def test_a_test_that_leaks_thread_counts_fails(tmp_path):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    # torch starts with 2 threads (the inner tests check that count), BLAS with 2
    env_threads = {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, **env_threads},
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "ERROR test_inner.py::test_leaks_torch_threads" in output, output
    assert "ERROR test_inner.py::test_leaks_blas_threads" in output, output
    assert "the test left the thread counts changed: torch 2 -> 3" in output, output
    assert "PASSED test_inner.py::test_after_the_leaks" in output, output
    assert "PASSED test_inner.py::test_with_one_torch_thread" in output, output
    assert "4 passed, 2 errors" in output, output

