"""Options beyond SB3's PPO: separate value learning rate, PPO-Penalty, state-dependent std, KL-adaptive learning rate."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_clippedppo import ClippedPPO
from sb3_clippedppo.buffers import compute_gae
from sb3_clippedppo.clipped_ppo import adapt_kl_coef, adapt_lr_scale
from sb3_clippedppo.distributions import LOG_STD_MAX, LOG_STD_MIN
from sb3_clippedppo.policies import ActorCriticPolicy
from tests.envs import counter_env
from tests.helpers import RecordingLogger

SMALL = dict(n_steps=128, batch_size=64, n_epochs=2, seed=0)


def small_model(**kwargs) -> ClippedPPO:
    return ClippedPPO("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), **{**SMALL, **kwargs})


# ------------------------------------------------------------------------------------------------ defaults unchanged


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_options_at_their_defaults_change_nothing(env_id):
    """Runs of the same process, same seed: defaults and every option passed explicitly at its default agree."""

    def params(**options):
        model = ClippedPPO("MlpPolicy", make_vec_env(env_id, n_envs=2, seed=0), **{**SMALL, **options})
        model.learn(512)
        return model.policy.parameters_to_vector()

    explicit = dict(vf_learning_rate=None, policy_objective="clip", kl_coef=1.0, kl_penalty_target=0.01, kl_adaptive_lr=False,
                    kl_adaptive_lr_bounds=(1e-5, 1e-2), fast_path="auto",
                    policy_kwargs=dict(state_dependent_std=False))  # fmt: skip
    defaults = params()
    np.testing.assert_allclose(params(**explicit), defaults, rtol=0, atol=1e-6)
    assert np.abs(defaults - params(vf_coef=0.4)).max() > 1e-4  # a change would show


# ------------------------------------------------------------------------------------------------ vf_learning_rate


def test_actor_and_critic_get_their_own_learning_rates_and_schedules():
    model = small_model(learning_rate=lambda p: 1e-4 * p, vf_learning_rate=lambda p: 1e-3 * p)
    logger = RecordingLogger(model)
    model.learn(256)
    groups = {g["name"]: g["lr"] for g in model.policy.optimizer.param_groups}
    progress = model._current_progress_remaining
    assert groups == pytest.approx({"actor": 1e-4 * progress, "critic": 1e-3 * progress})
    record = logger.train_records()[-1]
    assert record["train/learning_rate"] == pytest.approx(1e-4 * progress)
    assert record["train/vf_learning_rate"] == pytest.approx(1e-3 * progress)


def test_a_tiny_value_learning_rate_freezes_only_the_critic():
    model = small_model(learning_rate=1e-3, vf_learning_rate=1e-12)
    policy = model.policy
    actor, critic = [policy.mlp_extractor.policy_net, policy.action_net], [policy.mlp_extractor.value_net, policy.value_net]

    def parameters(modules):
        return [p for module in modules for p in module.parameters()]

    actor_before = [p.detach().clone() for p in parameters(actor)]
    critic_before = [p.detach().clone() for p in parameters(critic)]
    model.learn(128)

    def change(before, modules):
        return max((a - b).abs().max().item() for a, b in zip(before, parameters(modules), strict=True))

    actor_change, critic_change = change(actor_before, actor), change(critic_before, critic)
    assert actor_change > 1e-4 and critic_change < 1e-9


# ------------------------------------------------------------------------------------------------ PPO-Penalty


@pytest.mark.parametrize(
    "kl, expected",
    [(0.01 / 1.5 - 1e-6, 0.5), (0.01 / 1.5 + 1e-6, 1.0), (0.01, 1.0), (0.015 - 1e-6, 1.0), (0.015 + 1e-6, 2.0), (0.0, 0.5)],
)
def test_kl_coefficient_rule(kl, expected):
    # beta halves below d_targ / 1.5 and doubles above d_targ * 1.5 (Schulman et al. 2017, section 4)
    assert adapt_kl_coef(1.0, kl, kl_penalty_target=0.01) == expected


def test_penalty_mode_adapts_logs_and_saves_beta(tmp_path):
    model = small_model(policy_objective="kl_penalty", kl_coef=3.0, kl_penalty_target=0.01)
    logger = RecordingLogger(model)
    model.learn(512)
    records = logger.train_records()
    betas = [r["train/kl_coef"] for r in records]
    kls = [r["train/kl"] for r in records]
    # Replay the rule on the logged KLs: beta follows it exactly
    beta = 3.0
    for kl, logged in zip(kls, betas, strict=True):
        beta = adapt_kl_coef(beta, kl, 0.01)
        assert logged == beta
    assert model.kl_coef == beta != 3.0
    model.save(tmp_path / "penalty")
    loaded = ClippedPPO.load(tmp_path / "penalty")
    assert loaded.kl_coef == model.kl_coef and loaded.policy_objective == "kl_penalty"


def test_target_kl_early_stopping_works_in_penalty_mode():
    model = small_model(policy_objective="kl_penalty", target_kl=1e-8, n_epochs=4)
    logger = RecordingLogger(model)
    model.learn(128)
    record = logger.train_records()[-1]
    assert record["train/minibatch_updates"] == 1 and record["train/early_stop_epoch"] == 0


# ------------------------------------------------------------------------------------------------ state-dependent std


def make_policy(**kwargs) -> ActorCriticPolicy:
    return ActorCriticPolicy(
        spaces.Box(-np.inf, np.inf, (5,), np.float32), spaces.Box(-1, 1, (3,), np.float32), lambda _: 1e-3, **kwargs
    )


def test_state_dependent_std_depends_on_the_state_and_starts_at_log_std_init():
    policy = make_policy(state_dependent_std=True, log_std_init=-1.0)
    assert not hasattr(policy, "log_std") and policy.action_net.out_features == 6
    obs = th.randn(10, 5) * 3

    def log_std_of(obs):
        with th.no_grad():
            return policy.get_distribution(obs).log_std

    assert log_std_of(obs).shape == (10, 3)
    th.testing.assert_close(log_std_of(obs), th.full((10, 3), -1.0), atol=0.2, rtol=0)  # output weights have gain 0.01
    with th.no_grad():
        policy.action_net.weight.normal_()
    assert log_std_of(obs).std(dim=0).min() > 0.1  # different states, different stds
    with th.no_grad():
        policy.action_net.bias[3:] = 100.0
        assert log_std_of(obs).max() == LOG_STD_MAX
        policy.action_net.bias[3:] = -100.0
        assert log_std_of(obs).min() == LOG_STD_MIN


def test_state_dependent_std_trains_with_autograd_and_round_trips(tmp_path):
    model = small_model(policy_kwargs=dict(state_dependent_std=True, log_std_init=-0.5))
    assert not model.uses_fast_path
    logger = RecordingLogger(model)
    model.learn(256)
    assert 0.0 < logger.train_records()[-1]["train/std"] < 2.0
    obs = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    actions, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "sds")
    loaded = ClippedPPO.load(tmp_path / "sds")
    assert loaded.policy.state_dependent_std
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], actions)


# ------------------------------------------------------------------------------------------------ KL-adaptive learning rate


@pytest.mark.parametrize(
    "kl, expected",
    [(0.021, 1 / 1.5), (0.019, 1.0), (0.01, 1.0), (0.0051, 1.0), (0.0049, 1.5), (0.0, 1.5)],
)
def test_kl_adaptive_lr_rule(kl, expected):
    # divided by 1.5 above 2 * target_kl, multiplied by 1.5 below target_kl / 2
    assert adapt_lr_scale(1.0, kl, target_kl=0.01, learning_rate=1e-3, bounds=(1e-5, 1e-2)) == pytest.approx(expected)


def test_kl_adaptive_lr_bounds():
    # lr = 1e-3 * scale stays within [1e-4, 2e-3]
    assert adapt_lr_scale(1.9, 0.0, 0.01, 1e-3, (1e-4, 2e-3)) == pytest.approx(2.0)
    assert adapt_lr_scale(0.11, 1.0, 0.01, 1e-3, (1e-4, 2e-3)) == pytest.approx(0.1)


def test_kl_adaptive_lr_applies_logs_and_saves_the_scale(tmp_path):
    model = small_model(learning_rate=3e-4, target_kl=0.05, kl_adaptive_lr=True)
    logger = RecordingLogger(model)
    model.learn(512)
    records = logger.train_records()
    scale = 1.0
    for record in records:
        # The rate used in an update is the schedule times the factor set by the previous updates
        assert record["train/learning_rate"] == pytest.approx(3e-4 * scale)
        scale = adapt_lr_scale(scale, record["train/kl"], 0.05, 3e-4, (1e-5, 1e-2))
        assert record["train/lr_scale"] == pytest.approx(scale)
    assert model.lr_scale == pytest.approx(scale) and scale != 1.0
    model.save(tmp_path / "adaptive")
    assert ClippedPPO.load(tmp_path / "adaptive").lr_scale == model.lr_scale


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(policy_objective="penalty"), ValueError, r"policy_objective must be one of \('clip', 'kl_penalty'\)"),
        (dict(kl_coef=0.0), ValueError, r"kl_coef must be in \(0.0, inf\)"),
        (dict(kl_coef=-1.0), ValueError, r"kl_coef must be in \(0.0, inf\)"),
        (dict(kl_penalty_target=0.0), ValueError, r"kl_penalty_target must be in \(0.0, inf\)"),
        (dict(kl_adaptive_lr=True), ValueError, r"kl_adaptive_lr=True needs target_kl"),
        (dict(kl_adaptive_lr=True, target_kl=0.01, kl_adaptive_lr_bounds=(1e-2, 1e-5)), ValueError, r"0 < low < high"),
        (dict(vf_learning_rate=0.0), ValueError, r"vf_learning_rate must be > 0"),
        (dict(vf_learning_rate="1e-3"), TypeError, r"vf_learning_rate must be a positive number"),
    ],
)
def test_bad_options_are_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        small_model(**kwargs)


def test_state_dependent_std_needs_box_actions():
    with pytest.raises(ValueError, match="state_dependent_std=True needs a Box action space"):
        ClippedPPO("MlpPolicy", "CartPole-v1", policy_kwargs=dict(state_dependent_std=True))


# ------------------------------------------------------------------------------------------------ ent_coef schedule


def test_ent_coef_schedule_is_applied_logged_and_saved(tmp_path):
    schedule = LinearSchedule(0.05, 0.0, 1.0)  # 0.05 at the start, 0 at the end
    model = small_model(ent_coef=schedule, learning_rate=lambda progress: 1e-4 * progress)
    logger = RecordingLogger(model)
    model.learn(512)
    records = logger.train_records()
    assert len(records) == 2
    for record in records:
        # the coefficient of an update is the schedule at that update's progress, as the learning rate's
        progress = record["train/learning_rate"] / 1e-4
        assert record["train/ent_coef"] == pytest.approx(0.05 * progress)
    assert records[0]["train/ent_coef"] > records[1]["train/ent_coef"]
    model.save(tmp_path / "model")
    assert ClippedPPO.load(tmp_path / "model").ent_coef(0.5) == pytest.approx(0.025)


def test_ent_coef_schedule_equals_the_constant_it_takes():
    """An update with ent_coef=c and one with a schedule worth c at that point give the same parameters."""

    def params(ent_coef, fast_path):
        model = small_model(ent_coef=ent_coef, fast_path=fast_path, n_epochs=3)
        model.learn(256)  # one update, after the one rollout: at progress remaining 0
        return model.policy.parameters_to_vector()

    for fast_path in (True, False):
        constant = params(0.05, fast_path)
        np.testing.assert_allclose(params(lambda progress: 0.05 * (1.0 - progress), fast_path), constant, rtol=0, atol=1e-6)
        assert np.abs(constant - params(0.0, fast_path)).max() > 1e-5


# ------------------------------------------------------------------------------------------------ recompute advantages


def test_recompute_advantages_uses_the_current_critic_everywhere():
    env = DummyVecEnv([counter_env(terminate_at=None, time_limit=7), counter_env(terminate_at=9)])
    model = ClippedPPO("MlpPolicy", env, n_steps=32, batch_size=32, gamma=0.9, gae_lambda=0.8, seed=0,
                       recompute_advantages=True)  # fmt: skip
    _, callback = model._setup_learn(10**4, None)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    buffer = model.rollout_buffer
    assert buffer.truncations  # time-limit truncations, bootstrapped with V(terminal observation)
    raw_rewards = buffer.rewards.copy()
    raw_rewards[tuple(np.array(buffer.truncations).T)] -= 0.9 * buffer.terminal_values
    with th.no_grad():
        model.policy.value_net.bias += 2.0  # a different critic
    model._recompute_advantages()
    with th.no_grad():
        values = model.policy.predict_values(th.as_tensor(buffer.observations.reshape(64, 1))).numpy().reshape(32, 2)
        terminal = model.policy.predict_values(th.as_tensor(buffer.terminal_observations)).numpy().ravel()
        last = model.policy.predict_values(th.as_tensor(model._last_obs)).numpy().ravel()
    np.testing.assert_allclose(buffer.values, values, rtol=1e-6, atol=1e-6)
    expected_rewards = raw_rewards.copy()
    expected_rewards[tuple(np.array(buffer.truncations).T)] += 0.9 * terminal
    np.testing.assert_allclose(buffer.rewards, expected_rewards, rtol=1e-6, atol=1e-5)
    dones = model._last_episode_starts
    advantages, returns = compute_gae(expected_rewards, values, buffer.episode_starts, last, dones, 0.9, 0.8)
    np.testing.assert_allclose(buffer.advantages, advantages, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(buffer.returns, returns, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fast_path", [True, False])
def test_recompute_advantages_runs_before_every_epoch_but_the_first(fast_path, monkeypatch):
    model = small_model(recompute_advantages=True, n_epochs=4, fast_path=fast_path)
    calls = []
    original = model._recompute_advantages
    monkeypatch.setattr(model, "_recompute_advantages", lambda: calls.append(1) or original())
    logger = RecordingLogger(model)
    model.learn(256)
    assert len(calls) == 3 and logger.train_records()[-1]["train/advantage_recomputes"] == 3
    # Off by default, and with one epoch it changes nothing
    assert not small_model().recompute_advantages

    def params(**kwargs):
        m = small_model(n_epochs=1, **kwargs)
        m.learn(256)
        return m.policy.parameters_to_vector()

    np.testing.assert_array_equal(params(recompute_advantages=True), params())


# ------------------------------------------------------------------------------------------------ observation normalization


class ObservationRecorder(BaseCallback):
    def __init__(self):
        super().__init__()
        self.rollouts = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.rollouts.append(self.model.rollout_buffer.observations.reshape(-1, 3).astype(np.float64).copy())


@pytest.mark.parametrize("fast_path", [True, False])
def test_observation_statistics_come_from_the_rollouts_and_normalize_the_input(fast_path, tmp_path):
    model = small_model(fast_path=fast_path, policy_kwargs=dict(normalize_observations=True))
    assert model.uses_fast_path is fast_path
    recorder = ObservationRecorder()
    model.learn(768, callback=recorder)
    stats = model.policy.obs_normalizer.stats[0]
    # After each update, the statistics take in that update's rollout; the last rollout's update came last too
    seen = np.concatenate(recorder.rollouts)
    np.testing.assert_allclose(stats.mean.numpy(), seen.mean(axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stats.var.numpy(), seen.var(axis=0), rtol=1e-4, atol=1e-6)
    # The networks see clip((obs - mean) / sqrt(var + 1e-8), -10, 10)
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32) * 3
    normalized = np.clip((obs - seen.mean(0)) / np.sqrt(seen.var(0) + 1e-8), -10, 10).astype(np.float32)
    policy = model.policy
    with th.no_grad():
        expected = policy.action_net(policy.mlp_extractor.policy_net(th.as_tensor(normalized))).numpy()
    np.testing.assert_allclose(model.predict(obs, deterministic=True)[0], np.clip(expected, -2, 2), rtol=1e-5, atol=1e-5)
    # predict leaves the statistics alone; save/load keeps them, and the loaded model predicts the same
    before = stats.mean.clone()
    model.predict(obs * 100)
    assert th.equal(stats.mean, before)
    model.save(tmp_path / "model")
    loaded = ClippedPPO.load(tmp_path / "model")
    th.testing.assert_close(loaded.policy.obs_normalizer.stats[0].mean, stats.mean)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_observation_normalization_fast_path_and_autograd_agree():
    def params(fast_path):
        model = small_model(fast_path=fast_path, policy_kwargs=dict(normalize_observations=True))
        model.learn(768)
        return model.policy.parameters_to_vector()

    np.testing.assert_allclose(params(True), params(False), rtol=0, atol=1e-5)


def test_observation_normalization_of_dict_observations_skips_images():
    from stable_baselines3.common.envs import SimpleMultiObsEnv

    model = ClippedPPO("MultiInputPolicy", SimpleMultiObsEnv(), n_steps=32, batch_size=16, n_epochs=1, seed=0,
                       policy_kwargs=dict(normalize_observations=True))  # fmt: skip
    assert model.policy.obs_normalizer.keys == ["vec"]  # "img" is an image: scaled by 1/255, not normalized
    model.learn(64)
    assert model.policy.obs_normalizer.stats[0].count > 63
    from stable_baselines3.common.envs import FakeImageEnv

    with pytest.raises(ValueError, match="normalize_observations=True needs vector observations"):
        ClippedPPO("CnnPolicy", FakeImageEnv(screen_height=40, screen_width=40), policy_kwargs=dict(normalize_observations=1))
