"""The closed form (the fast path) for this package's MLP policies on vector observations: the MLP arithmetic
(:mod:`.mlp`), where it applies (:mod:`.applicability`), flat parameter storage (:mod:`.parameters`), the NumPy actor
(:mod:`.actor`) and the backend (:mod:`.backend`)."""

from sb3_clippedppo.backends.closed_form.applicability import closed_form_networks
from sb3_clippedppo.backends.closed_form.backend import ClosedFormBackend

__all__ = ["ClosedFormBackend", "closed_form_networks"]
