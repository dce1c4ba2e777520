"""The autograd backend: any SB3 ``ActorCriticPolicy``, the loss of :func:`~sb3_clippedppo.losses.ppo_loss_terms` on
torch tensors, its gradient from autograd.

A policy that offers this package's distributions (``offers_distributions``, :mod:`sb3_clippedppo.policies`) acts with
noise drawn for the whole rollout at once (``policy.draw_noise``, torch's global generator, on the CPU), so that both
backends take the same actions, and is evaluated through ``forward_distribution`` (which gives PPO-Penalty its exact KL).
Any other SB3 policy samples in its ``forward`` and is evaluated through ``evaluate_actions``, as in SB3's PPO.
"""

from typing import Any, cast

import numpy as np
import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy as SB3ActorCriticPolicy

from sb3_clippedppo.backends.base import RolloutStep, UpdateBackend
from sb3_clippedppo.buffers import RolloutBatch, observations_as_tensor
from sb3_clippedppo.losses import LossCoefficients, LossTerms, ppo_loss_terms
from sb3_clippedppo.masking.logits import masked_distribution
from sb3_clippedppo.policies import ActorCriticPolicy


def ppo_loss(
    policy: SB3ActorCriticPolicy, batch: RolloutBatch, advantages: th.Tensor, coefficients: LossCoefficients
) -> LossTerms:
    """
    The loss for one minibatch with autograd (``terms.loss.backward()`` gives the gradients): the policy's evaluation of
    the minibatch, then :func:`~sb3_clippedppo.losses.ppo_loss_terms`; the statistics are detached.

    A policy that offers distributions is evaluated through ``forward_distribution``, any other through SB3's
    ``evaluate_actions`` (for a distribution without a closed-form entropy, the entropy is estimated by ``-log_prob``, as
    SB3's PPO does). ``policy_objective="kl_penalty"`` needs the exact KL, hence a policy that offers distributions
    (``ClippedPPO`` checks this when it is set up).

    :param policy: the policy.
    :param batch: the minibatch.
    :param advantages: its advantages, already normalized if requested, shape ``(B,)``.
    :param coefficients: clip ranges, loss coefficients and the policy objective.
    :return: the loss terms.
    """
    kl = None
    if getattr(policy, "offers_distributions", False):
        native = cast(ActorCriticPolicy, policy)
        distribution, values = native.forward_distribution(batch.observations)
        if batch.action_masks is not None:  # invalid-action masking (sb3_clippedppo.masking)
            distribution = masked_distribution(distribution, batch.action_masks)
        log_prob, entropy = distribution.log_prob(batch.actions), distribution.entropy()
        if coefficients.policy_objective == "kl_penalty":
            kl = native.distribution_from_params(batch.old_distribution).kl(distribution)
    else:
        values, log_prob, sb3_entropy = policy.evaluate_actions(batch.observations, batch.actions)
        values = values.flatten()
        # a distribution without a closed-form entropy: estimated by -log_prob, as SB3's PPO does
        entropy = -log_prob if sb3_entropy is None else sb3_entropy
    terms = ppo_loss_terms(log_prob, entropy, values, batch, advantages, coefficients, kl).terms
    return terms._replace(**{name: getattr(terms, name).detach() for name in LossTerms._fields[1:]})


class AutogradBackend(UpdateBackend):
    """The update through autograd, for any SB3 ``ActorCriticPolicy`` (see the module's docstring)."""

    def rollout_step(self, n_steps: int, n_envs: int, keep_distributions: bool) -> RolloutStep:
        policy = self.policy

        def as_tensor(obs: Any) -> Any:
            return observations_as_tensor(obs, policy.observation_space, policy.device)

        if not getattr(policy, "offers_distributions", False):

            @th.no_grad()
            def sb3_step(obs: Any, step: int, masks: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, None]:
                actions, values, log_probs = policy(as_tensor(obs))
                return actions.cpu().numpy(), values.flatten().cpu().numpy(), log_probs.cpu().numpy(), None

            return sb3_step

        native = cast(ActorCriticPolicy, policy)
        noise = native.draw_noise(n_steps, n_envs).to(policy.device)

        @th.no_grad()
        def step(obs: Any, index: int, masks: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
            distribution, values = native.forward_distribution(as_tensor(obs))
            if masks is not None:  # invalid-action masking: masked logits, so the masked distribution's parameters are kept
                distribution = masked_distribution(distribution, masks)
            actions = distribution.sample(noise[index])
            params = distribution.params().cpu().numpy() if keep_distributions else None
            return actions.cpu().numpy(), values.cpu().numpy(), distribution.log_prob(actions).cpu().numpy(), params

        return step

    def loss(self, batch: RolloutBatch, advantages: th.Tensor, coefficients: LossCoefficients) -> tuple[LossTerms, Any]:
        terms = ppo_loss(self.policy, batch, advantages, coefficients)
        return terms._replace(loss=terms.loss.detach()), terms.loss  # the graph only for backward

    def backward(self, result: Any) -> None:
        self.policy.optimizer.zero_grad()
        result.backward()

    def clip_grad_norm_(self, max_norm: float) -> float:
        return float(th.nn.utils.clip_grad_norm_(self.policy.parameters(), max_norm))
