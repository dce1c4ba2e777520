"""The benchmark evidence as one dataset: every committed run's evaluations, in three gzipped CSV files under
``benchmarks/results/`` (``pandas.read_csv`` and ``zcat`` read them).

``evaluations.csv.gz`` (one row per evaluation, sorted by run and timestep):

- ``run_id``: the run's folder as it was written, relative to ``benchmarks/results/`` for the committed runs (for example
  ``sweep/clippedppo/HalfCheetah-v4_1``), so that a path named in a README or a log is the run's id here;
- ``algo``, ``env``, ``variant``, ``seed``, ``machine``: as in ``runs.csv.gz`` (repeated, so the file reads on its own);
- ``timesteps``: the training step at which the evaluation ran;
- ``wall_clock_s``: seconds from the start of training to that evaluation, evaluations included, interpolated in the
  run's training Monitor file (``*.monitor.csv``, whose ``t`` column is the time at each episode's end; with several
  environments each file sees ``1/n`` of the steps); from ``progress.csv``'s whole seconds for runs without a Monitor
  file; empty when neither exists. A run folder of :mod:`benchmarks.time_to_return` with its callback's
  ``time_to_return.json`` has the protocol's clock instead, exact;
- ``episode_returns``, ``episode_lengths``: the evaluation's episodes, ``;``-joined (returns as Python writes a float,
  so they read back to the bit).

``runs.csv.gz`` (one row per run): ``run_id``, ``algo``, ``env``, ``variant``, ``seed``, ``machine`` (``CPU (N cores)``),
``status`` (``finished``, or ``stopped`` for a run cut short), ``timesteps`` (steps trained), ``wall_clock_s``,
``steps_per_s`` (both for the whole run, evaluations included), ``cpu_s`` (the run's own CPU seconds, user + system,
which other processes sharing the cores do not inflate; recorded by :mod:`benchmarks.run` since the Zoo benchmark of
issue 35, empty before), ``evaluating_s`` (the share of it spent evaluating, from
the Monitor file: :func:`evaluation_seconds`), ``started``, ``commit`` (of the code that ran),
``python``, ``versions`` (JSON), ``jobs`` (runs at a time on the machine), ``node`` (hostname), ``command``. These come
from the run's record (``<sweep>/_runs/*.json``, written by :mod:`benchmarks.run`) or ``summary.json`` (the runs of
``halfcheetah_300k``, by the former ``benchmarks.halfcheetah_zoo_params``) when it has one, otherwise from its Monitor
file and ``command.txt``.

``variants.csv.gz`` (one row per ``(algo, env, variant)``): ``hyperparameters``, the run's full hyperparameters as JSON
(the Zoo's saved ``<env>/config.yml``, or ``summary.json``'s). Two runs of one variant must have the same.

Add runs (Zoo output folders ``<algo>/<env>_<n>/``, a sweep folder of :mod:`benchmarks.run`, or any folder above them;
a run id already in the dataset is skipped, never duplicated)::

    python -m benchmarks.dataset add /tmp/sweep --variant default
    python -m benchmarks.dataset add /tmp/screen/c06_clip02 --variant clip02 --prefix search/halfcheetah
    python -m benchmarks.dataset list
    python -m benchmarks.dataset scaling          # the committed sweep's makespan on 1, 4, 16, 64 one-CPU workers

``--prefix`` is prepended to the ids (the folder given is the id's first part); ``--machine`` names the machine of runs
without a record. :func:`load` reads the dataset back with the standard library (no pandas needed); ``pandas.read_csv``
reads the files as they are.
"""

import argparse
import csv
import gzip
import heapq
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.builder import ROOT

RESULTS = ROOT / "benchmarks" / "results"
EVALUATIONS, RUNS, VARIANTS = "evaluations.csv.gz", "runs.csv.gz", "variants.csv.gz"
EVALUATION_COLUMNS = ["run_id", "algo", "env", "variant", "seed", "machine", "timesteps", "wall_clock_s",
                      "episode_returns", "episode_lengths"]  # fmt: skip
RUN_COLUMNS = ["run_id", "algo", "env", "variant", "seed", "machine", "status", "timesteps", "wall_clock_s", "steps_per_s",
               "cpu_s", "evaluating_s", "started", "commit", "python", "versions", "jobs", "node", "command"]  # fmt: skip
VARIANT_COLUMNS = ["algo", "env", "variant", "hyperparameters"]

# The variants of the committed report (python -m benchmarks.report): the head-to-head sweep's, the options (in the report's
# order) and tuned ClippedPPO; the candidates tried for the tuned entries and not shipped, each against SB3 PPO and plain
# ClippedPPO as the tuned variant is; issue 25's time-to-return rows (one run at a time, default threads)
COMMITTED = {
    "main": "default",
    "options": ["vf_lr", "kl_penalty", "state_dependent_std", "kl_adaptive_lr", "recompute_advantages",
                "normalize_observations", "ent_coef_schedule"],
    "tuned": "tuned",
    "candidates": [
        ("search/halfcheetah/validation_trial7", "search's best (trial 7: lr lin_2e-4, recomputed advantages)"),
        ("search/halfcheetah/validation_normobs", "normalize_observations"),
        ("search/halfcheetah/validation_kl_adaptive_lr", "target_kl 0.01 + kl_adaptive_lr"),
        ("search/halfcheetah/validation_kl_adaptive_lr_normobs", "target_kl 0.01 + kl_adaptive_lr + normalize_observations"),
        ("search/halfcheetah/control_plain_seeds5-9", "plain ClippedPPO on seeds 5-9 (the tuned runs' seeds)"),
        ("search/walker/validation_penalty", "previous entry (PPO-Penalty)"),
    ],
    "time_to_return": [
        ("time_to_return/halfcheetah/clippedppo", "ClippedPPO, shipped entry"),
        ("time_to_return/halfcheetah/ppo-shipped", "SB3 PPO, ClippedPPO's entry"),
        ("time_to_return/halfcheetah/ppo-zoo", "SB3 PPO, RL Zoo entry"),
        ("time_to_return/halfcheetah/validation_1M", "ClippedPPO, shipped entry, validation (BLAS rule before; to 1M)"),
        ("time_to_return/walker/clippedppo", "ClippedPPO, shipped walker-walk entry"),
        ("time_to_return/walker/ppo", "SB3 PPO, walker seed's settings"),
    ],
}  # fmt: skip


def number(value: Any) -> str:
    """A cell for a number: Python's shortest exact form (reads back to the same float), empty for None or NaN."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return repr(float(value)) if isinstance(value, (float, np.floating)) else str(value)


def machine_name(machine: dict[str, Any] | None) -> str:
    """``CPU (N cores)`` from a record's machine description, as the report names machines."""
    return f"{machine['cpu']} ({machine['cores']} cores)" if machine else ""


def load_yaml(path: Path) -> Any:
    """A yml file the Zoo wrote (``OrderedDict`` tags included)."""
    import yaml

    return yaml.load(path.read_text(), Loader=yaml.UnsafeLoader)


def monitor_times(run_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """``(steps, seconds)`` at the end of each training episode, from the run's first Monitor file, with ``(0, 0)`` first."""
    monitors = sorted(run_dir.glob("*.monitor.csv"))
    if not monitors:
        return None
    data = np.genfromtxt(monitors[0], delimiter=",", skip_header=2, ndmin=2)
    if data.size == 0:
        return None
    steps = np.cumsum(data[:, 1]) * len(monitors)  # with several envs, each Monitor sees 1/n of the steps
    return np.concatenate([[0], steps]), np.concatenate([[0], data[:, 2]])


def eval_seconds(run_dir: Path, timesteps: np.ndarray) -> np.ndarray:
    """Wall-clock seconds since the start of training at each evaluation (Monitor file, else ``progress.csv``)."""
    times = monitor_times(run_dir)
    if times is None and (run_dir / "progress.csv").exists():
        with open(run_dir / "progress.csv") as f:
            rows = [r for r in csv.DictReader(f) if r.get("time/total_timesteps") and r.get("time/time_elapsed")]
        if rows:
            steps = np.array([0.0] + [float(r["time/total_timesteps"]) for r in rows])
            times = steps, np.array([0.0] + [float(r["time/time_elapsed"]) for r in rows])
    if times is None:
        return np.full(len(timesteps), np.nan)
    return np.interp(timesteps, *times)


def time_to_return_record(run_dir: Path) -> dict[str, Any] | None:
    """
    The callback's record in a :mod:`benchmarks.time_to_return` run folder (its clock starts with training; each
    evaluation's ``seconds``, the run's ``seconds`` and ``machine``), or None for other runs.
    """
    from benchmarks.time_to_return import RUN_FOLDER_RECORD

    path = run_dir / RUN_FOLDER_RECORD
    return json.loads(path.read_text()) if path.exists() else None


def find_record(run_dir: Path) -> dict[str, Any] | None:
    """The :mod:`benchmarks.run` record of a Zoo run folder (``<sweep>/_runs/*.json`` naming it), if any."""
    sweep = run_dir.parent.parent
    for path in sorted((sweep / "_runs").glob("*.json")):
        record = json.loads(path.read_text())
        if (sweep / record.get("run_dir", "")).resolve() == run_dir.resolve():
            return record
    return None


def read_run(run_dir: Path, run_id: str, variant: str, machine: str = "") -> tuple[dict, list[dict], dict]:
    """
    One run folder as dataset rows: ``(run row, evaluation rows, variant row)``.

    :param run_dir: a Zoo run folder (``evaluations.npz``, ``<env>/config.yml``, ``<env>/args.yml``) or a
        folder of the former ``benchmarks.halfcheetah_zoo_params`` (``evaluations.npz``, ``summary.json``).
    :param run_id: the run's id.
    :param variant: the variant's name.
    :param machine: the machine, for a run without a record naming it.
    """
    evaluations = np.load(run_dir / "evaluations.npz")
    timesteps = evaluations["timesteps"].astype(np.int64)
    results, lengths = evaluations["results"], evaluations["ep_lengths"]
    record = find_record(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else None
    timed = time_to_return_record(run_dir)
    if summary is not None:  # the former benchmarks.halfcheetah_zoo_params
        record = {**summary, "status": "finished"}
        hyperparameters = summary["hyperparameters"]
    else:
        configs = list(run_dir.glob("*/config.yml"))
        if len(configs) != 1:
            raise ValueError(f"{run_dir}: expected one <env>/config.yml, found {len(configs)}")
        hyperparameters = dict(load_yaml(configs[0]))
        hyperparameters.pop("callback", None)  # instrumentation (benchmarks.time_to_return's), not a setting
        args = dict(load_yaml(configs[0].parent / "args.yml"))
        if record is None:
            times = monitor_times(run_dir)
            trained = int(times[0][-1]) if times is not None else int(timesteps[-1])
            budget = args["n_timesteps"] if args["n_timesteps"] > 0 else hyperparameters.get("n_timesteps", 0)
            seconds = float(times[1][-1]) if times is not None else None
            command_file = configs[0].parent / "command.txt"
            record = {
                "algo": args["algo"], "env": args["env"], "seed": args["seed"],
                "status": "finished" if trained >= int(budget) else "stopped", "timesteps": trained,
                "wall_clock_s": seconds, "steps_per_s": trained / seconds if seconds else None,
                "command": command_file.read_text().strip() if command_file.exists() else "",
            }  # fmt: skip
            if timed is not None:
                seconds = timed["seconds"]
                record.update(wall_clock_s=seconds, steps_per_s=trained / seconds, machine=timed.get("machine"))
    try:
        evaluating = evaluation_seconds(run_dir, timesteps) if (run_dir / "0.monitor.csv").exists() else None
    except (ValueError, IndexError):
        evaluating = None
    meta = record.get("machine") or {}
    run = {
        "run_id": run_id, "algo": record["algo"], "env": record["env"], "variant": variant, "seed": record["seed"],
        "machine": machine_name(meta) or machine, "status": record["status"], "timesteps": record["timesteps"],
        "wall_clock_s": number(record.get("wall_clock_s")), "steps_per_s": number(record.get("steps_per_s")),
        "cpu_s": number(record.get("cpu_s")), "evaluating_s": number(evaluating), "started": record.get("started", ""),
        "commit": meta.get("commit", ""),
        "python": meta.get("python", ""), "versions": json.dumps(meta["versions"]) if "versions" in meta else "",
        "jobs": meta.get("jobs", ""), "node": (record.get("node") or {}).get("hostname", ""), "command": record["command"],
    }  # fmt: skip
    seconds = eval_seconds(run_dir, timesteps)
    if timed is not None:
        exact = {int(e["timesteps"]): float(e["seconds"]) for e in timed["evaluations"]}
        seconds = np.array([exact.get(int(step), np.nan) for step in timesteps])
    rows = [
        {**{k: run[k] for k in EVALUATION_COLUMNS[:6]}, "timesteps": int(step), "wall_clock_s": number(second),
         "episode_returns": ";".join(repr(float(x)) for x in returns),
         "episode_lengths": ";".join(str(int(x)) for x in length)}
        for step, second, returns, length in zip(timesteps, seconds, results, lengths, strict=True)
    ]  # fmt: skip
    variant_row = {"algo": run["algo"], "env": run["env"], "variant": variant,
                   "hyperparameters": json.dumps(hyperparameters, sort_keys=True, default=str)}  # fmt: skip
    return run, rows, variant_row


def run_folders(path: Path) -> list[Path]:
    """The run folders (with ``evaluations.npz``) at or under ``path``, sorted."""
    if (path / "evaluations.npz").exists():
        return [path]
    return sorted(p.parent for p in path.rglob("evaluations.npz"))


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a dataset file (gzipped when its name ends in ``.gz``), empty when it does not exist."""
    if not path.exists():
        return []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    """Write a dataset file; gzipped with no timestamp (the same rows give the same bytes)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    data = text.getvalue().encode()
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def add(paths: list[Path], variant: str, prefix: str = "", machine: str = "", dataset: Path = RESULTS) -> list[str]:
    """
    Append the runs under ``paths`` to the dataset in ``dataset``; runs whose id is already there are skipped.

    :param paths: run folders, or folders to search for them.
    :param variant: the variant of every run added.
    :param prefix: prepended to the ids, which are each run's path from the parent of the folder given.
    :param machine: the machine of runs without a record.
    :param dataset: the dataset's folder.
    :return: the ids added.
    :raises ValueError: when a run's hyperparameters differ from those already recorded for its variant.
    """
    runs = read_csv(dataset / RUNS)
    evaluations = read_csv(dataset / EVALUATIONS)
    variants = {(v["algo"], v["env"], v["variant"]): v for v in read_csv(dataset / VARIANTS)}
    known, added = {r["run_id"] for r in runs}, []
    for path in paths:
        for run_dir in run_folders(path):
            run_id = "/".join(p for p in (prefix.strip("/"), run_dir.relative_to(path.parent).as_posix()) if p)
            if run_id in known:
                print(f"skipped {run_id}: already in the dataset", file=sys.stderr)
                continue
            run, rows, variant_row = read_run(run_dir, run_id, variant, machine)
            key = (variant_row["algo"], variant_row["env"], variant)
            if key in variants and variants[key]["hyperparameters"] != variant_row["hyperparameters"]:
                raise ValueError(f"{run_dir}: its hyperparameters differ from variant {key}'s; give it another --variant")
            variants[key] = variant_row
            runs.append(run)
            evaluations += rows
            known.add(run_id)
            added.append(run_id)
    runs.sort(key=lambda r: r["run_id"])
    evaluations.sort(key=lambda r: (r["run_id"], int(r["timesteps"])))
    dataset.mkdir(parents=True, exist_ok=True)
    write_csv(dataset / RUNS, RUN_COLUMNS, runs)
    write_csv(dataset / EVALUATIONS, EVALUATION_COLUMNS, evaluations)
    write_csv(dataset / VARIANTS, VARIANT_COLUMNS, [variants[k] for k in sorted(variants)])
    return added


def load(dataset: Path = RESULTS) -> list[dict[str, Any]]:
    """
    The dataset's runs, sorted by id, each a ``runs.csv.gz`` row with typed numbers and its evaluations as arrays:
    ``eval_steps`` (int64), ``eval_seconds`` (float64; NaN where unknown), ``episode_returns`` (float64, one row per
    evaluation, one column per episode), ``episode_lengths``, and ``returns`` (the mean of each evaluation's episodes).
    """
    by_run: dict[str, list[dict[str, str]]] = {}
    for row in read_csv(dataset / EVALUATIONS):
        by_run.setdefault(row["run_id"], []).append(row)
    runs = []
    for row in read_csv(dataset / RUNS):
        evals = by_run.get(row["run_id"], [])
        run: dict[str, Any] = dict(row)
        run["seed"], run["timesteps"] = int(row["seed"]), int(row["timesteps"])
        for key in ("wall_clock_s", "steps_per_s", "cpu_s", "evaluating_s"):
            run[key] = float(row[key]) if row.get(key) else None
        run["jobs"] = int(row["jobs"]) if row["jobs"] else None
        run["versions"] = json.loads(row["versions"]) if row["versions"] else {}
        run["eval_steps"] = np.array([int(e["timesteps"]) for e in evals], dtype=np.int64)
        run["eval_seconds"] = np.array([float(e["wall_clock_s"]) if e["wall_clock_s"] else np.nan for e in evals])
        run["episode_returns"] = np.array([[float(x) for x in e["episode_returns"].split(";")] for e in evals])
        run["episode_lengths"] = np.array([[int(x) for x in e["episode_lengths"].split(";")] for e in evals])
        run["returns"] = run["episode_returns"].mean(axis=1) if evals else np.empty(0)
        runs.append(run)
    return runs


def hyperparameters(dataset: Path = RESULTS) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Each variant's hyperparameters, by ``(algo, env, variant)``."""
    return {(v["algo"], v["env"], v["variant"]): json.loads(v["hyperparameters"]) for v in read_csv(dataset / VARIANTS)}


def makespan(durations: list[float], workers: int) -> float:
    """
    The time at which the last run ends when each run, in the given order, starts on the first free worker.

    :param durations: the runs' durations, in the order they are started.
    :param workers: how many run at a time.
    """
    free = [0.0] * workers
    for duration in durations:
        heapq.heapreplace(free, free[0] + duration)
    return max(free)


def evaluation_seconds(run_dir: Path, eval_steps: np.ndarray) -> float:
    """
    Seconds a run spent evaluating, from the longer episodes of its first training Monitor file.

    :param run_dir: the Zoo's run folder (with ``0.monitor.csv``).
    :param eval_steps: the timesteps of its evaluations (``evaluations.npz``).
    """
    data = np.genfromtxt(run_dir / "0.monitor.csv", delimiter=",", skip_header=2, ndmin=2)
    # With n envs, each Monitor sees 1/n of the steps
    ends = np.cumsum(data[:, 1]) * len(list(run_dir.glob("*.monitor.csv")))
    durations = np.diff(data[:, 2], prepend=0.0)
    during = np.searchsorted(ends, eval_steps, side="right")  # the episode after each evaluation point
    seen = during[during < len(durations)]
    excess = durations[seen] - np.delete(durations, np.concatenate([seen, [0]])).mean()
    return float(excess.mean() * len(eval_steps))  # the last evaluation, after the last episode, costs as much


def runs_of_variants(variants: list[str], dataset: Path | None = None) -> list[dict]:
    """
    The finished runs of the dataset's variants, each variant's in the runner's order, with ``name``, ``s`` (seconds) and
    ``eval_s`` (of them evaluating).

    :param variants: the variants.
    :param dataset: the dataset's folder (default: the committed one).
    """
    rows = read_csv((dataset or RESULTS) / RUNS)
    runs = []
    for variant in variants:
        # The runner's order: its records sorted by file name (algo, env, seed as text), then by environment and seed
        members = sorted((r for r in rows if r["variant"] == variant), key=lambda r: (r["algo"], r["env"], r["seed"]))
        order = {env: i for i, env in enumerate(dict.fromkeys(r["env"] for r in members))}
        for row in sorted(members, key=lambda r: (order[r["env"]], int(r["seed"]), r["algo"])):
            if row["status"] == "finished":
                runs.append({**row, "name": f"{variant}/{row['algo']} {row['env']} seed {row['seed']}",
                             "s": float(row["wall_clock_s"]), "eval_s": float(row["evaluating_s"])})  # fmt: skip
    return runs


def scaling(variants: list[str], workers: list[int], dataset: Path | None = None) -> dict[str, Any]:
    """
    How long the variants' runs take on W one-CPU workers, from their recorded durations: each run started on the first
    free worker, in the runner's order and longest first, and without the time spent evaluating.

    :param variants: the dataset's variants (their finished runs).
    :param workers: the numbers of workers.
    :param dataset: the dataset's folder (default: the committed one).
    :return: ``{"runs", "hours", "longest": {"name", "minutes", "evaluating_minutes"}, "rows": [{"workers",
        "runner_order_h", "longest_first_h", "lower_bound_h", "busy", "without_evaluations_h"}], "groups": [{"group",
        "runs", "minutes", "evaluating"}], "lines": the markdown}``.
    :raises ValueError: when the variants have no finished run.
    """
    runs = runs_of_variants(variants, dataset)
    if not runs:
        raise ValueError(f"no finished runs of variants {variants} in the dataset")
    seconds = [r["s"] for r in runs]
    total, longest = sum(seconds), max(runs, key=lambda r: r["s"])
    without = sorted((r["s"] - r["eval_s"] for r in runs), reverse=True)
    rows = []
    for count in workers:
        longest_first = makespan(sorted(seconds, reverse=True), count)
        rows.append({"workers": count, "runner_order_h": makespan(seconds, count) / 3600,
                     "longest_first_h": longest_first / 3600, "lower_bound_h": max(longest["s"], total / count) / 3600,
                     "busy": total / count / longest_first,
                     "without_evaluations_h": makespan(without, count) / 3600})  # fmt: skip
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(f"{r['env']}, {r['algo']}", []).append(r)
    group_rows = [{"group": group, "runs": len(members), "minutes": float(np.mean([r["s"] for r in members])) / 60,
                   "evaluating": float(np.mean([r["eval_s"] / r["s"] for r in members]))}
                  for group, members in groups.items()]  # fmt: skip
    lines = [f"{len(runs)} runs, {total / 3600:.1f} h of run time in all; the longest: {longest['name']}, "
             f"{longest['s'] / 60:.1f} min ({longest['eval_s'] / 60:.1f} of them evaluating).", "",
             "| one-CPU workers | makespan, runner's order | makespan, longest first | lower bound "
             "max(longest run, total / workers) | workers busy | makespan without evaluations (longest first) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        lines.append(f"| {row['workers']} | {row['runner_order_h']:.2f} h | {row['longest_first_h']:.2f} h | "
                     f"{row['lower_bound_h']:.2f} h | {row['busy']:.0%} | {row['without_evaluations_h']:.2f} h |")  # fmt: skip
    lines.append("")
    for group in group_rows:
        lines.append(f"- {group['group']}: {group['runs']} runs, {group['minutes']:.1f} min on average, "
                     f"{group['evaluating']:.0%} of it evaluating")  # fmt: skip
    return {"runs": len(runs), "hours": total / 3600, "longest": {"name": longest["name"], "minutes": longest["s"] / 60,
            "evaluating_minutes": longest["eval_s"] / 60}, "rows": rows, "groups": group_rows, "lines": lines}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dataset", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    adding = commands.add_parser("add", help="append runs from RL Zoo output folders")
    adding.add_argument("paths", nargs="+", type=Path, help="run folders, sweep folders, or folders above them")
    adding.add_argument("--variant", required=True, help="the runs' variant (hyperparameters of one setting)")
    adding.add_argument("--prefix", default="", help="prepended to the run ids (default: none)")
    adding.add_argument("--machine", default="", help="the machine of runs without a record, e.g. 'AMD EPYC (2 cores)'")
    adding.add_argument("--dataset", type=Path, default=RESULTS, help="the dataset's folder (default: benchmarks/results)")
    listing = commands.add_parser("list", help="runs per algorithm, environment and variant")
    listing.add_argument("--dataset", type=Path, default=RESULTS)
    planning = commands.add_parser("scaling", help="how long the variants' runs take on 1, 4, 16, 64 one-CPU workers",
                                   description="How long a sweep takes on W one-CPU workers, from its runs' recorded "
                                   "durations (each run to the first free worker), and what limits it.")  # fmt: skip
    planning.add_argument("--variant", action="append", help="a variant (repeatable; default: the committed sweep's and "
                          "options')")  # fmt: skip
    planning.add_argument("--workers", nargs="+", type=int, default=[1, 4, 16, 64])
    planning.add_argument("--dataset", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.command == "add":
        missing = [str(p) for p in args.paths if not run_folders(p)]
        if missing:
            parser.error(f"no run folders (evaluations.npz) in {missing}")
        added = add(args.paths, args.variant, args.prefix, args.machine, args.dataset)
        print(f"added {len(added)} runs to {args.dataset}: " + ", ".join(added))
    elif args.command == "scaling":
        if min(args.workers) < 1:
            parser.error(f"--workers must be >= 1, not {min(args.workers)}")
        try:
            table = scaling(args.variant or [COMMITTED["main"], *COMMITTED["options"]], args.workers, args.dataset)
        except ValueError as error:
            parser.error(str(error))
        print("\n".join(table["lines"]))
    else:
        counts: dict[tuple[str, str, str], int] = {}
        for run in read_csv(args.dataset / RUNS):
            key = (run["env"], run["algo"], run["variant"])
            counts[key] = counts.get(key, 0) + 1
        for (env, algo, variant), n in sorted(counts.items()):
            print(f"{env:28s} {algo:12s} {variant:50s} {n:3d} runs")


if __name__ == "__main__":
    main()
