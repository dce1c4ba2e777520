"""Rules that adapt a coefficient to the KL divergence an update produced: PPO-Penalty's beta, and the KL-adaptive
learning rate. ClippedPPO applies them after each update, with the exact mean ``KL(pi_old || pi)`` over the rollout's
observations (``train/kl``, :func:`measure_updated_policy`)."""

from typing import cast

import torch as th
from gymnasium import spaces

from sb3_clippedppo.buffers import RolloutBuffer
from sb3_clippedppo.distributions import DiagGaussian, Distribution
from sb3_clippedppo.policies import ActorCriticPolicy, evaluate_rollout


@th.no_grad()
def measure_updated_policy(policy: ActorCriticPolicy, buffer: RolloutBuffer) -> tuple[float, float]:
    """
    After an update: the mean exact ``KL(pi_old || pi)`` (nats) over the rollout's observations, between the policy that
    collected the rollout (its distributions, kept by the buffer) and the updated one, and the updated policy's mean
    standard deviation there (NaN without ``Box`` actions).

    :param policy: the updated policy (one that offers distributions).
    :param buffer: the rollout, with ``keeps_distributions``.
    :return: ``(kl, std)``.
    """
    old_distributions = th.as_tensor(buffer.old_distributions.reshape(buffer.n_transitions, -1), device=policy.device)
    kl_sum, std_sum = 0.0, 0.0
    for chunk, distribution, _ in evaluate_rollout(policy, buffer):
        distribution = cast(Distribution, distribution)  # evaluate_rollout gives them without values_only
        kl_sum += policy.distribution_from_params(old_distributions[chunk]).kl(distribution).sum().item()
        if isinstance(distribution, DiagGaussian):
            std_sum += th.exp(distribution.log_std).mean(dim=-1).expand(distribution.mean.shape[0]).sum().item()
    gaussian = isinstance(policy.action_space, spaces.Box)
    return kl_sum / buffer.n_transitions, (std_sum / buffer.n_transitions if gaussian else float("nan"))


def adapt_kl_coef(kl_coef: float, kl: float, kl_penalty_target: float) -> float:
    """
    PPO-Penalty's adaptive KL coefficient (Schulman et al. 2017, section 4), applied after each update: beta is
    halved when the measured KL is below ``kl_penalty_target / 1.5`` and doubled when it is above
    ``kl_penalty_target * 1.5``.

    :param kl_coef: the current beta.
    :param kl: mean ``KL(pi_old || pi)`` over the rollout's observations after the update, in nats.
    :param kl_penalty_target: the paper's d_targ, in nats.
    :return: the new beta.
    """
    if kl < kl_penalty_target / 1.5:
        return kl_coef / 2.0
    if kl > kl_penalty_target * 1.5:
        return kl_coef * 2.0
    return kl_coef


def adapt_lr_scale(lr_scale: float, kl: float, target_kl: float, learning_rate: float, bounds: tuple[float, float]) -> float:
    """
    KL-adaptive learning rate (as in rsl_rl and SBX): the learning rate is divided by 1.5 when the KL of an update
    exceeds ``2 * target_kl`` and multiplied by 1.5 when it is below ``target_kl / 2``, as a factor on the scheduled
    rate, kept so that the resulting rate stays within ``bounds``.

    :param lr_scale: the current factor.
    :param kl: mean ``KL(pi_old || pi)`` over the rollout's observations after the update, in nats.
    :param target_kl: the target, in nats.
    :param learning_rate: the scheduled (unscaled) learning rate for the next update.
    :param bounds: ``(lowest, highest)`` learning rate.
    :return: the new factor.
    """
    if kl > 2.0 * target_kl:
        lr_scale /= 1.5
    elif kl < target_kl / 2.0:
        lr_scale *= 1.5
    if learning_rate > 0:
        lr_scale = min(max(lr_scale, bounds[0] / learning_rate), bounds[1] / learning_rate)
    return lr_scale
