"""The fixtures of tests/conftest.py that keep thread counts from leaking between tests: the session runs torch on one
thread; a test that changes torch's or BLAS's count fails (and the count is restored for the tests after it); one that
uses the restoring fixtures passes."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

INNER_TESTS = '''
import threadpoolctl
import torch


def blas():
    return {info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"}


def test_the_session_runs_torch_on_one_thread():
    assert torch.get_num_threads() == 1 and blas() == {2}


def test_leaks_torch_threads():
    torch.set_num_threads(torch.get_num_threads() + 1)


def test_leaks_blas_threads():
    threadpoolctl.threadpool_limits(limits=3, user_api="blas")  # not used as a context: never restored


def test_after_the_leaks(thread_counts):
    assert torch.get_num_threads() == 1 and blas() == {2}, "restored after the leaks"
    thread_counts(torch=2, blas=1)
    assert torch.get_num_threads() == 2 and blas() == {1}


def test_after_thread_counts(one_torch_thread):
    assert torch.get_num_threads() == 1 and blas() == {2}, "restored by the fixture"
'''


def test_a_test_that_leaks_thread_counts_fails(tmp_path):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    # torch and BLAS start with 2 threads; the session's fixture gives torch 1
    env_threads = {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, **env_threads},
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "ERROR test_inner.py::test_leaks_torch_threads" in output, output
    assert "ERROR test_inner.py::test_leaks_blas_threads" in output, output
    assert "the test left the thread counts changed: torch 1 -> 2" in output, output
    assert "BLAS {" in output and "2} -> {" in output and ": 3}" in output, output
    for name in ("test_the_session_runs_torch_on_one_thread", "test_after_the_leaks", "test_after_thread_counts"):
        assert f"PASSED test_inner.py::{name}" in output, output
    assert "5 passed, 2 errors" in output, output

