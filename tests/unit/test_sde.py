"""gSDE (``use_sde=True``): the PPO cases of SB3's ``tests/test_sde.py`` with ClippedPPO, the exploration matrix's
resampling schedule, the fast path's refusal, squashed actions, and save/load. The update's parity with SB3's
``PPO.train()`` is in test_sb3_ppo_parity.py (setting ``gsde-4-envs``)."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from sb3_clippedppo import ClippedPPO


def test_sde_check():
    """SB3's test_sde_check: gSDE needs continuous actions."""
    with pytest.raises(ValueError):
        ClippedPPO("MlpPolicy", "CartPole-v1", use_sde=True)


@pytest.mark.parametrize("use_expln", [False, True])
def test_state_dependent_noise(use_expln):
    """SB3's test_state_dependent_noise, PPO's case."""
    model = ClippedPPO("MlpPolicy", "Pendulum-v1", use_sde=True, seed=None, verbose=1, n_steps=64,
                       policy_kwargs=dict(log_std_init=-2, use_expln=use_expln, net_arch=[64]))  # fmt: skip
    model.learn(total_timesteps=255)
    model.policy.reset_noise()
    assert model.policy.log_std.shape == (64, 1)  # full_std: one std per latent feature and action dimension


@pytest.mark.parametrize("sde_sample_freq, expected", [(-1, 1), (0, 1), (4, 1 + 4)])
def test_exploration_matrix_is_resampled_at_each_rollout_start_and_every_sde_sample_freq_steps(
    sde_sample_freq, expected, monkeypatch
):
    model = ClippedPPO("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), n_steps=16, batch_size=32,
                       use_sde=True, sde_sample_freq=sde_sample_freq, seed=0)  # fmt: skip
    calls: list[int] = []
    original = model.policy.reset_noise
    monkeypatch.setattr(model.policy, "reset_noise", lambda n_envs=1: (calls.append(n_envs), original(n_envs))[1])
    model.learn(64)  # two rollouts of 16 steps in 2 environments
    assert calls == [2] * (2 * expected)


def test_actions_follow_the_exploration_matrix():
    """Between two resamplings, the noise is a fixed linear function of the latent features: the same observation gets
    the same action; after reset_noise, another."""
    model = ClippedPPO("MlpPolicy", "Pendulum-v1", use_sde=True, n_steps=64, seed=0, policy_kwargs=dict(log_std_init=0.0))
    obs = th.tensor([[0.5, -0.3, 1.0]])  # nonzero latent features (zero ones would carry no noise)
    model.policy.reset_noise(1)
    with th.no_grad():
        first, second = model.policy(obs)[0], model.policy(obs)[0]
        model.policy.reset_noise(1)
        third = model.policy(obs)[0]
    assert th.equal(first, second) and not th.equal(first, third)


def test_gsde_trains_through_autograd_and_says_why():
    with pytest.raises(ValueError, match="fast_path=True, but the fast path does not apply: gSDE"):
        ClippedPPO("MlpPolicy", "Pendulum-v1", use_sde=True, fast_path=True)
    model = ClippedPPO("MlpPolicy", "Pendulum-v1", use_sde=True)
    assert not model.uses_fast_path and "gSDE" in model.fast_path_reason
    with pytest.raises(ValueError, match="exact KL.*use_sde=True"):
        ClippedPPO("MlpPolicy", "Pendulum-v1", use_sde=True, policy_objective="kl_penalty")
    with pytest.raises(ValueError, match="pass use_sde=True to ClippedPPO"):
        ClippedPPO("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(use_sde=True))
    with pytest.raises(ValueError, match="squash_output=True is only available with gSDE"):
        ClippedPPO("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(squash_output=True))


def test_squashed_actions_are_rescaled_to_the_bounds_and_the_model_round_trips(tmp_path):
    model = ClippedPPO("MlpPolicy", "Pendulum-v1", use_sde=True, sde_sample_freq=4, n_steps=64, batch_size=64, seed=0,
                       policy_kwargs=dict(squash_output=True, full_std=False, log_std_init=-1.0))  # fmt: skip
    model.learn(128)
    assert model.policy.log_std.shape == (64, 1)
    obs = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32) * 5
    actions, _ = model.predict(obs, deterministic=True)
    assert np.all(np.abs(actions) <= 2.0)
    model.save(tmp_path / "sde")
    loaded = ClippedPPO.load(tmp_path / "sde")
    assert loaded.use_sde and loaded.sde_sample_freq == 4 and loaded.policy.squash_output
    np.testing.assert_allclose(loaded.predict(obs, deterministic=True)[0], actions, rtol=0, atol=1e-6)
    loaded.set_env(model.get_env())
    loaded.learn(64)
