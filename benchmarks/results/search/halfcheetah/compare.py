"""The HalfCheetah-v4 candidates' numbers in the READMEs (issue 11): final returns, IQM and probability of improvement
(rliable, as ``benchmarks.report`` computes them) against SB3 PPO and plain ClippedPPO (the sweep, seeds 0-4) and against
plain ClippedPPO on the candidates' own seeds 5-9 (``control_plain_seeds5-9/``).

Run from the repository root: ``python -m benchmarks.results.search.halfcheetah.compare``.
"""

import json
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT
from benchmarks.report import rliable_estimates

RESULTS = ROOT / "benchmarks" / "results"
HERE = Path(__file__).parent
CANDIDATES = {
    "normalize_observations": RESULTS / "tuned",
    "kl_adaptive_lr": HERE / "validation_kl_adaptive_lr",
    "kl_adaptive_lr + normalize_observations": HERE / "validation_kl_adaptive_lr_normobs",
}


def finals(sweep: Path, algo: str = "clippedppo") -> np.ndarray:
    """Final returns (last evaluation) of a sweep's HalfCheetah-v4 runs, ordered by seed."""
    by_seed = {}
    for path in (sweep / "_runs").glob(f"{algo}__HalfCheetah-v4__seed*.json"):
        record = json.loads(path.read_text())
        by_seed[record["seed"]] = np.load(sweep / record["run_dir"] / "evaluations.npz")["results"][-1].mean()
    return np.array([by_seed[seed] for seed in sorted(by_seed)])


def main() -> None:
    scores = {
        "SB3 PPO (seeds 0-4)": finals(RESULTS / "sweep", "ppo"),
        "ClippedPPO (seeds 0-4)": finals(RESULTS / "sweep"),
        "ClippedPPO (seeds 5-9)": finals(HERE / "control_plain_seeds5-9"),
        **{name: finals(folder) for name, folder in CANDIDATES.items()},
    }
    references = ("SB3 PPO (seeds 0-4)", "ClippedPPO (seeds 0-4)", "ClippedPPO (seeds 5-9)")
    estimates = rliable_estimates(scores, [(name, ref) for name in CANDIDATES for ref in references])
    for name, values in scores.items():
        low, high = estimates["iqm_ci"][name]
        print(f"{name}: {np.round(values).tolist()}, {values.mean():.0f} ± {values.std(ddof=1):.0f}, "
              f"IQM {estimates['iqm'][name]:.0f} [{low:.0f}, {high:.0f}]")  # fmt: skip
    for pair, value in estimates["probability_of_improvement"].items():
        low, high = estimates["probability_of_improvement_ci"][pair]
        print(f"P({pair.replace(',', ' > ')}) = {value:.2f} [{low:.2f}, {high:.2f}]")


if __name__ == "__main__":
    main()
