"""The closed-form backend (the fast path): the shared loss, :func:`~sb3_clippedppo.losses.ppo_loss_terms`, on arrays
that share memory with the parameters, their gradients (flat storage,
:mod:`~sb3_clippedppo.backends.closed_form.parameters`) and the minibatch, and its gradient written out by hand.

For the small networks of continuous control, PyTorch's per-operation overhead costs more than the arithmetic: autograd
records every operation of the forward pass and replays it, an optimizer step and a gradient-norm clip touch each
parameter tensor separately, and a forward pass for one observation takes tens of microseconds. This backend computes
exactly the same update with fewer, larger operations: on the CPU in NumPy (a NumPy operation costs about a third of a
torch one, and a minibatch of these networks is some sixty small operations), on a GPU in torch; one implementation
serves both (:mod:`~sb3_clippedppo.backends.closed_form.mlp`). The rollout acts through a NumPy forward pass of the actor;
the rollout's values and log-probabilities are computed at its end, in batched torch passes.

What is written here is only the gradient: of the loss with respect to the actor's output (Gaussian means and
``log_std``, or the logits of ``Discrete`` and ``MultiDiscrete`` actions, masked where the rollout has action masks:
:mod:`~sb3_clippedppo.backends.closed_form.categorical`) and the values, then back-propagated through each
``Linear -> activation`` layer. The derivation, term by term: ``docs/algorithm.md``, "The gradient in closed form".
"""

from types import SimpleNamespace
from typing import Any, NamedTuple, cast

import numpy as np
import torch as th

from sb3_clippedppo.backends.base import RolloutStep, UpdateBackend
from sb3_clippedppo.backends.closed_form import categorical
from sb3_clippedppo.backends.closed_form.actor import NumpyPredictor, features
from sb3_clippedppo.backends.closed_form.applicability import MlpNetworks
from sb3_clippedppo.backends.closed_form.mlp import Array, ArrayLayer, Layer, Trace, mlp_backward, mlp_forward, numpy_layers
from sb3_clippedppo.backends.closed_form.parameters import FlatParameters
from sb3_clippedppo.buffers import RolloutBatch, RolloutBuffer
from sb3_clippedppo.distributions import Distribution, gaussian_entropy, gaussian_kl, gaussian_log_prob
from sb3_clippedppo.losses import LossCoefficients, LossEvaluation, LossTerms, ppo_loss_terms
from sb3_clippedppo.masking.logits import masked_logits
from sb3_clippedppo.policies import ActorCriticPolicy, evaluate_rollout


def arithmetic_module(device: th.device) -> Any:
    """The library the closed form computes with on ``device``: ``numpy`` on the CPU, ``torch`` elsewhere (both give the
    same numbers up to float32 rounding)."""
    return np if device.type == "cpu" else th


class ClosedFormContext(NamedTuple):
    """What :meth:`ClosedFormBackend.backward` needs from the forward pass of :meth:`ClosedFormBackend.loss`."""

    coefficients: LossCoefficients
    evaluation: LossEvaluation  # the loss terms and the per-sample quantities they came from
    advantages: Array  # (B,)
    returns: Array  # (B,)
    output: Array  # (B, k) actor output: Gaussian means or logits (masked where action_masks is set)
    actions: Array  # (B, k) float32, (B,) int64 (Discrete) or (B, d) int64 (MultiDiscrete)
    old_distribution: Array  # (B, P): the rollout policy's distribution parameters (P = 0 if not kept)
    actor_trace: Trace
    critic_trace: Trace
    action_masks: Array | None = None  # (B, sum(nvec)) bool, or None without masking


class ClosedFormBackend(UpdateBackend):
    """
    The update of :func:`~sb3_clippedppo.losses.ppo_loss_terms` with closed-form gradients (see the module's docstring).
    Built by :func:`~sb3_clippedppo.backends.chooser.choose_backend` for a policy whose networks
    :func:`~sb3_clippedppo.backends.closed_form.applicability.closed_form_networks` found.

    :param policy: the policy.
    :param networks: its actor's and critic's layers.
    """

    fast_path = True

    def __init__(self, policy: ActorCriticPolicy, networks: MlpNetworks):
        super().__init__(policy)
        self.policy: ActorCriticPolicy = policy
        self.flat = FlatParameters(policy)
        self.actor_layers, self.critic_layers = networks
        self.predictor = NumpyPredictor(policy, self.actor_layers)
        self.nvec = self.predictor.nvec  # the categorical components' sizes; None for Gaussian actions
        self.discrete = self.nvec is not None
        self.obs_statistics = policy.obs_normalizer.statistics()[0] if policy.obs_normalizer is not None else None
        self.layout = self.predictor.layout
        self.xp: Any = np

    def _array(self, tensor: th.Tensor) -> Array:
        """A tensor as this backend's array type, sharing its memory."""
        return tensor.detach().numpy() if self.xp is np else tensor.detach()

    def prepare(self) -> None:
        """
        Make sure the flat storage is intact (rebuilding it if not), then take this backend's views of the parameters
        and their gradients: NumPy arrays on the CPU, tensors elsewhere.
        """
        self.flat.ensure()
        self.xp = arithmetic_module(self.policy.device)

        def layers(pairs: list[Layer]) -> list[ArrayLayer]:
            def array(tensor: th.Tensor | None) -> Array:  # a parameter or its gradient (FlatParameters creates them)
                return self._array(cast(th.Tensor, tensor))

            return [ArrayLayer(array(lin.weight), array(lin.bias), array(lin.weight.grad), array(lin.bias.grad), act)
                    for lin, act in pairs]  # fmt: skip

        self.actor, self.critic = layers(self.actor_layers), layers(self.critic_layers)
        if not self.discrete:
            log_std = cast(th.Tensor, self.policy.log_std)
            self.log_std, self.log_std_grad = self._array(log_std), self._array(cast(th.Tensor, log_std.grad))
        like = np.float32(0) if self.xp is np else th.zeros((), device=self.policy.device)
        self.obs_parameters = None if self.obs_statistics is None else self.obs_statistics.parameters_as(like)

    def rollout_step(self, n_steps: int, n_envs: int, keep_distributions: bool) -> RolloutStep:
        """The actor's NumPy forward pass on the environments' observations, then ``mean + std * noise`` (Gaussian) or
        ``argmax(logits + noise)`` per component (categorical, the Gumbel-max trick; over the valid choices where the
        step's action masks are given), with the rollout's noise from ``policy.draw_noise``; values, log-probabilities and
        distribution parameters are left to :meth:`finish_rollout`."""
        self.prepare()
        if self.xp is np:
            actor, obs_parameters = self.actor, self.obs_parameters
        else:  # on another device: a NumPy copy of the actor (one observation per environment is too small for a GPU)
            actor = numpy_layers(self.actor_layers)
            obs_parameters = None if self.obs_statistics is None else self.obs_statistics.parameters_as(np.float32(0))
        noise = self.policy.draw_noise(n_steps, n_envs).numpy()

        def act(obs: np.ndarray) -> np.ndarray:
            return mlp_forward(actor, features(obs, self.layout, np, obs_parameters), np)

        if self.nvec is not None:
            nvec = self.nvec

            def categorical_step(obs: Any, step: int, masks: np.ndarray | None = None) -> tuple[np.ndarray, None, None, None]:
                logits = act(obs) if masks is None else masked_logits(act(obs), masks)
                return categorical.argmax_actions(logits + noise[step], nvec), None, None, None

            return categorical_step
        std = np.exp(cast(th.Tensor, self.policy.log_std).detach().cpu().numpy())

        def gaussian_step(obs: Any, step: int, masks: np.ndarray | None = None) -> tuple[np.ndarray, None, None, None]:
            return act(obs) + std * noise[step], None, None, None

        return gaussian_step

    @th.no_grad()
    def finish_rollout(self, buffer: RolloutBuffer) -> None:
        """The rollout's values, log-probabilities (and distribution parameters where the buffer keeps them), in batched
        passes (:func:`~sb3_clippedppo.policies.evaluate_rollout`)."""
        actions = buffer.flat_actions()
        values, log_probs = buffer.values.reshape(-1), buffer.log_probs.reshape(-1)
        distributions = buffer.old_distributions.reshape(buffer.n_transitions, -1)
        for chunk, evaluated, chunk_values in evaluate_rollout(self.policy, buffer):
            distribution = cast(Distribution, evaluated)  # not values_only: always a distribution
            values[chunk] = chunk_values.cpu().numpy()
            log_probs[chunk] = distribution.log_prob(actions[chunk]).cpu().numpy()
            if buffer.keeps_distributions:
                distributions[chunk] = distribution.params().cpu().numpy()

    def loss(
        self, batch: RolloutBatch, advantages: th.Tensor, coefficients: LossCoefficients
    ) -> tuple[LossTerms, ClosedFormContext]:
        """The minibatch's loss terms (:func:`~sb3_clippedppo.losses.ppo_loss_terms` on this backend's arrays), without
        an autograd graph, and the context for :meth:`backward`."""
        penalty = coefficients.policy_objective == "kl_penalty"
        x = features(self._array(batch.observations), self.layout, self.xp, self.obs_parameters)  # type: ignore[arg-type]
        actor_trace: Trace = []
        critic_trace: Trace = []
        output = mlp_forward(self.actor, x, self.xp, actor_trace)
        values = mlp_forward(self.critic, x, self.xp, critic_trace)[:, 0]
        names = ("actions", "old_values", "old_log_prob", "returns", "old_distribution")
        arrays = SimpleNamespace(**{name: self._array(getattr(batch, name)) for name in names})
        actions, old_distribution, kl = arrays.actions, arrays.old_distribution, None
        masks = None if batch.action_masks is None else self._array(batch.action_masks)
        if self.nvec is not None:
            if masks is not None:  # invalid-action masking: masked logits (sb3_clippedppo.masking)
                output = masked_logits(output, masks)
            log_prob, entropy = categorical.log_prob_and_entropy(output, actions, self.nvec)
            if penalty:
                kl = categorical.kl(old_distribution, output, self.nvec)
        else:
            log_prob, entropy = gaussian_log_prob(actions, output, self.log_std), gaussian_entropy(self.log_std)
            if penalty:
                k = output.shape[-1]
                kl = gaussian_kl(old_distribution[:, :k], old_distribution[:, k:], output, self.log_std)
        advantages_array = self._array(advantages)
        evaluation = ppo_loss_terms(log_prob, entropy, values, arrays, advantages_array, coefficients, kl)
        context = ClosedFormContext(coefficients, evaluation, advantages_array, arrays.returns, output, actions,
                                    old_distribution, actor_trace, critic_trace, masks)  # fmt: skip
        return evaluation.terms, context

    def backward(self, result: Any) -> None:
        """
        Write the gradient of the loss into every parameter's ``.grad`` (overwriting it). It starts from the loss's
        derivatives with respect to the log-probabilities, ``dL_pg / d log pi_i = -A_i r_i / B`` where the surrogate's
        gradient flows (everywhere for PPO-Penalty, whose KL term is differentiated below), and the values,
        ``d(vf_coef * L_v) / dV_i = 2 vf_coef (V'_i - R_i) / B`` where the value clipping is inactive.

        :param result: the context :meth:`loss` returned.
        :raises TypeError: for anything else.
        """
        if not isinstance(result, ClosedFormContext):
            raise TypeError(f"ClosedFormBackend.backward() takes the context of its own loss(), got {type(result).__name__}")
        xp, context, evaluation = self.xp, result, result.evaluation
        _, _, ent_coef, vf_coef, policy_objective, kl_coef = context.coefficients
        n = len(context.advantages)
        grad_log_prob = context.advantages * evaluation.ratio * (-1.0 / n)
        if evaluation.policy_unclipped is not None:
            grad_log_prob = grad_log_prob * evaluation.policy_unclipped
        grad_values = (evaluation.predicted_values - context.returns) * (2.0 * vf_coef / n)
        if evaluation.value_unclipped is not None:
            grad_values = grad_values * evaluation.value_unclipped
        output, old_distribution = context.output, context.old_distribution
        if self.nvec is not None:
            # Per component, through log softmax: (onehot - p) * g; the entropy bonus: ent_coef * p (log p + H) / B;
            # KL(p_old || p): beta (p - p_old) / B; 0 for a masked logit (categorical.logits_gradient)
            penalty_coef = kl_coef if policy_objective == "kl_penalty" else None
            grad_output = categorical.logits_gradient(output, context.actions, grad_log_prob, ent_coef, penalty_coef,
                                                      old_distribution, self.nvec, context.action_masks, xp)  # fmt: skip
        else:
            # d log pi_i / d mu_ij = z_ij / sigma_j, d log pi_i / d log_std_j = z_ij^2 - 1; the entropy bonus: -ent_coef;
            # KL(old || new): d/d mu = (mu - mu_old) / sigma^2, d/d log_std = 1 - (sigma_old^2 + (mu - mu_old)^2) / sigma^2
            inv_std = xp.exp(-self.log_std)
            z = (context.actions - output) * inv_std
            grad_output = grad_log_prob[:, None] * z * inv_std
            grad_log_std = (z * z - 1.0).T @ grad_log_prob - ent_coef
            if policy_objective == "kl_penalty":
                k = output.shape[-1]
                old_mean, old_log_std = old_distribution[:, :k], old_distribution[:, k:]
                inv_var = inv_std * inv_std
                difference = output - old_mean
                grad_output += difference * inv_var * (kl_coef / n)
                spread = (xp.exp(2.0 * old_log_std) + difference * difference) * inv_var
                grad_log_std += xp.sum(1.0 - spread, axis=0) * (kl_coef / n)
            self.log_std_grad[...] = grad_log_std
        mlp_backward(self.actor, context.actor_trace, grad_output, xp)
        mlp_backward(self.critic, context.critic_trace, grad_values[:, None], xp)

    def clip_grad_norm_(self, max_norm: float) -> float:
        return self.flat.clip_grad_norm_(max_norm)

    def deterministic_actions(self, observation: np.ndarray, action_masks: np.ndarray | None = None) -> np.ndarray | None:
        return self.predictor.predict(observation, action_masks)

    def optimizer_state(self) -> dict[str, Any]:
        return self.flat.per_tensor_state()
