"""``predict`` with action masks (sb3-contrib's ``MaskableActorCriticPolicy.predict``): the policy's distributions for the
observations, masked (:func:`~sb3_clippedppo.masking.logits.masked_distribution`), then the mode or a sample, in the
action space's shape. A masked action is never returned."""

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import maybe_transpose
from stable_baselines3.common.utils import is_vectorized_observation

from sb3_clippedppo.masking.layout import check_masks
from sb3_clippedppo.masking.logits import masked_distribution


def masked_predict(policy: Any, observation: Any, masks: Any, deterministic: bool) -> np.ndarray:
    """
    The actions of ``policy`` (one of this package's, which gives its distributions through ``get_distribution``) for
    an observation or a batch, with ``masks`` applied.

    :param policy: the policy.
    :param observation: one observation or a batch ``(B, *obs_shape)`` (a dict of them for ``Dict`` spaces).
    :param masks: the masks of the ``B`` states (:func:`~sb3_clippedppo.masking.layout.check_masks` layouts).
    :param deterministic: the mode (True) or a sample.
    :return: actions ``(B, *action_shape)``, or ``action_shape`` for one unbatched observation.
    :raises ValueError: for masks that do not fit the observations or the action space (the message names the
        expected shape), or a state with no valid action.
    """
    checked = predict_masks(observation, policy.observation_space, policy.action_space, masks)
    policy.set_training_mode(False)
    obs_tensor, vectorized = policy.obs_to_tensor(observation)
    with th.no_grad():
        distribution = masked_distribution(policy.get_distribution(obs_tensor), checked)
        actions = distribution.get_actions(deterministic=deterministic).cpu().numpy()
    action_space = policy.action_space
    actions = actions.reshape((-1, *action_space.shape))
    if isinstance(action_space, (spaces.Discrete, spaces.MultiDiscrete)):
        actions = actions.astype(np.int64)
    return actions if vectorized else actions.squeeze(axis=0)


def predict_masks(observation: Any, observation_space: spaces.Space, action_space: spaces.Space, masks: Any) -> np.ndarray:
    """
    ``predict``'s masks, checked against the observations: ``(B, mask_dim)`` bool for a batch of ``B`` observations (or
    one observation, ``B = 1``).

    :raises ValueError: for masks that do not fit (the message names the expected shape), or a state with no valid action.
    """
    if isinstance(observation_space, spaces.Dict):
        key = next(iter(observation_space.spaces))
        observation_space, observation = observation_space[key], observation[key]
    # as SB3's obs_to_tensor: images may come channels last to a policy that takes them channels first
    first = maybe_transpose(np.asarray(observation), observation_space)
    vectorized = is_vectorized_observation(first, observation_space)
    return check_masks(masks, action_space, n_states=first.shape[0] if vectorized else 1)
