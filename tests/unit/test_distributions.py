"""The closed-form action distributions against torch.distributions: log-probabilities, entropies, KL divergences,
sampling with pre-drawn noise, modes, and the parameters kept in the rollout buffer."""

import math

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from torch.distributions import Bernoulli as TorchBernoulli
from torch.distributions import Categorical as TorchCategorical
from torch.distributions import Independent, Normal, kl_divergence

from sb3_clippedppo.distributions import (
    Bernoulli,
    Categorical,
    DiagGaussian,
    MultiCategorical,
    distribution_class,
)

B = 64
NVEC = (3, 5, 2)


def torch_multicategorical(logits: th.Tensor) -> list[TorchCategorical]:
    return [TorchCategorical(logits=c) for c in logits.split(NVEC, dim=-1)]


def make(kind: str, generator: th.Generator, state_dependent: bool = False):
    """(ours, torch's as a list of independent parts summed over, action space, actions)"""
    if kind == "gaussian":
        mean = th.randn(B, 4, generator=generator) * 3
        log_std = th.randn(B, 4, generator=generator) if state_dependent else th.randn(4, generator=generator)
        actions = mean + th.randn(B, 4, generator=generator) * 2
        return DiagGaussian(mean, log_std), [Independent(Normal(mean, log_std.exp().expand_as(mean)), 1)], actions
    logits_dim = {"categorical": 6, "multicategorical": sum(NVEC), "bernoulli": 5}[kind]
    logits = th.randn(B, logits_dim, generator=generator) * 3
    if kind == "categorical":
        return Categorical(logits), [TorchCategorical(logits=logits)], th.randint(0, 6, (B,), generator=generator)
    if kind == "multicategorical":
        actions = th.stack([th.randint(0, n, (B,), generator=generator) for n in NVEC], dim=-1)
        return MultiCategorical(logits, NVEC), torch_multicategorical(logits), actions
    actions = th.randint(0, 2, (B, 5), generator=generator).float()
    return Bernoulli(logits), [Independent(TorchBernoulli(logits=logits), 1)], actions


def torch_log_prob(parts, actions):
    if len(parts) > 1:  # multi-categorical: one column per component
        return sum(p.log_prob(a) for p, a in zip(parts, actions.unbind(-1), strict=True))
    return parts[0].log_prob(actions)


KINDS = ["gaussian", "gaussian-state-dependent", "categorical", "multicategorical", "bernoulli"]


def build(kind, seed):
    generator = th.Generator().manual_seed(seed)
    return make(kind.replace("-state-dependent", ""), generator, state_dependent=kind.endswith("state-dependent"))


@pytest.mark.parametrize("kind", KINDS)
def test_log_prob_entropy_and_kl_match_torch_distributions(kind):
    ours, theirs, actions = build(kind, 0)
    th.testing.assert_close(ours.log_prob(actions), torch_log_prob(theirs, actions), rtol=1e-5, atol=1e-5)
    th.testing.assert_close(ours.entropy(), sum(p.entropy() for p in theirs), rtol=1e-5, atol=1e-5)
    other, other_theirs, _ = build(kind, 1)
    expected_kl = sum(kl_divergence(p, q) for p, q in zip(theirs, other_theirs, strict=True))
    th.testing.assert_close(ours.kl(other), expected_kl, rtol=1e-4, atol=1e-5)
    assert ours.log_prob(actions).shape == ours.entropy().shape == (B,)


@pytest.mark.parametrize("kind", KINDS)
def test_params_round_trip(kind):
    ours, _, actions = build(kind, 0)
    space = {
        "gaussian": spaces.Box(-1, 1, (4,)),
        "categorical": spaces.Discrete(6),
        "multicategorical": spaces.MultiDiscrete(NVEC),
        "bernoulli": spaces.MultiBinary(5),
    }[kind.replace("-state-dependent", "")]
    cls = distribution_class(space)
    assert cls is type(ours)
    params = ours.params()
    assert params.shape == (B, cls.param_dim(space))
    restored = cls.from_params(params, space)
    th.testing.assert_close(restored.log_prob(actions), ours.log_prob(actions))
    th.testing.assert_close(restored.kl(ours), th.zeros(B), atol=1e-6, rtol=0)


def test_sampling_with_noise_follows_the_distributions():
    th.manual_seed(0)
    n = 200_000
    logits = th.tensor([[0.0, 1.0, 2.0]]).expand(n, 3)
    counts = th.bincount(Categorical(logits).sample(Categorical.draw_noise((n,), spaces.Discrete(3))), minlength=3) / n
    th.testing.assert_close(counts, th.softmax(logits[0], -1), atol=5e-3, rtol=0)

    gaussian = DiagGaussian(th.zeros(n, 2), th.tensor([-1.0, 0.5]))
    samples = gaussian.sample(DiagGaussian.draw_noise((n,), spaces.Box(-1, 1, (2,))))
    th.testing.assert_close(samples.std(0), th.tensor([math.exp(-1.0), math.exp(0.5)]), atol=1e-2, rtol=0)

    bernoulli_logits = th.tensor([[-2.0, 0.0, 1.5]]).expand(n, 3)
    ones = Bernoulli(bernoulli_logits).sample(Bernoulli.draw_noise((n,), spaces.MultiBinary(3))).mean(0)
    th.testing.assert_close(ones, th.sigmoid(bernoulli_logits[0]), atol=5e-3, rtol=0)

    space = spaces.MultiDiscrete(NVEC)
    multi_logits = th.randn(1, sum(NVEC)).expand(n, sum(NVEC))
    drawn = MultiCategorical(multi_logits, NVEC).sample(MultiCategorical.draw_noise((n,), space))
    assert drawn.shape == (n, len(NVEC)) and drawn.dtype == th.int64
    for column, (component, size) in enumerate(zip(multi_logits[0].split(NVEC), NVEC, strict=True)):
        frequencies = th.bincount(drawn[:, column], minlength=size) / n
        th.testing.assert_close(frequencies, th.softmax(component, -1), atol=5e-3, rtol=0)


def test_modes():
    logits = th.tensor([[0.1, 3.0, -1.0, 0.5, 2.0]])
    assert Categorical(logits).mode().tolist() == [1]
    assert MultiCategorical(logits, (3, 2)).mode().tolist() == [[1, 1]]
    assert Bernoulli(logits).mode().tolist() == [[1.0, 1.0, 0.0, 1.0, 1.0]]
    mean = th.tensor([[0.3, -0.2]])
    assert th.equal(DiagGaussian(mean, th.zeros(2)).get_actions(deterministic=True), mean)


def test_kl_between_different_kinds_is_a_type_error():
    with pytest.raises(TypeError, match="two Categorical batches"):
        Categorical(th.zeros(2, 3)).kl(Bernoulli(th.zeros(2, 3)))


@pytest.mark.parametrize("space", [spaces.Tuple([spaces.Discrete(2)]), spaces.MultiBinary([2, 2]), spaces.Dict({})])
def test_unsupported_action_spaces(space):
    with pytest.raises(TypeError, match="action space"):
        distribution_class(space)


def test_multibinary_log_prob_is_finite_for_saturated_logits():
    logits = th.tensor([[60.0, -60.0]])
    ours = Bernoulli(logits)
    assert np.isfinite(ours.log_prob(th.tensor([[0.0, 1.0]])).item())
    assert np.isfinite(ours.entropy().item())
