"""The measurement commands of issues 25 and 27 run and report what they claim: benchmarks.update_flops (the update's
GFLOP/s against a GEMM peak), benchmarks.export_latency (onnxruntime against predict and SB3's torch predict) and
benchmarks.time_split (where the time of a learn call goes)."""

import json

import pytest
import torch as th

from benchmarks import export_latency, update_flops

pytestmark = pytest.mark.slow


def test_flop_count_of_a_layer():
    # forward 2*B*in*out, weight gradient 2*B*in*out, input gradient 2*B*in*out except for the first layer
    assert update_flops.update_flops([(17, 256), (256, 6)], first_inputs=17, rows=64) == 4 * 64 * 17 * 256 + 6 * 64 * 256 * 6


def test_update_flops_reports_a_fraction_of_the_peak(tmp_path):
    results = update_flops.main(["--reps", "1", "--out", str(tmp_path / "flops.json")])
    assert json.loads((tmp_path / "flops.json").read_text())["median_update_gflops"] == results["median_update_gflops"]
    assert results["setting"]["fast_path"] and results["setting"]["linear_layers"][0] == (17, 256)
    assert 0 < results["fraction_of_large_gemm_peak"] < 2


def test_export_latency_writes_every_way(tmp_path):
    assert export_latency.main(["--reps", "1", "--out", str(tmp_path / "latency.json")]) == 0
    results = json.loads((tmp_path / "latency.json").read_text())
    medians = results["threads_default"]["median_us_per_action"]
    assert set(medians) == {"onnxruntime", "predict", "predict_torch"} and all(value > 0 for value in medians.values())
    assert results["machine"]["versions"]["onnxruntime"]


@pytest.fixture
def pendulum_conf(tmp_path):
    """A small hyperparameter file for time_split: Pendulum-v1, 2 environments, VecNormalize."""
    conf = tmp_path / "pendulum.yml"
    conf.write_text("Pendulum-v1:\n  normalize: true\n  n_envs: 2\n  policy: 'MlpPolicy'\n  n_timesteps: 1000\n"
                    "  n_steps: 64\n  batch_size: 64\n  n_epochs: 2\n")  # fmt: skip
    return conf


def test_time_split_parts_add_up(pendulum_conf):
    from benchmarks import time_split

    seconds = time_split.measure("clippedppo", "Pendulum-v1", pendulum_conf, interval=512, eval_episodes=1, seed=0)
    # ``other`` is what is left of the total: negative if a part were counted twice (the evaluation runs inside the rollout)
    assert seconds["other"] >= 0 and min(seconds["rollout"], seconds["update"], seconds["evaluation"]) > 0
    assert 0 < seconds["rollout_env_steps"] < seconds["rollout"]
    assert 0 < seconds["evaluation_env_steps"] < seconds["evaluation"]


def test_time_split_overlap_bound_runs_both_ways(pendulum_conf):
    from benchmarks import time_split

    in_turn = time_split.measure_overlap("Pendulum-v1", pendulum_conf, interval=512, eval_episodes=1, seed=0, overlapped=False)
    threads = th.get_num_threads()
    beside = time_split.measure_overlap("Pendulum-v1", pendulum_conf, interval=512, eval_episodes=1, seed=0, overlapped=True)
    assert th.get_num_threads() == threads  # the process's torch threads restored (it ran on one)
    assert in_turn["waiting"] == 0 and in_turn["total"] > 0
    # waiting is part of the total, measured around the forked process's answers
    assert 0 < beside["waiting"] < beside["total"]


def test_measurements_keep_an_existing_results_file(tmp_path, capsys):
    from benchmarks import time_split

    out = tmp_path / "results.json"
    out.write_text("{}\n")
    for main in (update_flops.main, export_latency.main, time_split.main):
        with pytest.raises(SystemExit):  # a usage error, before anything is measured
            main(["--reps", "1", "--out", str(out)])
        assert "pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "{}\n"
