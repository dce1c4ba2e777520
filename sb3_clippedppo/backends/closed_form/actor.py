"""The closed form's actor in NumPy: the networks' inputs from observations (:func:`features`) and ``predict``'s
deterministic actions from a NumPy forward pass (:class:`NumpyPredictor`), with or without action masks, without
PyTorch's per-call overhead (evaluations call ``predict`` once per step)."""

from typing import Any, NamedTuple, cast

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.utils import is_vectorized_observation

from sb3_clippedppo.backends.closed_form.categorical import argmax_actions
from sb3_clippedppo.backends.closed_form.mlp import Array, ArrayLayer, Layer, mlp_forward, numpy_layers
from sb3_clippedppo.backends.closed_form.observations import ObservationLayout, network_inputs, observation_layout
from sb3_clippedppo.distributions import DiagGaussian
from sb3_clippedppo.masking.layout import component_sizes
from sb3_clippedppo.masking.logits import masked_logits
from sb3_clippedppo.normalization import RunningMeanStd, normalize
from sb3_clippedppo.policies import ActorCriticPolicy


def features(
    observations: Array, layout: ObservationLayout, xp: Any, obs_parameters: tuple[Array, Array] | None
) -> Array:
    """
    Observations ``(B, *obs_shape)`` as the networks' float32 inputs ``(B, layout.dim)`` (one-hot for ``Discrete`` and
    ``MultiDiscrete``, :func:`~sb3_clippedppo.backends.closed_form.observations.network_inputs`; no copy when they
    already are float32 vectors), normalized with the policy's statistics under ``normalize_observations``
    (``obs_parameters``: mean and inverse standard deviation,
    :meth:`~sb3_clippedppo.normalization.RunningMeanStd.parameters_as`), as the policy's preprocessing,
    ``NormalizingExtractor`` and ``FlattenExtractor`` give them.
    """
    x = network_inputs(observations, layout, xp)
    return x if obs_parameters is None else normalize(x, *obs_parameters)


class ActorArrays(NamedTuple):
    """The actor as NumPy arrays, with what they were taken from; ``key`` (:func:`actor_key`) says when to take them
    again."""

    key: tuple[Any, ...]
    layers: list[ArrayLayer]
    obs_parameters: tuple[np.ndarray, np.ndarray] | None


def actor_key(parameters: tuple[th.Tensor, ...], statistics: RunningMeanStd | None) -> tuple[Any, ...]:
    """What the actor's arrays depend on beyond the memory they share: the parameters' storage addresses (flat storage,
    a device or dtype change move them) and the observation statistics' count (it grows at each update)."""
    return (*(p.data_ptr() for p in parameters), None if statistics is None else float(statistics.count))


class NumpyPredictor:
    """
    ``policy.predict(observation, deterministic=True)`` from a NumPy forward pass of the actor (:func:`mlp_forward`):
    the same actions as the policy's torch forward pass up to float32 rounding, reshaped to the action space and clipped
    to ``Box`` bounds as SB3 does. Its arrays are views of the parameters, taken again when a parameter's storage or the
    observation statistics change (:func:`actor_key`).

    :param policy: a policy whose actor the closed form computes
        (:func:`~sb3_clippedppo.backends.closed_form.applicability.closed_form_networks`).
    :param layers: the actor's layers.
    """

    def __init__(self, policy: ActorCriticPolicy, layers: list[Layer]):
        self.policy, self.layers = policy, layers
        self.parameters = tuple(p for lin, _ in layers for p in (lin.weight, lin.bias))
        self.statistics = None if policy.obs_normalizer is None else policy.obs_normalizer.statistics()[0]
        self.layout = cast(ObservationLayout, observation_layout(policy.observation_space, policy.normalize_images))
        # the categorical components' sizes (Discrete: (n,), MultiDiscrete: nvec); None for Gaussian actions
        self.nvec = None if policy.distribution_class is DiagGaussian else component_sizes(policy.action_space)
        self._arrays: ActorArrays | None = None

    def arrays(self) -> ActorArrays:
        """The actor's arrays, taken again when :func:`actor_key` changed."""
        key = actor_key(self.parameters, self.statistics)
        if self._arrays is None or self._arrays.key != key:
            obs_parameters = None if self.statistics is None else self.statistics.parameters_as(np.float32(0))
            self._arrays = ActorArrays(key, numpy_layers(self.layers), obs_parameters)
        return self._arrays

    def predict(self, observation: np.ndarray, action_masks: np.ndarray | None = None) -> np.ndarray | None:
        """
        The deterministic actions for one observation ``obs_shape`` or a batch ``(B, *obs_shape)``, or None when the
        policy is not on the CPU (the torch ``predict`` serves it). With ``action_masks`` (checked, ``(B, mask_dim)``
        bool), the most likely valid action of each component.

        :raises ValueError: for an observation of the wrong shape (SB3's check).
        """
        policy = self.policy
        if policy.device.type != "cpu":
            return None
        if policy.training:  # as SB3's predict leaves it (the NumPy actor has no layer that depends on it)
            policy.set_training_mode(False)
        vectorized = is_vectorized_observation(observation, policy.observation_space)
        arrays = self.arrays()
        output = mlp_forward(arrays.layers, features(observation, self.layout, np, arrays.obs_parameters), np)
        if action_masks is not None:
            output = masked_logits(output, action_masks)
        actions = output if self.nvec is None else argmax_actions(output, self.nvec)
        actions = actions.reshape((-1, *cast(tuple[int, ...], policy.action_space.shape)))
        if isinstance(policy.action_space, spaces.Box):
            actions = np.clip(actions, policy.action_space.low, policy.action_space.high)
        return actions if vectorized else actions.squeeze(axis=0)
