"""The closed form's categorical actions: ``Discrete(n)`` (one component) and ``MultiDiscrete(nvec)`` (independent
components, logits side by side, ``sum(nvec)`` outputs), with or without action masks (:mod:`sb3_clippedppo.masking`).

The loss's terms are the distributions' own expressions (:mod:`sb3_clippedppo.distributions`) summed over components;
their gradient with respect to each component's logits ``l`` (probabilities ``p``, entropy ``H``) is, per sample of a
minibatch of ``B``, for a gradient ``g`` of the loss with respect to the log-probability:
``g (onehot(a) - p) + ent_coef / B * p (log p + H) + beta / B * (p - p_old)`` (the last term for PPO-Penalty's
``KL(p_old || p)``). With masks, the logits are masked first (``-1e8`` for an invalid choice, whose probability is then
exactly 0) and the gradient of an invalid choice's logit is 0, as autograd gives it through ``where``.
"""

from typing import Any

import numpy as np
import torch as th

from sb3_clippedppo.distributions import categorical_entropy, categorical_kl, categorical_log_prob, log_softmax

# A NumPy array or a torch tensor
Array = Any


def components(logits: Array, nvec: tuple[int, ...]) -> list[Array]:
    """Each component's logits ``(B, n_i)``, views of ``logits`` ``(B, sum(nvec))``."""
    if len(nvec) == 1:
        return [logits]
    bounds = np.cumsum((0, *nvec))
    return [logits[:, start:stop] for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]


def action_columns(actions: Array, n_components: int) -> list[Array]:
    """Each component's action indices ``(B,)``: the actions ``(B,)`` of one component, or ``(B, d)``."""
    if n_components == 1:
        return [actions.reshape(-1)]
    actions = actions.reshape(-1, n_components)
    return [actions[:, index] for index in range(n_components)]


def log_prob_and_entropy(logits: Array, actions: Array, nvec: tuple[int, ...]) -> tuple[Array, Array]:
    """``log pi(a|s)`` and ``H(pi(.|s))``, each ``(B,)``, summed over the components."""
    parts = components(logits, nvec)
    columns = action_columns(actions, len(nvec))
    log_prob = sum(categorical_log_prob(part, column) for part, column in zip(parts, columns, strict=True))
    return log_prob, sum(categorical_entropy(part) for part in parts)


def kl(old_logits: Array, logits: Array, nvec: tuple[int, ...]) -> Array:
    """``KL(old || new)``, ``(B,)``, summed over the components."""
    pairs = zip(components(old_logits, nvec), components(logits, nvec), strict=True)
    return sum(categorical_kl(old, new) for old, new in pairs)


def logits_gradient(
    logits: Array,
    actions: Array,
    grad_log_prob: Array,
    ent_coef: float,
    kl_coef: float | None,
    old_logits: Array,
    nvec: tuple[int, ...],
    masks: Array | None,
    xp: Any,
) -> Array:
    """
    The loss's gradient with respect to the (masked) logits, ``(B, sum(nvec))`` (see the module's docstring).

    :param logits: the actor's output, masked where masks are given.
    :param actions: action indices, ``(B,)`` or ``(B, d)``.
    :param grad_log_prob: ``dL / d log pi(a_i|s_i)``, ``(B,)``.
    :param ent_coef: the entropy coefficient.
    :param kl_coef: PPO-Penalty's beta, or None for the clipped objective.
    :param old_logits: the rollout policy's logits (PPO-Penalty only).
    :param nvec: the components' sizes.
    :param masks: bool ``(B, sum(nvec))`` or None.
    :param xp: ``numpy`` or ``torch``.
    """
    n = len(grad_log_prob)
    rows = np.arange(n) if xp is np else th.arange(n, device=logits.device)
    parts = []
    for index, (part, column) in enumerate(zip(components(logits, nvec), action_columns(actions, len(nvec)), strict=True)):
        log_p = log_softmax(part)
        p = xp.exp(log_p)
        grad = -p * grad_log_prob[:, None]
        indices = column.astype(np.int64) if xp is np else column.long()
        grad[rows, indices] += grad_log_prob
        grad += p * (log_p - xp.sum(p * log_p, axis=-1, keepdims=True)) * (ent_coef / n)
        if kl_coef is not None:
            grad += (p - xp.exp(log_softmax(components(old_logits, nvec)[index]))) * (kl_coef / n)
        parts.append(grad)
    grad_logits = parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=-1) if xp is np else th.cat(parts, dim=-1)
    return grad_logits if masks is None else grad_logits * masks


def argmax_actions(scores: np.ndarray, nvec: tuple[int, ...]) -> np.ndarray:
    """Each component's argmax of ``scores`` ``(B, sum(nvec))`` (logits, or logits plus Gumbel noise): ``(B,)`` for one
    component, ``(B, d)`` for several."""
    if len(nvec) == 1:
        return np.argmax(scores, axis=-1)
    return np.stack([np.argmax(part, axis=-1) for part in components(scores, nvec)], axis=-1)
