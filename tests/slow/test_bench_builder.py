"""benchmarks.builder builds the environments of a Zoo entry as ``rl_zoo3.train`` does: the same wrappers, the same
``VecNormalize`` arguments (the entry's ``gamma``), the same observations; and the model with the entry's arguments."""

import numpy as np
import pytest

from benchmarks import builder

pytestmark = pytest.mark.slow  # needs the bench extra (the RL Zoo, MuJoCo, DM Control)

NORMALIZE_ATTRIBUTES = ("gamma", "epsilon", "clip_obs", "clip_reward", "norm_obs", "norm_reward", "training")
ENTRIES = [
    (builder.HYPERPARAMS_YML, "HalfCheetah-v4"),
    (builder.SHIPPED_YML, "HalfCheetah-v4"),
    (builder.SETTINGS_YML, "HalfCheetah-v4"),
    (builder.HYPERPARAMS_YML, "dm_control/walker-walk-v0"),
    (builder.SETTINGS_YML, builder.FAKE_IMAGE_ENV),
]


def wrappers(venv) -> list[str]:
    """The chain of VecEnv wrappers, then the first environment's Gymnasium wrappers, by class name."""
    names = []
    while hasattr(venv, "venv"):
        names.append(type(venv).__name__)
        venv = venv.venv
    names.append(type(venv).__name__)
    env = venv.envs[0]
    while hasattr(env, "env"):
        names.append(type(env).__name__)
        env = env.env
    return [*names, type(env).__name__]


def normalization(venv) -> dict | None:
    from stable_baselines3.common.vec_env import VecNormalize

    while not isinstance(venv, VecNormalize):
        if not hasattr(venv, "venv"):
            return None
        venv = venv.venv
    return {name: getattr(venv, name) for name in NORMALIZE_ATTRIBUTES}


@pytest.mark.parametrize("eval_env", [False, True], ids=["train", "eval"])
@pytest.mark.parametrize(("conf", "env_id"), ENTRIES, ids=[f"{c.stem}:{e}" for c, e in ENTRIES])
def test_environments_match_the_zoo(conf, env_id, eval_env):
    entry = builder.read_entry(env_id, conf)
    manager, _ = builder.zoo_manager(env_id, conf, seed=3)
    zoo = manager.create_envs(1 if eval_env else manager.n_envs, eval_env=eval_env, no_log=True)
    ours = builder.make_env(entry, seed=3, eval_env=eval_env)
    assert ours.num_envs == zoo.num_envs == (1 if eval_env else entry.n_envs)
    assert normalization(ours) == normalization(zoo)
    assert wrappers(ours) == wrappers(zoo)
    assert ours.get_attr("render_mode") == zoo.get_attr("render_mode")
    if env_id != builder.FAKE_IMAGE_ENV:  # FakeImageEnv draws its images from an unseeded space
        np.testing.assert_array_equal(ours.reset(), zoo.reset())  # same seeds, same normalization


def test_vec_normalize_takes_the_entrys_gamma():
    # The entries' gamma (0.98), not VecNormalize's default 0.99: what four former benchmark modules got wrong
    for conf in (builder.HYPERPARAMS_YML, builder.SHIPPED_YML):
        entry = builder.read_entry("HalfCheetah-v4", conf)
        assert entry.normalize_kwargs == {"gamma": 0.98}
        assert normalization(builder.make_env(entry, seed=0))["gamma"] == 0.98
    assert builder.read_entry("HalfCheetah-v4", builder.SETTINGS_YML).normalize_kwargs is None


def test_model_has_the_entrys_arguments():
    entry = builder.read_entry("HalfCheetah-v4", builder.SHIPPED_YML)
    for algo in builder.ALGORITHMS:
        model = builder.build(algo, entry, seed=1)
        assert (model.n_envs, model.n_steps, model.batch_size, model.n_epochs) == (16, 32, 256, 10)
        assert model.gamma == 0.98 and model.learning_rate(1.0) == pytest.approx(1.6e-4)
        assert model.learning_rate(0.5) == pytest.approx(0.8e-4)  # lin_1.6e-4
        assert model.policy.net_arch == dict(pi=[256, 256], vf=[256, 256])
    with pytest.raises(ValueError, match="algo must be one of"):
        builder.build("a2c", entry)


def test_bad_entries_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no entry"):
        builder.read_entry("Nope-v0", builder.HYPERPARAMS_YML)
    with pytest.raises(ValueError, match="no such file"):
        builder.read_entry("HalfCheetah-v4", tmp_path / "none.yml")
    entry = builder.read_entry("HalfCheetah-v4")
    assert entry.hyperparams["learning_rate"] == 2.0633e-05 and entry.n_envs == 1 and entry.n_timesteps == 1_000_000
    assert "n_timesteps" not in entry.hyperparams and "normalize" not in entry.hyperparams


def test_cpu_name_tells_apart_cpus_that_share_a_model_name(tmp_path):
    """Two VMs that both call their CPU ``AMD EPYC`` get different names from their family, model and stepping."""
    block = "processor\t: {n}\nvendor_id\t: AuthenticAMD\ncpu family\t: {family}\nmodel\t\t: {model}\nmodel name\t: AMD EPYC\n"
    names = []
    for family, model in ((25, 17), (23, 49)):
        info = tmp_path / f"cpuinfo_{family}"
        info.write_text("".join(block.format(n=n, family=family, model=model) + "stepping\t: 1\n\n" for n in (0, 1)))
        names.append(builder.cpu_name(info))
    assert names == ["AMD EPYC, family 25 model 17 stepping 1", "AMD EPYC, family 23 model 49 stepping 1"]
    (tmp_path / "bare").write_text("model name\t: Some CPU\n")
    assert builder.cpu_name(tmp_path / "bare") == "Some CPU"
    assert builder.cpu_name(tmp_path / "missing") == builder.platform.processor()
