"""Stable-Baselines3 machinery with ClippedPPO: save/load, callbacks, progress bar, logger outputs, VecNormalize."""

import csv

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CheckpointCallback,
    EvalCallback,
    StopTrainingOnRewardThreshold,
)
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecNormalize

from sb3_clippedppo import ActorCriticCnnPolicy, ActorCriticPolicy, ClippedPPO, MultiInputActorCriticPolicy

SB3_PPO_TRAIN_KEYS = {
    "train/approx_kl",
    "train/clip_fraction",
    "train/entropy_loss",
    "train/policy_gradient_loss",
    "train/value_loss",
    "train/explained_variance",
    "train/std",
    "train/n_updates",
    "train/clip_range",
    "train/loss",
    "train/learning_rate",
}


def small_model(env="Pendulum-v1", **kwargs) -> ClippedPPO:
    defaults = dict(n_steps=128, batch_size=64, n_epochs=2, seed=0, policy_kwargs=dict(net_arch=[32, 32]))
    return ClippedPPO("MlpPolicy", env, **{**defaults, **kwargs})


def test_policy_alias_and_class():
    model = small_model()
    assert isinstance(model.policy, ActorCriticPolicy)
    assert ClippedPPO.policy_aliases == {
        "MlpPolicy": ActorCriticPolicy,
        "CnnPolicy": ActorCriticCnnPolicy,
        "MultiInputPolicy": MultiInputActorCriticPolicy,
    }


def test_save_load_round_trip_gives_identical_actions_and_state(tmp_path):
    model = small_model(clip_range_vf=0.5, target_kl=0.05, learning_rate=LinearSchedule(1e-3, 1e-4, 1.0))
    model.learn(256)
    obs = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    actions, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "model")

    loaded = ClippedPPO.load(tmp_path / "model", env=make_vec_env("Pendulum-v1"))
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], actions)
    np.testing.assert_array_equal(loaded.policy.parameters_to_vector(), model.policy.parameters_to_vector())
    saved_attributes = ("n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda", "ent_coef", "vf_coef", "target_kl")
    for name in (*saved_attributes, "num_timesteps"):
        assert getattr(loaded, name) == getattr(model, name), name
    assert loaded.clip_range(0.5) == model.clip_range(0.5)
    assert loaded.clip_range_vf(0.5) == 0.5
    assert loaded.lr_schedule(0.5) == pytest.approx(model.lr_schedule(0.5))
    # The optimizer state (Adam moments) is restored too, and the loaded model keeps training
    state, loaded_state = model.policy.optimizer.state_dict()["state"], loaded.policy.optimizer.state_dict()["state"]
    for key in ("exp_avg", "exp_avg_sq"):
        th.testing.assert_close(loaded_state[0][key], state[0][key])
    assert loaded.uses_fast_path and loaded.backend.flat.intact()
    loaded.learn(128, reset_num_timesteps=False)
    assert loaded.num_timesteps == 384

    # The policy alone saves and loads too. Its own predict is SB3's (torch); the model's runs the closed form's NumPy
    # actor, which gives the same actions to float32 rounding (tests/unit/test_predict.py)
    model.policy.save(tmp_path / "policy.pth")
    policy = ActorCriticPolicy.load(tmp_path / "policy.pth")
    np.testing.assert_array_equal(policy.predict(obs, deterministic=True)[0], model.policy.predict(obs, deterministic=True)[0])
    np.testing.assert_allclose(policy.predict(obs, deterministic=True)[0], actions, rtol=1e-5, atol=1e-6)


def test_halfcheetah_with_vecnormalize_save_load_identical_deterministic_actions(tmp_path):
    env = VecNormalize(make_vec_env("HalfCheetah-v4", n_envs=2, seed=0))
    model = ClippedPPO(
        "MlpPolicy",
        env,
        n_steps=256,
        batch_size=64,
        n_epochs=2,
        seed=0,
        policy_kwargs=dict(log_std_init=-2, ortho_init=False, activation_fn=th.nn.ReLU, net_arch=dict(pi=[64], vf=[64])),
    )
    model.learn(1024)
    model.save(tmp_path / "cheetah")
    env.save(str(tmp_path / "vecnormalize.pkl"))

    eval_env = VecNormalize.load(str(tmp_path / "vecnormalize.pkl"), make_vec_env("HalfCheetah-v4", n_envs=1, seed=1))
    eval_env.training, eval_env.norm_reward = False, False
    loaded = ClippedPPO.load(tmp_path / "cheetah", env=eval_env)
    obs = eval_env.reset()
    for _ in range(50):
        action, _ = model.predict(obs, deterministic=True)
        loaded_action, _ = loaded.predict(obs, deterministic=True)
        np.testing.assert_array_equal(action, loaded_action)
        assert np.all(np.abs(action) <= 1.0)
        obs, _, _, _ = eval_env.step(action)
    np.testing.assert_array_equal(eval_env.obs_rms.mean, env.obs_rms.mean)


def test_logger_outputs_and_keys(tmp_path):
    model = small_model(clip_range_vf=0.2)
    model.set_logger(configure(str(tmp_path), ["stdout", "csv", "tensorboard"]))
    model.learn(128 * 3)
    with open(tmp_path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    keys = set(rows[0])
    missing = (SB3_PPO_TRAIN_KEYS | {"rollout/ep_rew_mean", "time/fps", "train/clip_range_vf"}) - keys
    assert not missing
    assert {"train/early_stop_epoch", "train/minibatch_updates"} <= keys
    last = rows[-1]
    assert float(last["train/minibatch_updates"]) == 2 * 2 and float(last["train/early_stop_epoch"]) == -1
    assert float(last["train/std"]) == pytest.approx(1.0, abs=0.05)
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_tensorboard_log_argument(tmp_path):
    model = small_model(tensorboard_log=str(tmp_path))
    model.learn(256, tb_log_name="run")
    assert list((tmp_path / "run_1").glob("events.out.tfevents.*"))


def test_progress_bar(capsys):
    """SB3's progress bar (tqdm's rich bar) counts every step of learn, to the end."""
    small_model().learn(256, progress_bar=True)
    shown = capsys.readouterr().out
    assert "256/256" in shown and "100%" in shown, shown[-2000:]


def test_eval_checkpoint_and_stop_on_reward_threshold(tmp_path):
    model = small_model("CartPole-v1", n_steps=64, batch_size=64)
    stop = StopTrainingOnRewardThreshold(reward_threshold=0.0, verbose=0)  # the first evaluation passes it
    eval_callback = EvalCallback(
        make_vec_env("CartPole-v1"),
        n_eval_episodes=2,
        eval_freq=128,
        callback_on_new_best=stop,
        best_model_save_path=str(tmp_path / "best"),
        log_path=str(tmp_path / "eval"),
    )
    checkpoint = CheckpointCallback(save_freq=64, save_path=str(tmp_path / "ckpt"))
    model.learn(10_000, callback=[checkpoint, eval_callback])
    assert model.num_timesteps == 128  # stopped at the first evaluation
    assert (tmp_path / "best" / "best_model.zip").exists()
    assert np.load(tmp_path / "eval" / "evaluations.npz")["timesteps"].tolist() == [128]
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("*.zip")) == ["rl_model_128_steps.zip", "rl_model_64_steps.zip"]
    ClippedPPO.load(tmp_path / "ckpt" / "rl_model_64_steps.zip")


class ProtocolRecorder(BaseCallback):
    def __init__(self, stop_after: int | None = None):
        super().__init__()
        self.events: list[str] = []
        self.stop_after = stop_after
        self.seen_locals: set[str] = set()

    def _on_rollout_start(self) -> None:
        self.events.append("rollout_start")

    def _on_step(self) -> bool:
        self.events.append("step")
        self.seen_locals |= set(self.locals)
        return self.stop_after is None or self.n_calls < self.stop_after

    def _on_rollout_end(self) -> None:
        self.events.append("rollout_end")

    def _on_training_end(self) -> None:
        self.events.append("training_end")


def test_callback_protocol_and_locals():
    recorder = ProtocolRecorder()
    model = small_model(n_steps=64)
    model.learn(128, callback=recorder)
    expected = (["rollout_start"] + ["step"] * 64 + ["rollout_end"]) * 2 + ["training_end"]
    assert recorder.events == expected
    assert {"new_obs", "rewards", "dones", "infos", "actions", "clipped_actions"} <= recorder.seen_locals
    assert recorder.num_timesteps == 128


def test_callback_returning_false_stops_training():
    recorder = ProtocolRecorder(stop_after=10)
    model = small_model(n_steps=64)
    model.learn(10_000, callback=recorder)
    assert model.num_timesteps == 10
    assert recorder.events.count("step") == 10 and "rollout_end" not in recorder.events


def test_ep_info_buffer_and_rollout_logging():
    model = small_model("CartPole-v1", n_steps=256)
    model.learn(512)
    assert len(model.ep_info_buffer) > 0
    assert all(info["l"] >= 1 for info in model.ep_info_buffer)


class LearningRateRecorder(BaseCallback):
    def __init__(self):
        super().__init__()
        self.learning_rates: list[float] = []

    def _on_rollout_start(self) -> None:
        self.learning_rates.append(self.model.policy.optimizer.param_groups[0]["lr"])

    def _on_step(self) -> bool:
        return True


def test_schedules_are_applied():
    model = small_model(learning_rate=lambda progress: 1e-3 * progress, clip_range=LinearSchedule(0.3, 0.1, 1.0))
    recorder = LearningRateRecorder()
    model.learn(512, callback=recorder)
    # Each update uses the progress remaining after its rollout: 0.75, 0.5, 0.25, then 0
    np.testing.assert_allclose(recorder.learning_rates, [1e-3, 7.5e-4, 5e-4, 2.5e-4])
    assert model.policy.optimizer.param_groups[0]["lr"] == 0.0
    assert model.clip_range(0.5) == pytest.approx(0.2)


def test_multiple_envs_and_predict_single_observation():
    env = make_vec_env("Pendulum-v1", n_envs=4, seed=0)
    model = small_model(env, n_steps=32, batch_size=64)
    model.learn(256)
    assert model.num_timesteps == 256
    single = gym.make("Pendulum-v1").reset(seed=0)[0]
    action, _ = model.predict(single, deterministic=True)
    assert action.shape == (1,)


def test_seed_makes_training_reproducible():
    def train():
        model = small_model(seed=3)
        model.learn(256)
        return model.policy.parameters_to_vector()

    np.testing.assert_array_equal(train(), train())
