"""The package's layers, from its source (every import statement, at any depth: inside functions and under
``TYPE_CHECKING`` too, where circles hide): integrations -> algorithm -> backends -> core, never the other way, only the
backend chooser knows both backends, and no import circle (docs/algorithm.md, "Layout")."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "sb3_clippedppo"

INTEGRATIONS = f"{PACKAGE}.integrations"
ALLOWED_TO_IMPORT_INTEGRATIONS = {f"{PACKAGE}.zoo", f"{PACKAGE}.export", f"{PACKAGE}._build"}  # the public aliases
AUTOGRAD, CLOSED_FORM, CHOOSER = (f"{PACKAGE}.backends.{name}" for name in ("autograd", "closed_form", "chooser"))
CORE = [f"{PACKAGE}.{name}" for name in ("losses", "buffers", "gae", "distributions", "policies", "normalization")]


def module_files(package_dir: Path) -> dict[str, Path]:
    """Module name -> file, for every module of the package (a package by its ``__init__.py``)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = module_files(ROOT / PACKAGE)


def imported(module: str, modules: dict[str, Path] = MODULES) -> set[str]:
    """The package's modules that ``module`` imports anywhere in its source: ``import a.b``, ``from a import b`` (the
    module ``a.b`` if there is one, else ``a``), relative imports resolved."""
    path = modules[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            for alias in node.names:
                found.add(f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in modules else stem)
    return {name for name in found if name in modules and name != module}


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def imports_of(prefix: str) -> list[str]:
    """The modules (outside ``prefix``) that import a module within ``prefix``."""
    return sorted(m for m in MODULES if not within(m, prefix) and any(within(i, prefix) for i in imported(m)))


def test_the_parser_sees_imports_at_any_depth(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pkg.sub import c\n"
        "def f():\n    import pkg.b\n    from .sub.c import name\n"
    )
    (package / "b.py").write_text("class B:\n    def m(self):\n        from . import a\n")
    (package / "sub" / "c.py").write_text("from .. import b\nfrom ..sub import d\nimport os\n")
    (package / "sub" / "d.py").write_text("")
    modules = module_files(package)
    assert imported("pkg.a", modules) == {"pkg.sub.c", "pkg.b"}
    assert imported("pkg.b", modules) == {"pkg.a"}
    assert imported("pkg.sub.c", modules) == {"pkg.b", "pkg.sub.d"}
    assert cycles(modules) == [["pkg.a", "pkg.b", "pkg.sub.c"]]


def test_the_layers_exist():
    for name in (INTEGRATIONS, f"{INTEGRATIONS}.zoo", f"{INTEGRATIONS}.zoo_hook", f"{INTEGRATIONS}.export", AUTOGRAD,
                 CLOSED_FORM, CHOOSER, f"{PACKAGE}.backends.base", f"{PACKAGE}.clipped_ppo", *CORE):  # fmt: skip
        assert name in MODULES, name


def test_only_the_integrations_and_the_public_aliases_import_the_integrations():
    assert set(imports_of(INTEGRATIONS)) <= ALLOWED_TO_IMPORT_INTEGRATIONS, imports_of(INTEGRATIONS)
    assert {f"{PACKAGE}.zoo", f"{PACKAGE}.export"} <= set(imports_of(INTEGRATIONS))  # the aliases do, as the test sees it


def test_only_the_chooser_knows_both_backends():
    both = [m for m in MODULES if any(within(i, AUTOGRAD) for i in imported(m))
            and any(within(i, CLOSED_FORM) for i in imported(m))]  # fmt: skip
    assert both == [CHOOSER]
    # and neither backend imports the other
    assert not [m for m in MODULES if within(m, CLOSED_FORM) and any(within(i, AUTOGRAD) for i in imported(m))]
    assert not any(within(i, CLOSED_FORM) for i in imported(AUTOGRAD))


@pytest.mark.parametrize("core", CORE)
def test_the_core_imports_neither_the_backends_nor_the_algorithm(core):
    above = [i for i in imported(core) if within(i, f"{PACKAGE}.backends") or within(i, f"{PACKAGE}.clipped_ppo")
             or within(i, INTEGRATIONS)]  # fmt: skip
    assert not above, f"{core} imports {above}"


def test_the_backends_do_not_import_the_algorithm():
    for module in MODULES:
        if within(module, f"{PACKAGE}.backends"):
            assert f"{PACKAGE}.clipped_ppo" not in imported(module), module


def cycles(modules: dict[str, Path]) -> list[list[str]]:
    """The import circles: strongly connected components of more than one module, ignoring the edges between a package
    and its own submodules (a package's ``__init__`` re-exporting its modules is not a circle)."""
    edges = {m: {i for i in imported(m, modules) if not within(i, m) and not within(m, i)} for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return sorted(found)


def test_no_import_circle():
    assert cycles(MODULES) == []

