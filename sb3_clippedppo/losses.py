"""ClippedPPO's loss, the readable definition: the clipped surrogate objective (or PPO-Penalty's), the value loss and the
entropy bonus, for any actor-critic policy, with its gradient from autograd.

For a minibatch of size ``B`` (Schulman et al. 2017, eq. 9, with the clipped surrogate of eq. 7):

- ``L = L_pg + vf_coef * L_v + ent_coef * L_ent``;
- ``L_pg = -1/B sum_i min(r_i A_i, clip(r_i, 1 - eps, 1 + eps) A_i)`` with ``r_i = exp(log pi(a_i|s_i) - log pi_old(a_i|s_i))``
  (PPO-Penalty, section 4: ``L_pg = -1/B sum_i r_i A_i + beta * 1/B sum_i KL(pi_old(.|s_i) || pi(.|s_i))``);
- ``L_v = 1/B sum_i (R_i - V_i)^2``, with ``V_i`` optionally clipped to ``V_old,i +- clip_range_vf``;
- ``L_ent = -1/B sum_i H(pi(.|s_i))``.

:mod:`sb3_clippedppo.fast_mlp` computes the same loss with closed-form gradients for MLP policies.
"""

from typing import Any, NamedTuple

import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy
from torch.nn import functional as F

from sb3_clippedppo.buffers import RolloutBatch


def clipped_surrogate_loss(ratio: th.Tensor, advantages: th.Tensor, clip_range: float) -> th.Tensor:
    r"""
    PPO's clipped surrogate objective, negated to be minimized (Schulman et al. 2017, eq. 7):
    :math:`-\mathbb{E}\left[\min\left(r A,\ \text{clip}(r, 1 - \epsilon, 1 + \epsilon) A\right)\right]`.

    The gradient with respect to ``ratio`` vanishes where the clipped term is the minimum, i.e. where
    ``A > 0 and r > 1 + eps`` or ``A < 0 and r < 1 - eps``.

    :param ratio: probability ratios :math:`r = \pi(a|s) / \pi_{old}(a|s)`, shape ``(B,)``.
    :param advantages: advantage estimates, shape ``(B,)``.
    :param clip_range: :math:`\epsilon > 0`.
    :return: scalar loss.
    """
    return -th.min(advantages * ratio, advantages * th.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)).mean()


def value_loss_fn(values: th.Tensor, old_values: th.Tensor, returns: th.Tensor, clip_range_vf: float | None) -> th.Tensor:
    """
    Mean squared error between value predictions and returns. With ``clip_range_vf``, the prediction is first
    clipped to ``old_values +- clip_range_vf`` (as in Stable-Baselines3's PPO; this depends on the reward scale).

    :param values: current value predictions, shape ``(B,)``.
    :param old_values: value predictions at collection time, shape ``(B,)``.
    :param returns: value targets (GAE returns), shape ``(B,)``.
    :param clip_range_vf: clipping range (> 0) or None.
    :return: scalar loss.
    """
    if clip_range_vf is not None:
        values = old_values + th.clamp(values - old_values, -clip_range_vf, clip_range_vf)
    return F.mse_loss(returns, values)


def normalize_advantages(advantages: th.Tensor) -> th.Tensor:
    """
    Per-minibatch advantage normalization ``(A - mean(A)) / (std(A) + 1e-8)``, as in Stable-Baselines3's PPO.

    :param advantages: shape ``(B,)``, ``B >= 2``.
    :return: normalized advantages, shape ``(B,)``.
    """
    std, mean = th.std_mean(advantages)
    return (advantages - mean) / (std + 1e-8)


def ratio_statistics(ratio: Any, log_ratio: Any, clip_range: float) -> tuple[Any, Any]:
    """
    SB3 PPO's statistics of a minibatch's probability ratios: ``approx_kl``, the k3 estimator of ``KL(pi_old || pi)``,
    ``mean((r - 1) - log r)`` (unbiased and non-negative; Schulman 2020, "Approximating KL divergence"), and
    ``clip_fraction``, the fraction of ratios outside ``[1 - clip_range, 1 + clip_range]``. Written with operations that
    torch tensors and NumPy arrays share, for both.

    :param ratio: ``r = pi(a|s) / pi_old(a|s)``, shape ``(B,)``, without gradient.
    :param log_ratio: ``log r``, shape ``(B,)``.
    :param clip_range: the clip range, > 0.
    :return: ``(approx_kl, clip_fraction)``, scalars of the inputs' type.
    """
    return ((ratio - 1.0) - log_ratio).mean(), (abs(ratio - 1.0) > clip_range).sum() / len(ratio)


class LossTerms(NamedTuple):
    """The loss and its parts for one minibatch (scalars), the ratios, and their statistics (:func:`ratio_statistics`)."""

    policy_loss: th.Tensor
    value_loss: th.Tensor
    entropy_loss: th.Tensor
    loss: th.Tensor
    ratio: th.Tensor  # (B,)
    log_ratio: th.Tensor  # (B,)
    approx_kl: th.Tensor  # (), no gradient
    clip_fraction: th.Tensor  # (), no gradient


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


def ppo_loss(
    policy: ActorCriticPolicy, batch: RolloutBatch, advantages: th.Tensor, coefficients: LossCoefficients
) -> LossTerms:
    """
    The loss for one minibatch, with autograd: ``loss.backward()`` gives the gradients.

    The policy is evaluated through SB3's ``evaluate_actions`` (any subclass of SB3's ``ActorCriticPolicy``; for a
    distribution without a closed-form entropy, the entropy is estimated by ``-log_prob``, as SB3's PPO does). With
    ``policy_objective="kl_penalty"``, the policy loss is PPO-Penalty's (Schulman et al. 2017, eq. 8),
    ``-mean(r * A) + kl_coef * mean(KL(pi_old || pi))`` with the exact KL of the action distributions; this needs a
    policy of this package (:func:`~sb3_clippedppo.policies.uses_forward_distribution`).

    :param policy: the policy.
    :param batch: the minibatch.
    :param advantages: its advantages, already normalized if requested, shape ``(B,)``.
    :param coefficients: clip ranges, loss coefficients and the policy objective.
    :return: the loss terms.
    """
    clip_range, clip_range_vf, ent_coef, vf_coef, policy_objective, kl_coef = coefficients
    if policy_objective == "kl_penalty":
        distribution, values = policy.forward_distribution(batch.observations)  # type: ignore[operator]
        log_prob, entropy = distribution.log_prob(batch.actions), distribution.entropy()
    else:
        values, log_prob, entropy = policy.evaluate_actions(batch.observations, batch.actions)  # type: ignore[arg-type]
        values = values.flatten()
    log_ratio = log_prob - batch.old_log_prob
    ratio = th.exp(log_ratio)
    if policy_objective == "kl_penalty":
        kl = policy.distribution_from_params(batch.old_distribution).kl(distribution)  # type: ignore[operator]
        policy_loss = -(ratio * advantages).mean() + kl_coef * kl.mean()
    else:
        policy_loss = clipped_surrogate_loss(ratio, advantages, clip_range)
    value_loss = value_loss_fn(values, batch.old_values, batch.returns, clip_range_vf)
    entropy_loss = -(entropy if entropy is not None else -log_prob).mean()
    loss = policy_loss + ent_coef * entropy_loss + vf_coef * value_loss
    statistics = ratio_statistics(ratio.detach(), log_ratio.detach(), clip_range)
    return LossTerms(policy_loss, value_loss, entropy_loss, loss, ratio, log_ratio, *statistics)
