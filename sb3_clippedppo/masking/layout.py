"""The layout of an action mask (sb3-contrib's): one boolean per choice of each action component, True where the choice
is valid, flattened to ``n`` entries for ``Discrete(n)``, ``sum(nvec)`` for ``MultiDiscrete(nvec)`` (the components side
by side) and ``2n`` for ``MultiBinary(n)`` (for each bit: may it be 0, may it be 1).

:func:`check_masks` turns what an environment or a caller gives (lists of bools, 0/1 integers or floats, any shape with
the right number of entries per state, as sb3-contrib reshapes them) into a ``(B, mask_dim)`` bool array, and refuses
with a ``ValueError`` naming the expected shape anything else: a wrong size, a dtype that is not boolean, values other
than 0 and 1, or a state where an action component has no valid choice.
"""

from typing import Any

import numpy as np
from gymnasium import spaces

# The action spaces a mask applies to (discrete choices); a Box action has none
MASKABLE_SPACES = (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


def component_sizes(action_space: spaces.Space) -> tuple[int, ...]:
    """
    The number of choices of each action component, whose masks lie side by side: ``(n,)`` for ``Discrete(n)``,
    ``nvec`` for ``MultiDiscrete``, ``(2,) * n`` for ``MultiBinary(n)``.

    :raises TypeError: for an action space without discrete choices (``Box``, ``Dict``, multi-dimensional ``MultiBinary``).
    """
    if isinstance(action_space, spaces.Discrete):
        return (int(action_space.n),)
    if isinstance(action_space, spaces.MultiDiscrete):
        return tuple(int(n) for n in np.asarray(action_space.nvec).reshape(-1))
    if isinstance(action_space, spaces.MultiBinary) and isinstance(action_space.n, (int, np.integer)):
        return (2,) * int(action_space.n)
    raise TypeError(
        "action masks apply to Discrete, MultiDiscrete and one-dimensional MultiBinary action spaces, "
        f"got {action_space}"
    )


def mask_dim(action_space: spaces.Space) -> int:
    """Entries of one state's mask: ``n`` (``Discrete``), ``sum(nvec)`` (``MultiDiscrete``), ``2n`` (``MultiBinary``)."""
    return sum(component_sizes(action_space))


def _expected(action_space: spaces.Space, n_states: int | None) -> str:
    """The expected shape, in words, for error messages."""
    dim = mask_dim(action_space)
    rows = "B" if n_states is None else str(n_states)
    return f"({rows}, {dim}) (or ({dim},) for one state), True where an action is valid, for {action_space}"


def check_masks(masks: Any, action_space: spaces.Space, n_states: int | None = None) -> np.ndarray:
    """
    Masks as a ``(B, mask_dim)`` bool array, checked.

    :param masks: the masks of ``B`` states: an array or nested lists of bools (or of 0/1 integers or floats) with
        ``B * mask_dim`` entries, e.g. ``(B, mask_dim)``, ``(mask_dim,)`` for one state, or ``(B, d, n)`` for
        ``MultiDiscrete`` components of equal size.
    :param action_space: the action space.
    :param n_states: ``B`` when it is known (the environments, the observations); None: from the size.
    :return: the masks, shape ``(B, mask_dim)``, bool (the given array when it already is).
    :raises ValueError: for a wrong number of entries, a dtype other than bool/integer/float, values other than 0 and
        1, or a state where a component has no valid choice; the message names the expected shape.
    """
    dim = mask_dim(action_space)
    array = masks if isinstance(masks, np.ndarray) else np.asarray(masks)
    if array.dtype != np.bool_:
        if array.dtype.kind not in "iuf":
            expected = _expected(action_space, n_states)
            raise ValueError(f"action masks must be booleans, got dtype {array.dtype}; expected {expected}")
        if not np.all((array == 0) | (array == 1)):
            raise ValueError(
                "action masks must hold only True/False (or 1/0), got other values; "
                f"expected {_expected(action_space, n_states)}"
            )
        array = array.astype(np.bool_)
    rows = array.size // dim if dim else 0
    if array.size == 0 or array.size != rows * dim or (n_states is not None and rows != n_states):
        raise ValueError(
            f"action masks of shape {array.shape} do not fit: expected {_expected(action_space, n_states)}"
        )
    array = array.reshape(rows, dim)
    sizes = component_sizes(action_space)
    if len(sizes) == 1:
        valid = array.any(axis=1, keepdims=True)
    else:
        valid = np.logical_or.reduceat(array, np.cumsum((0, *sizes[:-1])), axis=1)
    if not valid.all():
        state, component = np.argwhere(~valid)[0]
        where = f"state {state}" + (f", component {component}" if len(sizes) > 1 else "")
        raise ValueError(
            f"action masks leave no valid action ({where}): each state needs at least one True per action component; "
            f"expected {_expected(action_space, n_states)}"
        )
    return array
