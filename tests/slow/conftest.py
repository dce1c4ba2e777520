"""Every test under ``tests/slow/`` is marked ``slow``: learning runs, the RL Zoo's command lines, the ONNX export, the
wheel install, the benchmarks and their Ray cluster. Some of them need extras beyond ``test`` (zoo, dmc, bench,
export); ``python -m pytest tests/unit`` leaves them out, ``python -m pytest`` runs them."""

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m selection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A hook of a conftest below the root sees every collected item: mark only this folder's.
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.slow)
