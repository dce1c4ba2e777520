"""ClippedPPO: Proximal Policy Optimization with the clipped surrogate objective and KL early stopping.

Schulman et al. 2017, "Proximal Policy Optimization Algorithms" (https://arxiv.org/abs/1707.06347), with
Generalized Advantage Estimation (Schulman et al. 2016, https://arxiv.org/abs/1506.02438). The rollout buffer,
GAE, Gaussian policy and update are this package's own; callbacks, logging, vectorized environments and
``save``/``load`` are Stable-Baselines3's.
"""

import inspect
import numbers
import warnings
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import maybe_make_env
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, explained_variance
from stable_baselines3.common.vec_env import VecEnv

from sb3_clippedppo.buffers import RolloutBuffer
from sb3_clippedppo.losses import AnalyticLoss, normalize_advantages, ppo_loss
from sb3_clippedppo.policies import MlpActorCriticPolicy

SelfClippedPPO = TypeVar("SelfClippedPPO", bound="ClippedPPO")


class NonFiniteLossError(FloatingPointError, ValueError):
    """
    Raised when an update produces a NaN or infinite loss or gradient; no parameter was changed by it.
    It is a ``ValueError`` too, which the RL Zoo's hyperparameter search treats as a pruned trial.
    """


POLICY_OBJECTIVES = ("clip", "kl_penalty")


def adapt_kl_coef(kl_coef: float, kl: float, kl_target: float) -> float:
    """
    PPO-Penalty's adaptive KL coefficient (Schulman et al. 2017, section 4), applied after each update: beta is
    halved when the measured KL is below ``kl_target / 1.5`` and doubled when it is above ``kl_target * 1.5``.

    :param kl_coef: the current beta.
    :param kl: mean ``KL(pi_old || pi)`` over the rollout's observations after the update.
    :param kl_target: the paper's d_targ.
    :return: the new beta.
    """
    if kl < kl_target / 1.5:
        return kl_coef / 2.0
    if kl > kl_target * 1.5:
        return kl_coef * 2.0
    return kl_coef


def adapt_lr_scale(lr_scale: float, kl: float, target_kl: float, learning_rate: float, bounds: tuple[float, float]) -> float:
    """
    KL-adaptive learning rate (as in rsl_rl and SBX): the learning rate is divided by 1.5 when the KL of an update
    exceeds ``2 * target_kl`` and multiplied by 1.5 when it is below ``target_kl / 2``, as a factor on the scheduled
    rate, kept so that the resulting rate stays within ``bounds``.

    :param lr_scale: the current factor.
    :param kl: mean ``KL(pi_old || pi)`` over the rollout's observations after the update.
    :param target_kl: the target.
    :param learning_rate: the scheduled (unscaled) learning rate for the next update.
    :param bounds: ``(lowest, highest)`` learning rate.
    :return: the new factor.
    """
    if kl > 2.0 * target_kl:
        lr_scale /= 1.5
    elif kl < target_kl / 2.0:
        lr_scale *= 1.5
    if learning_rate > 0:
        lr_scale = min(max(lr_scale, bounds[0] / learning_rate), bounds[1] / learning_rate)
    return lr_scale


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_real(name: str, value: Any, low: float, high: float = np.inf, low_open: bool = False) -> None:
    """Check ``low <= value <= high`` (``low < value`` when ``low_open``)."""
    if not _is_number(value):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    too_low = value <= low if low_open else value < low
    if too_low or value > high or np.isnan(value):
        interval = f"{'(' if low_open else '['}{low}, {high}{']' if np.isfinite(high) else ')'}"
        raise ValueError(f"{name} must be in {interval}, got {value}")


def _check_schedule(name: str, value: Any, allow_none: bool = False) -> None:
    """A positive number, or a schedule (callable of the progress remaining) whose initial value is positive."""
    if value is None and allow_none:
        return
    if callable(value):
        initial = value(1.0)
        if not _is_number(initial) or not initial > 0:
            raise ValueError(f"{name} schedule must return a positive number at progress 1, got {initial!r}")
        return
    if not _is_number(value):
        expected = "a positive number, a schedule" + (" or None" if allow_none else "")
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    if not value > 0:
        raise ValueError(f"{name} must be > 0{' (use None to disable it)' if allow_none else ''}, got {value}")


class ClippedPPO(OnPolicyAlgorithm):
    """
    Proximal Policy Optimization (clip version) with KL early stopping, for Box (Gaussian policy) and
    Discrete (categorical policy) actions and Box observations.

    Each iteration collects ``n_steps`` transitions from each of the ``n_envs`` environments, computes advantages
    with GAE (Schulman et al. 2016, eq. 16) and then runs ``n_epochs`` passes over the rollout in shuffled
    minibatches, minimizing

    ``L = -mean(min(r * A, clip(r, 1 - clip_range, 1 + clip_range) * A))
    + vf_coef * mean((R - V)^2) - ent_coef * mean(entropy)``

    (Schulman et al. 2017, eq. 7 and eq. 9), where ``r = pi(a|s) / pi_old(a|s)``. Before each minibatch step, the
    KL divergence from the rollout policy is estimated with ``mean((r - 1) - log r)``; when it exceeds
    ``1.5 * target_kl``, the update stops without applying that step.

    Arguments carry Stable-Baselines3 PPO's names, defaults and meanings (so RL Zoo PPO hyperparameters work
    unchanged), except that gSDE (``use_sde=True``) and custom rollout buffers are not supported.

    :param policy: ``"MlpPolicy"`` or a subclass of :class:`~sb3_clippedppo.policies.MlpActorCriticPolicy`.
    :param env: the environment (a Gymnasium env, a VecEnv, or a registered id).
    :param learning_rate: Adam learning rate, or a schedule of the progress remaining (1 to 0).
    :param n_steps: steps collected per environment per rollout; the rollout holds ``n_steps * n_envs``
        transitions, which must be at least 2.
    :param batch_size: minibatch size, in ``[2, n_steps * n_envs]``.
    :param n_epochs: passes over the rollout per update, at least 1.
    :param gamma: discount factor, in [0, 1].
    :param gae_lambda: GAE lambda, in [0, 1].
    :param clip_range: clipping parameter epsilon of the surrogate objective (> 0), or a schedule.
    :param clip_range_vf: clipping parameter for the value function (> 0), a schedule, or None (no clipping).
        This clipping depends on the scale of the rewards.
    :param normalize_advantage: whether to normalize advantages per minibatch (zero mean, unit std).
    :param ent_coef: entropy bonus coefficient, >= 0.
    :param vf_coef: value loss coefficient, >= 0.
    :param max_grad_norm: maximum global L2 norm of the gradient, > 0.
    :param use_sde: must be False (gSDE is not supported).
    :param sde_sample_freq: unused (gSDE is not supported); kept for compatibility with PPO hyperparameters.
    :param target_kl: KL early stopping threshold (stop when the estimate exceeds ``1.5 * target_kl``), > 0,
        or None for no limit.
    :param stats_window_size: number of episodes averaged in ``rollout/ep_rew_mean`` and ``rollout/ep_len_mean``.
    :param tensorboard_log: tensorboard log directory, or None.
    :param policy_kwargs: keyword arguments of the policy (``net_arch``, ``activation_fn``, ``ortho_init``,
        ``log_std_init``, ``optimizer_class``, ``optimizer_kwargs``).
    :param verbose: 0 silent, 1 training information, 2 debug.
    :param seed: seed for the random number generators.
    :param device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
    :param _init_setup_model: whether to build the networks at construction.

    Options beyond SB3's PPO (keyword-only; their defaults leave the algorithm above unchanged):

    :param vf_learning_rate: learning rate (or schedule) of the critic's parameters; None: ``learning_rate``.
        The actor (with ``log_std``) and the critic are separate parameter groups of the one Adam optimizer.
    :param policy_objective: ``"clip"`` (the clipped surrogate) or ``"kl_penalty"`` (PPO-Penalty, Schulman et al.
        2017, section 4: ``mean(r * A) - beta * mean(KL(pi_old || pi))`` with the exact KL of the action
        distributions, and beta adapted after each update by :func:`adapt_kl_coef`).
    :param kl_coef: PPO-Penalty's initial beta, > 0. The attribute holds the current beta and is saved.
    :param kl_target: PPO-Penalty's d_targ, > 0.
    :param kl_adaptive_lr: adapt the learning rates to the KL of each update (:func:`adapt_lr_scale`); needs
        ``target_kl``. The factor (attribute ``lr_scale``) is saved.
    :param kl_adaptive_lr_bounds: ``(lowest, highest)`` actor learning rate under ``kl_adaptive_lr``;
        default ``(1e-5, 1e-2)`` (rsl_rl's).
    :raises TypeError: for unsupported spaces, policies or arguments of the wrong type.
    :raises ValueError: for arguments out of range.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpActorCriticPolicy}
    # Transitions per forward pass when computing the values and log-probabilities of a rollout
    _EVALUATION_CHUNK = 256
    policy: MlpActorCriticPolicy
    rollout_buffer: RolloutBuffer  # type: ignore[assignment]

    def __init__(
        self,
        policy: str | type[MlpActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 2048,
        batch_size: int = 64,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float | Schedule = 0.2,
        clip_range_vf: float | Schedule | None = None,
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        target_kl: float | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
        *,
        vf_learning_rate: float | Schedule | None = None,
        policy_objective: str = "clip",
        kl_coef: float = 1.0,
        kl_target: float = 0.01,
        kl_adaptive_lr: bool = False,
        kl_adaptive_lr_bounds: tuple[float, float] = (1e-5, 1e-2),
    ):
        if use_sde:
            raise ValueError("use_sde=True (generalized State-Dependent Exploration) is not supported by ClippedPPO")
        _check_schedule("learning_rate", learning_rate)
        _check_int("n_steps", n_steps, 1)
        _check_int("batch_size", batch_size, 2)
        _check_int("n_epochs", n_epochs, 1)
        _check_real("gamma", gamma, 0.0, 1.0)
        _check_real("gae_lambda", gae_lambda, 0.0, 1.0)
        _check_schedule("clip_range", clip_range)
        _check_schedule("clip_range_vf", clip_range_vf, allow_none=True)
        _check_real("ent_coef", ent_coef, 0.0)
        _check_real("vf_coef", vf_coef, 0.0)
        _check_real("max_grad_norm", max_grad_norm, 0.0, low_open=True)
        if target_kl is not None:
            _check_real("target_kl", target_kl, 0.0, low_open=True)
        _check_int("stats_window_size", stats_window_size, 1)
        _check_schedule("vf_learning_rate", vf_learning_rate, allow_none=True)
        if policy_objective not in POLICY_OBJECTIVES:
            raise ValueError(f"policy_objective must be one of {POLICY_OBJECTIVES}, got {policy_objective!r}")
        _check_real("kl_coef", kl_coef, 0.0, low_open=True)
        _check_real("kl_target", kl_target, 0.0, low_open=True)
        if kl_adaptive_lr and target_kl is None:
            raise ValueError("kl_adaptive_lr=True needs target_kl (the KL that the learning rate adapts to)")
        if not (
            isinstance(kl_adaptive_lr_bounds, (tuple, list))
            and len(kl_adaptive_lr_bounds) == 2
            and all(_is_number(b) for b in kl_adaptive_lr_bounds)
            and 0 < kl_adaptive_lr_bounds[0] < kl_adaptive_lr_bounds[1]
        ):
            raise ValueError(f"kl_adaptive_lr_bounds must be (low, high) with 0 < low < high, got {kl_adaptive_lr_bounds!r}")
        policy_class = self._get_policy_from_name(policy) if isinstance(policy, str) else policy
        if not (isinstance(policy_class, type) and issubclass(policy_class, MlpActorCriticPolicy)):
            raise TypeError(f"policy must be 'MlpPolicy' or a subclass of MlpActorCriticPolicy, got {policy!r}")
        self._check_policy_kwargs(policy_class, policy_kwargs)
        if env is not None:
            env = maybe_make_env(env, verbose)
            self._check_spaces(env.observation_space, env.action_space)

        super().__init__(
            policy_class,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            use_sde=False,
            sde_sample_freq=sde_sample_freq,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            device=device,
            seed=seed,
            _init_setup_model=False,
        )
        if self.env is not None:
            buffer_size = n_steps * self.n_envs
            if buffer_size < 2:
                raise ValueError(f"n_steps * n_envs must be >= 2, got n_steps={n_steps} and n_envs={self.n_envs}")
            if batch_size > buffer_size:
                raise ValueError(
                    f"batch_size must be in [2, n_steps * n_envs] = [2, {buffer_size}], got {batch_size} "
                    f"(n_steps={n_steps}, n_envs={self.n_envs})"
                )
            if buffer_size % batch_size:
                warnings.warn(
                    f"batch_size={batch_size} does not divide n_steps * n_envs = {buffer_size}: each epoch ends with a "
                    f"minibatch of {buffer_size % batch_size} (as in SB3's PPO); a batch_size that divides it avoids that"
                )
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.clip_range = clip_range
        self.clip_range_vf = clip_range_vf
        self.normalize_advantage = normalize_advantage
        self.target_kl = target_kl
        self.vf_learning_rate = vf_learning_rate
        self.policy_objective = policy_objective
        self.kl_coef = float(kl_coef)  # PPO-Penalty's current beta (adapted during training)
        self.kl_target = kl_target
        self.kl_adaptive_lr = kl_adaptive_lr
        self.kl_adaptive_lr_bounds = tuple(kl_adaptive_lr_bounds)
        self.lr_scale = 1.0  # factor on the scheduled learning rates (adapted under kl_adaptive_lr)
        if _init_setup_model:
            self._setup_model()

    @staticmethod
    def _check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
        if isinstance(observation_space, spaces.Dict):
            raise TypeError(
                f"env.observation_space must be a gymnasium.spaces.Box, got a Dict space ({observation_space}); "
                "flatten it with gymnasium.wrappers.FlattenObservation"
            )
        if not isinstance(observation_space, spaces.Box):
            raise TypeError(f"env.observation_space must be a gymnasium.spaces.Box, got {observation_space}")
        if not isinstance(action_space, (spaces.Box, spaces.Discrete)):
            raise TypeError(f"env.action_space must be a gymnasium.spaces.Box or Discrete, got {action_space}")
        if isinstance(action_space, spaces.Box) and not np.all(np.isfinite([action_space.low, action_space.high])):
            raise ValueError(f"env.action_space must have finite bounds (actions are clipped to them), got {action_space}")

    @staticmethod
    def _check_policy_kwargs(policy_class: type, policy_kwargs: dict[str, Any] | None) -> None:
        if policy_kwargs is None:
            return
        if not isinstance(policy_kwargs, dict):
            raise TypeError(f"policy_kwargs must be a dict or None, got {policy_kwargs!r}")
        parameters = inspect.signature(policy_class.__init__).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            return
        accepted = [name for name in parameters if name not in ("self", "observation_space", "action_space", "lr_schedule")]
        unknown = sorted(set(policy_kwargs) - set(accepted))
        if unknown:
            raise TypeError(f"policy_kwargs {unknown} not accepted by {policy_class.__name__}; accepted: {accepted}")

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self.policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space, self.action_space, self.lr_schedule, **self.policy_kwargs
        )
        self.policy = self.policy.to(self.device)
        self.rollout_buffer = RolloutBuffer(
            self.n_steps,
            self.n_envs,
            obs_dim=self.policy.obs_dim,
            action_dim=None if self.policy.is_discrete else self.policy.action_dim,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            device=self.device,
            distribution_dim=self.policy.action_dim * (1 if self.policy.is_discrete else 2),
        )
        self.vf_lr_schedule = None if self.vf_learning_rate is None else FloatSchedule(self.vf_learning_rate)
        self.clip_range = FloatSchedule(self.clip_range)
        if self.clip_range_vf is not None:
            self.clip_range_vf = FloatSchedule(self.clip_range_vf)
        # The update's gradient: closed form (losses.AnalyticLoss) when the policy allows it, else autograd.
        # Both compute the same loss; set to False to force autograd.
        self.use_analytic_gradients = AnalyticLoss.supports(self.policy)

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,  # type: ignore[override]
        n_rollout_steps: int,
    ) -> bool:
        """
        Fill ``rollout_buffer`` with ``n_rollout_steps`` steps of every environment, then compute values,
        log-probabilities, advantages and returns.

        The policy is fixed during a rollout, so only the actor runs per step; values ``V(s_t)`` and
        ``log pi(a_t|s_t)`` of all stored transitions are computed afterwards in one batch, together with the
        values of the observations at which time limits cut episodes: such a truncated step is bootstrapped by
        adding ``gamma * V(terminal observation)`` to its reward (the observation is normalized when a
        ``VecNormalize`` wrapper is used, since it normalizes ``terminal_observation``). A true termination is not
        bootstrapped. Actions are stored raw and clipped to the Box bounds only when sent to the environment.

        Callbacks see Stable-Baselines3's protocol: ``on_rollout_start``, then ``update_locals`` and
        ``on_step`` after every environment step (returning False stops training), then ``on_rollout_end``.

        :param env: the training environment.
        :param callback: callback called at each step and at the start and end of the rollout.
        :param rollout_buffer: the buffer to fill.
        :param n_rollout_steps: steps per environment.
        :return: True if the rollout completed, False if a callback stopped it.
        """
        if self._last_obs is None:
            raise RuntimeError("collect_rollouts() needs a previous observation: call learn() instead")
        policy = self.policy
        policy.set_training_mode(False)
        rollout_buffer.reset()
        n_envs = env.num_envs
        is_box = isinstance(self.action_space, spaces.Box)
        env_action_shape = (n_envs, *self.action_space.shape)
        low = self.action_space.low.reshape(-1) if is_box else None  # type: ignore[union-attr]
        high = self.action_space.high.reshape(-1) if is_box else None  # type: ignore[union-attr]
        # Exploration noise for the whole rollout, drawn at once (standard normal, or Gumbel for Discrete)
        noise = policy.draw_noise(n_rollout_steps, n_envs).numpy()
        # The actor for this rollout (a NumPy copy of its weights when it is a plain MLP)
        sample_actions = policy.make_rollout_sampler()
        truncated_steps: list[tuple[int, int, np.ndarray]] = []

        callback.on_rollout_start()
        n_steps = 0
        while n_steps < n_rollout_steps:
            actions = sample_actions(self._last_obs, noise[n_steps])  # type: ignore[arg-type]
            # np.minimum(np.maximum()) is np.clip without its Python-level overhead
            clipped_actions = np.minimum(np.maximum(actions, low), high).reshape(env_action_shape) if is_box else actions

            new_obs, rewards, dones, infos = env.step(clipped_actions)
            self.num_timesteps += n_envs

            # Give callbacks access to the local variables (as in Stable-Baselines3)
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)

            rollout_buffer.add(self._last_obs, actions, rewards, self._last_episode_starts)  # type: ignore[arg-type]
            for idx in np.flatnonzero(dones):
                info = infos[idx]
                if info.get("TimeLimit.truncated", False) and info.get("terminal_observation") is not None:
                    truncated_steps.append((n_steps, int(idx), info["terminal_observation"]))
            n_steps += 1
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones

        with th.no_grad():
            # In chunks, to keep the peak memory of the networks' activations small
            observations, all_actions = rollout_buffer.flat_observations(), rollout_buffer.flat_actions()
            values, log_probs = rollout_buffer.values.reshape(-1), rollout_buffer.log_probs.reshape(-1)
            distributions = rollout_buffer.old_distributions.reshape(rollout_buffer.size, -1)
            for start in range(0, rollout_buffer.size, self._EVALUATION_CHUNK):
                chunk = slice(start, start + self._EVALUATION_CHUNK)
                x = policy.preprocess(observations[chunk])
                params = policy.action_params(x)
                log_probs[chunk] = policy.log_prob_and_entropy(params, all_actions[chunk])[0].cpu().numpy()
                values[chunk] = policy.value(x).cpu().numpy()
                distributions[chunk] = policy.distribution_params(params).cpu().numpy()
            last_values = policy.value(policy.preprocess(th.as_tensor(new_obs)))
            if truncated_steps:
                terminal_obs = np.stack([obs for _, _, obs in truncated_steps])
                terminal_values = policy.value(policy.preprocess(th.as_tensor(terminal_obs))).cpu().numpy()
        for (step, idx, _), terminal_value in zip(truncated_steps, terminal_values if truncated_steps else [], strict=True):
            rollout_buffer.rewards[step, idx] += self.gamma * terminal_value
        rollout_buffer.compute_returns_and_advantage(last_values=last_values.cpu().numpy(), dones=dones)

        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def train(self) -> None:
        """
        Update the policy on the current rollout: ``n_epochs`` passes of shuffled minibatches, each a step of
        the clipped surrogate objective (Schulman et al. 2017, eq. 7; or PPO-Penalty's, section 4), the (optionally
        clipped) value loss and the entropy bonus, with global gradient-norm clipping, until the KL estimate exceeds
        ``1.5 * target_kl``. Then, when an option needs it, the exact KL between the rollout policy and the updated
        one adapts PPO-Penalty's beta (:func:`adapt_kl_coef`) and the learning-rate factor (:func:`adapt_lr_scale`).

        :raises NonFiniteLossError: when a minibatch's loss or gradient is NaN or infinite (before any step with it).
        """
        policy = self.policy
        policy.set_training_mode(True)
        policy.ensure_flat_parameters()
        self._update_learning_rates(policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        clip_range_vf = None if self.clip_range_vf is None else self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]
        # Closed-form gradients where the policy allows them (same loss, no autograd bookkeeping), else autograd
        use_analytic = self.use_analytic_gradients and self.policy_objective == "clip"
        analytic = AnalyticLoss(policy, self.ent_coef, self.vf_coef) if use_analytic else None

        n_batches = -(-self.rollout_buffer.size // self.batch_size)
        # Per evaluated minibatch: policy gradient loss, value loss, entropy loss, approx KL, clip fraction, loss.
        stats = th.zeros((self.n_epochs * n_batches, 6), device=self.device)
        epoch_of_row = np.zeros(self.n_epochs * n_batches, dtype=np.int64)
        row = 0
        early_stop_epoch = -1
        grad_steps = 0

        for epoch in range(self.n_epochs):
            for batch_index, batch in enumerate(self.rollout_buffer.minibatches(self.batch_size)):
                advantages = batch.advantages
                if self.normalize_advantage and len(advantages) > 1:
                    advantages = normalize_advantages(advantages)
                if analytic is not None:
                    terms = analytic.forward(batch, advantages, clip_range, clip_range_vf)
                else:
                    terms = ppo_loss(
                        policy, batch, advantages, clip_range, clip_range_vf, self.ent_coef, self.vf_coef,
                        policy_objective=self.policy_objective, kl_coef=self.kl_coef,
                    )  # fmt: skip

                with th.no_grad():
                    # k3 estimator of KL(pi_old || pi): mean((r - 1) - log r), unbiased and non-negative
                    approx_kl = ((terms.ratio - 1) - terms.log_ratio).mean()
                    clip_fraction = ((terms.ratio - 1).abs() > clip_range).float().mean()
                    stats[row] = th.stack(
                        [terms.policy_loss, terms.value_loss, terms.entropy_loss, approx_kl, clip_fraction, terms.loss]
                    )
                epoch_of_row[row] = epoch
                row += 1

                if self.target_kl is not None and approx_kl.item() > 1.5 * self.target_kl:
                    early_stop_epoch = epoch
                    if self.verbose >= 1:
                        print(
                            f"KL early stopping at epoch {epoch}, minibatch {batch_index}: "
                            f"approx_kl={approx_kl.item():.4f} > 1.5 * target_kl={1.5 * self.target_kl:.4f}"
                        )
                    break

                if analytic is not None:
                    analytic.backward()  # overwrites every gradient
                else:
                    policy.zero_flat_grad()
                    terms.loss.backward()
                grad_norm = policy.clip_grad_norm_(self.max_grad_norm)
                if not np.isfinite(grad_norm):
                    raise NonFiniteLossError(
                        f"non-finite loss or gradient in update {self._n_updates // self.n_epochs + 1} "
                        f"(epoch {epoch}, minibatch {batch_index}): loss={terms.loss.item()}, grad_norm={grad_norm}, "
                        f"policy_loss={terms.policy_loss.item()}, value_loss={terms.value_loss.item()}; no step was applied"
                    )
                policy.optimizer.step()
                grad_steps += 1

            self._n_updates += 1
            if early_stop_epoch >= 0:
                break

        stats_np = stats[:row].cpu().numpy()
        last_epoch_rows = epoch_of_row[:row] == epoch_of_row[row - 1]
        buffer = self.rollout_buffer
        self.logger.record("train/entropy_loss", float(np.mean(stats_np[:, 2])))
        self.logger.record("train/policy_gradient_loss", float(np.mean(stats_np[:, 0])))
        self.logger.record("train/value_loss", float(np.mean(stats_np[:, 1])))
        # As in Stable-Baselines3: the mean KL estimate over the minibatches of the last epoch
        self.logger.record("train/approx_kl", float(np.mean(stats_np[last_epoch_rows, 3])))
        self.logger.record("train/clip_fraction", float(np.mean(stats_np[:, 4])))
        self.logger.record("train/loss", float(stats_np[-1, 5]))
        explained_var = explained_variance(buffer.values.ravel(), buffer.returns.ravel())
        self.logger.record("train/explained_variance", float(explained_var))
        # Exact KL between the rollout policy and the updated one, for the adaptive rules (and std, if per state)
        if self.policy_objective == "kl_penalty" or self.kl_adaptive_lr or policy.state_dependent_std:
            kl, std = self._measure_updated_policy()
            self.logger.record("train/kl", kl)
            if self.policy_objective == "kl_penalty":
                self.kl_coef = adapt_kl_coef(self.kl_coef, kl, self.kl_target)
                self.logger.record("train/kl_coef", self.kl_coef)
            if self.kl_adaptive_lr:
                learning_rate = self.lr_schedule(self._current_progress_remaining)
                self.lr_scale = adapt_lr_scale(self.lr_scale, kl, self.target_kl, learning_rate, self.kl_adaptive_lr_bounds)  # type: ignore[arg-type]
                self.logger.record("train/lr_scale", self.lr_scale)
            if policy.state_dependent_std:
                self.logger.record("train/std", std)
        if not policy.is_discrete and not policy.state_dependent_std:
            self.logger.record("train/std", th.exp(policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)
        # Not in Stable-Baselines3: where KL early stopping fired (-1: it did not) and how many steps were applied
        self.logger.record("train/early_stop_epoch", early_stop_epoch)
        self.logger.record("train/minibatch_updates", grad_steps)

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

    @th.no_grad()
    def _measure_updated_policy(self) -> tuple[float, float]:
        """
        Mean exact ``KL(pi_old || pi)`` over the rollout's observations, between the policy that collected the rollout
        and the updated one, and the updated policy's mean standard deviation there (NaN for Discrete actions).
        """
        policy, buffer = self.policy, self.rollout_buffer
        observations = buffer.flat_observations()
        old_distributions = th.as_tensor(buffer.old_distributions.reshape(buffer.size, -1), device=self.device)
        kl_sum, std_sum = 0.0, 0.0
        for start in range(0, buffer.size, self._EVALUATION_CHUNK):
            chunk = slice(start, start + self._EVALUATION_CHUNK)
            params = policy.action_params(policy.preprocess(observations[chunk]))
            kl_sum += policy.kl_divergence(old_distributions[chunk], params).sum().item()
            if not policy.is_discrete:
                log_std = policy.gaussian_params(params)[1]
                std_sum += th.exp(log_std).mean(dim=-1).expand(params.shape[0]).sum().item()
        return kl_sum / buffer.size, (std_sum / buffer.size if not policy.is_discrete else float("nan"))

    def learn(
        self: SelfClippedPPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "ClippedPPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfClippedPPO:
        """
        Train for ``total_timesteps`` environment steps (summed over environments), in whole rollouts.

        :param total_timesteps: number of environment steps to train for.
        :param callback: callback(s) called at every step (SB3 ``BaseCallback``, list, or function).
        :param log_interval: log every ``log_interval`` iterations (rollout + update).
        :param tb_log_name: name of the tensorboard run.
        :param reset_num_timesteps: whether to reset the timestep counter (False continues a previous run).
        :param progress_bar: show a progress bar (needs tqdm and rich).
        :return: the trained model.
        :raises NonFiniteLossError: when an update meets a NaN or infinite loss.
        """
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
