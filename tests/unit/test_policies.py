"""Policies: SB3's ActorCriticPolicy with closed-form distributions; SB3's initial weights, net_arch, orthogonal
initialization, parameter groups, prediction, and the explicit distribution interface (``offers_distributions``)."""

import math

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common import envs as sb3_envs
from torch import nn

from sb3_clippedppo import ClippedPPO
from sb3_clippedppo.distributions import Bernoulli, Categorical, DiagGaussian, MultiCategorical
from sb3_clippedppo.policies import ActorCriticPolicy, check_distribution_interface

OBS = spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACT = spaces.Box(-2.0, 2.0, (3,), np.float32)


def make_policy(action_space=ACT, **kwargs) -> ActorCriticPolicy:
    return ActorCriticPolicy(OBS, action_space, lambda _: 3e-4, **kwargs)


ENVS = {
    "box": ("MlpPolicy", lambda: sb3_envs.IdentityEnvBox(eps=0.5), {}),
    "discrete": ("MlpPolicy", lambda: sb3_envs.IdentityEnv(5), {}),
    "multidiscrete": ("MlpPolicy", lambda: sb3_envs.IdentityEnvMultiDiscrete(3), {}),
    "multibinary": ("MlpPolicy", lambda: sb3_envs.IdentityEnvMultiBinary(3), {}),
    "image": ("CnnPolicy", lambda: sb3_envs.FakeImageEnv(screen_height=36, screen_width=36, n_channels=1), {}),
    "image-separate-extractors": (
        "CnnPolicy",
        lambda: sb3_envs.FakeImageEnv(screen_height=36, screen_width=36, n_channels=3, discrete=False),
        dict(share_features_extractor=False, net_arch=[32]),
    ),
    "dict": ("MultiInputPolicy", lambda: sb3_envs.SimpleMultiObsEnv(random_start=False), dict(activation_fn=nn.ReLU)),
}


@pytest.mark.parametrize("name", list(ENVS))
def test_a_seed_gives_sb3_ppos_initial_weights(name):
    policy, make_env, policy_kwargs = ENVS[name]
    ours = ClippedPPO(policy, make_env(), n_steps=64, batch_size=32, seed=7, policy_kwargs=policy_kwargs)
    theirs = PPO(policy, make_env(), n_steps=64, batch_size=32, seed=7, policy_kwargs=policy_kwargs)
    our_state, their_state = ours.policy.state_dict(), theirs.policy.state_dict()
    assert list(our_state) == list(their_state)
    for key, value in our_state.items():
        assert th.equal(value, their_state[key]), key


@pytest.mark.parametrize(
    "action_space, distribution",
    [(ACT, DiagGaussian), (spaces.Discrete(4), Categorical), (spaces.MultiDiscrete([2, 3]), MultiCategorical),
     (spaces.MultiBinary(4), Bernoulli)],
)  # fmt: skip
def test_distribution_per_action_space_and_sb3_evaluation_methods(action_space, distribution):
    policy = make_policy(action_space)
    obs = th.randn(6, 5)
    with th.no_grad():
        dist, values = policy.forward_distribution(obs)
        actions, sb3_values, log_prob = policy(obs)
        eval_values, eval_log_prob, entropy = policy.evaluate_actions(obs, actions)
    assert isinstance(dist, distribution) and isinstance(policy.get_distribution(obs), distribution)
    assert values.shape == (6,) and sb3_values.shape == (6, 1)
    th.testing.assert_close(values, sb3_values.squeeze(-1))
    th.testing.assert_close(eval_values, sb3_values)
    th.testing.assert_close(eval_log_prob, log_prob)
    th.testing.assert_close(entropy, dist.entropy())
    assert actions.shape == (6, *action_space.shape)
    predicted, _ = policy.predict(obs.numpy())
    assert all(action_space.contains(np.asarray(a, dtype=action_space.dtype)) for a in predicted)


@pytest.mark.parametrize(
    "net_arch, pi, vf",
    [(None, [64, 64], [64, 64]), ([32], [32], [32]), (dict(pi=[16, 8], vf=[4]), [16, 8], [4]), ([], [], [])],
)
def test_net_arch_forms(net_arch, pi, vf):
    policy = make_policy(net_arch=net_arch, activation_fn=nn.ReLU)

    def widths(net):
        return [m.out_features for m in net if isinstance(m, nn.Linear)]

    assert widths(policy.mlp_extractor.policy_net) + [policy.action_net.out_features] == [*pi, 3]
    assert widths(policy.mlp_extractor.value_net) + [policy.value_net.out_features] == [*vf, 1]
    assert sum(isinstance(m, nn.ReLU) for m in policy.mlp_extractor.policy_net) == len(pi)


@pytest.mark.parametrize("bad", ["64,64", dict(pi=[64], qf=[3]), [0], [64.0]])
def test_bad_net_arch_is_rejected(bad):
    with pytest.raises((TypeError, ValueError), match="net_arch"):
        make_policy(net_arch=bad)


def test_orthogonal_init_gains():
    policy = make_policy(net_arch=[64, 64])
    actor = [m for m in policy.mlp_extractor.policy_net if isinstance(m, nn.Linear)] + [policy.action_net]
    critic = [m for m in policy.mlp_extractor.value_net if isinstance(m, nn.Linear)] + [policy.value_net]
    # An orthogonal matrix W with gain g has W W^T = g^2 I (rows <= columns) or W^T W = g^2 I (rows >= columns)
    for layer, gain in [(actor[0], math.sqrt(2)), (actor[1], math.sqrt(2)), (actor[2], 0.01), (critic[2], 1.0)]:
        w = layer.weight.detach()
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        th.testing.assert_close(gram, gain**2 * th.eye(gram.shape[0]), atol=1e-5, rtol=1e-4)
        assert th.all(layer.bias == 0)
    # Without ortho_init, PyTorch's default init is kept: the output layer is not scaled down to 0.01
    plain = make_policy(net_arch=[64, 64], ortho_init=False)
    assert plain.action_net.weight.abs().max() > 0.05


def test_log_std_init_and_state_independent_std():
    policy = make_policy(log_std_init=-2.0)
    th.testing.assert_close(policy.log_std.detach(), th.full((3,), -2.0))
    _, _, entropy = policy.evaluate_actions(th.randn(7, 5), th.zeros(7, 3))
    assert th.allclose(entropy, entropy[0].expand(7))


def test_predict_deterministic_returns_the_clipped_mean():
    policy = make_policy(log_std_init=0.0)
    with th.no_grad():
        policy.action_net.bias.fill_(1.5)
        policy.action_net.bias[2] = 5.0  # out of bounds: clipped to the action space by predict
    obs = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    actions, _ = policy.predict(obs, deterministic=True)
    with th.no_grad():
        mean = policy.get_distribution(th.as_tensor(obs)).mode().numpy()
    np.testing.assert_allclose(actions, np.clip(mean, -2, 2), rtol=1e-6)
    assert actions[:, 2].max() == 2.0
    stochastic, _ = policy.predict(obs, deterministic=False)
    assert not np.allclose(stochastic, actions)


def names(policy, group):
    ids = {id(p) for g in policy.optimizer.param_groups if g["name"] == group for p in g["params"]}
    return {name.split(".")[0] + ("." + name.split(".")[1] if name.startswith("mlp_") else "") for name, p in
            policy.named_parameters() if id(p) in ids}  # fmt: skip


def test_parameter_groups_separate_the_critic():
    policy = make_policy()
    assert names(policy, "actor") == {"log_std", "mlp_extractor.policy_net", "action_net"}
    assert names(policy, "critic") == {"mlp_extractor.value_net", "value_net"}
    assert policy.optimizer.param_groups[0]["params"][-1] is policy.log_std
    assert sum(len(g["params"]) for g in policy.optimizer.param_groups) == len(list(policy.parameters()))
    image = spaces.Box(0, 255, (1, 36, 36), np.uint8)
    for share, critic_extractor in ((True, set()), (False, {"vf_features_extractor"})):
        cnn = ClippedPPO("CnnPolicy", sb3_envs.FakeImageEnv(screen_height=36, screen_width=36), n_steps=8, batch_size=8,
                         policy_kwargs=dict(share_features_extractor=share)).policy  # fmt: skip
        assert cnn.observation_space == image
        assert names(cnn, "critic") == {"value_net", *critic_extractor}
        assert "features_extractor" in names(cnn, "actor")


def test_the_distribution_interface_is_explicit():
    class OwnForward(ActorCriticPolicy):
        def forward(self, obs, deterministic=False):
            return super().forward(obs, deterministic)

    class OwnForwardThroughSB3(OwnForward):
        offers_distributions = False

    class OwnExtractor(ActorCriticPolicy):
        def extract_features(self, obs, features_extractor=None):
            return super().extract_features(obs, features_extractor)

    check_distribution_interface(make_policy())
    check_distribution_interface(OwnExtractor(OBS, ACT, lambda _: 1e-3))  # forward_distribution calls the override
    check_distribution_interface(OwnForwardThroughSB3(OBS, ACT, lambda _: 1e-3))  # trained through forward
    with pytest.raises(TypeError, match="OwnForward overrides forward.*offers_distributions = False"):
        check_distribution_interface(OwnForward(OBS, ACT, lambda _: 1e-3))


def test_gsde_and_squashing_need_what_they_need():
    assert make_policy(use_sde=True).use_sde  # Box actions (ACT)
    with pytest.raises(ValueError, match=r"use_sde=True \(gSDE\) needs a Box action space"):
        make_policy(spaces.Discrete(3), use_sde=True)
    with pytest.raises(ValueError, match="use_sde=True and state_dependent_std=True"):
        make_policy(use_sde=True, state_dependent_std=True)
    with pytest.raises(ValueError, match="squash_output=True is only available with gSDE"):
        make_policy(squash_output=True)
    with pytest.raises(ValueError, match="state_dependent_std=True needs a Box action space"):
        make_policy(spaces.Discrete(3), state_dependent_std=True)
