"""The networks' inputs from observations, as SB3's ``preprocess_obs`` and ``FlattenExtractor`` give them: a non-image
``Box`` cast to float32 and flattened; ``Discrete(n)`` one-hot, ``n`` features; ``MultiDiscrete(nvec)`` (one-dimensional
``nvec``) one one-hot block per component side by side, ``sum(nvec)`` features; ``MultiBinary`` cast to float32 and
flattened. The masked tasks' observations (board games, scheduling, grids) are often of the last three kinds; with this,
they train on the fast path too.
"""

from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space

# A NumPy array or a torch tensor
Array = Any


class ObservationLayout(NamedTuple):
    """How observations of a space become the networks' float32 inputs ``(B, dim)``."""

    dim: int  # features per observation
    offsets: np.ndarray | None  # Discrete / MultiDiscrete: each component's first one-hot column; None: cast, flatten
    width: int  # entries of one stored observation (1 for Discrete, len(nvec) for MultiDiscrete, prod(shape) otherwise)


def observation_layout(space: spaces.Space, normalize_images: bool = True) -> ObservationLayout | str:
    """
    The layout of ``space``'s observations as network inputs, or why the closed form does not take them.

    :param space: the observation space.
    :param normalize_images: the policy's ``normalize_images`` (images are not taken).
    :return: the layout, or the reason as a sentence.
    """
    if isinstance(space, spaces.Discrete):
        return ObservationLayout(int(space.n), np.zeros(1, dtype=np.int64), 1)
    if isinstance(space, spaces.MultiDiscrete):
        if np.ndim(space.nvec) != 1:
            return f"MultiDiscrete observations with a multi-dimensional nvec are not taken: {space}"
        nvec = np.asarray(space.nvec, dtype=np.int64)
        return ObservationLayout(int(nvec.sum()), np.concatenate(([0], np.cumsum(nvec)[:-1])), len(nvec))
    if isinstance(space, spaces.MultiBinary):
        size = int(np.prod(space.shape))
        return ObservationLayout(size, None, size)
    if isinstance(space, spaces.Box) and not (normalize_images and is_image_space(space)):
        size = int(np.prod(space.shape))
        return ObservationLayout(size, None, size)
    return f"observations are not a (non-image) Box, Discrete, MultiDiscrete or MultiBinary: {space}"


def network_inputs(observations: Array, layout: ObservationLayout, xp: Any) -> Array:
    """
    Observations ``(B, *obs_shape)`` as float32 inputs ``(B, layout.dim)``: one-hot for ``Discrete`` and
    ``MultiDiscrete`` (as ``preprocess_obs``), otherwise cast and flattened (no copy when they already are float32).

    :param observations: a NumPy array (``xp`` is ``numpy``) or a tensor (``xp`` is ``torch``).
    :param layout: the space's :class:`ObservationLayout`.
    :param xp: ``numpy`` or ``torch``.
    """
    x = observations.reshape(-1, layout.width)
    if layout.offsets is None:
        return np.asarray(x, dtype=np.float32) if xp is np else x.to(dtype=th.float32)
    if xp is np:
        indices = x.astype(np.int64, copy=False) + layout.offsets
        one_hot = np.zeros((len(indices), layout.dim), dtype=np.float32)
        np.put_along_axis(one_hot, indices, np.float32(1.0), axis=1)
        return one_hot
    indices = x.long() + th.as_tensor(layout.offsets, device=x.device)
    return th.zeros((len(indices), layout.dim), dtype=th.float32, device=x.device).scatter_(1, indices, 1.0)
