"""Bad input gets a clear TypeError/ValueError at construction; a non-finite loss stops training cleanly."""
import hashlib
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_clippedppo import ClippedPPO, NonFiniteLossError
from tests.envs import counter_env


def make_env(n_envs=1):
    return DummyVecEnv([counter_env(terminate_at=10)] * n_envs)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(batch_size=1), ValueError, r"batch_size must be >= 2 with normalize_advantage=True"),
        (dict(batch_size=0), ValueError, r"batch_size must be >= 1"),
        (dict(batch_size=64.0), TypeError, r"batch_size must be an int"),
        (dict(n_steps=0), ValueError, r"n_steps must be >= 1"),
        (dict(n_steps=1, batch_size=1, normalize_advantage=True), ValueError, r"batch_size must be >= 2"),
        (dict(n_steps=1, batch_size=2), ValueError, r"n_steps \* n_envs must be >= 2 with normalize_advantage"),
        (dict(fast_path="yes"), ValueError, r"fast_path must be 'auto', True or False"),
        (dict(rollout_buffer_class=dict), ValueError, r"rollout_buffer_class must be None"),
        (dict(rollout_buffer_kwargs=dict(n=1)), ValueError, r"rollout_buffer_kwargs are not supported"),
        (dict(n_epochs=0), ValueError, r"n_epochs must be >= 1"),
        (dict(clip_range=0.0), ValueError, r"clip_range must be > 0"),
        (dict(clip_range=-0.2), ValueError, r"clip_range must be > 0"),
        (dict(clip_range=lambda _: 0.0), ValueError, r"clip_range schedule must return a positive number"),
        (dict(clip_range="0.2"), TypeError, r"clip_range must be a positive number"),
        (dict(clip_range_vf=0.0), ValueError, r"clip_range_vf must be > 0 \(use None to disable it\)"),
        (dict(gamma=1.01), ValueError, r"gamma must be in \[0.0, 1.0\]"),
        (dict(gamma=-0.1), ValueError, r"gamma must be in \[0.0, 1.0\]"),
        (dict(gamma=float("nan")), ValueError, r"gamma must be in"),
        (dict(gae_lambda=1.5), ValueError, r"gae_lambda must be in \[0.0, 1.0\]"),
        (dict(gae_lambda=-0.5), ValueError, r"gae_lambda must be in \[0.0, 1.0\]"),
        (dict(target_kl=0.0), ValueError, r"target_kl must be in \(0.0, inf\)"),
        (dict(target_kl=-0.01), ValueError, r"target_kl must be in \(0.0, inf\)"),
        (dict(ent_coef=-0.01), ValueError, r"ent_coef must be in \[0.0, inf\)"),
        (dict(vf_coef=-0.5), ValueError, r"vf_coef must be in \[0.0, inf\)"),
        (dict(max_grad_norm=0.0), ValueError, r"max_grad_norm must be in \(0.0, inf\)"),
        (dict(learning_rate=-1e-3), ValueError, r"learning_rate must be > 0"),
        (dict(use_sde="yes"), TypeError, r"use_sde must be a bool"),
        (dict(use_sde=True, sde_sample_freq=2.5), TypeError, r"sde_sample_freq must be an int"),
        (dict(stats_window_size=0), ValueError, r"stats_window_size must be >= 1"),
        (dict(policy_kwargs=dict(squash_output=True)), ValueError, r"squash_output=True is only available with gSDE"),
        (dict(policy_kwargs=dict(use_sde=True)), ValueError, r"pass use_sde=True to ClippedPPO"),
        (dict(policy_kwargs=dict(shared_layers=2)), TypeError, r"policy_kwargs \['shared_layers'\] not accepted"),
        (dict(policy_kwargs=dict(net_arch="64")), TypeError, r"net_arch must be None, a list of ints or dict\(pi="),
        (dict(policy_kwargs=dict(net_arch=dict(pi=[64], q=[64]))), TypeError, r"net_arch dict accepts only the keys"),
        (dict(policy_kwargs=dict(net_arch=[64, 0])), ValueError, r"net_arch layer sizes must be >= 1"),
        (dict(policy_kwargs=dict(activation_fn="relu")), TypeError, r"activation_fn must be a torch.nn.Module class"),
        (dict(policy_kwargs=[1]), TypeError, r"policy_kwargs must be a dict"),
    ],
)
def test_bad_hyperparameters_are_rejected_at_construction(kwargs, error, match):
    defaults = dict(n_steps=64, batch_size=32)
    with pytest.raises(error, match=match):
        ClippedPPO("MlpPolicy", make_env(), **{**defaults, **kwargs})


def test_batch_size_that_does_not_divide_the_rollout_warns():
    with pytest.warns(UserWarning, match=r"batch_size=30 does not divide n_steps \* n_envs = 64: .* minibatch of 4"):
        ClippedPPO("MlpPolicy", make_env(), n_steps=64, batch_size=30)


def test_rollout_size_counts_all_envs():
    # 8 * 4 = 32 transitions: a batch_size of 32 divides them; 33 is one minibatch of the whole rollout, with SB3's warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ClippedPPO("MlpPolicy", make_env(n_envs=4), n_steps=8, batch_size=32)
    with pytest.warns(UserWarning, match=r"batch_size=33 does not divide n_steps \* n_envs = 32: .* minibatch of 32"):
        model = ClippedPPO("MlpPolicy", make_env(n_envs=4), n_steps=8, batch_size=33)
    assert model.batch_size == 33


def test_rollout_of_one_transition_is_rejected_with_normalize_advantage():
    with pytest.raises(ValueError, match=r"n_steps \* n_envs must be >= 2 with normalize_advantage=True"):
        ClippedPPO("MlpPolicy", make_env(n_envs=1), n_steps=1, batch_size=2)


class SpaceEnv(gym.Env):
    def __init__(self, observation_space, action_space):
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


BOX = spaces.Box(-1, 1, (3,), np.float32)


@pytest.mark.parametrize(
    "observation_space, action_space, error, match",
    [
        (spaces.Tuple([BOX, BOX]), BOX, TypeError, r"observation_space must be a gymnasium Box, Discrete, .* or a Dict"),
        (spaces.Dict({"a": spaces.Dict({"b": BOX})}), BOX, TypeError, r"\(not nested\)"),
        (BOX, spaces.Tuple([BOX]), TypeError, r"action_space must be a gymnasium Box, Discrete, MultiDiscrete or MultiBinary"),
        (BOX, spaces.MultiBinary([2, 3]), TypeError, r"MultiBinary must be one-dimensional"),
        (spaces.Dict({"a": BOX}), BOX, ValueError, r"Dict observations need policy='MultiInputPolicy', not 'MlpPolicy'"),
        (BOX, spaces.Box(-np.inf, np.inf, (2,), np.float32), ValueError, r"action_space must have finite bounds"),
    ],
)
def test_unsupported_spaces_are_rejected(observation_space, action_space, error, match):
    with pytest.raises(error, match=match):
        ClippedPPO("MlpPolicy", SpaceEnv(observation_space, action_space))


def test_unknown_policy_is_rejected():
    with pytest.raises(ValueError, match="LstmPolicy unknown"):
        ClippedPPO("LstmPolicy", make_env())
    with pytest.raises(TypeError, match="policy must be 'MlpPolicy', 'CnnPolicy', 'MultiInputPolicy' or a subclass"):
        ClippedPPO(th.nn.Linear, make_env())


def file_digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_non_finite_loss_stops_training_and_keeps_saved_model(tmp_path):
    # Rewards become NaN after 300 steps: the returns, and so the value loss, are NaN in the second update.
    env = DummyVecEnv([counter_env(terminate_at=50, reward_fn=lambda step: np.nan if step > 300 else 1.0)])
    model = ClippedPPO("MlpPolicy", env, n_steps=256, batch_size=64, seed=0)
    checkpoint = CheckpointCallback(save_freq=256, save_path=str(tmp_path), name_prefix="ckpt")
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss or gradient in update 2 \(epoch 0, minibatch 0\)"):
        model.learn(2048, callback=checkpoint)
    saved = sorted(tmp_path.glob("ckpt_*.zip"))
    assert [p.name for p in saved] == ["ckpt_256_steps.zip", "ckpt_512_steps.zip"]
    digests = {p: file_digest(p) for p in saved}
    # The model in memory took no step with the NaN gradient
    assert np.all(np.isfinite(model.policy.parameters_to_vector()))
    loaded = ClippedPPO.load(saved[-1])
    assert np.all(np.isfinite(loaded.policy.parameters_to_vector()))
    assert {p: file_digest(p) for p in saved} == digests


def test_batch_size_above_the_rollout_is_one_minibatch_as_in_sb3():
    with pytest.warns(UserWarning, match="each epoch ends with a minibatch of 16"):
        model = ClippedPPO("MlpPolicy", "Pendulum-v1", n_steps=16, batch_size=17, n_epochs=2)
    model.learn(16)
    assert [len(batch.advantages) for batch in model.rollout_buffer.minibatches(model.batch_size)] == [16]
