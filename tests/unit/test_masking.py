"""Invalid-action masking (sb3_clippedppo.masking) with sb3-contrib's MaskablePPO protocol: the mask layout and its
errors, masked distributions against sb3-contrib's, reading masks from VecEnvs, learn's use_masking rule, predict with
masks, the closed form's masked rollout and one-hot observations, and the options beyond SB3's PPO with masks. The
learning runs (sb3-contrib's tests/test_invalid_actions.py with ClippedPPO) are in tests/slow/test_masking_learning.py;
the update against MaskablePPO.train() in tests/unit/test_sb3_ppo_parity.py; the closed form against autograd with
masks in tests/unit/test_fast_path.py."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from sb3_contrib.common.envs import InvalidActionEnvDiscrete
from sb3_contrib.common.maskable.distributions import (
    MaskableBernoulliDistribution,
    MaskableCategoricalDistribution,
    MaskableMultiCategoricalDistribution,
)
from sb3_contrib.common.wrappers import ActionMasker
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvBox
from stable_baselines3.common.policies import ActorCriticPolicy as SB3ActorCriticPolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.vec_env import VecEnvWrapper, VecNormalize

from sb3_clippedppo import ClippedPPO
from sb3_clippedppo.backends.closed_form.actor import features
from sb3_clippedppo.backends.closed_form.observations import observation_layout
from sb3_clippedppo.distributions import Bernoulli, Categorical, MultiCategorical
from sb3_clippedppo.kl_adaptation import measure_updated_policy
from sb3_clippedppo.masking import MaskReader, check_masks, mask_dim, masked_distribution, offers_masks
from sb3_clippedppo.masking.prediction import masked_predict
from sb3_clippedppo.masking.reading import direct_methods
from tests.envs import masked_envs

SMALL = dict(n_steps=32, batch_size=64, n_epochs=2, seed=0)


def discrete_env(n_envs: int = 4, **kwargs):
    env_kwargs = dict(dim=20, n_invalid_actions=10, **kwargs)
    return make_vec_env(InvalidActionEnvDiscrete, n_envs=n_envs, seed=0, env_kwargs=env_kwargs)


def random_masks(rng: np.random.Generator, sizes: tuple[int, ...], n: int) -> np.ndarray:
    """About half of each component's choices valid, at least one."""
    masks = rng.random((n, sum(sizes))) < 0.5
    for start, size in zip(np.cumsum((0, *sizes[:-1])), sizes, strict=True):
        masks[np.arange(n), start + rng.integers(0, size, n)] = True
    return masks


# ------------------------------------------------------------------------------------------------- layout and errors


def test_mask_layout_is_sb3_contribs():
    assert mask_dim(spaces.Discrete(5)) == 5
    assert mask_dim(spaces.MultiDiscrete([2, 3, 4])) == 9
    assert mask_dim(spaces.MultiBinary(4)) == 8
    with pytest.raises(TypeError, match="Discrete, MultiDiscrete and one-dimensional MultiBinary"):
        mask_dim(spaces.Box(-1, 1, (2,)))


def test_check_masks_accepts_what_maskable_ppo_accepts():
    space = spaces.MultiDiscrete([2, 2])
    expected = np.array([[True, False, True, True], [False, True, True, False]])
    for given in (expected, expected.tolist(), expected.astype(np.int64), expected.astype(np.float32),
                  expected.reshape(2, 2, 2)):  # fmt: skip
        got = check_masks(given, space, n_states=2)
        assert got.dtype == np.bool_ and got.shape == (2, 4)
        np.testing.assert_array_equal(got, expected)
    assert check_masks(expected[0], space).shape == (1, 4)  # one state
    same = expected.copy()
    assert check_masks(same, space, 2).base is same or check_masks(same, space, 2) is same  # no copy for bool


@pytest.mark.parametrize(
    "space, masks, n_states, match",
    [
        (spaces.Discrete(20), np.ones((3, 19), bool), 3, r"shape \(3, 19\) do not fit: expected \(3, 20\)"),
        (spaces.Discrete(20), np.ones((2, 20), bool), 3, r"expected \(3, 20\)"),
        (spaces.MultiDiscrete([3, 4]), np.ones(6, bool), None, r"expected \(B, 7\) \(or \(7,\) for one state\)"),
        (spaces.MultiBinary(3), np.ones((1, 3), bool), 1, r"expected \(1, 6\)"),
        (spaces.Discrete(3), np.array([["a", "b", "c"]]), 1, r"must be booleans, got dtype <U1; expected \(1, 3\)"),
        (spaces.Discrete(3), np.array([[0, 2, 1]]), 1, r"only True/False \(or 1/0\).*expected \(1, 3\)"),
        (spaces.Discrete(3), np.array([[True, True, True], [False, False, False]]), 2, r"no valid action \(state 1\)"),
        (spaces.MultiDiscrete([2, 3]), np.array([[1, 1, 0, 0, 0]]), 1, r"no valid action \(state 0, component 1\)"),
        (spaces.MultiBinary(2), np.array([[1, 1, 0, 0]]), 1, r"no valid action \(state 0, component 1\).*\(1, 4\)"),
    ],
)
def test_wrong_masks_raise_a_value_error_naming_the_expected_shape(space, masks, n_states, match):
    with pytest.raises(ValueError, match=match):
        check_masks(masks, space, n_states)


# -------------------------------------------------------------------------------------------- masked distributions


@pytest.mark.parametrize("kind", ["discrete", "multidiscrete", "multibinary"])
def test_masked_distributions_equal_sb3_contribs(kind):
    """Log-probabilities and entropies (masked entries excluded) of the masked distributions are sb3-contrib's; a sample
    is never a masked action."""
    rng = np.random.default_rng(0)
    n = 64
    if kind == "discrete":
        sizes, logits = (6,), th.randn(n, 6) * 2
        ours, theirs = Categorical(logits), MaskableCategoricalDistribution(6).proba_distribution(logits)
    elif kind == "multidiscrete":
        sizes, logits = (2, 5, 3), th.randn(n, 10) * 2
        ours = MultiCategorical(logits, sizes)
        theirs = MaskableMultiCategoricalDistribution([2, 5, 3]).proba_distribution(logits)
    else:  # our Bernoulli log-odds l are sb3-contrib's two logits (0, l) per bit
        sizes, logits = (2, 2, 2, 2), th.randn(n, 4) * 2
        ours = Bernoulli(logits)
        pairs = th.stack([th.zeros_like(logits), logits], dim=-1).reshape(n, 8)
        theirs = MaskableBernoulliDistribution(4).proba_distribution(pairs)
    masks = random_masks(rng, sizes, n)
    masked = masked_distribution(ours, th.as_tensor(masks))
    theirs.apply_masking(masks)
    actions = masked.sample()
    for draw in (actions, masked.mode(), *(masked.sample() for _ in range(20))):
        chosen = draw.long().reshape(n, -1) + th.as_tensor(np.cumsum((0, *sizes[:-1])))
        assert masks[np.arange(n)[:, None], chosen.numpy()].all()
    th.testing.assert_close(masked.log_prob(actions), theirs.log_prob(actions.long() if kind != "multibinary" else actions))
    th.testing.assert_close(masked.entropy(), theirs.entropy())
    assert not th.allclose(masked.entropy(), ours.entropy())
    # The KL between two batches with the same masks counts only the valid choices: finite, zero for the same logits
    assert th.isfinite(masked.kl(masked_distribution(type(ours).from_params(ours.params() * 0.5, _space(kind)), masks))).all()
    th.testing.assert_close(masked.kl(masked), th.zeros(n), atol=1e-6, rtol=0)


def _space(kind: str) -> spaces.Space:
    spaces_by_kind = {"discrete": spaces.Discrete(6), "multidiscrete": spaces.MultiDiscrete([2, 5, 3])}
    return spaces_by_kind.get(kind, spaces.MultiBinary(4))


def test_masking_a_gaussian_is_refused():
    from sb3_clippedppo.distributions import DiagGaussian

    with pytest.raises(TypeError, match="categorical, multi-categorical and Bernoulli"):
        masked_distribution(DiagGaussian(th.zeros(2, 3), th.zeros(3)), th.ones(2, 3, dtype=th.bool))


# ---------------------------------------------------------------------------------------------------- reading masks


def test_mask_reader_reads_what_env_method_gives():
    env = discrete_env(3)
    env.reset()
    reader = MaskReader(env, env.action_space)
    assert reader.methods is not None  # DummyVecEnv: each environment's method, found once
    np.testing.assert_array_equal(reader(), np.stack(env.env_method("action_masks")))
    assert reader().shape == (3, 20) and reader().dtype == np.bool_
    wrapped = VecNormalize(env, norm_obs=False)  # a VecEnvWrapper that passes env_method through: still direct
    assert direct_methods(wrapped) is not None and offers_masks(wrapped)

    class OwnEnvMethod(VecEnvWrapper):
        def reset(self):
            return self.venv.reset()

        def step_wait(self):
            return self.venv.step_wait()

        def env_method(self, method_name, *args, indices=None, **kwargs):
            return [np.ones(20, bool) for _ in range(self.num_envs)]

    own = OwnEnvMethod(env)
    assert direct_methods(own) is None  # a wrapper that redefines env_method is asked through it
    assert MaskReader(own, env.action_space)().all()
    assert not offers_masks(make_vec_env(IdentityEnv, n_envs=2, env_kwargs=dict(dim=2)))
    assert offers_masks(InvalidActionEnvDiscrete(dim=3)) and not offers_masks(IdentityEnv(dim=3))
    assert offers_masks(ActionMasker(IdentityEnv(dim=3), lambda env: [True, True, False]))


def test_masks_of_the_wrong_shape_from_the_environment():
    env = make_vec_env(lambda: ActionMasker(IdentityEnv(dim=4), lambda _: [True, True]), n_envs=2)
    model = ClippedPPO("MlpPolicy", env, **SMALL)
    with pytest.raises(ValueError, match=r"action masks of shape \(2, 2\) do not fit: expected \(2, 4\)"):
        model.learn(64)
    env = make_vec_env(lambda: ActionMasker(IdentityEnv(dim=4), lambda _: [False] * 4), n_envs=2)
    with pytest.raises(ValueError, match="no valid action"):
        ClippedPPO("MlpPolicy", env, **SMALL).learn(64)


# -------------------------------------------------------------------------------------------------- use_masking rule


def test_use_masking_rule():
    model = ClippedPPO("MlpPolicy", discrete_env(), **SMALL)
    model.learn(128)  # default: the environment offers masks
    assert model.rollout_buffer.keeps_masks and model.rollout_buffer.action_masks.shape == (32, 4, 20)
    assert not model.rollout_buffer.action_masks.all()
    model.learn(128, use_masking=False)
    assert not model.rollout_buffer.keeps_masks
    model.learn(128, use_masking=True)
    assert model.rollout_buffer.keeps_masks

    plain = ClippedPPO("MlpPolicy", make_vec_env(IdentityEnv, n_envs=2, env_kwargs=dict(dim=2)), **SMALL)
    plain.learn(64)  # no masks offered: nothing changes (MaskablePPO would raise)
    assert not plain.rollout_buffer.keeps_masks
    with pytest.raises(ValueError, match="does not offer action_masks.*ActionMasker"):
        plain.learn(64, use_masking=True)

    box = make_vec_env(lambda: ActionMasker(IdentityEnvBox(), lambda _: [True]), n_envs=2)
    with pytest.raises(ValueError, match="needs Discrete, MultiDiscrete or MultiBinary actions"):
        ClippedPPO("MlpPolicy", box, **SMALL).learn(32, use_masking=True)
    ClippedPPO("MlpPolicy", box, **SMALL).learn(32)  # auto: a Box action has nothing to mask


def test_a_policy_without_distributions_cannot_mask():
    with pytest.warns(UserWarning, match="not used: action masks need a policy that offers"):
        ClippedPPO(SB3ActorCriticPolicy, discrete_env(), **SMALL).learn(32)
    model = ClippedPPO(SB3ActorCriticPolicy, discrete_env(), **SMALL)
    with pytest.raises(ValueError, match="use_masking=True: action masks need a policy"):
        model.learn(32, use_masking=True)
    model.learn(32, use_masking=False)
    with pytest.raises(ValueError, match="action_masks need a policy"):
        model.predict(np.zeros(4, dtype=np.int64), action_masks=np.ones((4, 20), bool))


# ----------------------------------------------------------------------------------------------------------- predict


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "autograd"])
@pytest.mark.parametrize("make", masked_envs(15, 5, 3))
def test_predict_never_returns_a_masked_action(make, fast_path):
    env = make_vec_env(make, n_envs=2, seed=0)
    if fast_path and isinstance(env.action_space, spaces.MultiBinary):
        pytest.skip("MultiBinary actions train through autograd")
    model = ClippedPPO("MlpPolicy", env, fast_path=fast_path, **SMALL)
    model.learn(64)
    rng = np.random.default_rng(1)
    sizes = (2,) * env.action_space.n if isinstance(env.action_space, spaces.MultiBinary) else None
    sizes = sizes or tuple(np.atleast_1d(getattr(env.action_space, "nvec", getattr(env.action_space, "n", None))))
    obs = np.stack([env.observation_space.sample() for _ in range(50)])
    masks = random_masks(rng, sizes, 50)
    offsets = np.cumsum((0, *sizes[:-1]))
    for deterministic in (True, False):
        for _ in range(5):
            actions, state = model.predict(obs, deterministic=deterministic, action_masks=masks)
            assert state is None and actions.shape == (50, *env.action_space.shape)
            chosen = actions.astype(np.int64).reshape(50, -1) + offsets
            assert masks[np.arange(50)[:, None], chosen].all()
        one, _ = model.predict(obs[0], deterministic=deterministic, action_masks=masks[0])
        assert one.shape == env.action_space.shape
    # The fast path's NumPy actor and the policy's masked torch distributions agree
    actions, _ = model.predict(obs, deterministic=True, action_masks=masks)
    np.testing.assert_array_equal(actions, masked_predict(model.policy, obs, masks, True))
    with pytest.raises(ValueError, match=rf"expected \(50, {masks.shape[1]}\)"):
        model.predict(obs, deterministic=True, action_masks=masks[:3])
    with pytest.raises(ValueError, match="no valid action"):
        model.predict(obs, deterministic=True, action_masks=np.zeros_like(masks))


def test_a_model_that_learned_without_masks_predicts_with_them():
    model = ClippedPPO("MlpPolicy", make_vec_env(IdentityEnv, n_envs=2, env_kwargs=dict(dim=5)), **SMALL)
    model.learn(64)
    actions, _ = model.predict(np.arange(5), deterministic=True, action_masks=np.eye(5, dtype=bool)[::-1])
    np.testing.assert_array_equal(actions, [4, 3, 2, 1, 0])


# --------------------------------------------------------------------------------------------- fast path and options


@pytest.mark.parametrize("space", [spaces.Discrete(7), spaces.MultiDiscrete([3, 2, 4]), spaces.MultiBinary(5),
                                   spaces.MultiBinary((2, 3))])  # fmt: skip
@pytest.mark.parametrize("xp", [np, th], ids=["numpy", "torch"])
def test_closed_form_preprocesses_observations_as_sb3(space, xp):
    """One-hot (Discrete, MultiDiscrete) and flattened (MultiBinary) network inputs, as preprocess_obs and FlattenExtractor
    give them."""
    space.seed(0)
    obs = np.stack([np.asarray(space.sample()) for _ in range(16)])
    layout = observation_layout(space)
    assert not isinstance(layout, str)
    stored = obs.reshape(16, 1) if isinstance(space, spaces.Discrete) else obs  # the buffer's layout
    expected = preprocess_obs(th.as_tensor(stored), space).reshape(16, -1).numpy()
    got = features(stored if xp is np else th.as_tensor(stored), layout, xp, None)
    assert got.dtype in (np.float32, th.float32) and tuple(got.shape) == (16, layout.dim)
    np.testing.assert_array_equal(np.asarray(got), expected)


def test_masked_rollout_is_the_same_on_both_backends():
    """The closed form's NumPy actor draws the same masked actions as autograd's policy (the same noise), and gives the
    same log-probabilities; the fast path applies to sb3-contrib's masked environments (Discrete observations)."""
    buffers = []
    for fast_path in (True, False):
        model = ClippedPPO("MlpPolicy", discrete_env(), fast_path=fast_path, **SMALL)
        assert model.uses_fast_path is fast_path
        _, callback = model._setup_learn(128, None)
        model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
        buffers.append(model.rollout_buffer)
    fast, slow = buffers
    np.testing.assert_array_equal(fast.action_masks, slow.action_masks)
    np.testing.assert_array_equal(fast.actions, slow.actions)
    np.testing.assert_allclose(fast.log_probs, slow.log_probs, rtol=1e-5, atol=1e-5)
    masks = fast.action_masks.reshape(-1, 20)
    assert masks[np.arange(len(masks)), fast.actions.reshape(-1)].all()


class MaskedCartPole(gym.Wrapper):
    """CartPole (Box observations) with a mask: pushing right is invalid at odd steps."""

    def __init__(self):
        super().__init__(gym.make("CartPole-v1"))
        self.steps = 0

    def reset(self, **kwargs):
        self.steps = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        assert self.steps % 2 == 0 or action == 0, "a masked action was taken"
        self.steps += 1
        return self.env.step(action)

    def action_masks(self):
        return [True, self.steps % 2 == 0]


@pytest.mark.parametrize("options", [
    dict(policy_objective="kl_penalty"),
    dict(kl_adaptive_lr=True, target_kl=0.02),
    dict(recompute_advantages=True),
    dict(policy_kwargs=dict(normalize_observations=True)),
    dict(policy_objective="kl_penalty", fast_path=False),
], ids=["kl-penalty", "kl-adaptive-lr", "recompute-advantages", "normalize-observations", "kl-penalty-autograd"])  # fmt: skip
def test_options_beyond_sb3_ppo_work_with_masks(options):
    """Every option beyond SB3's PPO trains with masks: the environment asserts that no masked action is taken, and the
    exact KL after an update (PPO-Penalty, kl_adaptive_lr) is between masked distributions (finite)."""
    model = ClippedPPO("MlpPolicy", make_vec_env(MaskedCartPole, n_envs=2, seed=0), **{**SMALL, **options})
    model.learn(128)
    assert model.rollout_buffer.keeps_masks
    assert model.uses_fast_path is options.get("fast_path", True)
    if model.rollout_buffer.keeps_distributions:  # the rollout policy's masked logits, against the updated policy's
        assert model.rollout_buffer.old_distributions.min() <= -1e7
        kl, _ = measure_updated_policy(model.policy, model.rollout_buffer)
        assert np.isfinite(kl) and 0 <= kl < 1.0


def test_masking_is_core_level():
    """sb3_clippedppo/masking/ imports neither the algorithm, the backends, the integrations nor the policies (which
    import it); the algorithm's rollout (on_policy) and the closed form import it (docs/algorithm.md, "Layout")."""
    from tests.unit.test_layers import MODULES, imported, within

    masking = [module for module in MODULES if within(module, "sb3_clippedppo.masking")]
    assert len(masking) == 5
    for module in masking:
        layers_above = ("backends", "clipped_ppo", "on_policy", "integrations", "policies", "arguments", "kl_adaptation")
        above = [i for i in imported(module) if any(within(i, f"sb3_clippedppo.{name}") for name in layers_above)]
        assert not above, f"{module} imports {above}"
    assert any(within(i, "sb3_clippedppo.masking") for i in imported("sb3_clippedppo.on_policy"))
    assert any(within(i, "sb3_clippedppo.masking") for i in imported("sb3_clippedppo.backends.closed_form.backend"))


def test_a_masked_model_saves_loads_and_predicts_with_masks(tmp_path):
    model = ClippedPPO("MlpPolicy", discrete_env(2), **SMALL)
    model.learn(64, use_masking=True)
    model.save(tmp_path / "masked.zip")
    loaded = ClippedPPO.load(tmp_path / "masked.zip", env=discrete_env(2))
    assert loaded.use_masking is True and loaded.uses_fast_path
    obs, masks = np.arange(2), np.stack([np.eye(20, dtype=bool)[3], np.eye(20, dtype=bool)[17]])
    for predictor in (model, loaded):
        np.testing.assert_array_equal(predictor.predict(obs, deterministic=True, action_masks=masks)[0], [3, 17])
    loaded.learn(64)  # and trains on, masked
    assert loaded.rollout_buffer.keeps_masks


def test_callbacks_find_the_steps_masks_in_locals():
    """As with MaskablePPO, a callback finds the step's masks in locals["action_masks"]."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Record(BaseCallback):
        def __init__(self):
            super().__init__()
            self.seen = []

        def _on_step(self):
            self.seen.append(self.locals["action_masks"])
            return True

    record = Record()
    ClippedPPO("MlpPolicy", discrete_env(), **SMALL).learn(32 * 4, callback=record)
    assert len(record.seen) == 32 and all(m.shape == (4, 20) and m.dtype == np.bool_ for m in record.seen)
