"""The measurements of ``python -m benchmarks.profile`` run and report what they claim: ``split`` (where the time of a learn
call goes), ``flops`` (the update's GFLOP/s against a GEMM peak), ``latency`` (onnxruntime against predict and SB3's torch
predict) and ``cprofile``; each keeps an existing results file."""

import json

import pytest

from benchmarks import builder, profile

pytestmark = pytest.mark.slow


@pytest.fixture
def pendulum_conf(tmp_path):
    """A small hyperparameter file: Pendulum-v1, 2 environments, VecNormalize with the entry's gamma."""
    conf = tmp_path / "pendulum.yml"
    conf.write_text("Pendulum-v1:\n  normalize: true\n  n_envs: 2\n  policy: 'MlpPolicy'\n  n_timesteps: 1000\n"
                    "  n_steps: 64\n  batch_size: 64\n  n_epochs: 2\n  gamma: 0.9\n")  # fmt: skip
    return conf


def test_flop_count_of_a_layer():
    # forward 2*B*in*out, weight gradient 2*B*in*out, input gradient 2*B*in*out except for the first layer
    assert profile.update_flops([(17, 256), (256, 6)], first_inputs=17, rows=64) == 4 * 64 * 17 * 256 + 6 * 64 * 256 * 6


def test_split_parts_add_up(pendulum_conf):
    entry = builder.read_entry("Pendulum-v1", pendulum_conf)
    seconds = profile.measure_split("clippedppo", entry, interval=512, eval_episodes=1, seed=0)
    # ``other`` is what is left of the total: negative if a part were counted twice (the evaluation runs inside the rollout)
    assert seconds["other"] >= 0 and min(seconds["rollout"], seconds["update"], seconds["evaluation"]) > 0
    assert 0 < seconds["rollout_env_steps"] < seconds["rollout"]
    assert 0 < seconds["evaluation_env_steps"] < seconds["evaluation"]


def test_split_command_alternates_the_algorithms(pendulum_conf, tmp_path):
    out = tmp_path / "split.json"
    results = profile.main(["split", "--env", "Pendulum-v1", "--conf", str(pendulum_conf), "--reps", "1", "--interval", "256",
                            "--eval-episodes", "1", "--out", str(out)])  # fmt: skip
    assert json.loads(out.read_text())["median_seconds"] == results["median_seconds"]
    assert set(results["seconds"]) == {"clippedppo", "ppo"}
    assert results["command"].startswith("python -m benchmarks.profile split")
    medians = results["median_seconds"]
    total = medians["ppo"]["total"] / medians["clippedppo"]["total"]
    assert results["ratio_ppo_over_clippedppo"]["total"] == pytest.approx(total)


def test_flops_reports_a_fraction_of_the_peak(tmp_path):
    results = profile.main(["flops", "--reps", "1", "--out", str(tmp_path / "flops.json")])
    assert json.loads((tmp_path / "flops.json").read_text())["median_update_gflops"] == results["median_update_gflops"]
    setting = results["setting"]
    assert setting["fast_path"] and setting["linear_layers"][0] == (17, 256) and setting["transitions"] == 16 * 32
    peak = results["gemm_peak_gflops_one_thread"]["1024x1024x1024"]
    assert results["median_update_gflops"] > 0 and peak > 0
    assert results["fraction_of_large_gemm_peak"] == pytest.approx(results["median_update_gflops"] / peak)


def test_latency_writes_every_way(tmp_path):
    profile.main(["latency", "--reps", "1", "--out", str(tmp_path / "latency.json")])
    results = json.loads((tmp_path / "latency.json").read_text())
    medians = results["threads_default"]["median_us_per_action"]
    assert set(medians) == set(profile.LATENCY_WAYS) and all(value > 0 for value in medians.values())
    assert results["onnxruntime"]


def test_cprofile_names_the_top_functions(pendulum_conf, capsys):
    results = profile.main(["cprofile", "--env", "Pendulum-v1", "--conf", str(pendulum_conf), "--rollouts", "1", "--top", "5"])
    assert results["setting"]["steps"] == 128 and "tottime" in results["profile"]
    assert "steps/s" in capsys.readouterr().out


def test_measurements_keep_an_existing_results_file(tmp_path, capsys):
    out = tmp_path / "results.json"
    out.write_text("{}\n")
    for command in ("split", "flops", "latency"):
        with pytest.raises(SystemExit):  # a usage error, before anything is measured
            profile.main([command, "--reps", "1", "--out", str(out)])
        assert "pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "{}\n"
    with pytest.raises(SystemExit):
        profile.main(["split", "--reps", "0"])
    assert "--reps must be >= 1" in capsys.readouterr().err
