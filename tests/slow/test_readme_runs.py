"""README.md's Python runs as written (with fewer steps): the quickstart in a fresh interpreter, and the export
section's command and Python block (needs the export extra)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_readme import README, python_blocks

# The quickstart's training budget, and what the test runs instead (one rollout of SB3's default 2048 steps).
FULL_BUDGET = "total_timesteps=1_000_000"
TEST_BUDGET = "total_timesteps=2_048"


@pytest.fixture(scope="module")
def quickstart_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder in which the README's quickstart (its first Python block) ran, in a fresh interpreter, with one rollout
    of training instead of its million steps; both tests here use it (the export section starts from its model)."""
    folder = tmp_path_factory.mktemp("quickstart")
    code = python_blocks(README)[0]
    assert FULL_BUDGET in code
    code = code.replace(FULL_BUDGET, TEST_BUDGET)
    result = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def test_readme_python_runs(quickstart_folder):
    """The quickstart, run in a fresh interpreter in an empty folder, saved its model."""
    assert (quickstart_folder / "cheetah.zip").is_file()


def test_readme_export_runs_without_torch_or_sb3(quickstart_folder, tmp_path):
    """The export section (needs the export extra): its command on the quickstart's model, then its Python block, which
    drives HalfCheetah-v4 with onnxruntime and Gymnasium alone."""
    shutil.copytree(quickstart_folder, tmp_path, dirs_exist_ok=True)  # what the quickstart left: its model
    section = README.split("## Deploy: export to ONNX", 1)[1].split("\n## ", 1)[0]
    command = next(line for block in re.findall(r"```bash\n(.*?)```", section, re.S) for line in block.splitlines()
                   if "sb3_clippedppo.export" in line)  # fmt: skip
    args = command.split()
    assert args[:3] == ["python", "-m", "sb3_clippedppo.export"] and args[-1] == "policy.onnx"
    export = [sys.executable, "-m", "sb3_clippedppo.export", "cheetah.zip", "policy.onnx"]  # a model zip for the run folder
    result = subprocess.run(export, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (code,) = python_blocks(section)
    code += '\nimport sys\nassert not {"torch", "stable_baselines3"} & set(sys.modules), sorted(sys.modules)\n'
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
