"""GAE: compute_gae against a textbook loop and against Stable-Baselines3's RolloutBuffer."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer as SB3RolloutBuffer

from sb3_clippedppo.buffers import RolloutBuffer, compute_gae


def random_rollout(n_steps: int, n_envs: int, seed: int, p_terminated: float = 0.05, p_truncated: float = 0.05) -> dict:
    """Random rewards and values with terminations, time-limit truncations and their terminal-observation values."""
    rng = np.random.default_rng(seed)
    terminated = rng.random((n_steps, n_envs)) < p_terminated
    truncated = (rng.random((n_steps, n_envs)) < p_truncated) & ~terminated
    # episode_starts[t] is 1 when the observation at t begins an episode, i.e. the previous step ended one
    episode_starts = np.zeros((n_steps, n_envs), dtype=np.float32)
    episode_starts[0] = rng.random(n_envs) < 0.5
    episode_starts[1:] = (terminated | truncated)[:-1]
    return {
        "rewards": rng.normal(size=(n_steps, n_envs)).astype(np.float32),
        "values": rng.normal(size=(n_steps, n_envs)).astype(np.float32),
        "terminal_values": rng.normal(size=(n_steps, n_envs)).astype(np.float32),
        "terminated": terminated,
        "truncated": truncated,
        "episode_starts": episode_starts,
        "last_values": rng.normal(size=n_envs).astype(np.float32),
    }


def reference_gae(data: dict, gamma: float, gae_lambda: float) -> tuple[np.ndarray, np.ndarray]:
    """Textbook GAE, one transition at a time, with the truncation bootstrap written out explicitly."""
    rewards, values = data["rewards"].astype(np.float64), data["values"].astype(np.float64)
    n_steps, n_envs = rewards.shape
    advantages = np.zeros((n_steps, n_envs))
    for env in range(n_envs):
        gae = 0.0
        for t in reversed(range(n_steps)):
            if data["terminated"][t, env]:
                next_value, continues = 0.0, False  # true end: no value after it
            elif data["truncated"][t, env]:
                next_value, continues = data["terminal_values"][t, env], False  # cut by a time limit: bootstrap
            elif t == n_steps - 1:
                next_value, continues = data["last_values"][env], True
            else:
                next_value, continues = values[t + 1, env], True
            delta = rewards[t, env] + gamma * next_value - values[t, env]
            gae = delta + (gamma * gae_lambda * gae if continues else 0.0)
            advantages[t, env] = gae
    return advantages, advantages + values


def folded_inputs(data: dict, gamma: float) -> tuple:
    """compute_gae's inputs: truncations folded into the reward as the collector does."""
    rewards = data["rewards"] + gamma * data["terminal_values"] * data["truncated"]
    dones = (data["terminated"] | data["truncated"])[-1].astype(np.float32)
    return rewards.astype(np.float32), data["values"], data["episode_starts"], data["last_values"], dones


@pytest.mark.parametrize("gamma, gae_lambda", [(0.99, 0.95), (0.98, 0.92), (1.0, 1.0), (0.9, 0.0), (0.0, 0.5)])
@pytest.mark.parametrize("n_envs", [1, 4])
def test_compute_gae_matches_reference_loop(gamma, gae_lambda, n_envs):
    data = random_rollout(257, n_envs, seed=n_envs)
    advantages, returns = compute_gae(*folded_inputs(data, gamma), gamma, gae_lambda)
    ref_advantages, ref_returns = reference_gae(data, gamma, gae_lambda)
    assert advantages.dtype == np.float32 and advantages.shape == (257, n_envs)
    np.testing.assert_allclose(advantages, ref_advantages, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(returns, ref_returns, atol=1e-5, rtol=1e-5)
    # The rollout must contain the cases under test
    assert data["terminated"].any() and data["truncated"].any()


@pytest.mark.parametrize("gamma, gae_lambda", [(0.99, 0.95), (0.98, 0.92), (0.999, 0.99)])
@pytest.mark.parametrize("n_envs", [1, 3])
def test_compute_gae_matches_sb3_rollout_buffer(gamma, gae_lambda, n_envs):
    n_steps = 200
    data = random_rollout(n_steps, n_envs, seed=10 + n_envs)
    rewards, values, episode_starts, last_values, dones = folded_inputs(data, gamma)
    sb3 = SB3RolloutBuffer(
        n_steps, spaces.Box(-1, 1, (2,)), spaces.Box(-1, 1, (1,)), gamma=gamma, gae_lambda=gae_lambda, n_envs=n_envs
    )
    for t in range(n_steps):
        sb3.add(
            np.zeros((n_envs, 2)),
            np.zeros((n_envs, 1)),
            rewards[t],
            episode_starts[t],
            th.as_tensor(values[t]),
            th.zeros(n_envs),
        )
    sb3.compute_returns_and_advantage(last_values=th.as_tensor(last_values), dones=dones)

    advantages, returns = compute_gae(rewards, values, episode_starts, last_values, dones, gamma, gae_lambda)
    np.testing.assert_allclose(advantages, sb3.advantages, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(returns, sb3.returns, atol=1e-6, rtol=1e-6)


def test_compute_gae_simple_cases():
    # One env, no episode end: lambda = 1 gives discounted returns-to-go plus the bootstrapped tail
    rewards = np.ones((3, 1), dtype=np.float32)
    values = np.zeros((3, 1), dtype=np.float32)
    advantages, returns = compute_gae(rewards, values, np.zeros((3, 1)), np.array([10.0]), np.array([0.0]), 0.5, 1.0)
    np.testing.assert_allclose(returns[:, 0], [1 + 0.5 + 0.25 + 0.125 * 10, 1 + 0.5 + 0.25 * 10, 1 + 0.5 * 10])
    # The same rollout ending in a termination: no bootstrap
    advantages, returns = compute_gae(rewards, values, np.zeros((3, 1)), np.array([10.0]), np.array([1.0]), 0.5, 1.0)
    np.testing.assert_allclose(returns[:, 0], [1.75, 1.5, 1.0])


def test_compute_gae_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        compute_gae(np.zeros((3, 2)), np.zeros((3, 1)), np.zeros((3, 2)), np.zeros(2), np.zeros(2), 0.99, 0.95)
    with pytest.raises(ValueError, match="last_values"):
        compute_gae(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(3), np.zeros(2), 0.99, 0.95)


def test_buffer_preallocates_and_serves_permuted_minibatches():
    box = spaces.Box(-np.inf, np.inf, (3,), np.float32)
    buffer = RolloutBuffer(8, 2, box, spaces.Box(-1, 1, (2,), np.float32), gamma=0.99, gae_lambda=0.95)
    for name in ("observations", "actions", "rewards", "episode_starts", "values", "log_probs"):
        assert getattr(buffer, name).shape[:2] == (8, 2), name
    for t in range(8):
        buffer.add(np.full((2, 3), t), np.full((2, 2), t + 0.5), np.array([t, -t]), np.zeros(2))
    assert buffer.full
    with pytest.raises(IndexError):
        buffer.add(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros(2), np.zeros(2))
    buffer.values[:] = np.arange(16).reshape(8, 2)
    buffer.compute_returns_and_advantage(np.zeros(2), np.zeros(2))

    th.manual_seed(0)
    epoch_1 = list(buffer.minibatches(batch_size=5))
    epoch_2 = list(buffer.minibatches(batch_size=5))
    assert [len(b.observations) for b in epoch_1] == [5, 5, 5, 1]  # the last minibatch takes the remainder
    values_1 = th.cat([b.old_values for b in epoch_1])
    values_2 = th.cat([b.old_values for b in epoch_2])
    # Every transition exactly once per epoch, in a fresh order each epoch
    assert sorted(values_1.tolist()) == list(range(16))
    assert not th.equal(values_1, values_2)
    # Fields stay aligned: observation value t pairs with action t + 0.5
    for batch in epoch_1:
        th.testing.assert_close(batch.actions[:, 0], batch.observations[:, 0] + 0.5)


@pytest.mark.parametrize(
    "observation_space, sample, stored_shape, dtype",
    [
        (spaces.Discrete(5), np.array([3, 1]), (1,), np.int64),
        (spaces.MultiDiscrete([3, 4]), np.array([[2, 3], [0, 1]]), (2,), np.int64),
        (spaces.MultiBinary(3), np.array([[1, 0, 1], [0, 0, 1]], dtype=np.int8), (3,), np.int8),
        (spaces.Box(0, 255, (4, 4, 1), np.uint8), np.full((2, 4, 4, 1), 200, np.uint8), (4, 4, 1), np.uint8),
        (spaces.Box(-1, 1, (2,), np.float64), np.array([[0.5, -0.5], [0.25, 1.0]]), (2,), np.float64),
        (spaces.Box(-1, 1, (2,), np.float32), np.array([[0.5, -0.5], [0.25, 1.0]]), (2,), np.float32),
    ],
)
def test_buffer_stores_each_observation_space_in_sb3_layout(observation_space, sample, stored_shape, dtype):
    buffer = RolloutBuffer(2, 2, observation_space, spaces.Discrete(2), gamma=0.99, gae_lambda=0.95)
    assert buffer.observations.shape == (2, 2, *stored_shape) and buffer.observations.dtype == dtype
    buffer.add(sample, np.array([1, 0]), np.zeros(2), np.zeros(2))
    np.testing.assert_array_equal(buffer.observations[0].reshape(sample.shape), sample)
    assert buffer.actions.dtype == np.int64 and buffer.actions.shape == (2, 2, 1)  # SB3: (n_steps, n_envs, action_dim)


def test_buffer_keeps_dict_observations_aligned():
    observation_space = spaces.Dict({"vec": spaces.Box(-1, 1, (2,), np.float32), "cell": spaces.Discrete(9)})
    buffer = RolloutBuffer(4, 2, observation_space, spaces.MultiBinary(3), gamma=0.99, gae_lambda=0.95)
    for t in range(4):
        obs = {"vec": np.full((2, 2), t, np.float32), "cell": np.array([t, t + 4])}
        buffer.add(obs, np.full((2, 3), t % 2), np.zeros(2), np.zeros(2))
    buffer.compute_returns_and_advantage(np.zeros(2), np.zeros(2))
    (batch,) = list(buffer.minibatches(batch_size=8))
    assert set(batch.observations) == {"vec", "cell"}
    assert batch.observations["cell"].shape == (8, 1) and batch.actions.shape == (8, 3)
    step = batch.observations["vec"][:, 0]
    th.testing.assert_close(batch.observations["cell"][:, 0] % 4, step.long())
    th.testing.assert_close(batch.actions[:, 0], step % 2)
