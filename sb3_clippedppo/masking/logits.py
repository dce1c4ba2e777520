"""Masked logits, as sb3-contrib's ``MaskablePPO`` sets them: the logit of an invalid choice becomes
:data:`MASKED_LOGIT` (``-1e8``), so that its probability is exactly 0 in float32 (and float64) and it is never sampled,
while the valid choices keep their logits; the gradient reaches only the valid choices' logits.

With these logits the distributions of :mod:`sb3_clippedppo.distributions` need nothing else: a masked choice has
probability exactly 0, so its term ``p log p`` of the entropy is exactly 0 (the entropy excludes masked entries, as
sb3-contrib's ``MaskableCategorical.entropy`` does) and so are its terms of the KL divergence between two distributions
with the same masks; log-probabilities of valid actions are those of the renormalized valid choices.

``MultiBinary(n)`` actions keep this package's ``n`` log-odds (a Bernoulli per bit): a bit whose 0 (or 1) is invalid gets
the log-odds ``+1e8`` (or ``-1e8``), the two-choice categorical ``(0, l)`` masked as sb3-contrib masks its two logits
per bit.
"""

from typing import Any

import numpy as np
import torch as th

from sb3_clippedppo.distributions import Bernoulli, Categorical, Distribution, MultiCategorical

# The logit of an invalid choice (sb3-contrib's value): exp(-1e8 - logsumexp) is exactly 0 in float32 and float64
MASKED_LOGIT = -1e8

# A torch tensor or a NumPy array
Array = Any


def masked_logits(logits: Array, masks: Array) -> Array:
    """
    ``logits`` where ``masks`` is True, :data:`MASKED_LOGIT` elsewhere (a tensor or a NumPy array alike).

    :param logits: shape ``(B, mask_dim)`` (categorical and multi-categorical logits side by side).
    :param masks: bool, the same shape (a tensor on the logits' device, or a NumPy array).
    :return: the masked logits, the dtype of ``logits``.
    """
    if isinstance(logits, th.Tensor):
        return th.where(masks, logits, th.tensor(MASKED_LOGIT, dtype=logits.dtype, device=logits.device))
    return np.where(masks, logits, logits.dtype.type(MASKED_LOGIT))


def masked_bernoulli_logits(logits: Array, masks: Array) -> Array:
    """
    Bernoulli log-odds ``(B, n)`` masked by sb3-contrib's ``MultiBinary`` masks ``(B, 2n)`` (for bit ``i``, entries
    ``2i`` and ``2i + 1``: may it be 0, may it be 1): unchanged where both are valid, ``-1e8`` where only 0 is, ``+1e8``
    where only 1 is.
    """
    if isinstance(logits, th.Tensor):
        pairs = masks.reshape(*logits.shape, 2)
        forced = th.where(pairs[..., 1], -MASKED_LOGIT, MASKED_LOGIT).to(logits.dtype)
        return th.where(pairs[..., 0] & pairs[..., 1], logits, forced)
    array_pairs = np.asarray(masks).reshape(*logits.shape, 2)
    array_forced = np.where(array_pairs[..., 1], -MASKED_LOGIT, MASKED_LOGIT).astype(logits.dtype)
    return np.where(array_pairs[..., 0] & array_pairs[..., 1], logits, array_forced)


def masks_as_tensor(masks: Any, like: th.Tensor) -> th.Tensor:
    """Masks as a bool tensor on the device of ``like`` (no copy when they already are)."""
    return th.as_tensor(masks, dtype=th.bool, device=like.device)


def masked_distribution(distribution: Distribution, masks: Any) -> Distribution:
    """
    The distributions with the choices that ``masks`` marks invalid removed: the same class with masked logits
    (:func:`masked_logits`, :func:`masked_bernoulli_logits`), so that sampling (with any noise), ``mode``, log-probabilities,
    entropy and the KL divergence to another masked batch follow.

    :param distribution: a batch of ``B`` :class:`~sb3_clippedppo.distributions.Categorical`,
        :class:`~sb3_clippedppo.distributions.MultiCategorical` or :class:`~sb3_clippedppo.distributions.Bernoulli`.
    :param masks: bool masks of shape ``(B, mask_dim)`` (a tensor or an array, checked by the caller:
        :func:`~sb3_clippedppo.masking.layout.check_masks`).
    :return: the masked distributions.
    :raises TypeError: for a distribution over ``Box`` actions (or any other kind), which has no choices to mask.
    """
    if isinstance(distribution, Categorical):
        return Categorical(masked_logits(distribution.logits, masks_as_tensor(masks, distribution.logits)))
    if isinstance(distribution, MultiCategorical):
        logits = distribution.logits
        return MultiCategorical(masked_logits(logits, masks_as_tensor(masks, logits)), distribution.nvec)
    if isinstance(distribution, Bernoulli):
        logits = distribution.logits
        return Bernoulli(masked_bernoulli_logits(logits, masks_as_tensor(masks, logits)))
    raise TypeError(
        f"action masks apply to categorical, multi-categorical and Bernoulli distributions (Discrete, MultiDiscrete, "
        f"MultiBinary actions), got {type(distribution).__name__}"
    )
