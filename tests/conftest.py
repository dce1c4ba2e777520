"""Layered tests: ``python -m pytest`` runs everything; ``python -m pytest -m "not slow"`` runs the unit tests, with only
the ``test`` extra installed.

The modules below are slow as a whole (``pytestmark = pytest.mark.slow``), and they import packages of other extras
(the RL Zoo, Ray, DM Control, rliable, onnx) at the top. When the marker expression deselects slow tests they are not
collected at all, so that a missing extra cannot break the collection of the fast subset. In a run that selects slow
tests they are collected as usual: a missing extra is then an error, never a silent skip.
"""

from pathlib import Path

import pytest

SLOW_MODULES = frozenset(
    {
        "test_benchmarks.py",  # bench: Ray, the RL Zoo, rliable, DM Control
        "test_benchmarks_cluster.py",  # bench: Ray clusters, Optuna
        "test_export.py",  # export: onnx, onnxruntime
        "test_search.py",  # zoo: the Zoo's --optimize (Optuna, PyYAML)
        "test_wheel_install.py",  # zoo: builds a wheel, installs it in a fresh venv, runs the Zoo
        "test_zoo.py",  # zoo: rl_zoo3 command lines
    }
)


def deselects_slow(config: pytest.Config) -> bool:
    """Whether ``-m`` rules out a test marked only ``slow``."""
    markexpr = config.getoption("markexpr", "") or ""
    if not markexpr:
        return False
    try:
        from _pytest.mark.expression import Expression

        compiled = Expression.compile(markexpr)
        return not compiled.evaluate(lambda name, **kwargs: name == "slow")
    except Exception:  # a pytest without this (private) module: the documented spelling only
        return markexpr.replace(" ", "") == "notslow"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name in SLOW_MODULES and deselects_slow(config):
        return True
    return None
