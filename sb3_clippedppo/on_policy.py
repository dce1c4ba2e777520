"""The on-policy algorithm's machinery around the update, for :class:`~sb3_clippedppo.clipped_ppo.ClippedPPO`: SB3's
``OnPolicyAlgorithm`` whose rollouts and deterministic predictions go through the update backend
(:mod:`sb3_clippedppo.backends`), with this package's rollout buffer (GAE, bootstrapped truncations), gSDE's
resampling, invalid-action masks (:mod:`sb3_clippedppo.masking`), and SB3's saving surface (``get_parameters``,
``set_parameters``, an atomic ``save``). The algorithm itself, its arguments and its update, is in
:mod:`sb3_clippedppo.clipped_ppo`, as SB3's ``ppo.py`` sits on its ``on_policy_algorithm.py``.
"""

import os
from collections.abc import Mapping
from typing import Any, cast

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common import policies as sb3_policies
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.type_aliases import TensorDict
from stable_baselines3.common.vec_env import VecEnv

from sb3_clippedppo.backends.base import UpdateBackend
from sb3_clippedppo.buffers import RolloutBuffer, observations_as_tensor
from sb3_clippedppo.masking.layout import mask_dim
from sb3_clippedppo.masking.prediction import masked_predict, predict_masks
from sb3_clippedppo.masking.reading import MaskReader, mask_reader
from sb3_clippedppo.policies import (
    evaluate_rollout,
)
from sb3_clippedppo.saving import is_optimizer_state, regroup_optimizer_state, save_atomically


class BackendOnPolicyAlgorithm(OnPolicyAlgorithm):
    """
    SB3's ``OnPolicyAlgorithm`` with rollouts collected through an update backend (see the module's docstring). A
    subclass sets ``backend``, ``fast_path_reason`` and the rollout buffer in ``_setup_model`` and writes ``train``.
    """

    policy: sb3_policies.ActorCriticPolicy
    rollout_buffer: RolloutBuffer  # type: ignore[assignment]
    backend: UpdateBackend
    use_masking: bool | None = None  # learn(use_masking=...): invalid-action masking (sb3_clippedppo.masking)

    @property
    def uses_fast_path(self) -> bool:
        """Whether updates run through :mod:`sb3_clippedppo.backends.closed_form` (see ``fast_path``)."""
        return self.backend.fast_path

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "backend", "fast_path_reason"]

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """
        SB3's ``predict``: the actions for an observation ``obs_shape`` or a batch ``(B, *obs_shape)``, reshaped to the
        action space's shape and clipped to ``Box`` bounds. On the fast path, deterministic actions on the CPU come from
        the backend's NumPy actor: the same actions up to float32 rounding, without PyTorch's per-call overhead
        (evaluations call ``predict`` once per step).

        :param action_masks: sb3-contrib's ``MaskablePPO.predict`` argument: the masks of the observations' states
            (:mod:`sb3_clippedppo.masking`; True where an action is valid, ``(B, mask_dim)`` or ``(mask_dim,)``); a
            masked action is never returned. None: no masking.
        :raises ValueError: for an observation whose shape is neither ``obs_shape`` nor ``(B, *obs_shape)`` (as SB3);
            for masks of the wrong shape or dtype, or a state with no valid action (naming the expected shape).
        """
        if action_masks is not None:
            return self._masked_predict(observation, deterministic, action_masks), state
        if deterministic and isinstance(observation, np.ndarray):
            actions = self.backend.deterministic_actions(observation)
            if actions is not None:
                return actions, state
        return self.policy.predict(observation, state, episode_start, deterministic)

    # ------------------------------------------------------------------------------------- invalid-action masking

    def _rollout_mask_reader(self, env: VecEnv, use_masking: bool | None, buffer: RolloutBuffer) -> MaskReader | None:
        """The reader of a rollout's action masks (:func:`~sb3_clippedppo.masking.reading.mask_reader`; None: no
        masking), with the buffer made to keep them (or not)."""
        use = self.use_masking if use_masking is None else use_masking
        reader = mask_reader(env, self.action_space, use, bool(getattr(self.policy, "offers_distributions", False)))
        buffer.keep_masks(0 if reader is None else mask_dim(self.action_space))
        return reader

    def _masked_predict(self, observation: Any, deterministic: bool, action_masks: Any) -> np.ndarray:
        """``predict`` with action masks: the backend's NumPy actor for deterministic actions where it has one, else
        the policy's masked distributions (:func:`~sb3_clippedppo.masking.prediction.masked_predict`)."""
        if not getattr(self.policy, "offers_distributions", False):
            name = type(self.policy).__name__
            raise ValueError(f"action_masks need a policy that offers sb3_clippedppo's distributions, got {name}")
        if deterministic and isinstance(observation, np.ndarray):
            masks = predict_masks(observation, self.observation_space, self.action_space, action_masks)
            actions = self.backend.deterministic_actions(observation, masks)
            if actions is not None:
                return actions
        return masked_predict(self.policy, observation, action_masks, deterministic)

    def get_parameters(self) -> dict[str, dict]:
        """SB3's ``get_parameters``, with the optimizer's state in SB3's layout (one entry per parameter tensor) whatever
        storage the backend uses."""
        params = super().get_parameters()
        params["policy.optimizer"] = self.backend.optimizer_state()
        return params

    def save(self, path: str | os.PathLike | Any, exclude: Any = None, include: Any = None) -> None:
        """SB3's ``save``, written so that a crash or a full disk during the write leaves the previous file at ``path``
        intact (:func:`~sb3_clippedppo.saving.save_atomically`); the RL Zoo's checkpoints and final model included."""
        save_atomically(super().save, path, exclude=exclude, include=include)

    def set_parameters(
        self, load_path_or_dict: str | TensorDict | Any, exact_match: bool = True, device: th.device | str = "auto"
    ) -> None:
        """
        SB3's ``set_parameters``, with the optimizer state regrouped for this model's parameter storage
        (:func:`~sb3_clippedppo.saving.regroup_optimizer_state`), so that zips saved with flat storage load too. Errors
        are SB3's: torch's ``RuntimeError`` for a missing or unexpected tensor under ``exact_match``, ``ValueError`` for
        an unknown or missing object name.

        :raises TypeError: for an object's parameters that are not a state dict (a mapping of names to tensors).
        :raises ValueError: for an optimizer state whose groups or sizes do not match the policy's parameters.
        """
        params: dict[str, Any] = dict(load_path_or_dict) if isinstance(load_path_or_dict, dict) else load_from_zip_file(
            load_path_or_dict, device=device, load_data=False)[1]  # fmt: skip
        known = set(self._get_torch_save_params()[0])  # SB3 raises its ValueError for any other name
        for name, value in params.items():
            if name in known and not isinstance(value, Mapping):
                raise TypeError(f"set_parameters: {name!r} must be a state dict (a mapping of names to tensors), "
                                f"got {type(value).__name__}")  # fmt: skip
        state = params.get("policy.optimizer")
        if is_optimizer_state(state):  # otherwise SB3's and torch's own errors
            groups = [group["params"] for group in self.policy.optimizer.param_groups]
            params["policy.optimizer"] = regroup_optimizer_state(state, groups)
        super().set_parameters(params, exact_match=exact_match, device=device)

    # ------------------------------------------------------------------------------------------------ rollout

    def collect_rollouts(self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer,  # type: ignore[override]
                         n_rollout_steps: int, use_masking: bool | None = None) -> bool:  # fmt: skip
        """
        Fill ``rollout_buffer`` with ``n_rollout_steps`` steps of every environment, then compute advantages and returns.
        Actions are stored raw and clipped to the ``Box`` bounds only when sent to the environment. A step at which a time
        limit cut the episode (truncated, not terminated) is bootstrapped with ``gamma * V(terminal observation)`` added
        to its reward; a true termination is not. Callbacks see SB3's protocol and locals, except that on the fast path
        ``values`` and ``log_probs`` are None during the rollout: the backend computes them for the whole rollout at its
        end, in one batch (the policy does not change during a rollout); ``on_rollout_end`` finds them in
        ``rollout_buffer``.

        :param env: the training environment.
        :param callback: called at each step and at the start and end of the rollout.
        :param rollout_buffer: the buffer to fill.
        :param n_rollout_steps: steps per environment.
        :param use_masking: invalid-action masking (sb3-contrib's ``MaskablePPO`` protocol: each step's masks from the
            environments' ``action_masks()``, kept in the buffer); None: ``learn``'s ``use_masking``
            (:meth:`_rollout_mask_reader`).
        :return: True if the rollout completed, False if a callback stopped it.
        """
        last_obs, episode_starts = self._last_obs, self._last_episode_starts
        if last_obs is None or episode_starts is None:
            raise RuntimeError("collect_rollouts() needs a previous observation: call learn() instead")
        self.policy.set_training_mode(False)
        rollout_buffer.reset()
        n_envs = env.num_envs
        rollout_step = self.backend.rollout_step(n_rollout_steps, n_envs, rollout_buffer.keeps_distributions)
        read_masks, action_masks = self._rollout_mask_reader(env, use_masking, rollout_buffer), None
        is_box = isinstance(self.action_space, spaces.Box)
        env_action_shape = (n_envs, *(self.action_space.shape or ()))
        low, high = (np.asarray(getattr(self.action_space, bound, 0.0)).reshape(-1) for bound in ("low", "high"))
        truncated_steps: list[tuple[int, int, Any]] = []
        squash = is_box and self.policy.squash_output  # gSDE's squashed actions are rescaled to the bounds, not clipped
        # gSDE: a new exploration matrix per rollout and every sde_sample_freq steps (as SB3's PPO, in its order)
        resample_every = self.sde_sample_freq if self.use_sde and self.sde_sample_freq > 0 else 0
        if self.use_sde:
            self.policy.reset_noise(n_envs)

        callback.on_rollout_start()
        for n_steps in range(n_rollout_steps):
            if resample_every and n_steps % resample_every == 0:
                self.policy.reset_noise(n_envs)
            if read_masks is not None:
                action_masks = read_masks()
            actions, values, log_probs, distribution_params = rollout_step(last_obs, n_steps, action_masks)
            if squash:
                clipped_actions = self.policy.unscale_action(actions).reshape(env_action_shape)
            else:  # np.minimum(np.maximum()) is np.clip without its Python-level overhead
                clipped_actions = np.minimum(np.maximum(actions, low), high).reshape(env_action_shape) if is_box else actions

            new_obs, rewards, dones, infos = env.step(clipped_actions)
            self.num_timesteps += n_envs

            # Give callbacks access to the local variables (as in Stable-Baselines3)
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)

            rollout_buffer.add(last_obs, actions, rewards, episode_starts, values, log_probs, distribution_params,
                               action_masks=action_masks)  # fmt: skip
            for idx in np.flatnonzero(dones):
                info = infos[idx]
                if info.get("TimeLimit.truncated", False) and info.get("terminal_observation") is not None:
                    truncated_steps.append((n_steps, int(idx), info["terminal_observation"]))
            self._last_obs, self._last_episode_starts = last_obs, episode_starts = new_obs, dones  # type: ignore[assignment]

        self.backend.finish_rollout(rollout_buffer)
        rollout_buffer.set_truncations(truncated_steps)
        self._compute_advantages()

        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    @th.no_grad()
    def _values(self, observations: Any) -> np.ndarray:
        """``V(s)`` of observations from the environments (or a stack of them), shape ``(N,)`` float32."""
        tensor = observations_as_tensor(observations, self.observation_space, self.device)
        return self.policy.predict_values(tensor).flatten().cpu().numpy()

    def _compute_advantages(self) -> None:
        """Bootstrap the rollout's truncated episodes and its last step with the current critic, then GAE."""
        buffer = self.rollout_buffer
        if buffer.truncations:
            buffer.bootstrap_truncations(self._values(buffer.terminal_observations))
        dones = cast(np.ndarray, self._last_episode_starts)  # the episode starts of the observation after the last step
        buffer.compute_returns_and_advantage(last_values=self._values(self._last_obs), dones=dones)

    def _recompute_advantages(self) -> None:
        """``recompute_advantages``: the rollout's values ``V(s_t)`` with the current critic, then the bootstraps and GAE."""
        values = self.rollout_buffer.values.reshape(-1)
        for chunk, _, chunk_values in evaluate_rollout(self.policy, self.rollout_buffer, values_only=True):
            values[chunk] = chunk_values.cpu().numpy()
        self._compute_advantages()
