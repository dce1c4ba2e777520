"""The one builder of the benchmarks: a model and its environments from an RL Zoo entry, as ``rl_zoo3.train`` builds them.

An entry is a block of an RL Zoo hyperparameter file, read and converted by the Zoo's own loader
(``ExperimentManager``: ``policy_kwargs`` strings evaluated, ``lin_`` schedules made callables, ``normalize`` turned into
``VecNormalize``'s arguments with the entry's ``gamma``). :func:`make_env` builds the environments from it with the same
arguments as the Zoo's ``create_envs`` (``tests/slow/test_bench_builder.py`` checks them against it), and :func:`build` the
model. Every command of this package that builds a model builds it here.

The files: ``benchmarks/hyperparams.yml`` (the like-for-like file: the RL Zoo's PPO values for HalfCheetah-v4 and the
walker seed's settings, for ClippedPPO and SB3's PPO alike), ``hyperparams/clippedppo.yml`` (the shipped entries that
``rl_zoo3.train --algo clippedppo`` uses) and ``benchmarks/settings.yml`` (the throughput's other settings: SB3's
defaults, and ``CnnPolicy`` on SB3's ``FakeImageEnv``, registered here as :data:`FAKE_IMAGE_ENV`).

Besides: the machine's description (:func:`machine_info`), a measurement's results file (:func:`add_out_arguments`,
:func:`check_out`, :func:`write_results`) and the palette PNG every figure under ``benchmarks/results/`` is saved as
(:func:`save_png`, :func:`to_palette_png`).
"""

import argparse
import contextlib
import importlib.metadata
import io
import json
import os
import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HYPERPARAMS_YML = ROOT / "benchmarks" / "hyperparams.yml"
SHIPPED_YML = ROOT / "hyperparams" / "clippedppo.yml"
SETTINGS_YML = ROOT / "benchmarks" / "settings.yml"
# SB3's FakeImageEnv as a Gymnasium id, so that a Zoo entry can name it: 84x84 images with 4 channels (four stacked Atari
# frames), 6 discrete actions, random images (the environment costs next to nothing)
FAKE_IMAGE_ENV = "benchmarks/FakeImage-v0"
ALGORITHMS = ("clippedppo", "ppo")


def env_folder(env_id: str) -> str:
    """The Zoo's folder name for an environment id (``dm_control/walker-walk-v0`` -> ``dm_control-walker-walk-v0``)."""
    return env_id.replace("/", "-")


def register_envs(env_id: str) -> None:
    """
    Make ``env_id`` known to Gymnasium: :data:`FAKE_IMAGE_ENV`, and the ``dm_control/...`` ids (through shimmy, as the
    Zoo's ``--gym-packages shimmy``).

    :param env_id: the environment id.
    """
    import gymnasium as gym

    if env_id == FAKE_IMAGE_ENV and env_id not in gym.registry:
        gym.register(env_id, entry_point="stable_baselines3.common.envs:FakeImageEnv",
                     kwargs=dict(action_dim=6, n_channels=4))  # fmt: skip
    if env_id.startswith("dm_control/"):
        import shimmy  # noqa: F401


@dataclass
class Entry:
    """
    An RL Zoo entry as ``rl_zoo3.train`` uses it.

    :param env_id: the environment id (the entry's name).
    :param conf: the hyperparameter file.
    :param hyperparams: the model's constructor arguments, ``policy`` included.
    :param n_envs: the training environments.
    :param normalize_kwargs: ``VecNormalize``'s arguments of the training environment (the entry's ``gamma`` among
        them, as the Zoo adds it), or None when the entry does not normalize.
    :param env_kwargs: the environment's arguments.
    :param env_wrapper: the entry's ``env_wrapper`` (a callable), or None.
    :param vec_env_wrapper: the entry's ``vec_env_wrapper``, or None.
    :param frame_stack: the entry's ``frame_stack``, or None.
    :param n_timesteps: the entry's training steps.
    """

    env_id: str
    conf: Path
    hyperparams: dict[str, Any]
    n_envs: int
    normalize_kwargs: dict[str, Any] | None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    env_wrapper: Callable | None = None
    vec_env_wrapper: Callable | None = None
    frame_stack: int | None = None
    n_timesteps: int = 0

    def printable(self) -> dict[str, Any]:
        """The constructor arguments as JSON can hold them (schedules and classes by their ``repr``)."""
        return {key: value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)
                for key, value in self.hyperparams.items()}  # fmt: skip


def zoo_manager(env_id: str, conf: Path, seed: int = 0) -> Any:
    """
    The Zoo's ``ExperimentManager`` for an entry, with its hyperparameters read and converted (as ``rl_zoo3.train`` does
    before it creates the environments); it writes nothing.

    :param env_id: the entry's name.
    :param conf: the hyperparameter file.
    :param seed: the run's seed.
    :return: ``(manager, hyperparams)``: the manager and the constructor arguments it made.
    :raises ValueError: when the file has no entry for ``env_id``.
    """
    import yaml
    from rl_zoo3.exp_manager import ExperimentManager

    conf = Path(conf)
    if not conf.is_file():
        raise ValueError(f"conf {conf}: no such file")
    if env_id not in (yaml.safe_load(conf.read_text()) or {}):
        raise ValueError(f"env_id {env_id!r} has no entry in {conf}")
    register_envs(env_id)
    manager = ExperimentManager(argparse.Namespace(), "clippedppo", env_id, os.devnull, config=str(conf), seed=seed,
                                verbose=0)  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints the hyperparameters
        hyperparams, _ = manager.read_hyperparameters()
        hyperparams, manager.env_wrapper, _, manager.vec_env_wrapper = manager._preprocess_hyperparams(hyperparams)
    return manager, hyperparams


def read_entry(env_id: str, conf: Path = HYPERPARAMS_YML) -> Entry:
    """
    An entry of an RL Zoo hyperparameter file, read by the Zoo's own loader.

    :param env_id: the entry's name, e.g. ``"HalfCheetah-v4"``.
    :param conf: the hyperparameter file.
    :raises ValueError: when the file does not exist or has no entry for ``env_id``.
    """
    from stable_baselines3.common.utils import ConstantSchedule

    manager, hyperparams = zoo_manager(env_id, conf)
    hyperparams.setdefault("policy", "MlpPolicy")
    # A constant stays a number (SB3 makes the same schedule of it), so that the arguments stay printable as JSON
    constants = {key: value.val for key, value in hyperparams.items() if isinstance(value, ConstantSchedule)}
    return Entry(env_id=env_id, conf=Path(conf), hyperparams={**hyperparams, **constants}, n_envs=manager.n_envs,
                 normalize_kwargs=dict(manager.normalize_kwargs) if manager.normalize else None,
                 env_kwargs=dict(manager.env_kwargs), env_wrapper=manager.env_wrapper,
                 vec_env_wrapper=manager.vec_env_wrapper, frame_stack=manager.frame_stack,
                 n_timesteps=manager.n_timesteps)  # fmt: skip


def make_env(entry: Entry, seed: int, eval_env: bool = False, n_envs: int | None = None) -> Any:
    """
    The entry's environments as the Zoo's ``create_envs`` makes them (without Monitor files): ``make_vec_env`` with the
    entry's wrapper and arguments, then ``VecNormalize`` with the entry's arguments (for evaluation: rewards not
    normalized, statistics not updated), then frame stacking, and images made channel-first.

    :param entry: the entry.
    :param seed: the seed of the first environment (the next ones get the following seeds).
    :param eval_env: the evaluation environment instead of the training one.
    :param n_envs: how many (default: the entry's ``n_envs`` for training, 1 for evaluation).
    """
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
    from stable_baselines3.common.vec_env import VecFrameStack, VecNormalize, VecTransposeImage

    register_envs(entry.env_id)
    count = n_envs if n_envs is not None else (1 if eval_env else entry.n_envs)
    spec = gym.spec(entry.env_id)  # made from its spec, as the Zoo does (no render mode)
    env = make_vec_env(lambda **kwargs: spec.make(**kwargs), n_envs=count, seed=seed, env_kwargs=entry.env_kwargs,
                       wrapper_class=entry.env_wrapper)  # fmt: skip
    if entry.vec_env_wrapper is not None:
        env = entry.vec_env_wrapper(env)
    if entry.normalize_kwargs is not None:
        kwargs = {**entry.normalize_kwargs, **({"norm_reward": False, "training": False} if eval_env else {})}
        env = VecNormalize(env, **kwargs)
    if entry.frame_stack is not None:
        env = VecFrameStack(env, entry.frame_stack)
    space = env.observation_space
    if is_image_space(space) and not is_image_space_channels_first(space):  # type: ignore[arg-type]
        env = VecTransposeImage(env)
    return env


def build(algo: str, entry: Entry, seed: int = 0, device: str = "cpu", verbose: int = 0) -> Any:
    """
    The entry's model: ``ClippedPPO`` or SB3's ``PPO`` on :func:`make_env`'s training environments.

    :param algo: ``"clippedppo"`` or ``"ppo"``.
    :param entry: the entry (:func:`read_entry`).
    :param seed: the model's and the environments' seed.
    :param device: the torch device.
    :param verbose: SB3's verbosity.
    :raises ValueError: for another ``algo``.
    """
    if algo not in ALGORITHMS:
        raise ValueError(f"algo must be one of {ALGORITHMS}, got {algo!r}")
    from stable_baselines3 import PPO

    from sb3_clippedppo import ClippedPPO

    hyperparams = dict(entry.hyperparams)
    policy = hyperparams.pop("policy")
    model_class = ClippedPPO if algo == "clippedppo" else PPO
    return model_class(policy, make_env(entry, seed), seed=seed, device=device, verbose=verbose, **hyperparams)


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


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """
    The first CPU's model name with its family, model and stepping, e.g. ``AMD EPYC, family 25 model 17 stepping 1``:
    virtual machines often report a bare ``AMD EPYC`` for CPUs that differ by a factor of two in speed, and the numbers
    tell them apart. ``platform.processor()`` where ``cpuinfo`` cannot be read or has no model name.

    :param cpuinfo: the ``/proc/cpuinfo`` file to read.
    """
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError), open(cpuinfo) as f:
        for line in f:
            if not line.strip():
                break  # the first processor's block only
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    if "model name" not in fields:
        return platform.processor()
    ids = " ".join(f"{label} {fields[key]}" for key, label in (("cpu family", "family"), ("model", "model"),
                                                                ("stepping", "stepping")) if fields.get(key))  # fmt: skip
    return f"{fields['model name']}, {ids}" if ids else fields["model name"]


def machine_info() -> dict[str, Any]:
    """CPU model, cores, torch threads, Python and package versions, and the code's commit."""
    import gymnasium
    import numpy as np
    import stable_baselines3
    import torch as th

    import sb3_clippedppo

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
        "cpu": cpu_name(),
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


def save_png(fig: Any, path: Path, dpi: int = 110, **savefig_kwargs: Any) -> None:
    """
    Save a matplotlib figure as an 8-bit palette PNG (:func:`to_palette_png` of what ``Figure.savefig`` draws).

    :param fig: a ``matplotlib.figure.Figure``.
    :param path: the PNG to write (replaced if it exists).
    :param dpi: dots per inch, as ``Figure.savefig``'s.
    :param savefig_kwargs: passed on to ``Figure.savefig`` (e.g. ``bbox_inches="tight"``).
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, **savefig_kwargs)
    buffer.seek(0)
    to_palette_png(buffer, path)


def to_palette_png(source: Path | io.BytesIO, path: Path) -> None:
    """
    Write a PNG's image as an 8-bit palette PNG: Pillow's adaptive palette, 256 colours, median cut, no dithering.

    ``benchmarks/results/`` has a size budget (5 MiB, ``tests/slow/test_report.py``) that the RL Zoo benchmark's
    evaluations fill as rows are added; a line plot uses few colours, so the palette keeps it as drawn at about a third of
    the bytes of matplotlib's RGBA PNG (whose background is opaque: the alpha channel is dropped).

    :param source: the PNG to read (a file, or its bytes); it may be ``path`` itself.
    :param path: the PNG to write (replaced if it exists).
    """
    from PIL import Image

    with Image.open(source) as image:
        palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette.save(path, format="PNG", optimize=True)
