"""How long a sweep takes on 1, 4, 16, 64 one-CPU workers, from its runs' recorded durations, and what limits it.

Reads the runs of the given variants of the dataset (:mod:`benchmarks.dataset`; by default the committed sweep's and
options' runs, 47 runs), or the records (``<sweep>/_runs/*.json``) of sweep folders, and schedules their measured
wall-clock times on W workers: in the runner's order (every variant's or folder's runs in turn, each run to the first
free worker: what Ray does with tasks of one CPU), and longest first. The evaluation cost of each run is measured from
its training Monitor file (the dataset's ``evaluating_s``, computed when the run was added): an evaluation pauses
training, so the episode during which it ran lasts longer than the others; the excess over the mean episode, times the
number of evaluations, is the run's time spent evaluating.

Example (the table in ``benchmarks/README.md``)::

    python -m benchmarks.scaling
    python -m benchmarks.scaling --variant default --variant vf_lr
    python -m benchmarks.scaling /tmp/sweep
"""

import argparse
import heapq
import json
from pathlib import Path

import numpy as np


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
    """The finished runs of the dataset's variants, each variant's in the runner's order, with ``name``, ``s``, ``eval_s``."""
    from benchmarks import dataset as data

    rows = data.read_csv(dataset or data.RESULTS / data.RUNS)
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


def main(argv: list[str] | None = None) -> str:
    from benchmarks.report import COMMITTED

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweeps", nargs="*", type=Path, help="sweep folders (with _runs/), instead of the dataset")
    parser.add_argument("--variant", action="append", help="a variant of the dataset (repeatable; default: the committed "
                        "sweep's and options')")  # fmt: skip
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 4, 16, 64])
    args = parser.parse_args(argv)
    if min(args.workers) < 1:
        parser.error(f"--workers must be >= 1, not {min(args.workers)}")
    runs = []
    for sweep in args.sweeps:
        records = [json.loads(p.read_text()) for p in sorted((sweep / "_runs").glob("*.json"))]
        if not records:
            parser.error(f"{sweep}: no records in {sweep / '_runs'}")
        order = {env: i for i, env in enumerate(dict.fromkeys(r["env"] for r in records))}
        for record in sorted(records, key=lambda r: (order[r["env"]], r["seed"], r["algo"])):
            if record["status"] == "finished":
                steps = np.load(sweep / record["run_dir"] / "evaluations.npz")["timesteps"]
                evaluating = evaluation_seconds(sweep / record["run_dir"], steps)
                runs.append({**record, "name": f"{sweep.name}/{record['algo']} {record['env']} seed {record['seed']}",
                             "s": record["wall_clock_s"], "eval_s": evaluating})  # fmt: skip
    if not args.sweeps:
        runs = runs_of_variants(args.variant or [COMMITTED["main"], *COMMITTED["options"]])
        if not runs:
            parser.error(f"no finished runs of variants {args.variant} in the dataset")
    seconds = [r["s"] for r in runs]
    total, longest = sum(seconds), max(runs, key=lambda r: r["s"])
    lines = [f"{len(runs)} runs, {total / 3600:.1f} h of run time in all; the longest: {longest['name']}, "
             f"{longest['s'] / 60:.1f} min ({longest['eval_s'] / 60:.1f} of them evaluating).", "",
             "| one-CPU workers | makespan, runner's order | makespan, longest first | lower bound "
             "max(longest run, total / workers) | workers busy | makespan without evaluations (longest first) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    without = sorted((r["s"] - r["eval_s"] for r in runs), reverse=True)
    for workers in args.workers:
        ordered, longest_first = makespan(seconds, workers), makespan(sorted(seconds, reverse=True), workers)
        bound = max(longest["s"], total / workers)
        lines.append(f"| {workers} | {ordered / 3600:.2f} h | {longest_first / 3600:.2f} h | {bound / 3600:.2f} h | "
                     f"{total / workers / longest_first:.0%} | {makespan(without, workers) / 3600:.2f} h |")  # fmt: skip
    lines.append("")
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(f"{r['env']}, {r['algo']}", []).append(r)
    for group, members in groups.items():
        share = np.mean([r["eval_s"] / r["s"] for r in members])
        minutes = np.mean([r["s"] for r in members]) / 60
        lines.append(f"- {group}: {len(members)} runs, {minutes:.1f} min on average, {share:.0%} of it evaluating")
    print("\n".join(lines))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
