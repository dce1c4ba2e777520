"""Time to a return: wall-clock minutes until a deterministic evaluation first reaches a threshold (issue 25's protocol).

Each run is the README's command, ``python -m rl_zoo3.train --algo ALGO --env ENV``, with torch's default threads, plus
the evaluation of the protocol: ``--eval-freq 20000 --eval-episodes 10`` (the Zoo's ``EvalCallback``: deterministic
actions, the training ``VecNormalize`` statistics) and the callback :class:`StopAtReturn`, passed through the Zoo's
``callback`` hyperparameter. The callback starts the clock when training starts, records every evaluation (steps,
seconds, mean and episode returns) and stops training after the first evaluation whose mean reaches the threshold; a run
that never reaches it stops at ``-n`` steps (default 1M; ``-n`` also sets the length of ``lin_`` schedules, so it stays
the entry's), or after ``--time-cap`` minutes (a search's trials). The time counted includes the evaluations. Runs go one at a
time (nothing else should run on the machine), alternating between variants seed by seed.

A variant is ``NAME=ALGO[:CONF]``: the Zoo algorithm and, optionally, the hyperparameter file (``-conf``); without one
the Zoo's own file for that algorithm is used (``hyperparams/clippedppo.yml`` for ``clippedppo``). Example, issue 25's
table::

    python -m benchmarks.time_to_return --env HalfCheetah-v4 --threshold 5000 --seeds 0 1 2 3 4 \\
        --variants clippedppo=clippedppo ppo-zoo=ppo ppo-shipped=ppo:hyperparams/clippedppo.yml \\
        --out runs/time_to_return/halfcheetah

writes, under ``--out``: the Zoo's run folders (``logs/<variant>/<algo>/<env>_<n>/``), one record per run
(``runs/<variant>__seed<seed>.json``: command, machine, evaluations, minutes to the threshold or null), ``summary.json``
and ``summary.md`` (median minutes, seeds that reached it, per seed) and ``curves.png`` (mean evaluation return against
wall-clock minutes, per seed). Re-running skips finished runs. The runs then go into the dataset, a variant at a time,
and the report's time-to-return table and figure are rebuilt from it (:mod:`benchmarks.report`, ``--time-to-return``)::

    python -m benchmarks.dataset add runs/time_to_return/halfcheetah/logs/clippedppo \\
        --variant time_to_return/halfcheetah/clippedppo --prefix time_to_return/halfcheetah
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback

from benchmarks.builder import ROOT, machine_info, save_png

# The callback's record in the Zoo's run folder (exact seconds per evaluation, read by benchmarks.dataset)
RUN_FOLDER_RECORD = "time_to_return.json"


class StopAtReturn(BaseCallback):
    """
    Records the Zoo's evaluations with the wall-clock seconds since training started, and stops training after the first
    evaluation whose mean return is at least ``threshold``. It finds the ``EvalCallback`` among the callbacks that
    ``learn`` received (the Zoo's, from ``--eval-freq``) and reads its results one step after each evaluation.

    :param threshold: the mean evaluation return that ends the run.
    :param time_cap: seconds after which a run that has not reached the threshold stops (None: no cap; it goes to ``-n``).
    :param keep_training: train on to ``-n`` steps after reaching the threshold (for the final return at the full budget
        from the same run: the time to the threshold is the same, as nothing else runs on the machine).
    :param out: JSON file rewritten after every evaluation: ``{"threshold", "evaluations": [{"timesteps", "seconds",
        "mean_return", "returns"}], "seconds_to_threshold" (or null), "timesteps", "seconds", "finished", "machine"}``.
        A copy goes into the Zoo's run folder (beside ``evaluations.npz``, as ``time_to_return.json``), where
        :mod:`benchmarks.dataset` takes its seconds.
    :param verbose: SB3's verbosity.
    :raises RuntimeError: at the first step, when training has no ``EvalCallback`` (``--eval-freq`` not positive).
    """

    def __init__(
        self, threshold: float, out: str, time_cap: float | None = None, keep_training: bool = False, verbose: int = 0
    ):
        super().__init__(verbose)
        self.keep_training = keep_training
        self.machine = machine_info()  # here, before learn sets its own thread counts (sb3_clippedppo.threads)
        self.threshold = float(threshold)
        self.time_cap = time_cap
        self.out = Path(out)
        self.evaluations: list[dict[str, Any]] = []
        self.seconds_to_threshold: float | None = None
        self.evaluator: EvalCallback | None = None

    def _on_training_start(self) -> None:
        self.start = time.perf_counter()

    def _find_evaluator(self) -> EvalCallback:
        callbacks = getattr(self.locals.get("callback"), "callbacks", [])
        evaluators = [callback for callback in callbacks if isinstance(callback, EvalCallback)]
        if not evaluators:
            raise RuntimeError("StopAtReturn needs the Zoo's EvalCallback: pass --eval-freq with a positive value")
        return evaluators[0]

    def _on_step(self) -> bool:
        if self.evaluator is None:
            self.evaluator = self._find_evaluator()
        results = self.evaluator.evaluations_results
        if len(results) == len(self.evaluations):
            reached = self.seconds_to_threshold is not None
            return reached or self.time_cap is None or time.perf_counter() - self.start < self.time_cap
        seconds = time.perf_counter() - self.start
        returns = [float(r) for r in results[-1]]
        mean = float(np.mean(returns))
        self.evaluations.append(dict(timesteps=int(self.evaluator.evaluations_timesteps[-1]), seconds=seconds,
                                     mean_return=mean, returns=returns))  # fmt: skip
        if mean >= self.threshold and self.seconds_to_threshold is None:
            self.seconds_to_threshold = seconds
        reached = self.seconds_to_threshold is not None
        self._write(finished=reached and not self.keep_training)
        if reached:
            return self.keep_training
        return self.time_cap is None or seconds < self.time_cap

    def _on_training_end(self) -> None:
        self._write(finished=True)

    def _write(self, finished: bool) -> None:
        record = dict(threshold=self.threshold, evaluations=self.evaluations, seconds_to_threshold=self.seconds_to_threshold,
                      timesteps=int(self.num_timesteps), seconds=time.perf_counter() - self.start,
                      finished=finished, machine=self.machine)  # fmt: skip
        paths = [self.out]
        if self.evaluator is not None and self.evaluator.log_path is not None:
            paths.append(Path(self.evaluator.log_path).parent / RUN_FOLDER_RECORD)
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(record, indent=1) + "\n")
            os.replace(temporary, path)


def parse_variant(text: str) -> tuple[str, str, str | None]:
    """``NAME=ALGO[:CONF]`` as ``(name, algo, conf or None)``."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"a variant is NAME=ALGO[:CONF], got {text!r}")
    algo, _, conf = rest.partition(":")
    return name, algo, conf or None


def zoo_command(
    name: str, algo: str, env: str, seed: int, conf: str | None, args: argparse.Namespace, callback_out: Path
) -> list[str]:
    """The run's ``rl_zoo3.train`` arguments (the README's command, the protocol's evaluation and the callback)."""
    options = {"threshold": args.threshold, "out": str(callback_out), "time_cap": args.time_cap and args.time_cap * 60}
    if args.keep_training:
        options["keep_training"] = True
    callback = [{"benchmarks.time_to_return.StopAtReturn": options}]
    command = ["-m", "rl_zoo3.train", "--algo", algo, "--env", env, "--seed", str(seed), "-n", str(args.max_steps),
               "--eval-freq", str(args.eval_freq), "--eval-episodes", str(args.eval_episodes),
               "-f", str(args.out / "logs" / name), "--hyperparams", f"callback:{callback!r}", *args.zoo_args]  # fmt: skip
    if conf:
        command += ["-conf", conf]
    if env.startswith("dm_control/"):
        command += ["--gym-packages", "shimmy"]
    return command


def run_one(name: str, algo: str, conf: str | None, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """One run, alone, unless its record says it finished; returns the record."""
    record_path = args.out / "runs" / f"{name}__seed{seed}.json"
    if record_path.exists():
        record = json.loads(record_path.read_text())
        if record.get("status") == "finished":
            return record
    callback_out = args.out / "runs" / f"{name}__seed{seed}.evaluations.json"
    command = zoo_command(name, algo, args.env, seed, conf, args, callback_out)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    print(f"{name} seed {seed}: python {' '.join(command)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    log = args.out / "runs" / f"{name}__seed{seed}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(result.stdout[-20000:] + result.stderr[-20000:])
    evaluations = json.loads(callback_out.read_text()) if callback_out.exists() else {}
    seconds = evaluations.get("seconds_to_threshold")
    record = dict(variant=name, algo=algo, conf=conf, env=args.env, seed=seed, command="python " + " ".join(command),
                  status="finished" if result.returncode == 0 else f"failed (exit {result.returncode})",
                  minutes_to_threshold=None if seconds is None else seconds / 60, process_seconds=wall,
                  followed_minutes=evaluations.get("seconds", wall) / 60,
                  **{"machine": machine_info(), **evaluations})  # fmt: skip  (the training process's machine, if recorded)
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    shown = "not reached" if seconds is None else f"{seconds / 60:.2f} min"
    print(f"{name} seed {seed}: {record['status']}, threshold {args.threshold:g}: {shown}", flush=True)
    return record


def median_minutes(minutes: list[float | None]) -> float | None:
    """The median over seeds, a seed that never reached the threshold counting as slower than every seed that did (None
    when that is the median: the median is censored)."""
    ordered = sorted(m for m in minutes if m is not None) + [float("inf")] * sum(m is None for m in minutes)
    median = statistics.median(ordered) if ordered else float("inf")
    return None if median == float("inf") else median


def horizon(minutes: list[float | None], followed: list[float]) -> float:
    """
    How long every seed's state is known: a seed that reached the threshold is known for good; one that did not, up to
    the minutes it was followed. The shortest such time (with every seed reached, the last crossing).

    :param minutes: each seed's minutes to the threshold (None: not reached).
    :param followed: each seed's minutes of training.
    """
    unreached = [f for m, f in zip(minutes, followed, strict=True) if m is None]
    return min(unreached) if unreached else max((m for m in minutes if m is not None), default=0.0)


def reached_by_minute(minutes: list[float | None], followed: list[float]) -> list[dict[str, float]]:
    """
    How many seeds had reached the threshold by each whole minute, as long as every seed's state is known
    (:func:`horizon`: the survival-style estimate, whose censoring is all at the end, is then the count over the seeds).

    :param minutes: each seed's minutes to the threshold (None: not reached).
    :param followed: each seed's minutes of training (how long it was watched).
    :return: ``[{"minute", "reached", "fraction"}]`` for minutes 0, 1, ... up to the horizon (rounded up when every seed
        reached the threshold).
    """
    known = horizon(minutes, followed)
    last = math.ceil(known) if all(m is not None for m in minutes) else math.floor(known)
    rows = []
    for minute in range(last + 1):
        reached = sum(m is not None and m <= minute for m in minutes)
        rows.append({"minute": minute, "reached": reached, "fraction": reached / len(minutes)})
    return rows


def median_cell(median: float | None, minutes: list[float | None], followed: list[float]) -> str:
    """
    The table's median cell: the median, or, when it is censored, ``> T min (k of n reached)`` where T is the shortest
    time a seed that did not reach the threshold was followed (the median lies beyond it).
    """
    if median is not None:
        return f"{median:.2f}"
    unreached = [f for m, f in zip(minutes, followed, strict=True) if m is None]
    bound = math.floor(min(unreached) * 10) / 10
    reached = sum(m is not None for m in minutes)
    return f"> {bound:g} min ({reached} of {len(minutes)} reached)"


def table(records: list[dict[str, Any]], threshold: float) -> tuple[list[str], dict[str, Any]]:
    """
    The markdown table of minutes to the threshold (a row per variant, in the records' order) and its numbers.

    :param records: runs as ``{"variant", "minutes_to_threshold" (None: not reached), "followed_minutes" (how long the
        run trained), "evaluations": [{"timesteps", "seconds", "mean_return"}]}``.
    :param threshold: the return.
    :return: ``(lines, {"threshold", "variants": {name: {"median_minutes" (None when censored), "median", "reached",
        "seeds", "minutes", "followed_minutes", "steps_to_threshold", "reached_by_minute", "ratio_to_first" (this row's
        median over the first row's, None unless both exist)}}})``.
    """
    variants: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        variants.setdefault(record["variant"], []).append(record)
    summary: dict[str, Any] = {"threshold": threshold, "variants": {}}
    lines = ["| variant | median minutes | seeds that reached it | minutes per seed | steps per seed (thousands) |",
             "|---|---|---|---|---|"]  # fmt: skip
    first: float | None = None
    for index, (name, runs) in enumerate(variants.items()):
        minutes = [run["minutes_to_threshold"] for run in runs]
        followed = [run.get("followed_minutes", run.get("seconds", 0.0) / 60) for run in runs]
        steps = [next((e["timesteps"] for e in run["evaluations"] if e["mean_return"] >= threshold), None) for run in runs]
        median = median_minutes(minutes)
        first = median if index == 0 else first
        reached = sum(m is not None for m in minutes)
        cell = median_cell(median, minutes, followed)
        ratio = None if median is None or first is None else median / first
        summary["variants"][name] = dict(median_minutes=median, median=cell, reached=reached, seeds=len(minutes),
                                         minutes=minutes, followed_minutes=followed, steps_to_threshold=steps,
                                         reached_by_minute=reached_by_minute(minutes, followed),
                                         ratio_to_first=ratio)  # fmt: skip
        per_seed = ", ".join("-" if m is None else f"{m:.2f}" for m in minutes)
        per_seed_steps = ", ".join("-" if s is None else f"{s / 1000:.0f}" for s in steps)
        lines.append(f"| {name} | {cell} | {reached}/{len(minutes)} | {per_seed} | {per_seed_steps} |")
    return lines, summary


def summarize(records: list[dict[str, Any]], threshold: float, out: Path) -> dict[str, Any]:
    """Median minutes to the threshold per variant (over seeds that reached it, with the count), a table and a figure."""
    lines, summary = table(records, threshold)
    lines = [f"Time to a mean deterministic evaluation return of {threshold:g} (wall-clock minutes from the start of "
             "training, evaluations included; a seed that never reached it counts as the slowest, and a median that "
             "falls on such a seed is censored: '> T min')", "", *lines]  # fmt: skip
    if records:
        machine = records[0]["machine"]
        lines += ["", f"Machine: {machine['cpu']}, {machine['cores']} cores, torch's default threads "
                  f"({machine['torch_threads']}); commit {machine['commit']}."]  # fmt: skip
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    variants: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        variants.setdefault(record["variant"], []).append(record)
    plot(variants, threshold, out / "curves.png")
    return summary


def plot(variants: dict[str, list[dict[str, Any]]], threshold: float, path: Path) -> None:
    """
    Left: mean evaluation return against wall-clock minutes, one line per run, one colour per variant. Right: the
    fraction of seeds that had reached the threshold by each minute (a step per seed that reached it), as long as every
    seed's state is known (:func:`horizon`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, reached) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    for index, (name, runs) in enumerate(variants.items()):
        color = f"C{index}"
        for number, run in enumerate(runs):
            evaluations = run.get("evaluations", [])
            minutes = [e["seconds"] / 60 for e in evaluations]
            curves.plot(minutes, [e["mean_return"] for e in evaluations], color=color, alpha=0.7,
                        label=f"{name} ({len(runs)} seeds)" if number == 0 else None)  # fmt: skip
        times = [run["minutes_to_threshold"] for run in runs]
        known = horizon(times, [run.get("followed_minutes", run.get("seconds", 0.0) / 60) for run in runs])
        steps = sorted(t for t in times if t is not None and t <= known)
        xs = [0.0, *steps, known]
        ys = [0.0, *(k / len(runs) for k in range(1, len(steps) + 1)), len(steps) / len(runs)]
        reached.step(xs, ys, where="post", color=color, label=f"{name}: {sum(t is not None for t in times)}/{len(runs)}")
    curves.axhline(threshold, color="grey", linestyle="--", linewidth=1)
    curves.set(xlabel="wall-clock minutes (evaluations included)", ylabel="mean evaluation return (10 episodes)")
    curves.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=8)  # below the axes: the curves stay visible
    reached.set(xlabel="wall-clock minutes", ylabel=f"fraction of seeds that reached {threshold:g}", ylim=(-0.02, 1.02))
    reached.axhline(0.5, color="grey", linestyle=":", linewidth=1)  # where a curve crosses it: the median
    reached.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=8)
    save_png(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.time_to_return", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])  # fmt: skip
    parser.add_argument("--env", default="HalfCheetah-v4")
    parser.add_argument("--threshold", type=float, required=True, help="mean evaluation return that ends a run")
    parser.add_argument("--variants", nargs="+", type=parse_variant, default=[("clippedppo", "clippedppo", None)],
                        help="NAME=ALGO[:CONF] (default: clippedppo=clippedppo)")  # fmt: skip
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--max-steps", type=int, default=1_000_000, help="steps of a run that never reaches the threshold")
    parser.add_argument("--time-cap", type=float, help="minutes after which a run stops (a search's trials); default none")
    parser.add_argument("--keep-training", action="store_true",
                        help="train on to --max-steps after reaching the threshold (the final return from the same run)")
    parser.add_argument("--eval-freq", type=int, default=20_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--zoo-args", nargs=argparse.REMAINDER, default=[], help="more rl_zoo3.train arguments (last)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    positive = {"--max-steps": args.max_steps, "--eval-freq": args.eval_freq, "--eval-episodes": args.eval_episodes}
    for name, value in positive.items():
        if value < 1:
            parser.error(f"{name} must be >= 1, got {value}")
    args.out = args.out.resolve()
    records = [run_one(name, algo, conf, seed, args) for seed in args.seeds for name, algo, conf in args.variants]
    summary = summarize(records, args.threshold, args.out)
    print((args.out / "summary.md").read_text())
    return summary


if __name__ == "__main__":
    main()
