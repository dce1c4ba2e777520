"""Benchmark sweeps on Ray: every algorithm x environment x seed is one RL Zoo training run, on this machine or a cluster;
ClippedPPO's options as one sweep (``--options``); the hyperparameter search (``search``).

Each run is ``python -m rl_zoo3.train`` with the same hyperparameter file for ClippedPPO and SB3's PPO (by default
``benchmarks/hyperparams.yml``: HalfCheetah-v4 with the RL Zoo's PPO values, walker-walk with the walker seed's
settings; ``--conf zoo``: the installed RL Zoo's ``ppo.yml``), so both get the same wrappers, normalization, evaluation
and logging. A run is a Ray task that reserves one CPU and trains into a scratch folder of its own on whichever node
Ray picks; it sends the run's outputs back (the Zoo's run folder without model zips unless ``--keep-models``, and the
log), so no shared filesystem is needed. The driver writes them where the Zoo would, ``OUT/<algo>/<env>_<n>/``, with a
record per run in ``OUT/_runs/<algo>__<env>__seed<seed>.json`` (command, status, wall-clock time, steps per second, the
node and the machine it ran on) and its log in ``OUT/_logs/``.

Without ``--address``, Ray starts on this machine with ``--jobs`` CPUs; ``--address auto`` or ``--address HOST:PORT``
uses a running cluster (``--jobs`` then caps the runs in flight); ``--no-ray`` runs ``--jobs`` runs at a time on this
machine without Ray (for a machine where it is not installed; same outputs). Re-running skips finished runs. A failing run, or
one whose worker dies, is retried by Ray (``--retries``), then recorded as failed with its log; a later sweep tries it
again, after moving the earlier attempt's record and log to ``OUT/_interrupted/``.

``--options [NAME ...]`` trains ClippedPPO with each of its options beyond SB3's PPO (:data:`OPTIONS`; all without a
name), each into its own sweep folder ``OUT/<option>/``, as one sweep: the rows compared with plain ClippedPPO.

``--conf zoo --envs zoo-entries`` is the RL Zoo's PPO benchmark (issue 35): every entry of the Zoo's ``ppo.yml`` but
those of :data:`ZOO_LEFT_OUT`, each with ``--algo clippedppo`` and ``--algo ppo``.

``search start|rerank|dump|best`` is the hyperparameter search with the RL Zoo's own ``--optimize`` on one shared Optuna
study (``python -m benchmarks.run search --help``).

Examples (the committed sweep and options; about 17 minutes per 1M-step run per core)::

    python -m benchmarks.run --out runs/sweep --jobs 2
    python -m benchmarks.run --options --seeds 0 1 2 --out runs/options --jobs 2
    python -m benchmarks.dataset add runs/sweep --variant default   # into benchmarks/results/'s dataset
    python -m benchmarks.run --jobs 2 --conf zoo --max-timesteps 2000000 --seeds 0 1 2 --envs zoo-entries --out runs/zoo_ppo
"""

import argparse
import csv
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

from benchmarks.builder import ROOT, env_folder, machine_info

DEFAULT_ENVS = ("HalfCheetah-v4", "dm_control/walker-walk-v0")
# The settings both ClippedPPO and SB3's PPO accept (see the file's header).
SHARED_HYPERPARAMS = ROOT / "benchmarks" / "hyperparams.yml"
# Algorithms whose hyperparameters come from the shared file; others (e.g. trpo) use the Zoo's own file.
SHARED_CONFIG_ALGOS = ("clippedppo", "ppo")
# This package goes to the workers through Ray (not the committed results).
RUNTIME_ENV = {"py_modules": [str(ROOT / "benchmarks")], "excludes": ["results/", "__pycache__/"]}


# ClippedPPO's options (--options): option -> environment -> Zoo --hyperparams overrides (Python expressions, as the Zoo
# reads them); each option's rows are compared with plain ClippedPPO's on the same settings
HALFCHEETAH_POLICY = (
    "dict(log_std_init=-2, ortho_init=False, activation_fn=nn.ReLU, net_arch=dict(pi=[256, 256], vf=[256, 256])"
)
WALKER_POLICY = "dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=nn.Tanh"

# option -> environment -> Zoo --hyperparams overrides (values are Python expressions, as the Zoo reads them)
OPTIONS: dict[str, dict[str, list[str]]] = {
    "vf_lr": {
        "HalfCheetah-v4": ["vf_learning_rate:6.8789e-05"],
        "dm_control/walker-walk-v0": ["vf_learning_rate:1e-3"],
    },
    "kl_penalty": {
        "HalfCheetah-v4": ["policy_objective:'kl_penalty'", "kl_coef:1.0", "kl_penalty_target:0.01"],
        "dm_control/walker-walk-v0": ["policy_objective:'kl_penalty'", "kl_coef:1.0", "kl_penalty_target:0.01"],
    },
    "state_dependent_std": {
        "HalfCheetah-v4": [f"policy_kwargs:'{HALFCHEETAH_POLICY}, state_dependent_std=True)'"],
        "dm_control/walker-walk-v0": [f"policy_kwargs:'{WALKER_POLICY}, state_dependent_std=True)'"],
    },
    "kl_adaptive_lr": {
        "HalfCheetah-v4": ["target_kl:0.01", "kl_adaptive_lr:True"],
        "dm_control/walker-walk-v0": ["kl_adaptive_lr:True"],
    },
    "recompute_advantages": {
        "HalfCheetah-v4": ["recompute_advantages:True"],
        "dm_control/walker-walk-v0": ["recompute_advantages:True"],
    },
    "ent_coef_schedule": {
        "HalfCheetah-v4": ["ent_coef:'lin_0.001'"],
        "dm_control/walker-walk-v0": ["ent_coef:'lin_0.001'"],
    },
    "normalize_observations": {
        "HalfCheetah-v4": [
            'normalize:"dict(norm_obs=False, norm_reward=True)"',
            f"policy_kwargs:'{HALFCHEETAH_POLICY}, normalize_observations=True)'",
        ],
        "dm_control/walker-walk-v0": [
            'normalize:"dict(norm_obs=False, norm_reward=True)"',
            f"policy_kwargs:'{WALKER_POLICY}, normalize_observations=True)'",
        ],
    },
}


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


_V2 = ("the -v2 MuJoCo ids moved to gymnasium-robotics, which runs them through mujoco-py and the MuJoCo 2.1 binaries "
       "(not on PyPI); the -v4 entries are run instead")  # fmt: skip
_MINITAUR = "not registered by pybullet_envs_gymnasium (0.6.0 has no Minitaur ids)"
_IMAGES = "image policy on frames ({steps} steps): weeks of CPU time on 2 cores"

ZOO_LEFT_OUT: dict[str, str] = {
    "atari": _IMAGES.format(steps="10M"),
    "CarRacing-v3": _IMAGES.format(steps="4M"),
    "MinitaurBulletEnv-v0": _MINITAUR,
    "MinitaurBulletDuckEnv-v0": _MINITAUR,
    "HumanoidStandup-v2": _V2,
    "InvertedDoublePendulum-v2": _V2,
    "InvertedPendulum-v2": _V2,
    "Reacher-v2": _V2,
}
"""``{entry: reason}``: the entries of the Zoo's ``ppo.yml`` that its side-by-side benchmark (issue 35) does not run: it runs
every other entry whose environment installs from PyPI (classic control and MuJoCo ``-v4``: the ``test`` extra; Box2D,
MiniGrid and PyBullet: ``zoo-envs``)."""


def zoo_benchmark_entries(conf: Path) -> list[str]:
    """
    The environment ids of a Zoo hyperparameter file that the benchmark runs, in the file's order: every entry but
    ``default`` and those of :data:`ZOO_LEFT_OUT`.

    :param conf: the hyperparameter file (the installed RL Zoo's ``hyperparams/ppo.yml``).
    :raises ValueError: if an entry of :data:`ZOO_LEFT_OUT` is not in the file (the list would no longer describe it).
    """
    entries = list(yaml.safe_load(conf.read_text()) or {})
    stale = sorted(set(ZOO_LEFT_OUT) - set(entries))
    if stale:
        raise ValueError(f"{conf} has no entries {', '.join(stale)}: update benchmarks.run.ZOO_LEFT_OUT")
    return [e for e in entries if e != "default" and e not in ZOO_LEFT_OUT]


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
        seconds), ``wall_clock_s``, ``cpu_s`` (the run's own user + system CPU seconds), ``node`` (:func:`node_info`)
        and ``machine`` (:func:`machine_info`).
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
        process = subprocess.Popen(command, cwd=scratch, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = process.stdout.read()  # type: ignore[union-attr]
        # wait4: this run's own CPU time, which other processes sharing the cores do not inflate (unlike wall-clock)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = returncode = os.waitstatus_to_exitcode(status)
        wall = time.time() - started
        log = gzip.compress(output)
        run_dirs = list(Path(scratch, "logs").glob("*/*_1"))
        if returncode != 0 or len(run_dirs) != 1:
            raise RunFailed(f"rl_zoo3.train exited with {returncode} on {node['hostname']}", log, node)
        files = {str(path.relative_to(run_dirs[0])): path.read_bytes() for path in sorted(run_dirs[0].rglob("*"))
                 if path.is_file() and (keep_models or path.suffix != ".zip")}  # fmt: skip
    return {"files": files, "log": log, "started": started, "wall_clock_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "node": node, "machine": machine_info()}


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
            wall_clock_s=outcome["wall_clock_s"], cpu_s=outcome.get("cpu_s"), timesteps=steps,
            steps_per_s=steps / outcome["wall_clock_s"],
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
    The sweep's command-line options.

    :param algos: with the ``--algos`` option.
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])  # fmt: skip
    parser.add_argument("--options", nargs="*", choices=list(OPTIONS), metavar="OPTION",
                        help=f"ClippedPPO's options instead of --algos, each into OUT/<option>/ (none named: all): "
                        f"{', '.join(OPTIONS)}")  # fmt: skip
    if algos:
        parser.add_argument("--algos", nargs="+", default=["clippedppo", "ppo"], help="RL Zoo algorithm names")
    parser.add_argument("--envs", nargs="+", default=list(DEFAULT_ENVS),
                        help="environment ids ('zoo-entries': every entry of --conf but ZOO_LEFT_OUT's, the "
                        "Zoo benchmark's list)")  # fmt: skip
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
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "search":
        search_main(argv[1:])
        return []
    sweep_parser = parser()
    args = sweep_parser.parse_args(argv)
    if str(args.conf) == "zoo":
        from sb3_clippedppo.zoo import zoo_ppo_hyperparams_path

        args.conf = zoo_ppo_hyperparams_path()
    check_args(sweep_parser, args)
    if args.envs == ["zoo-entries"]:
        args.envs = zoo_benchmark_entries(args.conf)
    if args.options is not None:
        names = args.options or list(OPTIONS)
        for env in args.envs:
            if env not in OPTIONS[names[0]]:
                sweep_parser.error(f"--envs {env}: the options have settings for {', '.join(OPTIONS[names[0]])} only")
        jobs = [Job("clippedppo", env, seed, args.out / option, (*OPTIONS[option][env], *args.hyperparams))
                for env in args.envs for option in names for seed in args.seeds]  # fmt: skip
    else:
        # Interleave algorithms so that a partial sweep still compares them on the same seeds.
        jobs = [Job(algo, env, seed, args.out, tuple(args.hyperparams)) for env in args.envs for seed in args.seeds
                for algo in args.algos]  # fmt: skip
    return exit_if_failed(run_jobs(jobs, args))


# The hyperparameter search (``python -m benchmarks.run search``)

SEARCH_DOC = """Hyperparameter search for ClippedPPO with the RL Zoo's own ``--optimize``, on one shared Optuna study.

``start`` creates the study in a journal file (so that workers starting together do not race to create it), enqueues
the starting points of :func:`starting_points` for the environment (the shipped settings, alone, with each of
ClippedPPO's levers and with a few variants: Optuna runs enqueued trials first, then samples with TPE), and runs
``--workers`` Zoo worker processes on it, one per core, until the study holds ``--trials`` trials. ``dump`` writes
every trial of a study (number, state, value, parameters, duration) to a CSV file; ``rerank`` trains the best few
trials again with other seeds and ranks them by their mean, since a single seed's value overstates the winner;
``best`` prints a trial's settings as a block for ``hyperparams/clippedppo.yml``. Workers on other machines join the
same study with the command that ``start`` prints (a journal file on a shared filesystem, or a PostgreSQL URL; see
``benchmarks/README.md``).

Example (the search summarized under ``benchmarks/results/search/``: its trials table and gzipped journal)::

    python -m benchmarks.run search start --env HalfCheetah-v4 --study halfcheetah --trials 50 --workers 2 \\
        --n-timesteps 300000 --n-evaluations 3 --out runs/search/halfcheetah
    python -m benchmarks.run search dump --storage runs/search/halfcheetah/study.log --study halfcheetah
"""

# The settings shipped when the committed studies ran (the walker entry has since gained normalize_observations and
# recompute_advantages, the HalfCheetah entry a learning rate decaying linearly from 8e-5), in the sampler's own
# parameter names (``sb3_clippedppo.zoo.sample_clippedppo_params``)
SHIPPED = {
    "HalfCheetah-v4": dict(
        n_steps_pow=9, batch_size_pow=6, one_minus_gamma=0.02, one_minus_gae_lambda=0.08, learning_rate=2.0633e-05,
        ent_coef=0.000401762, clip_range=0.1, n_epochs=20, max_grad_norm=0.8, vf_coef=0.58096, target_kl=None,
        log_std_init=-2.0, ortho_init=False, net_arch="medium", activation_fn="relu", vf_lr_multiplier=1,
        policy_objective="clip", state_dependent_std=False,
    ),
    # the walker seed's settings (5000 steps per rollout and batches of 250 rounded to powers of 2), PPO-Penalty
    "dm_control/walker-walk-v0": dict(
        n_steps_pow=12, batch_size_pow=8, one_minus_gamma=0.01, one_minus_gae_lambda=0.05, learning_rate=3e-4,
        ent_coef=1e-8, clip_range=0.2, n_epochs=10, max_grad_norm=0.5, vf_coef=0.5, target_kl=0.01,
        kl_adaptive_lr=False, log_std_init=0.0, ortho_init=True, net_arch="small", activation_fn="tanh",
        vf_lr_multiplier=3, policy_objective="kl_penalty", kl_coef=1.0, kl_penalty_target=0.01, state_dependent_std=False,
    ),
}  # fmt: skip
LEVERS_OFF = dict(learning_rate_schedule="constant", ent_coef_schedule="constant", recompute_advantages=False,
                  normalize_observations=False)  # fmt: skip
LEVERS = [
    {},
    dict(normalize_observations=True),
    dict(recompute_advantages=True),
    dict(learning_rate_schedule="linear"),
    dict(normalize_observations=True, recompute_advantages=True, learning_rate_schedule="linear"),
]


# Further starting points per environment, on top of the shipped settings: larger learning rates, with a decay
VARIANTS = {
    "HalfCheetah-v4": [
        dict(learning_rate=6e-5),
        dict(learning_rate=6e-5, learning_rate_schedule="linear", recompute_advantages=True),
        dict(learning_rate=2e-4, learning_rate_schedule="linear", recompute_advantages=True),
        dict(learning_rate=2e-4, learning_rate_schedule="linear", recompute_advantages=True, clip_range=0.2, n_epochs=10),
    ],
}


def starting_points(env_id: str) -> list[dict[str, Any]]:
    """
    The trials enqueued first: the shipped settings alone, with each of ClippedPPO's levers (:data:`LEVERS`) and with the
    environment's :data:`VARIANTS`; none for environments without shipped settings here.
    """
    if env_id not in SHIPPED:
        return []
    changes = LEVERS + VARIANTS.get(env_id, [])
    return [{**SHIPPED[env_id], **LEVERS_OFF, **change} for change in changes]


def create_study(storage: str, study: str, env_id: str) -> int:
    """Create the study (maximize) unless it exists, and enqueue the starting points if it is new; returns how many."""
    import optuna

    backend = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    existing = {s.study_name for s in optuna.get_all_study_summaries(backend)}
    if study in existing:
        return 0
    created = optuna.create_study(storage=backend, study_name=study, direction="maximize")
    points = starting_points(env_id)
    for params in points:
        created.enqueue_trial(params)
    return len(points)


def worker_command(args: argparse.Namespace, storage: str, seed: int, log_folder: Path) -> list[str]:
    """One Zoo worker's command line."""
    command = [
        sys.executable, "-m", "rl_zoo3.train", "--algo", "clippedppo", "--env", args.env, "-optimize",
        "--n-jobs", "1", "--max-total-trials", str(args.trials), "--n-trials", str(args.trials),
        "--sampler", "tpe", "--pruner", "median", "-n", str(args.n_timesteps), "--n-evaluations", str(args.n_evaluations),
        "--eval-episodes", str(args.eval_episodes), "--num-threads", "1", "--seed", str(seed),
        "--storage", storage, "--study-name", args.study, "-f", str(log_folder), "--no-optim-plots",
    ]  # fmt: skip
    if args.env.startswith("dm_control/"):
        command += ["--gym-packages", "shimmy"]
    return command


def start_search(args: argparse.Namespace) -> None:
    """``search start``: create the study, enqueue the starting points, run the workers, dump the trials."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    storage = str(out / "study.log")
    enqueued = create_study(storage, args.study, args.env)
    print(f"study {args.study!r} in {storage}: {enqueued} starting points enqueued")
    processes = []
    for worker in range(args.workers):
        command = worker_command(args, storage, args.seed + worker, out / "_zoo")
        print(" ".join(command), flush=True)
        log = open(out / f"worker_{worker}.log", "w")  # noqa: SIM115 (open while the worker runs)
        processes.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log))
    codes = []
    for process, log in processes:
        codes.append(process.wait())
        log.close()
    print(f"workers done, exit codes {codes}")
    dump_trials(storage, args.study, out / "trials.csv")


def rerank(args: argparse.Namespace) -> None:
    """
    Train the ``--top`` best finished trials again with other seeds, at the trials' budget, and rank them by their mean
    final evaluation over all their seeds (the search's own and these): a single seed's value overstates the winner.
    Writes ``rerank.csv`` beside the journal.
    """
    import numpy as np
    import optuna

    out = Path(args.storage).parent
    backend = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(args.storage))
    trials = optuna.load_study(storage=backend, study_name=args.study).trials
    finished = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    top = sorted(finished, key=lambda t: -t.value)[: args.top]  # type: ignore[operator]
    jobs = []
    for trial in top:
        for seed in args.seeds:
            folder = out / "_rerank" / f"trial{trial.number}_seed{seed}"
            command = [
                sys.executable, "-m", "rl_zoo3.train", "--algo", "clippedppo", "--env", args.env, "--storage", args.storage,
                "--study-name", args.study, "--trial-id", str(trial.number), "-n", str(args.n_timesteps), "--seed", str(seed),
                "--eval-freq", str(args.n_timesteps // args.n_evaluations), "--eval-episodes", str(args.eval_episodes),
                "--num-threads", "1", "-f", str(folder),
            ]  # fmt: skip
            if args.env.startswith("dm_control/"):
                command += ["--gym-packages", "shimmy"]
            jobs.append((trial, seed, folder, command))
    results: dict[int, list[float]] = {t.number: [float(t.value)] for t in top}  # type: ignore[arg-type]
    for start in range(0, len(jobs), args.workers):
        batch = jobs[start : start + args.workers]
        processes = [(job, subprocess.Popen(job[3], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)) for job in batch]
        for (trial, seed, folder, command), process in processes:
            if process.wait() != 0:
                raise RuntimeError(f"{' '.join(command)} failed with exit code {process.returncode}")
            evaluations = next(folder.rglob("evaluations.npz"))
            results[trial.number].append(float(np.load(evaluations)["results"][-1].mean()))
            print(f"trial {trial.number} seed {seed}: {results[trial.number][-1]:.1f}", flush=True)
    with open(out / "rerank.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["trial", "mean", "search_value", *(f"seed_{seed}" for seed in args.seeds)])
        for number, values in sorted(results.items(), key=lambda item: -float(np.mean(item[1]))):
            writer.writerow([number, f"{np.mean(values):.1f}", *(f"{v:.1f}" for v in values)])
    print((out / "rerank.csv").read_text())


def dump_trials(storage: str, study: str, path: Path) -> None:
    """Every trial of the study, one row each, to ``path`` (CSV)."""
    import optuna

    backend = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    trials = optuna.load_study(storage=backend, study_name=study).trials
    names = sorted({name for trial in trials for name in trial.params})
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["number", "state", "value", "duration_s", "last_report_step", *names])
        for trial in trials:
            duration = trial.duration.total_seconds() if trial.duration else ""
            last_step = max(trial.intermediate_values) if trial.intermediate_values else ""
            writer.writerow([trial.number, trial.state.name, trial.value, duration, last_step,
                             *(trial.params.get(name, "") for name in names)])  # fmt: skip
    print(f"{len(trials)} trials written to {path}")


def best_block(storage: str, study: str, number: int | None = None) -> str:
    """The settings of trial ``number`` (default: the best), as the lines of a ``hyperparams/clippedppo.yml`` entry."""
    import optuna

    backend = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    loaded = optuna.load_study(storage=backend, study_name=study)
    trial = loaded.best_trial if number is None else loaded.trials[number]
    params = dict(trial.params)
    which = "best of study" if number is None else "study"
    lines = [f"# {which} {study!r}: trial {trial.number}, value {trial.value:.1f}"]
    lines.append(f"n_steps: {2 ** params.pop('n_steps_pow')}")
    lines.append(f"batch_size: {2 ** params.pop('batch_size_pow')}")
    lines.append(f"gamma: {1 - params.pop('one_minus_gamma'):.6g}")
    lines.append(f"gae_lambda: {1 - params.pop('one_minus_gae_lambda'):.6g}")
    learning_rate, ent_coef = params.pop("learning_rate"), params.pop("ent_coef")
    linear_lr = params.pop("learning_rate_schedule", "constant") == "linear"
    lines.append(f"learning_rate: {'lin_' if linear_lr else ''}{learning_rate:.6g}")
    multiplier = params.pop("vf_lr_multiplier", 1)
    if multiplier != 1:
        lines.append(f"vf_learning_rate: {'lin_' if linear_lr else ''}{learning_rate * multiplier:.6g}")
    lines.append(f"ent_coef: {'lin_' if params.pop('ent_coef_schedule', 'constant') == 'linear' else ''}{ent_coef:.6g}")
    policy_kwargs = {
        "log_std_init": params.pop("log_std_init"),
        "ortho_init": params.pop("ortho_init"),
        "activation_fn": {"tanh": "nn.Tanh", "relu": "nn.ReLU", "elu": "nn.ELU"}[params.pop("activation_fn")],
        "net_arch": {
            "tiny": "dict(pi=[64], vf=[64])",
            "small": "dict(pi=[64, 64], vf=[64, 64])",
            "medium": "dict(pi=[256, 256], vf=[256, 256])",
        }[params.pop("net_arch")],  # fmt: skip
    }
    for name in ("state_dependent_std", "normalize_observations"):
        if params.get(name):
            policy_kwargs[name] = True
        params.pop(name, None)
    for name, value in sorted(params.items()):
        lines.append(f"{name}: {'null' if value is None else value}")
    lines.append('policy_kwargs: "dict(' + ", ".join(f"{k}={v}" for k, v in policy_kwargs.items()) + ')"')
    return "\n".join(lines)


def search_main(argv: list[str]) -> None:
    """``python -m benchmarks.run search ...``: the hyperparameter search's subcommands."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run search", description=SEARCH_DOC.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SEARCH_DOC)
    commands = parser.add_subparsers(dest="command", required=True)
    begin = commands.add_parser("start", help="create the study, enqueue the starting points, run the workers")
    begin.add_argument("--env", required=True)
    begin.add_argument("--study", required=True)
    begin.add_argument("--out", required=True, help="folder of the study's journal (study.log), logs and trials.csv")
    begin.add_argument("--trials", type=int, default=50, help="trials in the study, all workers together")
    begin.add_argument("--workers", type=int, default=2, help="worker processes on this machine (one per core)")
    begin.add_argument("--n-timesteps", type=int, default=300_000, help="steps per trial")
    begin.add_argument("--n-evaluations", type=int, default=3, help="evaluations per trial (for the median pruner)")
    begin.add_argument("--eval-episodes", type=int, default=5)
    begin.add_argument("--seed", type=int, default=0, help="seed of the first worker (the others: +1, +2, ...)")
    again = commands.add_parser("rerank", help="train the best trials again with other seeds; rank by the mean")
    again.add_argument("--storage", required=True)
    again.add_argument("--study", required=True)
    again.add_argument("--env", required=True)
    again.add_argument("--top", type=int, default=3)
    again.add_argument("--seeds", type=int, nargs="+", default=[101, 102])
    again.add_argument("--workers", type=int, default=2)
    again.add_argument("--n-timesteps", type=int, default=300_000)
    again.add_argument("--n-evaluations", type=int, default=3)
    again.add_argument("--eval-episodes", type=int, default=5)
    for name in ("dump", "best"):
        sub = commands.add_parser(name)
        sub.add_argument("--storage", required=True, help="the study's journal file")
        sub.add_argument("--study", required=True)
        if name == "dump":
            sub.add_argument("--out", help="CSV file (default: trials.csv beside the journal)")
        else:
            sub.add_argument("--trial", type=int, help="this trial rather than the best")
    args = parser.parse_args(argv)
    if args.command == "start":
        if args.trials < 1 or args.workers < 1 or args.n_timesteps < 1 or args.n_evaluations < 1:
            parser.error("--trials, --workers, --n-timesteps and --n-evaluations must be >= 1")
        start_search(args)
    elif args.command == "rerank":
        rerank(args)
    elif args.command == "dump":
        dump_trials(args.storage, args.study, Path(args.out) if args.out else Path(args.storage).parent / "trials.csv")
    else:
        print(best_block(args.storage, args.study, args.trial))


if __name__ == "__main__":
    main()
