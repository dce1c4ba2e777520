"""ClippedPPO's throughput in two checkouts of this repository, alternating in fresh processes: did a change cost speed?

Each measurement is ``python -m benchmarks.throughput --child clippedppo SETTING STEPS REP THREADS`` run from the
checkout's folder (so that it imports that checkout's ``sb3_clippedppo``), after (this checkout) then before, for each
thread setting and setting, ``--reps`` times. The report gives each pair's ratio after / before (median and range).

Example (the check of issue 24's reshaping, against the commit before it)::

    git worktree add /tmp/before 74d0287
    python -m benchmarks.compare_versions --before /tmp/before --reps 5
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.common import ROOT, git_commit, machine_info
from benchmarks.throughput import SETTINGS


def steps_per_second(checkout: Path, setting: str, steps: int, rep: int, threads: str) -> float:
    """ClippedPPO's steps per second for one ``learn`` call in a fresh process of ``checkout``."""
    command = [sys.executable, "-m", "benchmarks.throughput", "--child", "clippedppo", setting, str(steps), str(rep), threads]
    result = subprocess.run(command, cwd=checkout, capture_output=True, text=True, check=True)
    return float(json.loads(result.stdout.strip().splitlines()[-1])["steps_per_s"])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout (e.g. a git worktree)")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=["zoo", "sb3-defaults"])
    parser.add_argument("--threads", nargs="+", default=["default", "1"])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    checkouts = {"after": ROOT, "before": args.before.resolve()}
    figures: dict[tuple[str, str], dict[str, list[float]]] = {}
    for rep in range(args.reps):
        for threads in args.threads:
            for setting in args.settings:
                for name, checkout in checkouts.items():
                    value = steps_per_second(checkout, setting, SETTINGS[setting][1], rep, threads)
                    figures.setdefault((threads, setting), {}).setdefault(name, []).append(value)
                    print(f"rep {rep} threads {threads} {setting} {name}: {value:.0f} steps/s", flush=True)
    machine = machine_info()
    commits = f"after: {git_commit(ROOT)}, before: {git_commit(checkouts['before'])}"
    print(f"\n{commits}; {machine['cpu']}, {machine['cores']} cores")
    summary = {}
    for (threads, setting), values in figures.items():
        ratios = [a / b for a, b in zip(values["after"], values["before"], strict=True)]
        summary[f"{threads}/{setting}"] = statistics.median(ratios)
        print(f"threads {threads}, {setting}: after / before median {statistics.median(ratios):.3f} "
              f"(range {min(ratios):.3f}-{max(ratios):.3f}); steps/s medians {statistics.median(values['after']):.0f} "
              f"and {statistics.median(values['before']):.0f}")  # fmt: skip
    return summary


if __name__ == "__main__":
    main()
