"""RL Baselines3 Zoo registration for ClippedPPO (``--algo clippedppo``).

:func:`register` adds ClippedPPO to the Zoo: the algorithm to ``rl_zoo3.utils.ALGOS``, a hyperparameter sampler and
converter to ``rl_zoo3.hyperparams_opt``, and the shipped ``hyperparams/clippedppo.yml`` as the default config of
``rl_zoo3.exp_manager.ExperimentManager`` for ``clippedppo`` (``-conf`` still wins). An environment with no entry
in the shipped file takes the installed Zoo's own PPO entry (``ppo.yml``: the environment's, or ``atari`` for Atari
ids), verbatim, so that ``--algo ppo`` becomes ``--algo clippedppo`` with the same hyperparameters; the shipped
``default`` entry is used only when neither file has one (:func:`hyperparameter_source`). Existing entries are never
replaced. The import hook (:mod:`sb3_clippedppo.integrations.zoo_hook`) calls :func:`register_module` as each Zoo module is
imported; without the hook, run the Zoo through this module (or its public alias ``sb3_clippedppo.zoo``)::

    python -m sb3_clippedppo.zoo train --algo clippedppo --env HalfCheetah-v4
    python -m sb3_clippedppo.zoo enjoy --algo clippedppo --env HalfCheetah-v4 -f logs
    python -m sb3_clippedppo.zoo record_video --algo clippedppo --env HalfCheetah-v4 -f logs -n 1000
"""

import functools
import importlib
import inspect
import runpy
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from sb3_clippedppo.clipped_ppo import ClippedPPO

ALGO_NAME = "clippedppo"
HYPERPARAMS_FILE = "clippedppo.yml"
COMMANDS = {"train": "rl_zoo3.train", "enjoy": "rl_zoo3.enjoy", "record_video": "rl_zoo3.record_video"}

NET_ARCHS = {
    "tiny": dict(pi=[64], vf=[64]),
    "small": dict(pi=[64, 64], vf=[64, 64]),
    "medium": dict(pi=[256, 256], vf=[256, 256]),
}


def hyperparams_path() -> Path:
    """
    The shipped hyperparameter file: inside the installed package, or in the source tree's ``hyperparams/`` folder
    (editable installs).

    :raises FileNotFoundError: if neither exists.
    """
    package_dir = Path(__file__).resolve().parents[1]
    for candidate in (package_dir / "hyperparams" / HYPERPARAMS_FILE, package_dir.parent / "hyperparams" / HYPERPARAMS_FILE):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{HYPERPARAMS_FILE} is neither in {package_dir / 'hyperparams'} nor in the source tree")


def zoo_ppo_hyperparams_path(exp_manager_file: str | None = None) -> Path:
    """
    The installed RL Zoo's PPO hyperparameter file, found as ``ExperimentManager`` finds ``hyperparams/ppo.yml`` for
    ``--algo ppo``: in the ``rl_zoo3`` package, or in the folder above it (a source checkout of the Zoo).

    :param exp_manager_file: the path of ``rl_zoo3/exp_manager.py`` (default: the installed one's).
    :raises FileNotFoundError: if the Zoo has no ``hyperparams/ppo.yml``.
    """
    if exp_manager_file is None:
        import rl_zoo3.exp_manager

        exp_manager_file = rl_zoo3.exp_manager.__file__
    package_dir = Path(exp_manager_file).resolve().parent
    for candidate in (package_dir / "hyperparams" / "ppo.yml", package_dir.parent / "hyperparams" / "ppo.yml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"the RL Zoo at {package_dir} has no hyperparams/ppo.yml")


def _entry_keys(path: Path) -> set[str]:
    import yaml

    return set(yaml.safe_load(path.read_text()) or {})


def hyperparameter_source(env_id: str, is_atari: bool, zoo_ppo_path: Path | None = None) -> tuple[Path, str]:
    """
    Which file and entry ``--algo clippedppo`` reads for an environment when no ``-conf`` is given, in this order:

    1. the shipped ``clippedppo.yml``'s entry for ``env_id`` (ClippedPPO's own tuned values);
    2. the installed Zoo's ``ppo.yml`` entry for ``env_id``, or its ``atari`` entry for an Atari id, exactly as
       ``--algo ppo`` reads it;
    3. the shipped file's ``default`` entry.

    :param env_id: the Gymnasium id (``--env``).
    :param is_atari: whether the Zoo treats ``env_id`` as Atari (``ExperimentManager.is_atari``).
    :param zoo_ppo_path: the Zoo's PPO file (default: :func:`zoo_ppo_hyperparams_path`).
    :return: ``(file, entry name)``.
    """
    shipped = hyperparams_path()
    if env_id in _entry_keys(shipped):
        return shipped, env_id
    zoo_ppo = zoo_ppo_hyperparams_path() if zoo_ppo_path is None else zoo_ppo_path
    zoo_entries = _entry_keys(zoo_ppo)
    if env_id in zoo_entries:
        return zoo_ppo, env_id
    if is_atari and "atari" in zoo_entries:
        return zoo_ppo, "atari"
    return shipped, "default"


def linear_schedule(initial_value: float) -> Any:
    """The RL Zoo's linear schedule (``lin_<value>`` in its yml files): ``initial_value * progress_remaining``."""
    from rl_zoo3.utils import SimpleLinearSchedule

    return SimpleLinearSchedule(float(initial_value))


def convert_clippedppo_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    Turn raw Optuna parameters (as stored in a study) into ClippedPPO keyword arguments.

    :param sampled_params: values named as in :func:`sample_clippedppo_params` (``n_steps_pow``, ``one_minus_gamma``,
        ``net_arch`` as ``"tiny"``/``"small"``/``"medium"``, ``activation_fn`` as ``"tanh"``/``"relu"``,
        ``learning_rate_schedule`` and ``ent_coef_schedule`` as ``"constant"``/``"linear"``, ...).
    :return: keyword arguments for :class:`~sb3_clippedppo.ClippedPPO`.
    """
    from torch import nn

    params = dict(sampled_params)
    hyperparams: dict[str, Any] = {}
    for name in ("n_steps", "batch_size"):
        if f"{name}_pow" in params:
            hyperparams[name] = 2 ** params.pop(f"{name}_pow")
    for name in ("gamma", "gae_lambda"):
        if f"one_minus_{name}" in params:
            hyperparams[name] = 1.0 - params.pop(f"one_minus_{name}")
    policy_kwargs: dict[str, Any] = {}
    if "net_arch" in params:
        policy_kwargs["net_arch"] = NET_ARCHS[params.pop("net_arch")]
    if "activation_fn" in params:
        policy_kwargs["activation_fn"] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}[params.pop("activation_fn")]
    for name in ("log_std_init", "ortho_init", "state_dependent_std", "normalize_observations"):
        if name in params:
            policy_kwargs[name] = params.pop(name)
    if params.pop("ent_coef_schedule", "constant") == "linear" and "ent_coef" in params:
        hyperparams["ent_coef"] = linear_schedule(params.pop("ent_coef"))
    vf_lr_multiplier = params.pop("vf_lr_multiplier", 1)
    if vf_lr_multiplier != 1 and "learning_rate" in params:
        hyperparams["vf_learning_rate"] = params["learning_rate"] * vf_lr_multiplier
    if params.pop("learning_rate_schedule", "constant") == "linear" and "learning_rate" in params:
        hyperparams["learning_rate"] = linear_schedule(params.pop("learning_rate"))
        if "vf_learning_rate" in hyperparams:
            hyperparams["vf_learning_rate"] = linear_schedule(hyperparams["vf_learning_rate"])
    if policy_kwargs:
        hyperparams["policy_kwargs"] = policy_kwargs
    # learning_rate, ent_coef, clip_range, n_epochs, max_grad_norm, vf_coef, target_kl, policy_objective, kl_coef,
    # kl_penalty_target, kl_adaptive_lr, recompute_advantages
    hyperparams.update(params)
    return hyperparams


def sample_clippedppo_params(trial: Any, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Optuna sampler for ``python -m rl_zoo3.train --algo clippedppo --optimize``: the ranges of the Zoo's PPO
    sampler, plus ``target_kl``, ``vf_coef``, ``log_std_init``, ``ortho_init`` and ClippedPPO's own options: a
    value learning rate (1, 3 or 10 times ``learning_rate``), the policy objective (clip, or PPO-Penalty with its
    ``kl_coef`` and ``kl_penalty_target``), ``state_dependent_std`` (Box actions), with a ``target_kl`` ``kl_adaptive_lr``,
    ``learning_rate`` and ``ent_coef`` constant or decaying linearly to 0, ``recompute_advantages`` and
    ``normalize_observations``.
    A ``batch_size`` larger than the rollout (``n_steps * n_envs``) is reduced to it.

    :param trial: the Optuna trial.
    :param n_actions: the size of a Box action space, 0 for Discrete (as the Zoo passes it); ``state_dependent_std``
        is only sampled for Box actions.
    :param n_envs: number of environments, to bound ``batch_size``.
    :param additional_args: unused (the Zoo's sampler signature).
    :return: keyword arguments for :class:`~sb3_clippedppo.ClippedPPO`.
    """
    sampled = {
        "n_steps_pow": trial.suggest_int("n_steps_pow", 5, 12),
        "batch_size_pow": trial.suggest_int("batch_size_pow", 5, 10),
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 0.0001, 0.03, log=True),
        "one_minus_gae_lambda": trial.suggest_float("one_minus_gae_lambda", 0.0001, 0.1, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 0.002, log=True),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        "clip_range": trial.suggest_categorical("clip_range", [0.1, 0.2, 0.3, 0.4]),
        "n_epochs": trial.suggest_categorical("n_epochs", [1, 5, 10, 20]),
        "max_grad_norm": trial.suggest_float("max_grad_norm", 0.3, 2.0),
        "vf_coef": trial.suggest_float("vf_coef", 0.2, 1.0),
        "target_kl": trial.suggest_categorical("target_kl", [None, 0.005, 0.01, 0.02, 0.05]),
        "log_std_init": trial.suggest_float("log_std_init", -3.0, 0.0),
        "ortho_init": trial.suggest_categorical("ortho_init", [False, True]),
        "net_arch": trial.suggest_categorical("net_arch", list(NET_ARCHS)),
        "activation_fn": trial.suggest_categorical("activation_fn", ["tanh", "relu"]),
        "vf_lr_multiplier": trial.suggest_categorical("vf_lr_multiplier", [1, 3, 10]),
        "policy_objective": trial.suggest_categorical("policy_objective", ["clip", "kl_penalty"]),
        "learning_rate_schedule": trial.suggest_categorical("learning_rate_schedule", ["constant", "linear"]),
        "ent_coef_schedule": trial.suggest_categorical("ent_coef_schedule", ["constant", "linear"]),
        "recompute_advantages": trial.suggest_categorical("recompute_advantages", [False, True]),
        "normalize_observations": trial.suggest_categorical("normalize_observations", [False, True]),
    }
    if n_actions > 0:  # the Zoo passes the size of a Box action space, and 0 for other spaces
        sampled["state_dependent_std"] = trial.suggest_categorical("state_dependent_std", [False, True])
    if sampled["policy_objective"] == "kl_penalty":
        sampled["kl_coef"] = trial.suggest_categorical("kl_coef", [0.3, 1.0, 3.0])
        sampled["kl_penalty_target"] = trial.suggest_categorical("kl_penalty_target", [0.003, 0.01, 0.03])
    if sampled["target_kl"] is not None:
        sampled["kl_adaptive_lr"] = trial.suggest_categorical("kl_adaptive_lr", [False, True])
    hyperparams = convert_clippedppo_params(sampled)
    hyperparams["batch_size"] = min(hyperparams["batch_size"], hyperparams["n_steps"] * n_envs)
    for name in ("gamma", "gae_lambda", "n_steps", "batch_size"):
        trial.set_user_attr(name, hyperparams[name])
    return hyperparams


def _patch_experiment_manager(experiment_manager: Any) -> None:
    """
    For ``algo="clippedppo"``: without ``-conf``, read the file and entry that :func:`hyperparameter_source` picks
    (and print them), read ``ent_coef: lin_<value>`` in hyperparameter files as a linear schedule (the Zoo does so for
    ``learning_rate`` and ``clip_range`` only), and let schedules that are already callables through (the sampler's
    linear learning rate, which ``--trial-id`` passes to the Zoo's preprocessing, where only strings and numbers are
    accepted).
    """
    original = experiment_manager.__init__
    if getattr(experiment_manager, "sb3_clippedppo_patched", False):
        return
    original_preprocess = experiment_manager._preprocess_hyperparams
    original_read = experiment_manager.read_hyperparameters
    exp_manager_file = sys.modules[experiment_manager.__module__].__file__

    @functools.wraps(original_read)
    def read_hyperparameters(self: Any) -> Any:
        if self.algo == ALGO_NAME and getattr(self, "_clippedppo_default_config", False):
            path, entry = hyperparameter_source(
                self.env_name.gym_id, self._is_atari, zoo_ppo_hyperparams_path(exp_manager_file)
            )
            self.config = str(path)
            if path != hyperparams_path():
                print(f"ClippedPPO: no entry for {self.env_name.gym_id} in {hyperparams_path()}; "
                      f"using the RL Zoo's PPO entry '{entry}' from {path}")  # fmt: skip
        return original_read(self)

    experiment_manager.read_hyperparameters = read_hyperparameters

    @functools.wraps(original_preprocess)
    def _preprocess_hyperparams(self: Any, hyperparams: dict[str, Any]) -> Any:
        ent_coef = hyperparams.get("ent_coef")
        if self.algo != ALGO_NAME:
            return original_preprocess(self, hyperparams)
        if isinstance(ent_coef, str) and ent_coef.startswith("lin_"):
            hyperparams = {**hyperparams, "ent_coef": linear_schedule(float(ent_coef.split("_", 1)[1]))}
        schedules = {key: hyperparams[key] for key in ("learning_rate", "clip_range") if callable(hyperparams.get(key))}
        others = {key: value for key, value in hyperparams.items() if key not in schedules}
        processed, *rest = original_preprocess(self, others)
        return ({**processed, **schedules}, *rest)

    experiment_manager._preprocess_hyperparams = _preprocess_hyperparams
    signature = inspect.signature(original)

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        default_config = bound.arguments.get("algo") == ALGO_NAME and not bound.arguments.get("config")
        if default_config:
            bound.arguments["config"] = str(hyperparams_path())
        original(*bound.args, **bound.kwargs)
        self._clippedppo_default_config = default_config

    experiment_manager.sb3_clippedppo_patched = True
    experiment_manager.__init__ = __init__


def register_module(module: ModuleType) -> None:
    """
    Register ClippedPPO in one Zoo module: ``rl_zoo3.utils``, ``rl_zoo3.hyperparams_opt`` or ``rl_zoo3.exp_manager``
    (other modules are ignored). Idempotent; entries already present (e.g. a user's own ``clippedppo``) are kept.

    :param module: the imported Zoo module.
    """
    name = module.__name__
    if name == "rl_zoo3.utils":
        module.ALGOS.setdefault(ALGO_NAME, ClippedPPO)
    elif name == "rl_zoo3.hyperparams_opt":
        module.HYPERPARAMS_SAMPLER.setdefault(ALGO_NAME, sample_clippedppo_params)
        module.HYPERPARAMS_CONVERTER.setdefault(ALGO_NAME, convert_clippedppo_params)
    elif name == "rl_zoo3.exp_manager":
        _patch_experiment_manager(module.ExperimentManager)


def register() -> None:
    """Import the Zoo's modules and register ClippedPPO in each (what the import hook does, explicitly)."""
    for name in ("rl_zoo3.utils", "rl_zoo3.hyperparams_opt", "rl_zoo3.exp_manager"):
        register_module(importlib.import_module(name))


def main(argv: list[str] | None = None) -> None:
    """
    ``python -m sb3_clippedppo.zoo {train,enjoy,record_video} [Zoo arguments]``: register, then run that Zoo script.

    :param argv: the command and the Zoo script's arguments (default: ``sys.argv[1:]``).
    """
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m sb3_clippedppo.zoo {{{','.join(COMMANDS)}}} [RL Zoo arguments]", file=sys.stderr)
        raise SystemExit(2)
    register()
    module = COMMANDS[argv[0]]
    sys.argv = [module, *argv[1:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
