"""setuptools build steps (named in setup.cfg's ``cmdclass``); used at build time only.

- ``build_py`` also writes ``sb3_clippedppo_zoo.pth`` into site-packages (for both normal and editable installs),
  which installs the RL Zoo import hook at interpreter start-up (see :mod:`sb3_clippedppo.integrations.zoo_hook`), and, for a
  normal install, copies the top-level ``hyperparams/*.yml`` into the package. Editable installs read them from the
  source tree instead (:func:`sb3_clippedppo.integrations.zoo.hyperparams_path`).
- ``sdist`` adds ``hyperparams/*.yml`` to source distributions.
"""

import glob
import os

from setuptools.command.build_py import build_py as _build_py
from setuptools.command.sdist import sdist as _sdist

PTH_NAME = "sb3_clippedppo_zoo.pth"
# One line, run by Python's site module at start-up. Standard library only until the Zoo is imported.
PTH_LINE = (
    'import sys; exec("try:\\n    from sb3_clippedppo.integrations import zoo_hook\\nexcept ImportError:\\n    pass\\n'
    'else:\\n    zoo_hook.install()")\n'
)
HYPERPARAMS_GLOB = os.path.join("hyperparams", "*.yml")


class build_py(_build_py):  # named after the setuptools command it replaces
    def run(self) -> None:
        super().run()
        editable = getattr(self, "editable_mode", False)
        if not editable:
            target_dir = os.path.join(self.build_lib, "sb3_clippedppo", "hyperparams")
            self.mkpath(target_dir)
            for source in sorted(glob.glob(HYPERPARAMS_GLOB)):
                self.copy_file(source, os.path.join(target_dir, os.path.basename(source)))
        # Editable wheels take extra files from the install directory, normal wheels from build_lib.
        site_dir = self.get_finalized_command("install").install_lib if editable else self.build_lib
        self.mkpath(site_dir)
        with open(os.path.join(site_dir, PTH_NAME), "w") as f:
            f.write(PTH_LINE)


class sdist(_sdist):  # named after the setuptools command it replaces
    def add_defaults(self) -> None:
        super().add_defaults()
        self.filelist.extend(sorted(glob.glob(HYPERPARAMS_GLOB)))
