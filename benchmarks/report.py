"""Build the benchmark report from sweep folders written by :mod:`benchmarks.run` (and :mod:`benchmarks.options`).

For every environment: learning curves (mean over seeds with a 95% Student-t interval, against environment steps
and against wall-clock minutes) as a PNG; aggregate statistics with rliable (interquartile mean of the final
evaluation return with a 95% stratified-bootstrap confidence interval, and the probability of improvement) as a PNG;
and a markdown table (final return mean +- std over seeds, IQM [95% CI], steps to reach return thresholds,
wall-clock minutes per 1M steps, steps per second). Sweep folders given with a label (``DIR=LABEL``) hold option
rows of ClippedPPO; they get a section per environment of their own, each option against plain ClippedPPO.
``report.md`` gathers everything with the machine, the package versions and the commands; ``report.json`` holds the
numbers. The RL Zoo's own ``all_plots`` results table is added as a cross-check.

Example::

    python -m benchmarks.report --runs benchmarks/results/sweep --out benchmarks/results/report \\
        --runs benchmarks/results/options/vf_lr=vf_lr
"""

import argparse
import json
import os
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
OPTION_COLORS = ["tab:purple", "tab:red", "tab:brown", "tab:olive", "tab:cyan", "tab:pink"]
BOOTSTRAP_REPS = 20_000

Runs = dict[str, list[dict[str, Any]]]


def label_of(key: str) -> str:
    """Display name of an algorithm key: ``clippedppo``, ``ppo``, or ``clippedppo[option]`` for an option row."""
    if "[" in key:
        algo, option = key.rstrip("]").split("[", 1)
        return f"{LABELS.get(algo, algo)} + {option}"
    return LABELS.get(key, key)


def load_runs(runs_dirs: list[tuple[Path, str | None]]) -> dict[str, Runs]:
    """
    Finished runs of one or more sweep folders, as ``{env: {key: [run, ...]}}`` sorted by seed, where ``key`` is the
    algorithm, or ``algorithm[label]`` for a folder given with a label; each run has its curve and timing.
    """
    grouped: dict[str, Runs] = {}
    for runs_dir, label in runs_dirs:
        for record_file in sorted((runs_dir / "_runs").glob("*.json")):
            record = json.loads(record_file.read_text())
            if record.get("status") != "finished" or (label is not None and record["algo"] != "clippedppo"):
                continue  # unfinished, or not a ClippedPPO run in an option folder
            run_dir = runs_dir / record["run_dir"]
            if not (run_dir / "evaluations.npz").exists():
                print(f"skipped {run_dir}: no evaluations.npz (trained without --eval-freq)", file=sys.stderr)
                continue
            evaluations = np.load(run_dir / "evaluations.npz")
            timesteps = evaluations["timesteps"].astype(np.int64)
            returns = evaluations["results"].mean(axis=1)
            run = {**record, "eval_steps": timesteps, "returns": returns, "minutes": eval_minutes(run_dir, timesteps)}
            key = record["algo"] if label is None else f"{record['algo']}[{label}]"
            grouped.setdefault(record["env"], {}).setdefault(key, []).append(run)
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


def rliable_estimates(final_scores: dict[str, np.ndarray], pairs: list[tuple[str, str]], seed: int = 0) -> dict[str, Any]:
    """
    IQM with 95% stratified-bootstrap confidence intervals per algorithm, and the probability of improvement
    ``P(A > B)`` (with its interval) for each pair ``(A, B)``.
    """
    from rliable import library as rly
    from rliable import metrics

    matrices = {algo: scores.reshape(-1, 1) for algo, scores in final_scores.items()}
    np.random.seed(seed)
    iqm, iqm_ci = rly.get_interval_estimates(matrices, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=BOOTSTRAP_REPS)
    out: dict[str, Any] = {
        "iqm": {a: float(iqm[a][0]) for a in iqm},
        "iqm_ci": {a: iqm_ci[a][:, 0].tolist() for a in iqm_ci},
        "probability_of_improvement": {},
        "probability_of_improvement_ci": {},
    }
    pairs = [(a, b) for a, b in pairs if a in matrices and b in matrices]
    if pairs:
        np.random.seed(seed)
        scores = {f"{a},{b}": (matrices[a], matrices[b]) for a, b in pairs}
        poi, poi_ci = rly.get_interval_estimates(scores, metrics.probability_of_improvement, reps=BOOTSTRAP_REPS)
        out["probability_of_improvement"] = {k: float(v) for k, v in poi.items()}
        out["probability_of_improvement_ci"] = {k: v.ravel().tolist() for k, v in poi_ci.items()}
    return out


def rank_test_p_value(a: np.ndarray, b: np.ndarray) -> float:
    """
    Two-sided exact Mann-Whitney U test of final returns ``a`` against ``b`` (the test whose statistic, divided by
    ``len(a) * len(b)``, is the probability of improvement P(a > b)). With 3 runs against 3 the smallest possible
    p-value is 0.10; with 3 against 5, 0.036.
    """
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(a, b, alternative="two-sided", method="exact").pvalue)


def identical_on_shared_seeds(runs: list[dict[str, Any]], plain: list[dict[str, Any]]) -> bool:
    """Whether every run's evaluation returns equal those of the plain run with the same seed (all seeds shared)."""
    plain_by_seed = {r["seed"]: r for r in plain}
    return all(r["seed"] in plain_by_seed and np.array_equal(r["returns"], plain_by_seed[r["seed"]]["returns"]) for r in runs)


NEVER_ACTED = "no difference: every run equals plain ClippedPPO's run of the same seed (the option never acted)"


def option_verdict(probability: float, p_value: float, alpha: float = 0.05) -> str:
    """
    Whether an option helps, hurts or makes no clear difference against plain ClippedPPO: "helps" or "hurts" (by the
    sign of ``probability - 0.5``, the probability of improvement) when the rank test's ``p_value`` is below ``alpha``,
    otherwise "no clear difference" with the figures that say which way the runs lean.
    """
    if p_value < alpha and probability != 0.5:
        return f"{'helps' if probability > 0.5 else 'hurts'} (P = {probability:.2f}, rank test p = {p_value:.3f})"
    return f"no clear difference (P = {probability:.2f}, rank test p = {p_value:.2f})"


def color_of(key: str, keys: list[str]) -> str | None:
    options = [k for k in keys if "[" in k]
    return OPTION_COLORS[options.index(key) % len(OPTION_COLORS)] if key in options else COLORS.get(key)


def plot_curves(title: str, by_algo: Runs, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_steps, ax_time) = plt.subplots(1, 2, figsize=(12, 4.5))
    lowest, highest = np.inf, -np.inf
    for algo, runs in by_algo.items():
        label = f"{label_of(algo)} ({len(runs)} seeds)"
        timesteps, returns = aligned(runs, "returns")
        _, minutes = aligned(runs, "minutes")
        mean, half = mean_and_interval(returns)
        lowest, highest = min(lowest, returns.min()), max(highest, returns.max())
        color = color_of(algo, list(by_algo))
        ax_steps.plot(timesteps / 1e6, mean, label=label, color=color)
        ax_steps.fill_between(timesteps / 1e6, mean - half, mean + half, alpha=0.25, color=color)
        mean_minutes = np.nanmean(minutes, axis=0)
        ax_time.plot(mean_minutes, mean, label=label, color=color)
        ax_time.fill_between(mean_minutes, mean - half, mean + half, alpha=0.25, color=color)
    ax_steps.set_xlabel("environment steps (millions)")
    ax_time.set_xlabel("wall-clock minutes (mean over seeds; evaluation included)")
    margin = 0.05 * (highest - lowest)
    for ax in (ax_steps, ax_time):
        # The range of the individual runs' curves (an interval from few seeds may reach beyond it)
        ax.set_ylim(lowest - margin, highest + margin)
        ax.set_ylabel("mean evaluation return")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{title}: deterministic evaluation, mean and 95% t-interval over seeds (y: range of the runs)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_rliable(title: str, final_scores: dict[str, np.ndarray], estimates: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algos = list(final_scores)
    pairs = list(estimates["probability_of_improvement"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 1.2 + 0.55 * max(len(algos), len(pairs), 2)))
    ax = axes[0]
    for i, algo in enumerate(algos):
        low, high = estimates["iqm_ci"][algo]
        ax.barh(i, high - low, left=low, height=0.6, color=color_of(algo, algos), alpha=0.6)
        ax.plot([estimates["iqm"][algo]] * 2, [i - 0.3, i + 0.3], color="black")
        ax.scatter(final_scores[algo], [i] * len(final_scores[algo]), color="black", s=10, zorder=3)
    ax.set_yticks(range(len(algos)), [label_of(a) for a in algos])
    ax.set_xlabel("final return: IQM (line), 95% CI (bar), runs (dots)")
    ax = axes[1]
    for i, pair in enumerate(pairs):
        low, high = estimates["probability_of_improvement_ci"][pair]
        ax.barh(i, high - low, left=low, height=0.6, color="tab:purple", alpha=0.6)
        ax.plot([estimates["probability_of_improvement"][pair]] * 2, [i - 0.3, i + 0.3], color="black")
    ax.axvline(0.5, color="gray", linestyle="--")
    ax.set_xlim(0, 1)
    ax.set_yticks(range(len(pairs)), [f"P({label_of(p.split(',')[0])} > {label_of(p.split(',')[1])})" for p in pairs])
    ax.set_xlabel("probability of improvement (95% CI)")
    fig.suptitle(f"{title}: rliable, stratified bootstrap ({BOOTSTRAP_REPS} resamples)")
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


def env_table(by_algo: Runs, estimates: dict[str, Any], thresholds: list[float]) -> list[str]:
    header = ["algorithm", "seeds", "final return (mean ± std)", "IQM [95% CI]"]
    header += [f"steps to {t:g} (median)" for t in thresholds]
    header += ["wall-clock min per 1M steps", "steps/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for algo, runs in by_algo.items():
        finals = np.array([r["returns"][-1] for r in runs])
        low, high = estimates["iqm_ci"][algo]
        minutes = np.mean([r["wall_clock_s"] / 60 * 1e6 / r["timesteps"] for r in runs])
        steps_per_s = np.mean([r["steps_per_s"] for r in runs])
        spread = finals.std(ddof=1) if len(finals) > 1 else 0.0
        row = [label_of(algo), str(len(runs)), f"{finals.mean():.0f} ± {spread:.0f}"]
        row.append(f"{estimates['iqm'][algo]:.0f} [{low:.0f}, {high:.0f}]")
        row += [fmt_steps([steps_to_reach(r, t) for r in runs]) for t in thresholds]
        row += [f"{minutes:.1f}", f"{steps_per_s:.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    for pair, value in estimates["probability_of_improvement"].items():
        low, high = estimates["probability_of_improvement_ci"][pair]
        a, b = (label_of(k) for k in pair.split(","))
        lines.append(f"- Probability of improvement P({a} > {b}) = {value:.2f} [95% CI {low:.2f}, {high:.2f}]")
    return lines


def zoo_results_table(runs_dir: Path, envs: list[str], algos: list[str], out: Path) -> str:
    """
    The RL Zoo's own ``all_plots`` results table (mean final return +- standard error), as a cross-check; ``envs`` are
    the Zoo's folder names (``all_plots`` matches them against the run folders).
    """
    command = [sys.executable, "-m", "rl_zoo3.plots.all_plots", "-a", *algos, "-e", *envs, "-f", str(runs_dir),
               "-o", str(out / "zoo_all_plots"), "--no-display"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "Agg"})
    if result.returncode != 0:
        return f"(all_plots failed: {result.stderr.strip().splitlines()[-1] if result.stderr else result.returncode})"
    return "\n".join(line for line in result.stdout.splitlines() if line.startswith("|"))


def env_section(
    env: str, by_algo: Runs, pairs: list[tuple[str, str]], thresholds: list[float], out: Path, stem: str
) -> tuple[list[str], dict]:
    """Figures, table and numbers for one environment and a set of algorithms."""
    final_scores = {algo: np.array([r["returns"][-1] for r in runs]) for algo, runs in by_algo.items()}
    estimates = rliable_estimates(final_scores, pairs)
    curves_png, rliable_png = out / f"curves_{stem}.png", out / f"rliable_{stem}.png"
    plot_curves(env, by_algo, curves_png)
    plot_rliable(env, final_scores, estimates, rliable_png)
    lines = [*env_table(by_algo, estimates, thresholds), ""]
    lines += [f"![learning curves]({curves_png.name})", "", f"![rliable]({rliable_png.name})", ""]
    numbers = {
        "final_returns": {a: s.tolist() for a, s in final_scores.items()},
        "seeds": {a: [r["seed"] for r in runs] for a, runs in by_algo.items()},
        **estimates,
        "steps_to_threshold": {
            str(t): {a: [steps_to_reach(r, t) for r in runs] for a, runs in by_algo.items()} for t in thresholds
        },
        "wall_clock_min_per_1m": {
            a: [r["wall_clock_s"] / 60 * 1e6 / r["timesteps"] for r in runs] for a, runs in by_algo.items()
        },
        "steps_per_s": {a: [r["steps_per_s"] for r in runs] for a, runs in by_algo.items()},
        "commands": {a: [r["command"] for r in runs] for a, runs in by_algo.items()},
    }
    return lines, numbers


def parse_runs_argument(value: str) -> tuple[Path, str | None]:
    path, _, label = value.partition("=")
    return Path(path), (label or None)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", action="append", required=True, type=parse_runs_argument, metavar="DIR[=LABEL]",
                        help="a sweep folder; with =LABEL, its ClippedPPO runs are the option LABEL (repeatable)")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="folder for the report (created if needed)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report in --out")
    parser.add_argument("--threshold", action="append", default=[], metavar="ENV=T1,T2", help="return thresholds")
    args = parser.parse_args(argv)
    thresholds = dict(DEFAULT_THRESHOLDS)
    for item in args.threshold:
        env, values = item.split("=", 1)
        thresholds[env] = [float(v) for v in values.split(",")]

    if (args.out / "report.md").exists() and not args.overwrite:
        parser.error(f"{args.out / 'report.md'} exists; pass --overwrite to replace the report")
    grouped = load_runs(args.runs)
    if not grouped:
        parser.error(f"no finished runs in {[str(d / '_runs') for d, _ in args.runs]}")
    args.out.mkdir(parents=True, exist_ok=True)
    records = [r for by_algo in grouped.values() for runs in by_algo.values() for r in runs]
    machine = records[0]["machine"]
    command = "python -m benchmarks.report " + " ".join(sys.argv[1:] if argv is None else argv)
    commits = sorted({r["machine"]["commit"] for r in records})
    lines = [
        "# ClippedPPO vs Stable-Baselines3 PPO",
        "",
        f"Report: `{command}`. Each run's exact command is in its record, `<sweep>/_runs/<algo>__<env>__seed<n>.json`.",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine.get('jobs', '?')} run(s) in parallel per sweep, "
        f"1 torch thread per run; Python {machine['python']}; code commit(s) of the runs: {', '.join(commits)}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()) + ".",
        "",
        "Evaluation: deterministic policy, every 20k steps on 10 episodes (unless a run's command says otherwise); "
        "'final' is the last evaluation. Curves: mean over seeds, shaded 95% Student-t interval. IQM and probability "
        f"of improvement: rliable, stratified bootstrap with {BOOTSTRAP_REPS} resamples. Wall-clock time includes the "
        "periodic evaluations and was measured while other runs shared the machine's 2 cores.",
        "",
    ]
    numbers: dict[str, Any] = {"command": command, "machine": machine, "envs": {}}
    for env, by_algo in grouped.items():
        main_rows = {k: v for k, v in by_algo.items() if "[" not in k}
        option_rows = {k: v for k, v in by_algo.items() if "[" in k}
        steps = sorted({int(r["timesteps"]) for runs in main_rows.values() for r in runs})
        if main_rows:
            pairs = [("clippedppo", other) for other in main_rows if other != "clippedppo"]
            section, numbers["envs"][env] = env_section(
                env, main_rows, pairs, thresholds.get(env, []), args.out, env_folder(env)
            )
            lines += [f"## {env} ({', '.join(f'{s / 1e6:g}M' for s in steps)} steps)", "", *section]
            estimates = numbers["envs"][env]
            if "clippedppo" in estimates["iqm"] and "ppo" in estimates["iqm"]:
                iqm, bound = estimates["iqm"]["clippedppo"], estimates["iqm_ci"]["ppo"][0]
                estimates["criterion_clippedppo_iqm_at_least_ppo_lower_bound"] = iqm >= bound
                verdict = "met" if iqm >= bound else "NOT met"
                lines += [
                    f"Criterion, ClippedPPO's final IQM >= SB3 PPO's lower 95% bound: {iqm:.0f} vs {bound:.0f}, {verdict}.",
                    "",
                ]
        if option_rows:
            rows = {**({"clippedppo": by_algo["clippedppo"]} if "clippedppo" in by_algo else {}), **option_rows}
            pairs = [(option, "clippedppo") for option in option_rows]
            stem = f"options_{env_folder(env)}"
            section, numbers["envs"][f"{env} options"] = env_section(env, rows, pairs, thresholds.get(env, []), args.out, stem)
            lines += [f"## {env}: ClippedPPO's options against plain ClippedPPO", "", *section]
            option_numbers = numbers["envs"][f"{env} options"]
            option_numbers["verdicts"], option_numbers["rank_test_p"] = {}, {}
            lines += [
                "Verdict per option: helps or hurts when the two-sided exact rank test (Mann-Whitney U) of its final "
                "returns against plain ClippedPPO's gives p < 0.05, otherwise no clear difference; P is the "
                "probability of improvement (0.5: none, 1: every option run above every plain run).",
                "",
            ]
            finals = option_numbers["final_returns"]
            for option, _ in pairs:
                pair = f"{option},clippedppo"
                if pair in option_numbers["probability_of_improvement"]:
                    p_value = rank_test_p_value(np.array(finals[option]), np.array(finals["clippedppo"]))
                    if identical_on_shared_seeds(rows[option], rows["clippedppo"]):
                        verdict = NEVER_ACTED
                    else:
                        verdict = option_verdict(option_numbers["probability_of_improvement"][pair], p_value)
                    option_numbers["rank_test_p"][option], option_numbers["verdicts"][option] = p_value, verdict
                    lines.append(f"- {label_of(option)}: {verdict}")
            lines.append("")
    main_dirs = [d for d, label in args.runs if label is None]
    if main_dirs:
        algos = sorted(
            {r["algo"] for by_algo in grouped.values() for k, runs in by_algo.items() if "[" not in k for r in runs}
        )
        lines += ["## RL Zoo `all_plots` results table (cross-check: final return, mean +- standard error)", ""]
        lines += [zoo_results_table(main_dirs[0], [env_folder(env) for env in grouped], algos, args.out), ""]
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    (args.out / "report.json").write_text(json.dumps(numbers, indent=2) + "\n")
    print("\n".join(lines))
    return numbers


if __name__ == "__main__":
    main()
