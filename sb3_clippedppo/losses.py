"""ClippedPPO's loss: the clipped surrogate objective, the value loss and the entropy bonus, with its gradient computed
by autograd (:func:`ppo_loss`, any policy) or in closed form (:class:`AnalyticLoss`, MLP actor-critics with a diagonal
Gaussian policy).

The loss (Schulman et al. 2017, eq. 9, with the clipped surrogate of eq. 7), for a minibatch of size ``B``:

- ``L = L_pg + vf_coef * L_v + ent_coef * L_ent``;
- ``L_pg = -1/B sum_i min(r_i A_i, clip(r_i, 1 - eps, 1 + eps) A_i)`` with ``r_i = exp(log pi(a_i|s_i) - log pi_old)``:
  ``dL_pg / d log pi_i = -A_i r_i / B`` where the unclipped term is the minimum, else 0;
- ``log pi_i = -1/2 sum_j z_ij^2 - sum_j log_std_j - k/2 log 2 pi`` with ``z_ij = (a_ij - mu_ij) / sigma_j``:
  ``d log pi_i / d mu_ij = z_ij / sigma_j`` and ``d log pi_i / d log_std_j = z_ij^2 - 1``;
- ``L_ent = -sum_j (1/2 + 1/2 log 2 pi + log_std_j)`` (minus the mean entropy): ``dL_ent / d log_std_j = -1``;
- ``L_v = 1/B sum_i (R_i - V'_i)^2`` with ``V'`` the (optionally clipped) value prediction:
  ``dL_v / dV_i = 2 (V'_i - R_i) / B`` where the clipping is inactive, else 0.

Why closed form: for the small networks of continuous control, autograd's bookkeeping (recording every operation of
the forward pass, then replaying it) costs more than the arithmetic. :class:`AnalyticLoss` computes the same loss with
the same functions, keeps each layer's activations, and back-propagates by hand through each ``Linear -> activation``
layer, writing the parameter gradients straight into the policy's flat gradient buffer. ``tests/test_losses.py``
checks it against autograd.
"""

from collections.abc import Callable
from typing import NamedTuple

import torch as th
from torch import nn
from torch.nn import functional as F

from sb3_clippedppo.buffers import RolloutBatch
from sb3_clippedppo.policies import Layer, MlpActorCriticPolicy, gaussian_entropy, gaussian_log_prob, mlp_layers


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


class LossTerms(NamedTuple):
    """The loss and its parts for one minibatch (scalars), and the ratios for the KL and clip-fraction statistics."""

    policy_loss: th.Tensor
    value_loss: th.Tensor
    entropy_loss: th.Tensor
    loss: th.Tensor
    ratio: th.Tensor  # (B,)
    log_ratio: th.Tensor  # (B,)


def ppo_loss(
    policy: MlpActorCriticPolicy,
    batch: RolloutBatch,
    advantages: th.Tensor,
    clip_range: float,
    clip_range_vf: float | None,
    ent_coef: float,
    vf_coef: float,
    policy_objective: str = "clip",
    kl_coef: float = 0.0,
) -> LossTerms:
    """
    The loss for one minibatch, with autograd: ``loss.backward()`` gives the gradients.

    With ``policy_objective="kl_penalty"``, the policy loss is PPO-Penalty's (Schulman et al. 2017, eq. 8):
    ``-mean(r * A) + kl_coef * mean(KL(pi_old || pi))``, with the exact KL of the action distributions.

    :param policy: the policy (any :class:`~sb3_clippedppo.policies.MlpActorCriticPolicy`).
    :param batch: the minibatch.
    :param advantages: its advantages, already normalized if requested, shape ``(B,)``.
    :param clip_range: epsilon of the clipped surrogate.
    :param clip_range_vf: value clipping range or None.
    :param ent_coef: entropy coefficient.
    :param vf_coef: value loss coefficient.
    :param policy_objective: ``"clip"`` or ``"kl_penalty"``.
    :param kl_coef: PPO-Penalty's beta.
    :return: the loss terms.
    """
    x = policy.preprocess(batch.observations)
    params = policy.action_params(x)
    log_prob, entropy = policy.log_prob_and_entropy(params, batch.actions)
    values = policy.value(x)
    log_ratio = log_prob - batch.old_log_prob
    ratio = th.exp(log_ratio)
    if policy_objective == "kl_penalty":
        kl = policy.kl_divergence(batch.old_distribution, params)
        policy_loss = -(ratio * advantages).mean() + kl_coef * kl.mean()
    else:
        policy_loss = clipped_surrogate_loss(ratio, advantages, clip_range)
    value_loss = value_loss_fn(values, batch.old_values, batch.returns, clip_range_vf)
    entropy_loss = -entropy.mean()
    loss = policy_loss + ent_coef * entropy_loss + vf_coef * value_loss
    return LossTerms(policy_loss, value_loss, entropy_loss, loss, ratio, log_ratio)


# ---------------------------------------------------------------------------------------------- closed-form gradients

# Derivative of an activation h = act(z), applied to the incoming gradient: (grad_h, z, h, module) -> grad_z.
# These are ATen's own backward kernels, which autograd uses for these modules: one kernel each, same numbers.
_aten = th.ops.aten
ACTIVATION_BACKWARD: dict[type[nn.Module], Callable[[th.Tensor, th.Tensor, th.Tensor, nn.Module], th.Tensor]] = {
    nn.Tanh: lambda grad, z, h, module: _aten.tanh_backward(grad, h),
    nn.ReLU: lambda grad, z, h, module: _aten.threshold_backward(grad, h, 0),
    nn.LeakyReLU: lambda grad, z, h, module: _aten.leaky_relu_backward(grad, z, module.negative_slope, False),
    nn.ELU: lambda grad, z, h, module: _aten.elu_backward(grad, module.alpha, 1.0, 1.0, False, z),
}
Trace = list[tuple[th.Tensor, th.Tensor, th.Tensor]]


def mlp_forward(layers: list[Layer], x: th.Tensor) -> tuple[th.Tensor, Trace]:
    """Forward pass keeping ``(input, pre-activation, output)`` of each layer for :func:`mlp_backward`."""
    trace = []
    for linear, activation in layers:
        z = th.addmm(linear.bias, x, linear.weight.t())
        h = z if activation is None else activation(z)
        trace.append((x, z, h))
        x = h
    return x, trace


def mlp_backward(layers: list[Layer], trace: Trace, grad_out: th.Tensor) -> None:
    """Back-propagate ``grad_out`` (the loss's gradient w.r.t. the output), overwriting each layer's ``.grad``."""
    grad = grad_out
    for index in range(len(layers) - 1, -1, -1):
        (linear, activation), (x, z, h) = layers[index], trace[index]
        if activation is not None:
            grad = ACTIVATION_BACKWARD[type(activation)](grad, z, h, activation)
        th.mm(grad.t(), x, out=linear.weight.grad)
        th.sum(grad, dim=0, out=linear.bias.grad)
        if index > 0:
            grad = th.mm(grad, linear.weight)


class AnalyticLoss:
    """
    :func:`ppo_loss` (clip objective) with closed-form gradients, for an
    :class:`~sb3_clippedppo.policies.MlpActorCriticPolicy` with Box actions, a state-independent ``log_std`` and
    networks that :func:`~sb3_clippedppo.policies.mlp_layers` accepts (check :meth:`supports` first). Per minibatch, call
    :meth:`forward` (no autograd graph is built) and, when the step is to be taken, :meth:`backward`.

    :param policy: the policy; its parameters' ``.grad`` must be tensors (the flat gradient views).
    :param ent_coef: entropy coefficient.
    :param vf_coef: value loss coefficient.
    :raises ValueError: for a policy that :meth:`supports` rejects.
    """

    def __init__(self, policy: MlpActorCriticPolicy, ent_coef: float, vf_coef: float):
        if not self.supports(policy):
            raise ValueError("AnalyticLoss needs Box actions and Linear/activation MLPs; check AnalyticLoss.supports()")
        self.policy = policy
        self.actor_layers = mlp_layers(policy.actor, ACTIVATION_BACKWARD)
        self.critic_layers = mlp_layers(policy.critic, ACTIVATION_BACKWARD)
        self.ent_coef, self.vf_coef = ent_coef, vf_coef
        self._saved: tuple | None = None

    @staticmethod
    def supports(policy: nn.Module) -> bool:
        """Whether closed-form gradients are available for this policy (else use autograd)."""
        return (
            type(policy) is MlpActorCriticPolicy
            and not policy.is_discrete
            and not policy.state_dependent_std
            and mlp_layers(policy.actor, ACTIVATION_BACKWARD) is not None
            and mlp_layers(policy.critic, ACTIVATION_BACKWARD) is not None
        )

    @th.no_grad()
    def forward(self, batch: RolloutBatch, advantages: th.Tensor, clip_range: float, clip_range_vf: float | None) -> LossTerms:
        """
        The loss for a minibatch, keeping what :meth:`backward` needs. Arguments as for :func:`ppo_loss`.

        :return: the loss terms.
        """
        x = self.policy.preprocess(batch.observations)
        mean, actor_trace = mlp_forward(self.actor_layers, x)  # type: ignore[arg-type]
        values, critic_trace = mlp_forward(self.critic_layers, x)  # type: ignore[arg-type]
        values = values.squeeze(-1)
        log_std = self.policy.log_std
        log_ratio = gaussian_log_prob(batch.actions, mean, log_std) - batch.old_log_prob
        ratio = th.exp(log_ratio)
        policy_loss = clipped_surrogate_loss(ratio, advantages, clip_range)
        value_loss = value_loss_fn(values, batch.old_values, batch.returns, clip_range_vf)
        entropy_loss = -gaussian_entropy(log_std)
        loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
        self._saved = (batch, advantages, clip_range, clip_range_vf, mean, actor_trace, values, critic_trace, ratio)
        return LossTerms(policy_loss, value_loss, entropy_loss, loss, ratio, log_ratio)

    @th.no_grad()
    def backward(self) -> None:
        """
        Write the gradient of the last :meth:`forward`'s loss into every parameter's ``.grad`` (overwriting it).

        :raises RuntimeError: without a preceding :meth:`forward`.
        """
        if self._saved is None:
            raise RuntimeError("AnalyticLoss.backward() needs a forward() first")
        batch, advantages, clip_range, clip_range_vf, mean, actor_trace, values, critic_trace, ratio = self._saved
        self._saved = None
        n = ratio.shape[0]

        # Surrogate: d L_pg / d log pi_i = -A_i r_i / B where min() picks the unclipped term (ties: both agree)
        surrogate = advantages * ratio
        unclipped = surrogate <= advantages * th.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
        grad_log_prob = surrogate * unclipped * (-1.0 / n)
        # Through the Gaussian log-density, and the entropy bonus for log_std
        log_std = self.policy.log_std
        inv_std = th.exp(-log_std)
        z = (batch.actions - mean) * inv_std
        grad_mean = grad_log_prob.unsqueeze(-1) * z * inv_std
        log_std.grad.copy_(th.mv((z * z - 1.0).t(), grad_log_prob) - self.ent_coef)  # type: ignore[union-attr]

        # Value: d(vf_coef * L_v) / dV_i = vf_coef * 2 (V'_i - R_i) / B where the clipping is inactive
        if clip_range_vf is None:
            grad_values = (values - batch.returns) * (2.0 * self.vf_coef / n)
        else:
            delta = values - batch.old_values
            clipped = batch.old_values + th.clamp(delta, -clip_range_vf, clip_range_vf)
            grad_values = (clipped - batch.returns) * (delta.abs() <= clip_range_vf) * (2.0 * self.vf_coef / n)

        mlp_backward(self.actor_layers, actor_trace, grad_mean)  # type: ignore[arg-type]
        mlp_backward(self.critic_layers, critic_trace, grad_values.unsqueeze(-1))  # type: ignore[arg-type]
