"""Sphinx configuration: the guide (Markdown through MyST) and the API reference (autodoc, SB3-style ``:param:`` docstrings).

Build with warnings as errors, as CI does: ``python -m sphinx -W -b html docs docs/_build/html``.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sb3_clippedppo  # noqa: E402

project = "sb3_clippedppo"
author = "sb3_clippedppo contributors"
copyright = "2026, sb3_clippedppo contributors"
release = sb3_clippedppo.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]

# Markdown: heading anchors for links between pages (history.md#tuned-clippedppo).
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Stable-Baselines3's and torch's own docstrings are theirs: document only what this package defines.
autodoc_inherit_docstrings = False

html_theme = "alabaster"
html_title = f"sb3_clippedppo {release}"
html_static_path: list[str] = []
