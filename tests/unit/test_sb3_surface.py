"""What users' code written for Stable-Baselines3's PPO touches: the rollout buffer at on_rollout_end, the callback
locals, load on bad input (set_parameters: tests/unit/test_set_parameters.py), and saving that never destroys the
previous save."""

import zipfile

import numpy as np
import pytest
import torch as th
from stable_baselines3.common import save_util
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_clippedppo import ClippedPPO
from tests.envs import counter_env


class CheckGAECallback(BaseCallback):
    """SB3's GAE test pattern: at the end of each rollout, read the buffer and check its advantages and returns
    against GAE computed here, one transition at a time, from the buffer's rewards, episode starts and values."""

    def __init__(self):
        super().__init__()
        self.checked = 0
        self.step_locals: list[dict] = []

    def _on_step(self) -> bool:
        self.step_locals.append({key: self.locals.get(key) for key in ("values", "log_probs", "actions", "clipped_actions")})
        return True

    def _on_rollout_end(self) -> None:
        buffer, model = self.model.rollout_buffer, self.model
        n_steps = buffer.size()
        assert n_steps == buffer.buffer_size == model.n_steps and buffer.full and buffer.pos == n_steps
        assert buffer.n_envs == model.n_envs
        for name in ("rewards", "returns", "advantages", "values", "log_probs", "episode_starts"):
            array = getattr(buffer, name)
            assert array.shape == (n_steps, buffer.n_envs) and array.dtype == np.float32, name
        assert buffer.actions.shape == (n_steps, buffer.n_envs, 2) and buffer.actions.dtype == np.float32
        assert buffer.observations.shape == (n_steps, buffer.n_envs, 1)
        with th.no_grad():
            last_values = model.policy.predict_values(th.as_tensor(self.locals["new_obs"])).flatten().numpy()
        dones = self.locals["dones"]
        advantages = np.zeros((n_steps, buffer.n_envs))
        last_gae = np.zeros(buffer.n_envs)
        for t in reversed(range(n_steps)):
            if t == n_steps - 1:
                next_non_terminal, next_values = 1.0 - dones, last_values
            else:
                next_non_terminal, next_values = 1.0 - buffer.episode_starts[t + 1], buffer.values[t + 1]
            delta = buffer.rewards[t] + model.gamma * next_values * next_non_terminal - buffer.values[t]
            last_gae = delta + model.gamma * model.gae_lambda * next_non_terminal * last_gae
            advantages[t] = last_gae
        np.testing.assert_allclose(buffer.advantages, advantages, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(buffer.returns, advantages + buffer.values, rtol=1e-5, atol=1e-5)
        assert np.any(buffer.episode_starts[1:])  # episodes ended inside the rollout
        self.checked += 1


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "autograd"])
def test_sb3_gae_callback_reads_the_buffer(fast_path):
    env = DummyVecEnv([counter_env(terminate_at=7)] * 2)  # terminations only: no bootstrap of truncated episodes
    model = ClippedPPO("MlpPolicy", env, n_steps=16, batch_size=16, gamma=0.9, gae_lambda=0.8, fast_path=fast_path, seed=0)
    assert model.uses_fast_path is fast_path
    callback = CheckGAECallback()
    model.learn(64, callback=callback)
    assert callback.checked == 2
    # The locals of every step: values and log-probabilities as SB3's PPO has them, except on the fast path, which
    # computes them for the whole rollout at its end (documented in ClippedPPO.collect_rollouts)
    assert len(callback.step_locals) == 64 // 2
    for step in callback.step_locals:
        assert step["actions"].shape == (2, 2) and step["clipped_actions"].shape == (2, 2)
        if fast_path:
            assert step["values"] is None and step["log_probs"] is None
        else:
            assert step["values"].shape == (2,) and step["log_probs"].shape == (2,)


def small_model(**kwargs) -> ClippedPPO:
    return ClippedPPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, seed=0, **kwargs)


def test_load_rejects_a_file_that_is_not_a_model(tmp_path):
    path = tmp_path / "not_a_model.zip"
    path.write_bytes(b"this is not a zip file")
    with pytest.raises(ValueError, match="zip"):
        ClippedPPO.load(path)


def test_save_leaves_the_previous_save_intact_when_the_write_fails(tmp_path, monkeypatch):
    model = small_model()
    path = tmp_path / "model.zip"
    model.save(path)
    before = path.read_bytes()
    model.learn(64)  # the parameters change

    calls = {"n": 0}
    original = save_util.th.save

    def fail_halfway(obj, f, *args, **kwargs):  # the first tensor file is written, the disk is full at the second
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(28, "No space left on device")
        return original(obj, f, *args, **kwargs)

    monkeypatch.setattr(save_util.th, "save", fail_halfway)
    with pytest.raises(OSError, match="No space left"):
        model.save(path)
    monkeypatch.undo()
    assert calls["n"] == 2
    assert path.read_bytes() == before  # the previous checkpoint, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.zip"]  # no temporary file left behind
    assert zipfile.is_zipfile(path) and ClippedPPO.load(path).num_timesteps == 0

    model.save(path)  # a save that succeeds replaces it
    assert ClippedPPO.load(path).num_timesteps == model.num_timesteps > 0
    model.save(tmp_path / "no_suffix")  # SB3 appends .zip
    assert (tmp_path / "no_suffix.zip").exists()


def test_kl_target_is_deprecated_for_kl_penalty_target():
    with pytest.warns(DeprecationWarning, match="kl_target was renamed kl_penalty_target"):
        model = small_model(policy_objective="kl_penalty", kl_target=0.02)
    assert model.kl_penalty_target == 0.02 and not hasattr(model, "kl_target")


def test_a_model_saved_with_kl_target_loads(tmp_path):
    """A model saved before the rename (its data holds kl_target) loads with kl_penalty_target set from it."""
    model = small_model(policy_objective="kl_penalty", kl_penalty_target=0.03)
    model.save(tmp_path / "new.zip")
    with zipfile.ZipFile(tmp_path / "new.zip") as new, zipfile.ZipFile(tmp_path / "old.zip", "w") as old:
        for item in new.infolist():
            content = new.read(item.filename)
            if item.filename == "data":
                content = content.replace(b'"kl_penalty_target"', b'"kl_target"')
                assert b'"kl_target"' in content
            old.writestr(item, content)
    loaded = ClippedPPO.load(tmp_path / "old.zip")
    assert loaded.kl_penalty_target == 0.03 and "kl_target" not in vars(loaded)
