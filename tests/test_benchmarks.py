"""The benchmark runner, report builder and throughput benchmark on tiny settings."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from benchmarks import report, run, throughput
from benchmarks.common import HYPERPARAMS_YML, zoo_hyperparams

SWEEP_ARGS = ["--algos", "clippedppo", "ppo", "--envs", "CartPole-v1", "--seeds", "0", "1", "--n-timesteps", "1024",
              "--eval-freq", "256", "--eval-episodes", "2", "--hyperparams", "n_envs:2", "batch_size:64",
              "--conf", str(HYPERPARAMS_YML)]  # fmt: skip


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    records = run.main([*SWEEP_ARGS, "--jobs", "2", "--out", str(out)])
    return out, records


def test_sweep_runs_every_combination_in_zoo_layout(sweep):
    out, records = sweep
    assert sorted((r["algo"], r["seed"]) for r in records) == [("clippedppo", 0), ("clippedppo", 1), ("ppo", 0), ("ppo", 1)]
    for record in records:
        assert record["status"] == "finished" and record["timesteps"] == 1024
        assert record["wall_clock_s"] > 0 and record["steps_per_s"] > 0
        run_dir = out / record["run_dir"]
        assert run_dir.parent.name == record["algo"] and run_dir.name.startswith("CartPole-v1_")
        assert (run_dir / "evaluations.npz").exists() and (run_dir / "0.monitor.csv").exists()
        assert (run_dir / "CartPole-v1" / "config.yml").exists()
        assert "-conf" in record["command"] and "--num-threads 1" in record["command"]
    # Each seed has its own folder: parallel starts did not collide
    assert len({r["run_dir"] for r in records}) == 4


def test_rerun_skips_finished_runs(sweep, capsys):
    out, records = sweep
    before = {p: p.stat().st_mtime for p in out.rglob("evaluations.npz")}
    again = run.main([*SWEEP_ARGS, "--jobs", "2", "--out", str(out)])
    assert [r["run_dir"] for r in again] == [r["run_dir"] for r in records]
    assert "finished already: skipped" in capsys.readouterr().out
    assert {p: p.stat().st_mtime for p in out.rglob("evaluations.npz")} == before


def test_interrupted_run_is_moved_aside_not_overwritten(tmp_path):
    out = tmp_path / "sweep"
    args = ["--algos", "clippedppo", "--envs", "CartPole-v1", "--seeds", "3", "--n-timesteps", "512", "--eval-freq", "-1",
            "--hyperparams", "n_envs:2", "batch_size:64", "--out", str(out), "--conf", str(HYPERPARAMS_YML)]  # fmt: skip
    first = run.main(args)[0]
    # Pretend the run was interrupted: its record says "running"
    record_file = out / "_runs" / "clippedppo__CartPole-v1__seed3.json"
    record = json.loads(record_file.read_text())
    record["status"] = "running"
    record_file.write_text(json.dumps(record))
    marker = out / first["run_dir"] / "marker.txt"
    marker.write_text("partial output")
    second = run.main(args)[0]
    assert second["status"] == "finished"
    moved = list((out / "_interrupted" / "clippedppo").glob("CartPole-v1_*/marker.txt"))
    assert len(moved) == 1 and moved[0].read_text() == "partial output"


def test_run_training_in_another_process_is_skipped(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["--algos", "clippedppo", "--envs", "CartPole-v1", "--seeds", "4", "--n-timesteps", "512", "--eval-freq", "-1",
            "--hyperparams", "n_envs:2", "batch_size:64", "--out", str(out), "--conf", str(HYPERPARAMS_YML)]  # fmt: skip
    first = run.main(args)[0]
    assert first["status"] == "finished" and isinstance(first["pid"], int)
    record_file = out / "_runs" / "clippedppo__CartPole-v1__seed4.json"
    # A record of a live training process (a stand-in named like one) on this machine: left alone
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "rl_zoo3.train"])
    try:
        record = {**first, "status": "running", "pid": live.pid}
        record_file.write_text(json.dumps(record))
        second = run.main(args)[0]
        assert second == record and "running in another process" in capsys.readouterr().out
        assert (out / first["run_dir"]).is_dir() and not (out / "_interrupted").exists()
    finally:
        live.kill()
        live.wait()
    # Once that process is gone, the run counts as interrupted: moved aside and trained again
    third = run.main(args)[0]
    assert third["status"] == "finished" and (out / "_interrupted" / "clippedppo").is_dir()


def test_dry_run_lists_commands(sweep, capsys):
    out, _ = sweep
    run.main([*SWEEP_ARGS, "--out", str(out), "--dry-run", "--seeds", "0", "7"])
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("skip (finished)") for line in lines) == 2
    assert sum(line.startswith("run ") for line in lines) == 2


def test_report_from_tiny_sweep(sweep, tmp_path):
    out, records = sweep
    numbers = report.main(["--runs", str(out), "--out", str(tmp_path), "--threshold", "CartPole-v1=20,500"])
    for name in ("report.md", "report.json", "curves_CartPole-v1.png", "rliable_CartPole-v1.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    env = numbers["envs"]["CartPole-v1"]
    for algo in ("clippedppo", "ppo"):
        runs = sorted((r for r in records if r["algo"] == algo), key=lambda r: r["seed"])
        finals = [float(np.load(out / r["run_dir"] / "evaluations.npz")["results"][-1].mean()) for r in runs]
        assert env["final_returns"][algo] == pytest.approx(finals)
        low, high = env["iqm_ci"][algo]
        assert low <= env["iqm"][algo] <= high
    assert 0.0 <= env["probability_of_improvement"]["clippedppo,ppo"] <= 1.0
    text = (tmp_path / "report.md").read_text()
    with pytest.raises(SystemExit):  # an existing report is kept unless --overwrite
        report.main(["--runs", str(out), "--out", str(tmp_path)])
    assert (tmp_path / "report.md").read_text() == text
    assert "| ClippedPPO | 2 |" in text and "steps to 500 (median)" in text and "cores" in text


def test_report_option_rows_are_compared_with_plain_clippedppo(sweep, tmp_path):
    out, _ = sweep
    # The same runs labelled as an option: the option section compares them with the unlabelled ClippedPPO rows
    numbers = report.main(["--runs", str(out), "--runs", f"{out}=same", "--out", str(tmp_path)])
    options = numbers["envs"]["CartPole-v1 options"]
    assert set(options["final_returns"]) == {"clippedppo", "clippedppo[same]"}
    assert options["final_returns"]["clippedppo"] == options["final_returns"]["clippedppo[same]"]
    assert options["probability_of_improvement"]["clippedppo[same],clippedppo"] == pytest.approx(0.5)
    text = (tmp_path / "report.md").read_text()
    assert "## CartPole-v1: ClippedPPO's options against plain ClippedPPO" in text and "ClippedPPO + same" in text
    assert (tmp_path / "curves_options_CartPole-v1.png").exists()
    # Identical runs: P = 0.5 exactly, and the report says that the option's runs equal the plain ones
    assert options["verdicts"]["clippedppo[same]"].startswith("no difference: every run equals")
    assert "- ClippedPPO + same: no difference" in text


def test_option_verdict_rule():
    assert report.option_verdict(0.9, 0.01).startswith("helps")
    assert report.option_verdict(0.1, 0.01).startswith("hurts")
    assert report.option_verdict(1.0, 0.10).startswith("no clear difference")
    assert report.option_verdict(0.5, 0.01).startswith("no clear difference")
    runs = [{"seed": 0, "returns": np.array([1.0, 2.0])}, {"seed": 1, "returns": np.array([3.0, 4.0])}]
    assert report.identical_on_shared_seeds(runs[:1], runs)
    assert not report.identical_on_shared_seeds([{"seed": 0, "returns": np.array([1.0, 2.5])}], runs)
    assert not report.identical_on_shared_seeds([{"seed": 2, "returns": np.array([1.0, 2.0])}], runs)
    # The exact rank test: three runs all above three others is p = 2/20 (not significant), all above five is 2/56
    assert report.rank_test_p_value(np.array([4.0, 5, 6]), np.array([1.0, 2, 3])) == pytest.approx(0.1)
    assert report.rank_test_p_value(np.array([6.0, 7, 8]), np.array([1.0, 2, 3, 4, 5])) == pytest.approx(2 / 56)


def test_steps_to_reach_and_interval():
    fake = {"eval_steps": np.array([10, 20, 30]), "returns": np.array([1.0, 5.0, 3.0])}
    assert report.steps_to_reach(fake, 4.0) == 20 and report.steps_to_reach(fake, 9.0) is None
    mean, half = report.mean_and_interval(np.array([[0.0, 1.0], [2.0, 3.0]]))
    np.testing.assert_allclose(mean, [1.0, 2.0])
    np.testing.assert_allclose(half, 12.706 * np.sqrt(2) / np.sqrt(2), rtol=1e-3)  # t(0.975, 1) * std / sqrt(n)
    assert report.fmt_steps([10_000, None, 30_000]) == "30k (2/3 seeds)"
    assert report.fmt_steps([10_000, None, None]) == "not reached (1/3 seeds)"


def test_throughput_smoke(tmp_path):
    summary = throughput.main(
        ["--reps", "1", "--timesteps-scale", "0.1", "--settings", "sb3-defaults", "--out", str(tmp_path)]
    )
    entry = summary["sb3-defaults"]
    for algo in ("clippedppo", "ppo"):
        assert entry[algo]["steps_per_s"] > 0 and entry[algo]["peak_rss_mib"] > 50
        assert entry[algo]["rollout_s"] + entry[algo]["update_s"] == pytest.approx(entry[algo]["learn_s"])
    assert entry["ratio_steps_per_s"]["median"] == pytest.approx(
        entry["clippedppo"]["steps_per_s"] / entry["ppo"]["steps_per_s"]
    )
    data = json.loads((tmp_path / "throughput.json").read_text())
    assert len(data["runs"]) == 2 and data["meta"]["machine"]["torch_threads"] == 1
    with pytest.raises(SystemExit):  # never overwrites
        throughput.main(["--reps", "1", "--settings", "sb3-defaults", "--out", str(tmp_path)])


def test_zoo_hyperparams_reads_the_shipped_block():
    kwargs, normalize = zoo_hyperparams("HalfCheetah-v4")
    assert normalize and kwargs["n_steps"] == 512 and kwargs["n_epochs"] == 20
    assert kwargs["policy_kwargs"]["net_arch"] == dict(pi=[256, 256], vf=[256, 256])
    assert "n_timesteps" not in kwargs and "normalize" not in kwargs


def test_halfcheetah_acceptance_script_refuses_to_overwrite(tmp_path):
    from benchmarks import halfcheetah_zoo_params

    (tmp_path / "exists").mkdir()
    with pytest.raises(SystemExit):
        halfcheetah_zoo_params.main(["--out", str(tmp_path / "exists"), "--timesteps", "10"])
    start = time.time()
    summary = halfcheetah_zoo_params.main(
        ["--out", str(tmp_path / "new"), "--timesteps", "1024", "--eval-freq", "512", "--eval-episodes", "1"]
    )
    assert summary["timesteps"] == 1024 and (tmp_path / "new" / "evaluations.npz").exists()
    assert time.time() - start < 120
