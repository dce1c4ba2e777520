"""The Zoo benchmark's list of entries (``benchmarks.run.zoo_benchmark_entries``): every entry of the installed RL Zoo's
``ppo.yml`` but those left out with a reason, and at least the ones issue 35's acceptance names."""

import pytest
import yaml

from benchmarks.run import ZOO_LEFT_OUT, zoo_benchmark_entries
from sb3_clippedppo.zoo import zoo_ppo_hyperparams_path

ZOO_PPO = zoo_ppo_hyperparams_path()
# Issue 35's acceptance: the 5 classic-control, the 4 non-image Box2D and the 6 MuJoCo -v4 entries at least.
REQUIRED = ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0", "Pendulum-v1", "LunarLander-v3",
            "LunarLanderContinuous-v3", "BipedalWalker-v3", "BipedalWalkerHardcore-v3", "Ant-v4", "HalfCheetah-v4",
            "Hopper-v4", "Humanoid-v4", "Swimmer-v4", "Walker2d-v4"]  # fmt: skip


def test_every_entry_is_run_or_left_out_with_a_reason():
    entries = zoo_benchmark_entries(ZOO_PPO)
    in_file = [e for e in yaml.safe_load(ZOO_PPO.read_text()) if e != "default"]
    assert sorted(entries + list(ZOO_LEFT_OUT)) == sorted(in_file)
    assert not set(entries) & set(ZOO_LEFT_OUT)
    assert all(reason.strip() for reason in ZOO_LEFT_OUT.values())
    assert set(REQUIRED) <= set(entries)
    assert any(e.startswith("MiniGrid-") for e in entries) and any("BulletEnv" in e for e in entries)


def test_a_stale_left_out_entry_is_an_error(tmp_path):
    conf = tmp_path / "ppo.yml"
    conf.write_text("default:\n  n_timesteps: 1000\nCartPole-v1:\n  n_timesteps: 1000\n")
    with pytest.raises(ValueError, match="ZOO_LEFT_OUT"):
        zoo_benchmark_entries(conf)
