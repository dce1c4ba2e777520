"""``python -m benchmarks.run search``: the study is created once with the starting points enqueued; the best trial becomes
a block for hyperparams/clippedppo.yml that the Zoo reads."""

import pytest
import yaml

from benchmarks import run as search
from sb3_clippedppo import zoo

pytestmark = pytest.mark.slow  # needs the zoo extra (the Zoo's Optuna search)

optuna = pytest.importorskip("optuna")


def test_study_is_created_once_with_the_starting_points(tmp_path):
    storage = str(tmp_path / "study.log")
    expected = len(search.LEVERS) + len(search.VARIANTS["HalfCheetah-v4"])
    assert search.create_study(storage, "hc", "HalfCheetah-v4") == expected
    assert search.create_study(storage, "hc", "HalfCheetah-v4") == 0  # exists: nothing enqueued twice
    assert search.create_study(storage, "other", "CartPole-v1") == 0  # no starting points for other environments
    backend = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    study = optuna.load_study(storage=backend, study_name="hc")
    waiting = [t for t in study.trials if t.state == optuna.trial.TrialState.WAITING]
    assert len(waiting) == expected
    # An enqueued trial asks the Zoo's sampler for exactly the shipped settings
    trial = study.ask()
    params = zoo.sample_clippedppo_params(trial, n_actions=6, n_envs=1, additional_args={})
    assert params["n_steps"] == 512 and params["batch_size"] == 64 and params["gamma"] == pytest.approx(0.98)
    assert params["policy_kwargs"]["net_arch"] == dict(pi=[256, 256], vf=[256, 256])
    assert not params["recompute_advantages"] and not params["policy_kwargs"]["normalize_observations"]
    study.tell(trial, 1000.0)
    second = study.ask()
    params = zoo.sample_clippedppo_params(second, n_actions=6, n_envs=1, additional_args={})
    assert params["policy_kwargs"]["normalize_observations"]
    study.tell(second, 2000.0)

    block = search.best_block(storage, "hc")
    assert block.startswith("# best of study 'hc': trial 1, value 2000.0")
    entry = yaml.safe_load(block)
    assert entry["n_steps"] == 512 and entry["learning_rate"] == pytest.approx(2.0633e-05)
    assert "normalize_observations=True" in entry["policy_kwargs"] and "nn.ReLU" in entry["policy_kwargs"]

    search.dump_trials(storage, "hc", tmp_path / "trials.csv")
    rows = (tmp_path / "trials.csv").read_text().splitlines()
    assert rows[0].startswith("number,state,value") and len(rows) == 1 + expected


def test_tuned_section_reports_targets_and_time_to_return():
    import numpy as np

    from benchmarks import report

    def run(returns, minutes, seed):
        return {"returns": np.array(returns, float), "minutes": np.array(minutes, float), "seed": seed}

    rows = {
        "ppo": [run([1000, 4000, 5200], [5, 10, 15], s) for s in range(3)],
        "clippedppo": [run([1000, 5100, 5300], [3, 6, 9], s) for s in range(3)],
        "clippedppo[tuned]": [
            run([2000, 5500, 6400], [3, 6, 9], 0),
            run([2000, 4000, 4500], [3, 6, 9], 1),
            run([5000, 6000, 6500], [3, 6, 9], 2),
        ],  # fmt: skip
    }
    assert report.minutes_to_reach(rows["ppo"][0], 5000) == 15.0
    assert report.minutes_to_reach(rows["clippedppo[tuned]"][1], 5000) is None
    numbers = {
        "iqm": {"clippedppo[tuned]": 5800.0},
        "probability_of_improvement": {"clippedppo[tuned],ppo": 0.9},
        "probability_of_improvement_ci": {"clippedppo[tuned],ppo": [0.45, 1.0]},
    }
    text = "\n".join(report.tuned_section("HalfCheetah-v4", rows, numbers))
    assert "tuned ClippedPPO's IQM is 5800, NOT met (short by 200)" in text
    assert "0.90 [0.45, 1.00], NOT met" in text
    assert "| SB3 PPO | 15.0 | 3/3 |" in text and "| ClippedPPO | 6.0 | 3/3 |" in text
    assert "| ClippedPPO + tuned | 6.0 | 2/3 | 6.0, -, 3.0 |" in text
    assert numbers["minutes_to_return"]["clippedppo[tuned]"] == [6.0, None, 3.0]
    assert "The search's evidence for HalfCheetah-v4 (every candidate tried" in text and report.SEARCH_EVIDENCE in text
    numbers.update(iqm={"clippedppo[tuned]": 6100.0}, probability_of_improvement_ci={"clippedppo[tuned],ppo": [0.6, 1.0]})
    text = "\n".join(report.tuned_section("HalfCheetah-v4", rows, numbers))
    assert "IQM is 6100, met" in text and "0.90 [0.60, 1.00], met" in text and "search's evidence" not in text
