"""RL Zoo integration: `python -m rl_zoo3.train --algo clippedppo` and the rest of the Zoo, with the import hook."""

import re
import types
from pathlib import Path

import numpy as np
import pytest
import yaml

from sb3_clippedppo import zoo
from sb3_clippedppo.integrations import zoo_hook
from tests.zoo_utils import check, osmesa_available, run

# Needs the zoo extra (rl_zoo3 command lines); tests/slow/conftest.py marks it slow.

SHIPPED_YML = Path(__file__).resolve().parents[2] / "hyperparams" / "clippedppo.yml"
HOOK_OFF = {zoo_hook.ENV_VAR: "0"}


@pytest.fixture(scope="module")
def halfcheetah_run(tmp_path_factory):
    """One short training run of the literal command (shipped hyperparameters), shared by the tests below."""
    cwd = tmp_path_factory.mktemp("zoo_halfcheetah")
    result = check(
        run(
            [
                "-m", "rl_zoo3.train", "--algo", "clippedppo", "--env", "HalfCheetah-v4", "--seed", "0",
                "-n", "1024", "--eval-freq", "512", "--eval-episodes", "2", "--save-freq", "512", "-tb", "tb",
            ],
            cwd,
        )
    )  # fmt: skip
    return cwd, result


def test_train_uses_the_shipped_hyperparameters(halfcheetah_run):
    cwd, result = halfcheetah_run
    assert "Loading hyperparameters from:" in result.stdout and "clippedppo.yml" in result.stdout
    run_dir = cwd / "logs" / "clippedppo" / "HalfCheetah-v4_1"
    config = dict(yaml.load((run_dir / "HalfCheetah-v4" / "config.yml").read_text(), Loader=yaml.UnsafeLoader))
    shipped = yaml.safe_load(SHIPPED_YML.read_text())["HalfCheetah-v4"]
    for key in ("n_steps", "batch_size", "gamma", "learning_rate", "n_epochs", "gae_lambda", "clip_range", "vf_coef"):
        assert config[key] == shipped[key], key
    assert (run_dir / "HalfCheetah-v4.zip").exists()
    assert (run_dir / "HalfCheetah-v4" / "vecnormalize.pkl").exists()
    # --eval-freq: evaluations.npz; --save-freq: checkpoints; -tb: tensorboard events
    assert np.load(run_dir / "evaluations.npz")["timesteps"].tolist() == [512, 1024]
    assert sorted(p.name for p in run_dir.glob("rl_model_*_steps.zip")) == [
        "rl_model_1024_steps.zip",
        "rl_model_512_steps.zip",
    ]
    assert list((cwd / "tb").rglob("events.out.tfevents.*"))


def test_enjoy(halfcheetah_run):
    cwd, _ = halfcheetah_run
    result = check(run(["-m", "rl_zoo3.enjoy", "--algo", "clippedppo", "--env", "HalfCheetah-v4", "-f", "logs", "-n", "200",
                        "--no-render", "--deterministic"], cwd))  # fmt: skip
    assert "Loading running average" in result.stdout


@pytest.mark.skipif(not osmesa_available(), reason="headless rendering needs OSMesa (Debian: libosmesa6)")
def test_record_video(halfcheetah_run):
    cwd, _ = halfcheetah_run
    check(run(["-m", "rl_zoo3.record_video", "--algo", "clippedppo", "--env", "HalfCheetah-v4", "-f", "logs", "-n", "10"],
              cwd, env={"MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa"}))  # fmt: skip
    videos = list((cwd / "logs" / "clippedppo" / "HalfCheetah-v4_1" / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000


def test_plots(halfcheetah_run):
    cwd, _ = halfcheetah_run
    check(run(["-m", "rl_zoo3.plots.plot_train", "--algo", "clippedppo", "--env", "HalfCheetah-v4", "-f", "logs"], cwd))
    check(run(["-m", "rl_zoo3.plots.all_plots", "-a", "clippedppo", "-e", "HalfCheetah-v4", "-f", "logs",
               "-o", "all_plots", "--no-display"], cwd))  # fmt: skip
    assert (cwd / "all_plots.pkl").exists()


@pytest.mark.skipif(not osmesa_available(), reason="headless rendering needs OSMesa (Debian: libosmesa6)")
def test_record_video_through_the_hook_free_wrapper(halfcheetah_run):
    cwd, _ = halfcheetah_run
    rendering = {**HOOK_OFF, "MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa"}
    check(run(["-m", "sb3_clippedppo.zoo", "record_video", "--algo", "clippedppo", "--env", "HalfCheetah-v4", "-f", "logs",
               "-n", "5", "-o", "wrapper_videos"], cwd, env=rendering))  # fmt: skip
    assert list((cwd / "wrapper_videos").glob("*.mp4"))


def test_cartpole_discrete_with_subprocess_envs(tmp_path):
    # --vec-env subproc: worker processes start a fresh interpreter (the hook must be harmless there)
    args = ["--algo", "clippedppo", "--env", "CartPole-v1", "-n", "2048", "--seed", "1", "--vec-env", "subproc"]
    check(run(["-m", "rl_zoo3.train", *args, "--eval-freq", "-1", "--hyperparams", "n_envs:2", "batch_size:64"], tmp_path))
    assert (tmp_path / "logs" / "clippedppo" / "CartPole-v1_1" / "CartPole-v1.zip").exists()


def test_optimize_two_trials(tmp_path):
    result = check(run(["-m", "rl_zoo3.train", "--algo", "clippedppo", "--env", "CartPole-v1", "-optimize", "--n-trials", "2",
                        "--n-jobs", "1", "--sampler", "random", "--pruner", "none", "-n", "1024", "--n-evaluations", "1",
                        "--eval-episodes", "2", "--seed", "0", "--hyperparams", "n_envs:1"], tmp_path))  # fmt: skip
    assert re.search(r"Number of finished trials:\s+2", result.stdout)
    assert "target_kl" in result.stdout  # our sampler's parameter
    assert list((tmp_path / "logs" / "clippedppo").glob("report_CartPole-v1_2-trials-*.csv"))


def test_conf_overrides_the_shipped_file(tmp_path):
    conf = tmp_path / "custom.yml"
    conf.write_text("CartPole-v1:\n  policy: 'MlpPolicy'\n  n_timesteps: 512\n  n_steps: 64\n  batch_size: 32\n  n_envs: 2\n")
    result = check(run(["-m", "rl_zoo3.train", "--algo", "clippedppo", "--env", "CartPole-v1", "-conf", str(conf),
                        "--eval-freq", "-1"], tmp_path))  # fmt: skip
    assert f"Loading hyperparameters from: {conf}" in result.stdout
    config = yaml.load(
        (tmp_path / "logs/clippedppo/CartPole-v1_1/CartPole-v1/config.yml").read_text(), Loader=yaml.UnsafeLoader
    )
    assert dict(config)["n_steps"] == 64 and dict(config)["batch_size"] == 32


def test_hook_switched_off_by_environment_variable(tmp_path):
    result = run(["-m", "rl_zoo3.train", "--algo", "clippedppo", "--env", "CartPole-v1", "-n", "256"], tmp_path, env=HOOK_OFF)
    assert result.returncode == 2 and "invalid choice: 'clippedppo'" in result.stderr


def test_hook_free_wrapper(tmp_path):
    args = ["--algo", "clippedppo", "--env", "CartPole-v1", "-n", "512", "--eval-freq", "-1"]
    result = check(run(["-m", "sb3_clippedppo.zoo", "train", *args], tmp_path, env=HOOK_OFF))
    assert "clippedppo.yml" in result.stdout
    check(run(["-m", "sb3_clippedppo.zoo", "enjoy", "--algo", "clippedppo", "--env", "CartPole-v1", "-f", "logs", "-n", "100",
               "--no-render"], tmp_path, env=HOOK_OFF))  # fmt: skip
    usage = run(["-m", "sb3_clippedppo.zoo", "fly"], tmp_path)
    assert usage.returncode == 2 and "usage: python -m sb3_clippedppo.zoo" in usage.stderr


def test_dm_control_walker_walk_trains(tmp_path):
    pytest.importorskip("shimmy")
    pytest.importorskip("dm_control")
    check(run(["-m", "rl_zoo3.train", "--algo", "clippedppo", "--env", "dm_control/walker-walk-v0", "--gym-packages", "shimmy",
               "-n", "5000", "--eval-freq", "-1", "--seed", "0"], tmp_path))  # fmt: skip
    run_dir = tmp_path / "logs" / "clippedppo" / "dm_control-walker-walk-v0_1"
    config = dict(yaml.load((run_dir / "dm_control-walker-walk-v0" / "config.yml").read_text(), Loader=yaml.UnsafeLoader))
    shipped = yaml.load(zoo.hyperparams_path().read_text(), Loader=yaml.UnsafeLoader)["dm_control/walker-walk-v0"]
    keys = ("n_steps", "batch_size", "learning_rate", "policy_objective", "kl_coef", "target_kl", "recompute_advantages")
    for key in (*keys, "normalize", "policy_kwargs"):
        assert config[key] == shipped[key], key
    assert (run_dir / "dm_control-walker-walk-v0.zip").exists()


@pytest.mark.parametrize(
    "entry, message",
    [
        ("  batch_size: '64'\n", "batch_size must be an int"),
        ("  clip_range: -0.2\n", "clip_range must be > 0"),
        ("  not_an_argument: 1\n", "unexpected keyword argument 'not_an_argument'"),
    ],
)
def test_bad_hyperparameters_give_clear_errors(tmp_path, entry, message):
    conf = tmp_path / "bad.yml"
    conf.write_text("CartPole-v1:\n  policy: 'MlpPolicy'\n  n_timesteps: 256\n  n_steps: 64\n" + entry)
    result = run(["-m", "rl_zoo3.train", "--algo", "clippedppo", "--env", "CartPole-v1", "-conf", str(conf)], tmp_path)
    assert result.returncode != 0 and message in result.stderr
    assert "torch" not in result.stderr.splitlines()[-1]  # the last line is our message, not a torch internal


def test_env_without_entry_or_default(tmp_path):
    conf = tmp_path / "only_cartpole.yml"
    conf.write_text("CartPole-v1:\n  policy: 'MlpPolicy'\n")
    result = run(["-m", "rl_zoo3.train", "--algo", "clippedppo", "--env", "Pendulum-v1", "-conf", str(conf)], tmp_path)
    assert result.returncode != 0 and "Hyperparameters not found for clippedppo-Pendulum-v1" in result.stderr


def test_interpreter_startup_installs_the_hook_without_torch(tmp_path):
    code = (
        "import sys; print(any(getattr(f, 'sb3_clippedppo_zoo_finder', False) for f in sys.meta_path), 'torch' in sys.modules)"
    )
    assert check(run(["-c", code], tmp_path)).stdout.split() == ["True", "False"]
    assert check(run(["-c", code], tmp_path, env=HOOK_OFF)).stdout.split() == ["False", "False"]


def test_registration_failure_is_a_warning_not_a_crash(tmp_path):
    code = (
        "import warnings; warnings.simplefilter('always')\n"
        "import sb3_clippedppo.zoo as z\n"
        "def fail(module): raise RuntimeError('boom')\n"
        "z.register_module = fail\n"
        "import rl_zoo3.utils\n"
        "print('zoo imported', 'clippedppo' in rl_zoo3.utils.ALGOS)\n"
    )
    result = check(run(["-c", code], tmp_path))
    assert "zoo imported False" in result.stdout
    assert "could not register ClippedPPO in rl_zoo3.utils: RuntimeError('boom')" in result.stderr


def test_install_is_idempotent_and_respects_existing_entries(monkeypatch):
    import sys

    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    zoo_hook.install()
    zoo_hook.install()
    assert sum(getattr(f, "sb3_clippedppo_zoo_finder", False) for f in sys.meta_path) == 1

    user_algo = object()
    utils = types.ModuleType("rl_zoo3.utils")
    utils.ALGOS = {"clippedppo": user_algo}
    zoo.register_module(utils)
    assert utils.ALGOS["clippedppo"] is user_algo  # a user's own entry wins

    import rl_zoo3.exp_manager

    before = rl_zoo3.exp_manager.ExperimentManager.__init__
    zoo.register()
    zoo.register()
    assert rl_zoo3.exp_manager.ExperimentManager.__init__ is before  # patched once only


@pytest.mark.parametrize("value, expected", [("0", False), ("false", False), ("OFF", False), ("1", True), ("", True)])
def test_hook_switch_values(monkeypatch, value, expected):
    monkeypatch.setenv(zoo_hook.ENV_VAR, value)
    assert zoo_hook.enabled() is expected


def test_sampler_bounds_batch_size_and_covers_target_kl():
    optuna = pytest.importorskip("optuna")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: dict[str, set] = {}
    for _ in range(40):
        trial = study.ask()
        params = zoo.sample_clippedppo_params(trial, n_actions=1, n_envs=1, additional_args={})
        assert 2 <= params["batch_size"] <= params["n_steps"]
        assert 0 < params["gamma"] < 1 and 0 < params["gae_lambda"] < 1
        assert not params.get("kl_adaptive_lr") or params["target_kl"] is not None
        for name in ("target_kl", "policy_objective", "kl_adaptive_lr"):
            seen.setdefault(name, set()).add(params.get(name))
        seen.setdefault("state_dependent_std", set()).add(params["policy_kwargs"]["state_dependent_std"])
        seen.setdefault("vf_learning_rate", set()).add("vf_learning_rate" in params)
        seen.setdefault("recompute_advantages", set()).add(params["recompute_advantages"])
        seen.setdefault("normalize_observations", set()).add(params["policy_kwargs"]["normalize_observations"])
        seen.setdefault("ent_coef_schedule", set()).add(callable(params["ent_coef"]))
        seen.setdefault("learning_rate_schedule", set()).add(callable(params["learning_rate"]))
        study.tell(trial, 0.0)
    assert None in seen["target_kl"] and len(seen["target_kl"]) > 2
    assert seen["policy_objective"] == {"clip", "kl_penalty"} and {True, False} <= seen["kl_adaptive_lr"]
    assert seen["state_dependent_std"] == {False, True} and seen["vf_learning_rate"] == {False, True}
    for name in ("recompute_advantages", "normalize_observations", "ent_coef_schedule", "learning_rate_schedule"):
        assert seen[name] == {False, True}, name
    # Discrete actions (the Zoo passes n_actions=0): never a state-dependent std, which needs a Gaussian
    for _ in range(20):
        trial = study.ask()
        params = zoo.sample_clippedppo_params(trial, n_actions=0, n_envs=1, additional_args={})
        assert "state_dependent_std" not in params["policy_kwargs"]
        study.tell(trial, 0.0)
    # The converter maps the stored raw parameters back to the same arguments (what --trial-id loads)
    converted = zoo.convert_clippedppo_params(study.trials[0].params)
    assert converted["n_steps"] == 2 ** study.trials[0].params["n_steps_pow"]


def test_hyperparams_path_points_at_the_shipped_file():
    assert zoo.hyperparams_path().read_text() == SHIPPED_YML.read_text()


def test_ent_coef_linear_schedule_in_a_hyperparameter_file(tmp_path):
    """``ent_coef: lin_0.02`` in a yml is the Zoo's own linear schedule (the Zoo converts only ``learning_rate`` and
    ``clip_range`` strings by itself); the saved model keeps it."""
    conf = tmp_path / "conf.yml"
    conf.write_text("Pendulum-v1:\n  policy: 'MlpPolicy'\n  n_timesteps: 256\n  n_steps: 128\n  ent_coef: lin_0.02\n")
    check(run(["-m", "rl_zoo3.train", "--algo", "clippedppo", "--env", "Pendulum-v1", "-conf", str(conf),
               "--eval-freq", "-1"], tmp_path))  # fmt: skip
    folder = tmp_path / "logs/clippedppo/Pendulum-v1_1"
    assert dict(yaml.load((folder / "Pendulum-v1/config.yml").read_text(), Loader=yaml.UnsafeLoader))["ent_coef"] == "lin_0.02"
    from sb3_clippedppo import ClippedPPO

    model = ClippedPPO.load(folder / "Pendulum-v1.zip")
    assert model.ent_coef(1.0) == pytest.approx(0.02) and model.ent_coef(0.25) == pytest.approx(0.005)


def test_callable_schedules_pass_the_zoo_preprocessing(tmp_path):
    """``--trial-id N`` hands the sampler's linear learning rate (a callable) to the Zoo's preprocessing, which accepts
    only strings and numbers for ``learning_rate`` and ``clip_range``: for ClippedPPO, callables pass unchanged."""
    import argparse

    from rl_zoo3.exp_manager import ExperimentManager
    from rl_zoo3.utils import linear_schedule

    zoo_hook.install()
    manager = ExperimentManager(argparse.Namespace(), "clippedppo", "Pendulum-v1", str(tmp_path), verbose=0)
    schedule = linear_schedule(1e-3)
    hyperparams = dict(policy="MlpPolicy", n_timesteps=256, learning_rate=schedule, clip_range="lin_0.2")
    processed, *_ = manager._preprocess_hyperparams(hyperparams)
    assert processed["learning_rate"] is schedule
    assert processed["clip_range"](0.5) == pytest.approx(0.1)  # the Zoo's own conversion of a "lin_" string
