"""Build the benchmark report from the dataset (:mod:`benchmarks.dataset`), or from sweep folders of :mod:`benchmarks.run`.

For every environment: the RL Zoo's learning curves (``rl_zoo3.plots.all_plots``: mean evaluation return against
steps, shaded standard error), our curves against wall-clock minutes (which the Zoo does not draw), rliable's
interval-estimate and probability-of-improvement figures (IQM of the final evaluation return with a 95%
stratified-bootstrap confidence interval; P(A > B)), and a markdown table (final return mean +- std over seeds,
IQM [95% CI], steps to reach return thresholds, wall-clock minutes per 1M steps, steps per second). Option variants
(``--option``) are ClippedPPO rows; they get a section per environment of their own, each option against plain
ClippedPPO, with a verdict from an exact rank test; the tuned variant (``--tuned``) gets a section against SB3 PPO and
plain ClippedPPO; the time-to-return variants (``--time-to-return``, runs of :mod:`benchmarks.time_to_return`) get a
table and a figure of wall-clock minutes to a return. ``report.md`` gathers everything with the machines, nodes,
package versions and commits of the runs; ``report.json`` holds the numbers (and every run's command); the Zoo's
``all_plots`` results table is added as a cross-check (the Zoo's code reads run folders: the dataset's runs are written
as such to a scratch folder first).

The committed report, from ``benchmarks/results/`` (variants ``default``, the seven options, ``tuned``, the candidates
and issue 25's time-to-return rows), into
``benchmarks/results/report/``::

    python -m benchmarks.report --overwrite

Other variants of the dataset, or sweep folders instead of the dataset (``DIR=LABEL``: an option row)::

    python -m benchmarks.report --main default --option vf_lr --option kl_penalty --out /tmp/report
    python -m benchmarks.report --runs /tmp/sweep --runs /tmp/options/vf_lr=vf_lr --out /tmp/report
"""

import argparse
import contextlib
import io
import json
import re
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from benchmarks import dataset as data
from benchmarks import time_to_return
from benchmarks.builder import env_folder, save_png
from benchmarks.run import ZOO_LEFT_OUT, entry_timesteps, zoo_benchmark_entries

# Return thresholds for "steps to reach": the for HalfCheetah-v4; others are informative.
DEFAULT_THRESHOLDS = {"HalfCheetah-v4": [3000, 5000], "dm_control/walker-walk-v0": [500, 800]}
# Where a missed target's evidence is kept (the search's studies, screens and validations, issue 11)
SEARCH_EVIDENCE = "`benchmarks/results/search/README.md`"
# Tuned ClippedPPO (--tuned): the return whose first reaching is timed, and the IQM the tuning aims at
TIME_TO_RETURN = {"HalfCheetah-v4": 5000.0, "dm_control/walker-walk-v0": 600.0}
TUNED_TARGETS = {"HalfCheetah-v4": 6000.0, "dm_control/walker-walk-v0": 700.0}
LABELS = {"clippedppo": "ClippedPPO", "ppo": "SB3 PPO", "trpo": "SB3-Contrib TRPO"}
BOOTSTRAP_REPS = 20_000

COMMITTED = data.COMMITTED  # the committed report's variants

Runs = dict[str, list[dict[str, Any]]]


def label_of(key: str) -> str:
    """Display name of an algorithm key: ``clippedppo``, ``ppo``, or ``clippedppo[option]`` for an option row."""
    if "[" in key:
        algo, option = key.rstrip("]").split("[", 1)
        return f"{LABELS.get(algo, algo)} + {option}"
    return LABELS.get(key, key)


def load_runs(runs: list[dict[str, Any]], main: str | None, labelled: list[tuple[str, str]]) -> dict[str, Runs]:
    """
    Finished runs of the dataset's variants, as ``{env: {key: [run, ...]}}`` sorted by seed, where ``key`` is the
    algorithm for the runs of variant ``main``, and ``clippedppo[label]`` for the ClippedPPO runs of each
    ``(variant, label)`` in ``labelled``; each run has its curve (``eval_steps``, ``returns``) and ``minutes``.

    :param runs: the dataset's runs (:func:`benchmarks.dataset.load`).
    :param main: the variant of the main rows (both algorithms), or None.
    :param labelled: ``(variant, label)`` of the option rows (``tuned``: the tuned rows).
    """
    grouped: dict[str, Runs] = {}
    selection = ([(main, None)] if main is not None else []) + list(labelled)
    for variant, label in selection:
        chosen = [r for r in runs if r["variant"] == variant and r["status"] == "finished" and len(r["eval_steps"])]
        if label is not None:
            chosen = [r for r in chosen if r["algo"] == "clippedppo"]  # only ClippedPPO runs are option rows
        for run in sorted(chosen, key=lambda r: (r["algo"], r["env"], r["seed"])):
            key = run["algo"] if label is None else f"{run['algo']}[{label}]"
            grouped.setdefault(run["env"], {}).setdefault(key, []).append({**run, "minutes": run["eval_seconds"] / 60.0})
    for by_algo in grouped.values():
        for group in by_algo.values():
            group.sort(key=lambda r: r["seed"])
    return grouped


def aligned(runs: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Common evaluation timesteps of the runs and the ``key`` values there, shape ``(n_runs, n_evals)``."""
    length = min(len(r["eval_steps"]) for r in runs)
    return runs[0]["eval_steps"][:length], np.stack([r[key][:length] for r in runs])


def steps_to_reach(run: dict[str, Any], threshold: float) -> int | None:
    """First evaluation timestep at which the run's mean evaluation return reaches ``threshold``."""
    hits = np.flatnonzero(run["returns"] >= threshold)
    return int(run["eval_steps"][hits[0]]) if len(hits) else None


def rliable_estimates(
    final_scores: dict[str, np.ndarray], pairs: list[tuple[str, str]], seed: int = 0, reps: int = BOOTSTRAP_REPS
) -> dict[str, Any]:
    """
    IQM with 95% stratified-bootstrap confidence intervals per algorithm, and the probability of improvement
    ``P(A > B)`` (with its interval) for each pair ``(A, B)``.
    """
    from rliable import library as rly
    from rliable import metrics

    matrices = {algo: scores.reshape(-1, 1) for algo, scores in final_scores.items()}
    np.random.seed(seed)
    iqm, iqm_ci = rly.get_interval_estimates(matrices, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps)
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
        poi, poi_ci = rly.get_interval_estimates(scores, metrics.probability_of_improvement, reps=reps)
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


def zoo_layout(runs: list[dict[str, Any]], root: Path) -> Path:
    """
    Write runs from the dataset as the Zoo lays out its outputs, ``<root>/<algo>/<env folder>_<n>/evaluations.npz``
    (``timesteps``, ``results``, ``ep_lengths``), for the Zoo's ``all_plots``; returns ``root``.
    """
    counts: Counter = Counter()
    for run in runs:
        key = (run["algo"], env_folder(run["env"]))
        counts[key] += 1
        run_dir = root / run["algo"] / f"{key[1]}_{counts[key]}"
        run_dir.mkdir(parents=True)
        np.savez(run_dir / "evaluations.npz", timesteps=run["eval_steps"], results=run["episode_returns"],
                 ep_lengths=run["episode_lengths"])  # fmt: skip
    return root


def zoo_curves(
    folders: list[tuple[Path, str]], options: set[str], algos: list[str], envs: list[str], out: Path, stem: str
) -> str:
    """
    The RL Zoo's ``all_plots`` on Zoo output folders: saves its learning-curve figure of each environment as
    ``curves_<stem><env folder>.png`` (legend in this report's names) and returns its markdown results table.

    :param folders: ``(folder, label)`` pairs (:func:`zoo_layout`); an option's label is its name, the main rows' their
        variant.
    :param options: the labels that are options of ClippedPPO.
    :param algos: the Zoo's algorithm names.
    :param envs: the environments' Zoo folder names (``all_plots`` matches them against the run folders).
    :param out: the report's folder.
    :param stem: prefix of the figures' names after ``curves_``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rl_zoo3.plots.all_plots import all_plots

    argv = ["all_plots", "-a", *algos, "-e", *envs, "-f", *(str(f) for f, _ in folders),
            "-l", *(label for _, label in folders), "--no-display"]  # fmt: skip
    plt.close("all")
    with mock.patch.object(sys, "argv", argv), contextlib.redirect_stdout(io.StringIO()) as printed:
        all_plots()
    for env in envs:
        fig = plt.figure(f"Results {env}")
        for line in fig.axes[0].get_lines():
            algo, label = line.get_label().split("-", 1)
            line.set_label(label_of(f"{algo.lower()}[{label}]" if label in options else algo.lower()))
        fig.axes[0].legend()
        fig.axes[0].set_ylabel("evaluation return (mean, standard error)")
        fig.tight_layout()
        save_png(fig, out / f"curves_{stem}{env}.png", dpi=110)
    plt.close("all")
    return "\n".join(line for line in printed.getvalue().splitlines() if line.startswith("|"))


def plot_wall_clock(title: str, by_algo: Runs, path: Path) -> None:
    """
    Mean evaluation return against mean wall-clock minutes (shaded: standard error over seeds, as the Zoo's).

    :param title: the figure's title.
    :param by_algo: the runs of each algorithm (or option).
    :param path: the PNG to write.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for algo, runs in by_algo.items():
        _, returns = aligned(runs, "returns")
        _, minutes = aligned(runs, "minutes")
        mean, error = returns.mean(axis=0), returns.std(axis=0) / np.sqrt(len(runs))
        ax.plot(np.nanmean(minutes, axis=0), mean, label=f"{label_of(algo)} ({len(runs)} seeds)")
        ax.fill_between(np.nanmean(minutes, axis=0), mean - error, mean + error, alpha=0.25)
    ax.set(xlabel="wall-clock minutes (mean over seeds; evaluation included)", ylabel="mean evaluation return", title=title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_png(fig, path, dpi=110)
    plt.close(fig)


def plot_rliable(estimates: dict[str, Any], iqm_path: Path, improvement_path: Path) -> None:
    """
    rliable's own figures: IQM with its interval per algorithm, and the probability of improvement of each pair.

    :param estimates: what :func:`rliable_estimates` returned.
    :param iqm_path: the PNG for the IQM figure.
    :param improvement_path: the PNG for the probability of improvement (written when there are pairs).
    """
    import matplotlib.pyplot as plt
    from rliable import plot_utils

    iqm = {label_of(a): np.array([v]) for a, v in estimates["iqm"].items()}
    ci = {label_of(a): np.array(v).reshape(2, 1) for a, v in estimates["iqm_ci"].items()}
    below = -0.7 / (0.8 * len(iqm))  # rliable's x label 0.7 inch below its rows of 0.8 inch
    fig, _ = plot_utils.plot_interval_estimates(iqm, ci, metric_names=["IQM"], xlabel="final evaluation return",
                                                subfigure_width=6, row_height=0.8, xlabel_y_coordinate=below)  # fmt: skip
    save_png(fig, iqm_path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    if estimates["probability_of_improvement"]:
        pairs = {",".join(label_of(k) for k in p.split(",")): v for p, v in estimates["probability_of_improvement"].items()}
        pair_cis = {",".join(label_of(k) for k in p.split(",")): np.array(v)
                    for p, v in estimates["probability_of_improvement_ci"].items()}  # fmt: skip
        ax = plot_utils.plot_probability_of_improvement(
            pairs, pair_cis, figsize=(6, 0.8 + 0.6 * len(pairs)), xticks=[0, 0.25, 0.5, 0.75, 1]
        )
        save_png(ax.figure, improvement_path, dpi=110, bbox_inches="tight")
        plt.close(ax.figure)


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


def env_section(
    env: str, by_algo: Runs, pairs: list[tuple[str, str]], thresholds: list[float], out: Path, stem: str, reps: int
) -> tuple[list[str], dict]:
    """
    Figures, table and numbers for one environment and a set of algorithms; the Zoo's learning curves
    ``curves_<stem>.png`` come from :func:`zoo_curves`.

    :param env: the environment id.
    :param by_algo: the runs of each algorithm (or option).
    :param pairs: the pairs ``(A, B)`` whose probability of improvement P(A > B) to estimate.
    :param thresholds: the returns for "steps to reach".
    :param out: the report's folder.
    :param stem: the figures' names after ``<kind>_``.
    :param reps: bootstrap resamples.
    """
    final_scores = {algo: np.array([r["returns"][-1] for r in runs]) for algo, runs in by_algo.items()}
    estimates = rliable_estimates(final_scores, pairs, reps=reps)
    names = {kind: f"{kind}_{stem}.png" for kind in ("curves", "wall_clock", "rliable", "improvement")}
    plot_wall_clock(env, by_algo, out / names["wall_clock"])
    plot_rliable(estimates, out / names["rliable"], out / names["improvement"])
    lines = [*env_table(by_algo, estimates, thresholds), ""]
    for kind, title in (("curves", "learning curves (RL Zoo all_plots)"), ("wall_clock", "against wall-clock time"),
                        ("rliable", "IQM (rliable)"), ("improvement", "probability of improvement (rliable)")):  # fmt: skip
        if (out / names[kind]).exists():
            lines += [f"![{title}]({names[kind]})", ""]
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


def minutes_to_reach(run: dict[str, Any], threshold: float) -> float | None:
    """Wall-clock minutes (training and evaluations, from the Monitor file) until the first evaluation at ``threshold``."""
    hits = np.flatnonzero(run["returns"] >= threshold)
    return float(run["minutes"][hits[0]]) if len(hits) else None


def tuned_section(env: str, rows: Runs, numbers: dict[str, Any]) -> list[str]:
    """
    Tuned ClippedPPO against SB3 PPO and plain ClippedPPO: whether the IQM reaches the target and the probability of
    improvement over SB3 PPO has a lower 95% bound above 0.5, and the wall-clock minutes to first reach a return.
    """
    lines: list[str] = []
    missed = False
    iqm, target = numbers["iqm"].get("clippedppo[tuned]"), TUNED_TARGETS.get(env)
    if iqm is not None and target is not None:
        missed |= iqm < target
        verdict = "met" if iqm >= target else f"NOT met (short by {target - iqm:.0f})"
        lines.append(f"- Target IQM >= {target:.0f}: tuned ClippedPPO's IQM is {iqm:.0f}, {verdict}.")
    pair = "clippedppo[tuned],ppo"
    if pair in numbers["probability_of_improvement"]:
        value = numbers["probability_of_improvement"][pair]
        low, high = numbers["probability_of_improvement_ci"][pair]
        missed |= low <= 0.5
        verdict = "met" if low > 0.5 else "NOT met"
        lines.append(
            f"- Target P(tuned ClippedPPO > SB3 PPO) with a 95% CI above 0.5: {value:.2f} [{low:.2f}, {high:.2f}], {verdict}."
        )
    if missed:
        lines.append(f"- The search's evidence for {env} (every candidate tried, and why not shipped): {SEARCH_EVIDENCE}.")
    threshold = TIME_TO_RETURN.get(env)
    if threshold is not None:
        lines += ["", f"Time to return {threshold:g} (wall-clock minutes from the start of training, evaluations included; "
                  "median over seeds, counting a seed that never got there as slowest):", "",
                  "| algorithm | minutes (median) | seeds that reached it | per seed |", "|---|---|---|---|"]  # fmt: skip
        numbers["minutes_to_return"] = {}
        for algo, runs in rows.items():
            minutes = [minutes_to_reach(r, threshold) for r in runs]
            numbers["minutes_to_return"][algo] = minutes
            ordered = sorted(m for m in minutes if m is not None) + [None] * sum(m is None for m in minutes)
            median = ordered[(len(ordered) - 1) // 2]
            shown = "not reached" if median is None else f"{median:.1f}"
            per_seed = ", ".join("-" if m is None else f"{m:.1f}" for m in minutes)
            lines.append(f"| {label_of(algo)} | {shown} | {len(minutes) - minutes.count(None)}/{len(minutes)} | {per_seed} |")
    return [*lines, ""]


def time_to_return_section(
    runs: list[dict[str, Any]], variants: list[tuple[str, str]], out: Path
) -> tuple[list[str], dict[str, Any]]:
    """
    Minutes to a return (:data:`TIME_TO_RETURN`) under :mod:`benchmarks.time_to_return`'s protocol, per environment: a
    table (a row per variant: median minutes over seeds, a seed that never got there counting as the slowest, and a
    median that falls on such a seed shown as censored, ``> T min (k of n reached)``; seeds that reached it; minutes and
    steps per seed) and a figure, ``time_to_return_<env>.png`` (every run's mean evaluation return against wall-clock
    minutes, a colour per variant, and beside it the fraction of seeds that had reached the return by each minute). Runs
    stopped early (at the threshold, or at a time cap) count; a run's training time is how long it was followed.

    :param runs: the dataset's runs (:func:`benchmarks.dataset.load`).
    :param variants: ``(variant, label)`` of each row, in the table's order.
    :param out: the report's folder.
    :return: the report's lines and numbers (``{env: time_to_return.table's numbers}``).
    """
    by_env: dict[str, list[dict[str, Any]]] = {}
    for variant, label in variants:
        chosen = sorted((r for r in runs if r["variant"] == variant and len(r["eval_steps"])), key=lambda r: r["seed"])
        for run in chosen:
            threshold = TIME_TO_RETURN[run["env"]]
            curve = zip(run["eval_steps"], run["eval_seconds"], run["returns"], strict=True)
            evaluations = [dict(timesteps=int(steps), seconds=float(seconds), mean_return=float(mean))
                           for steps, seconds, mean in curve]  # fmt: skip
            minutes = minutes_to_reach({**run, "minutes": run["eval_seconds"] / 60.0}, threshold)
            by_env.setdefault(run["env"], []).append(dict(variant=label, minutes_to_threshold=minutes, seed=run["seed"],
                                                          followed_minutes=run["wall_clock_s"] / 60,
                                                          evaluations=evaluations, run=run))  # fmt: skip
    lines: list[str] = []
    numbers: dict[str, Any] = {}
    for env, records in by_env.items():
        threshold = TIME_TO_RETURN[env]
        table, numbers[env] = time_to_return.table(records, threshold)
        grouped: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            grouped.setdefault(record["variant"], []).append(record)
        time_to_return.plot(grouped, threshold, out / f"time_to_return_{env_folder(env)}.png")
        machines = sorted({r["run"]["machine"] for r in records})
        commits = sorted({r["run"]["commit"] for r in records if r["run"]["commit"]})
        seeds = sorted({r["seed"] for r in records})
        variant_names = ", ".join(sorted({f"`{r['run']['variant']}`" for r in records}))
        lines += [f"## {env}: time to a return of {threshold:g}", "",
                  "Wall-clock minutes from the start of training to the end of the first deterministic evaluation (10 "
                  f"episodes every 20k steps) whose mean reaches {threshold:g}, evaluations included; one run at a time on "
                  f"the machine, torch's default threads (`python -m benchmarks.time_to_return`). Seeds {seeds}; machine(s): "
                  f"{', '.join(machines)}; commit(s): {', '.join(commits) or 'not recorded'}; variants {variant_names}.",
                  "", *table, "", f"![time to {threshold:g}](time_to_return_{env_folder(env)}.png)", ""]  # fmt: skip
    return lines, numbers


def candidates_section(
    env: str, by_algo: Runs, candidates: list[tuple[str, str, list[dict[str, Any]]]], reps: int
) -> tuple[list[str], dict[str, Any]]:
    """
    Candidates for the tuned entry, each against SB3 PPO and plain ClippedPPO exactly as the tuned variant is (its own
    bootstrap, on the rows SB3 PPO, ClippedPPO, candidate in that order): a candidate's figures are those the tuned
    section gave it when it was the tuned variant.

    :param env: the environment id.
    :param by_algo: the main rows (``ppo`` and ``clippedppo``).
    :param candidates: ``(variant, label, runs)`` of each candidate on this environment.
    :param reps: bootstrap resamples.
    """
    lines = ["| candidate (variant) | seeds | final return (mean ± std) | IQM [95% CI] | P(candidate > SB3 PPO) [95% CI] "
             "| P(candidate > ClippedPPO) [95% CI] |", "|---|---|---|---|---|---|"]  # fmt: skip
    numbers: dict[str, Any] = {}
    for variant, label, runs in candidates:
        key = f"clippedppo[{label}]"
        scores = {algo: np.array([r["returns"][-1] for r in by_algo[algo]]) for algo in ("ppo", "clippedppo")}
        scores[key] = np.array([r["returns"][-1] for r in runs])
        estimates = rliable_estimates(scores, [(key, "ppo"), (key, "clippedppo")], reps=reps)
        finals = scores[key]
        low, high = estimates["iqm_ci"][key]
        cells = [f"{label} (`{variant}`)", ", ".join(str(r["seed"]) for r in runs),
                 f"{finals.mean():.0f} ± {finals.std(ddof=1) if len(finals) > 1 else 0.0:.0f}",
                 f"{estimates['iqm'][key]:.0f} [{low:.0f}, {high:.0f}]"]  # fmt: skip
        for other in ("ppo", "clippedppo"):
            value = estimates["probability_of_improvement"][f"{key},{other}"]
            low, high = estimates["probability_of_improvement_ci"][f"{key},{other}"]
            cells.append(f"{value:.2f} [{low:.2f}, {high:.2f}]")
        lines.append("| " + " | ".join(cells) + " |")
        numbers[label] = {
            "variant": variant,
            "seeds": [r["seed"] for r in runs],
            "final_returns": finals.tolist(),
            "iqm": estimates["iqm"][key],
            "iqm_ci": estimates["iqm_ci"][key],
            **{kind: {k.rsplit(",", 1)[1]: v for k, v in estimates[kind].items()}
               for kind in ("probability_of_improvement", "probability_of_improvement_ci")},
        }  # fmt: skip
    return [*lines, ""], numbers


# The committed measurement files that report.json gathers (paths under benchmarks/results/, each file with its command);
# where a measurement has several, the first that exists: the speed table re-measured through benchmarks.builder
# (throughput/builder/), else the one measured before it (throughput/threads/, VecNormalize with the default gamma)
MEASUREMENTS = {
    "throughput": ("throughput/builder/throughput.json", "throughput/threads/throughput.json"),
    "time_split": ("profile/time_split.json",),
    "update_flops": ("profile/update_flops.json",),
    "export_latency": ("export/latency.json",),
    "thread_pools": ("profile/thread_pools/README.md",),
    "masking": ("profile/masking.json",),
}
# Variants whose final returns per seed report.json keeps: the docs' example run, the core issue's 300k runs, and the
# 1M-step validation of the shipped HalfCheetah-v4 entry (its final IQM)
FINALS = ("zoo_halfcheetah_1M", "halfcheetah_300k", "time_to_return/halfcheetah/validation_1M")
# Short names of the environments and time-to-return rows in report.json's figures
ENV_NAMES = {"HalfCheetah-v4": "halfcheetah", "dm_control/walker-walk-v0": "walker"}


def thread_pools_table(text: str) -> dict[str, dict[str, int]]:
    """
    The table of ``results/profile/thread_pools/README.md`` (the former ``benchmarks.thread_pools``' medians) as
    ``{minibatch: {"torch 2 + BLAS 2": steps/s, ...}}``, its empty cells left out.
    """
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    columns = [cell.strip() for cell in lines[0].strip("|").split("|")]
    table: dict[str, dict[str, int]] = {}
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        batch = cells[0].split()[0]
        for column, cell in zip(columns[1:], cells[1:], strict=True):
            figure = re.match(r"\**([\d,]+)", cell)
            if figure:
                table.setdefault(batch, {})[column.split(" (")[0]] = int(figure.group(1).replace(",", ""))
    return table


def read_measurements(results: Path) -> dict[str, Any]:
    """The committed measurement files of :data:`MEASUREMENTS` (the JSON ones whole, less their per-run lists)."""
    found: dict[str, Any] = {}
    for name, candidates in MEASUREMENTS.items():
        relative = next((candidate for candidate in candidates if (results / candidate).exists()), None)
        if relative is None:
            continue
        path = results / relative
        if path.suffix == ".md":
            found[name] = {"file": relative, "steps_per_s": thread_pools_table(path.read_text())}
        else:
            content = json.loads(path.read_text())
            found[name] = {"file": relative, **{k: v for k, v in content.items() if k not in ("runs", "zoo_command_runs")}}
    return found


def dataset_counts(dataset: Path) -> dict[str, int]:
    """Runs, variants and evaluations of the dataset."""
    return {"runs": len(data.read_csv(dataset / data.RUNS)), "variants": len(data.read_csv(dataset / data.VARIANTS)),
            "evaluations": len(data.read_csv(dataset / data.EVALUATIONS))}  # fmt: skip


def slug(text: str) -> str:
    """A figure name's part: lower case, runs of other characters as one underscore."""
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")


def interval(value: float, bounds: list[float], digits: int) -> str:
    """``value [low, high]`` with ``digits`` decimals."""
    return f"{value:.{digits}f} [{bounds[0]:.{digits}f}, {bounds[1]:.{digits}f}]"


def spread(values: list[float]) -> str:
    """``mean ± std`` (sample standard deviation) of final returns, as the report's tables show it."""
    array = np.array(values)
    return f"{array.mean():.0f} ± {array.std(ddof=1) if len(array) > 1 else 0.0:.0f}"


def figures(numbers: dict[str, Any]) -> dict[str, str]:
    """
    Every figure that the README, ``docs/*.md`` and the CHANGELOG quote from the benchmarks, by name, as they print it:
    from the report's numbers (the dataset) and the committed measurements in ``numbers["measurements"]``.
    ``tests/unit/test_bench_quoted.py`` checks each quoted passage against them.
    """
    out: dict[str, str] = {}
    envs = numbers.get("envs", {})
    for env, short in ENV_NAMES.items():
        main = envs.get(env)
        if main is not None and {"clippedppo", "ppo"} <= set(main["iqm"]):
            for algo in ("clippedppo", "ppo"):
                out[f"{short}_{algo}_final"] = spread(main["final_returns"][algo])
                out[f"{short}_{algo}_iqm"] = interval(main["iqm"][algo], main["iqm_ci"][algo], 0)
                out[f"{short}_{algo}_min_per_1m"] = f"{np.mean(main['wall_clock_min_per_1m'][algo]):.1f}"
                out[f"{short}_{algo}_seeds"] = str(len(main["final_returns"][algo]))
            pair = "clippedppo,ppo"
            probability, bounds = main["probability_of_improvement"][pair], main["probability_of_improvement_ci"][pair]
            out[f"{short}_p"] = interval(probability, bounds, 2)
            minutes = {algo: np.mean(main["wall_clock_min_per_1m"][algo]) for algo in ("clippedppo", "ppo")}
            out[f"{short}_wall_clock_ratio"] = f"{minutes['ppo'] / minutes['clippedppo']:.1f}x"
        tuned = envs.get(f"{env} tuned")
        if tuned is not None:
            key = "clippedppo[tuned]"
            out[f"{short}_tuned_final"] = spread(tuned["final_returns"][key])
            out[f"{short}_tuned_iqm"] = interval(tuned["iqm"][key], tuned["iqm_ci"][key], 0)
            for other in ("ppo", "clippedppo"):
                pair = f"{key},{other}"
                out[f"{short}_tuned_p_{other}"] = interval(tuned["probability_of_improvement"][pair],
                                                           tuned["probability_of_improvement_ci"][pair], 2)  # fmt: skip
        for candidate in envs.get(f"{env} candidates", {}).values():
            name = f"{short}_candidate_{slug(candidate['variant'].rsplit('/', 1)[-1])}"
            out[f"{name}_final"] = spread(candidate["final_returns"])
            out[f"{name}_iqm"] = interval(candidate["iqm"], candidate["iqm_ci"], 0)
            for other in ("ppo", "clippedppo"):
                out[f"{name}_p_{other}"] = interval(candidate["probability_of_improvement"][other],
                                                    candidate["probability_of_improvement_ci"][other], 2)  # fmt: skip
    variant_of = {label: variant for variant, label in COMMITTED["time_to_return"]}
    for env, table in numbers.get("time_to_return", {}).items():
        for label, row in table["variants"].items():
            name = f"ttr_{ENV_NAMES.get(env, slug(env))}_{slug(variant_of.get(label, label).rsplit('/', 1)[-1])}"
            out[f"{name}_median"] = row["median"]
            out[f"{name}_reached"] = f"{row['reached']}/{row['seeds']}"
            out[f"{name}_minutes"] = ", ".join("-" if m is None else f"{m:.2f}" for m in row["minutes"])
            out[f"{name}_steps"] = ", ".join("-" if m is None else f"{m / 1000:.0f}" for m in row["steps_to_threshold"])
            if row["ratio_to_first"] is not None and row["ratio_to_first"] != 1.0:
                out[f"{name}_over_first"] = f"{row['ratio_to_first']:.2f}x"
    measured = numbers.get("measurements", {})
    if "throughput" in measured:
        for threads, settings in measured["throughput"]["summary"].items():
            for setting, entry in settings.items():
                name = f"speed_{slug(threads)}_{slug(setting)}"
                ratio = entry["ratio_steps_per_s"]
                out[f"{name}_ratio"] = f"{ratio['median']:.2f}x"
                out[f"{name}_range"] = f"{ratio['min']:.2f}-{ratio['max']:.2f}"
                for algo in ("clippedppo", "ppo"):
                    out[f"{name}_{algo}"] = f"{entry[algo]['steps_per_s']:,.0f}"
        zoo = measured["throughput"].get("zoo_command")
        if zoo:
            out["speed_zoo_command_ratio"] = f"{zoo['ratio_fps']['median']:.2f}x"
            out["speed_zoo_command_range"] = f"{zoo['ratio_fps']['min']:.2f}-{zoo['ratio_fps']['max']:.2f}"
            for algo in ("clippedppo", "ppo"):
                out[f"speed_zoo_command_{algo}"] = f"{zoo[algo]['fps']:,.0f}"
        out["speed_commit"] = measured["throughput"]["meta"]["machine"]["commit"]
        out["speed_file"] = measured["throughput"]["file"]
    if "time_split" in measured:
        split = measured["time_split"]
        medians = split["median_seconds"]
        for algo in ("clippedppo", "ppo"):
            for part, value in medians[algo].items():
                out[f"split_{algo}_{part}"] = f"{value:.2f}"
            environment = medians[algo]["rollout_env_steps"] + medians[algo]["evaluation_env_steps"]
            out[f"split_{algo}_env_steps"] = f"{environment:.2f}"
        for part, value in split["ratio_ppo_over_clippedppo"].items():
            out[f"split_ratio_{part}"] = f"{value:.2f}x"
        if "overlap" in split:  # measured by the former overlap measurement (commit 51b0d30)
            overlapped = split["overlap"]["median_total_seconds"]["overlapped"]
            out["overlap_seconds"] = f"{overlapped:.2f}"
            out["overlap_ppo_over_bound"] = f"{medians['ppo']['total'] / overlapped:.2f}x"
            out["overlap_gain"] = f"{medians['clippedppo']['total'] / overlapped:.2f}x"
    if "update_flops" in measured:
        flops = measured["update_flops"]
        out["flops_gflops"] = f"{flops['median_update_gflops']:.1f}"
        out["flops_fraction"] = f"{flops['fraction_of_large_gemm_peak']:.0%}"
        out["flops_peak"] = f"{flops['gemm_peak_gflops_one_thread']['1024x1024x1024']:.1f}"
        out["flops_update_seconds"] = f"{statistics.median(flops['update_seconds']):.3f}"
    if "masking" in measured:  # issue 38: ClippedPPO against MaskablePPO with masks
        masking = measured["masking"]
        out["masking_ratio"] = f"{masking['median_ratio']:.2f}x"
        out["masking_ratio_range"] = f"{min(masking['ratios']):.2f}-{max(masking['ratios']):.2f}"
        for algo, value in masking["median_steps_per_s"].items():
            out[f"masking_{algo}_steps_per_s"] = f"{value:,.0f}"
    if "export_latency" in measured:
        for threads in ("default", "1"):
            for way, value in measured["export_latency"].get(f"threads_{threads}", {}).get("median_us_per_action", {}).items():
                out[f"latency_{slug(threads)}_{way}"] = f"{value:.0f}"
    for batch, row in measured.get("thread_pools", {}).get("steps_per_s", {}).items():
        for column, value in row.items():
            out[f"thread_pools_{batch}_{slug(column)}"] = f"{value:,}"
    if "scaling" in numbers:
        scale = numbers["scaling"]
        out["scaling_runs"] = str(scale["runs"])
        out["scaling_hours"] = f"{scale['hours']:.1f}"
    zoo = numbers.get("zoo_benchmark")
    if zoo and zoo.get("environments"):
        out["zoo_environments"] = str(len(zoo["environments"]))
        out["zoo_behind"] = str(sum(e["behind_beyond_noise"] for e in zoo["environments"].values()))
        out["zoo_last_evaluations"] = str(LAST_EVALUATIONS)
        out["zoo_behind_examined"] = str(sum(bool(e.get("examined") and e["examined"]["behind_last_mean"])
                                             for e in zoo["environments"].values()))  # fmt: skip
        if "still_to_run" in zoo:
            out["zoo_entries"] = str(len(zoo["environments"]) + len(zoo["still_to_run"]))
        if zoo.get("median_cpu_ratio") is not None:
            out["zoo_median_cpu_ratio"] = f"{zoo['median_cpu_ratio']:.2f}x"
    if "dataset" in numbers:
        for key, value in numbers["dataset"].items():
            out[f"dataset_{key}"] = f"{value:,}"
    finals = numbers.get("finals", {})
    for variant, by_seed in finals.items():
        for seed, final in by_seed.items():
            out[f"final_{slug(variant)}_seed{seed}"] = f"{final:,.0f}"
    if finals.get("time_to_return/halfcheetah/validation_1M"):
        from scipy.stats import trim_mean

        returns = list(finals["time_to_return/halfcheetah/validation_1M"].values())
        out["ttr_halfcheetah_validation_1m_final_iqm"] = f"{trim_mean(returns, 0.25):,.0f}"  # the middle three of five
    return out


def parse_variant_argument(value: str) -> tuple[str, str]:
    variant, _, label = value.partition("=")
    return variant, (label or variant)


def header(grouped: dict[str, Runs], command: str, reps: int, from_folders: bool) -> tuple[list[str], dict[str, Any]]:
    """The report's title and method paragraph (machines, versions, commits of the runs), and the first run's machine."""
    records = [r for by_algo in grouped.values() for runs in by_algo.values() for r in runs]
    first = records[0]
    machine = {"name": first["machine"], "python": first["python"], "versions": first["versions"]}
    commits = sorted({r["commit"] for r in records})
    machines = Counter(r["machine"] for r in records)
    nodes = sorted({r["node"] for r in records if r["node"]})
    at_a_time = sorted({str(r["jobs"]) if r["jobs"] is not None else "?" for r in records})
    where = (
        "its sweep's `_runs/` record"
        if from_folders
        else "the dataset, `benchmarks/results/runs.csv.gz` (column `command`; run ids are the runs' original folders)"
    )
    lines = [
        "# ClippedPPO vs Stable-Baselines3 PPO",
        "",
        f"Report: `{command}`. Each run's exact command is in {where}.",
        "",
        "Machines: "
        + ", ".join(f"{name}: {n} runs" for name, n in machines.items())
        + (f" (nodes: {', '.join(nodes)})" if nodes else "")
        + f"; {' or '.join(at_a_time)} run(s) at a time per sweep, 1 torch thread per run; Python {machine['python']}; "
        f"code commit(s) of the runs: {', '.join(commits)}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()) + ".",
        "",
        "Evaluation: deterministic policy, every 20k steps on 10 episodes (unless a run's command says otherwise); "
        "'final' is the last evaluation. Curves: mean over seeds, shaded standard error (the RL Zoo's `all_plots`). "
        f"IQM and probability of improvement: rliable, stratified bootstrap with {reps} resamples. Wall-clock "
        "time includes the periodic evaluations; it depends on the machine and on what else ran on it at the time.",
        "",
    ]  # fmt: skip
    return lines, machine


def parse_runs_argument(value: str) -> tuple[Path, str | None]:
    path, _, label = value.partition("=")
    return Path(path), (label or None)


def runs_from_folders(folders: list[tuple[Path, str | None]], dataset: Path) -> tuple[str | None, list[tuple[str, str]]]:
    """
    Sweep folders (``--runs DIR[=LABEL]``) converted into a dataset in ``dataset``: the main folders' runs become
    variant ``main``, a labelled folder's the variant of its label; returns ``(main, [(label, label), ...])``.
    """
    main, labelled = None, []
    for i, (folder, label) in enumerate(folders):
        data.add([folder], label or "main", prefix=str(i), dataset=dataset)  # a folder given twice gives its runs twice
        if label is None:
            main = "main"
        elif (label, label) not in labelled:
            labelled.append((label, label))
    return main, labelled


# ------------------------------------------------------------------------------------ the RL Zoo's PPO benchmark (issue 35)

ZOO_PUBLISHED = Path(__file__).resolve().parent / "zoo_published_ppo.csv"


def zoo_published(path: Path = ZOO_PUBLISHED) -> dict[str, dict[str, str]]:
    """The RL Zoo's published PPO scores (``benchmark.md``, as the file's header cites it), by the id run here."""
    import csv

    rows = csv.DictReader(line for line in path.read_text().splitlines() if not line.startswith("#"))
    return {row["env"]: row for row in rows}


def behind_beyond_noise(clipped: np.ndarray, ppo: np.ndarray, p_high: float) -> bool:
    """
    Issue 35's criterion for ClippedPPO being behind SB3's PPO beyond noise on an environment: the upper bound of the 95%
    interval of P(ClippedPPO > PPO) is below 0.5, or ClippedPPO's mean final return is below SB3 PPO's mean minus its std.

    :param clipped: ClippedPPO's final returns, one per seed.
    :param ppo: SB3 PPO's final returns, one per seed.
    :param p_high: the upper bound of P(ClippedPPO > PPO)'s 95% interval.
    """
    spread = ppo.std(ddof=1) if len(ppo) > 1 else 0.0
    return bool(p_high < 0.5 or clipped.mean() < ppo.mean() - spread)


LAST_EVALUATIONS = 5  # the window of examine_behind


def examine_behind(pick: dict[str, list[dict[str, Any]]], reps: int) -> dict[str, Any]:
    """
    A second look at a row that :func:`behind_beyond_noise` flags: the same criterion on each seed's mean return over
    its last :data:`LAST_EVALUATIONS` evaluations, and each seed's final return beside the range of the evaluations in
    that window before it.

    :param pick: ``{"clippedppo": runs, "ppo": runs}``, the same seeds for both (:func:`benchmarks.dataset.load` rows).
    :param reps: bootstrap resamples.
    :return: ``seeds`` (per algorithm: ``seed``, ``final``, ``before`` (min, max of the window's evaluations before the
        last one) and ``last_mean``), ``p_last_mean`` with its 95% CI ``p_last_mean_ci``, ``behind_last_mean``, and
        ``below_the_other`` (per algorithm, the seeds whose window mean is below every seed of the other algorithm's:
        a seed on another branch, e.g. a gait that stays at a local optimum, rather than a whole algorithm behind).
    """
    seeds: dict[str, list[dict[str, Any]]] = {}
    for algo, runs in pick.items():
        seeds[algo] = []
        for run in runs:
            returns = run["returns"]
            before = returns[-LAST_EVALUATIONS:-1] if len(returns) > 1 else returns
            seeds[algo].append({"seed": run["seed"], "final": float(returns[-1]),
                                "before": [float(before.min()), float(before.max())],
                                "last_mean": float(returns[-LAST_EVALUATIONS:].mean())})  # fmt: skip
    means = {algo: np.array([s["last_mean"] for s in rows]) for algo, rows in seeds.items()}
    estimates = rliable_estimates(means, [("clippedppo", "ppo")], reps=reps)
    ci = estimates["probability_of_improvement_ci"]["clippedppo,ppo"]
    other = {"clippedppo": "ppo", "ppo": "clippedppo"}
    below = {algo: [s["seed"] for s in rows if s["last_mean"] < means[other[algo]].min()] for algo, rows in seeds.items()}
    return {
        "seeds": seeds,
        "below_the_other": below,
        "p_last_mean": estimates["probability_of_improvement"]["clippedppo,ppo"],
        "p_last_mean_ci": list(ci),
        "behind_last_mean": behind_beyond_noise(means["clippedppo"], means["ppo"], ci[1]),
    }


def plot_normalized_scores(normalized: dict[str, dict[str, list[float]]], path: Path) -> None:
    """Each environment's final returns in units of SB3 PPO's spread there, ``(return - mean_PPO) / std_PPO``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(normalized)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(envs) + 1.5))
    ax.axvspan(-1.0, 1.0, color="0.9", label="SB3 PPO's mean ± std")
    for offset, (algo, color) in ((-0.12, ("ppo", "tab:orange")), (0.12, ("clippedppo", "tab:blue"))):
        for row, env in enumerate(envs):
            values = normalized[env][algo]
            ax.scatter(values, [row + offset] * len(values), color=color, s=18, label=LABELS[algo] if row == 0 else None)
    ax.set_yticks(range(len(envs)), envs)
    ax.invert_yaxis()
    ax.axvline(0.0, color="0.5", lw=0.8)
    ax.set_xlabel("final return, (return - SB3 PPO's mean) / SB3 PPO's std, per environment")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_png(fig, path, dpi=120)
    plt.close(fig)


def score_cell(values: np.ndarray, estimates: dict[str, Any], algo: str) -> str:
    """``mean ± std; IQM [95% CI]`` of one algorithm's final returns."""
    low, high = estimates["iqm_ci"][algo]
    spread = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.1f} ± {spread:.1f}; {estimates['iqm'][algo]:.1f} [{low:.1f}, {high:.1f}]"


ZOO_MIN_SEEDS = 3  # issue 35: at least 3 seeds of each algorithm, the same seeds


def zoo_benchmark_section(by_env: dict[str, Runs], out: Path, reps: int) -> tuple[list[str], dict[str, Any]]:
    """
    The side-by-side table of the RL Zoo's PPO entries run with ``--algo clippedppo`` and ``--algo ppo`` (each
    environment with the seeds both finished, at least :data:`ZOO_MIN_SEEDS` of them; fewer: under ``partial``), the
    Zoo's published score beside them, and a figure of the normalized scores (``zoo_benchmark_normalized.png``).

    :param by_env: ``{env: {"clippedppo": runs, "ppo": runs}}`` of one variant (:func:`load_runs`).
    :param out: the report's folder.
    :param reps: bootstrap resamples.
    :return: the section's lines and its numbers (per environment, and the median over environments of SB3's minutes
        divided by ClippedPPO's, wall-clock and CPU).
    """
    published = zoo_published()
    header = ["environment, steps", "RL Zoo's published PPO (benchmark.md, its id)", "SB3 PPO here: mean ± std; IQM",
              "ClippedPPO here: mean ± std; IQM", "P(ClippedPPO > PPO) [95% CI]", "seeds",
              "minutes, SB3 PPO / ClippedPPO: wall-clock; CPU (medians)", "behind beyond noise"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    numbers: dict[str, Any] = {"environments": {}}
    normalized: dict[str, dict[str, list[float]]] = {}
    for env in sorted(by_env):
        runs = by_env[env]
        seeds = sorted({r["seed"] for r in runs.get("clippedppo", [])} & {r["seed"] for r in runs.get("ppo", [])})
        if len(seeds) < ZOO_MIN_SEEDS:  # a row needs the 3 seeds of each; its runs so far are listed as partial
            numbers.setdefault("partial", {})[env] = {algo: sorted(r["seed"] for r in runs.get(algo, []))
                                                      for algo in ("clippedppo", "ppo")}  # fmt: skip
            continue
        pick = {algo: [r for r in runs[algo] if r["seed"] in seeds] for algo in ("clippedppo", "ppo")}
        finals = {algo: np.array([r["returns"][-1] for r in chosen]) for algo, chosen in pick.items()}
        estimates = rliable_estimates(finals, [("clippedppo", "ppo")], reps=reps)
        p = estimates["probability_of_improvement"]["clippedppo,ppo"]
        p_low, p_high = estimates["probability_of_improvement_ci"]["clippedppo,ppo"]
        wall = {algo: float(np.median([r["wall_clock_s"] for r in chosen])) / 60 for algo, chosen in pick.items()}
        cpu_values = {algo: [r.get("cpu_s") for r in chosen] for algo, chosen in pick.items()}
        cpu = {algo: float(np.median(v)) / 60 if all(x is not None for x in v) else None for algo, v in cpu_values.items()}
        behind = behind_beyond_noise(finals["clippedppo"], finals["ppo"], p_high)
        examined = examine_behind(pick, reps) if behind else None
        ppo_std = finals["ppo"].std(ddof=1) if len(seeds) > 1 else 0.0
        scale = ppo_std if ppo_std > 0 else 1.0  # SB3 PPO's seeds all alike (e.g. CartPole's 500): return units
        normalized[env] = {algo: ((v - finals["ppo"].mean()) / scale).tolist() for algo, v in finals.items()}
        zoo = published.get(env)
        zoo_cell = f"{float(zoo['mean_reward']):.1f} ± {float(zoo['std_reward']):.1f} ({zoo['published_env']})" if zoo else "-"
        cpu_cell = f"{cpu['ppo']:.1f} / {cpu['clippedppo']:.1f}" if None not in cpu.values() else "-"
        steps = int(pick["clippedppo"][0]["timesteps"])
        lines.append("| " + " | ".join([
            f"{env}, {steps:,}", zoo_cell, score_cell(finals["ppo"], estimates, "ppo"),
            score_cell(finals["clippedppo"], estimates, "clippedppo"), f"{p:.2f} [{p_low:.2f}, {p_high:.2f}]",
            str(len(seeds)), f"{wall['ppo']:.1f} / {wall['clippedppo']:.1f}; {cpu_cell}", "yes" if behind else "no",
        ]) + " |")  # fmt: skip
        numbers["environments"][env] = {
            "steps": steps, "seeds": seeds, "final_returns": {a: v.tolist() for a, v in finals.items()}, **estimates,
            "wall_clock_min": wall, "cpu_min": cpu, "behind_beyond_noise": behind, "examined": examined,
            "published": zoo,
        }  # fmt: skip
    environments = numbers["environments"]
    wall_ratios = [e["wall_clock_min"]["ppo"] / e["wall_clock_min"]["clippedppo"] for e in environments.values()]
    cpu_ratios = [e["cpu_min"]["ppo"] / e["cpu_min"]["clippedppo"] for e in environments.values()
                  if None not in e["cpu_min"].values()]  # fmt: skip
    numbers["median_wall_clock_ratio"] = float(np.median(wall_ratios)) if wall_ratios else None
    numbers["median_cpu_ratio"] = float(np.median(cpu_ratios)) if cpu_ratios else None
    if normalized:
        plot_normalized_scores(normalized, out / "zoo_benchmark_normalized.png")
        lines += ["", "![final returns normalized by SB3 PPO's mean and std, per environment](zoo_benchmark_normalized.png)"]
    lines.append("")
    flagged = {env: e["examined"] for env, e in environments.items() if e["behind_beyond_noise"]}
    if flagged:
        lines += [f"Behind beyond noise, examined: the same criterion on each seed's mean over its last {LAST_EVALUATIONS} "
                  "evaluations instead of the last one alone (an evaluation is 10 episodes, so one unlucky evaluation can "
                  "flag a row); each seed's final return with the range of the window's evaluations before it.",
                  ""]  # fmt: skip
        for env, e in flagged.items():
            seeds = "; ".join(f"{label_of(algo)} " + ", ".join(
                f"seed {s['seed']}: {s['final']:.1f} (before: {s['before'][0]:.1f} to {s['before'][1]:.1f})"
                for s in e["seeds"][algo]) for algo in ("clippedppo", "ppo"))  # fmt: skip
            means = {algo: np.mean([s["last_mean"] for s in e["seeds"][algo]]) for algo in ("clippedppo", "ppo")}
            verdict = "still behind beyond noise" if e["behind_last_mean"] else "within noise"
            below = "; ".join(
                f"{label_of(algo)} {', '.join(f'seed {s}' for s in e['below_the_other'][algo])} of {len(e['seeds'][algo])}"
                for algo in ("clippedppo", "ppo") if e["below_the_other"][algo])  # fmt: skip
            lines += [f"- {env}: {verdict} over the last {LAST_EVALUATIONS} evaluations "
                      f"(ClippedPPO {means['clippedppo']:.1f}, "
                      f"SB3 PPO {means['ppo']:.1f}, P(ClippedPPO > PPO) {e['p_last_mean']:.2f} "
                      f"[{e['p_last_mean_ci'][0]:.2f}, {e['p_last_mean_ci'][1]:.2f}]). {seeds}."
                      + (f" Below every seed of the other algorithm over the window: {below}." if below else "")]  # fmt: skip
        lines.append("")
    if wall_ratios:
        lines.append(f"Median over the {len(wall_ratios)} environments of SB3 PPO's minutes divided by ClippedPPO's: "
                     f"{numbers['median_wall_clock_ratio']:.2f}x wall-clock"
                     + (f", {numbers['median_cpu_ratio']:.2f}x CPU time ({len(cpu_ratios)} environments)." if cpu_ratios
                        else "."))  # fmt: skip
    return lines, numbers


def write_zoo_benchmark(dataset: Path, variant: str, out: Path, reps: int) -> dict[str, Any]:
    """
    ``--zoo-benchmark VARIANT``: the section of :func:`zoo_benchmark_section` as ``zoo_benchmark.md`` in ``out``, and its
    numbers under ``zoo_benchmark`` in ``out/report.json`` (the rest of the report is left as it is).
    """
    by_env = load_runs(data.load(dataset), variant, [])
    lines, numbers = zoo_benchmark_section(by_env, out, reps)
    by_template: dict[str, list[int]] = {}  # the rows' run commands with the seed as SEED: the seeds run
    for env, row in numbers["environments"].items():
        for run in (r for group in by_env[env].values() for r in group if r["seed"] in row["seeds"]):
            by_template.setdefault(re.sub(r"--seed \d+", "--seed SEED", run["command"]), []).append(run["seed"])
    commands = [f"`{t}` (SEED: {', '.join(map(str, sorted(seeds)))})" for t, seeds in sorted(by_template.items())]
    chosen = [r for runs in by_env.values() for group in runs.values() for r in group]
    machines = ", ".join(sorted({r["machine"] for r in chosen if r.get("machine")})) or "unknown"
    commits = ", ".join(sorted({r["commit"] for r in chosen if r.get("commit")})) or "unknown"
    versions = sorted({json.dumps(r["versions"], sort_keys=True) for r in chosen if r.get("versions")})
    intro = [f"# The RL Zoo's PPO entries, ClippedPPO against SB3 PPO (variant `{variant}`)", "",
             "Each environment's entry from the installed RL Zoo's `hyperparams/ppo.yml`, the same file for both algorithms "
             "(`python -m benchmarks.run --conf zoo --max-timesteps 2000000 --seeds 0 1 2 --jobs 2`; entries above 2M steps "
             "capped there), final return = the last deterministic evaluation (10 episodes). Wall-clock minutes were measured "
             "with other work sharing the 2 cores; CPU minutes are each run's own. Rebuilt by "
             f"`python -m benchmarks.report --zoo-benchmark {variant}`.", "",
             f"Machine: {machines}; one torch thread per run (`--num-threads 1`), two runs at a time; commits {commits}; "
             f"versions: {'; '.join(versions) or 'unknown'}.", ""]  # fmt: skip
    from sb3_clippedppo.zoo import zoo_ppo_hyperparams_path

    conf = zoo_ppo_hyperparams_path()
    entries = zoo_benchmark_entries(conf)
    numbers["still_to_run"] = [e for e in entries if e not in numbers["environments"]]
    numbers["left_out"] = dict(ZOO_LEFT_OUT)
    entry_steps = {env: entry_timesteps(conf, env) for env in numbers["environments"]}
    numbers["capped"] = {env: {"entry": steps, "run": numbers["environments"][env]["steps"]}
                         for env, steps in entry_steps.items() if steps > numbers["environments"][env]["steps"]}  # fmt: skip
    capped = [f"{env} ({c['entry']:,} -> {c['run']:,})" for env, c in numbers["capped"].items()]
    coverage = [f"Rows: {len(entries) - len(numbers['still_to_run'])} of the {len(entries)} entries the benchmark runs "
                f"(`python -m benchmarks.run --conf zoo --envs zoo-entries`). Still to run: "
                f"{', '.join(numbers['still_to_run']) or 'none'}"
                + "".join(f"; {env} has seeds {', '.join(f'{label_of(a)} {seeds}' for a, seeds in by_algo.items())} so far"
                          for env, by_algo in numbers.get("partial", {}).items())  # fmt: skip
                + ".", "",
                f"Capped (the entry's `n_timesteps` -> the steps run): {', '.join(capped) or 'none so far'}.", "",
                "Left out: " + "; ".join(f"{entry} ({why})" for entry, why in ZOO_LEFT_OUT.items()) + "."]  # fmt: skip
    text = "\n".join(
        [
            *intro,
            *lines,
            "",
            *coverage,
            "",
            "Commands (each run's own is in `runs.csv.gz`'s `command` column):",
            "",
            *[f"- {c}" for c in commands],
        ]
    )
    (out / "zoo_benchmark.md").write_text(text + "\n")
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    report["zoo_benchmark"] = {"variant": variant, **numbers}
    report["dataset"] = dataset_counts(dataset)  # the runs just added count too
    report["measurements"] = read_measurements(dataset)
    report["figures"] = figures(report)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report["zoo_benchmark"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])  # fmt: skip
    parser.add_argument("--dataset", type=Path, default=data.RESULTS, help="the dataset's folder (default: %(default)s)")
    parser.add_argument("--main", metavar="VARIANT", help=f"the variant of the main rows (default: {COMMITTED['main']!r})")
    parser.add_argument("--option", action="append", metavar="VARIANT[=LABEL]", type=parse_variant_argument,
                        help="a variant whose ClippedPPO runs are an option row, against the main ClippedPPO runs "
                             "(repeatable; default: the committed options)")  # fmt: skip
    parser.add_argument("--tuned", metavar="VARIANT", help="the variant of tuned ClippedPPO, against SB3 PPO and plain "
                        f"ClippedPPO (default: {COMMITTED['tuned']!r})")  # fmt: skip
    parser.add_argument("--candidate", action="append", metavar="VARIANT[=LABEL]", type=parse_variant_argument,
                        help="a variant tried for the tuned entry, against SB3 PPO and plain ClippedPPO as the tuned one "
                             "(repeatable; default: the committed candidates)")  # fmt: skip
    parser.add_argument("--time-to-return", action="append", metavar="VARIANT[=LABEL]", type=parse_variant_argument,
                        help="a variant of benchmarks.time_to_return runs, a row of the time-to-return table (repeatable; "
                             "default: the committed rows)")  # fmt: skip
    parser.add_argument("--runs", action="append", default=[], type=parse_runs_argument, metavar="DIR[=LABEL]",
                        help="instead of the dataset: a sweep folder of benchmarks.run; with =LABEL, its ClippedPPO runs "
                             "are the option LABEL (LABEL tuned: the tuned rows; repeatable)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=data.RESULTS / "report",
                        help="folder for the report, created if needed (default: %(default)s)")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report in --out")
    parser.add_argument("--threshold", action="append", default=[], metavar="ENV=T1,T2", help="return thresholds")
    parser.add_argument("--bootstrap-reps", type=int, default=BOOTSTRAP_REPS, help="rliable's bootstrap resamples")
    parser.add_argument("--zoo-benchmark", metavar="VARIANT",
                        help="build only the RL Zoo side-by-side table of this variant (zoo_benchmark.md, its figure and "
                             "report.json's zoo_benchmark), leaving the rest of the report as it is")  # fmt: skip
    args = parser.parse_args(argv)
    if args.bootstrap_reps < 100:
        parser.error(f"--bootstrap-reps must be >= 100, not {args.bootstrap_reps}")
    if args.zoo_benchmark:
        args.out.mkdir(parents=True, exist_ok=True)
        return write_zoo_benchmark(args.dataset, args.zoo_benchmark, args.out, args.bootstrap_reps)
    thresholds = dict(DEFAULT_THRESHOLDS)
    for item in args.threshold:
        env, values = item.split("=", 1)
        thresholds[env] = [float(v) for v in values.split(",")]

    if (args.out / "report.md").exists() and not args.overwrite:
        parser.error(f"{args.out / 'report.md'} exists; pass --overwrite to replace the report")
    with tempfile.TemporaryDirectory() as scratch:
        if args.runs:
            if args.main or args.option or args.tuned or args.candidate or args.time_to_return:
                parser.error("--runs reads sweep folders instead of the dataset: give it without --main, --option, --tuned, "
                             "--candidate, --time-to-return")  # fmt: skip
            main_variant, labelled = runs_from_folders(args.runs, Path(scratch) / "dataset")
            committed = False
            candidates: list[tuple[str, str]] = []
            time_to_return_variants: list[tuple[str, str]] = []
            dataset = Path(scratch) / "dataset"
        else:
            given = args.main or args.option or args.tuned or args.candidate or args.time_to_return
            committed = not given
            candidates = list(args.candidate or []) if given else list(COMMITTED["candidates"])
            time_to_return_variants = list(args.time_to_return or []) if given else list(COMMITTED["time_to_return"])
            main_variant = args.main if given else COMMITTED["main"]
            labelled = list(args.option or []) if given else [(v, v) for v in COMMITTED["options"]]
            tuned = args.tuned if given else COMMITTED["tuned"]
            if tuned:
                labelled.append((tuned, "tuned"))
            dataset = args.dataset
        runs = data.load(dataset)
        grouped = load_runs(runs, main_variant, labelled)
        candidate_runs: dict[str, list[tuple[str, str, list[dict[str, Any]]]]] = {}
        for variant, label in candidates:
            for env, by_algo in load_runs(runs, None, [(variant, label)]).items():
                candidate_runs.setdefault(env, []).append((variant, label, by_algo[f"clippedppo[{label}]"]))
        timed = [r for r in runs if r["variant"] in {variant for variant, _ in time_to_return_variants}]
        if not grouped and not timed:
            parser.error(f"no finished runs of variants {[main_variant, *(v for v, _ in labelled)]} in {dataset}")
        args.out.mkdir(parents=True, exist_ok=True)
        command = "python -m benchmarks.report " + " ".join(sys.argv[1:] if argv is None else argv)
        lines, machine = header(grouped or {"": {"": timed}}, command, args.bootstrap_reps, bool(args.runs))
        main_list = [r for by_algo in grouped.values() for k, rs in by_algo.items() if "[" not in k for r in rs]
        option_labels = [label for _, label in labelled]  # the tuned rows among them, in the options' curves
        option_runs = {label: [r for by_algo in grouped.values() for r in by_algo.get(f"clippedppo[{label}]", [])]
                       for label in option_labels}  # fmt: skip
        main_label = main_variant if main_variant != "main" else str(args.runs[0][0])
        main_dirs = [(zoo_layout(main_list, Path(scratch) / "zoo" / "main"), main_label)] if main_list else []
        option_dirs = [(zoo_layout(rs, Path(scratch) / "zoo" / f"option{i}"), label)
                       for i, (label, rs) in enumerate(option_runs.items()) if rs]  # fmt: skip
        algos = sorted({r["algo"] for r in main_list})
        envs = [env_folder(env) for env in grouped]
        zoo_table = zoo_curves(main_dirs, set(), algos, envs, args.out, "") if main_dirs else ""
        if option_dirs:
            zoo_curves(main_dirs + option_dirs, set(option_labels), ["clippedppo"], envs, args.out, "options_")
    numbers: dict[str, Any] = {"command": command, "machine": machine, "envs": {}}
    for env, by_algo in grouped.items():
        main_rows = {k: v for k, v in by_algo.items() if "[" not in k}
        option_rows = {k: v for k, v in by_algo.items() if "[" in k and k != "clippedppo[tuned]"}
        if "clippedppo[tuned]" in by_algo:
            rows = {k: by_algo[k] for k in ("ppo", "clippedppo", "clippedppo[tuned]") if k in by_algo}
            pairs = [("clippedppo[tuned]", other) for other in ("ppo", "clippedppo") if other in rows]
            stem = f"tuned_{env_folder(env)}"
            section, tuned_numbers = env_section(
                env, rows, pairs, thresholds.get(env, []), args.out, stem, args.bootstrap_reps
            )
            numbers["envs"][f"{env} tuned"] = tuned_numbers
            lines += [f"## {env}: tuned ClippedPPO against SB3 PPO and plain ClippedPPO", "", *section]
            lines += tuned_section(env, rows, tuned_numbers)
        if env in candidate_runs and {"ppo", "clippedppo"} <= set(by_algo):
            section, numbers["envs"][f"{env} candidates"] = candidates_section(
                env, by_algo, candidate_runs[env], args.bootstrap_reps
            )
            lines += [f"## {env}: candidates for the tuned entry, not shipped", "",
                      "Each against SB3 PPO and plain ClippedPPO (seeds 0-4) as tuned ClippedPPO is above (variants: "
                      "`benchmarks/results/runs.csv.gz`; what each was: `benchmarks/results/search/README.md`).", "",
                      *section]  # fmt: skip
        steps = sorted({int(r["timesteps"]) for runs in main_rows.values() for r in runs})
        if main_rows:
            pairs = [("clippedppo", other) for other in main_rows if other != "clippedppo"]
            section, numbers["envs"][env] = env_section(
                env, main_rows, pairs, thresholds.get(env, []), args.out, env_folder(env), args.bootstrap_reps
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
            section, numbers["envs"][f"{env} options"] = env_section(
                env, rows, pairs, thresholds.get(env, []), args.out, stem, args.bootstrap_reps
            )
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
    if time_to_return_variants:
        section, numbers["time_to_return"] = time_to_return_section(runs, time_to_return_variants, args.out)
        lines += section
    if main_dirs:
        lines += ["## RL Zoo `all_plots` results table (cross-check: final return, mean +- standard error)", "", zoo_table, ""]
    if committed:  # the committed report: its figures, with the dataset's counts, the sweep's scaling, the measurements
        numbers["dataset"] = dataset_counts(dataset)
        numbers["scaling"] = {k: v for k, v in data.scaling([COMMITTED["main"], *COMMITTED["options"]], [1, 4, 16, 64],
                                                             dataset).items() if k != "lines"}  # fmt: skip
        numbers["finals"] = {variant: {str(r["seed"]): float(r["returns"][-1]) for r in runs if r["variant"] == variant}
                             for variant in FINALS}  # fmt: skip
        numbers["measurements"] = read_measurements(dataset)
        numbers["figures"] = figures(numbers)
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    (args.out / "report.json").write_text(json.dumps(numbers, indent=2) + "\n")
    print("\n".join(lines))
    return numbers


if __name__ == "__main__":
    main()
