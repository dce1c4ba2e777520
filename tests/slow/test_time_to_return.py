"""benchmarks.time_to_return: the protocol's runs stop at the first evaluation that reaches the threshold (or at -n steps),
and the records, table and figure say when."""

import json

import pytest

from benchmarks import time_to_return

pytestmark = pytest.mark.slow


def test_runs_stop_at_the_threshold_or_at_the_step_budget(tmp_path, monkeypatch):
    common = ["--env", "CartPole-v1", "--max-steps", "6000", "--eval-freq", "1000", "--eval-episodes", "2", "--seeds", "0",
              "--out", str(tmp_path)]  # fmt: skip
    summary = time_to_return.main([*common, "--threshold", "40", "--variants", "reached=clippedppo"])
    record = json.loads((tmp_path / "runs" / "reached__seed0.json").read_text())
    means = [e["mean_return"] for e in record["evaluations"]]
    assert record["status"] == "finished" and means[-1] >= 40 and all(m < 40 for m in means[:-1])
    assert [e["timesteps"] for e in record["evaluations"]] == [1000 * (i + 1) for i in range(len(means))]
    assert record["timesteps"] < record["evaluations"][-1]["timesteps"] + 1000  # stopped before the next evaluation
    assert record["minutes_to_threshold"] * 60 == pytest.approx(record["evaluations"][-1]["seconds"])
    assert summary["variants"]["reached"]["reached"] == 1

    summary = time_to_return.main([*common, "--threshold", "1e9", "--variants", "never=clippedppo"])
    record = json.loads((tmp_path / "runs" / "never__seed0.json").read_text())
    assert record["minutes_to_threshold"] is None and record["timesteps"] >= 6000 and len(record["evaluations"]) == 6
    never = summary["variants"]["never"]
    assert (never["median_minutes"], never["reached"], never["seeds"], never["minutes"]) == (None, 0, 1, [None])
    assert never["followed_minutes"] == [pytest.approx(record["seconds"] / 60)] and never["ratio_to_first"] is None
    bound = int(record["seconds"] / 6) / 10  # the minutes followed, rounded down to a tenth
    assert never["median"] == f"> {bound:g} min (0 of 1 reached)"
    assert f"| never | > {bound:g} min (0 of 1 reached) | 0/1 | - | - |" in (tmp_path / "summary.md").read_text()
    assert [row["reached"] for row in never["reached_by_minute"]] == [0] * len(never["reached_by_minute"])
    assert (tmp_path / "curves.png").stat().st_size > 0

    # The dataset takes each evaluation's seconds from the callback's copy in the Zoo's run folder
    from benchmarks import dataset

    run_dir = tmp_path / "logs" / "never" / "clippedppo" / "CartPole-v1_1"
    copy = json.loads((run_dir / time_to_return.RUN_FOLDER_RECORD).read_text())
    assert copy["evaluations"] == record["evaluations"]
    _, rows, _ = dataset.read_run(run_dir, "run", "never")
    assert [float(row["wall_clock_s"]) for row in rows] == [e["seconds"] for e in record["evaluations"]]

    # The report's time-to-return table and figure, from the dataset, give the records' minutes
    from benchmarks import report

    for name in ("reached", "never"):
        dataset.add([tmp_path / "logs" / name], f"ttr/{name}", prefix="ttr", dataset=tmp_path / "dataset")
    monkeypatch.setitem(report.TIME_TO_RETURN, "CartPole-v1", 40.0)
    lines, numbers = report.time_to_return_section(dataset.load(tmp_path / "dataset"), [("ttr/reached", "reached"),
                                                   ("ttr/never", "never")], tmp_path)  # fmt: skip
    for name in ("reached", "never"):  # the report's threshold for CartPole-v1 is 40: both runs reached it
        evaluations = json.loads((tmp_path / "runs" / f"{name}__seed0.json").read_text())["evaluations"]
        first = next(e for e in evaluations if e["mean_return"] >= 40.0)
        assert numbers["CartPole-v1"]["variants"][name]["minutes"] == [pytest.approx(first["seconds"] / 60, rel=1e-12)]
        assert numbers["CartPole-v1"]["variants"][name]["steps_to_threshold"] == [first["timesteps"]]
        assert any(line.startswith(f"| {name} | {first['seconds'] / 60:.2f} | 1/1 |") for line in lines)
    assert (tmp_path / "time_to_return_CartPole-v1.png").stat().st_size > 0

    # A time cap ends a run that does not reach the threshold
    time_to_return.main([*common[:3], "100000", *common[4:], "--threshold", "1e9", "--time-cap", "0.05",
                         "--variants", "capped=clippedppo"])  # fmt: skip
    record = json.loads((tmp_path / "runs" / "capped__seed0.json").read_text())
    assert record["minutes_to_threshold"] is None and record["timesteps"] < 100000 and 3 <= record["seconds"] < 30

    # --keep-training: the same first crossing, then training on to -n steps
    time_to_return.main([*common, "--threshold", "40", "--keep-training", "--variants", "kept=clippedppo"])
    kept = json.loads((tmp_path / "runs" / "kept__seed0.json").read_text())
    reached = json.loads((tmp_path / "runs" / "reached__seed0.json").read_text())
    assert kept["timesteps"] >= 6000 and len(kept["evaluations"]) == 6
    assert kept["evaluations"][: len(reached["evaluations"])] == [
        {**e, "seconds": k["seconds"]} for e, k in zip(reached["evaluations"], kept["evaluations"], strict=False)
    ]  # the same returns (same seed), other seconds
    first = next(e for e in kept["evaluations"] if e["mean_return"] >= 40)
    assert kept["minutes_to_threshold"] * 60 == pytest.approx(first["seconds"])

    # A finished run is not repeated
    mtime = (tmp_path / "runs" / "never__seed0.json").stat().st_mtime
    time_to_return.main([*common, "--threshold", "1e9", "--variants", "never=clippedppo"])
    assert (tmp_path / "runs" / "never__seed0.json").stat().st_mtime == mtime


def test_a_censored_median_is_shown_as_a_bound_with_the_seeds_that_reached():
    minutes, followed = [None, 7.88, None, None, None], [8.02, 7.9, 8.31, 8.05, 8.2]
    assert time_to_return.median_minutes(minutes) is None
    assert time_to_return.median_cell(None, minutes, followed) == "> 8 min (1 of 5 reached)"
    assert time_to_return.median_cell(2.789, [2.789], [2.8]) == "2.79"
    by_minute = time_to_return.reached_by_minute(minutes, followed)
    assert [row["minute"] for row in by_minute] == list(range(9))  # up to 8.02 min, when the first capped seed stopped
    assert [row["reached"] for row in by_minute] == [0] * 8 + [1]  # 7.88 min: by minute 8
    # Seeds stopped when they reach it stay reached; the seed that did not is known up to 3.2 minutes
    by_minute = time_to_return.reached_by_minute([1.5, 0.5, None], [1.5, 0.5, 3.2])
    assert [(row["reached"], row["fraction"]) for row in by_minute] == [(0, 0.0), (1, 1 / 3), (2, 2 / 3), (2, 2 / 3)]
    by_minute = time_to_return.reached_by_minute([1.5, 0.5, 2.5], [1.5, 0.5, 2.5])  # all reached: up to the last
    assert [row["reached"] for row in by_minute] == [0, 1, 2, 3]


def test_a_ratio_only_where_both_medians_exist():
    def record(variant, minutes, followed):
        return {"variant": variant, "minutes_to_threshold": minutes, "followed_minutes": followed, "evaluations": []}

    records = [record("a", 1.0, 1.0), record("b", 2.0, 2.0), record("c", None, 8.0), record("a", 3.0, 3.0),
               record("b", 4.0, 4.0), record("c", 7.0, 7.0), record("a", 2.0, 2.0), record("b", 3.0, 3.0),
               record("c", None, 8.1)]  # fmt: skip
    lines, summary = time_to_return.table(records, 100.0)
    rows = summary["variants"]
    assert rows["a"]["ratio_to_first"] == 1.0 and rows["b"]["ratio_to_first"] == pytest.approx(1.5)
    assert rows["c"]["median_minutes"] is None and rows["c"]["ratio_to_first"] is None
    assert "| c | > 8 min (1 of 3 reached) | 1/3 | -, 7.00, - | -, -, - |" in lines


def test_median_counts_a_miss_as_the_slowest():
    assert time_to_return.median_minutes([3.0, None, 1.0]) == 3.0
    assert time_to_return.median_minutes([3.0, None, None]) is None
    assert time_to_return.median_minutes([4.0, 2.0]) == 3.0
    assert time_to_return.median_minutes([]) is None


def test_variant_syntax():
    assert time_to_return.parse_variant("a=ppo:hyperparams/clippedppo.yml") == ("a", "ppo", "hyperparams/clippedppo.yml")
    assert time_to_return.parse_variant("b=clippedppo") == ("b", "clippedppo", None)
    with pytest.raises(Exception, match="NAME=ALGO"):
        time_to_return.parse_variant("ppo")
