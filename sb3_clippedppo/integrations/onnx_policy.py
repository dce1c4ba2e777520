"""The module that ONNX export traces (:class:`DeterministicPolicy`): raw observations in, ``predict``'s deterministic
actions out, with ``VecNormalize``'s observation statistics inside; and what it needs (the spaces it takes, its input
names and dtypes). The file format, the command and the checks are :mod:`sb3_clippedppo.integrations.export`'s.
"""


import copy
from typing import Any, cast

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecNormalize
from torch import nn

from sb3_clippedppo.buffers import with_feature_axis
from sb3_clippedppo.masking.layout import mask_dim
from sb3_clippedppo.masking.logits import masked_distribution

OBSERVATION_INPUT = "observation"
ACTION_MASK_INPUT = "action_mask"
ACTION_OUTPUT = "action"
OBSERVATION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
ACTION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


def check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """
    Check that a policy with these spaces can be exported.

    :raises TypeError: for an observation space other than ``Box``, ``Discrete``, ``MultiDiscrete``, ``MultiBinary`` or a
        ``Dict`` of them, or an action space other than ``Box``, ``Discrete``, ``MultiDiscrete`` or ``MultiBinary``.
    """
    entries = observation_space.spaces.values() if isinstance(observation_space, spaces.Dict) else [observation_space]
    for space in entries:
        if not isinstance(space, OBSERVATION_SPACES):
            raise TypeError(
                "export_onnx supports Box, Discrete, MultiDiscrete and MultiBinary observations and a Dict of them, "
                f"got {observation_space}"
            )
    if not isinstance(action_space, ACTION_SPACES):
        raise TypeError(f"export_onnx supports Box, Discrete, MultiDiscrete and MultiBinary actions, got {action_space}")


def input_names(observation_space: spaces.Space) -> list[str]:
    """The ONNX input names: ``["observation"]``, or the keys of a ``Dict`` observation space (in its order)."""
    if isinstance(observation_space, spaces.Dict):
        return [str(key) for key in observation_space.spaces]
    return [OBSERVATION_INPUT]


def input_dtype(space: spaces.Space) -> np.dtype:
    """The dtype an input takes: the space's dtype (int64 for ``Discrete``, whose samples are NumPy int64)."""
    if isinstance(space, spaces.Discrete):
        return np.dtype(np.int64)
    return np.dtype(space.dtype)


def example_observations(observation_space: spaces.Space, batch_size: int = 2) -> dict[str, np.ndarray]:
    """
    A batch of observations of ``observation_space`` in the file's input layout (name -> array of shape
    ``(batch_size, *shape)`` and :func:`input_dtype`), sampled from the space with a fixed seed.
    """
    observation_space = copy.deepcopy(observation_space)
    observation_space.seed(0)
    batch = [observation_space.sample() for _ in range(batch_size)]
    if isinstance(observation_space, spaces.Dict):
        return {
            str(key): np.stack([np.asarray(sample[key]) for sample in batch]).astype(input_dtype(space))
            for key, space in observation_space.spaces.items()
        }
    return {OBSERVATION_INPUT: np.stack([np.asarray(sample) for sample in batch]).astype(input_dtype(observation_space))}


def space_description(space: spaces.Space) -> dict[str, Any]:
    """A JSON-serializable description of a space: type, shape, dtype, and ``n``/``nvec``/bounds where they apply
    (bounds only for vector ``Box`` spaces of at most 1,024 entries)."""
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {str(key): space_description(value) for key, value in space.spaces.items()}}
    description: dict[str, Any] = {"type": type(space).__name__, "shape": list(space.shape or ()), "dtype": str(space.dtype)}
    if isinstance(space, spaces.Discrete):
        description.update(n=int(space.n), start=int(space.start))
    elif isinstance(space, spaces.MultiDiscrete):
        description["nvec"] = space.nvec.tolist()
    elif isinstance(space, spaces.Box) and space.low.size <= 1024:
        description.update(low=space.low.tolist(), high=space.high.tolist())
    return description


class VecNormalizeObservations(nn.Module):
    """
    ``VecNormalize.normalize_obs`` as a module: ``clip((x - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)`` in
    float64, returned as float32 (bit for bit what SB3 computes in NumPy).

    :param mean: running mean of the observations, shape ``obs_shape``.
    :param var: running variance, shape ``obs_shape``.
    :param epsilon: ``VecNormalize.epsilon``.
    :param clip_obs: ``VecNormalize.clip_obs``.
    """

    mean: th.Tensor
    std: th.Tensor

    def __init__(self, mean: np.ndarray, var: np.ndarray, epsilon: float, clip_obs: float):
        super().__init__()
        self.register_buffer("mean", th.as_tensor(np.asarray(mean, dtype=np.float64)))
        self.register_buffer("std", th.as_tensor(np.sqrt(np.asarray(var, dtype=np.float64) + epsilon)))
        self.clip_obs = float(clip_obs)

    def forward(self, x: th.Tensor) -> th.Tensor:
        return th.clamp((x.to(th.float64) - self.mean) / self.std, -self.clip_obs, self.clip_obs).to(th.float32)


def vec_normalize_modules(vec_normalize: VecNormalize | None, observation_space: spaces.Space) -> dict[str, nn.Module]:
    """
    One :class:`VecNormalizeObservations` per input that ``vec_normalize`` normalizes (keyed by input name).

    :raises TypeError: when ``vec_normalize`` is not a ``VecNormalize``.
    :raises ValueError: when its observation space differs from the model's.
    """
    if vec_normalize is None:
        return {}
    if not isinstance(vec_normalize, VecNormalize):
        raise TypeError(f"vec_normalize must be a VecNormalize, a path to its .pkl file or None, got {type(vec_normalize)}")
    if not vec_normalize.norm_obs:
        return {}
    if vec_normalize.observation_space != observation_space:
        raise ValueError(
            f"vec_normalize's observation space {vec_normalize.observation_space} differs from the model's {observation_space}"
        )
    arguments = dict(epsilon=vec_normalize.epsilon, clip_obs=vec_normalize.clip_obs)
    if isinstance(observation_space, spaces.Dict):
        keys = vec_normalize.norm_obs_keys or []
        per_key = cast(dict[str, RunningMeanStd], vec_normalize.obs_rms)
        return {str(key): VecNormalizeObservations(per_key[key].mean, per_key[key].var, **arguments) for key in keys}
    statistics = cast(RunningMeanStd, vec_normalize.obs_rms)
    return {OBSERVATION_INPUT: VecNormalizeObservations(statistics.mean, statistics.var, **arguments)}


class DeterministicPolicy(nn.Module):
    """
    Raw observations to the actions of ``model.predict(obs, deterministic=True)``: the module that
    :func:`export_onnx` exports (see the module docstring for the steps). It holds a CPU copy of the policy, in
    evaluation mode; the model is left as it was.

    :param policy: the model's policy (``model.policy``).
    :param vec_normalize: ``VecNormalize`` whose observation statistics come first, or None.
    :param action_masks: take the action masks as a last input (``Discrete``, ``MultiDiscrete``, ``MultiBinary``
        actions, a policy that offers this package's distributions).
    :raises TypeError: for ``action_masks`` with actions or a policy that cannot be masked.
    """

    low: th.Tensor
    high: th.Tensor

    def __init__(self, policy: BasePolicy, vec_normalize: VecNormalize | None = None, action_masks: bool = False):
        super().__init__()
        self.observation_space: spaces.Space = policy.observation_space
        self.action_space: spaces.Space = policy.action_space
        check_spaces(self.observation_space, self.action_space)
        self.names = input_names(self.observation_space)
        self.action_masks = bool(action_masks)
        if self.action_masks:  # the mask input: sb3_clippedppo.masking's layout
            self.mask_dim = mask_dim(self.action_space)
            if not getattr(policy, "offers_distributions", False):
                raise TypeError(f"action_masks=True needs a policy that offers sb3_clippedppo's distributions, got "
                                f"{type(policy).__name__}")  # fmt: skip
        self.vec_normalize = nn.ModuleDict(vec_normalize_modules(vec_normalize, self.observation_space))
        self.policy = copy.deepcopy(policy, without_sampled_noise(policy)).to("cpu")
        for parameter in self.policy.parameters():
            parameter.requires_grad_(False)
        if isinstance(self.action_space, spaces.Box):
            self.register_buffer("low", th.as_tensor(self.action_space.low, dtype=th.float32))
            self.register_buffer("high", th.as_tensor(self.action_space.high, dtype=th.float32))
        self.eval()

    def forward(self, *observations: th.Tensor) -> th.Tensor:
        """
        :param observations: one tensor per input name, ``(B, *obs_shape)`` in the input dtypes (then the action masks,
            ``(B, mask_dim)`` bool, with ``action_masks``).
        :return: actions ``(B, *action_shape)``.
        """
        masks = observations[-1] if self.action_masks else None
        observations = observations[: len(self.names)]
        inputs = {
            name: self.vec_normalize[name](x) if name in self.vec_normalize else x
            for name, x in zip(self.names, observations, strict=True)
        }
        obs: Any = inputs if isinstance(self.observation_space, spaces.Dict) else inputs[OBSERVATION_INPUT]
        obs = with_feature_axis(obs, self.observation_space)
        if getattr(self.policy, "use_sde", False):
            actions = gsde_mean_actions(self.policy, obs)
        else:
            distribution = self.policy.get_distribution(obs)  # type: ignore[operator]
            if masks is not None:
                distribution = masked_distribution(distribution, masks)
            actions = distribution.mode()
        actions = actions.reshape(-1, *self.action_space.shape)  # type: ignore[misc]
        if isinstance(self.action_space, spaces.Box):
            if self.policy.squash_output:  # gSDE's tanh-squashed actions, rescaled to the bounds (SB3's unscale_action)
                actions = self.low + 0.5 * (actions + 1.0) * (self.high - self.low)
            else:
                actions = th.minimum(th.maximum(actions, self.low), self.high)
        return actions


def gsde_mean_actions(policy: Any, obs: Any) -> th.Tensor:
    """
    A gSDE policy's deterministic actions, ``action_net`` of the actor's latent features (``tanh`` of it with
    ``squash_output``): what ``get_distribution(obs).mode()`` gives, without building SB3's state-dependent noise
    distribution, whose argument checks the ONNX exporter cannot trace.

    :param policy: a policy with ``use_sde=True``.
    :param obs: observations, a tensor ``(B, *obs_shape)`` or a dict of them.
    :return: the actions, ``(B, action_dim)``.
    """
    features = BasePolicy.extract_features(policy, obs, policy.pi_features_extractor)
    mean = policy.action_net(policy.mlp_extractor.forward_actor(features))
    return th.tanh(mean) if policy.squash_output else mean


def without_sampled_noise(policy: BasePolicy) -> dict[int, Any]:
    """
    A ``copy.deepcopy`` memo that copies a gSDE policy's distribution without the exploration matrices it sampled: they
    carry autograd history (SB3 samples them with ``rsample``), which ``deepcopy`` refuses, and deterministic actions
    do not use them. Empty for other policies.

    :param policy: the policy to copy.
    """
    distribution = getattr(policy, "action_dist", None)
    if distribution is None:
        return {}
    clean = copy.copy(distribution)
    for name, value in vars(distribution).items():
        if isinstance(value, (th.Tensor, th.distributions.Distribution)):
            setattr(clean, name, None)
    return {id(distribution): clean}
