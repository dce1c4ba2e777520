"""Saved models load into either parameter storage: a model saved with the fast path (flat storage) loads into autograd's
per-tensor storage and the other way round, with the optimizer's state."""

import pytest
import torch as th

from sb3_clippedppo import ClippedPPO


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
    assert (loaded.policy.parameters_to_vector() == model.policy.parameters_to_vector()).all()
