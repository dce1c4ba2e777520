"""Shared helpers for the benchmarks: hyperparameters from the shipped RL Zoo file, and the machine's description."""

import contextlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
HYPERPARAMS_YML = ROOT / "hyperparams" / "clippedppo.yml"


def zoo_hyperparams(env_id: str, path: Path = HYPERPARAMS_YML) -> tuple[dict[str, Any], bool]:
    """
    The constructor arguments of an RL Zoo hyperparameter block, evaluated as the Zoo does it.

    :param env_id: the block's name, e.g. ``"HalfCheetah-v4"``.
    :param path: the yml file.
    :return: ``(kwargs, normalize)``: arguments for ``ClippedPPO``/``PPO`` (without ``n_envs``, ``n_timesteps``,
        ``policy``, ``normalize``), and whether the block asks for ``VecNormalize``.
    """
    from torch import nn

    block = dict(yaml.safe_load(path.read_text())[env_id])
    normalize = bool(block.pop("normalize", False))
    for key in ("n_envs", "n_timesteps", "policy", "env_wrapper"):
        block.pop(key, None)
    if isinstance(block.get("policy_kwargs"), str):
        block["policy_kwargs"] = eval(block["policy_kwargs"], {"nn": nn, "dict": dict})
    return block, normalize


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
        "commit": git_commit(),
        "versions": versions,
    }
