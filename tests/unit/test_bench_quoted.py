"""Every benchmark figure that the README, the docs and the changelog quote is the one in ``report.json`` (built from the
dataset and the committed measurement files by ``python -m benchmarks.report``): each quoted passage, with its figures
filled in from ``report.json``'s ``figures``, must be in its file; in the README's results every number must belong to
such a passage or to the protocol's settings. Issue 37's contradictions stay fixed."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "benchmarks" / "results" / "report" / "report.json"
FIGURES = json.loads(REPORT.read_text())["figures"]


def row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def ttr_row(label: str, name: str) -> str:
    return row(label, *(f"{{ttr_{name}_{part}}}" for part in ("median", "reached", "minutes", "steps")))


def h2h_rows(env: str, label: str) -> list[str]:
    return [row(label, "ClippedPPO", f"{{{env}_clippedppo_seeds}}", f"{{{env}_clippedppo_final}}", f"{{{env}_clippedppo_iqm}}",
                f"{{{env}_p}}", f"{{{env}_clippedppo_min_per_1m}}"),
            row("", "SB3 PPO", f"{{{env}_ppo_seeds}}", f"{{{env}_ppo_final}}", f"{{{env}_ppo_iqm}}", "",
                f"{{{env}_ppo_min_per_1m}}")]  # fmt: skip


def speed_cells(threads: str, setting: str, bold: bool = True) -> str:
    name = f"speed_{threads}_{setting}"
    ratio = f"**{{{name}_ratio}}**" if bold else f"{{{name}_ratio}}"
    return f"| {threads} | {ratio} ({{{name}_range}}) | {{{name}_clippedppo}} | {{{name}_ppo}} |"


HALFCHEETAH_TTR = [
    ttr_row("ClippedPPO, shipped entry", "halfcheetah_clippedppo"),
    ttr_row("SB3 PPO, ClippedPPO's entry", "halfcheetah_ppo_shipped"),
    ttr_row("SB3 PPO, RL Zoo entry", "halfcheetah_ppo_zoo"),
]
WALKER_TTR = [
    ttr_row("ClippedPPO, shipped walker-walk entry", "walker_clippedppo"),
    ttr_row("SB3 PPO, walker seed's settings", "walker_ppo"),
]
SPEED_TABLE = [
    "| default | {speed_zoo_command_ratio} ({speed_zoo_command_range}) | {speed_zoo_command_clippedppo} fps | "
    "{speed_zoo_command_ppo} fps |",
    speed_cells("default", "zoo"), speed_cells("default", "sb3_defaults"), speed_cells("default", "cnn"),
    speed_cells("1", "zoo"), speed_cells("1", "sb3_defaults"), speed_cells("1", "cnn"),
]  # fmt: skip
LATENCY = ("**{latency_default_onnxruntime} µs** in onnxruntime, {latency_default_predict} µs through `VecNormalize` + "
           "`model.predict`, {latency_default_predict_torch} µs through SB3's torch `predict`")  # fmt: skip

QUOTES = {
    "README.md": [
        *HALFCHEETAH_TTR,
        "SB3's PPO needs **{ttr_halfcheetah_ppo_shipped_over_first}** ClippedPPO's median time; with its Zoo entry, 1 of 5 "
        "seeds reached 5,000",
        "The entry's final IQM at 1M steps is {ttr_halfcheetah_validation_1m_final_iqm}.",
        "Per 20,000 steps ClippedPPO spends {split_clippedppo_total} s and SB3's PPO {split_ppo_total} s, "
        "{split_clippedppo_env_steps} s of ClippedPPO's in the environments",
        "ClippedPPO {ttr_walker_clippedppo_median} min ({ttr_walker_clippedppo_reached}), SB3's PPO {ttr_walker_ppo_median}",
        *h2h_rows("halfcheetah", "HalfCheetah-v4, 1M steps"),
        *h2h_rows("walker", "`dm_control/walker-walk-v0`, 1.25M steps (walker seed's settings)"),
        "P = {halfcheetah_p} and {walker_p} contain 0.5",
        "commit {speed_commit_short})",
        *SPEED_TABLE,
        LATENCY,
        "The RL Zoo's PPO entries, same entry for both, 3+ seeds ({zoo_environments} of {zoo_entries} entries so far): "
        "ClippedPPO behind beyond noise on {zoo_behind}, on {zoo_behind_examined} over each seed's last "
        "{zoo_last_evaluations} evaluations; SB3's PPO takes {zoo_median_cpu_ratio} its CPU time",
    ],
    "docs/benchmarks.md": [
        *h2h_rows("halfcheetah", "HalfCheetah-v4, 1M steps"),
        *h2h_rows("walker", "`dm_control/walker-walk-v0`, 1.25M steps (walker seed's settings)"),
        "P(ClippedPPO > PPO) is {halfcheetah_p} on HalfCheetah-v4 and {walker_p} on walker-walk",
        "shows {halfcheetah_wall_clock_ratio} (HalfCheetah-v4) and {walker_wall_clock_ratio} (walker-walk)",
        "`benchmarks/results/{speed_folder}/`, commit {speed_commit_short};",
        *SPEED_TABLE[1:],
        "| default | {speed_zoo_command_ratio} ({speed_zoo_command_range}) | {speed_zoo_command_clippedppo} fps | "
        "{speed_zoo_command_ppo} fps |",
        "{thread_pools_64_torch_2_blas_2} steps/s on the Zoo's HalfCheetah-v4 settings instead of "
        "{thread_pools_64_torch_1_blas_1}",
        "final evaluation return {final_zoo_halfcheetah_1m_seed0}",
        "final returns {final_halfcheetah_300k_seed0} (seed 0) and {final_halfcheetah_300k_seed1}",
    ],
    "docs/history.md": [
        "| tuned ClippedPPO (issue 11's entry, shipped until issue 25: Zoo values with `learning_rate: lin_8e-5`; seeds "
        "5-9) | 5 | {halfcheetah_tuned_final} | {halfcheetah_tuned_iqm} | {halfcheetah_tuned_p_ppo} |",
        "| 5 | {walker_tuned_final} | {walker_tuned_iqm} | {walker_tuned_p_ppo} |",
        ttr_row("ClippedPPO, shipped entry", "halfcheetah_clippedppo").replace("{ttr_halfcheetah_clippedppo_median}",
                                                                              "**{ttr_halfcheetah_clippedppo_median}**"),
        ttr_row("SB3 PPO, ClippedPPO's entry", "halfcheetah_ppo_shipped"),
        ttr_row("SB3 PPO, RL Zoo entry", "halfcheetah_ppo_zoo"),
        "5,000 reached by **5 of 5** seeds in {ttr_halfcheetah_validation_1m_minutes} min",
        "**median {ttr_halfcheetah_validation_1m_median} min**",
        "(**IQM {ttr_halfcheetah_validation_1m_final_iqm}**",
        "The acceptance of issue 25, as measured: median {ttr_halfcheetah_clippedppo_median} min",
        "ClippedPPO {ttr_halfcheetah_ppo_shipped_over_first} faster to 5,000 than the better SB3 row",
        "ClippedPPO {split_clippedppo_total} s (rollout {split_clippedppo_rollout}, update {split_clippedppo_update}, "
        "evaluation {split_clippedppo_evaluation}) and SB3's PPO {split_ppo_total} s ({split_ppo_rollout}, "
        "{split_ppo_update}, {split_ppo_evaluation}): {split_ratio_total}",
        "The environments' own steps are {split_clippedppo_env_steps} s",
        "matrix products at {flops_gflops} GFLOP/s with two BLAS threads, {flops_fraction} of a one-thread",
        "20,000 steps take {overlap_seconds} s against {split_clippedppo_total} s for `learn`: {overlap_gain} sooner at "
        "most, SB3's PPO's time over it {overlap_ppo_over_bound}",
        "**{ttr_walker_clippedppo_median} min** (median, 5/5 seeds: {ttr_walker_clippedppo_minutes};",
        "({thread_pools_256_torch_1_blas_2} against {thread_pools_256_torch_1_blas_1} steps/s on the Zoo's HalfCheetah "
        "settings with batch 256; {thread_pools_128_torch_1_blas_2} against {thread_pools_128_torch_1_blas_1} with 128",
        "One action with the shipped HalfCheetah-v4 network and `VecNormalize`: {latency_default_predict} µs, against "
        "{latency_default_predict_torch} µs through SB3's torch `predict` and {latency_default_onnxruntime} µs in "
        "onnxruntime",
    ],
    "docs/masking.md": [
        "ClippedPPO trains at {masking_clippedppo_steps_per_s} steps/s against MaskablePPO's "
        "{masking_maskableppo_steps_per_s}, **{masking_ratio}** (median of the pairs' ratios; range {masking_ratio_range})",
    ],
    "docs/getting_started.md": [
        "it trains {speed_default_sb3_defaults_ratio} as fast as SB3's PPO",
    ],
    "benchmarks/results/README.md": [
        "(266 runs:".replace("266", "{dataset_runs}"),
        "| evaluation ({dataset_evaluations} rows)",
        "| run ({dataset_runs}) |",
        "| algorithm, environment and variant ({dataset_variants}) |",
    ],
    "benchmarks/README.md": [
        "the committed sweep and options runs ({scaling_runs} runs)",
        "{scaling_runs} runs, {scaling_hours} h of run time in all",
        *WALKER_TTR,
    ],
}
# Words with numbers in the README's results that are settings of the protocol, not measured figures
SETTINGS = [
    r"SB3('s)?", r"HalfCheetah-v4", r"walker-walk(-v0)?", r"10 episodes every 20k steps", r"\(2 on a 2-core AMD EPYC\)",
    r"2-core", r"5,000", r"to 600", r"\d+-minute cap", r"1 of 5 seeds", r"5 seeds", r"20,000 steps",
    r"16 environments x 32 steps, batch 256, 10 epochs", r"1M steps", r"1\.25M steps", r"5 alternating pairs",
    r"512 steps, batch 64, 20 epochs, 256x256 ReLU", r"2048 steps, batch 64, 10 epochs, 64x64 tanh", r"84x84x4",
    r"gamma 0\.99", r"entry's 0\.98", r"\| (default|1) \|", r"95% CI", r"seed 4", r"contain 0\.5",
    r"> \d+ min \(\d of 5 reached\)",
]


# The folder of the throughput file that the speed table's figures come from (report.json's measurements)
SPEED_FOLDER = FIGURES["speed_file"].removesuffix("/throughput.json")


def flat(text: str) -> str:
    return " ".join(text.split())


def filled(passage: str) -> str:
    figures = {**FIGURES, "speed_commit_short": FIGURES["speed_commit"].removesuffix("-dirty"), "speed_folder": SPEED_FOLDER}
    return flat(passage.format_map(figures))


@pytest.mark.parametrize("path", list(QUOTES))
def test_quoted_figures_are_those_of_report_json(path):
    text = flat((ROOT / path).read_text())
    missing = [filled(passage) for passage in QUOTES[path] if filled(passage) not in text]
    assert missing == [], f"{path}: not found (or not the figure of report.json): {missing}"


def test_every_number_of_the_readmes_results_is_from_report_json():
    readme = (ROOT / "README.md").read_text()
    results = readme[readme.index("## Results") : readme.index("## Run the tests")]
    latency = readme[readme.index("One action: ") : readme.index("From Python:")]
    text = flat(results + " " + latency)
    for passage in QUOTES["README.md"]:
        text = text.replace(filled(passage), " ")
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)|`[^`]*`|\]\([^)]*\)", " ", text)  # figures, commands, file names, links
    for setting in SETTINGS:
        text = re.sub(setting, " ", text)
    assert re.findall(r"[^\s|]*\d[^\s|]*", text) == []


def test_the_speed_table_labels_what_it_compares():
    readme = (ROOT / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| ") and (" | default | " in line or " | 1 | " in line)]
    assert len(rows) == 7
    for line in rows:  # bold only at equal hyperparameters
        assert ("not equal hyperparameters" in line) != ("**" in line), line
    before_builder = FIGURES["speed_file"] == "throughput/threads/throughput.json"
    for line in rows:
        if line.startswith("| RL Zoo HalfCheetah-v4"):  # built with VecNormalize's default gamma before the builder
            assert ("to be re-measured" in line) == before_builder, line
    assert ("to re-measure through it" in flat(readme)) == before_builder
    # The table's own command: the one that wrote the file its figures come from
    command = "python -m benchmarks.throughput --reps 5 --threads default 1 --zoo-command --out benchmarks/results/"
    assert f"{command}{SPEED_FOLDER}`" in flat(readme)


def test_issue_37_contradictions_stay_fixed():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    latest = changelog[changelog.index("## ") : changelog.index("\n## ", changelog.index("## ") + 3)]
    assert "batch_size // 256" not in changelog and "batch_size // 128" in latest  # sb3_clippedppo/threads.py's rule
    # The latest entry says what changed; its figures are the README's and the docs'
    assert re.findall(r"\d[\d.,]*\s*(?:x\b|min\b|µs|steps/s|GFLOP)", latest) == []
    history = (ROOT / "docs" / "history.md").read_text()
    assert "now uses the Zoo's values with a learning rate" not in history and "ships `lin_1.6e-4`" not in history
    assert "`lin_1.6e-4`" in (ROOT / "hyperparams" / "clippedppo.yml").read_text()
    readme = (ROOT / "README.md").read_text()
    for stale in ("aim: 2.5x", "the entry shipped then", "4.7x", "learns alike", "learn alike", "They learn alike"):
        assert stale not in readme and stale not in (ROOT / "docs" / "benchmarks.md").read_text(), stale
    # No ratio from a censored median anywhere in report.json's figures
    for name, value in FIGURES.items():
        if name.endswith("_median") and value.startswith(">"):
            assert f"{name.removesuffix('_median')}_over_first" not in FIGURES


def test_the_two_machines_of_the_zoo_benchmark_are_quoted_from_the_dataset():
    """docs/benchmarks.md's CPU minutes of the two VMs that share the label ``AMD EPYC (2 cores)`` are the dataset's, and
    in each row that mixes them both algorithms' median runs come from the machine the passage names."""
    import csv
    import gzip
    import statistics

    boundary = "2026-12-07 21:30"  # the passage's boundary between the two machines (UTC)
    with gzip.open(ROOT / "benchmarks" / "results" / "runs.csv.gz", "rt") as f:
        runs = [r for r in csv.DictReader(f) if r["variant"] == "zoo-ppo"]

    def minutes(algo: str, env: str, seed: int) -> str:
        (run,) = [r for r in runs if (r["algo"], r["env"], r["seed"]) == (algo, env, str(seed))]
        return f"{float(run['cpu_s']) / 60:.1f}"

    ant = [minutes("clippedppo", "Ant-v4", seed) for seed in (0, 1, 2)]
    walker = [minutes("ppo", "Walker2d-v4", seed) for seed in (0, 1, 2)]
    docs = " ".join((ROOT / "docs" / "benchmarks.md").read_text().split())
    quoted = (f"(ClippedPPO's Ant-v4 seed 0: {ant[0]} CPU minutes on the first, seeds 1 and 2: {ant[1]} and {ant[2]} on "
              f"the second; SB3 PPO's Walker2d-v4 seeds 0 and 1: {walker[0]} and {walker[1]}, seed 2: {walker[2]})")
    assert quoted in docs
    assert f"those started before {boundary} UTC ran on one" in docs
    for env, first in (("Walker2d-v4", True), ("Ant-v4", False)):
        for algo in ("clippedppo", "ppo"):
            row = sorted((float(r["cpu_s"]), r["started"]) for r in runs if (r["algo"], r["env"]) == (algo, env))
            assert len(row) == 3, (algo, env)
            median = next(started for cpu, started in row if cpu == statistics.median(c for c, _ in row))
            assert (median < boundary) == first, (algo, env, median)
