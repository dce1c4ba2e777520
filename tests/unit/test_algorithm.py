"""The update and the rollout: clipping semantics, KL early stopping, bootstrapping, action clipping."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_clippedppo import ClippedPPO
from sb3_clippedppo.losses import LossCoefficients, clipped_surrogate_loss, ppo_loss_terms
from tests.envs import counter_env
from tests.helpers import RecordingLogger


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_clipped_surrogate_gradient_vanishes_where_the_clipped_term_is_active(sign):
    eps = 0.2
    ratio = th.tensor([0.5, 0.79, 0.81, 1.0, 1.19, 1.21, 2.0], requires_grad=True)
    advantages = th.full((7,), sign)
    loss, unclipped = clipped_surrogate_loss(ratio, advantages, eps)
    loss.backward()
    grad = ratio.grad
    if sign > 0:
        # A > 0: no incentive to push r beyond 1 + eps; below it the gradient is -A / B
        active = ratio.detach() > 1 + eps
    else:
        # A < 0: no incentive to push r below 1 - eps
        active = ratio.detach() < 1 - eps
    assert th.all(grad[active] == 0)
    th.testing.assert_close(grad[~active], th.full_like(grad[~active], -sign / 7))
    assert active.any() and (~active).any()
    assert th.equal(unclipped, ~active)  # where the gradient flows, as the closed form uses it


def test_clipped_surrogate_value_is_the_pessimistic_bound():
    ratio = th.tensor([0.5, 1.5, 0.5, 1.5])
    advantages = th.tensor([1.0, 1.0, -1.0, -1.0])
    # min(rA, clip(r)A): [0.5, 1.2, -0.8, -1.5]
    th.testing.assert_close(clipped_surrogate_loss(ratio, advantages, 0.2)[0], -th.tensor([0.5, 1.2, -0.8, -1.5]).mean())


@pytest.mark.parametrize("xp", [th, np])
def test_value_loss_clipping(xp):
    """The value loss of ppo_loss_terms on tensors and on NumPy arrays; the gradient flows only where the clipping is
    inactive (autograd's, and the mask the closed form differentiates with)."""
    values = xp.asarray([0.0, 2.0, -3.0]) if xp is np else th.tensor([0.0, 2.0, -3.0], requires_grad=True)
    batch = SimpleNamespace(old_log_prob=xp.zeros(3), old_values=xp.zeros(3), returns=xp.ones(3))
    zeros = xp.zeros(3)

    def value_loss(clip_range_vf):
        return ppo_loss_terms(zeros, zeros, values, batch, zeros, LossCoefficients(0.2, clip_range_vf, 0.0, 1.0))

    assert float(value_loss(None).terms.value_loss) == pytest.approx((1 + 1 + 16) / 3)
    assert value_loss(None).value_unclipped is None
    evaluation = value_loss(0.5)  # predictions clipped to [0, 0.5, -0.5]
    assert float(evaluation.terms.value_loss) == pytest.approx((1.0 + 0.25 + 2.25) / 3)
    assert list(np.asarray(evaluation.value_unclipped)) == [True, False, False]
    if xp is th:
        evaluation.terms.loss.backward()
        gradient = values.grad.numpy()
        assert gradient[1] == 0 and gradient[2] == 0 and gradient[0] == pytest.approx(2 * (0.0 - 1.0) / 3)


def test_tiny_target_kl_stops_after_the_first_minibatch():
    model = ClippedPPO("MlpPolicy", "Pendulum-v1", n_steps=256, batch_size=32, n_epochs=5, target_kl=1e-8, seed=0)
    logger = RecordingLogger(model)
    before = model.policy.parameters_to_vector()
    model.learn(512)
    records = logger.train_records()
    assert len(records) == 2  # two rollouts of 256 steps, two updates
    for n_updates, record in enumerate(records, start=1):
        # The first minibatch sees the rollout policy (KL = 0) and is applied; the second exceeds the limit.
        assert record["train/minibatch_updates"] == 1
        assert record["train/early_stop_epoch"] == 0
        assert record["train/n_updates"] == n_updates  # counts epochs started, as in SB3
        assert record["train/approx_kl"] > 1.5e-8
    assert not np.array_equal(before, model.policy.parameters_to_vector())


def test_without_target_kl_all_minibatches_run():
    model = ClippedPPO("MlpPolicy", "Pendulum-v1", n_steps=256, batch_size=100, n_epochs=3, seed=0)
    logger = RecordingLogger(model)
    model.learn(512)
    record = logger.train_records()[0]
    assert record["train/minibatch_updates"] == 3 * 3  # 256 = 100 + 100 + 56
    assert record["train/early_stop_epoch"] == -1
    assert record["train/n_updates"] == 3


class SnapshotRollout(BaseCallback):
    """At the end of the first rollout, copies the buffer and the values the policy gives to given observations."""

    def __init__(self, probe_obs: np.ndarray):
        super().__init__()
        self.probe_obs = probe_obs
        self.snapshot = None

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.snapshot is None:
            buffer = self.model.rollout_buffer
            with th.no_grad():
                probe_values = self.model.policy.predict_values(th.as_tensor(self.probe_obs)).numpy().ravel()
            self.snapshot = {
                "rewards": buffer.rewards.copy(),
                "episode_starts": buffer.episode_starts.copy(),
                "values": buffer.values.copy(),
                "log_probs": buffer.log_probs.copy(),
                "actions": buffer.actions.copy(),
                "observations": buffer.observations.copy(),
                "probe_values": probe_values,
            }


def test_truncation_bootstraps_with_the_terminal_value_and_termination_does_not():
    # env 0 terminates every 5 steps; env 1 is cut by a time limit every 7 steps
    env = DummyVecEnv([counter_env(terminate_at=5), counter_env(time_limit=7)])
    gamma = 0.9
    model = ClippedPPO("MlpPolicy", env, n_steps=30, batch_size=20, gamma=gamma, seed=0)
    callback = SnapshotRollout(probe_obs=np.array([[7.0]], dtype=np.float32))
    model.learn(60, callback=callback)
    snap = callback.snapshot
    rewards = snap["rewards"]
    terminal_value = snap["probe_values"][0]
    assert abs(terminal_value) > 1e-3  # otherwise the test could not tell
    # env 0: terminations at steps 4, 9, 14, ...: plain reward
    np.testing.assert_array_equal(rewards[:, 0], np.ones(30, dtype=np.float32))
    # env 1: truncations at steps 6, 13, 20, 27: reward + gamma * V(terminal observation [7])
    truncated = np.zeros(30, dtype=bool)
    truncated[[6, 13, 20, 27]] = True
    np.testing.assert_allclose(rewards[truncated, 1], 1.0 + gamma * terminal_value, rtol=1e-5)
    np.testing.assert_array_equal(rewards[~truncated, 1], 1.0)
    # Episode starts follow both kinds of episode end
    np.testing.assert_array_equal(np.flatnonzero(snap["episode_starts"][:, 0]), [0, 5, 10, 15, 20, 25])
    np.testing.assert_array_equal(np.flatnonzero(snap["episode_starts"][:, 1]), [0, 7, 14, 21, 28])


def test_truncation_bootstrap_uses_the_normalized_terminal_observation():
    env = VecNormalize(DummyVecEnv([counter_env(time_limit=7)]), training=False, norm_reward=False)
    env.obs_rms.mean[:] = 3.0
    env.obs_rms.var[:] = 4.0 - env.epsilon
    model = ClippedPPO("MlpPolicy", env, n_steps=10, batch_size=5, gamma=0.9, seed=0)
    callback = SnapshotRollout(probe_obs=np.array([[(7.0 - 3.0) / 2.0]], dtype=np.float32))
    model.learn(10, callback=callback)
    np.testing.assert_allclose(callback.snapshot["rewards"][6, 0], 1.0 + 0.9 * callback.snapshot["probe_values"][0], rtol=1e-5)
    # Stored observations are the normalized ones the policy saw
    np.testing.assert_allclose(callback.snapshot["observations"][:7, 0, 0], (np.arange(7) - 3.0) / 2.0, rtol=1e-5)


def test_rollout_values_and_log_probs_are_those_of_the_rollout_policy():
    env = DummyVecEnv([counter_env(terminate_at=50)])
    model = ClippedPPO("MlpPolicy", env, n_steps=40, batch_size=20, seed=1, policy_kwargs=dict(log_std_init=-0.5))
    callback = SnapshotRollout(probe_obs=np.zeros((1, 1), dtype=np.float32))
    model.learn(40, callback=callback)  # the update runs after the snapshot
    snap = callback.snapshot
    obs = th.as_tensor(snap["observations"].reshape(40, 1))
    # Recompute with a fresh model holding the rollout parameters: same seed, same initial weights
    fresh = ClippedPPO("MlpPolicy", env, n_steps=40, batch_size=20, seed=1, policy_kwargs=dict(log_std_init=-0.5))
    with th.no_grad():
        policy = fresh.policy
        mean = policy.action_net(policy.mlp_extractor.policy_net(obs))
        dist = th.distributions.Normal(mean, policy.log_std.exp())
        log_probs = dist.log_prob(th.as_tensor(snap["actions"].reshape(40, 2))).sum(-1)
        values = policy.value_net(policy.mlp_extractor.value_net(obs)).squeeze(-1)
    np.testing.assert_allclose(snap["log_probs"].ravel(), log_probs.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(snap["values"].ravel(), values.numpy(), rtol=1e-5, atol=1e-6)


def test_actions_are_stored_raw_and_clipped_only_for_the_environment():
    env = DummyVecEnv([counter_env(terminate_at=1000)])
    # log_std_init=2: std ~7.4, so most samples fall outside [-1, 1]
    model = ClippedPPO("MlpPolicy", env, n_steps=64, batch_size=32, seed=0, policy_kwargs=dict(log_std_init=2.0))
    callback = SnapshotRollout(probe_obs=np.zeros((1, 1), dtype=np.float32))
    model.learn(64, callback=callback)
    stored = callback.snapshot["actions"]
    assert np.abs(stored).max() > 1.0  # raw actions kept in the buffer
    sent = env.envs[0].unwrapped.last_action
    np.testing.assert_array_equal(sent, np.clip(stored[-1, 0], -1, 1))  # the env received the clipped action


def test_rollout_uses_fresh_noise_each_step():
    env = DummyVecEnv([counter_env(terminate_at=1000)])
    model = ClippedPPO("MlpPolicy", env, n_steps=64, batch_size=32, seed=0)
    callback = SnapshotRollout(probe_obs=np.zeros((1, 1), dtype=np.float32))
    model.learn(64, callback=callback)
    actions = callback.snapshot["actions"][:, 0]
    assert len(np.unique(actions[:, 0])) == 64
    # Standard-normal exploration around a near-zero mean (ortho init gain 0.01): std close to exp(0) = 1
    assert 0.7 < actions.std() < 1.3


def test_discrete_actions_are_collected_as_indices():
    env = DummyVecEnv([counter_env(terminate_at=20, discrete=True)])
    model = ClippedPPO("MlpPolicy", env, n_steps=32, batch_size=16, seed=0)
    callback = SnapshotRollout(probe_obs=np.zeros((1, 1), dtype=np.float32))
    model.learn(32, callback=callback)
    actions = callback.snapshot["actions"]
    assert actions.dtype == np.int64 and actions.shape == (32, 1, 1)  # SB3's layout: (n_steps, n_envs, action_dim)
    assert set(np.unique(actions)) == {0, 1}
    assert np.all(callback.snapshot["log_probs"] < 0) and np.all(callback.snapshot["log_probs"] > np.log(0.3))
