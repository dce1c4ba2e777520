"""The tuning candidates' numbers in the READMEs and the docs (issue 11), from the dataset (:mod:`benchmarks.dataset`).

``python -m benchmarks.candidates halfcheetah`` (formerly ``benchmarks/results/search/halfcheetah/compare.py``, on the
run folders): the HalfCheetah-v4 candidates' final returns, IQM and probability of improvement (rliable, as
:mod:`benchmarks.report` computes them) against SB3 PPO and plain ClippedPPO (variant ``default``, seeds 0-4) and against
plain ClippedPPO on the candidates' own seeds 5-9 (``search/halfcheetah/control_plain_seeds5-9``); then the full-budget
screens, seed by seed against plain ClippedPPO on the same seeds, each with the mean of the last five evaluations per
seed; the learning-rate screen's partial runs, each against plain ClippedPPO on the same seed at the same step; the
device and ``n_envs`` screens (seeds 10-12) against their threshold moved to the steps their runs reached and against
their control; the ``clip_range`` 0.2 confirmation; the speed of several environments against one; the cost of failed
evaluation episodes; last, what the targets ask for: the shift of plain ClippedPPO's five final returns that brings their
IQM to 6000, and the smallest shift (in steps of 100) that also gives P(> SB3 PPO) a 95% lower bound above 0.5 (the
shifted returns are hypothetical scores, not results).

``python -m benchmarks.candidates walker`` (formerly ``benchmarks/results/search/walker/screen/summarize.py``): the
walker-walk screen's table, per run the mean of its last five evaluations up to 1.1M steps.

The variants are named after the folders the runs were made in (``search/halfcheetah/<folder>``, ``runs.csv``).
"""

import argparse
import re
from typing import Any

import numpy as np

from benchmarks import dataset
from benchmarks.report import rliable_estimates

CHEETAH = "HalfCheetah-v4"
WALKER = "dm_control/walker-walk-v0"
SEARCH = "search/halfcheetah/"
CANDIDATES = {
    "normalize_observations": SEARCH + "validation_normobs",
    "kl_adaptive_lr": SEARCH + "validation_kl_adaptive_lr",
    "kl_adaptive_lr + normalize_observations": SEARCH + "validation_kl_adaptive_lr_normobs",
    "learning_rate lin_8e-5 (shipped)": "tuned",
    "pi and vf 512x512 (seeds 0-4)": SEARCH + "screen_wide512",
}
SCREENS = {
    "ortho_init=True": SEARCH + "validation_ortho_init",
    "gamma 0.99, gae_lambda 0.95": SEARCH + "screen_gamma099",
    "pi 64x64, vf 256x256, tanh": SEARCH + "screen_network",
    "log_std_init=-0.69": SEARCH + "screen_log_std",
    "n_epochs 40": SEARCH + "screen_epochs40",
    "clip_range 0.05": SEARCH + "screen_clip005",
    "pi and vf 512x512": SEARCH + "screen_wide512",
}
Runs = list[dict[str, Any]]


def of(runs: Runs, variant: str, algo: str = "clippedppo", env: str = CHEETAH, finished: bool = True) -> Runs:
    """The runs of a variant, sorted by seed (only finished ones unless ``finished`` is False)."""
    chosen = [r for r in runs if (r["variant"], r["algo"], r["env"]) == (variant, algo, env)]
    return sorted((r for r in chosen if r["status"] == "finished" or not finished), key=lambda r: r["seed"])


def finals_by_seed(runs: Runs, variant: str, algo: str = "clippedppo", last: int = 1) -> dict[int, float]:
    """Mean return of the last ``last`` evaluations (1: the final return) of each finished run of a variant, by seed."""
    return {r["seed"]: float(r["episode_returns"][-last:].mean()) for r in of(runs, variant, algo)}


def finals(runs: Runs, variant: str, algo: str = "clippedppo") -> np.ndarray:
    """Final returns of a variant's runs, ordered by seed."""
    return np.array(list(finals_by_seed(runs, variant, algo).values()))


def paired(values: dict[int, float], reference: dict[int, float]) -> str:
    """``seed s: value vs reference`` for each seed of ``values``."""
    return ", ".join(f"seed {seed}: {value:.0f} vs {reference[seed]:.0f}" for seed, value in values.items())


def curves_by_seed(runs: Runs, variant: str, finished: bool = True) -> dict[int, np.ndarray]:
    """Evaluation curves (the mean return of each evaluation) of a variant's runs, by seed."""
    return {r["seed"]: r["returns"] for r in of(runs, variant, finished=finished)}


def print_partial_screen(runs: Runs) -> None:
    """Each run of the learning-rate screen (stopped runs): steps reached, last evaluation and mean of the last five,
    against plain ClippedPPO on the same seed at the same step."""
    plain = curves_by_seed(runs, "default")
    screen = [r for r in runs if r["run_id"].startswith(SEARCH + "lr_screen/partial/")]
    for run in sorted(screen, key=lambda r: r["run_id"]):
        curve, name = run["returns"], run["run_id"].rsplit("/", 1)[1]
        reference, n = plain[run["seed"]], len(curve)
        print(f"lr screen {name}: {20 * n}k steps, last {curve[-1]:.0f} vs plain {reference[n - 1]:.0f}, "
              f"last 5 {curve[-5:].mean():.0f} vs plain {reference[n - 5 : n].mean():.0f}")  # fmt: skip


def print_screen(runs: Runs, label: str, screen: str, control_variant: str) -> None:
    """A screen for the targets' effect (device, ``n_envs``), seeds 10-12: each candidate's runs (complete, or stopped
    when the lent machine's time ran out at 800k-880k steps) with their steps and last evaluations; their mean against
    the screen's threshold moved to those steps (the mean of plain ClippedPPO's ten runs, seeds 0-4 and 5-9, at each
    run's step, + 1200) and against the control (the shipped entry on the same seeds and steps) where it has run."""
    plain = [*curves_by_seed(runs, "default").values(), *curves_by_seed(runs, SEARCH + "control_plain_seeds5-9").values()]
    control = curves_by_seed(runs, control_variant)
    names = sorted({r["variant"] for r in runs if re.fullmatch(rf"{re.escape(screen)}/c[0-9]+_.+", r["variant"])})
    for variant in names:
        curves = curves_by_seed(runs, variant, finished=False)
        name = variant.rsplit("/", 1)[1]
        seeds = sorted(curves)
        listed = ", ".join(f"seed {seed}: {curves[seed][-1]:.0f} at {20 * len(curves[seed])}k" for seed in seeds)
        mean = np.mean([curves[seed][-1] for seed in seeds])
        plain_mean = np.mean([reference[len(curves[seed]) - 1] for seed in seeds for reference in plain])
        verdict = "passes" if mean >= plain_mean + 1200 else "fails"
        line = (f"{label} {name}: {listed}; mean {mean:.0f}, plain ClippedPPO's 10-run mean at these steps "
                f"{plain_mean:.0f}, threshold {plain_mean + 1200:.0f}: {verdict}")  # fmt: skip
        if all(seed in control for seed in seeds):
            line += f"; control on the same seeds and steps {np.mean([control[s][len(curves[s]) - 1] for s in seeds]):.0f}"
        print(line)
    if control and control_variant.startswith(screen + "/"):
        print(f"{label} control (the shipped entry): {', '.join(f'seed {s}: {c[-1]:.0f}' for s, c in control.items())}")


def print_speed(runs: Runs) -> None:
    """Wall-clock speed on one machine, one day, two runs at a time: the ``n_envs`` screen's runs (4 or 8 environments)
    against the ``clip_range`` 0.2 confirmation's (one environment; the same work per step)."""
    several = [r["steps_per_s"] for c in ("c10_nenvs4", "c11_nenvs8") for r in of(runs, f"{SEARCH}screen_nenvs/{c}")]
    one = [r["steps_per_s"] for c in ("clip02", "control") for r in of(runs, f"{SEARCH}confirm_clip02/{c}")]
    if several and one:
        print(f"steps/s, 4 or 8 environments: median {np.median(several):.0f} ({len(several)} runs); one environment: "
              f"median {np.median(one):.0f} ({len(one)} runs); ratio {np.median(several) / np.median(one):.2f}")  # fmt: skip


def print_failed_episodes(runs: Runs) -> None:
    """How much of the final return the rare failed episodes cost: over every complete 1M-step ClippedPPO and SB3 PPO
    HalfCheetah-v4 run of the dataset, the share of the final evaluation's episodes below 0.6 times that evaluation's
    median episode, and the mean over runs of the final return against the mean of its median episode."""
    final_returns, medians, failed = [], [], []
    for run in runs:
        zoo_folder = run["run_id"].rsplit("/", 1)[-1].startswith(f"{CHEETAH}_")  # the runs in the Zoo's layout
        if run["env"] != CHEETAH or not zoo_folder or not len(run["eval_steps"]) or run["eval_steps"][-1] < 1_000_000:
            continue
        episodes = run["episode_returns"][-1]
        final_returns.append(episodes.mean())
        medians.append(np.median(episodes))
        failed.append(np.mean(episodes < 0.6 * np.median(episodes)))
    print(f"failed episodes in the final evaluations of {len(final_returns)} complete runs: {100 * np.mean(failed):.1f}% "
          f"of episodes, in {100 * np.mean(np.array(failed) > 0):.0f}% of runs; mean final return "
          f"{np.mean(final_returns):.0f}, mean median episode {np.mean(medians):.0f} "
          f"({np.mean(medians) - np.mean(final_returns):+.0f})")  # fmt: skip


def print_confirmation(runs: Runs) -> None:
    """The ``clip_range`` 0.2 confirmation and its control (the shipped entry) on new seeds 13-17, seed by seed, and
    the rule's comparison of their means."""
    candidate = finals_by_seed(runs, SEARCH + "confirm_clip02/clip02")
    control = finals_by_seed(runs, SEARCH + "confirm_clip02/control")
    if not candidate:
        return
    print(f"clip_range 0.2 confirmation (vs the shipped entry on the same seed): {paired(candidate, control)}")
    seeds = [seed for seed in candidate if seed in control]
    scores = {"clip02": np.array([candidate[s] for s in seeds]), "control": np.array([control[s] for s in seeds])}
    difference = scores["clip02"].mean() - scores["control"].mean()
    print(f"clip_range 0.2 confirmation on {len(seeds)} seeds: mean {scores['clip02'].mean():.0f} vs "
          f"{scores['control'].mean():.0f} ({difference:+.0f})")  # fmt: skip
    estimate = rliable_estimates(scores, [("clip02", "control")])
    low, high = estimate["probability_of_improvement_ci"]["clip02,control"]
    print(f"clip_range 0.2 confirmation: IQM {estimate['iqm']['clip02']:.0f} vs {estimate['iqm']['control']:.0f}, "
          f"P(clip_range 0.2 > shipped entry) {estimate['probability_of_improvement']['clip02,control']:.2f} "
          f"[{low:.2f}, {high:.2f}]")  # fmt: skip
    shipped = [*finals(runs, "tuned"), *finals(runs, SEARCH + "screen_device/control"), *scores["control"]]
    spread = np.std(shipped, ddof=1)
    print(f"shipped entry over its {len(shipped)} runs on seeds 5-17: mean {np.mean(shipped):.0f} ± {spread:.0f}")


def halfcheetah(runs: Runs) -> None:
    """Everything the HalfCheetah-v4 candidates' READMEs cite (formerly ``search/halfcheetah/compare.py``)."""
    scores = {
        "SB3 PPO (seeds 0-4)": finals(runs, "default", "ppo"),
        "ClippedPPO (seeds 0-4)": finals(runs, "default"),
        "ClippedPPO (seeds 5-9)": finals(runs, SEARCH + "control_plain_seeds5-9"),
        **{name: finals(runs, variant) for name, variant in CANDIDATES.items()},
    }
    references = ("SB3 PPO (seeds 0-4)", "ClippedPPO (seeds 0-4)", "ClippedPPO (seeds 5-9)")
    estimates = rliable_estimates(scores, [(name, ref) for name in CANDIDATES for ref in references])
    for name, values in scores.items():
        low, high = estimates["iqm_ci"][name]
        print(f"{name}: {np.round(values).tolist()}, {values.mean():.0f} ± {values.std(ddof=1):.0f}, "
              f"IQM {estimates['iqm'][name]:.0f} [{low:.0f}, {high:.0f}]")  # fmt: skip
    for name, variant in CANDIDATES.items():
        last5 = np.round(list(finals_by_seed(runs, variant, last=5).values())).tolist()
        print(f"{name}, mean of the last 5 evaluations per seed: {last5}")
    for pair, value in estimates["probability_of_improvement"].items():
        low, high = estimates["probability_of_improvement_ci"][pair]
        print(f"P({pair.replace(',', ' > ')}) = {value:.2f} [{low:.2f}, {high:.2f}]")
    plain, plain_last5 = finals_by_seed(runs, "default"), finals_by_seed(runs, "default", last=5)
    for name, variant in SCREENS.items():
        screened, screened_last5 = finals_by_seed(runs, variant), finals_by_seed(runs, variant, last=5)
        pairs = ", ".join(
            f"seed {seed}: {value:.0f} vs {plain[seed]:.0f} (last 5: {screened_last5[seed]:.0f} vs {plain_last5[seed]:.0f})"
            for seed, value in screened.items()
        )
        print(f"screen {name} (vs plain ClippedPPO on the same seed): {pairs}")
    control = finals_by_seed(runs, SEARCH + "control_plain_seeds5-9")
    stopped = finals_by_seed(runs, SEARCH + "validation_lr_4e-5")
    print(f"learning_rate 4e-5 on seeds 5-9, stopped (vs plain ClippedPPO on the same seed): {paired(stopped, control)}")
    rerun, shipped = finals_by_seed(runs, SEARCH + "lr_lin8e-5"), finals_by_seed(runs, "tuned")
    print(f"learning_rate lin_8e-5 re-run on seeds 0-2 (vs plain ClippedPPO on the same seed): {paired(rerun, plain)}")
    gains = [rerun[seed] - plain[seed] for seed in rerun] + [shipped[seed] - control[seed] for seed in shipped]
    print(f"learning_rate lin_8e-5, mean gain over plain ClippedPPO on {len(gains)} paired seeds: {np.mean(gains):+.0f}")
    print_partial_screen(runs)
    print_screen(runs, "device screen", SEARCH + "screen_device", SEARCH + "screen_device/control")
    print_screen(runs, "n_envs screen", SEARCH + "screen_nenvs", SEARCH + "screen_device/control")
    print_confirmation(runs)
    print_speed(runs)
    print_failed_episodes(runs)
    sb3, plain_scores = scores["SB3 PPO (seeds 0-4)"], scores["ClippedPPO (seeds 0-4)"]
    # The IQM of returns shifted by a constant is the IQM shifted by it: only P needs a bootstrap per shift.
    iqm_shift = 6000 - estimates["iqm"]["ClippedPPO (seeds 0-4)"]
    print(f"IQM target alone met by plain ClippedPPO's returns + {iqm_shift:.0f}")
    for shift in range(max(0, int(np.ceil(iqm_shift / 100)) * 100), 3001, 100):
        estimate = rliable_estimates({"shifted": plain_scores + shift, "sb3": sb3}, [("shifted", "sb3")])
        low = estimate["probability_of_improvement_ci"]["shifted,sb3"][0]
        if estimate["iqm"]["shifted"] >= 6000 and low > 0.5:
            print(
                f"targets met by plain ClippedPPO's returns + {shift} (mean {plain_scores.mean() + shift:.0f}): IQM "
                f"{estimate['iqm']['shifted']:.0f}, P(> SB3 PPO) {estimate['probability_of_improvement']['shifted,sb3']:.2f} "
                f"[{low:.2f}, {estimate['probability_of_improvement_ci']['shifted,sb3'][1]:.2f}]"
            )
            break


def walker_score(run: dict[str, Any], steps: int = 1_100_000) -> float:
    """Mean return of the five evaluations ending at ``steps`` (mean over each evaluation's episodes)."""
    end = int(np.searchsorted(run["eval_steps"], steps)) + 1
    return float(run["episode_returns"][end - 5 : end].mean())


def walker(runs: Runs) -> None:
    """The walker-walk screen's table (formerly ``search/walker/screen/summarize.py``): per run, the mean of its last five
    evaluations up to 1.1M steps (the step every screen run reached); the shipped entry on seeds 0-2 as reference (the
    PPO-Penalty entry of the options study; the current entry's runs, ``tuned``, are on seeds 5-9)."""
    rows = {
        "shipped entry (tuned/)": [walker_score(r) for r in of(runs, "tuned", env=WALKER) if r["seed"] in (0, 1, 2)],
        "shipped entry (options/kl_penalty/)": [
            walker_score(r) for r in of(runs, "kl_penalty", env=WALKER) if r["seed"] in (0, 1, 2)
        ],
    }
    for name in ("logstd", "lrdecay", "wide", "wide_logstd", "wide_logstd_lrdecay"):
        rows[name] = [walker_score(r) for r in of(runs, f"search/walker/screen/{name}", env=WALKER, finished=False)]
    for name, scores in rows.items():
        if not scores:
            continue  # the shipped entry's walker runs in tuned/ are on seeds 5-9
        print(f"| {name} | " + " | ".join(f"{v:.0f}" for v in scores) + f" | {np.mean(scores):.0f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study", choices=["halfcheetah", "walker"], help="which candidates")
    parser.add_argument("--dataset", default=dataset.RESULTS, help="the dataset's folder (default: benchmarks/results)")
    args = parser.parse_args(argv)
    runs = dataset.load(args.dataset)
    halfcheetah(runs) if args.study == "halfcheetah" else walker(runs)


if __name__ == "__main__":
    main()
