"""Policy: closed-form distributions, network construction, initialization, flat parameter storage."""

import copy
import math

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from torch import nn

from sb3_clippedppo.policies import (
    MlpActorCriticPolicy,
    categorical_entropy,
    categorical_log_prob,
    gaussian_entropy,
    gaussian_log_prob,
)

OBS = spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACT = spaces.Box(-2.0, 2.0, (3,), np.float32)


def make_policy(action_space=ACT, **kwargs) -> MlpActorCriticPolicy:
    return MlpActorCriticPolicy(OBS, action_space, lambda _: 3e-4, **kwargs)


@pytest.mark.parametrize("state_dependent", [False, True])
def test_gaussian_log_prob_and_entropy_match_torch_normal(state_dependent):
    gen = th.Generator().manual_seed(0)
    mean = th.randn(64, 6, generator=gen) * 3
    log_std = th.randn(64, 6, generator=gen) if state_dependent else th.randn(6, generator=gen)
    actions = mean + th.randn(64, 6, generator=gen) * 2
    normal = th.distributions.Normal(mean, log_std.exp().expand_as(mean))
    th.testing.assert_close(gaussian_log_prob(actions, mean, log_std), normal.log_prob(actions).sum(-1), atol=1e-5, rtol=1e-5)
    th.testing.assert_close(gaussian_entropy(log_std).expand(64), normal.entropy().sum(-1), atol=1e-5, rtol=1e-5)


def test_categorical_log_prob_and_entropy_match_torch_categorical():
    gen = th.Generator().manual_seed(1)
    logits = th.randn(50, 4, generator=gen) * 4
    actions = th.randint(0, 4, (50,), generator=gen)
    dist = th.distributions.Categorical(logits=logits)
    th.testing.assert_close(categorical_log_prob(logits, actions), dist.log_prob(actions))
    th.testing.assert_close(categorical_entropy(logits), dist.entropy())


@pytest.mark.parametrize(
    "net_arch, pi, vf",
    [(None, [64, 64], [64, 64]), ([32], [32], [32]), (dict(pi=[16, 8], vf=[4]), [16, 8], [4]), ([], [], [])],
)
def test_net_arch_forms(net_arch, pi, vf):
    policy = make_policy(net_arch=net_arch, activation_fn=nn.ReLU)

    def widths(net):
        return [m.out_features for m in net if isinstance(m, nn.Linear)]

    assert widths(policy.actor) == [*pi, 3]
    assert widths(policy.critic) == [*vf, 1]
    assert all(isinstance(m, nn.ReLU) for m in policy.actor if not isinstance(m, nn.Linear))
    assert sum(isinstance(m, nn.ReLU) for m in policy.actor) == len(pi)


@pytest.mark.parametrize("bad", [[dict(pi=[64], vf=[64])], "64,64", dict(pi=[64], qf=[3]), [0]])
def test_bad_net_arch_is_rejected(bad):
    with pytest.raises((TypeError, ValueError), match="net_arch"):
        make_policy(net_arch=bad)


def test_orthogonal_init_gains():
    policy = make_policy(net_arch=[64, 64])
    actor = [m for m in policy.actor if isinstance(m, nn.Linear)]
    critic = [m for m in policy.critic if isinstance(m, nn.Linear)]
    # An orthogonal matrix W with gain g has W W^T = g^2 I (rows <= columns) or W^T W = g^2 I (rows >= columns)
    for layer, gain in [(actor[0], math.sqrt(2)), (actor[1], math.sqrt(2)), (actor[2], 0.01), (critic[2], 1.0)]:
        w = layer.weight.detach()
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        th.testing.assert_close(gram, gain**2 * th.eye(gram.shape[0]), atol=1e-5, rtol=1e-4)
        assert th.all(layer.bias == 0)
    # Without ortho_init, PyTorch's default init is kept: the output layer is not scaled down to 0.01
    plain = make_policy(net_arch=[64, 64], ortho_init=False)
    assert plain.actor[-1].weight.abs().max() > 0.05


def test_log_std_init_and_state_independent_std():
    policy = make_policy(log_std_init=-2.0)
    th.testing.assert_close(policy.log_std.detach(), th.full((3,), -2.0))
    obs = th.randn(7, 5)
    _, _, entropy = policy.evaluate_actions(obs, th.zeros(7, 3))
    assert th.allclose(entropy, entropy[0].expand(7))


def test_predict_deterministic_returns_the_clipped_mean():
    policy = make_policy(log_std_init=0.0)
    with th.no_grad():
        policy.actor[-1].bias.fill_(1.5)
        policy.actor[-1].bias[2] = 5.0  # out of bounds: clipped to the action space by predict
    obs = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    actions, _ = policy.predict(obs, deterministic=True)
    with th.no_grad():
        mean = policy.actor(th.as_tensor(obs)).numpy()
    np.testing.assert_allclose(actions, np.clip(mean, -2, 2), rtol=1e-6)
    assert actions[:, 2].max() == 2.0
    stochastic, _ = policy.predict(obs, deterministic=False)
    assert not np.allclose(stochastic, actions)


def test_discrete_policy_samples_valid_actions_and_argmax_when_deterministic():
    policy = make_policy(spaces.Discrete(4))
    obs = np.random.default_rng(0).normal(size=(100, 5)).astype(np.float32)
    actions, _ = policy.predict(obs, deterministic=False)
    assert actions.shape == (100,) and set(actions.tolist()) <= {0, 1, 2, 3}
    deterministic, _ = policy.predict(obs, deterministic=True)
    with th.no_grad():
        np.testing.assert_array_equal(deterministic, policy.actor(th.as_tensor(obs)).argmax(-1).numpy())


def test_gumbel_max_sampling_follows_the_categorical_distribution():
    policy = make_policy(spaces.Discrete(3))
    th.manual_seed(0)
    logits = th.tensor([[0.0, 1.0, 2.0]]).expand(200_000, 3)
    counts = th.bincount(policy.sample(logits, policy.draw_noise(200_000)), minlength=3).float() / 200_000
    th.testing.assert_close(counts, th.softmax(logits[0], -1), atol=5e-3, rtol=0)


def test_gaussian_sampling_has_the_policy_std():
    policy = make_policy(log_std_init=-1.0)
    th.manual_seed(0)
    mean = th.zeros(100_000, 3)
    samples = policy.sample(mean, policy.draw_noise(100_000))
    th.testing.assert_close(samples.std(0), th.full((3,), math.exp(-1.0)), atol=5e-3, rtol=0)


def test_parameters_and_gradients_live_in_flat_buffers():
    policy = make_policy()
    assert policy.flat_parameters_intact()
    n = sum(p.numel() for p in policy.parameters())
    assert policy._flat_data.numel() == n
    values, log_prob, entropy = policy.evaluate_actions(th.randn(10, 5), th.randn(10, 3))
    (values.sum() + log_prob.sum() + entropy.sum()).backward()
    # Autograd accumulated into the flat gradient buffer through the views
    assert policy._flat_grad.abs().sum() > 0
    th.testing.assert_close(policy._flat_grad, th.cat([p.grad.reshape(-1) for p in policy._flat_params]))
    before = [p.detach().clone() for p in policy.parameters()]
    policy.optimizer.step()
    assert all(not th.equal(a, b) for a, b in zip(before, policy.parameters(), strict=True))


def test_flat_buffers_are_restored_after_they_break():
    policy = make_policy()
    policy.evaluate_actions(th.randn(10, 5), th.randn(10, 3))[0].sum().backward()
    policy.optimizer.step()
    state_before = copy.deepcopy(policy.optimizer.state_dict())
    values_before = [p.detach().clone() for p in policy.parameters()]

    for breaker in (
        lambda p: p.optimizer.zero_grad(set_to_none=True),
        lambda p: setattr(p.actor[0].weight, "data", p.actor[0].weight.data.clone()),
    ):
        breaker(policy)
        assert not policy.flat_parameters_intact()
        policy.ensure_flat_parameters()
        assert policy.flat_parameters_intact()
    for a, b in zip(values_before, policy.parameters(), strict=True):
        th.testing.assert_close(a, b)
    state_after = policy.optimizer.state_dict()
    for key, value in state_before["state"][0].items():
        th.testing.assert_close(value, state_after["state"][0][key])

    clone = copy.deepcopy(policy)
    clone.ensure_flat_parameters()
    assert clone.flat_parameters_intact()
    assert clone._flat_data.data_ptr() != policy._flat_data.data_ptr()


def test_dtype_change_rebuilds_the_flat_buffers():
    policy = make_policy()
    policy.double()
    assert policy.flat_parameters_intact()
    assert policy._flat_data.dtype == th.float64
    policy.float()
    assert policy.flat_parameters_intact()
