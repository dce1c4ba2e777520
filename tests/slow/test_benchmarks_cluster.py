"""Scaling out: the benchmark sweep on a real two-node Ray cluster, and RL Zoo search workers sharing one Optuna study."""

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from tests.sweep_utils import SWEEP_ARGS, check_report, check_zoo_layout, records_of, sweep_command

pytestmark = pytest.mark.slow  # needs the bench extra (Ray, Optuna)

RAY = str(Path(sys.executable).with_name("ray"))


def cluster_processes(gcs_port: int) -> list[int]:
    """
    PIDs of the Ray processes of the cluster whose GCS listens on ``gcs_port``: those whose command line names the
    port or the cluster's session (GCS server, raylets, dashboards, log monitors of both nodes), and their
    descendants (workers, agents and the runs they started).
    """
    commands: dict[int, list[str]] = {}
    parents: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    port_args = {f"--gcs_server_port={gcs_port}", f"--gcs-address=127.0.0.1:{gcs_port}"}
    sessions = {
        arg.split("=", 1)[1]
        for args in commands.values()
        if port_args & set(args)
        for arg in args
        if arg.startswith("--session-name=")
    }
    found = {pid for pid, args in commands.items() if port_args & set(args) or any(s in a for s in sessions for a in args)}
    while children := {pid for pid, parent in parents.items() if parent in found} - found:
        found |= children
    return sorted(found)


def stop_processes(pids: list[int], timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL for what is still there after ``timeout`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.time() + timeout
        while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
            time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_cluster(tmp_path_factory):
    """
    Two Ray nodes of one CPU each on this machine (a head, and a worker that joins it), with token authentication
    (the token in a file of the test's own); stopped at the end, also when a test fails. Only this cluster's
    processes are stopped: ``ray stop`` would stop every Ray on the machine, a sweep running beside the tests included.
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
        stop_processes(cluster_processes(int(address.split(":")[1])))


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
