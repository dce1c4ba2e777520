"""The benchmark sweep on a local Ray (and its options sweep), the report builder, the sweep's scaling and the throughput
benchmark (against SB3's PPO, and two versions), on tiny settings."""

import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks import dataset, report, run, throughput
from benchmarks.builder import SHIPPED_YML
from tests.sweep_utils import ROOT, SWEEP_ARGS, check_report, check_zoo_layout, records_of, sweep_command

pytestmark = pytest.mark.slow  # needs the bench extra (Ray, the RL Zoo, rliable, DM Control)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The tiny sweep on a Ray that the runner starts on this machine (no address)."""
    out = tmp_path_factory.mktemp("sweep")
    process = sweep_command([*SWEEP_ARGS, "--jobs", "2", "--out", str(out)])
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-5000:]
    return out, records_of(out), output


def test_local_sweep_runs_every_combination_in_zoo_layout(sweep):
    out, records, output = sweep
    check_zoo_layout(out, records)
    assert {r["node"]["hostname"] for r in records.values()} == {socket.gethostname()}
    assert "4/4" in output and "sweep (2 at a time)" in output  # the progress bar


def test_rerun_skips_finished_runs(sweep):
    out, records, _ = sweep
    before = {p: p.stat().st_mtime for p in out.rglob("*") if p.is_file()}
    process = sweep_command([*SWEEP_ARGS, "--jobs", "2", "--out", str(out)])
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    assert output.count("finished already: skipped") == 4 and "sweep (" not in output  # Ray was not even started
    assert {p: p.stat().st_mtime for p in out.rglob("*") if p.is_file()} == before
    assert records_of(out) == records


def test_sweep_without_ray(tmp_path):
    # A `ray` that cannot be imported, first on the path of the driver and of the runs it starts
    (tmp_path / "no_ray").mkdir()
    (tmp_path / "no_ray" / "ray.py").write_text("raise ImportError('ray is not installed here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "no_ray"), str(ROOT)])}
    out = tmp_path / "sweep"
    process = sweep_command([*SWEEP_ARGS, "--no-ray", "--jobs", "2", "--out", str(out)], env=env)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-5000:]
    assert "sweep (2 at a time)" in output and "4/4" in output
    records = records_of(out)
    check_zoo_layout(out, records, on_ray=False)
    assert {r["node"]["hostname"] for r in records.values()} == {socket.gethostname()}


def test_failing_runs_are_retried_then_recorded_with_their_log(tmp_path):
    # PPO has no vf_learning_rate: its run fails every time. ClippedPPO's first attempt is killed: Ray runs it again.
    out = tmp_path / "sweep"
    args = ["--algos", "clippedppo", "ppo", "--envs", "CartPole-v1", "--seeds", "91", "--n-timesteps", "1024",
            "--eval-freq", "-1", "--hyperparams", "n_envs:2", "batch_size:64", "vf_learning_rate:1e-3", "--retries", "1",
            "--jobs", "2", "--conf", str(SHIPPED_YML), "--out", str(out)]  # fmt: skip
    process = sweep_command(args)
    killed = None
    deadline = time.time() + 300
    while killed is None and process.poll() is None and time.time() < deadline:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                text = cmdline.read_bytes()
            except OSError:
                continue
            if b"rl_zoo3.train\0--algo\0clippedppo" in text and b"--seed\x0091\0" in text:
                killed = int(cmdline.parent.name)
                os.kill(killed, signal.SIGKILL)
                break
        time.sleep(0.05)
    output, _ = process.communicate(timeout=600)
    assert killed is not None, output[-3000:]
    assert process.returncode == 1 and "1 run(s) failed" in output, output[-3000:]
    records = records_of(out)
    assert records["clippedppo__CartPole-v1__seed91"]["status"] == "finished"
    failed = records["ppo__CartPole-v1__seed91"]
    assert failed["status"] == "failed" and failed["run_dir"] is None and "exited with 1" in failed["error"]
    log = gzip.decompress((out / failed["log"]).read_bytes()).decode()
    assert "unexpected keyword argument 'vf_learning_rate'" in log
    assert not (out / "ppo").exists()  # a failed run leaves no run folder for the plots to pick up
    # Running the sweep again tries the failed run once more; the earlier attempt's record and log are kept aside
    again = sweep_command([*args, "--retries", "0", "--jobs", "1"])
    output, _ = again.communicate(timeout=600)
    assert again.returncode == 1 and "clippedppo__CartPole-v1__seed91] finished already" in output
    [kept] = (out / "_interrupted").glob("ppo__CartPole-v1__seed91_*")
    assert json.loads((kept / "ppo__CartPole-v1__seed91.json").read_text()) == failed
    assert (kept / "ppo__CartPole-v1__seed91.log.gz").exists()


def test_bad_arguments_are_rejected(tmp_path, capsys):
    for bad, message in ((["--jobs", "0"], "--jobs must be >= 1"), (["--retries", "-1"], "--retries must be >= 0"),
                         (["--conf", str(tmp_path / "none.yml")], "--conf"),
                         (["--no-ray", "--address", "auto"], "--no-ray runs on this machine")):  # fmt: skip
        with pytest.raises(SystemExit):
            run.main(["--out", str(tmp_path), *bad])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run.main(["--options", "--out", str(tmp_path), "--envs", "CartPole-v1"])
    assert "--envs CartPole-v1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run.main(["--options", "nope", "--out", str(tmp_path)])
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_dry_run_lists_commands(sweep, capsys):
    out, _, _ = sweep
    assert len(run.main([*SWEEP_ARGS, "--out", str(out), "--dry-run", "--seeds", "0", "7"])) == 2
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.endswith("finished already: skipped") for line in lines) == 2
    assert sum("would run: python -m rl_zoo3.train" in line and "--seed 7" in line for line in lines) == 2
    assert all("--device cpu" in line for line in lines if "would run" in line)
    run.main([*SWEEP_ARGS, "--out", str(out), "--dry-run", "--seeds", "7", "--device", "cuda"])
    assert sum("--device cuda" in line for line in capsys.readouterr().out.splitlines()) == 2


def test_options_sweep_is_one_sweep_with_the_overrides(tmp_path, capsys):
    run.main(["--out", str(tmp_path), "--dry-run", "--seeds", "0", "--options", "kl_penalty", "vf_lr"])
    lines = [line for line in capsys.readouterr().out.splitlines() if "would run" in line]
    assert len(lines) == 4  # 2 options x 2 environments x 1 seed, ClippedPPO only
    assert all("--algo clippedppo" in line for line in lines)
    assert sum(f"-f {tmp_path / 'kl_penalty'}" in line and "policy_objective:'kl_penalty'" in line for line in lines) == 2
    run.main(["--out", str(tmp_path), "--dry-run", "--seeds", "0", "--envs", "HalfCheetah-v4", "--options"])
    lines = [line for line in capsys.readouterr().out.splitlines() if "would run" in line]
    assert len(lines) == len(run.OPTIONS)  # no option named: every option


def test_report_from_tiny_sweep(sweep, tmp_path):
    out, records, _ = sweep
    text = check_report(out, records, tmp_path)
    with pytest.raises(SystemExit):  # an existing report is kept unless --overwrite
        report.main(["--runs", str(out), "--out", str(tmp_path)])
    assert (tmp_path / "report.md").read_text() == text


def test_report_option_rows_are_compared_with_plain_clippedppo(sweep, tmp_path):
    out, _, _ = sweep
    # The same runs labelled as an option: the option section compares them with the unlabelled ClippedPPO rows
    numbers = report.main(["--runs", str(out), "--runs", f"{out}=same", "--out", str(tmp_path), "--bootstrap-reps", "2000"])
    options = numbers["envs"]["CartPole-v1 options"]
    assert set(options["final_returns"]) == {"clippedppo", "clippedppo[same]"}
    assert options["final_returns"]["clippedppo"] == options["final_returns"]["clippedppo[same]"]
    assert options["probability_of_improvement"]["clippedppo[same],clippedppo"] == pytest.approx(0.5)
    text = (tmp_path / "report.md").read_text()
    assert "## CartPole-v1: ClippedPPO's options against plain ClippedPPO" in text and "ClippedPPO + same" in text
    for figure in ("curves", "wall_clock", "rliable", "improvement"):
        assert (tmp_path / f"{figure}_options_CartPole-v1.png").stat().st_size > 0, figure
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


def test_steps_to_reach():
    fake = {"eval_steps": np.array([10, 20, 30]), "returns": np.array([1.0, 5.0, 3.0])}
    assert report.steps_to_reach(fake, 4.0) == 20 and report.steps_to_reach(fake, 9.0) is None
    assert report.fmt_steps([10_000, None, 30_000]) == "30k (2/3 seeds)"
    assert report.fmt_steps([10_000, None, None]) == "not reached (1/3 seeds)"


def test_makespan_of_the_committed_runs():
    # Greedy list scheduling: 3 on one worker; 2 then 2 on the other; the last 1 on the first, free at 3
    assert dataset.makespan([3.0, 2.0, 2.0, 1.0], 2) == 4.0 and dataset.makespan([3.0, 2.0, 2.0, 1.0], 1) == 8.0
    # The committed sweep's and options' runs (66), from the dataset (benchmarks/results/runs.csv.gz)
    variants = [dataset.COMMITTED["main"], *dataset.COMMITTED["options"]]
    table = "\n".join(dataset.scaling(variants, [1, 4, 16, 64, 128])["lines"])
    durations = [r["s"] for r in dataset.runs_of_variants(variants)]
    assert len(durations) == 66
    rows = {
        int(line.split("|")[1]): line.split("|")[2:] for line in table.splitlines() if line.startswith("| ") and "h |" in line
    }
    assert float(rows[1][0].split()[0]) == pytest.approx(sum(durations) / 3600, abs=0.005)
    assert float(rows[128][0].split()[0]) == pytest.approx(max(durations) / 3600, abs=0.005)  # more workers than runs
    assert [float(rows[w][0].split()[0]) for w in (1, 4, 16, 64, 128)] == sorted(
        (float(r[0].split()[0]) for r in rows.values()), reverse=True
    )
    assert "evaluating" in table


def readme_speed_command() -> list[str]:
    """The arguments of the README's command that measures the speed table (its re-measurement while the table predates
    the builder, else the table's own command), with one repetition and 5% of the steps, into a scratch folder."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    commands = re.findall(r"`python -m benchmarks\.throughput ([^`]*)`", readme)
    args = commands[-1].split()
    args[args.index("--reps") + 1] = "1"
    return [*args[: args.index("--out")], "--timesteps-scale", "0.05"]


def test_throughput_smoke(tmp_path):
    """The README's speed command, on tiny learn calls (correctness only: both thread settings, an MLP and the CNN setting,
    the Zoo command)."""
    # Two of the four settings (an MLP one and the CNN one) keep the test short; the other two differ only in the entry
    settings = ["sb3-defaults", "cnn"]
    summary = throughput.main([*readme_speed_command(), "--settings", *settings, "--out", str(tmp_path)])
    assert set(summary["default"]) == set(summary["1"]) == set(settings) < set(throughput.DEFAULT_SETTINGS)
    # torch's default in a fresh process (this test session runs torch on one thread)
    fresh = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], capture_output=True,
                           text=True, check=True)  # fmt: skip
    for threads, torch_threads in (("default", int(fresh.stdout)), ("1", 1)):
        entry = summary[threads]["sb3-defaults"]
        for algo in ("clippedppo", "ppo"):
            assert entry[algo]["torch_threads"] == torch_threads  # torch's count as the child set it, before learn
            assert entry[algo]["steps_per_s"] > 0 and entry[algo]["peak_rss_mib"] > 50
            assert entry[algo]["rollout_s"] + entry[algo]["update_s"] == pytest.approx(entry[algo]["learn_s"])
        assert entry["ratio_steps_per_s"]["median"] == pytest.approx(
            entry["clippedppo"]["steps_per_s"] / entry["ppo"]["steps_per_s"]
        )
    # One thread: the CPU time of learn (all threads) stays near its wall time (NumPy's BLAS is held to one thread)
    for algo in ("clippedppo", "ppo"):
        assert 0 < summary["1"]["sb3-defaults"][algo]["cpu_s"] < 1.5 * summary["1"]["sb3-defaults"][algo]["learn_s"]
    zoo = summary["zoo-command"]
    for algo in ("clippedppo", "ppo"):
        assert zoo[algo]["fps"] > 0 and zoo[algo]["command"].startswith(f"python -m rl_zoo3.train --algo {algo} ")
    data = json.loads((tmp_path / "throughput.json").read_text())
    assert len(data["runs"]) == 4 * len(settings) and len(data["zoo_command_runs"]) == 2
    report = (tmp_path / "throughput.txt").read_text()
    assert report.index("## The RL Zoo command") < report.index("## threads default") < report.index("## threads 1 ")
    with pytest.raises(SystemExit):  # never overwrites
        throughput.main(["--reps", "1", "--settings", "sb3-defaults", "--out", str(tmp_path)])


def test_throughput_compares_two_versions(tmp_path):
    """``--versions BEFORE``: ClippedPPO of this checkout and of BEFORE alternate, each process importing its own package
    (BEFORE here: a copy of this one)."""
    shutil.copytree(ROOT / "sb3_clippedppo", tmp_path / "before" / "sb3_clippedppo")
    summary = throughput.main(["--versions", str(tmp_path / "before"), "--reps", "1", "--timesteps-scale", "0.1",
                               "--settings", "sb3-defaults", "--threads", "1", "--out", str(tmp_path / "out")])  # fmt: skip
    entry = summary["1"]["sb3-defaults"]
    assert set(entry) >= {"after", "before", "ratio_steps_per_s"}
    ratio = entry["after"]["steps_per_s"] / entry["before"]["steps_per_s"]
    assert entry["ratio_steps_per_s"]["median"] == pytest.approx(ratio)
    runs = json.loads((tmp_path / "out" / "throughput.json").read_text())["runs"]
    assert [r["version"] for r in runs] == ["after", "before"] and {r["algo"] for r in runs} == {"clippedppo"}
    assert [r["package"] for r in runs] == [str(ROOT / "sb3_clippedppo"), str(tmp_path / "before" / "sb3_clippedppo")]
    assert "ClippedPPO after / before steps/s" in (tmp_path / "out" / "throughput.txt").read_text()
    with pytest.raises(SystemExit):
        throughput.main(["--versions", str(tmp_path / "none"), "--out", str(tmp_path / "other")])
