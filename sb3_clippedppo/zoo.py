"""``sb3_clippedppo.zoo``: the public name of :mod:`sb3_clippedppo.integrations.zoo` (RL Zoo registration), as a module
alias; ``python -m sb3_clippedppo.zoo {train,enjoy,record_video} ...`` runs the Zoo without the import hook."""

import sys

from sb3_clippedppo.integrations import zoo as _zoo

if __name__ == "__main__":
    _zoo.main()
sys.modules[__name__] = _zoo
