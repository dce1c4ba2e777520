"""Custom policies: SB3's documented recipes (a custom ``mlp_extractor``, a custom features extractor, overridden
``forward``/``evaluate_actions``) train with ClippedPPO unchanged, through autograd; with a subclass of SB3's own
``ActorCriticPolicy``, ClippedPPO's training equals SB3's PPO's."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common import buffers as sb3_buffers
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.policies import ActorCriticPolicy as SB3ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_clippedppo import ActorCriticPolicy, ClippedPPO


class CustomNetwork(nn.Module):
    """The custom actor and critic networks of SB3's documentation ("Advanced Example"): two heads on the features."""

    def __init__(self, feature_dim: int, last_layer_dim_pi: int = 64, last_layer_dim_vf: int = 64):
        super().__init__()
        self.latent_dim_pi, self.latent_dim_vf = last_layer_dim_pi, last_layer_dim_vf
        self.policy_net = nn.Sequential(nn.Linear(feature_dim, last_layer_dim_pi), nn.ReLU())
        self.value_net = nn.Sequential(nn.Linear(feature_dim, last_layer_dim_vf), nn.ReLU())

    def forward(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: th.Tensor) -> th.Tensor:
        return self.policy_net(features)

    def forward_critic(self, features: th.Tensor) -> th.Tensor:
        return self.value_net(features)


class CustomActorCriticPolicy(SB3ActorCriticPolicy):
    """SB3's documented custom policy: SB3's ActorCriticPolicy with its own mlp_extractor."""

    def __init__(self, observation_space, action_space, lr_schedule, *args, **kwargs):
        kwargs["ortho_init"] = False
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = CustomNetwork(self.features_dim)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_sb3s_custom_policy_example_trains_as_with_sb3s_ppo(env_id, monkeypatch):
    """SB3's policy samples in its forward(), as in SB3's PPO; with the same seed and minibatch permutations, the
    two algorithms take the same actions and make the same updates."""
    # SB3 draws each epoch's permutation with NumPy; make it draw ClippedPPO's (torch.randperm, one environment)
    monkeypatch.setattr(sb3_buffers.np.random, "permutation", lambda n: th.randperm(n).numpy())
    hyperparams = dict(n_steps=128, batch_size=32, n_epochs=3, seed=0, ent_coef=0.01)
    # Each construction seeds torch's global generator, which sampling and permutations then share: train one at a time
    ours = ClippedPPO(CustomActorCriticPolicy, env_id, **hyperparams)
    assert not ours.uses_fast_path and isinstance(ours.policy.mlp_extractor, CustomNetwork)
    initial = {k: v.clone() for k, v in ours.policy.state_dict().items()}
    ours.learn(512)
    theirs = PPO(CustomActorCriticPolicy, env_id, **hyperparams)
    theirs.learn(512)
    for key, value in ours.policy.state_dict().items():
        th.testing.assert_close(value, theirs.policy.state_dict()[key], rtol=0, atol=1e-5)
    assert max((value - initial[key]).abs().max().item() for key, value in ours.policy.state_dict().items()) > 1e-3


def test_sb3s_custom_policy_example_learns_cartpole():
    th.set_num_threads(1)
    env = make_vec_env("CartPole-v1", n_envs=8, seed=0)
    model = ClippedPPO(CustomActorCriticPolicy, env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                       learning_rate=1e-3, seed=0)  # fmt: skip
    model.learn(30_000)
    # A random policy lasts about 22 steps; seeds 0-3 measured 178, 146, 127, 138 (mean of the last 100 episodes)
    assert np.mean([info["r"] for info in model.ep_info_buffer]) > 100


class CountingPolicy(SB3ActorCriticPolicy):
    """Overrides forward and evaluate_actions (here only counting calls): ClippedPPO must go through them."""

    calls = {"forward": 0, "evaluate_actions": 0}

    def forward(self, obs, deterministic=False):
        CountingPolicy.calls["forward"] += 1
        return super().forward(obs, deterministic)

    def evaluate_actions(self, obs, actions):
        CountingPolicy.calls["evaluate_actions"] += 1
        return super().evaluate_actions(obs, actions)


class OwnEvaluation(ActorCriticPolicy):
    """The same, on this package's policy: overriding an evaluation method routes training through SB3's API."""

    calls = {"forward": 0, "evaluate_actions": 0}

    def forward(self, obs, deterministic=False):
        OwnEvaluation.calls["forward"] += 1
        return super().forward(obs, deterministic)

    def evaluate_actions(self, obs, actions):
        OwnEvaluation.calls["evaluate_actions"] += 1
        return super().evaluate_actions(obs, actions)


@pytest.mark.parametrize("policy_class", [CountingPolicy, OwnEvaluation])
def test_overridden_forward_and_evaluate_actions_are_used(policy_class):
    model = ClippedPPO(policy_class, "Pendulum-v1", n_steps=64, batch_size=32, n_epochs=2, seed=0)
    assert not model.uses_fast_path
    model.learn(64)
    assert policy_class.calls == {"forward": 64, "evaluate_actions": 4}


class TinyExtractor(BaseFeaturesExtractor):
    """A custom features extractor, as in SB3's documentation (here for vectors): Linear + ReLU."""

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 16):
        super().__init__(observation_space, features_dim)
        self.net = nn.Sequential(nn.Linear(int(np.prod(observation_space.shape)), features_dim), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.net(observations)


def test_custom_features_extractor_and_mlp_extractor_on_this_packages_policy(tmp_path):
    class WithCustomNetwork(ActorCriticPolicy):
        def _build_mlp_extractor(self) -> None:
            self.mlp_extractor = CustomNetwork(self.features_dim, 32, 32)

    kwargs = dict(features_extractor_class=TinyExtractor, features_extractor_kwargs=dict(features_dim=8))
    for policy in ("MlpPolicy", WithCustomNetwork):
        # Still this package's distributions: the exact-KL options work, through autograd
        model = ClippedPPO(policy, "Pendulum-v1", n_steps=64, batch_size=32, n_epochs=2, seed=0,
                           policy_objective="kl_penalty", policy_kwargs=kwargs)  # fmt: skip
        assert not model.uses_fast_path and isinstance(model.policy.features_extractor, TinyExtractor)
        model.learn(128)
        obs = np.zeros((2, 3), np.float32)
        model.save(tmp_path / "model")
        loaded = ClippedPPO.load(tmp_path / "model")
        np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_options_that_need_this_packages_policies_are_refused_with_others():
    with pytest.raises(TypeError, match=r"policy_objective='kl_penalty' need the exact KL .* got CustomActorCriticPolicy"):
        ClippedPPO(CustomActorCriticPolicy, "Pendulum-v1", policy_objective="kl_penalty")
    with pytest.raises(TypeError, match=r"kl_adaptive_lr=True need"):
        ClippedPPO(CustomActorCriticPolicy, "Pendulum-v1", kl_adaptive_lr=True, target_kl=0.01)
    with pytest.raises(ValueError, match=r"vf_learning_rate needs an optimizer parameter group named 'critic'"):
        ClippedPPO(CustomActorCriticPolicy, "Pendulum-v1", vf_learning_rate=1e-3)
