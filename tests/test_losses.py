"""The loss: closed-form gradients (AnalyticLoss) against autograd (ppo_loss) on the same minibatches."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from torch import nn

from sb3_clippedppo.buffers import RolloutBatch
from sb3_clippedppo.losses import ACTIVATION_BACKWARD, AnalyticLoss, normalize_advantages, ppo_loss
from sb3_clippedppo.policies import MlpActorCriticPolicy, mlp_layers

OBS = spaces.Box(-np.inf, np.inf, (7,), np.float32)
ACT = spaces.Box(-1.0, 1.0, (3,), np.float32)


def make_batch(policy: MlpActorCriticPolicy, n: int, seed: int) -> RolloutBatch:
    """A minibatch whose ratios spread well beyond 1 +- clip_range, and whose values beyond +- clip_range_vf."""
    gen = th.Generator().manual_seed(seed)
    obs = th.randn(n, 7, generator=gen) * 2
    with th.no_grad():
        values, log_prob, _ = policy.evaluate_actions(obs, th.zeros(n, 3))
        mean = policy.actor(obs)
    actions = mean + th.randn(n, 3, generator=gen) * th.exp(policy.log_std.detach())
    with th.no_grad():
        _, log_prob, _ = policy.evaluate_actions(obs, actions)
    old_log_prob = log_prob + 0.4 * th.randn(n, generator=gen)  # ratios from about 0.4 to 2.5
    old_values = values + 0.3 * th.randn(n, generator=gen)
    returns = values + th.randn(n, generator=gen)
    advantages = th.randn(n, generator=gen)
    with th.no_grad():
        old_distribution = policy.distribution_params(policy.action_params(obs)) + 0.1 * th.randn(n, 6, generator=gen)
    return RolloutBatch(obs, actions, old_values, old_log_prob, advantages, returns, old_distribution)


def flat_grad_of(policy: MlpActorCriticPolicy) -> th.Tensor:
    return policy._flat_grad.clone()


@pytest.mark.parametrize(
    "activation, net_arch",
    [
        (nn.Tanh, [64, 64]),
        (nn.ReLU, dict(pi=[32, 16], vf=[24])),
        (nn.ELU, [16]),
        (nn.LeakyReLU, dict(pi=[8, 8, 8], vf=[8])),
        (nn.Tanh, []),
    ],
)
@pytest.mark.parametrize("clip_range_vf", [None, 0.1])
@pytest.mark.parametrize("normalize", [True, False])
def test_analytic_gradients_match_autograd(activation, net_arch, clip_range_vf, normalize):
    th.manual_seed(0)
    policy = MlpActorCriticPolicy(
        OBS, ACT, lambda _: 1e-3, net_arch=net_arch, activation_fn=activation, ortho_init=False, log_std_init=-0.5
    )
    batch = make_batch(policy, n=64, seed=1)
    advantages = normalize_advantages(batch.advantages) if normalize else batch.advantages
    clip_range, ent_coef, vf_coef = 0.2, 0.01, 0.7

    policy.zero_flat_grad()
    reference = ppo_loss(policy, batch, advantages, clip_range, clip_range_vf, ent_coef, vf_coef)
    reference.loss.backward()
    expected = flat_grad_of(policy)

    analytic = AnalyticLoss(policy, ent_coef, vf_coef)
    policy._flat_grad.fill_(123.0)  # backward overwrites every gradient
    terms = analytic.forward(batch, advantages, clip_range, clip_range_vf)
    analytic.backward()
    got = flat_grad_of(policy)

    for name in ("policy_loss", "value_loss", "entropy_loss", "loss", "ratio", "log_ratio"):
        th.testing.assert_close(getattr(terms, name), getattr(reference, name).detach(), rtol=1e-5, atol=1e-6)
    th.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    # The batch exercises clipping in both directions
    ratio = terms.ratio
    assert (ratio > 1 + clip_range).any() and (ratio < 1 - clip_range).any()


def test_clip_boundaries_and_ties_follow_autograd():
    """Ratios exactly at 1 and at the clip boundaries: the gradient mask agrees with torch's min/clamp conventions."""
    th.manual_seed(0)
    policy = MlpActorCriticPolicy(OBS, ACT, lambda _: 1e-3, net_arch=[16], ortho_init=False)
    batch = make_batch(policy, n=6, seed=2)
    with th.no_grad():
        _, log_prob, _ = policy.evaluate_actions(batch.observations, batch.actions)
    # Old log-probs giving ratios 1, 1.2, 0.8 (up to float rounding), with both signs of advantage
    old = log_prob - th.log(th.tensor([1.0, 1.2, 0.8, 1.0, 1.2, 0.8]))
    batch = batch._replace(old_log_prob=old, advantages=th.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0]))
    policy.zero_flat_grad()
    ppo_loss(policy, batch, batch.advantages, 0.2, None, 0.0, 0.5).loss.backward()
    expected = flat_grad_of(policy)
    analytic = AnalyticLoss(policy, 0.0, 0.5)
    analytic.forward(batch, batch.advantages, 0.2, None)
    analytic.backward()
    th.testing.assert_close(flat_grad_of(policy), expected, rtol=1e-4, atol=1e-6)


def test_supports():
    assert AnalyticLoss.supports(MlpActorCriticPolicy(OBS, ACT, lambda _: 1e-3))
    assert not AnalyticLoss.supports(MlpActorCriticPolicy(OBS, spaces.Discrete(3), lambda _: 1e-3))
    assert not AnalyticLoss.supports(MlpActorCriticPolicy(OBS, ACT, lambda _: 1e-3, activation_fn=nn.GELU))

    class Custom(MlpActorCriticPolicy):
        pass

    assert not AnalyticLoss.supports(Custom(OBS, ACT, lambda _: 1e-3))  # a subclass may change the forward pass
    with pytest.raises(ValueError, match="supports"):
        AnalyticLoss(MlpActorCriticPolicy(OBS, spaces.Discrete(3), lambda _: 1e-3), 0.0, 0.5)


def test_mlp_layers():
    layers = mlp_layers(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)), ACTIVATION_BACKWARD)
    assert [type(act) for _, act in layers] == [nn.Tanh, type(None)]
    assert mlp_layers(nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True), nn.Linear(4, 2)), ACTIVATION_BACKWARD) is None
    assert mlp_layers(nn.Sequential(nn.Linear(3, 4), nn.Dropout(), nn.Linear(4, 2)), ACTIVATION_BACKWARD) is None
    assert mlp_layers(nn.Sequential(nn.Linear(3, 4, bias=False)), ACTIVATION_BACKWARD) is None
    assert mlp_layers(nn.Linear(3, 4), ACTIVATION_BACKWARD) is None


def test_backward_needs_forward():
    analytic = AnalyticLoss(MlpActorCriticPolicy(OBS, ACT, lambda _: 1e-3), 0.0, 0.5)
    with pytest.raises(RuntimeError, match="forward"):
        analytic.backward()
