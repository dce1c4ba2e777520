"""The fast path (sb3_clippedppo.backends.closed_form): closed-form gradients against autograd on the same minibatches,
where it applies, flat parameter storage, optimizer state across storages, and whole training runs against autograd."""

import copy

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from torch import nn

from sb3_clippedppo import ClippedPPO
from sb3_clippedppo.backends.autograd import ppo_loss
from sb3_clippedppo.backends.closed_form import ClosedFormBackend, backend, closed_form_networks
from sb3_clippedppo.backends.closed_form.mlp import mlp_layers
from sb3_clippedppo.backends.closed_form.parameters import FlatParameters
from sb3_clippedppo.buffers import RolloutBatch
from sb3_clippedppo.losses import LossCoefficients, normalize_advantages
from sb3_clippedppo.policies import ActorCriticPolicy
from sb3_clippedppo.saving import regroup_optimizer_state

OBS = spaces.Box(-np.inf, np.inf, (7,), np.float32)
BOX = spaces.Box(-1.0, 1.0, (3,), np.float32)
DISCRETE = spaces.Discrete(4)


def make_policy(action_space=BOX, **kwargs) -> ActorCriticPolicy:
    return ActorCriticPolicy(OBS, action_space, lambda _: 1e-3, **kwargs)


def make_batch(policy: ActorCriticPolicy, n: int, seed: int) -> RolloutBatch:
    """A minibatch whose ratios spread well beyond 1 +- clip_range, and whose values beyond +- clip_range_vf."""
    gen = th.Generator().manual_seed(seed)
    obs = th.randn(n, 7, generator=gen) * 2
    with th.no_grad():
        distribution, values = policy.forward_distribution(obs)
        noise = policy.distribution_class.draw_noise((n,), policy.action_space)
        actions = distribution.sample(noise)
        log_prob = distribution.log_prob(actions)
    old_log_prob = log_prob + 0.4 * th.randn(n, generator=gen)  # ratios from about 0.4 to 2.5
    old_values = values + 0.3 * th.randn(n, generator=gen)
    returns = values + th.randn(n, generator=gen)
    advantages = th.randn(n, generator=gen)
    old_distribution = distribution.params().detach() + 0.3 * th.randn(n, distribution.params().shape[1], generator=gen)
    return RolloutBatch(obs, actions, old_values, old_log_prob, advantages, returns, old_distribution)


def closed_form(policy: ActorCriticPolicy) -> ClosedFormBackend:
    """The closed-form backend of a policy it applies to, prepared for an update."""
    networks = closed_form_networks(policy, "clip")
    assert not isinstance(networks, str), networks
    built = ClosedFormBackend(policy, networks)
    built.prepare()
    return built


@pytest.fixture(params=[np, th], ids=["numpy", "torch"])
def arithmetic(request, monkeypatch):
    """Both libraries of the closed form's arithmetic on the CPU (torch's is the one a GPU runs)."""
    monkeypatch.setattr(backend, "arithmetic_module", lambda device: request.param)
    return request.param


def gradients(policy: ActorCriticPolicy) -> th.Tensor:
    return th.cat([p.grad.reshape(-1) for p in policy.parameters()]).clone()


def assert_closed_form_matches(policy, batch, advantages, coefficients, reference, expected, arithmetic):
    """The closed form's loss terms equal autograd's (``reference``) and its gradients ``expected``; returns the closed
    form's context (its per-sample quantities)."""
    fast = closed_form(policy)
    assert fast.xp is arithmetic
    for p in policy.parameters():
        p.grad.fill_(123.0)  # backward overwrites every gradient
    terms, context = fast.loss(batch, advantages, coefficients)
    fast.backward(context)
    for name in ("policy_loss", "value_loss", "entropy_loss", "loss", "approx_kl", "clip_fraction"):
        got = th.as_tensor(np.asarray(getattr(terms, name)))
        th.testing.assert_close(got, getattr(reference, name).detach().to(got.dtype), rtol=1e-5, atol=1e-6)
    th.testing.assert_close(gradients(policy), expected, rtol=1e-4, atol=1e-6)
    return context


@pytest.mark.parametrize("action_space", [BOX, DISCRETE], ids=["gaussian", "categorical"])
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
@pytest.mark.parametrize("objective", ["clip", "kl_penalty"])
def test_closed_form_gradients_match_autograd(
    action_space, activation, net_arch, clip_range_vf, normalize, objective, arithmetic
):
    th.manual_seed(0)
    policy = make_policy(action_space, net_arch=net_arch, activation_fn=activation, ortho_init=False, log_std_init=-0.5)
    batch = make_batch(policy, n=64, seed=1)
    advantages = normalize_advantages(batch.advantages) if normalize else batch.advantages
    clip_range, ent_coef, vf_coef, kl_coef = 0.2, 0.01, 0.7, 3.0
    coefficients = LossCoefficients(clip_range, clip_range_vf, ent_coef, vf_coef, objective, kl_coef)

    policy.optimizer.zero_grad(set_to_none=False)
    reference = ppo_loss(policy, batch, advantages, coefficients)
    reference.loss.backward()
    expected = gradients(policy)

    context = assert_closed_form_matches(policy, batch, advantages, coefficients, reference, expected, arithmetic)
    # The batch exercises clipping in both directions
    ratio = context.evaluation.ratio
    assert (ratio > 1 + clip_range).any() and (ratio < 1 - clip_range).any()


MULTI_DISCRETE = spaces.MultiDiscrete([3, 4, 2])


def make_masked_batch(policy: ActorCriticPolicy, n: int, seed: int) -> RolloutBatch:
    """A minibatch of make_batch's kind with action masks (about 40% of the choices invalid, at least one valid per
    component), actions drawn from the masked distributions, and the rollout policy's masked logits."""
    from sb3_clippedppo.masking import component_sizes, masked_distribution, masked_logits

    batch = make_batch(policy, n, seed)
    rng = np.random.default_rng(seed)
    sizes = component_sizes(policy.action_space)
    masks = rng.random((n, sum(sizes))) < 0.6
    starts = np.cumsum((0, *sizes[:-1]))
    for start, size in zip(starts, sizes, strict=True):
        masks[np.arange(n), start + rng.integers(0, size, n)] = True
    masks = th.as_tensor(masks)
    with th.no_grad():
        distribution = masked_distribution(policy.forward_distribution(batch.observations)[0], masks)
        actions = distribution.sample(policy.distribution_class.draw_noise((n,), policy.action_space))
        log_prob = distribution.log_prob(actions)
    gen = th.Generator().manual_seed(seed)
    old_distribution = masked_logits(batch.old_distribution, masks)
    return batch._replace(actions=actions, old_log_prob=log_prob + 0.4 * th.randn(n, generator=gen),
                          old_distribution=old_distribution, action_masks=masks)  # fmt: skip


def test_masked_closed_form_gradients_match_autograd(
    action_space, activation, net_arch, clip_range_vf, normalize, objective, arithmetic
):
    """Invalid-action masking (sb3_clippedppo.masking) on the grid of test_closed_form_gradients_match_autograd, with
    Discrete and MultiDiscrete actions: the closed form's loss terms and gradients are autograd's."""
    th.manual_seed(0)
    policy = make_policy(action_space, net_arch=net_arch, activation_fn=activation, ortho_init=False)
    batch = make_masked_batch(policy, n=64, seed=1)
    advantages = normalize_advantages(batch.advantages) if normalize else batch.advantages
    coefficients = LossCoefficients(0.2, clip_range_vf, 0.01, 0.7, objective, 3.0)

    policy.optimizer.zero_grad(set_to_none=False)
    reference = ppo_loss(policy, batch, advantages, coefficients)
    reference.loss.backward()
    expected = gradients(policy)
    unmasked = ppo_loss(policy, batch._replace(action_masks=None), advantages, coefficients)
    assert abs(float(unmasked.entropy_loss) - float(reference.entropy_loss)) > 1e-3  # the masks change the loss

    assert_closed_form_matches(policy, batch, advantages, coefficients, reference, expected, arithmetic)


# The grid of test_closed_form_gradients_match_autograd, with masked Discrete and MultiDiscrete actions
test_masked_closed_form_gradients_match_autograd.pytestmark = [  # type: ignore[attr-defined]
    *(mark for mark in test_closed_form_gradients_match_autograd.pytestmark if mark.args[0] != "action_space"),
    pytest.mark.parametrize("action_space", [DISCRETE, MULTI_DISCRETE], ids=["categorical", "multi-categorical"]).mark,
]


@pytest.mark.parametrize("action_space", [BOX, DISCRETE], ids=["gaussian", "categorical"])
def test_clip_boundaries_and_ties_follow_autograd(action_space):
    """Ratios exactly at 1 and at the clip boundaries: the gradient mask agrees with torch's min/clamp conventions."""
    th.manual_seed(0)
    policy = make_policy(action_space, net_arch=[16], ortho_init=False)
    batch = make_batch(policy, n=6, seed=2)
    with th.no_grad():
        _, log_prob, _ = policy.evaluate_actions(batch.observations, batch.actions)
    # Old log-probs giving ratios 1, 1.2, 0.8 (up to float rounding), with both signs of advantage
    old = log_prob - th.log(th.tensor([1.0, 1.2, 0.8, 1.0, 1.2, 0.8]))
    batch = batch._replace(old_log_prob=old, advantages=th.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0]))
    policy.optimizer.zero_grad(set_to_none=False)
    ppo_loss(policy, batch, batch.advantages, LossCoefficients(0.2, None, 0.0, 0.5)).loss.backward()
    expected = gradients(policy)
    fast = closed_form(policy)
    fast.backward(fast.loss(batch, batch.advantages, LossCoefficients(0.2, None, 0.0, 0.5))[1])
    th.testing.assert_close(gradients(policy), expected, rtol=1e-4, atol=1e-6)


class OwnExtractor(ActorCriticPolicy):
    def extract_features(self, obs, features_extractor=None):
        return super().extract_features(obs, features_extractor)


@pytest.mark.parametrize(
    "make, objective, reason",
    [
        (lambda: make_policy(), "clip", None),
        (lambda: make_policy(DISCRETE, activation_fn=nn.ReLU), "clip", None),
        (lambda: make_policy(optimizer_class=th.optim.SGD), "clip", None),
        (lambda: make_policy(DISCRETE), "kl_penalty", None),
        (lambda: make_policy(), "adaptive", "policy_objective='adaptive'"),
        (lambda: make_policy(spaces.MultiDiscrete([2, 3])), "clip", None),
        (lambda: make_policy(spaces.MultiDiscrete([[2, 3], [3, 2]])), "clip", "only Box actions"),
        (lambda: make_policy(spaces.MultiBinary(3)), "clip", "only Box actions"),
        (lambda: make_policy(state_dependent_std=True), "clip", "state-independent log_std"),
        (lambda: make_policy(activation_fn=nn.GELU), "clip", "Tanh, ReLU, LeakyReLU or ELU"),
        (lambda: make_policy(optimizer_class=th.optim.Adafactor), "clip", "Adafactor is not known to update each element"),
        (lambda: OwnExtractor(OBS, BOX, lambda _: 1e-3), "clip", "OwnExtractor overrides extract_features"),
        (lambda: ActorCriticPolicy(spaces.Box(0, 255, (36, 36, 1), np.uint8), BOX, lambda _: 1e-3), "clip", "non-image"),
        (lambda: ActorCriticPolicy(spaces.Discrete(5), BOX, lambda _: 1e-3), "clip", None),
    ],
)
def test_where_the_fast_path_applies(make, objective, reason):
    got = closed_form_networks(make(), objective)
    if reason is None:
        assert not isinstance(got, str), got
    else:
        assert isinstance(got, str) and reason in got


def test_fast_path_argument():
    env = make_vec_env("Pendulum-v1", n_envs=1)
    assert ClippedPPO("MlpPolicy", env, n_steps=64, batch_size=32).uses_fast_path
    plain = ClippedPPO("MlpPolicy", env, n_steps=64, batch_size=32, fast_path=False)
    assert not plain.uses_fast_path
    # Without the fast path, the optimizer holds the policy's own parameter tensors (two groups, as with it)
    assert [len(g["params"]) for g in plain.policy.optimizer.param_groups] == [7, 6]
    assert ClippedPPO("MlpPolicy", env, n_steps=64, batch_size=32, policy_objective="kl_penalty").uses_fast_path
    sds = dict(policy_kwargs=dict(state_dependent_std=True))
    assert not ClippedPPO("MlpPolicy", env, n_steps=64, batch_size=32, **sds).uses_fast_path
    with pytest.raises(ValueError, match=r"fast_path=True, but the fast path does not apply: .*state-independent"):
        ClippedPPO("MlpPolicy", env, n_steps=64, batch_size=32, fast_path=True, **sds)
    auto = ClippedPPO("MlpPolicy", env, n_steps=64, batch_size=32, **sds)
    assert "state-independent" in auto.fast_path_reason and not auto.uses_fast_path


def test_mlp_layers():
    head = nn.Linear(4, 2)
    layers = mlp_layers(nn.Sequential(nn.Linear(3, 4), nn.Tanh()), head)
    assert [type(act) for _, act in layers] == [nn.Tanh, type(None)] and layers[-1][0] is head
    assert mlp_layers(nn.Sequential(), head) == [(head, None)]
    assert mlp_layers(nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True)), head) is None
    assert mlp_layers(nn.Sequential(nn.Linear(3, 4), nn.Dropout()), head) is None
    assert mlp_layers(nn.Sequential(nn.Linear(3, 4, bias=False), nn.Tanh()), head) is None
    assert mlp_layers(nn.Linear(3, 4), head) is None
    assert len(mlp_layers(nn.Sequential(nn.Linear(3, 4)), head)) == 2  # two Linear layers without an activation


def test_backward_takes_its_own_loss_context():
    policy = make_policy()
    batch = make_batch(policy, n=8, seed=3)
    coefficients = LossCoefficients(0.2, None, 0.0, 0.5)
    with pytest.raises(TypeError, match="takes the context of its own loss"):
        closed_form(policy).backward(ppo_loss(policy, batch, batch.advantages, coefficients).loss)


def test_parameters_and_gradients_live_in_flat_buffers():
    policy = make_policy()
    flat = FlatParameters(policy)
    assert flat.intact()
    assert flat.data.numel() == sum(p.numel() for p in policy.parameters())
    # The optimizer sees one flat tensor per group: the actor's (with log_std) and the critic's
    assert [g["name"] for g in policy.optimizer.param_groups] == ["actor", "critic"]
    assert [len(g["params"]) for g in policy.optimizer.param_groups] == [1, 1]
    values, log_prob, entropy = policy.evaluate_actions(th.randn(10, 7), th.randn(10, 3))
    (values.sum() + log_prob.sum() + entropy.sum()).backward()
    assert flat.grad.abs().sum() > 0  # autograd accumulated into the flat buffer through the views
    th.testing.assert_close(flat.grad, th.cat([p.grad.reshape(-1) for p in flat.params]))
    before = [p.detach().clone() for p in policy.parameters()]
    policy.optimizer.step()
    assert all(not th.equal(a, b) for a, b in zip(before, policy.parameters(), strict=True))


def test_flat_buffers_are_restored_after_they_break():
    policy = make_policy()
    flat = FlatParameters(policy)
    policy.evaluate_actions(th.randn(10, 7), th.randn(10, 3))[0].sum().backward()
    policy.optimizer.step()
    state_before = copy.deepcopy(policy.optimizer.state_dict())

    for breaker in (
        lambda p: p.optimizer.zero_grad(set_to_none=True),
        lambda p: setattr(p.action_net.weight, "data", p.action_net.weight.data.clone()),
        lambda p: p.load_from_vector(p.parameters_to_vector() + 1.0),
    ):
        breaker(policy)
        values_before = [p.detach().clone() for p in policy.parameters()]
        assert not flat.intact()
        flat.ensure()
        assert flat.intact()
        for a, b in zip(values_before, policy.parameters(), strict=True):
            th.testing.assert_close(a, b)
    state_after = policy.optimizer.state_dict()
    for group_index in (0, 1):
        for key, value in state_before["state"][group_index].items():
            th.testing.assert_close(value, state_after["state"][group_index][key])


def test_optimizer_state_regroups_between_flat_and_per_tensor_storage():
    policy = make_policy(DISCRETE)
    values, log_prob, _ = policy.evaluate_actions(th.randn(10, 7), th.randint(0, 4, (10,)))
    (values.sum() + log_prob.sum()).backward()
    policy.optimizer.step()
    per_tensor = copy.deepcopy(policy.optimizer.state_dict())
    FlatParameters(policy)  # carries the state over by regrouping it
    flat_state = policy.optimizer.state_dict()
    assert len(flat_state["state"]) == 2
    fresh = make_policy(DISCRETE)
    fresh_groups = [group["params"] for group in fresh.optimizer.param_groups]
    back = regroup_optimizer_state(flat_state, fresh_groups)
    fresh.optimizer.load_state_dict(back)
    for index, entry in per_tensor["state"].items():
        for key, value in entry.items():
            th.testing.assert_close(fresh.optimizer.state_dict()["state"][index][key], value)
    assert regroup_optimizer_state(flat_state, [group["params"] for group in policy.optimizer.param_groups]) is flat_state
    with pytest.raises(ValueError, match="parameter groups"):
        regroup_optimizer_state({**flat_state, "param_groups": flat_state["param_groups"][:1]}, fresh_groups)


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        ("Pendulum-v1", dict(ent_coef=0.01, clip_range_vf=0.3, target_kl=0.05, policy_kwargs=dict(activation_fn=nn.ReLU))),
        ("CartPole-v1", dict(ent_coef=0.01, learning_rate=1e-3)),
        ("Pendulum-v1", dict(policy_objective="kl_penalty", kl_coef=2.0, kl_adaptive_lr=True, target_kl=0.02)),
        ("CartPole-v1", dict(policy_objective="kl_penalty", vf_learning_rate=3e-3)),
    ],
    ids=["pendulum-clip", "cartpole-clip", "pendulum-kl-penalty", "cartpole-kl-penalty"],
)
def test_fast_path_and_autograd_train_alike(env_id, kwargs):
    """Whole runs with n_envs=4, same seed: the same actions (same noise), the same updates, to float32 rounding."""

    def train(fast_path):
        model = ClippedPPO("MlpPolicy", make_vec_env(env_id, n_envs=4, seed=0), n_steps=64, batch_size=64, n_epochs=3,
                           seed=0, fast_path=fast_path, **kwargs)  # fmt: skip
        assert model.uses_fast_path is fast_path
        model.learn(1024)
        return model.policy.parameters_to_vector()

    fast, plain = train(True), train(False)
    with pytest.MonkeyPatch.context() as patch:  # the fast path's arithmetic in torch, as on a GPU
        patch.setattr(backend, "arithmetic_module", lambda device: th)
        fast_torch = train(True)
    initial = ClippedPPO("MlpPolicy", make_vec_env(env_id, n_envs=4), n_steps=64, seed=0, **kwargs)
    assert np.abs(fast - initial.policy.parameters_to_vector()).max() > 1e-3  # they did train
    np.testing.assert_allclose(fast, plain, rtol=0, atol=1e-5)
    np.testing.assert_allclose(fast_torch, plain, rtol=0, atol=1e-5)
