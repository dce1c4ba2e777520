"""Every benchmark command answers ``--help`` with its usage, and ``benchmarks/`` stays a few modules without an import
circle."""

import ast
import json
from pathlib import Path

import pytest

from benchmarks import dataset, profile, report, run, throughput, time_to_return

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {
    "run": (run.main, []),
    "run search": (run.main, ["search"]),
    "run search start": (run.main, ["search", "start"]),
    "dataset": (dataset.main, []),
    "dataset scaling": (dataset.main, ["scaling"]),
    "report": (report.main, []),
    "throughput": (throughput.main, []),
    "time_to_return": (time_to_return.main, []),
    "profile": (profile.main, []),
    **{f"profile {name}": (profile.main, [name]) for name in ("split", "flops", "latency", "cprofile", "masking")},
}

pytestmark = pytest.mark.slow  # needs the bench extra


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_help(name, capsys):
    main, prefix = COMMANDS[name]
    with pytest.raises(SystemExit) as stopped:
        main([*prefix, "--help"])
    assert stopped.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: python -m benchmarks.{name}")
    assert len(text.splitlines()) > 5  # its options, not only the usage line


def test_benchmarks_are_a_few_modules_without_an_import_circle():
    modules = sorted((ROOT / "benchmarks").glob("*.py"))
    assert len(modules) <= 8, [m.name for m in modules]
    imports: dict[str, set[str]] = {}
    for module in modules:
        names = set()
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("benchmarks"):
                names |= {node.module.split(".")[1]} if "." in node.module else {alias.name for alias in node.names}
            elif isinstance(node, ast.Import):
                names |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("benchmarks.")}
        imports[module.stem] = names - {module.stem}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        targets = imports.get(start, ())
        return any(name == goal or (name not in seen and reaches(name, goal, seen | {name})) for name in targets)

    assert [name for name in imports if reaches(name, name, set())] == []


def test_profile_masking_measures_both_algorithms_with_masks(tmp_path):
    """A correctness check on a few steps (the committed figure: benchmarks/results/profile/masking.json)."""
    out = tmp_path / "masking.json"
    results = profile.main(["masking", "--reps", "1", "--steps", "256", "--out", str(out)])
    assert json.loads(out.read_text())["median_ratio"] == results["median_ratio"] > 0
    for algo in profile.MASKED_ALGORITHMS:
        (run,) = results["runs"][algo]
        assert run["masked"] and run["steps"] >= 256
    assert results["runs"]["clippedppo"][0]["fast_path"] is True
