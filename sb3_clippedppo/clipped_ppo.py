"""ClippedPPO: Proximal Policy Optimization with the clipped surrogate objective and KL early stopping.

Schulman et al. 2017, "Proximal Policy Optimization Algorithms" (https://arxiv.org/abs/1707.06347), with
Generalized Advantage Estimation (Schulman et al. 2016, https://arxiv.org/abs/1506.02438). The rollout buffer,
GAE, action distributions and update are this package's own; the policies' networks and feature extractors,
callbacks, logging, vectorized environments and ``save``/``load`` are Stable-Baselines3's. The fast path for MLP
policies lives beside the algorithm, in :mod:`sb3_clippedppo.fast_mlp`.
"""

import inspect
import warnings
from collections import defaultdict
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common import policies as sb3_policies
from stable_baselines3.common.base_class import maybe_make_env
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule, TensorDict
from stable_baselines3.common.utils import FloatSchedule, explained_variance, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from sb3_clippedppo import fast_mlp
from sb3_clippedppo.arguments import check_coefficient, check_int, check_real, check_schedule, is_number
from sb3_clippedppo.buffers import RolloutBatch, RolloutBuffer, map_observations, with_feature_axis
from sb3_clippedppo.distributions import DiagGaussian
from sb3_clippedppo.losses import LossCoefficients, LossTerms, normalize_advantages, ppo_loss
from sb3_clippedppo.policies import (
    ActorCriticCnnPolicy,
    ActorCriticPolicy,
    MultiInputActorCriticPolicy,
    uses_forward_distribution,
)
from sb3_clippedppo.threads import learning_threads

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


OBSERVATION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
ACTION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)

# A per-step actor for one rollout: (observations, step index) -> (raw actions, values or None, log-probabilities or None,
# distribution parameters or None), as NumPy arrays with n_envs rows.
RolloutStep = Callable[[Any, int], tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]]


class ClippedPPO(OnPolicyAlgorithm):
    """
    Proximal Policy Optimization (clip version) with KL early stopping (Schulman et al. 2017), for every observation
    and action space that Stable-Baselines3's PPO supports.

    Each iteration collects ``n_steps`` transitions from each of the ``n_envs`` environments, computes advantages
    with GAE (Schulman et al. 2016, eq. 16) and then runs ``n_epochs`` passes over the rollout in shuffled
    minibatches, minimizing

    ``L = -mean(min(r * A, clip(r, 1 - clip_range, 1 + clip_range) * A))
    + vf_coef * mean((R - V)^2) - ent_coef * mean(entropy)``

    (Schulman et al. 2017, eq. 7 and eq. 9), where ``r = pi(a|s) / pi_old(a|s)``. Before each minibatch step, the
    KL divergence from the rollout policy is estimated with ``mean((r - 1) - log r)``; when it exceeds
    ``1.5 * target_kl``, the update stops without applying that step.

    Arguments carry Stable-Baselines3 PPO's names, defaults and meanings (so RL Zoo PPO hyperparameters work
    unchanged), except that gSDE (``use_sde=True``) and custom rollout buffer classes are not supported.

    :param policy: ``"MlpPolicy"``, ``"CnnPolicy"``, ``"MultiInputPolicy"`` (:mod:`sb3_clippedppo.policies`), or a
        subclass of SB3's ``ActorCriticPolicy`` (trained through its ``forward`` and ``evaluate_actions``).
    :param env: the environment (a Gymnasium env, a VecEnv, or a registered id). Observations: ``Box`` (vectors or
        images), ``Discrete``, ``MultiDiscrete``, ``MultiBinary``, ``Dict``; actions: ``Box``, ``Discrete``,
        ``MultiDiscrete``, ``MultiBinary``.
    :param learning_rate: Adam learning rate, or a schedule of the progress remaining (1 to 0).
    :param n_steps: steps collected per environment per rollout; the rollout holds ``n_steps * n_envs`` transitions.
    :param batch_size: minibatch size, in ``[1, n_steps * n_envs]`` (at least 2 with ``normalize_advantage``).
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
    :param use_sde: must be False (gSDE is not supported).
    :param sde_sample_freq: unused (gSDE is not supported); kept for compatibility with PPO hyperparameters.
    :param rollout_buffer_class: None, or SB3's ``RolloutBuffer`` / ``DictRolloutBuffer`` (this package's buffer is
        used in their place: it holds every observation space); other classes are not supported.
    :param rollout_buffer_kwargs: must be empty (None or ``{}``).
    :param target_kl: KL early stopping threshold (stop when the estimate exceeds ``1.5 * target_kl``), > 0,
        or None for no limit.
    :param stats_window_size: number of episodes averaged in ``rollout/ep_rew_mean`` and ``rollout/ep_len_mean``.
    :param tensorboard_log: tensorboard log directory, or None.
    :param policy_kwargs: keyword arguments of the policy (SB3's ``net_arch``, ``activation_fn``, ``ortho_init``,
        ``log_std_init``, ``features_extractor_class``, ``features_extractor_kwargs``, ``share_features_extractor``,
        ``normalize_images``, ``optimizer_class``, ``optimizer_kwargs``; and ``state_dependent_std``).
    :param verbose: 0 silent, 1 training information, 2 debug.
    :param seed: seed for the random number generators.
    :param device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
    :param _init_setup_model: whether to build the networks at construction.

    Options beyond SB3's PPO (keyword-only; their defaults leave the algorithm above unchanged):

    :param vf_learning_rate: learning rate (or schedule) of the critic's parameter group; None: ``learning_rate``.
    :param policy_objective: ``"clip"`` (the clipped surrogate) or ``"kl_penalty"`` (PPO-Penalty, Schulman et al.
        2017, section 4: ``mean(r * A) - beta * mean(KL(pi_old || pi))`` with the exact KL of the action
        distributions, and beta adapted after each update by :func:`adapt_kl_coef`).
    :param kl_coef: PPO-Penalty's initial beta, > 0. The attribute holds the current beta and is saved.
    :param kl_target: PPO-Penalty's d_targ, > 0.
    :param kl_adaptive_lr: adapt the learning rates to the KL of each update (:func:`adapt_lr_scale`); needs
        ``target_kl``. The factor (attribute ``lr_scale``) is saved.
    :param kl_adaptive_lr_bounds: ``(lowest, highest)`` actor learning rate under ``kl_adaptive_lr``;
        default ``(1e-5, 1e-2)`` (rsl_rl's).
    :param fast_path: ``"auto"`` (default): train through :mod:`sb3_clippedppo.fast_mlp` (flat parameter storage,
        closed-form gradients, NumPy rollout actor) where it applies (this package's MLP policy on vector ``Box``
        observations, ``Box`` actions with a state-independent ``log_std`` or ``Discrete`` actions, an element-wise
        optimizer such as Adam), else through autograd; ``False``: always autograd, with the optimizer over the
        policy's own parameter tensors; ``True``: the fast path, or a ``ValueError`` saying why it does not apply.
        Both paths compute the same update (to float32 rounding). Attribute :attr:`uses_fast_path` tells which one
        runs. With the fast path, the optimizer holds one flat tensor per parameter group (``"actor"``, ``"critic"``)
        whose views are the policy's parameters (:class:`~sb3_clippedppo.fast_mlp.FlatParameters`).
    :param recompute_advantages: recompute the values ``V(s_t)`` (and the terminal observations' values that bootstrap
        truncated episodes), then the advantages and returns, with the current critic at the start of every epoch but
        the first (as Tianshou's PPO ``recompute_advantage``); the value clipping of ``clip_range_vf`` is then relative
        to the values of the epoch's start. Logged as ``train/advantage_recomputes``.
    :raises TypeError: for unsupported spaces, policies or arguments of the wrong type.
    :raises ValueError: for arguments out of range.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": ActorCriticPolicy,
        "CnnPolicy": ActorCriticCnnPolicy,
        "MultiInputPolicy": MultiInputActorCriticPolicy,
    }
    # Transitions per forward pass when a whole rollout is evaluated at once (fast path, exact KL)
    _EVALUATION_CHUNK = 256
    policy: sb3_policies.ActorCriticPolicy
    rollout_buffer: RolloutBuffer  # type: ignore[assignment]

    def __init__(
        self,
        policy: str | type[sb3_policies.ActorCriticPolicy],
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
        ent_coef: float | Schedule = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
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
        fast_path: bool | str = "auto",
        recompute_advantages: bool = False,
    ):
        if use_sde:
            raise ValueError("use_sde=True (generalized State-Dependent Exploration) is not supported by ClippedPPO")
        if rollout_buffer_class is not None and rollout_buffer_class.__name__ not in ("RolloutBuffer", "DictRolloutBuffer"):
            raise ValueError(
                "rollout_buffer_class must be None (ClippedPPO's own buffer, for every observation space), "
                f"got {rollout_buffer_class!r}"
            )
        if rollout_buffer_kwargs:
            raise ValueError(
                f"rollout_buffer_kwargs are not supported (ClippedPPO's own buffer), got {rollout_buffer_kwargs!r}"
            )
        check_schedule("learning_rate", learning_rate)
        check_int("n_steps", n_steps, 1)
        check_int("batch_size", batch_size, 1)
        if normalize_advantage and batch_size < 2:
            raise ValueError("batch_size must be >= 2 with normalize_advantage=True (a single advantage has no std), got 1")
        check_int("n_epochs", n_epochs, 1)
        check_real("gamma", gamma, 0.0, 1.0)
        check_real("gae_lambda", gae_lambda, 0.0, 1.0)
        check_schedule("clip_range", clip_range)
        check_schedule("clip_range_vf", clip_range_vf, allow_none=True)
        check_coefficient("ent_coef", ent_coef)
        check_real("vf_coef", vf_coef, 0.0)
        check_real("max_grad_norm", max_grad_norm, 0.0, low_open=True)
        if target_kl is not None:
            check_real("target_kl", target_kl, 0.0, low_open=True)
        check_int("stats_window_size", stats_window_size, 1)
        check_schedule("vf_learning_rate", vf_learning_rate, allow_none=True)
        if policy_objective not in POLICY_OBJECTIVES:
            raise ValueError(f"policy_objective must be one of {POLICY_OBJECTIVES}, got {policy_objective!r}")
        check_real("kl_coef", kl_coef, 0.0, low_open=True)
        check_real("kl_target", kl_target, 0.0, low_open=True)
        if kl_adaptive_lr and target_kl is None:
            raise ValueError("kl_adaptive_lr=True needs target_kl (the KL that the learning rate adapts to)")
        if not (
            isinstance(kl_adaptive_lr_bounds, (tuple, list))
            and len(kl_adaptive_lr_bounds) == 2
            and all(is_number(b) for b in kl_adaptive_lr_bounds)
            and 0 < kl_adaptive_lr_bounds[0] < kl_adaptive_lr_bounds[1]
        ):
            raise ValueError(f"kl_adaptive_lr_bounds must be (low, high) with 0 < low < high, got {kl_adaptive_lr_bounds!r}")
        if not (isinstance(fast_path, bool) or fast_path == "auto"):
            raise ValueError(f"fast_path must be 'auto', True or False, got {fast_path!r}")
        policy_class = self._get_policy_from_name(policy) if isinstance(policy, str) else policy
        if not (isinstance(policy_class, type) and issubclass(policy_class, sb3_policies.ActorCriticPolicy)):
            raise TypeError(
                "policy must be 'MlpPolicy', 'CnnPolicy', 'MultiInputPolicy' or a subclass of SB3's ActorCriticPolicy, "
                f"got {policy!r}"
            )
        self._check_policy_kwargs(policy_class, policy_kwargs)
        if env is not None:
            env = maybe_make_env(env, verbose)
            self._check_spaces(env.observation_space, env.action_space)
            if isinstance(env.observation_space, spaces.Dict) and policy in ("MlpPolicy", "CnnPolicy"):
                raise ValueError(
                    f"Dict observations need policy='MultiInputPolicy', not {policy!r} "
                    "(or flatten them with gymnasium.wrappers.FlattenObservation)"
                )

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
            supported_action_spaces=ACTION_SPACES,
        )
        if self.env is not None:
            buffer_size = n_steps * self.n_envs
            if normalize_advantage and buffer_size < 2:
                raise ValueError(
                    "n_steps * n_envs must be >= 2 with normalize_advantage=True, "
                    f"got n_steps={n_steps} and n_envs={self.n_envs}"
                )
            if batch_size > buffer_size:
                raise ValueError(
                    f"batch_size must be in [1, n_steps * n_envs] = [1, {buffer_size}], got {batch_size} "
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
        self.fast_path = fast_path
        self.recompute_advantages = bool(recompute_advantages)
        if _init_setup_model:
            self._setup_model()

    @staticmethod
    def _check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
        subspaces = (
            list(observation_space.spaces.values()) if isinstance(observation_space, spaces.Dict) else [observation_space]
        )
        if not all(isinstance(space, OBSERVATION_SPACES) for space in subspaces):
            raise TypeError(
                "env.observation_space must be a gymnasium Box, Discrete, MultiDiscrete, MultiBinary or a Dict of them "
                f"(not nested), got {observation_space}"
            )
        if not isinstance(action_space, ACTION_SPACES):
            raise TypeError(
                f"env.action_space must be a gymnasium Box, Discrete, MultiDiscrete or MultiBinary, got {action_space}"
            )
        if isinstance(action_space, spaces.MultiBinary) and not isinstance(action_space.n, (int, np.integer)):
            raise TypeError(f"env.action_space MultiBinary must be one-dimensional (flatten it), got {action_space}")
        if isinstance(action_space, spaces.Box) and not np.all(np.isfinite([action_space.low, action_space.high])):
            raise ValueError(f"env.action_space must have finite bounds (actions are clipped to them), got {action_space}")

    @staticmethod
    def _check_policy_kwargs(policy_class: type, policy_kwargs: dict[str, Any] | None) -> None:
        if policy_kwargs is None:
            return
        if not isinstance(policy_kwargs, dict):
            raise TypeError(f"policy_kwargs must be a dict or None, got {policy_kwargs!r}")
        if policy_kwargs.get("use_sde"):
            raise ValueError("policy_kwargs use_sde=True: gSDE is not supported by ClippedPPO")
        parameters: dict[str, inspect.Parameter] = {}
        for cls in policy_class.__mro__:  # subclasses that pass **kwargs on accept their parents' arguments too
            if "__init__" not in vars(cls):
                continue
            own = inspect.signature(cls.__init__).parameters
            parameters.update({k: v for k, v in own.items() if v.kind is not inspect.Parameter.VAR_KEYWORD})
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in own.values()):
                break
        else:
            return
        accepted = [name for name in parameters if name not in ("self", "observation_space", "action_space", "lr_schedule")]
        unknown = sorted(set(policy_kwargs) - set(accepted))
        if unknown:
            raise TypeError(f"policy_kwargs {unknown} not accepted by {policy_class.__name__}; accepted: {accepted}")

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        policy_kwargs = {key: value for key, value in self.policy_kwargs.items() if key != "use_sde"}
        self.policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space, self.action_space, self.lr_schedule, use_sde=False, **policy_kwargs
        )
        self.policy = self.policy.to(self.device)
        # Policies of this package are evaluated through forward_distribution (closed-form distributions, noise drawn
        # per rollout, exact KL); any other SB3 ActorCriticPolicy through forward() and evaluate_actions()
        self._native = uses_forward_distribution(self.policy)
        self._check_policy_supports_options()
        keeps_distributions = self._native and (
            self.policy_objective == "kl_penalty" or self.kl_adaptive_lr or getattr(self.policy, "state_dependent_std", False)
        )
        self.rollout_buffer = RolloutBuffer(
            self.n_steps,
            self.n_envs,
            self.observation_space,
            self.action_space,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            device=self.device,
            distribution_dim=self.policy.distribution_class.param_dim(self.action_space) if keeps_distributions else 0,  # type: ignore[union-attr]
        )
        self.vf_lr_schedule = None if self.vf_learning_rate is None else FloatSchedule(self.vf_learning_rate)
        self.ent_coef_schedule = FloatSchedule(self.ent_coef)
        self.clip_range = FloatSchedule(self.clip_range)
        if self.clip_range_vf is not None:
            self.clip_range_vf = FloatSchedule(self.clip_range_vf)

        reason = fast_mlp.unsupported_reason(self.policy, self.policy_objective)
        if self.fast_path is True and reason is not None:
            raise ValueError(f"fast_path=True, but the fast path does not apply: {reason}")
        use_fast_path = self.fast_path in ("auto", True) and reason is None
        self._fast = fast_mlp.FastMlp(self.policy) if use_fast_path else None  # type: ignore[arg-type]

    def _check_policy_supports_options(self) -> None:
        needs_distributions = [
            name for name, used in (("policy_objective='kl_penalty'", self.policy_objective == "kl_penalty"),
                                    ("kl_adaptive_lr=True", self.kl_adaptive_lr)) if used
        ]  # fmt: skip
        if needs_distributions and not self._native:
            raise TypeError(
                f"{' and '.join(needs_distributions)} need the exact KL between action distributions, which only "
                "sb3_clippedppo's policies (not overriding SB3's evaluation methods) provide; "
                f"got {type(self.policy).__name__}"
            )
        group_names = [group.get("name") for group in self.policy.optimizer.param_groups]
        if self.vf_learning_rate is not None and "critic" not in group_names:
            raise ValueError(
                "vf_learning_rate needs an optimizer parameter group named 'critic', as sb3_clippedppo's policies have; "
                f"{type(self.policy).__name__}'s groups are {group_names}"
            )

    @property
    def uses_fast_path(self) -> bool:
        """Whether updates run through :mod:`sb3_clippedppo.fast_mlp` (see ``fast_path``)."""
        return self._fast is not None

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_fast", "_native"]

    def set_parameters(
        self, load_path_or_dict: str | TensorDict | Any, exact_match: bool = True, device: th.device | str = "auto"
    ) -> None:
        """
        SB3's ``set_parameters``; a saved optimizer state whose storage (flat or per tensor, see ``fast_path``) differs
        from this model's is regrouped first (:func:`~sb3_clippedppo.fast_mlp.regroup_optimizer_state`), so that models
        saved with either storage, or by sb3_clippedppo 0.1.0, load.
        """
        if isinstance(load_path_or_dict, dict):
            params = dict(load_path_or_dict)
        else:
            _, params, _ = load_from_zip_file(load_path_or_dict, device=device, load_data=False)
        if params.get("policy.optimizer") is not None:
            params["policy.optimizer"] = fast_mlp.regroup_optimizer_state(params["policy.optimizer"], self.policy.optimizer)
        super().set_parameters(params, exact_match=exact_match, device=device)

    # ------------------------------------------------------------------------------------------------ rollout

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,  # type: ignore[override]
        n_rollout_steps: int,
    ) -> bool:
        """
        Fill ``rollout_buffer`` with ``n_rollout_steps`` steps of every environment, then compute advantages and returns.

        Each step stores the observation, the raw action (clipped to the ``Box`` bounds only when sent to the
        environment), the reward, the episode-start flag, ``V(s_t)`` and ``log pi(a_t|s_t)`` (the fast path computes the
        last two for the whole rollout at its end, in one batch: the policy does not change during a rollout). A step
        at which a time limit cut the episode (truncated, not terminated) is bootstrapped by adding
        ``gamma * V(terminal observation)`` to its reward (the observation is normalized when a ``VecNormalize`` wrapper
        is used, since it normalizes ``terminal_observation``); a true termination is not bootstrapped.

        Callbacks see Stable-Baselines3's protocol: ``on_rollout_start``, then ``update_locals`` and ``on_step`` after
        every environment step (returning False stops training), then ``on_rollout_end``.

        :param env: the training environment.
        :param callback: callback called at each step and at the start and end of the rollout.
        :param rollout_buffer: the buffer to fill.
        :param n_rollout_steps: steps per environment.
        :return: True if the rollout completed, False if a callback stopped it.
        """
        if self._last_obs is None:
            raise RuntimeError("collect_rollouts() needs a previous observation: call learn() instead")
        self.policy.set_training_mode(False)
        rollout_buffer.reset()
        n_envs = env.num_envs
        rollout_step = self._make_rollout_step(n_rollout_steps, n_envs)
        is_box = isinstance(self.action_space, spaces.Box)
        env_action_shape = (n_envs, *self.action_space.shape)  # type: ignore[misc]
        low = self.action_space.low.reshape(-1) if is_box else None  # type: ignore[union-attr]
        high = self.action_space.high.reshape(-1) if is_box else None  # type: ignore[union-attr]
        truncated_steps: list[tuple[int, int, Any]] = []

        callback.on_rollout_start()
        for n_steps in range(n_rollout_steps):
            actions, values, log_probs, distribution_params = rollout_step(self._last_obs, n_steps)
            # np.minimum(np.maximum()) is np.clip without its Python-level overhead
            clipped_actions = np.minimum(np.maximum(actions, low), high).reshape(env_action_shape) if is_box else actions

            new_obs, rewards, dones, infos = env.step(clipped_actions)
            self.num_timesteps += n_envs

            # Give callbacks access to the local variables (as in Stable-Baselines3)
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)

            rollout_buffer.add(
                self._last_obs,
                actions,
                rewards,
                self._last_episode_starts,
                values,
                log_probs,
                distribution_params,  # type: ignore[arg-type]
            )
            for idx in np.flatnonzero(dones):
                info = infos[idx]
                if info.get("TimeLimit.truncated", False) and info.get("terminal_observation") is not None:
                    truncated_steps.append((n_steps, int(idx), info["terminal_observation"]))
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones

        if self._fast is not None:
            self._fast.evaluate_rollout(rollout_buffer, self._EVALUATION_CHUNK)
        rollout_buffer.set_truncations(truncated_steps)
        with th.no_grad():
            last_values = self.policy.predict_values(self._as_tensor(new_obs)).flatten().cpu().numpy()
            if truncated_steps:
                terminal_values = self.policy.predict_values(self._as_tensor(rollout_buffer.terminal_observations))
                rollout_buffer.bootstrap_truncations(terminal_values.flatten().cpu().numpy())
        rollout_buffer.compute_returns_and_advantage(last_values=last_values, dones=dones)

        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _as_tensor(self, observations: Any) -> Any:
        """Observations from the environment as tensors on the device (a dict of them for ``Dict`` spaces), in the
        buffer's layout (scalar ``Box`` entries get a feature axis)."""
        return with_feature_axis(obs_as_tensor(observations, self.device), self.observation_space)

    def _make_rollout_step(self, n_steps: int, n_envs: int) -> RolloutStep:
        """
        The per-step actor for the next rollout (:data:`RolloutStep`). This package's policies sample with noise drawn
        for the whole rollout at once (``policy.draw_noise``, torch's global generator, on the CPU), so that the fast
        path and autograd take the same actions; other SB3 policies sample in their ``forward``, as in SB3's PPO.
        """
        policy, device, as_tensor = self.policy, self.device, self._as_tensor
        if not self._native:

            @th.no_grad()
            def sb3_step(obs: Any, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, None]:
                actions, values, log_probs = policy(as_tensor(obs))
                return actions.cpu().numpy(), values.flatten().cpu().numpy(), log_probs.cpu().numpy(), None

            return sb3_step

        noise = policy.draw_noise(n_steps, n_envs)  # type: ignore[operator]
        if self._fast is not None:
            actor = self._fast.rollout_step(noise)
            return lambda obs, step: (actor(obs, step), None, None, None)
        keeps_distributions = self.rollout_buffer.old_distributions.shape[-1] > 0

        @th.no_grad()
        def native_step(obs: Any, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
            distribution, values = policy.forward_distribution(as_tensor(obs))  # type: ignore[operator]
            actions = distribution.sample(noise[step].to(device))
            log_probs = distribution.log_prob(actions)
            params = distribution.params().cpu().numpy() if keeps_distributions else None
            return actions.cpu().numpy(), values.cpu().numpy(), log_probs.cpu().numpy(), params

        return native_step

    # ------------------------------------------------------------------------------------------------ update

    def train(self) -> None:
        """
        Update the policy on the current rollout: ``n_epochs`` passes of shuffled minibatches, each a step of
        the clipped surrogate objective (Schulman et al. 2017, eq. 7; or PPO-Penalty's, section 4), the (optionally
        clipped) value loss and the entropy bonus, with global gradient-norm clipping, until the KL estimate exceeds
        ``1.5 * target_kl``; then :meth:`_after_update` (adaptive rules, logging).

        :raises NonFiniteLossError: when a minibatch's loss or gradient is NaN or infinite (before any step with it).
        """
        self.policy.set_training_mode(True)
        if self._fast is not None:
            self._fast.prepare()
        self._update_learning_rates(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        clip_range_vf = None if self.clip_range_vf is None else self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]
        ent_coef = self.ent_coef_schedule(self._current_progress_remaining)
        coefficients = LossCoefficients(clip_range, clip_range_vf, ent_coef, self.vf_coef, self.policy_objective, self.kl_coef)

        # Per-minibatch statistics, kept as tensors until the update ends (no device synchronization per step)
        stats: dict[str, list[th.Tensor]] = defaultdict(list)
        early_stop_epoch, gradient_steps = -1, 0
        for epoch in range(self.n_epochs):
            if self.recompute_advantages and epoch > 0:
                self._recompute_advantages()
            approx_kl_divs: list[th.Tensor] = []  # of this epoch, as SB3 logs them
            for batch_index, batch in enumerate(self.rollout_buffer.minibatches(self.batch_size)):
                terms = self._minibatch_loss(batch, coefficients)
                approx_kl = terms.approx_kl
                stats["policy_loss"].append(terms.policy_loss.detach())
                stats["value_loss"].append(terms.value_loss.detach())
                stats["entropy_loss"].append(terms.entropy_loss.detach())
                stats["clip_fraction"].append(terms.clip_fraction)
                approx_kl_divs.append(approx_kl)
                last_loss = terms.loss

                if self.target_kl is not None and approx_kl.item() > 1.5 * self.target_kl:
                    early_stop_epoch = epoch
                    if self.verbose >= 1:
                        print(
                            f"KL early stopping at epoch {epoch}, minibatch {batch_index}: "
                            f"approx_kl={approx_kl.item():.4f} > 1.5 * target_kl={1.5 * self.target_kl:.4f}"
                        )
                    break
                self._gradient_step(terms, epoch, batch_index)
                gradient_steps += 1

            self._n_updates += 1
            if early_stop_epoch >= 0:
                break
        stats["approx_kl"] = approx_kl_divs
        if isinstance(self.policy, ActorCriticPolicy):  # normalize_observations: statistics from this update's rollout
            self.policy.update_observation_statistics(self.rollout_buffer.flat_observations())
        if self.recompute_advantages:
            self.logger.record("train/advantage_recomputes", epoch)
        if callable(self.ent_coef):
            self.logger.record("train/ent_coef", ent_coef)
        self._after_update(stats, last_loss, clip_range, clip_range_vf, early_stop_epoch, gradient_steps)

    @th.no_grad()
    def _recompute_advantages(self) -> None:
        """
        ``recompute_advantages``: the rollout's values ``V(s_t)``, the value of the observation after its last step and
        those of the terminal observations of truncated episodes, with the current critic; then GAE again.
        """
        buffer = self.rollout_buffer
        observations = buffer.flat_observations()
        values = buffer.values.reshape(-1)
        for start in range(0, buffer.size, self._EVALUATION_CHUNK):
            chunk = map_observations(lambda x, s=start: x[s : s + self._EVALUATION_CHUNK], observations)
            values[start : start + self._EVALUATION_CHUNK] = self.policy.predict_values(chunk).flatten().cpu().numpy()
        if buffer.truncations:
            terminal_values = self.policy.predict_values(self._as_tensor(buffer.terminal_observations))
            buffer.bootstrap_truncations(terminal_values.flatten().cpu().numpy())
        last_values = self.policy.predict_values(self._as_tensor(self._last_obs)).flatten().cpu().numpy()
        buffer.compute_returns_and_advantage(last_values=last_values, dones=self._last_episode_starts)

    def _minibatch_loss(self, batch: RolloutBatch, coefficients: LossCoefficients) -> LossTerms:
        """The loss terms of one minibatch (advantages normalized per minibatch if ``normalize_advantage``)."""
        advantages = batch.advantages
        if self.normalize_advantage and len(advantages) > 1:
            advantages = normalize_advantages(advantages)
        if self._fast is not None:
            return self._fast.loss(batch, advantages, coefficients)
        return ppo_loss(self.policy, batch, advantages, coefficients)

    def _gradient_step(self, terms: LossTerms, epoch: int, batch_index: int) -> None:
        """
        The gradient of ``terms.loss``, clipped to a global norm of ``max_grad_norm``, then one optimizer step.

        :raises NonFiniteLossError: when the gradient is not finite (no step is taken).
        """
        if self._fast is not None:
            self._fast.backward()
            grad_norm = self._fast.clip_grad_norm_(self.max_grad_norm)
        else:
            self.policy.optimizer.zero_grad()
            terms.loss.backward()
            grad_norm = float(th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm))
        if not np.isfinite(grad_norm):
            raise NonFiniteLossError(
                f"non-finite loss or gradient in update {self._n_updates // self.n_epochs + 1} "
                f"(epoch {epoch}, minibatch {batch_index}): loss={terms.loss.item()}, grad_norm={grad_norm}, "
                f"policy_loss={terms.policy_loss.item()}, value_loss={terms.value_loss.item()}; no step was applied"
            )
        self.policy.optimizer.step()

    def _after_update(
        self,
        stats: dict[str, list[th.Tensor]],
        last_loss: th.Tensor,
        clip_range: float,
        clip_range_vf: float | None,
        early_stop_epoch: int,
        gradient_steps: int,
    ) -> None:
        """
        After an update: measure the exact KL between the rollout policy and the updated one where an option needs it,
        adapt PPO-Penalty's beta (:func:`adapt_kl_coef`) and the learning-rate factor (:func:`adapt_lr_scale`), and log
        SB3 PPO's statistics.
        """
        means = {name: th.stack(values).mean().item() for name, values in stats.items()}
        self.logger.record("train/entropy_loss", means["entropy_loss"])
        self.logger.record("train/policy_gradient_loss", means["policy_loss"])
        self.logger.record("train/value_loss", means["value_loss"])
        self.logger.record("train/approx_kl", means["approx_kl"])
        self.logger.record("train/clip_fraction", means["clip_fraction"])
        self.logger.record("train/loss", last_loss.item())
        buffer = self.rollout_buffer
        self.logger.record(
            "train/explained_variance", float(explained_variance(buffer.values.ravel(), buffer.returns.ravel()))
        )

        state_dependent_std = getattr(self.policy, "state_dependent_std", False)
        if self.policy_objective == "kl_penalty" or self.kl_adaptive_lr or (self._native and state_dependent_std):
            kl, std = self._measure_updated_policy()
            self.logger.record("train/kl", kl)
            if self.policy_objective == "kl_penalty":
                self.kl_coef = adapt_kl_coef(self.kl_coef, kl, self.kl_target)
                self.logger.record("train/kl_coef", self.kl_coef)
            if self.kl_adaptive_lr:
                learning_rate = self.lr_schedule(self._current_progress_remaining)
                self.lr_scale = adapt_lr_scale(self.lr_scale, kl, self.target_kl, learning_rate, self.kl_adaptive_lr_bounds)  # type: ignore[arg-type]
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

    @th.no_grad()
    def _measure_updated_policy(self) -> tuple[float, float]:
        """
        Mean exact ``KL(pi_old || pi)`` over the rollout's observations, between the policy that collected the rollout
        and the updated one, and the updated policy's mean standard deviation there (NaN without ``Box`` actions).
        """
        policy, buffer = self.policy, self.rollout_buffer
        observations = buffer.flat_observations()
        old_distributions = th.as_tensor(buffer.old_distributions.reshape(buffer.size, -1), device=self.device)
        kl_sum, std_sum = 0.0, 0.0
        for start in range(0, buffer.size, self._EVALUATION_CHUNK):
            chunk = slice(start, start + self._EVALUATION_CHUNK)
            distribution, _ = policy.forward_distribution(map_observations(lambda x, c=chunk: x[c], observations))  # type: ignore[operator]
            kl_sum += policy.distribution_from_params(old_distributions[chunk]).kl(distribution).sum().item()  # type: ignore[operator]
            if isinstance(distribution, DiagGaussian):
                std = th.exp(distribution.log_std).mean(dim=-1).expand(distribution.mean.shape[0])
                std_sum += std.sum().item()
        gaussian = isinstance(self.action_space, spaces.Box)
        return kl_sum / buffer.size, (std_sum / buffer.size if gaussian else float("nan"))

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
        # One thread pool at a time uses more than one thread: torch's on the autograd path, NumPy's BLAS on the fast
        # path (sb3_clippedppo.threads); both thread counts are restored on return
        with learning_threads(self.uses_fast_path, self.batch_size):
            return super().learn(
                total_timesteps=total_timesteps,
                callback=callback,
                log_interval=log_interval,
                tb_log_name=tb_log_name,
                reset_num_timesteps=reset_num_timesteps,
                progress_bar=progress_bar,
            )
