"""README.md says what is true: its commands are the ones CI runs, its Python runs as written (with fewer steps), its
install command comes first, and its links lead somewhere."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# The quickstart's training budget, and what the test runs instead (one rollout of SB3's default 2048 steps).
FULL_BUDGET = "total_timesteps=1_000_000"
TEST_BUDGET = "total_timesteps=2_048"


def readme_command(heading: str) -> str:
    section = README.split(heading, 1)[1]
    return re.search(r"```(?:bash|sh)\n(.*?)\n```", section, re.S).group(1).strip()


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_ci_runs_the_readme_test_command():
    command = readme_command("## Run the tests")
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines


def test_the_test_command_builds_the_docs_as_the_readme_says():
    command = readme_command("## Run the tests")
    docs_build = "python -m sphinx -W -b html docs docs/_build/html"
    assert f"&& {docs_build} &&" in command
    assert f"`{docs_build}`" in README.split("## Documentation", 1)[1]
    assert ",docs]" in command and "export" in command


def test_install_comes_first_and_the_readme_stays_short():
    lines = README.splitlines()
    first_install = next(number for number, line in enumerate(lines, 1) if "pip install" in line)
    assert first_install <= 40
    assert len(README.split()) <= 1500


def test_fast_subset_is_documented():
    assert 'python -m pytest -m "not slow"' in README


def test_readme_links_exist():
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


def test_docs_quickstart_is_the_readme_quickstart():
    readme_code = python_blocks(README)[0]
    assert readme_code in python_blocks((ROOT / "docs" / "getting_started.md").read_text())


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


@pytest.mark.slow
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
