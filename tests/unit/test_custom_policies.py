"""Custom policies: SB3's documented recipes (a custom ``mlp_extractor``, a custom features extractor, overridden
``forward``/``evaluate_actions``/``extract_features``) train with ClippedPPO unchanged, through autograd, and which path
trains them is explicit: a policy that does not offer this package's distributions (``offers_distributions``), such as
any subclass of SB3's own ``ActorCriticPolicy``, is trained through SB3's ``forward`` and ``evaluate_actions`` (then
ClippedPPO's training equals SB3's PPO's), and an option that needs the distributions refuses it; a subclass of this
package's policy is trained through ``forward_distribution``, which calls its ``extract_features``."""

import re

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common import buffers as sb3_buffers
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import ActorCriticPolicy as SB3ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_clippedppo import ActorCriticPolicy, ClippedPPO
from sb3_clippedppo.backends.autograd import AutogradBackend


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


class CountingCalls:
    """Overrides forward and evaluate_actions, only counting calls (per class, in ``calls``)."""

    calls: dict[str, int]

    def forward(self, obs, deterministic=False):
        type(self).calls["forward"] += 1
        return super().forward(obs, deterministic)

    def evaluate_actions(self, obs, actions):
        type(self).calls["evaluate_actions"] += 1
        return super().evaluate_actions(obs, actions)


class CountingPolicy(CountingCalls, SB3ActorCriticPolicy):
    """An SB3 policy overriding forward and evaluate_actions: ClippedPPO must go through them."""

    calls = {"forward": 0, "evaluate_actions": 0}


class OwnEvaluation(CountingCalls, ActorCriticPolicy):
    """The same, on this package's policy, which says that it is to be trained through SB3's API."""

    offers_distributions = False
    calls = {"forward": 0, "evaluate_actions": 0}


@pytest.mark.parametrize("policy_class", [CountingPolicy, OwnEvaluation])
def test_overridden_forward_and_evaluate_actions_are_used(policy_class):
    policy_class.calls = {"forward": 0, "evaluate_actions": 0}
    model = ClippedPPO(policy_class, "Pendulum-v1", n_steps=64, batch_size=32, n_epochs=2, seed=0)
    assert not model.uses_fast_path
    model.learn(64)
    assert policy_class.calls == {"forward": 64, "evaluate_actions": 4}


class PhaseCounter(BaseCallback):
    """Counts the calls of a policy method in each phase of ``learn``: the rollout, then the update that follows it."""

    def __init__(self):
        super().__init__()
        self.phase = "setup"
        self.calls = {"setup": 0, "rollout": 0, "update": 0}

    def count(self) -> None:
        self.calls[self.phase] += 1

    def _on_rollout_start(self) -> None:
        self.phase = "rollout"

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.phase = "update"  # train() runs next


def counting(counter: PhaseCounter, method):
    """``method`` (a bound method), counting its calls in ``counter``."""

    def counted(*args, **kwargs):
        counter.count()
        return method(*args, **kwargs)

    return counted


class SB3OwnFeatures(SB3ActorCriticPolicy):
    """A subclass of SB3's ActorCriticPolicy that overrides extract_features (as an SB3 user would, e.g. to scale the
    observations); ``counter`` (set on the instance by the test) counts its calls."""

    def extract_features(self, obs, features_extractor=None):
        self.counter.count()
        return super().extract_features(obs / 2.0, features_extractor)


class OwnFeatures(ActorCriticPolicy):
    """The same on this package's policy, which offers the distributions: forward_distribution calls the override."""

    def extract_features(self, obs, features_extractor=None):
        self.counter.count()
        return super().extract_features(obs / 2.0, features_extractor)


N_STEPS, BATCH_SIZE, N_EPOCHS = 64, 32, 2  # 64 rollout steps, then 2 epochs of 2 minibatches
MINIBATCHES = N_EPOCHS * N_STEPS // BATCH_SIZE


def counted_run(policy_class, **kwargs) -> tuple[ClippedPPO, PhaseCounter, dict[str, PhaseCounter]]:
    """One rollout and one update of ``policy_class`` on Pendulum, counting the calls of its extract_features and of
    the methods that evaluate it, in each phase."""
    model = ClippedPPO(policy_class, "Pendulum-v1", n_steps=N_STEPS, batch_size=BATCH_SIZE, n_epochs=N_EPOCHS, seed=0,
                       **kwargs)  # fmt: skip
    features = PhaseCounter()
    model.policy.counter = features
    evaluations = {}
    for name in ("forward", "evaluate_actions", "forward_distribution"):
        if hasattr(model.policy, name):
            evaluations[name] = PhaseCounter()
            setattr(model.policy, name, counting(evaluations[name], getattr(model.policy, name)))
    before = model.policy.parameters_to_vector()
    model.learn(N_STEPS, callback=[features, *evaluations.values()])
    assert np.abs(model.policy.parameters_to_vector() - before).max() > 0  # it trained
    return model, features, evaluations


def test_sb3_policy_overriding_extract_features_trains_through_sb3s_forward_and_evaluate_actions():
    model, features, evaluations = counted_run(SB3OwnFeatures)
    assert isinstance(model.backend, AutogradBackend) and not model.uses_fast_path
    assert not getattr(model.policy, "offers_distributions", False)
    # SB3's path, as in SB3's PPO: forward at every rollout step, evaluate_actions for every minibatch
    assert evaluations["forward"].calls == {"setup": 0, "rollout": N_STEPS, "update": 0}
    assert evaluations["evaluate_actions"].calls == {"setup": 0, "rollout": 0, "update": MINIBATCHES}
    # and both go through the override
    assert features.calls["rollout"] >= N_STEPS and features.calls["update"] >= MINIBATCHES


@pytest.mark.parametrize(
    "options, named",
    [(dict(policy_objective="kl_penalty"), "policy_objective='kl_penalty'"),
     (dict(kl_adaptive_lr=True, target_kl=0.02), "kl_adaptive_lr=True")],
)  # fmt: skip
def test_options_needing_distributions_refuse_an_sb3_policy_overriding_extract_features(options, named):
    with pytest.raises(ValueError, match=rf"{re.escape(named)} need the exact KL .* got SB3OwnFeatures"):
        ClippedPPO(SB3OwnFeatures, "Pendulum-v1", n_steps=N_STEPS, batch_size=BATCH_SIZE, **options)


@pytest.mark.parametrize("policy_objective", ["clip", "kl_penalty"])
def test_this_packages_policy_overriding_extract_features_trains_through_forward_distribution(policy_objective):
    model, features, evaluations = counted_run(OwnFeatures, policy_objective=policy_objective)
    assert model.policy.offers_distributions
    # not the fast path, whose arithmetic would bypass the override; and it says why
    assert isinstance(model.backend, AutogradBackend) and not model.uses_fast_path
    assert "OwnFeatures overrides extract_features" in model.fast_path_reason
    # forward_distribution in both phases, never SB3's forward or evaluate_actions
    assert evaluations["forward_distribution"].calls["rollout"] >= N_STEPS
    assert evaluations["forward_distribution"].calls["update"] >= MINIBATCHES
    assert evaluations["forward"].calls["update"] == evaluations["evaluate_actions"].calls["update"] == 0
    assert evaluations["evaluate_actions"].calls["rollout"] == 0
    assert features.calls["rollout"] >= N_STEPS and features.calls["update"] >= MINIBATCHES


class OwnForward(ActorCriticPolicy):
    def forward(self, obs, deterministic=False):
        return super().forward(obs, deterministic)


class OwnForwardThroughSB3(OwnForward):
    offers_distributions = False


def test_this_packages_policy_overriding_forward_must_say_how_it_is_trained():
    with pytest.raises(TypeError, match=r"OwnForward overrides forward.*offers_distributions = False"):
        ClippedPPO(OwnForward, "Pendulum-v1", n_steps=N_STEPS, batch_size=BATCH_SIZE)
    model = ClippedPPO(OwnForwardThroughSB3, "Pendulum-v1", n_steps=N_STEPS, batch_size=BATCH_SIZE, seed=0)
    assert isinstance(model.backend, AutogradBackend) and not model.uses_fast_path
    model.learn(N_STEPS)


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
    with pytest.raises(ValueError, match=r"policy_objective='kl_penalty' need the exact KL .* got CustomActorCriticPolicy"):
        ClippedPPO(CustomActorCriticPolicy, "Pendulum-v1", policy_objective="kl_penalty")
    with pytest.raises(ValueError, match=r"kl_adaptive_lr=True need"):
        ClippedPPO(CustomActorCriticPolicy, "Pendulum-v1", kl_adaptive_lr=True, target_kl=0.01)
    with pytest.raises(ValueError, match=r"vf_learning_rate needs an optimizer parameter group named 'critic'"):
        ClippedPPO(CustomActorCriticPolicy, "Pendulum-v1", vf_learning_rate=1e-3)
