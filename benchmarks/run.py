"""Benchmark sweep on Ray: every algorithm x environment x seed is one RL Zoo training run, on this machine or a cluster.

Each run is ``python -m rl_zoo3.train`` with the same hyperparameter file for ClippedPPO and SB3's PPO (by default
``benchmarks/hyperparams.yml``: HalfCheetah-v4 with the RL Zoo's PPO values, walker-walk with the walker seed's
settings), so both get the same wrappers, normalization, evaluation and logging. A run is a Ray task that reserves
one CPU and trains into a scratch folder of its own on whichever node Ray picks; it sends the run's outputs back (the
Zoo's run folder without model zips unless ``--keep-models``, and the log), so no shared filesystem is needed. The
driver writes them where the Zoo would, ``OUT/<algo>/<env>_<n>/``, with a record per run in
``OUT/_runs/<algo>__<env>__seed<seed>.json`` (command, status, wall-clock time, steps per second, the node and the
machine it ran on) and its log in ``OUT/_logs/``.

Without ``--address``, Ray starts on this machine with ``--jobs`` CPUs; ``--address auto`` or ``--address HOST:PORT``
uses a running cluster (``--jobs`` then caps the runs in flight); ``--no-ray`` runs ``--jobs`` runs at a time on this
machine without Ray (for a machine where it is not installed; same outputs). Re-running skips finished runs. A failing run, or
one whose worker dies, is retried by Ray (``--retries``), then recorded as failed with its log; a later sweep tries it
again, after moving the earlier attempt's record and log to ``OUT/_interrupted/``.

Example (the committed sweep; about 17 minutes per 1M-step run per core)::

    python -m benchmarks.run --algos clippedppo ppo --envs HalfCheetah-v4 --seeds 0 1 2 3 4 --jobs 2 --out runs/sweep
    python -m benchmarks.dataset add runs/sweep --variant default   # into benchmarks/results/'s dataset
"""

import argparse
import fcntl
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import ROOT, machine_info

DEFAULT_ENVS = ("HalfCheetah-v4", "dm_control/walker-walk-v0")
# The settings both ClippedPPO and SB3's PPO accept (see the file's header).
SHARED_HYPERPARAMS = ROOT / "benchmarks" / "hyperparams.yml"
# Algorithms whose hyperparameters come from the shared file; others (e.g. trpo) use the Zoo's own file.
SHARED_CONFIG_ALGOS = ("clippedppo", "ppo")
# This package goes to the workers through Ray (not the committed results).
RUNTIME_ENV = {"py_modules": [str(ROOT / "benchmarks")], "excludes": ["results/", "__pycache__/"]}


def env_folder(env_id: str) -> str:
    """The Zoo's folder name for an environment id (``dm_control/walker-walk-v0`` -> ``dm_control-walker-walk-v0``)."""
    return env_id.replace("/", "-")


@dataclass(frozen=True)
class Job:
    """One training run: algorithm, environment, seed, the sweep folder it belongs to and its Zoo overrides."""

    algo: str
    env: str
    seed: int
    out: Path
    hyperparams: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.algo}__{env_folder(self.env)}__seed{self.seed}"

    @property
    def record_path(self) -> Path:
        return self.out / "_runs" / f"{self.name}.json"

    def record(self) -> dict[str, Any] | None:
        return json.loads(self.record_path.read_text()) if self.record_path.exists() else None

    def is_finished(self) -> bool:
        record = self.record()
        return bool(record and record.get("status") == "finished" and (self.out / record["run_dir"]).is_dir())

    def zoo_args(self, args: argparse.Namespace) -> list[str]:
        """
        The Zoo's arguments of this run, without ``-f`` and ``-conf`` (they depend on where it runs).

        :param args: the sweep's options (evaluation, steps, logging).
        """
        zoo_args = ["--algo", self.algo, "--env", self.env, "--seed", str(self.seed), "--eval-freq", str(args.eval_freq),
                    "--eval-episodes", str(args.eval_episodes), "--num-threads", "1", "--log-interval",
                    str(args.log_interval), "--device", args.device]  # fmt: skip
        if self.env.startswith("dm_control/"):
            zoo_args += ["--gym-packages", "shimmy"]
        if args.n_timesteps:
            zoo_args += ["-n", str(args.n_timesteps)]
        elif args.max_timesteps and entry_timesteps(args.conf, self.env) > args.max_timesteps:
            zoo_args += ["-n", str(args.max_timesteps)]
        if self.hyperparams:
            zoo_args += ["--hyperparams", *self.hyperparams]
        return zoo_args

    def command(self, args: argparse.Namespace) -> str:
        """
        The equivalent command on this machine, from the repository root (what the record keeps).

        :param args: the sweep's options.
        """
        conf = ["-conf", os.path.relpath(args.conf)] if self.algo in SHARED_CONFIG_ALGOS else []
        return " ".join(["python", "-m", "rl_zoo3.train", *self.zoo_args(args), "-f", str(self.out), *conf])


def entry_timesteps(conf: Path, env_id: str) -> int:
    """
    ``n_timesteps`` of an environment's entry in a Zoo hyperparameter file (its ``default`` entry if it has none).

    :param conf: the hyperparameter file.
    :param env_id: the environment id.
    :raises ValueError: if the file has neither an entry for ``env_id`` nor a ``default`` one.
    """
    entries = yaml.safe_load(conf.read_text()) or {}
    entry = entries.get(env_id, entries.get("default"))
    if entry is None:
        raise ValueError(f"{conf} has no entry for {env_id} and no 'default' entry")
    return int(float(entry["n_timesteps"]))


class RunFailed(Exception):
    """A training run that exited with an error; carries its gzipped log and node, so that the driver keeps them."""

    def __init__(self, message: str, log: bytes, node: dict[str, str]):
        super().__init__(message)
        self.log, self.node = log, node

    def __reduce__(self):
        return RunFailed, (self.args[0], self.log, self.node)


def node_info() -> dict[str, str | None]:
    """This process's node: hostname, IP and Ray node id (IP from the hostname and id None outside Ray)."""
    hostname = socket.gethostname()
    ray = sys.modules.get("ray")  # imported in a Ray worker; never imported here (threads of --no-ray call this too)
    if ray is not None and ray.is_initialized():
        return {"hostname": hostname, "ip": ray.util.get_node_ip_address(), "node_id": ray.get_runtime_context().get_node_id()}
    try:
        ip = socket.gethostbyname(hostname)
    except OSError:
        ip = None
    return {"hostname": hostname, "ip": ip, "node_id": None}


def train(zoo_args: list[str], conf: tuple[str, str] | None, keep_models: bool) -> dict[str, Any]:
    """
    One run (a Ray task, or a thread's work with ``--no-ray``): ``rl_zoo3.train`` in a scratch folder of this node,
    with one thread (``--num-threads 1``).

    :param zoo_args: the Zoo's arguments, without ``-f`` and ``-conf``.
    :param conf: ``(file name, text)`` of the hyperparameter file for ``-conf``, or None for the Zoo's default file.
    :param keep_models: also return the model zips.
    :return: ``files`` (path in the Zoo's run folder -> content), ``log`` (gzipped output), ``started`` (epoch
        seconds), ``wall_clock_s``, ``node`` (:func:`node_info`) and ``machine`` (:func:`machine_info`).
    :raises RunFailed: when the training exits with an error (retried up to ``--retries`` times).
    """
    node = node_info()
    with tempfile.TemporaryDirectory(prefix="zoo-run-") as scratch:
        command = [sys.executable, "-m", "rl_zoo3.train", *zoo_args, "-f", os.path.join(scratch, "logs")]
        if conf is not None:
            Path(scratch, conf[0]).write_text(conf[1])
            command += ["-conf", os.path.join(scratch, conf[0])]
        # The CPU the task reserved is its one thread: the Zoo's --num-threads 1 (zoo_args) sets torch's, and ClippedPPO's
        # learn holds NumPy's BLAS to it (sb3_clippedppo.threads); no thread environment variable is needed
        env = {**os.environ, "MPLBACKEND": "Agg"}
        started = time.time()
        result = subprocess.run(command, cwd=scratch, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wall = time.time() - started
        log = gzip.compress(result.stdout)
        run_dirs = list(Path(scratch, "logs").glob("*/*_1"))
        if result.returncode != 0 or len(run_dirs) != 1:
            raise RunFailed(f"rl_zoo3.train exited with {result.returncode} on {node['hostname']}", log, node)
        files = {str(path.relative_to(run_dirs[0])): path.read_bytes() for path in sorted(run_dirs[0].rglob("*"))
                 if path.is_file() and (keep_models or path.suffix != ".zip")}  # fmt: skip
    return {"files": files, "log": log, "started": started, "wall_clock_s": wall, "node": node, "machine": machine_info()}


def final_timesteps(run_dir: Path, env: str) -> int:
    """
    Training steps of a run: ``-n`` if given, else ``n_timesteps`` of its saved config.

    :param run_dir: the Zoo's run folder.
    :param env: its environment id.
    """
    params = run_dir / env_folder(env)
    saved_args = dict(yaml.load((params / "args.yml").read_text(), Loader=yaml.UnsafeLoader))
    if saved_args.get("n_timesteps", -1) > 0:
        return int(saved_args["n_timesteps"])
    config = dict(yaml.load((params / "config.yml").read_text(), Loader=yaml.UnsafeLoader))
    return int(float(config["n_timesteps"]))


def set_aside(job: Job) -> None:
    """
    Move an unfinished earlier attempt (record, log, run folder) to ``OUT/_interrupted/``: nothing is overwritten.

    :param job: the run about to start again.
    """
    record = job.record()
    if record is None:
        return
    target = job.out / "_interrupted" / f"{job.name}_{int(time.time())}"
    target.mkdir(parents=True)
    for name in (f"_runs/{job.name}.json", record.get("log"), record.get("run_dir")):
        if name and (job.out / name).exists():
            shutil.move(str(job.out / name), str(target / Path(name).name))
    print(f"[{job.name}] earlier attempt ({record.get('status')}) moved to {target}", flush=True)


def write_outputs(job: Job, args: argparse.Namespace, outcome: dict[str, Any] | Exception, jobs: int) -> dict:
    """
    Write a run's outputs in the Zoo's layout (finished runs) and its record and log; returns the record.

    :param job: the run.
    :param args: the sweep's options (for the command in the record).
    :param outcome: what :func:`train` returned, or the error that ended the run (after Ray's retries).
    :param jobs: runs at a time in this sweep (for the record).
    """
    from rl_zoo3.utils import get_latest_run_id

    record: dict[str, Any] = {"algo": job.algo, "env": job.env, "seed": job.seed, "command": job.command(args)}
    log_path = job.out / "_logs" / f"{job.name}.log.gz"
    if isinstance(outcome, Exception):
        log = getattr(outcome, "log", None) or gzip.compress(str(outcome).encode())
        record.update(status="failed", run_dir=None, error=str(outcome).strip().splitlines()[-1][:500],
                      node=getattr(outcome, "node", None))  # fmt: skip
    else:
        log = outcome["log"]
        algo_dir = job.out / job.algo
        run_dir = algo_dir / f"{env_folder(job.env)}_{get_latest_run_id(str(algo_dir), env_folder(job.env)) + 1}"
        partial = algo_dir / f".{run_dir.name}.partial"  # renamed when complete: a run folder is never half-written
        for name, content in outcome["files"].items():
            (partial / name).parent.mkdir(parents=True, exist_ok=True)
            (partial / name).write_bytes(content)
        partial.rename(run_dir)
        steps = final_timesteps(run_dir, job.env)
        record.update(
            status="finished", run_dir=str(run_dir.relative_to(job.out)), node=outcome["node"],
            started=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(outcome["started"])), returncode=0,
            wall_clock_s=outcome["wall_clock_s"], timesteps=steps, steps_per_s=steps / outcome["wall_clock_s"],
            machine={**outcome["machine"], "torch_threads": 1, "jobs": jobs},
        )  # fmt: skip
    log_path.write_bytes(log)
    record["log"] = str(log_path.relative_to(job.out))
    tmp = job.record_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(job.record_path)
    return record


def ray_outcomes(todo: list[Job], conf: tuple[str, str], args: argparse.Namespace, cap: int) -> Iterator[Any]:
    """
    Run the jobs as Ray tasks (on this machine, or the cluster at ``--address``).

    :return: a generator that yields the number of runs at a time first, then ``(job, outcome)`` as runs end, where
        ``outcome`` is what :func:`train` returned or the error that ended the run after Ray's retries.
    """
    import ray

    if args.address:
        ray.init(address=args.address, runtime_env=RUNTIME_ENV, logging_level="WARNING")
    else:
        ray.init(address="local", num_cpus=cap, runtime_env=RUNTIME_ENV, logging_level="WARNING", include_dashboard=False)
    try:
        yield min(cap, int(ray.cluster_resources().get("CPU", 1)))
        task = ray.remote(train).options(num_cpus=1, max_retries=args.retries, retry_exceptions=[RunFailed])
        queue, pending = list(todo), {}
        while queue or pending:
            while queue and len(pending) < cap:
                job = queue.pop(0)
                job_conf = conf if job.algo in SHARED_CONFIG_ALGOS else None
                pending[task.remote(job.zoo_args(args), job_conf, args.keep_models)] = job
            [ref], _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ref)
            try:
                yield job, ray.get(ref)
            except (RunFailed, ray.exceptions.RayError) as error:
                yield job, getattr(error, "cause", None) or error  # Ray wraps the task's exception
    finally:
        ray.shutdown()


def local_outcomes(todo: list[Job], conf: tuple[str, str], args: argparse.Namespace, cap: int) -> Iterator[Any]:
    """
    Run the jobs on this machine without Ray (``--no-ray``): ``cap`` threads, each waiting on its run's process.

    Same outputs and retries as :func:`ray_outcomes`, for a machine where Ray is not installed.

    :return: a generator that yields ``cap`` first, then ``(job, outcome)`` as runs end.
    """

    def attempt(job: Job) -> dict[str, Any] | Exception:
        job_conf = conf if job.algo in SHARED_CONFIG_ALGOS else None
        failures = 0
        while True:
            try:
                return train(job.zoo_args(args), job_conf, args.keep_models)
            except RunFailed as error:
                failures += 1
                if failures > args.retries:
                    return error

    with ThreadPoolExecutor(max_workers=cap) as pool:
        yield cap
        futures = {pool.submit(attempt, job): job for job in todo}
        for future in as_completed(futures):
            yield futures[future], future.result()


def run_jobs(jobs: list[Job], args: argparse.Namespace) -> list[dict]:
    """
    Run the unfinished jobs (Ray tasks, or threads with ``--no-ray``) and write their outputs; returns the records of all
    jobs, in order.

    :param jobs: the runs of the sweep (finished ones are skipped).
    :param args: the parsed options of :func:`parser` (address, jobs, retries, evaluation, hyperparameter file, ...).
    """
    from tqdm import tqdm

    todo = [job for job in jobs if not job.is_finished()]
    for job in jobs:
        if job not in todo:
            print(f"[{job.name}] finished already: skipped", flush=True)
        elif args.dry_run:
            print(f"[{job.name}] would run: {job.command(args)}", flush=True)
    if args.dry_run or not todo:
        return [record for record in (job.record() for job in jobs if job not in todo) if record]
    locks = []
    for out in sorted({job.out for job in todo}):
        (out / "_runs").mkdir(parents=True, exist_ok=True)
        (out / "_logs").mkdir(exist_ok=True)
        locks.append(open(out / "_runs" / ".lock", "w"))  # noqa: SIM115 (held until the sweep ends)
        try:
            fcntl.flock(locks[-1], fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"another sweep is writing to {out}; wait for it, or use another --out") from None
    for job in todo:
        set_aside(job)
    conf = (args.conf.name, args.conf.read_text())
    cap = args.jobs or (len(todo) if args.address else os.cpu_count() or 1)
    outcomes = local_outcomes(todo, conf, args, cap) if args.no_ray else ray_outcomes(todo, conf, args, cap)
    failed = 0
    try:
        parallel = next(outcomes)
        with tqdm(total=len(todo), unit="run", desc=f"sweep ({parallel} at a time)", dynamic_ncols=True) as bar:
            for job, outcome in outcomes:
                record = write_outputs(job, args, outcome, parallel)
                failed += record["status"] == "failed"
                where = (record.get("node") or {}).get("hostname", "unknown node")
                bar.write(f"[{job.name}] {record['status']} on {where}: {record.get('run_dir') or record['error']}")
                bar.set_postfix(failed=failed)
                bar.update(1)
    finally:
        outcomes.close()
        for lock in locks:
            lock.close()
    return [job.record() for job in jobs]  # type: ignore[misc]


def parser(algos: bool = True) -> argparse.ArgumentParser:
    """
    The sweep's command-line options (shared with :mod:`benchmarks.options`).

    :param algos: with the ``--algos`` option.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    if algos:
        parser.add_argument("--algos", nargs="+", default=["clippedppo", "ppo"], help="RL Zoo algorithm names")
    parser.add_argument("--envs", nargs="+", default=list(DEFAULT_ENVS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, required=True, help="the sweep's folder (the Zoo's log folder)")
    parser.add_argument("--address", help="a running Ray cluster ('auto' or HOST:PORT); default: start Ray here")
    parser.add_argument("--jobs", type=int, help="runs at a time (default: this machine's cores, or all the cluster's)")
    parser.add_argument("--no-ray", action="store_true", help="run on this machine without Ray (threads and processes)")
    parser.add_argument("--retries", type=int, default=2, help="retries of a failed run before it counts as failed")
    parser.add_argument("--keep-models", action="store_true", help="also bring back the model zips")
    parser.add_argument(
        "--conf", type=Path, default=SHARED_HYPERPARAMS,
        help="hyperparameter file shared by clippedppo and ppo ('zoo': the installed RL Zoo's ppo.yml)",
    )
    parser.add_argument("--n-timesteps", type=int, default=0, help="override the files' n_timesteps (0: keep)")
    parser.add_argument(
        "--max-timesteps", type=int, default=0, help="cap each entry's n_timesteps at this many steps (0: no cap)"
    )
    parser.add_argument("--eval-freq", type=int, default=20_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--log-interval", type=int, default=20, help="iterations between logger dumps")
    parser.add_argument("--hyperparams", nargs="+", default=[], help="extra Zoo overrides, key:value")
    parser.add_argument(
        "--device", choices=("cpu", "cuda", "auto"), default="cpu", help="torch device of every run (the Zoo's --device)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands and what would be skipped")
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """
    Reject bad values with a message that names the option (``parser.error``: exit status 2).

    :param parser: the parser of :func:`parser`.
    :param args: what it parsed.
    """
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs must be >= 1, not {args.jobs}")
    if args.no_ray and args.address:
        parser.error("--no-ray runs on this machine: it takes no --address")
    if args.retries < 0:
        parser.error(f"--retries must be >= 0, not {args.retries}")
    if not args.conf.is_file():
        parser.error(f"--conf {args.conf}: no such file")


def exit_if_failed(records: list[dict]) -> list[dict]:
    """
    The records, after exiting with status 1 (and saying where the logs are) when a run failed.

    :param records: the sweep's records.
    """
    failed = [r for r in records if r["status"] != "finished"]
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(r['log'] for r in failed)} (in their sweep folders)", file=sys.stderr)
        raise SystemExit(1)
    return records


def main(argv: list[str] | None = None) -> list[dict]:
    sweep_parser = parser()
    args = sweep_parser.parse_args(argv)
    if str(args.conf) == "zoo":
        from sb3_clippedppo.zoo import zoo_ppo_hyperparams_path

        args.conf = zoo_ppo_hyperparams_path()
    check_args(sweep_parser, args)
    # Interleave algorithms so that a partial sweep still compares them on the same seeds.
    jobs = [Job(algo, env, seed, args.out, tuple(args.hyperparams)) for env in args.envs for seed in args.seeds
            for algo in args.algos]  # fmt: skip
    return exit_if_failed(run_jobs(jobs, args))


if __name__ == "__main__":
    main()
