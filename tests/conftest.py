"""Layered tests: ``python -m pytest`` runs everything; ``python -m pytest -m "not slow"`` runs the unit tests, with only
the ``test`` extra installed.

A test module that is slow as a whole says so with ``pytestmark = pytest.mark.slow`` at its top level; such modules
(the RL Zoo, the benchmarks, the ONNX export, the wheel install, ...) import packages of other extras at the top.
When the marker expression deselects slow tests they are not collected at all, so that a missing extra cannot break
the collection of the fast subset. In a run that selects slow tests they are collected as usual: a missing extra is
then an error, never a silent skip.
"""

import re
from pathlib import Path

import pytest

SLOW_MODULE = re.compile(r"^pytestmark = pytest\.mark\.slow\b", re.M)


def is_slow_module(path: Path) -> bool:
    """Whether a test module marks all its tests slow (``pytestmark = pytest.mark.slow`` at its top level)."""
    return path.suffix == ".py" and path.name.startswith("test_") and bool(SLOW_MODULE.search(path.read_text()))


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
    if is_slow_module(collection_path) and deselects_slow(config):
        return True
    return None
