"""``ClippedPPO.predict(deterministic=True)`` through the fast path's NumPy actor (MLP policies on vector observations,
on the CPU): SB3's semantics (shapes, clipping, errors) and the policy's torch predict's actions up to float32
rounding."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env

from sb3_clippedppo import ClippedPPO


def torch_predict(policy, observation, deterministic=True):
    """The policy's own predict (SB3's, the torch forward pass)."""
    return policy.predict(observation, deterministic=deterministic)[0]


@pytest.mark.parametrize(
    "env_id, policy_kwargs",
    [("Pendulum-v1", dict(normalize_observations=True)), ("Pendulum-v1", dict(activation_fn=th.nn.ReLU)),
     ("CartPole-v1", dict(normalize_observations=True, net_arch=[32]))],
    ids=["box-normalized", "box-relu", "discrete-normalized"],
)  # fmt: skip
def test_numpy_predict_equals_torch_predict(env_id, policy_kwargs):
    model = ClippedPPO("MlpPolicy", make_vec_env(env_id, seed=0), n_steps=128, batch_size=64, n_epochs=2, seed=0,
                       learning_rate=3e-3, policy_kwargs=policy_kwargs)  # fmt: skip
    assert model.uses_fast_path
    model.learn(256)
    obs = np.stack([model.observation_space.sample() * 3 for _ in range(500)])  # beyond Pendulum's action bounds too
    for batch in (obs, obs[0], obs[:1]):
        actions, state = model.predict(batch, deterministic=True)
        expected = torch_predict(model.policy, batch)
        assert state is None and actions.shape == expected.shape and actions.dtype == expected.dtype
        if isinstance(model.action_space, spaces.Box):
            np.testing.assert_allclose(actions, expected, rtol=0, atol=1e-6)
            assert np.all(np.abs(actions) <= 2.0)
        else:
            np.testing.assert_array_equal(actions, expected)
    model.learn(128, reset_num_timesteps=False)  # new weights and statistics: the NumPy actor follows them
    np.testing.assert_allclose(model.predict(obs, deterministic=True)[0], torch_predict(model.policy, obs), atol=1e-6)
    assert not model.policy.training


def test_stochastic_predict_and_errors_are_sb3s():
    model = ClippedPPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, seed=0)
    th.manual_seed(0)
    stochastic = model.predict(np.zeros(3, np.float32), deterministic=False)[0]
    th.manual_seed(0)
    np.testing.assert_array_equal(stochastic, torch_predict(model.policy, np.zeros(3, np.float32), deterministic=False))
    with pytest.raises(ValueError, match="observation"):
        model.predict(np.zeros(4, np.float32), deterministic=True)


def test_policies_without_the_numpy_actor_use_torch():
    model = ClippedPPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, seed=0,
                       policy_kwargs=dict(state_dependent_std=True))  # fmt: skip
    assert not model.uses_fast_path and model.backend.deterministic_actions(np.zeros((1, 3), np.float32)) is None
    obs = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], torch_predict(model.policy, obs))


def test_the_numpy_actor_follows_new_storage_and_loaded_parameters():
    model = ClippedPPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, seed=0)
    obs = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    first = model.predict(obs, deterministic=True)[0]
    cached = model.backend.predictor.arrays()
    assert model.backend.predictor.arrays() is cached  # kept while nothing changed
    weight = model.policy.action_net.weight
    weight.data = weight.data * 0.5  # new storage: the cached views would be stale
    moved = model.predict(obs, deterministic=True)[0]
    assert model.backend.predictor.arrays() is not cached and not np.allclose(moved, first)
    np.testing.assert_allclose(moved, torch_predict(model.policy, obs), atol=1e-6)
    other = ClippedPPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, seed=1)
    model.set_parameters(other.get_parameters())  # copied into the same storage, which the views share
    np.testing.assert_allclose(model.predict(obs, deterministic=True)[0], other.predict(obs, deterministic=True)[0], atol=1e-6)
