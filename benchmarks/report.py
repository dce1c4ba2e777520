"""Build the benchmark report from a sweep folder written by :mod:`benchmarks.run`.

For every environment: learning curves (mean over seeds with a 95% Student-t interval, against environment steps
and against wall-clock minutes) as a PNG; aggregate statistics with rliable (interquartile mean of the final
evaluation return with a 95% stratified-bootstrap confidence interval, and the probability that ClippedPPO
improves on PPO) as a PNG; and a markdown table (final return mean +- std over seeds, IQM [95% CI], steps to reach
return thresholds, wall-clock minutes per 1M steps, steps per second). ``report.md`` gathers them with the machine,
the package versions and the commands; ``report.json`` holds the numbers. The RL Zoo's own ``all_plots`` results
table is added as a cross-check.

Example::

    python -m benchmarks.report --runs benchmarks/results/sweep --out benchmarks/results/report
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.run import env_folder

# Return thresholds for "steps to reach": the for HalfCheetah-v4; others are informative.
DEFAULT_THRESHOLDS = {"HalfCheetah-v4": [3000, 5000], "dm_control/walker-walk-v0": [500, 800]}
LABELS = {"clippedppo": "ClippedPPO", "ppo": "SB3 PPO", "trpo": "SB3-Contrib TRPO"}
COLORS = {"clippedppo": "tab:blue", "ppo": "tab:orange", "trpo": "tab:green"}
BOOTSTRAP_REPS = 20_000


def load_runs(runs_dir: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Finished runs, as ``{env: {algo: [run, ...]}}`` sorted by seed; each run has its curve and timing."""
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for record_file in sorted((runs_dir / "_runs").glob("*.json")):
        record = json.loads(record_file.read_text())
        if record.get("status") != "finished":
            continue
        run_dir = runs_dir / record["run_dir"]
        evaluations = np.load(run_dir / "evaluations.npz")
        timesteps = evaluations["timesteps"].astype(np.int64)
        returns = evaluations["results"].mean(axis=1)
        run = {**record, "eval_steps": timesteps, "returns": returns, "minutes": eval_minutes(run_dir, timesteps)}
        grouped.setdefault(record["env"], {}).setdefault(record["algo"], []).append(run)
    for by_algo in grouped.values():
        for runs in by_algo.values():
            runs.sort(key=lambda r: r["seed"])
    return grouped


def eval_minutes(run_dir: Path, timesteps: np.ndarray) -> np.ndarray:
    """Wall-clock minutes since the start of training at each evaluation, from the training Monitor file."""
    monitors = sorted(run_dir.glob("*.monitor.csv"))
    if not monitors:
        return np.full(len(timesteps), np.nan)
    data = np.genfromtxt(monitors[0], delimiter=",", skip_header=2, ndmin=2)
    if data.size == 0:
        return np.full(len(timesteps), np.nan)
    steps = np.cumsum(data[:, 1]) * len(monitors)  # with several envs, each Monitor sees 1/n of the steps
    seconds = data[:, 2]
    return np.interp(timesteps, np.concatenate([[0], steps]), np.concatenate([[0], seconds])) / 60.0


def mean_and_interval(curves: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds (axis 0) and the half-width of a Student-t confidence interval of the mean."""
    from scipy import stats

    n = curves.shape[0]
    mean = curves.mean(axis=0)
    if n < 2:
        return mean, np.zeros_like(mean)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * curves.std(axis=0, ddof=1) / np.sqrt(n)
    return mean, half


def aligned(runs: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Common evaluation timesteps of the runs and the ``key`` values there, shape ``(n_runs, n_evals)``."""
    length = min(len(r["eval_steps"]) for r in runs)
    return runs[0]["eval_steps"][:length], np.stack([r[key][:length] for r in runs])


def steps_to_reach(run: dict[str, Any], threshold: float) -> int | None:
    """First evaluation timestep at which the run's mean evaluation return reaches ``threshold``."""
    hits = np.flatnonzero(run["returns"] >= threshold)
    return int(run["eval_steps"][hits[0]]) if len(hits) else None


def rliable_estimates(final_scores: dict[str, np.ndarray], seed: int = 0) -> dict[str, Any]:
    """IQM with 95% stratified-bootstrap CIs per algorithm and P(ClippedPPO > other) for each other algorithm."""
    from rliable import library as rly
    from rliable import metrics

    matrices = {algo: scores.reshape(-1, 1) for algo, scores in final_scores.items()}
    np.random.seed(seed)
    iqm, iqm_ci = rly.get_interval_estimates(matrices, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=BOOTSTRAP_REPS)
    out: dict[str, Any] = {"iqm": {a: float(iqm[a][0]) for a in iqm}, "iqm_ci": {a: iqm_ci[a][:, 0].tolist() for a in iqm_ci}}
    if "clippedppo" in matrices:
        pairs = {
            f"clippedppo,{other}": (matrices["clippedppo"], matrices[other]) for other in matrices if other != "clippedppo"
        }
        if pairs:
            np.random.seed(seed)
            poi, poi_ci = rly.get_interval_estimates(pairs, metrics.probability_of_improvement, reps=BOOTSTRAP_REPS)
            out["probability_of_improvement"] = {k: float(v) for k, v in poi.items()}
            out["probability_of_improvement_ci"] = {k: v.ravel().tolist() for k, v in poi_ci.items()}
    return out


def plot_curves(env: str, by_algo: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_steps, ax_time) = plt.subplots(1, 2, figsize=(12, 4.5))
    for algo, runs in by_algo.items():
        label = f"{LABELS.get(algo, algo)} ({len(runs)} seeds)"
        timesteps, returns = aligned(runs, "returns")
        _, minutes = aligned(runs, "minutes")
        mean, half = mean_and_interval(returns)
        color = COLORS.get(algo)
        ax_steps.plot(timesteps / 1e6, mean, label=label, color=color)
        ax_steps.fill_between(timesteps / 1e6, mean - half, mean + half, alpha=0.25, color=color)
        mean_minutes = np.nanmean(minutes, axis=0)
        ax_time.plot(mean_minutes, mean, label=label, color=color)
        ax_time.fill_between(mean_minutes, mean - half, mean + half, alpha=0.25, color=color)
    ax_steps.set_xlabel("environment steps (millions)")
    ax_time.set_xlabel("wall-clock minutes (mean over seeds; evaluation included)")
    for ax in (ax_steps, ax_time):
        ax.set_ylabel("mean evaluation return")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(f"{env}: deterministic evaluation, mean and 95% t-interval over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_rliable(env: str, final_scores: dict[str, np.ndarray], estimates: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algos = list(final_scores)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
    ax = axes[0]
    for i, algo in enumerate(algos):
        low, high = estimates["iqm_ci"][algo]
        ax.barh(i, high - low, left=low, height=0.6, color=COLORS.get(algo), alpha=0.6)
        ax.plot([estimates["iqm"][algo]] * 2, [i - 0.3, i + 0.3], color="black")
        ax.scatter(final_scores[algo], [i] * len(final_scores[algo]), color="black", s=10, zorder=3)
    ax.set_yticks(range(len(algos)), [LABELS.get(a, a) for a in algos])
    ax.set_xlabel("final return: IQM (line), 95% CI (bar), runs (dots)")
    ax = axes[1]
    pairs = list(estimates.get("probability_of_improvement", {}))
    for i, pair in enumerate(pairs):
        low, high = estimates["probability_of_improvement_ci"][pair]
        ax.barh(i, high - low, left=low, height=0.6, color="tab:purple", alpha=0.6)
        ax.plot([estimates["probability_of_improvement"][pair]] * 2, [i - 0.3, i + 0.3], color="black")
    ax.axvline(0.5, color="gray", linestyle="--")
    ax.set_xlim(0, 1)
    ax.set_yticks(range(len(pairs)), [f"P({LABELS['clippedppo']} > {LABELS.get(p.split(',')[1], p)})" for p in pairs])
    ax.set_xlabel("probability of improvement (95% CI)")
    fig.suptitle(f"{env}: rliable, stratified bootstrap ({BOOTSTRAP_REPS} resamples)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fmt_steps(values: list[int | None]) -> str:
    reached = [v for v in values if v is not None]
    if len(reached) * 2 <= len(values):
        return f"not reached ({len(reached)}/{len(values)} seeds)"
    # Median over seeds, counting a seed that never reached it as infinitely slow
    ordered = sorted(reached) + [None] * (len(values) - len(reached))
    median = ordered[(len(values) - 1) // 2]
    return f"{median / 1e3:.0f}k ({len(reached)}/{len(values)} seeds)"


def env_table(
    env: str, by_algo: dict[str, list[dict[str, Any]]], estimates: dict[str, Any], thresholds: list[float]
) -> list[str]:
    header = ["algorithm", "seeds", "final return (mean ± std)", "IQM [95% CI]"]
    header += [f"steps to {t:g} (median)" for t in thresholds]
    header += ["wall-clock min per 1M steps", "steps/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for algo, runs in by_algo.items():
        finals = np.array([r["returns"][-1] for r in runs])
        low, high = estimates["iqm_ci"][algo]
        minutes = np.mean([r["wall_clock_s"] / 60 * 1e6 / r["timesteps"] for r in runs])
        steps_per_s = np.mean([r["steps_per_s"] for r in runs])
        row = [
            LABELS.get(algo, algo),
            str(len(runs)),
            f"{finals.mean():.0f} ± {finals.std(ddof=1) if len(finals) > 1 else 0:.0f}",
        ]
        row.append(f"{estimates['iqm'][algo]:.0f} [{low:.0f}, {high:.0f}]")
        row += [fmt_steps([steps_to_reach(r, t) for r in runs]) for t in thresholds]
        row += [f"{minutes:.1f}", f"{steps_per_s:.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    for pair, value in estimates.get("probability_of_improvement", {}).items():
        low, high = estimates["probability_of_improvement_ci"][pair]
        other = LABELS.get(pair.split(",")[1], pair)
        lines.append(f"\nProbability of improvement P(ClippedPPO > {other}) = {value:.2f} [95% CI {low:.2f}, {high:.2f}]")
    return lines


def zoo_results_table(runs_dir: Path, envs: list[str], algos: list[str], out: Path) -> str:
    """The RL Zoo's own ``all_plots`` results table (mean final return +- standard error), as a cross-check."""
    command = [sys.executable, "-m", "rl_zoo3.plots.all_plots", "-a", *algos, "-e", *envs, "-f", str(runs_dir),
               "-o", str(out / "zoo_all_plots"), "--no-display"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env={"MPLBACKEND": "Agg", **__import__("os").environ})
    if result.returncode != 0:
        return f"(all_plots failed: {result.stderr.strip().splitlines()[-1] if result.stderr else result.returncode})"
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    return "\n".join(table)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="sweep folder written by benchmarks.run")
    parser.add_argument("--out", type=Path, required=True, help="folder for the report (created; files are replaced)")
    parser.add_argument("--threshold", action="append", default=[], metavar="ENV=T1,T2", help="return thresholds")
    args = parser.parse_args(argv)
    thresholds = dict(DEFAULT_THRESHOLDS)
    for item in args.threshold:
        env, values = item.split("=", 1)
        thresholds[env] = [float(v) for v in values.split(",")]

    grouped = load_runs(args.runs)
    if not grouped:
        parser.error(f"no finished runs in {args.runs / '_runs'}")
    args.out.mkdir(parents=True, exist_ok=True)
    records = [r for by_algo in grouped.values() for runs in by_algo.values() for r in runs]
    machine = records[0]["machine"]
    command = "python -m benchmarks.report " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        "# ClippedPPO vs Stable-Baselines3 PPO",
        "",
        f"Report: `{command}`. Runs: `{args.runs}` (one record per run in `_runs/`, with its exact command).",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine.get('jobs', '?')} runs in parallel, "
        f"1 torch thread per run; Python {machine['python']}; code commit {machine['commit']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()) + ".",
        "",
        "Evaluation: deterministic policy, every 20k steps (unless the runs' records say otherwise), mean over the "
        "evaluation episodes; 'final' is the last evaluation. Curves: mean over seeds, shaded 95% Student-t interval. "
        f"IQM and probability of improvement: rliable, stratified bootstrap with {BOOTSTRAP_REPS} resamples. Wall-clock "
        "time includes the periodic evaluations and was measured with runs sharing the machine's cores.",
        "",
    ]
    numbers: dict[str, Any] = {"command": command, "machine": machine, "envs": {}}
    for env, by_algo in grouped.items():
        final_scores = {algo: np.array([r["returns"][-1] for r in runs]) for algo, runs in by_algo.items()}
        estimates = rliable_estimates(final_scores)
        curves_png = args.out / f"curves_{env_folder(env)}.png"
        rliable_png = args.out / f"rliable_{env_folder(env)}.png"
        plot_curves(env, by_algo, curves_png)
        plot_rliable(env, final_scores, estimates, rliable_png)
        table = env_table(env, by_algo, estimates, thresholds.get(env, []))
        steps = sorted({int(r["timesteps"]) for runs in by_algo.values() for r in runs})
        lines += [f"## {env} ({', '.join(f'{s / 1e6:g}M' for s in steps)} steps)", "", *table, ""]
        lines += [f"![learning curves]({curves_png.name})", "", f"![rliable]({rliable_png.name})", ""]
        numbers["envs"][env] = {
            "final_returns": {a: s.tolist() for a, s in final_scores.items()},
            "seeds": {a: [r["seed"] for r in runs] for a, runs in by_algo.items()},
            **estimates,
            "steps_to_threshold": {
                str(t): {a: [steps_to_reach(r, t) for r in runs] for a, runs in by_algo.items()}
                for t in thresholds.get(env, [])
            },
            "wall_clock_min_per_1m": {
                a: [r["wall_clock_s"] / 60 * 1e6 / r["timesteps"] for r in runs] for a, runs in by_algo.items()
            },
            "steps_per_s": {a: [r["steps_per_s"] for r in runs] for a, runs in by_algo.items()},
        }
    algos = sorted({a for by_algo in grouped.values() for a in by_algo})
    lines += ["## RL Zoo `all_plots` results table (cross-check: final return, mean +- standard error)", ""]
    lines += [zoo_results_table(args.runs, list(grouped), algos, args.out), ""]
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    (args.out / "report.json").write_text(json.dumps(numbers, indent=2) + "\n")
    print("\n".join(lines))
    return numbers


if __name__ == "__main__":
    main()
