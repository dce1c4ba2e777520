"""Shared helpers for the benchmarks: hyperparameters from an RL Zoo file, the machine's description, a results file."""

import argparse
import contextlib
import importlib.metadata
import io
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The like-for-like file: the RL Zoo's PPO settings (HalfCheetah-v4) and the walker seed's, for ClippedPPO and SB3 PPO alike;
# hyperparams/clippedppo.yml holds the tuned entries that `rl_zoo3.train --algo clippedppo` uses.
HYPERPARAMS_YML = ROOT / "benchmarks" / "hyperparams.yml"
SHIPPED_YML = ROOT / "hyperparams" / "clippedppo.yml"


def zoo_hyperparams(env_id: str, path: Path = HYPERPARAMS_YML) -> tuple[dict[str, Any], bool]:
    """
    The constructor arguments of an RL Zoo hyperparameter block, read and converted by the Zoo's own loader
    (``ExperimentManager``: ``policy_kwargs`` strings evaluated, ``lin_`` schedules made callables).

    :param env_id: the block's name, e.g. ``"HalfCheetah-v4"``.
    :param path: the yml file.
    :return: ``(kwargs, normalize)``: arguments for ``ClippedPPO``/``PPO`` (without ``n_envs``, ``n_timesteps``,
        ``policy``, ``normalize``, wrappers), and whether the block asks for ``VecNormalize``.
    :raises ValueError: when the file has no block for ``env_id``.
    """
    from rl_zoo3.exp_manager import ExperimentManager
    from stable_baselines3.common.utils import ConstantSchedule

    if env_id not in yaml_keys(path):
        raise ValueError(f"env_id {env_id!r} has no block in {path}")
    if env_id.startswith("dm_control/"):
        import shimmy  # noqa: F401 (registers the dm_control/... ids, as the Zoo's --gym-packages shimmy does)
    manager = ExperimentManager(argparse.Namespace(), "clippedppo", env_id, os.devnull, config=str(path), verbose=0)
    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints the hyperparameters
        hyperparams, _ = manager.read_hyperparameters()
    hyperparams, *_ = manager._preprocess_hyperparams(hyperparams)
    hyperparams.pop("policy", None)
    # A constant stays a number (SB3 makes the same schedule of it), so that the arguments stay printable as JSON
    constants = {key: value.val for key, value in hyperparams.items() if isinstance(value, ConstantSchedule)}
    return {**hyperparams, **constants}, manager.normalize


def zoo_n_envs(env_id: str, path: Path = HYPERPARAMS_YML) -> int:
    """
    The number of environments (``n_envs``, default 1) of an RL Zoo hyperparameter block, which :func:`zoo_hyperparams`
    leaves out of the constructor arguments.

    :param env_id: the block's name.
    :param path: the yml file.
    :raises ValueError: when the file has no block for ``env_id``.
    """
    import yaml

    blocks = yaml.safe_load(Path(path).read_text()) or {}
    if env_id not in blocks:
        raise ValueError(f"env_id {env_id!r} has no block in {path}")
    return int(blocks[env_id].get("n_envs", 1))


def yaml_keys(path: Path) -> list[str]:
    """
    The top-level names of a yml file.

    :param path: the file.
    """
    import yaml

    return list(yaml.safe_load(Path(path).read_text()) or {})


def git_commit(repo: Path = ROOT) -> str:
    """The commit of a checkout (with ``-dirty`` when its work tree has changes), or ``unknown``."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True
        )
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_info() -> dict[str, Any]:
    """CPU model, cores, torch threads, Python and package versions, and the code's commit."""
    import gymnasium
    import numpy as np
    import stable_baselines3
    import torch as th

    import sb3_clippedppo

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {
        "sb3_clippedppo": sb3_clippedppo.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "torch": th.__version__,
        "gymnasium": gymnasium.__version__,
        "numpy": np.__version__,
    }
    for name in ("rl-zoo3", "sb3-contrib", "mujoco", "dm-control", "shimmy", "rliable", "optuna"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name.replace("-", "_")] = importlib.metadata.version(name)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": th.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": git_commit(Path(sb3_clippedppo.__file__).resolve().parents[1]),  # the code that trained
        "versions": versions,
    }


def add_out_arguments(parser: argparse.ArgumentParser) -> None:
    """``--out``, a JSON file for a measurement's results, and ``--overwrite`` to replace one (see :func:`check_out`)."""
    parser.add_argument("--out", type=Path, help="JSON file for the results (an existing one is kept unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def check_out(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Stop with a usage error, before anything is measured, when ``--out`` exists and ``--overwrite`` was not given."""
    if args.out is not None and args.out.exists() and not args.overwrite:
        parser.error(f"--out {args.out} exists; pass --overwrite to replace it")


def write_results(path: Path | None, results: dict[str, Any]) -> None:
    """Write a measurement's results as indented JSON to ``path`` (its folder created), or nothing when ``path`` is None."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1) + "\n")
