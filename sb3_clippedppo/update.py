"""The update backends: the small interface through which ClippedPPO's core acts during a rollout, evaluates a minibatch's
loss and writes its gradient, and its two implementations.

- :class:`AutogradBackend`: any SB3 ``ActorCriticPolicy``; the loss of :func:`~sb3_clippedppo.losses.ppo_loss`, its
  gradient from autograd.
- :class:`~sb3_clippedppo.fast_mlp.ClosedFormBackend`: this package's MLP policy on vector observations; the same loss
  (:func:`~sb3_clippedppo.losses.ppo_loss_terms`) in NumPy, its gradient in closed form.

:func:`choose_backend` picks one, once, when the model is set up (``ClippedPPO(fast_path=...)``).
"""

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy as SB3ActorCriticPolicy

from sb3_clippedppo.buffers import RolloutBatch, RolloutBuffer, observations_as_tensor
from sb3_clippedppo.distributions import DiagGaussian
from sb3_clippedppo.losses import LossCoefficients, LossTerms, ppo_loss
from sb3_clippedppo.policies import uses_forward_distribution

# Transitions per forward pass when a whole rollout is evaluated at once (RolloutBuffer.chunks): bounds the activations'
# memory for large rollouts
EVALUATION_CHUNK = 256
# A per-step actor for one rollout: (the environments' observations, step index) -> (raw actions, values,
# log-probabilities, distribution parameters), NumPy arrays with n_envs rows; the last three may be None, for
# UpdateBackend.finish_rollout to fill for the whole rollout.
RolloutStep = Callable[[Any, int], tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]]


class UpdateBackend(ABC):
    """
    What ClippedPPO's core calls, in this order: per rollout :meth:`rollout_step` (then the step it returns, at every
    environment step) and :meth:`finish_rollout`; per update :meth:`prepare`; per minibatch :meth:`loss`, then, when the
    step is taken, :meth:`backward` and :meth:`clip_grad_norm_` (then the core's ``policy.optimizer.step()``).

    :param policy: the policy it trains (SB3's ``ActorCriticPolicy`` or a subclass).
    """

    fast_path: bool = False  # whether NumPy does the arithmetic (sb3_clippedppo.threads gives its BLAS the threads)

    def __init__(self, policy: SB3ActorCriticPolicy):
        self.policy = policy

    @abstractmethod
    def rollout_step(self, n_steps: int, n_envs: int, keep_distributions: bool) -> RolloutStep:
        """
        The per-step actor of the next rollout (the policy does not change during it).

        :param n_steps: steps per environment.
        :param n_envs: environments.
        :param keep_distributions: whether the step returns the distribution parameters (or :meth:`finish_rollout`
            fills them).
        """

    def finish_rollout(self, buffer: RolloutBuffer) -> None:
        """Fill what the rollout's steps left to the end (values, log-probabilities, distribution parameters)."""
        return None

    def prepare(self) -> None:
        """Before an update."""
        return None

    @abstractmethod
    def loss(self, batch: RolloutBatch, advantages: th.Tensor, coefficients: LossCoefficients) -> LossTerms:
        """The minibatch's loss terms (:func:`~sb3_clippedppo.losses.ppo_loss_terms`), scalars as tensors."""

    @abstractmethod
    def backward(self, terms: LossTerms) -> None:
        """Write the gradient of ``terms.loss`` into every parameter's ``.grad`` (overwriting it)."""

    @abstractmethod
    def clip_grad_norm_(self, max_norm: float) -> float:
        """Scale the gradients to a global L2 norm of at most ``max_norm``; return the norm before (NaN or inf if not
        finite)."""


class AutogradBackend(UpdateBackend):
    """
    The update through autograd, for any SB3 ``ActorCriticPolicy``. This package's policies act with noise drawn for the
    whole rollout at once (``policy.draw_noise``, torch's global generator, on the CPU), so that both backends take the
    same actions; other SB3 policies sample in their ``forward``, as in SB3's PPO.
    """

    def __init__(self, policy: SB3ActorCriticPolicy):
        super().__init__(policy)
        self.native = uses_forward_distribution(policy)

    def rollout_step(self, n_steps: int, n_envs: int, keep_distributions: bool) -> RolloutStep:
        policy = self.policy

        def as_tensor(obs: Any) -> Any:
            return observations_as_tensor(obs, policy.observation_space, policy.device)

        if not self.native:

            @th.no_grad()
            def sb3_step(obs: Any, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, None]:
                actions, values, log_probs = policy(as_tensor(obs))
                return actions.cpu().numpy(), values.flatten().cpu().numpy(), log_probs.cpu().numpy(), None

            return sb3_step

        noise = policy.draw_noise(n_steps, n_envs).to(policy.device)  # type: ignore[operator]

        @th.no_grad()
        def step(obs: Any, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
            distribution, values = policy.forward_distribution(as_tensor(obs))  # type: ignore[operator]
            actions = distribution.sample(noise[index])
            params = distribution.params().cpu().numpy() if keep_distributions else None
            return actions.cpu().numpy(), values.cpu().numpy(), distribution.log_prob(actions).cpu().numpy(), params

        return step

    def loss(self, batch: RolloutBatch, advantages: th.Tensor, coefficients: LossCoefficients) -> LossTerms:
        return ppo_loss(self.policy, batch, advantages, coefficients)

    def backward(self, terms: LossTerms) -> None:
        self.policy.optimizer.zero_grad()
        terms.loss.backward()

    def clip_grad_norm_(self, max_norm: float) -> float:
        return float(th.nn.utils.clip_grad_norm_(self.policy.parameters(), max_norm))


@th.no_grad()
def measure_updated_policy(policy: SB3ActorCriticPolicy, buffer: RolloutBuffer) -> tuple[float, float]:
    """
    After an update: the mean exact ``KL(pi_old || pi)`` (nats) over the rollout's observations, between the policy that
    collected the rollout (its distributions, kept by the buffer) and the updated one, and the updated policy's mean
    standard deviation there (NaN without ``Box`` actions). Needs one of this package's policies.

    :param policy: the updated policy.
    :param buffer: the rollout, with ``keeps_distributions``.
    :return: ``(kl, std)``.
    """
    old_distributions = th.as_tensor(buffer.old_distributions.reshape(buffer.n_transitions, -1), device=policy.device)
    kl_sum, std_sum = 0.0, 0.0
    for chunk, observations in buffer.chunks(EVALUATION_CHUNK):
        distribution, _ = policy.forward_distribution(observations)  # type: ignore[operator]
        kl_sum += policy.distribution_from_params(old_distributions[chunk]).kl(distribution).sum().item()  # type: ignore[operator]
        if isinstance(distribution, DiagGaussian):
            std_sum += th.exp(distribution.log_std).mean(dim=-1).expand(distribution.mean.shape[0]).sum().item()
    gaussian = isinstance(policy.action_space, spaces.Box)
    return kl_sum / buffer.n_transitions, (std_sum / buffer.n_transitions if gaussian else float("nan"))


def choose_backend(policy: SB3ActorCriticPolicy, fast_path: bool | str, policy_objective: str) -> UpdateBackend:
    """
    The backend for ``ClippedPPO(fast_path=...)``, chosen once when the model is set up. Both compute the same update (to
    float32 rounding); the closed form is faster for the small MLPs of continuous control, where torch's per-operation
    overhead costs more than the arithmetic (:mod:`sb3_clippedppo.fast_mlp`), and applies only to them.

    :param policy: the policy.
    :param fast_path: ``"auto"``: the closed form where it applies, else autograd; ``True``: the closed form, or an
        error; ``False``: autograd.
    :param policy_objective: ClippedPPO's ``policy_objective``.
    :return: the backend.
    :raises ValueError: for ``fast_path=True`` where the closed form does not apply (the message says why).
    """
    if fast_path is False:
        return AutogradBackend(policy)
    # The fast path: without sb3_clippedppo/fast_mlp.py, delete these lines and every policy trains through autograd
    from sb3_clippedppo.fast_mlp import ClosedFormBackend, unsupported_reason

    reason = unsupported_reason(policy, policy_objective)
    if reason is None:
        return ClosedFormBackend(policy)  # type: ignore[arg-type]
    if fast_path is True:
        raise ValueError(f"fast_path=True, but the fast path does not apply: {reason}")
    return AutogradBackend(policy)


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
            f"loss={terms.loss.item()}, grad_norm={grad_norm}, policy_loss={terms.policy_loss.item()}, "
            f"value_loss={terms.value_loss.item()}; no step was applied"
        )
