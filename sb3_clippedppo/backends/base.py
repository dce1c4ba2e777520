"""The interface between ClippedPPO's algorithm and an update backend (:class:`UpdateBackend`).

The algorithm (:mod:`sb3_clippedppo.clipped_ppo`) sees only this: a per-step actor for each rollout, the minibatch's
:class:`~sb3_clippedppo.losses.LossTerms` (the loss and its statistics) with an opaque result to hand back to
:meth:`UpdateBackend.backward`, a gradient-norm clip, and two services around the model (a faster deterministic
``predict``, the optimizer state as SB3 saves it). How the policy is evaluated and the loss differentiated stays inside
the backend.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy as SB3ActorCriticPolicy

from sb3_clippedppo.buffers import RolloutBatch, RolloutBuffer
from sb3_clippedppo.losses import LossCoefficients, LossTerms

# A per-step actor for one rollout: (the environments' observations, step index, their action masks or None) -> (raw
# actions, values, log-probabilities, distribution parameters), NumPy arrays with n_envs rows; the last three may be
# None, for UpdateBackend.finish_rollout to fill for the whole rollout. The masks ((n_envs, mask_dim) bool,
# sb3_clippedppo.masking) remove invalid actions from the distributions the actions are drawn from.
StepOutputs = tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]
RolloutStep = Callable[[Any, int, np.ndarray | None], StepOutputs]


class UpdateBackend(ABC):
    """
    What ClippedPPO's core calls, in this order: per rollout :meth:`rollout_step` (then the step it returns, at every
    environment step) and :meth:`finish_rollout`; per update :meth:`prepare`; per minibatch :meth:`loss`, then, when the
    step is taken, :meth:`backward` with the result :meth:`loss` returned and :meth:`clip_grad_norm_` (then the core's
    ``policy.optimizer.step()``).

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
    def loss(self, batch: RolloutBatch, advantages: th.Tensor, coefficients: LossCoefficients) -> tuple[LossTerms, Any]:
        """
        The minibatch's loss terms (:func:`~sb3_clippedppo.losses.ppo_loss_terms`), and an opaque result that only
        :meth:`backward` reads.

        :param batch: the minibatch.
        :param advantages: its advantages, already normalized if requested, shape ``(B,)``.
        :param coefficients: clip ranges, loss coefficients and the policy objective.
        """

    @abstractmethod
    def backward(self, result: Any) -> None:
        """Write the gradient of the loss whose :meth:`loss` returned ``result`` into every parameter's ``.grad``
        (overwriting it)."""

    @abstractmethod
    def clip_grad_norm_(self, max_norm: float) -> float:
        """Scale the gradients to a global L2 norm of at most ``max_norm``; return the norm before (NaN or inf if not
        finite)."""

    def deterministic_actions(self, observation: np.ndarray, action_masks: np.ndarray | None = None) -> np.ndarray | None:
        """
        ``policy.predict(observation, deterministic=True)``'s actions computed a faster way, or None where this backend
        has none (then the algorithm calls the policy's ``predict``).

        :param observation: one observation ``obs_shape`` or a batch ``(B, *obs_shape)``.
        :param action_masks: checked masks ``(B, mask_dim)`` bool (:mod:`sb3_clippedppo.masking`), or None.
        """
        return None

    def optimizer_state(self) -> dict[str, Any]:
        """The optimizer's state dict in SB3's layout (one entry per parameter tensor), as ``save`` stores it."""
        return self.policy.optimizer.state_dict()
