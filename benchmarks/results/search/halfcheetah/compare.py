"""The HalfCheetah-v4 candidates' numbers in the READMEs (issue 11): final returns, IQM and probability of improvement
(rliable, as ``benchmarks.report`` computes them) against SB3 PPO and plain ClippedPPO (the sweep, seeds 0-4) and against
plain ClippedPPO on the candidates' own seeds 5-9 (``control_plain_seeds5-9/``); then the full-budget screens (1M steps on
seeds 0 and 1, stopped there when behind, or continued to seeds 2-4 as the 512x512 networks were; and
``learning_rate: 4e-5``, stopped after two of its seeds 5-9; and the re-run of ``learning_rate: lin_8e-5`` on seeds 0-2
with its mean gain over all its paired seeds), seed by seed against plain ClippedPPO on the same seeds; each with the mean
of the last five evaluations per seed; then the learning-rate screen's partial runs (``lr_screen/partial/``), each against
plain ClippedPPO on the same seed at the same step; then the device screen (``screen_device/``, seeds 10-12) against its
threshold moved to the steps its runs reached and against its control; last, what the targets ask for: the shift of
plain ClippedPPO's five final returns that brings their IQM to 6000, and the smallest shift (in steps of 100) that also
gives P(> SB3 PPO) a 95% lower bound above 0.5. The shifted returns are hypothetical scores, not results.

Run from the repository root: ``python -m benchmarks.results.search.halfcheetah.compare``.
"""

import json
from pathlib import Path

import numpy as np
import yaml

from benchmarks.common import ROOT
from benchmarks.report import rliable_estimates

RESULTS = ROOT / "benchmarks" / "results"
HERE = Path(__file__).parent
CANDIDATES = {
    "normalize_observations": HERE / "validation_normobs",
    "kl_adaptive_lr": HERE / "validation_kl_adaptive_lr",
    "kl_adaptive_lr + normalize_observations": HERE / "validation_kl_adaptive_lr_normobs",
    "learning_rate lin_8e-5 (shipped)": RESULTS / "tuned",
    "pi and vf 512x512 (seeds 0-4)": HERE / "screen_wide512",
}
SCREENS = {
    "ortho_init=True": HERE / "validation_ortho_init",
    "gamma 0.99, gae_lambda 0.95": HERE / "screen_gamma099",
    "pi 64x64, vf 256x256, tanh": HERE / "screen_network",
    "log_std_init=-0.69": HERE / "screen_log_std",
    "n_epochs 40": HERE / "screen_epochs40",
    "clip_range 0.05": HERE / "screen_clip005",
    "pi and vf 512x512": HERE / "screen_wide512",
}


def finals_by_seed(sweep: Path, algo: str = "clippedppo", last: int = 1) -> dict[int, float]:
    """Mean return of the last ``last`` evaluations (1: the final return) of each finished HalfCheetah-v4 run of a sweep,
    by seed."""
    by_seed = {}
    for path in (sweep / "_runs").glob(f"{algo}__HalfCheetah-v4__seed*.json"):
        record = json.loads(path.read_text())
        by_seed[record["seed"]] = float(np.load(sweep / record["run_dir"] / "evaluations.npz")["results"][-last:].mean())
    return dict(sorted(by_seed.items()))


def finals(sweep: Path, algo: str = "clippedppo") -> np.ndarray:
    """Final returns of a sweep's HalfCheetah-v4 runs, ordered by seed."""
    return np.array(list(finals_by_seed(sweep, algo).values()))


def paired(values: dict[int, float], reference: dict[int, float]) -> str:
    """``seed s: value vs reference`` for each seed of ``values``."""
    return ", ".join(f"seed {seed}: {value:.0f} vs {reference[seed]:.0f}" for seed, value in values.items())


def seed_of(run_dir: Path) -> int:
    """The seed a Zoo run folder was trained with (its saved ``args.yml``)."""
    return int(yaml.load((run_dir / "HalfCheetah-v4" / "args.yml").read_text(), Loader=yaml.UnsafeLoader)["seed"])


def eval_curve(run_dir: Path) -> np.ndarray:
    """A Zoo run's evaluation curve: the mean return of each evaluation (``evaluations.npz``)."""
    return np.load(run_dir / "evaluations.npz")["results"].mean(axis=1)


def curves_by_seed(folder: Path) -> dict[int, np.ndarray]:
    """Evaluation curves of the HalfCheetah-v4 runs in a sweep folder, by seed."""
    return {seed_of(path): eval_curve(path) for path in (folder / "clippedppo").glob("HalfCheetah-v4_*")}


def print_partial_screen() -> None:
    """Each run of ``lr_screen/partial/``: steps reached, last evaluation and mean of the last five, against plain
    ClippedPPO (the sweep) on the same seed at the same step."""
    plain = curves_by_seed(RESULTS / "sweep")
    for run_dir in sorted((HERE / "lr_screen" / "partial").iterdir()):
        curve = eval_curve(run_dir)
        reference, n = plain[seed_of(run_dir)], len(curve)
        print(f"lr screen {run_dir.name}: {20 * n}k steps, last {curve[-1]:.0f} vs plain {reference[n - 1]:.0f}, "
              f"last 5 {curve[-5:].mean():.0f} vs plain {reference[n - 5 : n].mean():.0f}")  # fmt: skip


def print_screen(label: str, screen: Path, control_folder: Path) -> None:
    """A screen for the targets' effect (``screen_device/``, ``screen_nenvs/``), seeds 10-12: each candidate's runs
    (complete, or in ``partial/`` when the lent machine's time ran out at 800k-880k steps) with their steps and last
    evaluations; their mean against the screen's threshold moved to those steps (the mean of plain ClippedPPO's ten runs,
    the sweep's seeds 0-4 and ``control_plain_seeds5-9/``, at each run's step, + 1200) and against the control (the
    shipped entry on the same seeds, at the same steps, ``screen_device/control/``) where it has run."""
    plain = [*curves_by_seed(RESULTS / "sweep").values(), *curves_by_seed(HERE / "control_plain_seeds5-9").values()]
    control = curves_by_seed(control_folder)
    runs: dict[str, dict[int, np.ndarray]] = {}
    for run_dir in sorted((screen / "partial").glob("*")):
        runs.setdefault(run_dir.name.rsplit("_seed", 1)[0], {})[seed_of(run_dir)] = eval_curve(run_dir)
    for folder in sorted(screen.glob("c[0-9]*_*")):
        if (folder / "clippedppo").is_dir():
            runs[folder.name] = curves_by_seed(folder)
    for name, curves in runs.items():
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
    if control and screen == control_folder.parent:
        print(f"{label} control (the shipped entry): {', '.join(f'seed {s}: {c[-1]:.0f}' for s, c in control.items())}")


def steps_per_s(sweep: Path) -> list[float]:
    """Training speed of each finished HalfCheetah-v4 run of a sweep, evaluations included (its record's
    ``steps_per_s``)."""
    return [
        json.loads(path.read_text())["steps_per_s"] for path in (sweep / "_runs").glob("clippedppo__HalfCheetah-v4__*.json")
    ]


def print_speed() -> None:
    """Wall-clock speed on one machine, one day, two runs at a time: the ``n_envs`` screen's runs (4 or 8 environments)
    against the ``clip_range`` 0.2 confirmation's (one environment; the same work per step)."""
    several = [v for c in ("c10_nenvs4", "c11_nenvs8") for v in steps_per_s(HERE / "screen_nenvs" / c)]
    one = [v for c in ("clip02", "control") for v in steps_per_s(HERE / "confirm_clip02" / c)]
    if several and one:
        print(f"steps/s, 4 or 8 environments: median {np.median(several):.0f} ({len(several)} runs); one environment: "
              f"median {np.median(one):.0f} ({len(one)} runs); ratio {np.median(several) / np.median(one):.2f}")  # fmt: skip


def print_failed_episodes() -> None:
    """How much of the final return the rare failed episodes cost: over every complete 1M-step ClippedPPO and SB3 PPO
    HalfCheetah-v4 run under ``benchmarks/results/``, the share of the final evaluation's episodes below 0.6 times that
    evaluation's median episode, and the mean over runs of the final return (the mean of its episodes) against the mean
    of its median episode (what the final returns would be without those episodes)."""
    finals, medians, failed = [], [], []
    for path in RESULTS.glob("**/HalfCheetah-v4_*/evaluations.npz"):
        evaluations = np.load(path)
        if evaluations["timesteps"][-1] < 1_000_000:
            continue
        episodes = evaluations["results"][-1]
        finals.append(episodes.mean())
        medians.append(np.median(episodes))
        failed.append(np.mean(episodes < 0.6 * np.median(episodes)))
    print(f"failed episodes in the final evaluations of {len(finals)} complete runs: {100 * np.mean(failed):.1f}% of "
          f"episodes, in {100 * np.mean(np.array(failed) > 0):.0f}% of runs; mean final return {np.mean(finals):.0f}, "
          f"mean median episode {np.mean(medians):.0f} ({np.mean(medians) - np.mean(finals):+.0f})")  # fmt: skip


def print_confirmation() -> None:
    """``confirm_clip02/``: ``clip_range`` 0.2 and the control (the shipped entry) on new seeds 13-17, seed by seed, and
    the rule's comparison of their means."""
    folder = HERE / "confirm_clip02"
    candidate, control = finals_by_seed(folder / "clip02"), finals_by_seed(folder / "control")
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
    shipped = [*finals(RESULTS / "tuned"), *finals(HERE / "screen_device" / "control"), *scores["control"]]
    spread = np.std(shipped, ddof=1)
    print(f"shipped entry over its {len(shipped)} runs on seeds 5-17: mean {np.mean(shipped):.0f} ± {spread:.0f}")


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
    for name, folder in CANDIDATES.items():
        last5 = np.round(list(finals_by_seed(folder, last=5).values())).tolist()
        print(f"{name}, mean of the last 5 evaluations per seed: {last5}")
    for pair, value in estimates["probability_of_improvement"].items():
        low, high = estimates["probability_of_improvement_ci"][pair]
        print(f"P({pair.replace(',', ' > ')}) = {value:.2f} [{low:.2f}, {high:.2f}]")
    plain, plain_last5 = finals_by_seed(RESULTS / "sweep"), finals_by_seed(RESULTS / "sweep", last=5)
    for name, folder in SCREENS.items():
        screened, screened_last5 = finals_by_seed(folder), finals_by_seed(folder, last=5)
        pairs = ", ".join(
            f"seed {seed}: {value:.0f} vs {plain[seed]:.0f} (last 5: {screened_last5[seed]:.0f} vs {plain_last5[seed]:.0f})"
            for seed, value in screened.items()
        )
        print(f"screen {name} (vs plain ClippedPPO on the same seed): {pairs}")
    control = finals_by_seed(HERE / "control_plain_seeds5-9")
    stopped = finals_by_seed(HERE / "validation_lr_4e-5")
    print(f"learning_rate 4e-5 on seeds 5-9, stopped (vs plain ClippedPPO on the same seed): {paired(stopped, control)}")
    rerun, shipped = finals_by_seed(HERE / "lr_lin8e-5"), finals_by_seed(RESULTS / "tuned")
    print(f"learning_rate lin_8e-5 re-run on seeds 0-2 (vs plain ClippedPPO on the same seed): {paired(rerun, plain)}")
    gains = [rerun[seed] - plain[seed] for seed in rerun] + [shipped[seed] - control[seed] for seed in shipped]
    print(f"learning_rate lin_8e-5, mean gain over plain ClippedPPO on {len(gains)} paired seeds: {np.mean(gains):+.0f}")
    print_partial_screen()
    print_screen("device screen", HERE / "screen_device", HERE / "screen_device" / "control")
    print_screen("n_envs screen", HERE / "screen_nenvs", HERE / "screen_device" / "control")
    print_confirmation()
    print_speed()
    print_failed_episodes()
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


if __name__ == "__main__":
    main()
