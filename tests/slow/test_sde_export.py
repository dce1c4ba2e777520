"""A gSDE policy exported to ONNX: deterministic actions from raw observations equal ``predict``'s, before and after a
save/load round trip, with and without ``squash_output``. Needs the ``export`` extra."""

import numpy as np
import onnxruntime as ort
import pytest
from stable_baselines3.common.env_util import make_vec_env

from sb3_clippedppo import ClippedPPO
from sb3_clippedppo.export import export_onnx


@pytest.mark.parametrize("squash_output", [False, True], ids=["gaussian", "squashed"])
def test_gsde_policy_exports_and_round_trips(tmp_path, squash_output):
    model = ClippedPPO("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), n_steps=64, batch_size=64, seed=0,
                       learning_rate=3e-3, use_sde=True, sde_sample_freq=4,
                       policy_kwargs=dict(squash_output=squash_output, log_std_init=-1.0))  # fmt: skip
    model.learn(256)
    model.save(tmp_path / "sde")
    loaded = ClippedPPO.load(tmp_path / "sde")
    observations = np.random.default_rng(0).uniform(-3, 3, size=(64, 3)).astype(np.float32)
    expected = model.predict(observations, deterministic=True)[0]
    np.testing.assert_array_equal(loaded.predict(observations, deterministic=True)[0], expected)
    for source in (model, loaded):
        path = export_onnx(source, tmp_path / f"{id(source)}.onnx")
        actions = ort.InferenceSession(str(path)).run(["action"], {"observation": observations})[0]
        np.testing.assert_allclose(actions, expected, rtol=0, atol=1e-5)
        assert np.all(np.abs(actions) <= 2.0)
