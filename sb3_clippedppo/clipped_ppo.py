"""ClippedPPO: Proximal Policy Optimization with the clipped surrogate objective and KL early stopping.

Schulman et al. 2017, "Proximal Policy Optimization Algorithms" (https://arxiv.org/abs/1707.06347), with
Generalized Advantage Estimation (Schulman et al. 2016, https://arxiv.org/abs/1506.02438). This file is the algorithm:
its arguments and the update loop; the rollout is :mod:`sb3_clippedppo.on_policy`'s. The rollout buffer and GAE
(:mod:`sb3_clippedppo.buffers`), the loss (:mod:`sb3_clippedppo.losses`), the action distributions and the two update
backends (:mod:`sb3_clippedppo.backends`) are this package's own; the policies' networks, callbacks, logging, vectorized
environments and ``save``/``load`` are Stable-Baselines3's.
"""

from collections import defaultdict
from typing import Any, ClassVar, TypeVar, cast

import numpy as np
import torch as th
from stable_baselines3.common import policies as sb3_policies
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, explained_variance

from sb3_clippedppo.arguments import (
    ACTION_SPACES,
    check_arguments,
    check_options,
    check_policy_and_env,
    check_rollout_size,
    renamed_argument,
)
from sb3_clippedppo.backends.chooser import choose_backend
from sb3_clippedppo.buffers import RolloutBuffer
from sb3_clippedppo.kl_adaptation import adapt_kl_coef, adapt_lr_scale, measure_updated_policy
from sb3_clippedppo.losses import LossCoefficients, NonFiniteLossError, normalize_advantages
from sb3_clippedppo.on_policy import BackendOnPolicyAlgorithm
from sb3_clippedppo.policies import (
    ActorCriticCnnPolicy,
    ActorCriticPolicy,
    MultiInputActorCriticPolicy,
    check_distribution_interface,
)
from sb3_clippedppo.threads import learning_threads

SelfClippedPPO = TypeVar("SelfClippedPPO", bound="ClippedPPO")
# Minibatch statistics as SB3's PPO logs them (train/<name>)
LOGGED_NAMES = {"policy_loss": "policy_gradient_loss"}
__all__ = ["ClippedPPO", "NonFiniteLossError"]


class ClippedPPO(BackendOnPolicyAlgorithm):
    """
    Proximal Policy Optimization (clip version) with KL early stopping (Schulman et al. 2017), for every observation
    and action space that Stable-Baselines3's PPO supports.

    Each iteration collects ``n_steps`` transitions from each of the ``n_envs`` environments, computes advantages
    with GAE (Schulman et al. 2016, eq. 16) and then runs ``n_epochs`` passes over the rollout in shuffled
    minibatches, minimizing ``L = -mean(min(r * A, clip(r, 1 - clip_range, 1 + clip_range) * A)) + vf_coef * mean((R - V)^2)
    - ent_coef * mean(entropy)`` (Schulman et al. 2017, eq. 7 and eq. 9; :mod:`sb3_clippedppo.losses`), where
    ``r = pi(a|s) / pi_old(a|s)``. Before each minibatch step, the KL divergence from the rollout policy is estimated
    with ``mean((r - 1) - log r)``; when it exceeds ``1.5 * target_kl``, the update stops without applying that step.

    Arguments carry Stable-Baselines3 PPO's names, defaults and meanings (so RL Zoo PPO hyperparameters work
    unchanged), except that custom rollout buffer classes are not supported.

    :param policy: ``"MlpPolicy"``, ``"CnnPolicy"``, ``"MultiInputPolicy"`` (:mod:`sb3_clippedppo.policies`), or a
        subclass of SB3's ``ActorCriticPolicy``. A policy with ``offers_distributions = True`` (this package's) is
        trained through its ``forward_distribution``; any other through SB3's ``forward`` and ``evaluate_actions``.
    :param env: the environment (a Gymnasium env, a VecEnv, or a registered id). Observations: ``Box`` (vectors or
        images), ``Discrete``, ``MultiDiscrete``, ``MultiBinary``, ``Dict``; actions: all but ``Dict``.
    :param learning_rate: Adam learning rate, or a schedule of the progress remaining (1 to 0).
    :param n_steps: steps collected per environment per rollout; the rollout holds ``n_steps * n_envs`` transitions.
    :param batch_size: minibatch size, at least 1 (2 with ``normalize_advantage``); above ``n_steps * n_envs``, each
        epoch is one minibatch of the whole rollout, as in SB3's PPO (both warn when it does not divide the rollout).
    :param n_epochs: passes over the rollout per update, at least 1.
    :param gamma: discount factor, in [0, 1].
    :param gae_lambda: GAE lambda, in [0, 1].
    :param clip_range: clipping parameter epsilon of the surrogate objective (> 0), or a schedule.
    :param clip_range_vf: clipping parameter for the value function (> 0), a schedule, or None (no clipping).
        This clipping depends on the scale of the rewards.
    :param normalize_advantage: whether to normalize advantages per minibatch (zero mean, unit std).
    :param ent_coef: entropy bonus coefficient, >= 0, or a schedule of the progress remaining (1 to 0), as
        ``learning_rate`` (logged as ``train/ent_coef`` then).
    :param vf_coef: value loss coefficient, >= 0.
    :param max_grad_norm: maximum global L2 norm of the gradient, > 0.
    :param use_sde: generalized State-Dependent Exploration for ``Box`` actions (gSDE; Raffin et al. 2022), as in SB3's
        PPO: SB3's state-dependent noise distribution, trained through autograd (the fast path does not take it).
    :param sde_sample_freq: with gSDE, resample the exploration matrix every ``sde_sample_freq`` steps of a rollout;
        -1 (or 0): only at the start of each rollout.
    :param rollout_buffer_class: None, or SB3's ``RolloutBuffer`` / ``DictRolloutBuffer`` (this package's buffer is
        used in their place: it holds every observation space); other classes are not supported.
    :param rollout_buffer_kwargs: must be empty (None or ``{}``).
    :param target_kl: KL early stopping threshold (stop when the estimate exceeds ``1.5 * target_kl``), > 0,
        or None for no limit.
    :param stats_window_size: number of episodes averaged in ``rollout/ep_rew_mean`` and ``rollout/ep_len_mean``.
    :param tensorboard_log: tensorboard log directory, or None.
    :param policy_kwargs: keyword arguments of the policy (SB3's, :class:`~sb3_clippedppo.policies.ActorCriticPolicy`
        adds ``state_dependent_std`` and ``normalize_observations``).
    :param verbose: 0 silent, 1 training information, 2 debug.
    :param seed: seed for the random number generators.
    :param device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
    :param _init_setup_model: whether to build the networks at construction.

    Options beyond SB3's PPO (keyword-only; their defaults leave the algorithm above unchanged):

    :param vf_learning_rate: learning rate (or schedule) of the critic's parameter group; None: ``learning_rate``.
    :param policy_objective: ``"clip"`` (the clipped surrogate) or ``"kl_penalty"`` (PPO-Penalty, Schulman et al.
        2017, section 4: ``mean(r * A) - beta * mean(KL(pi_old || pi))`` with the exact KL of the action
        distributions, and beta adapted after each update by :func:`~sb3_clippedppo.kl_adaptation.adapt_kl_coef`).
    :param kl_coef: PPO-Penalty's initial beta, > 0. The attribute holds the current beta and is saved.
    :param kl_penalty_target: PPO-Penalty's d_targ, the KL (nats) that beta adapts to, > 0. Not ``target_kl``, SB3's
        early-stopping threshold. ``kl_target``, its name before 0.3.0, is still accepted with a ``DeprecationWarning``.
    :param kl_adaptive_lr: adapt the learning rates to the KL of each update
        (:func:`~sb3_clippedppo.kl_adaptation.adapt_lr_scale`); needs ``target_kl``. The factor (``lr_scale``) is saved.
    :param kl_adaptive_lr_bounds: ``(lowest, highest)`` actor learning rate under ``kl_adaptive_lr``;
        default ``(1e-5, 1e-2)`` (rsl_rl's).
    :param fast_path: the update backend (:func:`~sb3_clippedppo.backends.chooser.choose_backend`): ``"auto"`` (default)
        trains through the closed-form MLP backend (:mod:`sb3_clippedppo.backends.closed_form`) where it applies, else
        through autograd (:attr:`fast_path_reason` says why, printed with ``verbose >= 1``); ``False``: always autograd;
        ``True``: the closed form, or a ``ValueError`` saying why it does not apply. Both compute the same update (to
        float32 rounding); :attr:`uses_fast_path` tells which one runs.
    :param recompute_advantages: recompute the values (those bootstrapping truncated episodes too), advantages and
        returns with the current critic before every epoch but the first (as Tianshou's PPO ``recompute_advantage``);
        ``clip_range_vf`` is then relative to the epoch's values. Logged as ``train/advantage_recomputes``.
    :param manage_threads: while ``learn`` runs, give the threads to one pool at a time, torch's or NumPy's BLAS
        (:func:`~sb3_clippedppo.threads.learning_thread_counts`; restored on return). ``False`` leaves both pools as
        they are: for applications that set threads themselves (Ray actors, Optuna's ``n_jobs``, an embedding program).
    :raises TypeError: for unsupported spaces, policies or arguments of the wrong type.
    :raises ValueError: for arguments out of range.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": ActorCriticPolicy,
        "CnnPolicy": ActorCriticCnnPolicy,
        "MultiInputPolicy": MultiInputActorCriticPolicy,
    }

    def __init__(  # SB3 PPO's arguments in its order, then this package's options (keyword-only)
        self, policy: str | type[sb3_policies.ActorCriticPolicy], env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4, n_steps: int = 2048, batch_size: int = 64, n_epochs: int = 10,
        gamma: float = 0.99, gae_lambda: float = 0.95, clip_range: float | Schedule = 0.2,
        clip_range_vf: float | Schedule | None = None, normalize_advantage: bool = True, ent_coef: float | Schedule = 0.0,
        vf_coef: float = 0.5, max_grad_norm: float = 0.5, use_sde: bool = False, sde_sample_freq: int = -1,
        rollout_buffer_class: type | None = None, rollout_buffer_kwargs: dict[str, Any] | None = None,
        target_kl: float | None = None, stats_window_size: int = 100, tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None, verbose: int = 0, seed: int | None = None,
        device: th.device | str = "auto", _init_setup_model: bool = True,
        *, vf_learning_rate: float | Schedule | None = None, policy_objective: str = "clip", kl_coef: float = 1.0,
        kl_penalty_target: float = 0.01, kl_adaptive_lr: bool = False,
        kl_adaptive_lr_bounds: tuple[float, float] = (1e-5, 1e-2), fast_path: bool | str = "auto",
        recompute_advantages: bool = False, manage_threads: bool = True, kl_target: float | None = None,
    ):  # fmt: skip
        kl_penalty_target = renamed_argument(
            "kl_target", kl_target, "kl_penalty_target", kl_penalty_target, "PPO-Penalty's d_targ, not SB3's target_kl"
        )
        check_arguments(
            learning_rate=learning_rate, n_steps=n_steps, batch_size=batch_size, n_epochs=n_epochs, gamma=gamma,
            gae_lambda=gae_lambda, clip_range=clip_range, clip_range_vf=clip_range_vf,
            normalize_advantage=normalize_advantage, ent_coef=ent_coef, vf_coef=vf_coef, max_grad_norm=max_grad_norm,
            use_sde=use_sde, sde_sample_freq=sde_sample_freq, rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs, target_kl=target_kl, stats_window_size=stats_window_size,
            vf_learning_rate=vf_learning_rate,
            policy_objective=policy_objective, kl_coef=kl_coef, kl_penalty_target=kl_penalty_target,
            kl_adaptive_lr=kl_adaptive_lr, kl_adaptive_lr_bounds=kl_adaptive_lr_bounds, fast_path=fast_path,
        )  # fmt: skip
        policy_class = self._get_policy_from_name(policy) if isinstance(policy, str) else policy
        env = check_policy_and_env(policy, policy_class, policy_kwargs, env, verbose)
        super().__init__(  # ent_coef may be a schedule here (FloatSchedule in _setup_model), where SB3 takes a float
            cast(type[sb3_policies.ActorCriticPolicy], policy_class), env, learning_rate=learning_rate, n_steps=n_steps,
            gamma=gamma, gae_lambda=gae_lambda, ent_coef=cast(float, ent_coef), vf_coef=vf_coef, max_grad_norm=max_grad_norm,
            use_sde=use_sde, sde_sample_freq=sde_sample_freq, stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log, policy_kwargs=policy_kwargs, verbose=verbose, device=device, seed=seed,
            _init_setup_model=False, supported_action_spaces=ACTION_SPACES,
        )  # fmt: skip
        if self.env is not None:
            check_rollout_size(n_steps, self.n_envs, batch_size, normalize_advantage)
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.clip_range = clip_range
        self.clip_range_vf = clip_range_vf
        self.normalize_advantage = normalize_advantage
        self.target_kl = target_kl
        self.vf_learning_rate = vf_learning_rate
        self.policy_objective = policy_objective
        self.kl_coef = float(kl_coef)  # PPO-Penalty's current beta (adapted during training)
        self.kl_penalty_target = kl_penalty_target
        self.kl_adaptive_lr = kl_adaptive_lr
        lowest, highest = kl_adaptive_lr_bounds
        self.kl_adaptive_lr_bounds = (float(lowest), float(highest))
        self.lr_scale = 1.0  # factor on the scheduled learning rates (adapted under kl_adaptive_lr)
        self.fast_path = fast_path
        self.recompute_advantages = bool(recompute_advantages)
        self.manage_threads = bool(manage_threads)
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        if "kl_target" in self.__dict__:  # a model saved before 0.3.0 (kl_penalty_target's old name)
            self.kl_penalty_target = self.__dict__.pop("kl_target")
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self.policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space, self.action_space, self.lr_schedule, use_sde=self.use_sde, **self.policy_kwargs
        ).to(self.device)
        check_distribution_interface(self.policy)
        native = getattr(self.policy, "offers_distributions", False)  # this package's policies give the exact KL
        options = {"policy_objective='kl_penalty'": self.policy_objective == "kl_penalty",
                   "kl_adaptive_lr=True": self.kl_adaptive_lr}  # fmt: skip
        check_options(self.policy, options, self.vf_learning_rate)
        # The rollout policy's distributions are kept where the KL after an update is measured (and a state-dependent std)
        keep_distributions = native and (any(options.values()) or getattr(self.policy, "state_dependent_std", False))
        self.rollout_buffer = RolloutBuffer(
            self.n_steps, self.n_envs, self.observation_space, self.action_space, gamma=self.gamma,
            gae_lambda=self.gae_lambda, device=self.device,
            distribution_dim=(cast(ActorCriticPolicy, self.policy).distribution_class.param_dim(self.action_space)
                              if keep_distributions else 0),
        )  # fmt: skip
        self.vf_lr_schedule = None if self.vf_learning_rate is None else FloatSchedule(self.vf_learning_rate)
        self.ent_coef_schedule = FloatSchedule(self.ent_coef)
        self.clip_range = FloatSchedule(self.clip_range)
        self.clip_range_vf = None if self.clip_range_vf is None else FloatSchedule(self.clip_range_vf)
        self.backend, self.fast_path_reason = choose_backend(self.policy, self.fast_path, self.policy_objective)
        if self.fast_path_reason and self.verbose >= 1:
            print(f"ClippedPPO trains through autograd: the fast path does not apply ({self.fast_path_reason})")

    def train(self) -> None:
        """
        Update the policy on the current rollout: ``n_epochs`` passes of shuffled minibatches, each a step of
        the clipped surrogate objective (Schulman et al. 2017, eq. 7; or PPO-Penalty's, section 4), the (optionally
        clipped) value loss and the entropy bonus, with global gradient-norm clipping, until the KL estimate exceeds
        ``1.5 * target_kl``; then :meth:`_after_update` (adaptive rules, logging).

        :raises NonFiniteLossError: when a minibatch's loss or gradient is NaN or infinite (before any step with it).
        """
        self.policy.set_training_mode(True)
        self.backend.prepare()
        self._update_learning_rates(self.policy.optimizer)
        progress = self._current_progress_remaining
        clip_range = cast(Schedule, self.clip_range)(progress)  # FloatSchedules since _setup_model, as in SB3's PPO
        clip_range_vf = None if self.clip_range_vf is None else cast(Schedule, self.clip_range_vf)(progress)
        ent_coef = self.ent_coef_schedule(progress)
        coefficients = LossCoefficients(clip_range, clip_range_vf, ent_coef, self.vf_coef, self.policy_objective, self.kl_coef)

        stats: dict[str, list[Any]] = defaultdict(list)  # scalars as the backend gives them (no device sync per step)
        early_stop_epoch, gradient_steps = -1, 0
        for epoch in range(self.n_epochs):
            if self.recompute_advantages and epoch > 0:
                self._recompute_advantages()
            approx_kl_divs: list[th.Tensor] = []
            for batch_index, batch in enumerate(self.rollout_buffer.minibatches(self.batch_size)):
                advantages = batch.advantages
                if self.normalize_advantage and len(advantages) > 1:
                    advantages = normalize_advantages(advantages)
                terms, result = self.backend.loss(batch, advantages, coefficients)
                for name in ("policy_loss", "value_loss", "entropy_loss", "clip_fraction"):
                    stats[name].append(getattr(terms, name))
                approx_kl_divs.append(terms.approx_kl)
                last_loss = terms.loss

                if self.target_kl is not None and float(terms.approx_kl) > 1.5 * self.target_kl:
                    early_stop_epoch = epoch
                    if self.verbose >= 1:
                        print(
                            f"KL early stopping at epoch {epoch}, minibatch {batch_index}: "
                            f"approx_kl={float(terms.approx_kl):.4f} > 1.5 * target_kl={1.5 * self.target_kl:.4f}"
                        )
                    break
                self.backend.backward(result)
                grad_norm = self.backend.clip_grad_norm_(self.max_grad_norm)
                if not np.isfinite(grad_norm):
                    raise NonFiniteLossError.at(terms, grad_norm, self._n_updates // self.n_epochs + 1, epoch, batch_index)
                self.policy.optimizer.step()
                gradient_steps += 1

            self._n_updates += 1
            if early_stop_epoch >= 0:
                break
        stats["approx_kl"] = approx_kl_divs  # of the last epoch, as SB3 logs it
        if isinstance(self.policy, ActorCriticPolicy):  # normalize_observations: statistics from this update's rollout
            self.policy.update_observation_statistics(self.rollout_buffer.flat_observations())
        if self.recompute_advantages:
            self.logger.record("train/advantage_recomputes", epoch)
        if callable(self.ent_coef):
            self.logger.record("train/ent_coef", ent_coef)
        self._after_update(stats, last_loss, clip_range, clip_range_vf, early_stop_epoch, gradient_steps)

    def _after_update(self, stats: dict[str, list[Any]], last_loss: Any, clip_range: float,
                      clip_range_vf: float | None, early_stop_epoch: int, gradient_steps: int) -> None:  # fmt: skip
        """
        After an update: measure the exact KL between the rollout policy and the updated one where an option needs it,
        adapt PPO-Penalty's beta (:func:`~sb3_clippedppo.kl_adaptation.adapt_kl_coef`) and the learning-rate factor
        (:func:`~sb3_clippedppo.kl_adaptation.adapt_lr_scale`), and log SB3 PPO's statistics.
        """
        for name, values in stats.items():  # SB3 PPO's names
            self.logger.record(f"train/{LOGGED_NAMES.get(name, name)}", float(np.mean([float(value) for value in values])))
        self.logger.record("train/loss", float(last_loss))
        buffer = self.rollout_buffer
        explained = explained_variance(buffer.values.ravel(), buffer.returns.ravel())
        self.logger.record("train/explained_variance", float(explained))

        state_dependent_std = getattr(self.policy, "state_dependent_std", False)
        if buffer.keeps_distributions:
            kl, std = measure_updated_policy(cast(ActorCriticPolicy, self.policy), buffer)
            self.logger.record("train/kl", kl)
            if self.policy_objective == "kl_penalty":
                self.kl_coef = adapt_kl_coef(self.kl_coef, kl, self.kl_penalty_target)
                self.logger.record("train/kl_coef", self.kl_coef)
            if self.kl_adaptive_lr:
                learning_rate = self.lr_schedule(self._current_progress_remaining)
                target_kl = cast(float, self.target_kl)  # kl_adaptive_lr needs it (check_arguments)
                self.lr_scale = adapt_lr_scale(self.lr_scale, kl, target_kl, learning_rate, self.kl_adaptive_lr_bounds)
                self.logger.record("train/lr_scale", self.lr_scale)
            if state_dependent_std:
                self.logger.record("train/std", std)
        log_std = getattr(self.policy, "log_std", None)
        if isinstance(log_std, th.Tensor) and not state_dependent_std:
            self.logger.record("train/std", th.exp(log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)
        # Not in Stable-Baselines3: where KL early stopping fired (-1: it did not) and how many steps were applied
        self.logger.record("train/early_stop_epoch", early_stop_epoch)
        self.logger.record("train/minibatch_updates", gradient_steps)

    def _update_learning_rates(self, optimizer: th.optim.Optimizer) -> None:
        """Set the actor's and the critic's learning rates from their schedules (and ``lr_scale``); log them."""
        progress = self._current_progress_remaining
        learning_rate = self.lr_schedule(progress) * self.lr_scale
        vf_learning_rate = learning_rate if self.vf_lr_schedule is None else self.vf_lr_schedule(progress) * self.lr_scale
        for group in optimizer.param_groups:
            group["lr"] = vf_learning_rate if group.get("name") == "critic" else learning_rate
        self.logger.record("train/learning_rate", learning_rate)
        if self.vf_lr_schedule is not None:
            self.logger.record("train/vf_learning_rate", vf_learning_rate)

    def learn(self: SelfClippedPPO, total_timesteps: int, callback: MaybeCallback = None, log_interval: int = 1,
              tb_log_name: str = "ClippedPPO", reset_num_timesteps: bool = True,
              progress_bar: bool = False, use_masking: bool | None = None) -> SelfClippedPPO:  # fmt: skip
        """
        SB3's ``learn``: train for ``total_timesteps`` environment steps (summed over environments), in whole rollouts.
        With ``manage_threads`` (the default), one thread pool at a time uses more than one thread while it runs
        (:func:`~sb3_clippedppo.threads.learning_threads`); both thread counts are restored on return.

        :param use_masking: invalid-action masking with sb3-contrib's ``MaskablePPO`` protocol
            (:mod:`sb3_clippedppo.masking`, ``docs/masking.md``): None (default) masks when the environment offers
            ``action_masks()`` (directly, through ``ActionMasker``, or ``env_method`` on a VecEnv) and the actions are
            ``Discrete``, ``MultiDiscrete`` or ``MultiBinary``; True masks or raises a ``ValueError`` (as
            ``MaskablePPO``); False never masks.

        :raises NonFiniteLossError: when an update meets a NaN or infinite loss.
        """
        self.use_masking = use_masking
        if not self.manage_threads:
            return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)
        with learning_threads(self.uses_fast_path, min(self.batch_size, self.n_steps * self.n_envs)):
            return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)
