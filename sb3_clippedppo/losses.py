"""ClippedPPO's loss, written once: the clipped surrogate objective (or PPO-Penalty's), the value loss and the entropy
bonus. This is the code that runs on both update backends (:mod:`sb3_clippedppo.backends`): on torch tensors with autograd,
and on NumPy arrays in the closed form (:mod:`sb3_clippedppo.backends.closed_form`, which adds only the gradient).

For a minibatch of size ``B`` (Schulman et al. 2017, eq. 9, with the clipped surrogate of eq. 7):

- ``L = L_pg + vf_coef * L_v + ent_coef * L_ent``;
- ``L_pg = -1/B sum_i min(r_i A_i, clip(r_i, 1 - eps, 1 + eps) A_i)`` with ``r_i = exp(log pi(a_i|s_i) - log pi_old(a_i|s_i))``
  (PPO-Penalty, section 4: ``L_pg = -1/B sum_i r_i A_i + beta * 1/B sum_i KL(pi_old(.|s_i) || pi(.|s_i))``);
- ``L_v = 1/B sum_i (R_i - V_i)^2``, with ``V_i`` optionally clipped to ``V_old,i +- clip_range_vf``;
- ``L_ent = -1/B sum_i H(pi(.|s_i))``.

:func:`ppo_loss_terms` computes all of it from the policy's evaluation of the minibatch (log-probabilities, entropies,
values and, for PPO-Penalty, the KL divergences), with operations that NumPy and torch spell alike. The algorithm sees
only :class:`LossTerms` (the loss and its statistics); how a backend evaluates the policy and differentiates the loss
stays inside the backend.
"""

from typing import Any, NamedTuple

import torch as th

from sb3_clippedppo.buffers import RolloutBatch
from sb3_clippedppo.distributions import array_module

# A torch tensor or a NumPy array
Array = Any


def clipped_surrogate_loss(ratio: Array, advantages: Array, clip_range: float) -> tuple[Array, Array]:
    r"""
    PPO's clipped surrogate objective, negated to be minimized (Schulman et al. 2017, eq. 7):
    :math:`-\mathbb{E}\left[\min\left(r A,\ \text{clip}(r, 1 - \epsilon, 1 + \epsilon) A\right)\right]`.

    The gradient with respect to ``ratio`` vanishes where the clipped term is the minimum, i.e. where
    ``A > 0 and r > 1 + eps`` or ``A < 0 and r < 1 - eps``.

    :param ratio: probability ratios :math:`r = \pi(a|s) / \pi_{old}(a|s)`, shape ``(B,)`` (a tensor or a NumPy array).
    :param advantages: advantage estimates, shape ``(B,)``.
    :param clip_range: :math:`\epsilon > 0`.
    :return: ``(loss, unclipped)``: the scalar loss, and where the unclipped term is the minimum (the gradient flows
        there), boolean ``(B,)``.
    """
    xp = array_module(ratio)
    surrogate = advantages * ratio
    clipped = advantages * xp.clip(ratio, 1.0 - clip_range, 1.0 + clip_range)
    return -xp.minimum(surrogate, clipped).mean(), surrogate <= clipped


def clipped_values(values: Array, old_values: Array, clip_range_vf: float | None) -> tuple[Array, Array | None]:
    """
    The value predictions the value loss uses: with ``clip_range_vf``, clipped to ``old_values +- clip_range_vf`` (as in
    Stable-Baselines3's PPO; this depends on the reward scale).

    :param values: current value predictions, shape ``(B,)`` (a tensor or a NumPy array).
    :param old_values: value predictions at collection time, shape ``(B,)``.
    :param clip_range_vf: clipping range (> 0) or None.
    :return: ``(predicted, unclipped)``: the predictions, and where the clipping is inactive (the gradient flows there),
        boolean ``(B,)``, or None without clipping.
    """
    if clip_range_vf is None:
        return values, None
    xp = array_module(values)
    delta = values - old_values
    return old_values + xp.clip(delta, -clip_range_vf, clip_range_vf), abs(delta) <= clip_range_vf


def normalize_advantages(advantages: th.Tensor) -> th.Tensor:
    """
    Per-minibatch advantage normalization ``(A - mean(A)) / (std(A) + 1e-8)``, as in Stable-Baselines3's PPO.

    :param advantages: shape ``(B,)``, ``B >= 2``.
    :return: normalized advantages, shape ``(B,)``.
    """
    std, mean = th.std_mean(advantages)
    return (advantages - mean) / (std + 1e-8)


def ratio_statistics(ratio: Array, log_ratio: Array, clip_range: float) -> tuple[Array, Array]:
    """
    SB3 PPO's statistics of a minibatch's probability ratios: ``approx_kl``, the k3 estimator of ``KL(pi_old || pi)``,
    ``mean((r - 1) - log r)`` (unbiased and non-negative; Schulman 2020, "Approximating KL divergence"), and
    ``clip_fraction``, the fraction of ratios outside ``[1 - clip_range, 1 + clip_range]``. Written with operations that
    torch tensors and NumPy arrays share, for both.

    :param ratio: ``r = pi(a|s) / pi_old(a|s)``, shape ``(B,)`` (with torch, computed without recording a gradient).
    :param log_ratio: ``log r``, shape ``(B,)``.
    :param clip_range: the clip range, > 0.
    :return: ``(approx_kl, clip_fraction)``, scalars of the inputs' type.
    """
    if isinstance(ratio, th.Tensor):
        ratio, log_ratio = ratio.detach(), log_ratio.detach()
    return ((ratio - 1.0) - log_ratio).mean(), (abs(ratio - 1.0) > clip_range).sum() / len(ratio)


class LossTerms(NamedTuple):
    """
    One minibatch's loss and its statistics: what the algorithm logs and checks. Scalars (0-d tensors or NumPy scalars,
    as the backend computes them). From :func:`ppo_loss_terms` on tensors, ``loss`` carries the autograd graph; what a
    backend hands the algorithm carries none.
    """

    loss: Any
    policy_loss: Any
    value_loss: Any
    entropy_loss: Any
    approx_kl: Any  # the k3 estimate of KL(pi_old || pi), nats (ratio_statistics)
    clip_fraction: Any  # fraction of ratios outside [1 - clip_range, 1 + clip_range]


class LossEvaluation(NamedTuple):
    """
    :class:`LossTerms` and the per-sample quantities they were computed from, shape ``(B,)`` each: what a backend that
    differentiates the loss itself starts from (the closed form). The autograd backend uses only ``terms``.
    """

    terms: LossTerms
    ratio: Any  # r_i = pi(a_i|s_i) / pi_old(a_i|s_i)
    policy_unclipped: Any  # bool: where the clipped surrogate's gradient flows; None for PPO-Penalty (everywhere)
    predicted_values: Any  # V_i, clipped to V_old,i +- clip_range_vf when set
    value_unclipped: Any  # bool: where the value clipping is inactive; None without value clipping


class LossCoefficients(NamedTuple):
    """
    The coefficients of one update's loss ``L = L_policy + vf_coef * L_value + ent_coef * L_entropy``
    (Schulman et al. 2017, eq. 9, with the signs of a loss to minimize).
    """

    clip_range: float  # epsilon of the clipped surrogate (eq. 7), > 0
    clip_range_vf: float | None  # value clipping range, or None for the unclipped squared error
    ent_coef: float  # c2 of eq. 9, >= 0
    vf_coef: float  # c1 of eq. 9, >= 0
    policy_objective: str = "clip"  # "clip" (eq. 7) or "kl_penalty" (eq. 8)
    kl_coef: float = 0.0  # beta of PPO-Penalty (eq. 8), >= 0


def ppo_loss_terms(
    log_prob: Array,
    entropy: Array,
    values: Array,
    batch: RolloutBatch | Any,
    advantages: Array,
    coefficients: LossCoefficients,
    kl: Array | None = None,
) -> LossEvaluation:
    """
    The loss of one minibatch from the policy's evaluation of it (Schulman et al. 2017, eq. 7 and 9; PPO-Penalty,
    section 4, eq. 8), on torch tensors or NumPy arrays alike (all inputs of one kind).

    :param log_prob: ``log pi(a_i|s_i)`` under the current policy, shape ``(B,)``.
    :param entropy: ``H(pi(.|s_i))``, shape ``(B,)``, or ``()`` when it is the same for every state.
    :param values: ``V(s_i)``, shape ``(B,)``.
    :param batch: the minibatch's ``old_log_prob``, ``old_values`` and ``returns`` (shape ``(B,)`` each), as arrays of the
        same kind (a :class:`~sb3_clippedppo.buffers.RolloutBatch`, or any object with these attributes).
    :param advantages: the advantages, already normalized if requested, shape ``(B,)``.
    :param coefficients: clip ranges, loss coefficients and the policy objective.
    :param kl: ``KL(pi_old(.|s_i) || pi(.|s_i))``, shape ``(B,)``; needed for ``policy_objective="kl_penalty"``.
    :return: the loss terms and what they were computed from.
    :raises ValueError: for ``kl_penalty`` without ``kl``.
    """
    clip_range, clip_range_vf, ent_coef, vf_coef, policy_objective, kl_coef = coefficients
    xp = array_module(log_prob)
    log_ratio = log_prob - batch.old_log_prob
    ratio = xp.exp(log_ratio)
    if policy_objective == "kl_penalty":  # PPO-Penalty, Schulman et al. 2017 section 4: the gradient flows everywhere
        if kl is None:
            raise ValueError("policy_objective='kl_penalty' needs the KL divergences (kl)")
        policy_loss, unclipped = -(ratio * advantages).mean() + kl_coef * kl.mean(), None
    else:
        policy_loss, unclipped = clipped_surrogate_loss(ratio, advantages, clip_range)
    predicted, value_unclipped = clipped_values(values, batch.old_values, clip_range_vf)
    value_loss = ((batch.returns - predicted) ** 2).mean()
    entropy_loss = -entropy.mean()
    loss = policy_loss + ent_coef * entropy_loss + vf_coef * value_loss
    approx_kl, clip_fraction = ratio_statistics(ratio, log_ratio, clip_range)
    terms = LossTerms(loss, policy_loss, value_loss, entropy_loss, approx_kl, clip_fraction)
    return LossEvaluation(terms, ratio, unclipped, predicted, value_unclipped)


class NonFiniteLossError(FloatingPointError, ValueError):
    """
    Raised when an update produces a NaN or infinite loss or gradient; no parameter was changed by it.
    It is a ``ValueError`` too, which the RL Zoo's hyperparameter search treats as a pruned trial.
    """

    @classmethod
    def at(cls, terms: LossTerms, grad_norm: float, update: int, epoch: int, minibatch: int) -> "NonFiniteLossError":
        """The error for a minibatch's loss terms and gradient norm, saying where it happened."""
        return cls(
            f"non-finite loss or gradient in update {update} (epoch {epoch}, minibatch {minibatch}): "
            f"loss={float(terms.loss)}, grad_norm={grad_norm}, policy_loss={float(terms.policy_loss)}, "
            f"value_loss={float(terms.value_loss)}; no step was applied"
        )
