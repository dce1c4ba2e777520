"""Import hook that registers ClippedPPO with the RL Baselines3 Zoo, so that ``python -m rl_zoo3.train --algo clippedppo``
works without editing the Zoo.

The package installs ``sb3_clippedppo_zoo.pth`` into site-packages; Python runs its single line at start-up, which
calls :func:`install` unless the environment variable ``SB3_CLIPPEDPPO_ZOO_HOOK`` is ``0`` (or ``false``, ``no``,
``off``). :func:`install` puts a finder at the front of ``sys.meta_path`` that waits for ``rl_zoo3.utils``,
``rl_zoo3.hyperparams_opt`` and ``rl_zoo3.exp_manager``: right after one of them is executed,
:func:`sb3_clippedppo.integrations.zoo.register_module` adds ClippedPPO to it. Until then nothing else is imported: this module
uses the standard library only, so interpreter start-up never imports torch. A failure to register becomes a
warning; it never breaks the Zoo. Calling :func:`install` again does nothing.
"""

import importlib.abc
import os
import sys
import warnings
from types import ModuleType
from typing import Any

ENV_VAR = "SB3_CLIPPEDPPO_ZOO_HOOK"
TARGETS = frozenset({"rl_zoo3.utils", "rl_zoo3.hyperparams_opt", "rl_zoo3.exp_manager"})


def enabled() -> bool:
    """Whether the hook is switched on (``SB3_CLIPPEDPPO_ZOO_HOOK`` unset, or not one of 0/false/no/off)."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


def _register(module: ModuleType) -> None:
    try:
        from sb3_clippedppo.integrations import zoo

        zoo.register_module(module)
    except Exception as error:  # never break the Zoo
        warnings.warn(f"sb3_clippedppo could not register ClippedPPO in {module.__name__}: {error!r}", RuntimeWarning)


class _RegisteringLoader(importlib.abc.Loader):
    """Wraps a module's loader: executes the module, then registers ClippedPPO in it."""

    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _register(module)

    def __getattr__(self, name: str) -> Any:  # get_code, get_source, get_resource_reader, ...
        return getattr(self._loader, name)


class ZooFinder(importlib.abc.MetaPathFinder):
    """Finds the targeted Zoo modules with the other finders and wraps their loaders."""

    sb3_clippedppo_zoo_finder = True

    def find_spec(self, fullname, path, target=None):
        if fullname not in TARGETS:
            return None
        for finder in sys.meta_path:
            if getattr(finder, "sb3_clippedppo_zoo_finder", False) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


def install() -> None:
    """Install the finder (once) unless switched off; register right away in Zoo modules already imported."""
    if not enabled():
        return
    if not any(getattr(finder, "sb3_clippedppo_zoo_finder", False) for finder in sys.meta_path):
        sys.meta_path.insert(0, ZooFinder())
    for name in sorted(TARGETS):
        module = sys.modules.get(name)
        if module is not None:
            _register(module)
