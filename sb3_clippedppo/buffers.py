"""Rollout storage and Generalized Advantage Estimation (GAE).

The buffer holds one rollout of ``n_steps`` transitions from each of ``n_envs`` environments in preallocated
NumPy arrays of shape ``(n_steps, n_envs, ...)``. After the rollout, :func:`compute_gae` turns rewards and value
estimates into advantages and returns, and :meth:`RolloutBuffer.minibatches` serves shuffled minibatches as
PyTorch tensors for the update.
"""

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch as th


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    episode_starts: np.ndarray,
    last_values: np.ndarray,
    dones: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> tuple[np.ndarray, np.ndarray]:
    r"""
    Generalized Advantage Estimation (Schulman et al. 2016, "High-Dimensional Continuous Control Using
    Generalized Advantage Estimation", eq. 16) and the TD(lambda) returns used as value targets.

    With :math:`m_{t+1} = 1 - \text{episode\_start}_{t+1}` (0 when step ``t`` ended an episode):

    .. math::

        \delta_t = r_t + \gamma\, m_{t+1} V(s_{t+1}) - V(s_t), \qquad
        \hat A_t = \delta_t + \gamma \lambda\, m_{t+1} \hat A_{t+1}, \qquad
        \hat R_t = \hat A_t + V(s_t).

    For the last step of the rollout, :math:`V(s_{t+1})` is ``last_values`` and :math:`m_{t+1} = 1 - \text{dones}`.
    An episode that was cut by a time limit (truncated, not terminated) is bootstrapped by the caller, who adds
    :math:`\gamma V(s_\text{terminal})` to that step's reward (as Stable-Baselines3 does): the recursion stops at
    every episode end, and only a true termination contributes a zero value.

    :param rewards: rewards :math:`r_t`, shape ``(n_steps, n_envs)``, float.
    :param values: value estimates :math:`V(s_t)` of the observations the actions were taken in,
        shape ``(n_steps, n_envs)``, float.
    :param episode_starts: 1.0 where ``s_t`` is the first observation of an episode, else 0.0,
        shape ``(n_steps, n_envs)``.
    :param last_values: :math:`V(s_{n})` of the observation after the last step, shape ``(n_envs,)``.
    :param dones: 1.0 where the last step of the rollout ended an episode, shape ``(n_envs,)``.
    :param gamma: discount factor, in [0, 1].
    :param gae_lambda: GAE's bias-variance trade-off :math:`\lambda`, in [0, 1] (1: Monte Carlo advantage,
        0: one-step TD error).
    :return: ``(advantages, returns)``, each of shape ``(n_steps, n_envs)`` and float32.
    :raises ValueError: if the shapes do not agree.
    """
    rewards = np.asarray(rewards, dtype=np.float32)
    values = np.asarray(values, dtype=np.float32)
    episode_starts = np.asarray(episode_starts, dtype=np.float32)
    n_steps = rewards.shape[0]
    if rewards.ndim != 2 or values.shape != rewards.shape or episode_starts.shape != rewards.shape:
        raise ValueError(
            "rewards, values and episode_starts must share the shape (n_steps, n_envs); got "
            f"{rewards.shape}, {values.shape} and {episode_starts.shape}"
        )
    n_envs = rewards.shape[1]
    last_values = np.asarray(last_values, dtype=np.float32).reshape(-1)
    dones = np.asarray(dones, dtype=np.float32).reshape(-1)
    if last_values.shape != (n_envs,) or dones.shape != (n_envs,):
        raise ValueError(
            f"last_values and dones must have shape (n_envs,) = ({n_envs},); got {last_values.shape} and {dones.shape}"
        )

    # next_non_terminal[t] = 1 - episode_starts[t + 1], and 1 - dones after the last step.
    next_non_terminal = np.empty_like(rewards)
    next_non_terminal[:-1] = 1.0 - episode_starts[1:]
    next_non_terminal[-1] = 1.0 - dones
    next_values = np.empty_like(values)
    next_values[:-1] = values[1:]
    next_values[-1] = last_values
    # All TD errors at once; only the discounted sum over time needs the backward loop.
    deltas = rewards + gamma * next_values * next_non_terminal - values
    decay = (gamma * gae_lambda) * next_non_terminal

    advantages = np.empty_like(rewards)
    last_advantage = np.zeros(n_envs, dtype=np.float32)
    for step in range(n_steps - 1, -1, -1):
        last_advantage = deltas[step] + decay[step] * last_advantage
        advantages[step] = last_advantage
    returns = advantages + values
    return advantages, returns


class RolloutBatch(NamedTuple):
    """One minibatch of rollout data, as tensors on the training device. ``B`` is the minibatch size."""

    observations: th.Tensor  # (B, obs_dim) float32
    actions: th.Tensor  # (B, action_dim) float32 for Box actions, (B,) int64 for Discrete
    old_values: th.Tensor  # (B,) float32: V(s) at collection time
    old_log_prob: th.Tensor  # (B,) float32: log pi_old(a|s)
    advantages: th.Tensor  # (B,) float32
    returns: th.Tensor  # (B,) float32
    old_distribution: th.Tensor  # (B, P) float32: the rollout policy's distribution parameters (for exact KL)


class RolloutBuffer:
    """
    Preallocated storage for one rollout.

    Arrays have shape ``(n_steps, n_envs, ...)`` and are filled step by step during collection: observations
    (flattened, float32), raw actions as sampled from the policy (before any clipping to the action bounds),
    rewards, episode-start flags, value estimates, log-probabilities of the actions under the rollout policy, and
    that policy's distribution parameters at each observation (Gaussian means and log standard deviations, or logits).
    :meth:`compute_returns_and_advantage` then fills ``advantages`` and ``returns`` with :func:`compute_gae`.

    :param n_steps: steps collected from each environment per rollout, at least 1.
    :param n_envs: number of parallel environments, at least 1.
    :param obs_dim: size of a flattened observation.
    :param action_dim: size of an action vector for Box action spaces; ``None`` for Discrete actions, which are
        stored as int64 indices of shape ``(n_steps, n_envs)``.
    :param gamma: discount factor used by GAE.
    :param gae_lambda: GAE's lambda.
    :param device: device on which :meth:`minibatches` returns tensors.
    :param distribution_dim: size of the rollout policy's distribution parameters per observation.
    """

    def __init__(
        self,
        n_steps: int,
        n_envs: int,
        obs_dim: int,
        action_dim: int | None,
        gamma: float,
        gae_lambda: float,
        device: th.device | str = "cpu",
        distribution_dim: int = 0,
    ):
        self.n_steps = n_steps
        self.n_envs = n_envs
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.gamma = gamma
        self.gae_lambda = gae_lambda
        self.device = th.device(device)
        shape = (n_steps, n_envs)
        self.observations = np.zeros((*shape, obs_dim), dtype=np.float32)
        if action_dim is None:
            self.actions = np.zeros(shape, dtype=np.int64)
        else:
            self.actions = np.zeros((*shape, action_dim), dtype=np.float32)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.episode_starts = np.zeros(shape, dtype=np.float32)
        self.values = np.zeros(shape, dtype=np.float32)
        self.log_probs = np.zeros(shape, dtype=np.float32)
        self.old_distributions = np.zeros((*shape, distribution_dim), dtype=np.float32)
        self.advantages = np.zeros(shape, dtype=np.float32)
        self.returns = np.zeros(shape, dtype=np.float32)
        self.pos = 0

    @property
    def size(self) -> int:
        """Number of transitions the buffer holds when full: ``n_steps * n_envs``."""
        return self.n_steps * self.n_envs

    @property
    def full(self) -> bool:
        """Whether all ``n_steps`` steps have been written since the last :meth:`reset`."""
        return self.pos == self.n_steps

    def reset(self) -> None:
        """Start a new rollout; the arrays are overwritten in place."""
        self.pos = 0

    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, episode_start: np.ndarray) -> None:
        """
        Write one step of every environment.

        :param obs: observations the actions were taken in, shape ``(n_envs, *obs_shape)``.
        :param action: raw (unclipped) actions, shape ``(n_envs, action_dim)``, or ``(n_envs,)`` for Discrete.
        :param reward: rewards, shape ``(n_envs,)``.
        :param episode_start: 1.0 where ``obs`` starts an episode, shape ``(n_envs,)``.
        :raises IndexError: when the buffer is already full.
        """
        if self.pos >= self.n_steps:
            raise IndexError(f"RolloutBuffer is full ({self.n_steps} steps); call reset() first")
        self.observations[self.pos] = obs.reshape(self.n_envs, self.obs_dim)
        self.actions[self.pos] = action
        self.rewards[self.pos] = reward
        self.episode_starts[self.pos] = episode_start
        self.pos += 1

    def compute_returns_and_advantage(self, last_values: np.ndarray, dones: np.ndarray) -> None:
        """
        Fill ``advantages`` and ``returns`` with :func:`compute_gae` once ``values`` are set.

        :param last_values: value of the observation after the last step, shape ``(n_envs,)``.
        :param dones: whether the last step ended an episode, shape ``(n_envs,)``.
        """
        self.advantages, self.returns = compute_gae(
            self.rewards, self.values, self.episode_starts, last_values, dones, self.gamma, self.gae_lambda
        )

    def flat_observations(self) -> th.Tensor:
        """All observations as one tensor of shape ``(n_steps * n_envs, obs_dim)`` on ``device``."""
        return th.as_tensor(self.observations.reshape(self.size, self.obs_dim), device=self.device)

    def flat_actions(self) -> th.Tensor:
        """All raw actions, shape ``(n_steps * n_envs, action_dim)`` (or ``(n_steps * n_envs,)``), on ``device``."""
        return th.as_tensor(self.actions.reshape(self.size, *self.actions.shape[2:]), device=self.device)

    def minibatches(self, batch_size: int, generator: th.Generator | None = None) -> Iterator[RolloutBatch]:
        """
        One epoch of minibatches: a fresh random permutation of all ``n_steps * n_envs`` transitions, cut into
        consecutive slices of ``batch_size``. When ``batch_size`` does not divide the buffer size, the last
        minibatch is smaller (as in Stable-Baselines3).

        :param batch_size: minibatch size, in ``[1, n_steps * n_envs]``.
        :param generator: optional torch generator for the permutation (default: torch's global one).
        :return: an iterator of :class:`RolloutBatch`.
        """
        n = self.size
        permutation = th.randperm(n, generator=generator).to(self.device)
        # Gather every array once per epoch; minibatches are then contiguous slices (no copies).
        shuffled = [
            tensor.index_select(0, permutation)
            for tensor in (
                self.flat_observations(),
                self.flat_actions(),
                th.as_tensor(self.values.reshape(n), device=self.device),
                th.as_tensor(self.log_probs.reshape(n), device=self.device),
                th.as_tensor(self.advantages.reshape(n), device=self.device),
                th.as_tensor(self.returns.reshape(n), device=self.device),
                th.as_tensor(self.old_distributions.reshape(n, -1), device=self.device),
            )
        ]
        for start in range(0, n, batch_size):
            yield RolloutBatch(*(tensor[start : start + batch_size] for tensor in shuffled))
