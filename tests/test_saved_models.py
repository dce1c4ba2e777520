"""Nothing a user saved is lost: models saved by sb3_clippedppo 0.1.0 (tests/data, made by make_0.1.0_models.py) load,
predict what they predicted then, and keep training; models saved with one storage (fast path or not) load with the other."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from sb3_clippedppo import ClippedPPO

DATA = Path(__file__).parent / "data"
RECORDED = json.loads((DATA / "clippedppo_0.1.0_predictions.json").read_text())
ENV_IDS = {"pendulum": "Pendulum-v1", "pendulum_sds": "Pendulum-v1", "cartpole": "CartPole-v1"}


@pytest.mark.parametrize("name", list(RECORDED))
def test_models_saved_by_0_1_0_load_predict_and_train(name):
    recorded = RECORDED[name]
    model = ClippedPPO.load(DATA / f"clippedppo_0.1.0_{name}.zip", env=make_vec_env(ENV_IDS[name], n_envs=2, seed=0))
    obs = np.array(recorded["obs"], dtype=np.float32)
    actions, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(np.asarray(actions, dtype=np.float64), np.array(recorded["actions"]), rtol=1e-5, atol=1e-6)
    with th.no_grad():
        values = model.policy.predict_values(th.as_tensor(obs)).numpy().ravel()
    np.testing.assert_allclose(values, recorded["values"], rtol=1e-5, atol=1e-6)
    assert model.num_timesteps == recorded["num_timesteps"]
    # The saved optimizer state (flat, one tensor per group in 0.1.0) was restored into whichever storage is used now
    state = model.policy.optimizer.state_dict()["state"]
    assert state and all(float(entry["step"]) > 0 for entry in state.values())
    model.learn(256, reset_num_timesteps=False)
    assert model.num_timesteps == recorded["num_timesteps"] + 256


@pytest.mark.parametrize("saved_with, loaded_with", [(True, False), (False, True)])
def test_optimizer_state_crosses_storages(tmp_path, saved_with, loaded_with):
    model = ClippedPPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, seed=0, fast_path=saved_with)
    model.learn(128)
    model.save(tmp_path / "model")
    loaded = ClippedPPO.load(tmp_path / "model", custom_objects={"fast_path": loaded_with})
    assert loaded.uses_fast_path is loaded_with
    moments = {
        m: th.cat([s["exp_avg"].reshape(-1) for _, s in sorted(m.policy.optimizer.state_dict()["state"].items())])
        for m in (model, loaded)
    }
    th.testing.assert_close(moments[loaded], moments[model])
