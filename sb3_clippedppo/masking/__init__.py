"""Invalid-action masking with sb3-contrib's ``MaskablePPO`` protocol (core level: the algorithm and the backends import
it; it imports neither).

One concept per module:

- :mod:`.layout`: the mask's layout for an action space (True means valid; ``n`` entries for ``Discrete(n)``,
  ``sum(nvec)`` for ``MultiDiscrete(nvec)``, ``2n`` for ``MultiBinary(n)``, as sb3-contrib's) and its validation;
- :mod:`.logits`: masked logits as ``MaskablePPO`` sets them, and masked distributions;
- :mod:`.reading`: the masks of a vectorized environment's current states, read as cheaply as the VecEnv allows;
- :mod:`.prediction`: ``predict`` with masks.
"""

from sb3_clippedppo.masking.layout import MASKABLE_SPACES, check_masks, component_sizes, mask_dim
from sb3_clippedppo.masking.logits import MASKED_LOGIT, masked_distribution, masked_logits
from sb3_clippedppo.masking.reading import MaskReader, offers_masks

__all__ = [
    "MASKABLE_SPACES",
    "MASKED_LOGIT",
    "MaskReader",
    "check_masks",
    "component_sizes",
    "mask_dim",
    "masked_distribution",
    "masked_logits",
    "offers_masks",
]
