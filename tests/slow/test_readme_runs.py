"""README.md's Python runs as written (with fewer steps): the quickstart in a fresh interpreter, and the export
section's command and Python block (needs the export extra)."""

import re
import subprocess
import sys
from pathlib import Path

from tests.unit.test_readme import README, python_blocks

# The quickstart's training budget, and what the test runs instead (one rollout of SB3's default 2048 steps).
FULL_BUDGET = "total_timesteps=1_000_000"
TEST_BUDGET = "total_timesteps=2_048"


def run_quickstart(folder: Path) -> None:
    """The README's quickstart (its first Python block), in a fresh interpreter in ``folder``, with one rollout."""
    code = python_blocks(README)[0]
    assert FULL_BUDGET in code
    code = code.replace(FULL_BUDGET, TEST_BUDGET)
    result = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (folder / "cheetah.zip").is_file()


def test_readme_python_runs(tmp_path):
    """The quickstart, run in a fresh interpreter in an empty folder, with one rollout of training."""
    run_quickstart(tmp_path)


def test_readme_export_runs_without_torch_or_sb3(tmp_path):
    """The export section (needs the export extra): its command on the quickstart's model, then its Python block, which
    drives HalfCheetah-v4 with onnxruntime and Gymnasium alone."""
    run_quickstart(tmp_path)
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
