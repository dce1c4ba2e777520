"""Scaling out: the benchmark sweep on a real two-node Ray cluster, and RL Zoo search workers sharing one Optuna study."""

import json
import os
import re
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tests.sweep_utils import SWEEP_ARGS, check_report, check_zoo_layout, records_of, sweep_command

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_cluster(tmp_path_factory):
    """
    Two Ray nodes of one CPU each on this machine (a head, and a worker that joins it), with token authentication
    (the token in a file of the test's own); stopped at the end, also when a test fails.
    """
    token = tmp_path_factory.mktemp("ray") / "token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0"}
    address = f"127.0.0.1:{free_port()}"
    start = [[RAY, "start", "--head", "--num-cpus", "1", "--port", address.split(":")[1], "--include-dashboard=false"],
             [RAY, "start", "--address", address, "--num-cpus", "1"]]  # fmt: skip
    try:
        for command in start:
            result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
            assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        yield address, env
    finally:
        subprocess.run([RAY, "stop"], env=env, capture_output=True, timeout=180)


def test_sweep_on_a_two_node_cluster(ray_cluster, tmp_path):
    address, env = ray_cluster
    out = tmp_path / "sweep"
    process = sweep_command([*SWEEP_ARGS, "--address", address, "--out", str(out)], env=env)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-5000:]
    records = records_of(out)
    check_zoo_layout(out, records)
    # One CPU per node and one per run: the two runs at a time went to both nodes
    assert len({r["node"]["node_id"] for r in records.values()}) == 2
    assert {r["machine"]["jobs"] for r in records.values()} == {2}
    check_report(out, records, tmp_path / "report")


def test_search_workers_share_one_journal_study(tmp_path):
    """Two RL Zoo `--optimize` processes on one study (journal file storage), started together: both add trials."""
    journal = tmp_path / "study.log"
    workers = []
    for worker in range(2):
        command = [sys.executable, "-m", "rl_zoo3.train", "--algo", "clippedppo", "--env", "CartPole-v1", "-optimize",
                   "--storage", str(journal), "--study-name", "cartpole", "--n-trials", "2", "--n-jobs", "1",
                   "--sampler", "random", "--pruner", "none", "-n", "1024", "--n-evaluations", "1", "--eval-episodes",
                   "2", "--seed", str(worker), "--hyperparams", "n_envs:1", "-f", f"logs_{worker}"]  # fmt: skip
        env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
        workers.append(subprocess.Popen(command, cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT))  # fmt: skip
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output[-5000:]
    # Each worker runs its 2 trials: 4 in the study; the journal names two writers (one per process) of new trials
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name="cartpole", storage=storage).trials
    assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    creators = {entry["worker_id"].rsplit("-", 1)[0] for entry in map(json.loads, journal.read_text().splitlines())
                if "datetime_start" in entry}  # fmt: skip
    assert len(creators) == 2
    assert all(re.search(r"Number of finished trials:\s+[234]", output) for output in outputs)
