"""Helpers to run RL Zoo command lines in subprocesses."""

import ctypes.util
import os
import subprocess
import sys
from pathlib import Path


def run(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 600, python: str = sys.executable):
    """Run ``python ARGS`` in ``cwd``; returns the CompletedProcess (stdout and stderr as text)."""
    full_env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([python, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """Assert a zero exit status, showing the output's tail otherwise."""
    assert result.returncode == 0, (
        f"exit {result.returncode}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}"
    )
    return result


def osmesa_available() -> bool:
    return ctypes.util.find_library("OSMesa") is not None
