"""Helpers to run the benchmark sweep in child processes and check what it wrote."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import report
from benchmarks.builder import SHIPPED_YML

ROOT = Path(__file__).resolve().parents[1]
SWEEP_ARGS = ["--algos", "clippedppo", "ppo", "--envs", "CartPole-v1", "--seeds", "0", "1", "--n-timesteps", "1024",
              "--eval-freq", "256", "--eval-episodes", "2", "--hyperparams", "n_envs:2", "batch_size:64",
              "--conf", str(SHIPPED_YML)]  # fmt: skip


def sweep_command(args: list[str], env: dict | None = None, **kwargs) -> subprocess.Popen:
    """``python -m benchmarks.run ARGS`` in a child process, from the repository root (output captured as text)."""
    return subprocess.Popen([sys.executable, "-m", "benchmarks.run", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)  # fmt: skip


def records_of(out: Path) -> dict[str, dict]:
    """The sweep's run records by name."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "_runs").glob("*.json"))}


def check_zoo_layout(out: Path, records: dict[str, dict], on_ray: bool = True) -> None:
    """Every record is a finished run whose outputs lie in the Zoo's layout, each in a folder of its own."""
    assert sorted(records) == [f"{algo}__CartPole-v1__seed{seed}" for algo in ("clippedppo", "ppo") for seed in (0, 1)]
    for record in records.values():
        assert record["status"] == "finished" and record["timesteps"] == 1024
        assert record["wall_clock_s"] > 0 and record["steps_per_s"] > 0
        run_dir = out / record["run_dir"]
        assert run_dir.parent.name == record["algo"] and run_dir.name.startswith("CartPole-v1_")
        assert (run_dir / "evaluations.npz").exists() and (run_dir / "0.monitor.csv").exists()
        assert (run_dir / "CartPole-v1" / "config.yml").exists() and (run_dir / "CartPole-v1" / "args.yml").exists()
        assert not list(run_dir.rglob("*.zip"))  # models stay on the worker unless --keep-models
        assert "-conf" in record["command"] and "--num-threads 1" in record["command"]
        assert b"Log path:" in gzip.decompress((out / record["log"]).read_bytes())
        assert bool(record["node"]["node_id"]) == on_ray and record["machine"]["versions"]["stable_baselines3"]
    assert len({r["run_dir"] for r in records.values()}) == 4


def check_report(out: Path, records: dict[str, dict], report_dir: Path) -> str:
    """``benchmarks.report`` on the tiny sweep: its figures and numbers agree with the runs; returns report.md."""
    numbers = report.main(["--runs", str(out), "--out", str(report_dir), "--threshold", "CartPole-v1=20,500",
                           "--bootstrap-reps", "2000"])  # fmt: skip
    for name in ("report.md", "report.json", "curves_CartPole-v1.png", "wall_clock_CartPole-v1.png",
                 "rliable_CartPole-v1.png", "improvement_CartPole-v1.png"):  # fmt: skip
        assert (report_dir / name).stat().st_size > 0, name
    env = numbers["envs"]["CartPole-v1"]
    for algo in ("clippedppo", "ppo"):
        runs = [records[f"{algo}__CartPole-v1__seed{seed}"] for seed in (0, 1)]
        finals = [float(np.load(out / r["run_dir"] / "evaluations.npz")["results"][-1].mean()) for r in runs]
        assert env["final_returns"][algo] == pytest.approx(finals)
        low, high = env["iqm_ci"][algo]
        assert low <= env["iqm"][algo] <= high
    assert 0.0 <= env["probability_of_improvement"]["clippedppo,ppo"] <= 1.0
    text = (report_dir / "report.md").read_text()
    assert "| ClippedPPO | 2 |" in text and "steps to 500 (median)" in text and "cores" in text
    assert "|CartPole-v1 |" in text  # the Zoo's all_plots table
    return text
