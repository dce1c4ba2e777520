"""Benchmark sweep: train every algorithm x environment x seed through the RL Zoo, in parallel, resumably.

Every run is ``python -m rl_zoo3.train`` with the same hyperparameter file for ClippedPPO and SB3's PPO (by default
``benchmarks/hyperparams.yml``: HalfCheetah-v4 with the RL Zoo's PPO values, walker-walk with the walker seed's
settings), so both get the same wrappers, normalization, evaluation and logging. Runs land where the Zoo puts them,
``OUT/<algo>/<env>_<n>/`` (``evaluations.npz``, ``0.monitor.csv``, ``<env>/config.yml``, ...), and the runner keeps
a record per run in ``OUT/_runs/<algo>__<env>__seed<seed>.json`` (command, run folder, status, wall-clock time,
steps per second, machine).

Re-running the same command skips finished runs, so an interrupted sweep resumes. Nothing finished is ever
overwritten: the Zoo numbers each new run folder, and the folder of an interrupted run is moved to
``OUT/_interrupted/`` before the run starts again. A run still training in another sweep process on the same machine
(its record's process is alive) is skipped, not restarted.

Example (the committed sweep; about 17 minutes per 1M-step run per core)::

    python -m benchmarks.run --algos clippedppo ppo --envs HalfCheetah-v4 --seeds 0 1 2 3 4 --jobs 2 \
        --out benchmarks/results/sweep
"""

import argparse
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmarks.common import ROOT, machine_info

DEFAULT_ENVS = ("HalfCheetah-v4", "dm_control/walker-walk-v0")
# The settings both ClippedPPO and SB3's PPO accept (see the file's header).
SHARED_HYPERPARAMS = ROOT / "benchmarks" / "hyperparams.yml"
# Algorithms whose hyperparameters come from the shared file; others (e.g. trpo) use the Zoo's own file.
SHARED_CONFIG_ALGOS = ("clippedppo", "ppo")


def env_folder(env_id: str) -> str:
    """The Zoo's folder name for an environment id (``dm_control/walker-walk-v0`` -> ``dm_control-walker-walk-v0``)."""
    return env_id.replace("/", "-")


@dataclass(frozen=True)
class Job:
    algo: str
    env: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.algo}__{env_folder(self.env)}__seed{self.seed}"


class Sweep:
    """Runs jobs with ``rl_zoo3.train`` and keeps their records in ``out/_runs``."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out: Path = args.out
        self.records = self.out / "_runs"
        self.logs = self.out / "_logs"
        self.start_locks: dict[tuple[str, str], threading.Lock] = {}
        self.lock = threading.Lock()

    def record_path(self, job: Job) -> Path:
        return self.records / f"{job.name}.json"

    def read_record(self, job: Job) -> dict | None:
        path = self.record_path(job)
        return json.loads(path.read_text()) if path.exists() else None

    def write_record(self, job: Job, record: dict) -> None:
        path = self.record_path(job)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(path)

    def running_elsewhere(self, job: Job) -> dict | None:
        """The job's record when it says "running" and names a live training process on this machine, else None."""
        record = self.read_record(job)
        if not record or record.get("status") != "running" or record.get("host") != socket.gethostname():
            return None
        pid = record.get("pid")
        if not isinstance(pid, int):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return record
        cmdline = Path(f"/proc/{pid}/cmdline")
        # Where /proc exists, make sure the pid was not reused by an unrelated process
        return record if not cmdline.exists() or b"rl_zoo3.train" in cmdline.read_bytes() else None

    def is_finished(self, job: Job) -> bool:
        record = self.read_record(job)
        return bool(record and record.get("status") == "finished" and (self.out / record["run_dir"]).is_dir())

    def run_dirs(self, job: Job) -> list[Path]:
        """The Zoo folders of this algorithm and environment that belong to this seed."""
        found = []
        for run_dir in sorted((self.out / job.algo).glob(f"{env_folder(job.env)}_*")):
            args_file = run_dir / env_folder(job.env) / "args.yml"
            if args_file.exists():
                saved = dict(yaml.load(args_file.read_text(), Loader=yaml.UnsafeLoader))
                if saved.get("seed") == job.seed and saved.get("env") == job.env:
                    found.append(run_dir)
        return found

    def command(self, job: Job) -> list[str]:
        args = self.args
        command = [
            sys.executable, "-m", "rl_zoo3.train",
            "--algo", job.algo, "--env", job.env, "--seed", str(job.seed),
            "-f", str(self.out), "--eval-freq", str(args.eval_freq), "--eval-episodes", str(args.eval_episodes),
            "--num-threads", "1", "--log-interval", str(args.log_interval), "--device", "cpu",
        ]  # fmt: skip
        if job.algo in SHARED_CONFIG_ALGOS:
            command += ["-conf", os.path.relpath(args.conf)]
        if job.env.startswith("dm_control/"):
            command += ["--gym-packages", "shimmy"]
        if args.n_timesteps:
            command += ["-n", str(args.n_timesteps)]
        if args.hyperparams:
            command += ["--hyperparams", *args.hyperparams]
        return command

    def move_interrupted(self, job: Job) -> None:
        for run_dir in self.run_dirs(job):
            target = self.out / "_interrupted" / job.algo / f"{run_dir.name}_{int(time.time())}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(run_dir), str(target))
            print(f"[{job.name}] moved the interrupted run {run_dir} to {target}", flush=True)

    def run(self, job: Job) -> dict:
        if self.is_finished(job):
            print(f"[{job.name}] finished already: skipped", flush=True)
            return self.read_record(job)  # type: ignore[return-value]
        running = self.running_elsewhere(job)
        if running is not None:
            print(f"[{job.name}] running in another process (pid {running['pid']}): skipped", flush=True)
            return running
        command = self.command(job)
        log_path = self.logs / f"{job.name}.log"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
        with self.lock:
            start_lock = self.start_locks.setdefault((job.algo, job.env), threading.Lock())
        # One start at a time per algorithm and environment: the Zoo numbers a new run folder from the existing ones.
        with start_lock:
            self.move_interrupted(job)
            before = set((self.out / job.algo).glob(f"{env_folder(job.env)}_*"))
            started = time.time()
            log = open(log_path, "w")  # noqa: SIM115 (closed below, after the process ends)
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
            run_dir = None
            while run_dir is None and process.poll() is None:
                new = [d for d in (self.out / job.algo).glob(f"{env_folder(job.env)}_*") if d not in before]
                run_dir = next((d for d in new if (d / env_folder(job.env) / "args.yml").exists()), None)
                time.sleep(0.2)
            record = {
                "algo": job.algo,
                "env": job.env,
                "seed": job.seed,
                "command": " ".join(["python", *command[1:]]),
                "run_dir": str(run_dir.relative_to(self.out)) if run_dir else None,
                "status": "running",
                "host": socket.gethostname(),
                "pid": process.pid,
                "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
            }
            self.write_record(job, record)
            print(f"[{job.name}] started: {record['run_dir']}", flush=True)
        returncode = process.wait()
        log.close()
        wall = time.time() - started
        with open(log_path, "rb") as f_in, gzip.open(log_path.with_suffix(".log.gz"), "wb") as f_out:
            shutil.copyfileobj(f_in, f_out)
        log_path.unlink()
        if run_dir is None:
            run_dir = next(iter(self.run_dirs(job)), None)
            record["run_dir"] = str(run_dir.relative_to(self.out)) if run_dir else None
        steps = self.final_timesteps(job, run_dir)
        record.update(
            status="finished" if returncode == 0 and run_dir is not None else "failed",
            returncode=returncode,
            wall_clock_s=wall,
            timesteps=steps,
            steps_per_s=steps / wall if steps else None,
            log=str(log_path.with_suffix(".log.gz").relative_to(self.out)),
            machine=self.machine,
        )
        self.write_record(job, record)
        print(f"[{job.name}] {record['status']} in {wall / 60:.1f} min ({record['steps_per_s'] or 0:.0f} steps/s)", flush=True)
        return record

    @staticmethod
    def final_timesteps(job: Job, run_dir: Path | None) -> int | None:
        """Training steps of a run: ``-n`` if given, else ``n_timesteps`` of its saved config."""
        if run_dir is None:
            return None
        params = run_dir / env_folder(job.env)
        saved_args = dict(yaml.load((params / "args.yml").read_text(), Loader=yaml.UnsafeLoader))
        if saved_args.get("n_timesteps", -1) > 0:
            return int(saved_args["n_timesteps"])
        config_file = params / "config.yml"
        if not config_file.exists():
            return None
        return int(float(dict(yaml.load(config_file.read_text(), Loader=yaml.UnsafeLoader))["n_timesteps"]))

    def run_all(self, jobs: list[Job]) -> list[dict]:
        self.out.mkdir(parents=True, exist_ok=True)
        self.records.mkdir(exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.machine = {**machine_info(), "torch_threads": 1, "jobs": self.args.jobs}
        with ThreadPoolExecutor(max_workers=self.args.jobs) as pool:
            return list(pool.map(self.run, jobs))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algos", nargs="+", default=["clippedppo", "ppo"], help="RL Zoo algorithm names")
    parser.add_argument("--envs", nargs="+", default=list(DEFAULT_ENVS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (one torch thread each)")
    parser.add_argument("--out", type=Path, required=True, help="the sweep's folder (the Zoo's log folder)")
    parser.add_argument(
        "--conf", type=Path, default=SHARED_HYPERPARAMS, help="hyperparameter file shared by clippedppo and ppo"
    )
    parser.add_argument("--n-timesteps", type=int, default=0, help="override the files' n_timesteps (0: keep)")
    parser.add_argument("--eval-freq", type=int, default=20_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--log-interval", type=int, default=20, help="iterations between logger dumps")
    parser.add_argument("--hyperparams", nargs="+", default=[], help="extra Zoo overrides, key:value")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and what would be skipped")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    # Interleave algorithms so that a partial sweep still compares them on the same seeds.
    jobs = [Job(algo, env, seed) for env in args.envs for seed in args.seeds for algo in args.algos]
    sweep = Sweep(args)
    if args.dry_run:
        for job in jobs:
            status = "run"
            if sweep.is_finished(job):
                status = "skip (finished)"
            elif sweep.running_elsewhere(job) is not None:
                status = "skip (running)"
            print(f"{status:16s} {' '.join(sweep.command(job))}")
        return []
    records = sweep.run_all(jobs)
    failed = [r for r in records if r["status"] not in ("finished", "running")]
    if failed:
        print(f"{len(failed)} run(s) failed; see their logs in {args.out / '_logs'}", file=sys.stderr)
        raise SystemExit(1)
    return records


if __name__ == "__main__":
    main()
