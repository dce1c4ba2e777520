"""The measurement commands of issues 25 and 27 run and report what they claim: benchmarks.update_flops (the update's
GFLOP/s against a GEMM peak), benchmarks.export_latency (onnxruntime against predict and SB3's torch predict) and
benchmarks.time_split (where the time of a learn call goes)."""

import json

import pytest

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


def test_time_split_parts_add_up(tmp_path):
    from benchmarks import time_split

    conf = tmp_path / "pendulum.yml"
    conf.write_text("Pendulum-v1:\n  normalize: true\n  n_envs: 2\n  policy: 'MlpPolicy'\n  n_timesteps: 1000\n"
                    "  n_steps: 64\n  batch_size: 64\n  n_epochs: 2\n")  # fmt: skip
    seconds = time_split.measure("clippedppo", "Pendulum-v1", conf, interval=512, eval_episodes=1, seed=0)
    # ``other`` is what is left of the total: negative if a part were counted twice (the evaluation runs inside the rollout)
    assert seconds["other"] >= 0 and min(seconds["rollout"], seconds["update"], seconds["evaluation"]) > 0
    assert 0 < seconds["rollout_env_steps"] < seconds["rollout"]
    assert 0 < seconds["evaluation_env_steps"] < seconds["evaluation"]
