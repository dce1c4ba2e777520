"""``sb3_clippedppo.export``: the public name of :mod:`sb3_clippedppo.integrations.export` (ONNX export), as a module
alias; ``python -m sb3_clippedppo.export`` runs its command."""

import sys

from sb3_clippedppo.integrations import export as _export

if __name__ == "__main__":
    sys.exit(_export.main())
sys.modules[__name__] = _export
