"""Every entry of the installed RL Zoo's PPO hyperparameter file, with ``--algo clippedppo``: the hyperparameters it ends
up with equal those of ``--algo ppo`` (after the Zoo's preprocessing), except where the shipped
``hyperparams/clippedppo.yml`` overrides an entry on purpose; and ClippedPPO builds each entry's model and runs one
rollout and one update (one epoch: ``n_epochs`` is the only argument changed) through the Zoo's ``ExperimentManager``.

Where an entry's environment does not install with the ``test`` and ``zoo`` extras (``-v2`` MuJoCo ids, PyBullet,
MiniGrid, Box2D, Atari), its id is registered for the test with a stand-in that has the same kind of action space (the
``-v4`` MuJoCo id for a ``-v2`` or PyBullet one), and the entry's ``env_wrapper`` (made for the real environment) is left
out; every other value is the entry's."""

import argparse
import contextlib
import io
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import pytest
import yaml
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.utils import get_wrapper_class
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.envs import FakeImageEnv

from sb3_clippedppo import ClippedPPO, zoo

ZOO_PPO = zoo.zoo_ppo_hyperparams_path()
ZOO_HYPERPARAMS = yaml.safe_load(ZOO_PPO.read_text())
ZOO_ENTRIES = sorted(name for name in ZOO_HYPERPARAMS if name != "default")
SHIPPED = yaml.safe_load(zoo.hyperparams_path().read_text())
# Entries the shipped file overrides on purpose (each with a comment there saying why)
OVERRIDDEN = {"HalfCheetah-v4"}
ATARI_ID = "PongNoFrameskip-v4"  # any Atari id takes the Zoo's `atari` entry


class StandInAtariEnv(FakeImageEnv):
    """An 84x84 grey image and Discrete actions, as the Zoo's AtariWrapper makes of an Atari game (its class name tells
    the Zoo's ``is_atari`` that the id is an Atari one)."""

    def __init__(self, **kwargs: Any):
        super().__init__(screen_height=84, screen_width=84, n_channels=1, discrete=True)


class StandInCarRacing(FakeImageEnv):
    """A 64x64 colour image and Box actions in [-1, 1] (CarRacing's kind, after the entry's resizing)."""

    def __init__(self, **kwargs: Any):
        super().__init__(screen_height=64, screen_width=64, n_channels=3, discrete=False)


def stand_in(entry: str) -> Any:
    """The entry point of the stand-in for an entry whose environment is not installed here."""
    mujoco = {"HumanoidStandup": "HumanoidStandup", "InvertedDoublePendulum": "InvertedDoublePendulum",
              "InvertedPendulum": "InvertedPendulum", "Reacher": "Reacher", "Hopper": "Hopper", "Walker2D": "Walker2d",
              "HalfCheetah": "HalfCheetah", "Ant": "Ant", "Minitaur": "Ant", "Humanoid": "Humanoid"}  # fmt: skip
    if entry == "atari":
        return StandInAtariEnv
    if entry.startswith("CarRacing"):
        return StandInCarRacing
    if entry.startswith("MiniGrid") or entry == "LunarLander-v3":
        return gym.spec("CartPole-v1").entry_point  # Discrete actions
    if entry.startswith(("LunarLanderContinuous", "BipedalWalker")):
        return gym.spec("MountainCarContinuous-v0").entry_point  # Box actions
    for prefix, name in mujoco.items():
        if entry.startswith(prefix):
            return gym.spec(f"{name}-v4").entry_point
    raise AssertionError(f"no stand-in for {entry}: add one")


class StopAfterFirstUpdate(BaseCallback):
    """Stops learning at the first environment step after the first update."""

    def _on_step(self) -> bool:
        return self.model._n_updates == 0


def installed(entry: str) -> bool:
    """Whether the entry's environment makes here, with the entry's own wrappers (CarRacing's need OpenCV)."""
    try:
        env = gym.make(entry)
        wrapper = get_wrapper_class(ZOO_HYPERPARAMS[entry])
        (env if wrapper is None else wrapper(env)).close()
    except Exception:  # not registered, or a package (mujoco-py, pybullet, box2d, minigrid, opencv, ale-py) is missing
        return False
    return True


@contextlib.contextmanager
def environment(entry: str) -> Iterator[tuple[str, bool]]:
    """The id to train an entry on, registered with a stand-in when the real one does not install; yields ``(id,
    stand_in)`` and restores the registry afterwards."""
    env_id = ATARI_ID if entry == "atari" else entry
    if entry != "atari" and installed(env_id):
        yield env_id, False
        return
    previous = gym.envs.registry.get(env_id)
    gym.register(id=env_id, entry_point=stand_in(entry), max_episode_steps=200)
    try:
        yield env_id, True
    finally:
        del gym.envs.registry[env_id]
        if previous is not None:
            gym.envs.registry[env_id] = previous


def manager(algo: str, env_id: str, folder: str, stand_in: bool) -> ExperimentManager:
    """The Zoo's experiment manager as ``python -m rl_zoo3.train --algo ALGO --env ENV_ID`` makes it (no ``-conf``)."""
    overrides = {"env_wrapper": None} if stand_in else None  # the wrapper is the real environment's
    return ExperimentManager(argparse.Namespace(), algo, env_id, folder, hyperparams=overrides, eval_freq=-1, seed=0,
                             verbose=0, device="cpu")  # fmt: skip


def comparable(value: Any) -> Any:
    """A preprocessed hyperparameter in a form that compares by value (schedules by their values at 1 and 0.5)."""
    return (value(1.0), value(0.5)) if callable(value) and not isinstance(value, type) else value


def zoo_hyperparameters(algo: str, env_id: str, folder: str, stand_in: bool) -> tuple[dict, dict, dict, str]:
    """What the Zoo ends up with for ``--algo ALGO``: the entry as read, the model's arguments after preprocessing, the
    manager's environment settings, and what it printed."""
    built = manager(algo, env_id, folder, stand_in)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        raw, _ = built.read_hyperparameters()
        processed, *_ = built._preprocess_hyperparams(dict(raw))
    settings = {name: getattr(built, name) for name in ("n_envs", "n_timesteps", "normalize", "normalize_kwargs",
                                                        "frame_stack")}  # fmt: skip
    return raw, {key: comparable(value) for key, value in processed.items()}, settings, printed.getvalue()


@pytest.fixture(scope="module", autouse=True)
def registered():
    zoo.register()


@pytest.mark.parametrize("entry", ZOO_ENTRIES)
def test_clippedppo_gets_the_zoo_ppo_entry(entry, tmp_path):
    with environment(entry) as (env_id, stand_in):
        ours = zoo_hyperparameters("clippedppo", env_id, str(tmp_path), stand_in)
        theirs = zoo_hyperparameters("ppo", env_id, str(tmp_path), stand_in)
    if entry in OVERRIDDEN:
        assert entry in SHIPPED and f"Loading hyperparameters from: {zoo.hyperparams_path()}" in ours[3]
        return
    assert entry not in SHIPPED, f"{entry} is overridden by the shipped file: add it to OVERRIDDEN, with a comment there"
    assert f"using the RL Zoo's PPO entry '{entry}' from {ZOO_PPO}" in ours[3]
    assert ours[:3] == theirs[:3]


@pytest.mark.parametrize("entry", ZOO_ENTRIES)
def test_each_zoo_entry_builds_and_updates(entry, tmp_path):
    with environment(entry) as (env_id, stand_in):
        built = manager("clippedppo", env_id, str(tmp_path), stand_in)
        with contextlib.redirect_stdout(io.StringIO()):
            model, _ = built.setup_experiment()
        assert isinstance(model, ClippedPPO)
        model.n_epochs = 1  # one epoch of the update: every other argument is the entry's
        before = model.policy.parameters_to_vector()
        rollout = model.n_steps * model.n_envs
        # A run of 10 rollouts, stopped at the first step after its first update: a schedule (lin_...) is not at 0 yet
        model.learn(10 * rollout, callback=StopAfterFirstUpdate())
        model.get_env().close()
    assert model._n_updates == 1 and model.num_timesteps == rollout + model.n_envs
    assert (model.policy.parameters_to_vector() != before).any()


def test_an_id_without_any_entry_uses_the_shipped_default(tmp_path):
    with environment("LunarLander-v3") as (env_id, _):
        assert env_id in ZOO_ENTRIES
    gym.register(id="NoEntryAnywhere-v0", entry_point=gym.spec("CartPole-v1").entry_point, max_episode_steps=50)
    try:
        _, _, _, printed = zoo_hyperparameters("clippedppo", "NoEntryAnywhere-v0", str(tmp_path), False)
    finally:
        del gym.envs.registry["NoEntryAnywhere-v0"]
    assert f"Loading hyperparameters from: {zoo.hyperparams_path()}" in printed and "Using 'default'" in printed
