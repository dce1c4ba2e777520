"""benchmarks.time_to_return: the protocol's runs stop at the first evaluation that reaches the threshold (or at -n steps),
and the records, table and figure say when."""

import json

import pytest

from benchmarks import time_to_return

pytestmark = pytest.mark.slow


def test_runs_stop_at_the_threshold_or_at_the_step_budget(tmp_path):
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
    assert summary["variants"]["never"] == {"median_minutes": None, "reached": 0, "seeds": 1, "minutes": [None]}
    assert "| never | - | 0/1 | - |" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "curves.png").stat().st_size > 0

    # A time cap ends a run that does not reach the threshold
    time_to_return.main([*common[:3], "100000", *common[4:], "--threshold", "1e9", "--time-cap", "0.05",
                         "--variants", "capped=clippedppo"])  # fmt: skip
    record = json.loads((tmp_path / "runs" / "capped__seed0.json").read_text())
    assert record["minutes_to_threshold"] is None and record["timesteps"] < 100000 and 3 <= record["seconds"] < 30

    # A finished run is not repeated
    mtime = (tmp_path / "runs" / "never__seed0.json").stat().st_mtime
    time_to_return.main([*common, "--threshold", "1e9", "--variants", "never=clippedppo"])
    assert (tmp_path / "runs" / "never__seed0.json").stat().st_mtime == mtime


def test_variant_syntax():
    assert time_to_return.parse_variant("a=ppo:hyperparams/clippedppo.yml") == ("a", "ppo", "hyperparams/clippedppo.yml")
    assert time_to_return.parse_variant("b=clippedppo") == ("b", "clippedppo", None)
    with pytest.raises(Exception, match="NAME=ALGO"):
        time_to_return.parse_variant("ppo")
