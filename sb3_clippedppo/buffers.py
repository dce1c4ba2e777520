"""Rollout storage.

The buffer holds one rollout of ``n_steps`` transitions from each of ``n_envs`` environments in preallocated
NumPy arrays of shape ``(n_steps, n_envs, ...)`` (observations of any Stable-Baselines3 space, ``Dict`` included).
After the rollout, :func:`~sb3_clippedppo.gae.compute_gae` turns rewards and value estimates into advantages and
returns, and
:meth:`RolloutBuffer.minibatches` serves shuffled minibatches as PyTorch tensors for the update.
"""

import operator
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_action_dim, get_obs_shape
from stable_baselines3.common.utils import obs_as_tensor

from sb3_clippedppo.gae import compute_gae

__all__ = ["RolloutBatch", "RolloutBuffer", "compute_gae"]  # compute_gae: importable from here too, as before

Observations = np.ndarray | dict[str, np.ndarray]
TensorObservations = th.Tensor | dict[str, th.Tensor]


def observation_shape(observation_space: spaces.Space) -> tuple[int, ...]:
    """
    The shape of one stored observation: Stable-Baselines3's :func:`~stable_baselines3.common.preprocessing.get_obs_shape`,
    except that a scalar ``Box`` (shape ``()``, as DM Control's ``height``) gets one feature axis, ``(1,)``, so that SB3's
    feature extractors, which flatten from the second dimension on, accept it.
    """
    if isinstance(observation_space, spaces.Box) and observation_space.shape == ():
        return (1,)
    return get_obs_shape(observation_space)  # type: ignore[return-value]


def with_feature_axis(observations: Any, observation_space: spaces.Space) -> Any:
    """
    A batch of observations (tensors or arrays, a dict of them for ``Dict`` spaces) reshaped to
    ``(B, *observation_shape(space))`` where a scalar ``Box`` (shape ``()``) makes them ``(B,)``; others are returned as
    they are.
    """
    if isinstance(observation_space, spaces.Dict):
        return {key: with_feature_axis(value, observation_space[key]) for key, value in observations.items()}
    if isinstance(observation_space, spaces.Box) and observation_space.shape == ():
        return observations.reshape(-1, 1)
    return observations


def observations_as_tensor(observations: Any, observation_space: spaces.Space, device: th.device | str) -> Any:
    """Observations from the environments (arrays, or a dict of them) as tensors on ``device``, in the buffer's layout
    (:func:`with_feature_axis`)."""
    return with_feature_axis(obs_as_tensor(observations, th.device(device)), observation_space)


def observation_storage(observation_space: spaces.Space, leading: tuple[int, ...]) -> Observations:
    """
    Zeroed arrays for observations of ``observation_space`` with leading dimensions ``leading``, in Stable-Baselines3's
    layout and dtypes (:func:`observation_shape`, the space's dtype): ``Box`` in its dtype (images stay uint8);
    ``Discrete`` as shape ``(1,)``; ``MultiDiscrete`` and ``MultiBinary`` as vectors; ``Dict`` as a dict of these.

    :param observation_space: the observation space.
    :param leading: leading dimensions, e.g. ``(n_steps, n_envs)``.
    :return: an array, or a dict of arrays for ``Dict`` spaces.
    :raises TypeError: for any other space.
    """
    if isinstance(observation_space, spaces.Dict):
        return {key: observation_storage(space, leading) for key, space in observation_space.spaces.items()}  # type: ignore[misc]
    if not isinstance(observation_space, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
        raise TypeError(
            "observation space must be a gymnasium Box, Discrete, MultiDiscrete, MultiBinary or Dict of them, "
            f"got {observation_space}"
        )
    return np.zeros((*leading, *observation_shape(observation_space)), dtype=observation_space.dtype)


def action_storage(action_space: spaces.Space, leading: tuple[int, ...]) -> np.ndarray:
    """
    Zeroed array for actions with leading dimensions ``leading``, in Stable-Baselines3's layout and dtypes: shape
    ``(*leading, action_dim)`` (``Box`` flattened to ``k = prod(shape)``, ``Discrete`` as one index, ``MultiDiscrete`` one
    index per component, ``MultiBinary`` ``n`` bits), in the space's dtype. ``Box`` actions are stored raw, as sampled.

    :param action_space: the action space.
    :param leading: leading dimensions.
    :return: the array.
    """
    return np.zeros((*leading, get_action_dim(action_space)), dtype=action_space.dtype)


def map_observations(function: Callable[[Any], Any], observations: Any) -> Any:
    """``function`` applied to an observation array (or tensor), or to each entry of a dict of them."""
    if isinstance(observations, dict):
        return {key: function(value) for key, value in observations.items()}
    return function(observations)


class RolloutBatch(NamedTuple):
    """One minibatch of rollout data, as tensors on the training device. ``B`` is the minibatch size."""

    observations: TensorObservations  # (B, *obs_shape), or a dict of them; as stored (see observation_storage)
    actions: th.Tensor  # (B, k) float32 (Box), (B,) int64 (Discrete), (B, d) int64 (MultiDiscrete), (B, n) float32 (bits)
    old_values: th.Tensor  # (B,) float32: V(s) at collection time
    old_log_prob: th.Tensor  # (B,) float32: log pi_old(a|s)
    advantages: th.Tensor  # (B,) float32
    returns: th.Tensor  # (B,) float32
    old_distribution: th.Tensor  # (B, P) float32: the rollout policy's distribution parameters (P = 0 if not kept)
    action_masks: th.Tensor | None = None  # (B, mask_dim) bool, True where an action was valid; None without masking


class RolloutBuffer:
    """
    Preallocated storage for one rollout.

    Arrays have shape ``(n_steps, n_envs, ...)`` and are filled step by step during collection: observations (in the
    layout of :func:`observation_storage`), raw actions as sampled from the policy (before any clipping to the action
    bounds; :func:`action_storage`), rewards, episode-start flags, value estimates, log-probabilities of the actions under
    the rollout policy and, when ``distribution_dim > 0``, that policy's distribution parameters at each observation (for
    the exact KL divergence). :meth:`compute_returns_and_advantage` then fills ``advantages`` and ``returns`` with
    :func:`compute_gae`.

    Callbacks written for Stable-Baselines3's PPO find what SB3's ``RolloutBuffer`` offers them (``model.rollout_buffer``
    at ``_on_rollout_end``): ``size()``, ``buffer_size`` (``n_steps``), ``n_envs``, ``pos``, ``full``, and
    ``observations``, ``actions``, ``rewards``, ``returns``, ``advantages``, ``values``, ``log_probs``,
    ``episode_starts`` in SB3's layout and dtypes.

    :param n_steps: steps collected from each environment per rollout, at least 1.
    :param n_envs: number of parallel environments, at least 1.
    :param observation_space: the observation space.
    :param action_space: the action space.
    :param gamma: discount factor used by GAE.
    :param gae_lambda: GAE's lambda.
    :param device: device on which :meth:`minibatches` returns tensors.
    :param distribution_dim: size of the rollout policy's distribution parameters per observation (0: not kept).
    :param mask_dim: size of an action mask per observation (:func:`~sb3_clippedppo.masking.layout.mask_dim`; 0: no
        masks kept), stored in ``action_masks``, ``(n_steps, n_envs, mask_dim)`` bool, as sb3-contrib's
        ``MaskableRolloutBuffer`` keeps them.
    """

    def __init__(
        self,
        n_steps: int,
        n_envs: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        gamma: float,
        gae_lambda: float,
        device: th.device | str = "cpu",
        distribution_dim: int = 0,
        mask_dim: int = 0,
    ):
        self.n_steps = n_steps
        self.n_envs = n_envs
        self.observation_space = observation_space
        self.action_space = action_space
        self.gamma = gamma
        self.gae_lambda = gae_lambda
        self.device = th.device(device)
        shape = (n_steps, n_envs)
        self.observations = observation_storage(observation_space, shape)
        self.actions = action_storage(action_space, shape)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.episode_starts = np.zeros(shape, dtype=np.float32)
        self.values = np.zeros(shape, dtype=np.float32)
        self.log_probs = np.zeros(shape, dtype=np.float32)
        self.old_distributions = np.zeros((*shape, distribution_dim), dtype=np.float32)
        self.action_masks = np.ones((*shape, mask_dim), dtype=np.bool_)
        self.advantages = np.zeros(shape, dtype=np.float32)
        self.returns = np.zeros(shape, dtype=np.float32)
        self.pos = 0
        # Steps where a time limit cut the episode: (step, env) pairs, their terminal observations, and the values
        # gamma * V(terminal observation) currently added to their rewards
        self.truncations: list[tuple[int, int]] = []
        self.terminal_observations: Observations | None = None
        self.terminal_values = np.zeros(0, dtype=np.float32)

    @property
    def n_transitions(self) -> int:
        """Number of transitions the buffer holds when full: ``n_steps * n_envs``."""
        return self.n_steps * self.n_envs

    @property
    def buffer_size(self) -> int:
        """Steps per environment when full, ``n_steps`` (Stable-Baselines3's name)."""
        return self.n_steps

    @property
    def full(self) -> bool:
        """Whether all ``n_steps`` steps have been written since the last :meth:`reset`."""
        return self.pos == self.n_steps

    @property
    def keeps_distributions(self) -> bool:
        """Whether the buffer keeps the rollout policy's distribution parameters (``distribution_dim > 0``)."""
        return self.old_distributions.shape[-1] > 0

    @property
    def keeps_masks(self) -> bool:
        """Whether the buffer keeps action masks (``mask_dim > 0``)."""
        return self.action_masks.shape[-1] > 0

    def keep_masks(self, mask_dim: int) -> None:
        """Keep action masks of ``mask_dim`` entries per observation from now on (0: none); the storage is reallocated
        only when the size changes."""
        if self.action_masks.shape[-1] != mask_dim:
            self.action_masks = np.ones((self.n_steps, self.n_envs, mask_dim), dtype=np.bool_)

    def flat_action_masks(self) -> th.Tensor | None:
        """All action masks, ``(n_steps * n_envs, mask_dim)`` bool on ``device``, or None when none are kept."""
        return self._flat(self.action_masks) if self.keeps_masks else None

    def size(self) -> int:
        """Steps written per environment: ``buffer_size`` when full, else ``pos`` (Stable-Baselines3's ``size()``)."""
        return self.pos

    def reset(self) -> None:
        """Start a new rollout; the arrays are overwritten in place."""
        self.pos = 0
        self.set_truncations([])

    def set_truncations(self, truncations: list[tuple[int, int, Any]]) -> None:
        """
        Record the steps at which a time limit cut an episode (not a termination), with the terminal observation that
        the environment returned (``info["terminal_observation"]``), for :meth:`bootstrap_truncations`.

        :param truncations: ``(step, env, terminal observation)`` triples.
        """
        self.truncations = [(step, env) for step, env, _ in truncations]
        observations = [obs for _, _, obs in truncations]
        if not observations:
            self.terminal_observations = None
        elif isinstance(observations[0], dict):
            self.terminal_observations = {key: np.stack([obs[key] for obs in observations]) for key in observations[0]}
        else:
            self.terminal_observations = np.stack(observations)
        self.terminal_values = np.zeros(len(observations), dtype=np.float32)

    def bootstrap_truncations(self, terminal_values: np.ndarray) -> None:
        """
        Bootstrap each truncated step with the value of its terminal observation: its reward becomes the environment's
        reward plus ``gamma * terminal_value`` (as Stable-Baselines3 does), replacing an earlier bootstrap.

        :param terminal_values: ``V(terminal observation)`` for each truncation, in the order of :meth:`set_truncations`.
        """
        terminal_values = np.asarray(terminal_values, dtype=np.float32).reshape(-1)
        for (step, env), new, old in zip(self.truncations, terminal_values, self.terminal_values, strict=True):
            self.rewards[step, env] += self.gamma * (new - old)
        self.terminal_values = terminal_values

    def add(
        self,
        obs: Observations,
        action: np.ndarray,
        reward: np.ndarray,
        episode_start: np.ndarray,
        value: np.ndarray | None = None,
        log_prob: np.ndarray | None = None,
        distribution_params: np.ndarray | None = None,
        action_masks: np.ndarray | None = None,
    ) -> None:
        """
        Write one step of every environment. Values, log-probabilities and distribution parameters may be left out
        and written later for the whole rollout at once (into ``values``, ``log_probs``, ``old_distributions``).

        :param obs: observations the actions were taken in, shape ``(n_envs, *obs_shape)`` (a dict for ``Dict`` spaces).
        :param action: raw (unclipped) actions, ``(n_envs, ...)`` as :func:`action_storage`.
        :param reward: rewards, shape ``(n_envs,)``.
        :param episode_start: 1.0 where ``obs`` starts an episode, shape ``(n_envs,)``.
        :param value: ``V(obs)``, shape ``(n_envs,)``, or None.
        :param log_prob: ``log pi(action|obs)``, shape ``(n_envs,)``, or None.
        :param distribution_params: the policy's distribution parameters, ``(n_envs, distribution_dim)``, or None.
        :param action_masks: the masks the actions were chosen with, ``(n_envs, mask_dim)`` bool, or None.
        :raises IndexError: when the buffer is already full.
        """
        if self.pos >= self.n_steps:
            raise IndexError(f"RolloutBuffer is full ({self.n_steps} steps); call reset() first")
        if isinstance(self.observations, dict):
            for key, storage in self.observations.items():
                storage[self.pos] = np.asarray(obs[key]).reshape(storage.shape[1:])
        else:
            self.observations[self.pos] = np.asarray(obs).reshape(self.observations.shape[1:])
        self.actions[self.pos] = np.asarray(action).reshape(self.actions.shape[1:])
        self.rewards[self.pos] = reward
        self.episode_starts[self.pos] = episode_start
        if value is not None:
            self.values[self.pos] = value
        if log_prob is not None:
            self.log_probs[self.pos] = log_prob
        if distribution_params is not None:
            self.old_distributions[self.pos] = distribution_params
        if action_masks is not None:
            self.action_masks[self.pos] = action_masks
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

    def _flat(self, array: np.ndarray) -> th.Tensor:
        return th.as_tensor(array.reshape(self.n_transitions, *array.shape[2:]), device=self.device)

    def flat_observations(self) -> TensorObservations:
        """All observations, shape ``(n_steps * n_envs, *obs_shape)`` (a dict for ``Dict`` spaces), on ``device``."""
        return map_observations(self._flat, self.observations)

    def flat_actions(self) -> th.Tensor:
        """All raw actions, on ``device``, in the layout the distributions take: ``(n_steps * n_envs,)`` int64 indices for
        ``Discrete``, ``(n_steps * n_envs, action_dim)`` float32 for ``Box`` and ``MultiBinary``, int64 for
        ``MultiDiscrete``."""
        actions = self._flat(self.actions)
        if isinstance(self.action_space, spaces.Discrete):
            return actions.reshape(-1).long()
        return actions.long() if isinstance(self.action_space, spaces.MultiDiscrete) else actions.float()

    def chunks(self, size: int) -> Iterator[tuple[slice, TensorObservations]]:
        """
        The rollout's observations in consecutive chunks, for evaluating a policy on all of them with a bounded memory.

        :param size: transitions per chunk, at least 1.
        :return: an iterator of ``(slice of the flat transitions, observations of the chunk)``.
        """
        observations = self.flat_observations()
        for start in range(0, self.n_transitions, size):
            chunk = slice(start, start + size)
            yield chunk, map_observations(operator.itemgetter(chunk), observations)

    def minibatches(self, batch_size: int) -> Iterator[RolloutBatch]:
        """
        One epoch of minibatches: a fresh random permutation of all ``n_steps * n_envs`` transitions, cut into
        consecutive slices of ``batch_size``. When ``batch_size`` does not divide the buffer size, the last
        minibatch is smaller (as in Stable-Baselines3; one minibatch of the whole rollout when ``batch_size`` exceeds it).
        The permutation comes from torch's global generator.

        :param batch_size: minibatch size, at least 1.
        :return: an iterator of :class:`RolloutBatch`.
        """
        permutation = th.randperm(self.n_transitions).to(self.device)
        # Gather every array once per epoch; minibatches are then contiguous slices (no copies).
        observations = map_observations(lambda x: x.index_select(0, permutation), self.flat_observations())
        others = [
            array.index_select(0, permutation)
            for array in (
                self.flat_actions(),
                *map(self._flat, (self.values, self.log_probs, self.advantages, self.returns, self.old_distributions)),
            )
        ]
        if self.keeps_masks:
            others.append(self._flat(self.action_masks).index_select(0, permutation))
        for start in range(0, self.n_transitions, batch_size):
            window = slice(start, start + batch_size)
            yield RolloutBatch(map_observations(operator.itemgetter(window), observations), *(x[window] for x in others))
