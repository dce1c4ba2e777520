"""Argument checks that raise a clear ``TypeError`` or ``ValueError`` naming the argument and the accepted range."""

import inspect
import numbers
import warnings
from typing import Any

import numpy as np
from gymnasium import spaces


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number (a bool is not)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int) -> None:
    """Check that ``value`` is an int (not a bool) and at least ``minimum``."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_real(name: str, value: Any, low: float, high: float = np.inf, low_open: bool = False) -> None:
    """Check ``low <= value <= high`` (``low < value`` when ``low_open``)."""
    if not is_number(value):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    too_low = value <= low if low_open else value < low
    if too_low or value > high or np.isnan(value):
        interval = f"{'(' if low_open else '['}{low}, {high}{']' if np.isfinite(high) else ')'}"
        raise ValueError(f"{name} must be in {interval}, got {value}")


def check_schedule(name: str, value: Any, allow_none: bool = False) -> None:
    """A positive number, or a schedule (callable of the progress remaining) whose initial value is positive."""
    if value is None and allow_none:
        return
    if callable(value):
        initial = value(1.0)
        if not is_number(initial) or not initial > 0:
            raise ValueError(f"{name} schedule must return a positive number at progress 1, got {initial!r}")
        return
    if not is_number(value):
        expected = "a positive number, a schedule" + (" or None" if allow_none else "")
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    if not value > 0:
        raise ValueError(f"{name} must be > 0{' (use None to disable it)' if allow_none else ''}, got {value}")


def check_coefficient(name: str, value: Any) -> None:
    """A number >= 0, or a schedule (callable of the progress remaining) whose initial value is a number >= 0."""
    initial = value(1.0) if callable(value) else value
    if not is_number(initial):
        kind = type(initial).__name__
        raise TypeError(f"{name} must be a number >= 0 or a schedule returning one, got {initial!r} ({kind})")
    if not initial >= 0:
        raise ValueError(f"{name} must be in [0.0, inf){' (at progress 1)' if callable(value) else ''}, got {initial}")


OBSERVATION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
ACTION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


def check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """
    Check that ClippedPPO supports the environment's spaces: observations ``Box``, ``Discrete``, ``MultiDiscrete``,
    ``MultiBinary`` or a (flat) ``Dict`` of them; actions ``Box`` with finite bounds, ``Discrete``, ``MultiDiscrete`` or
    one-dimensional ``MultiBinary``.

    :raises TypeError: for another space.
    :raises ValueError: for a ``Box`` action space with infinite bounds.
    """
    subspaces = list(observation_space.spaces.values()) if isinstance(observation_space, spaces.Dict) else [observation_space]
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


def check_policy_kwargs(policy_class: type, policy_kwargs: dict[str, Any] | None) -> None:
    """
    Check that ``policy_class`` accepts every key of ``policy_kwargs`` (for a class whose ``__init__`` passes ``**kwargs``
    on, its parents' arguments count too) and that it does not set ``use_sde`` (ClippedPPO's argument, as in SB3's PPO).

    :raises TypeError: for a ``policy_kwargs`` that is not a dict, or an argument the policy does not take.
    :raises ValueError: for ``use_sde`` in ``policy_kwargs``.
    """
    if policy_kwargs is None:
        return
    if not isinstance(policy_kwargs, dict):
        raise TypeError(f"policy_kwargs must be a dict or None, got {policy_kwargs!r}")
    if "use_sde" in policy_kwargs:
        raise ValueError("policy_kwargs must not set use_sde: pass use_sde=True to ClippedPPO, as to SB3's PPO")
    parameters: dict[str, inspect.Parameter] = {}
    for cls in policy_class.__mro__:
        if "__init__" not in vars(cls):
            continue
        own = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
        parameters.update({k: v for k, v in own.items() if v.kind is not inspect.Parameter.VAR_KEYWORD})
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in own.values()):
            break
    else:
        return
    accepted = [name for name in parameters if name not in ("self", "observation_space", "action_space", "lr_schedule")]
    unknown = sorted(set(policy_kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"policy_kwargs {unknown} not accepted by {policy_class.__name__}; accepted: {accepted}")


def check_options(policy: Any, options: dict[str, bool], vf_learning_rate: Any) -> None:
    """
    Check that the policy provides what the options ask for: the exact KL between action distributions (a policy with
    ``offers_distributions``, :mod:`sb3_clippedppo.policies`) for ``options`` that are on, and a parameter group named
    ``"critic"`` for ``vf_learning_rate``.

    :param policy: the policy.
    :param options: option (as written, e.g. ``"kl_adaptive_lr=True"``) -> whether it is on, for those needing the KL.
    :param vf_learning_rate: ClippedPPO's ``vf_learning_rate``.
    :raises ValueError: when an option needs the exact KL and the policy cannot give it, or for ``vf_learning_rate``
        without a ``"critic"`` parameter group.
    """
    needs_distributions = [name for name, used in options.items() if used]
    if needs_distributions and not getattr(policy, "offers_distributions", False):
        raise ValueError(
            f"{' and '.join(needs_distributions)} need the exact KL between action distributions, which only policies "
            f"with offers_distributions = True (sb3_clippedppo's, without gSDE) provide; got {type(policy).__name__}"
            + (" with use_sde=True" if getattr(policy, "use_sde", False) else "")
        )
    group_names = [group.get("name") for group in policy.optimizer.param_groups]
    if vf_learning_rate is not None and "critic" not in group_names:
        raise ValueError(
            "vf_learning_rate needs an optimizer parameter group named 'critic', as sb3_clippedppo's policies have; "
            f"{type(policy).__name__}'s groups are {group_names}"
        )


POLICY_OBJECTIVES = ("clip", "kl_penalty")


def check_arguments(
    *,
    learning_rate: Any,
    n_steps: Any,
    batch_size: Any,
    n_epochs: Any,
    gamma: Any,
    gae_lambda: Any,
    clip_range: Any,
    clip_range_vf: Any,
    normalize_advantage: bool,
    ent_coef: Any,
    vf_coef: Any,
    max_grad_norm: Any,
    use_sde: bool,
    sde_sample_freq: Any,
    rollout_buffer_class: Any,
    rollout_buffer_kwargs: Any,
    target_kl: Any,
    stats_window_size: Any,
    vf_learning_rate: Any,
    policy_objective: Any,
    kl_coef: Any,
    kl_penalty_target: Any,
    kl_adaptive_lr: bool,
    kl_adaptive_lr_bounds: Any,
    fast_path: Any,
) -> None:
    """
    Check ClippedPPO's arguments against the ranges its docstring gives, in the order it documents them.

    :raises TypeError: for an argument of the wrong type.
    :raises ValueError: for an argument out of range, or an unsupported combination.
    """
    if not isinstance(use_sde, (bool, np.bool_)):
        raise TypeError(f"use_sde must be a bool, got {use_sde!r}")
    if not isinstance(sde_sample_freq, (int, np.integer)) or isinstance(sde_sample_freq, bool):
        raise TypeError(f"sde_sample_freq must be an int (-1 or 0: only at each rollout's start), got {sde_sample_freq!r}")
    if rollout_buffer_class is not None and rollout_buffer_class.__name__ not in ("RolloutBuffer", "DictRolloutBuffer"):
        raise ValueError(
            "rollout_buffer_class must be None (ClippedPPO's own buffer, for every observation space), "
            f"got {rollout_buffer_class!r}"
        )
    if rollout_buffer_kwargs:
        raise ValueError(f"rollout_buffer_kwargs are not supported (ClippedPPO's own buffer), got {rollout_buffer_kwargs!r}")
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
    check_real("kl_penalty_target", kl_penalty_target, 0.0, low_open=True)
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


def check_rollout_size(n_steps: int, n_envs: int, batch_size: int, normalize_advantage: bool) -> None:
    """
    Check the minibatch size against the rollout's ``n_steps * n_envs`` transitions; warn when it does not divide them
    (as SB3's PPO does; a ``batch_size`` above the rollout's size gives one minibatch of the whole rollout per epoch).

    :raises ValueError: for a rollout of one transition with ``normalize_advantage``.
    """
    buffer_size = n_steps * n_envs
    if normalize_advantage and buffer_size < 2:
        raise ValueError(
            f"n_steps * n_envs must be >= 2 with normalize_advantage=True, got n_steps={n_steps} and n_envs={n_envs}"
        )
    if buffer_size % batch_size:
        warnings.warn(
            f"batch_size={batch_size} does not divide n_steps * n_envs = {buffer_size}: each epoch ends with a "
            f"minibatch of {buffer_size % batch_size} (as in SB3's PPO); a batch_size that divides it avoids that",
            stacklevel=3,
        )


def check_policy_and_env(policy: Any, policy_class: Any, policy_kwargs: dict[str, Any] | None, env: Any, verbose: int) -> Any:
    """
    Check the policy (an alias or a subclass of SB3's ``ActorCriticPolicy``), its ``policy_kwargs`` and the environment's
    spaces (:func:`check_spaces`); make the environment from its id, as SB3 does.

    :param policy: the ``policy`` argument.
    :param policy_class: the class it names.
    :param policy_kwargs: the ``policy_kwargs`` argument.
    :param env: the ``env`` argument (None when loading a model).
    :param verbose: the ``verbose`` argument.
    :return: the environment.
    :raises TypeError: for another policy, or unsupported spaces.
    :raises ValueError: for ``Dict`` observations without ``"MultiInputPolicy"``.
    """
    from stable_baselines3.common.base_class import maybe_make_env
    from stable_baselines3.common.policies import ActorCriticPolicy

    if not (isinstance(policy_class, type) and issubclass(policy_class, ActorCriticPolicy)):
        raise TypeError(
            "policy must be 'MlpPolicy', 'CnnPolicy', 'MultiInputPolicy' or a subclass of SB3's ActorCriticPolicy, "
            f"got {policy!r}"
        )
    check_policy_kwargs(policy_class, policy_kwargs)
    if env is None:
        return None
    env = maybe_make_env(env, verbose)
    check_spaces(env.observation_space, env.action_space)
    if isinstance(env.observation_space, spaces.Dict) and policy in ("MlpPolicy", "CnnPolicy"):
        raise ValueError(
            f"Dict observations need policy='MultiInputPolicy', not {policy!r} "
            "(or flatten them with gymnasium.wrappers.FlattenObservation)"
        )
    return env


def renamed_argument(old_name: str, old_value: Any, new_name: str, new_value: Any, why: str = "") -> Any:
    """
    The value of an argument that was renamed: ``old_value`` (with a ``DeprecationWarning``) when the old name was given,
    else ``new_value``.

    :param why: what the new name says, for the warning.
    """
    if old_value is None:
        return new_value
    warnings.warn(
        f"ClippedPPO's {old_name} was renamed {new_name}{f' ({why})' if why else ''}; {old_name} will be removed in a "
        "future release",
        DeprecationWarning,
        stacklevel=3,
    )
    return old_value
