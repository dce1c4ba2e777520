"""README.md says what is true: its commands are the ones CI runs, its install command comes first, and its links lead
somewhere (that its Python runs as written: ``tests/slow/test_readme_runs.py``)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


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
    assert "`python -m pytest tests/unit`" in README
    assert "python -m pytest tests/unit" in (ROOT / "docs" / "getting_started.md").read_text()


def test_readme_links_exist():
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


def test_docs_quickstart_is_the_readme_quickstart():
    readme_code = python_blocks(README)[0]
    assert readme_code in python_blocks((ROOT / "docs" / "getting_started.md").read_text())
