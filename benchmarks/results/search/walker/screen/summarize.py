"""The table of README.md beside this file: per run, the mean of its last five evaluations up to 1.1M steps.

Run from the repository root: ``python benchmarks/results/search/walker/screen/summarize.py``.
"""

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parents[2]
STEPS = 1_100_000  # the step every screen run reached


def score(evaluations: Path) -> float:
    """Mean return of the five evaluations ending at ``STEPS`` (mean over each evaluation's episodes)."""
    data = np.load(evaluations)
    end = int(np.searchsorted(data["timesteps"], STEPS)) + 1
    return float(data["results"][end - 5 : end].mean())


def shipped(sweep: Path) -> list[float]:
    """Seeds 0-2 of the shipped walker entry in a sweep folder of the runner."""
    runs = [
        json.loads((sweep / "_runs" / f"clippedppo__dm_control-walker-walk-v0__seed{s}.json").read_text()) for s in (0, 1, 2)
    ]
    return [score(sweep / run["run_dir"] / "evaluations.npz") for run in runs]


rows = {
    "shipped entry (tuned/)": shipped(RESULTS / "tuned"),
    "shipped entry (options/kl_penalty/)": shipped(RESULTS / "options" / "kl_penalty"),
}
for name in ("logstd", "lrdecay", "wide", "wide_logstd", "wide_logstd_lrdecay"):
    rows[name] = [score(HERE / "partial" / f"{name}_seed{s}" / "evaluations.npz") for s in (0, 1, 2)]
for name, scores in rows.items():
    print(f"| {name} | " + " | ".join(f"{v:.0f}" for v in scores) + f" | {np.mean(scores):.0f} |")
