"""The masks of a vectorized environment's current states, by sb3-contrib's protocol: each environment offers
``action_masks()`` (itself, or through sb3-contrib's ``ActionMasker`` wrapper), and a VecEnv gives them through
``env_method("action_masks")``.

:class:`MaskReader` keeps that protocol and reads the masks as cheaply as the VecEnv allows: for a ``DummyVecEnv``
(behind any ``VecEnvWrapper`` that does not redefine ``env_method``) it finds each environment's ``action_masks`` method
once and calls it directly at each step, instead of ``env_method``'s walk down every environment's wrapper chain per
call; any other VecEnv (``SubprocVecEnv``: one message to each worker) is asked through ``env_method``.
"""

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper

from sb3_clippedppo.masking.layout import MASKABLE_SPACES, check_masks

METHOD_NAME = "action_masks"  # sb3-contrib's EXPECTED_METHOD_NAME


def offers_masks(env: Any) -> bool:
    """Whether ``env`` (a VecEnv, or a Gymnasium env) offers ``action_masks()``, as sb3-contrib's
    ``is_masking_supported`` decides."""
    if isinstance(env, VecEnv):
        return bool(env.has_attr(METHOD_NAME))
    try:
        env.get_wrapper_attr(METHOD_NAME)
    except AttributeError:
        return False
    return True


def direct_methods(env: VecEnv) -> list[Callable[[], Any]] | None:
    """Each environment's ``action_masks`` method, where ``env`` is a ``DummyVecEnv`` (possibly behind wrappers that pass
    ``env_method`` through unchanged); None otherwise."""
    while isinstance(env, VecEnvWrapper):
        if type(env).env_method is not VecEnvWrapper.env_method:
            return None
        env = env.venv
    if not isinstance(env, DummyVecEnv) or type(env).env_method is not DummyVecEnv.env_method:
        return None
    return [inner.get_wrapper_attr(METHOD_NAME) for inner in env.envs]


class MaskReader:
    """
    The masks of a VecEnv's current states, ``(n_envs, mask_dim)`` bool, checked
    (:func:`~sb3_clippedppo.masking.layout.check_masks`).

    :param env: the vectorized environment; it must offer ``action_masks()`` (:func:`offers_masks`).
    :param action_space: its action space.
    """

    def __init__(self, env: VecEnv, action_space: spaces.Space):
        self.env, self.action_space, self.n_envs = env, action_space, env.num_envs
        self.methods = direct_methods(env)

    def read(self) -> list[Any]:
        """The environments' masks as they return them (one per environment)."""
        if self.methods is not None:
            return [method() for method in self.methods]
        return self.env.env_method(METHOD_NAME)

    def __call__(self) -> np.ndarray:
        """
        :return: the masks, ``(n_envs, mask_dim)`` bool.
        :raises ValueError: for masks of the wrong shape or dtype, or a state with no valid action.
        """
        masks = self.read()
        try:
            array = np.asarray(masks)
        except ValueError:  # ragged: environments disagree on the mask's size
            array = np.asarray(masks, dtype=object)
        return check_masks(array, self.action_space, self.n_envs)


def mask_reader(env: VecEnv, action_space: spaces.Space, use_masking: bool | None, policy_masks: bool) -> MaskReader | None:
    """
    The reader of the rollout's masks, or None when the rollout is not masked: ``learn(use_masking=...)``'s rule.

    :param env: the training environment.
    :param action_space: its action space.
    :param use_masking: None (the default): mask when the environment offers ``action_masks()`` and the action space has
        choices to mask; True: mask (as sb3-contrib's ``MaskablePPO``, an error when the environment offers no masks);
        False: do not.
    :param policy_masks: whether the policy can apply masks (one that offers this package's distributions).
    :return: the reader, or None.
    :raises ValueError: for ``use_masking=True`` with an environment that offers no masks, an action space without
        discrete choices, or a policy that cannot apply them.
    """
    if use_masking is False:
        return None
    offered = offers_masks(env)
    if use_masking is None and not offered:
        return None
    if not offered:
        raise ValueError("use_masking=True, but the environment does not offer action_masks(): wrap it in "
                         "sb3_contrib.common.wrappers.ActionMasker, or pass use_masking=False")  # fmt: skip
    if not isinstance(action_space, MASKABLE_SPACES):
        if use_masking is None:
            return None
        raise ValueError(f"use_masking=True needs Discrete, MultiDiscrete or MultiBinary actions, got {action_space}")
    if not policy_masks:
        message = ("action masks need a policy that offers sb3_clippedppo's distributions (offers_distributions = True, "
                   "as MlpPolicy, CnnPolicy, MultiInputPolicy)")  # fmt: skip
        if use_masking:
            raise ValueError(f"use_masking=True: {message}")
        warnings.warn(f"the environment offers action_masks(), but they are not used: {message}; pass use_masking=False "
                      "to silence this", UserWarning, stacklevel=3)  # fmt: skip
        return None
    return MaskReader(env, action_space)
