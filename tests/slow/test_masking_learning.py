"""sb3-contrib's MaskablePPO tests (tests/test_invalid_actions.py) with ClippedPPO in MaskablePPO's place: learning on
its InvalidActionEnvDiscrete / MultiDiscrete / MultiBinary, its evaluate_policy and MaskableEvalCallback with a
ClippedPPO model, VecEnvs (SubprocVecEnv included), CNN and Dict observations. Where MaskablePPO raises for an
environment without masks, ClippedPPO trains unmasked (use_masking's default is "when the environment offers masks");
use_masking=True raises as MaskablePPO does. Written for this package, not copied."""

import random

import gymnasium as gym
import numpy as np
import pytest
from sb3_contrib.common.envs import InvalidActionEnvDiscrete, InvalidActionEnvMultiBinary, InvalidActionEnvMultiDiscrete
from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback
from sb3_contrib.common.maskable.evaluation import evaluate_policy
from sb3_contrib.common.maskable.utils import is_masking_supported
from sb3_contrib.common.wrappers import ActionMasker
from stable_baselines3.common.callbacks import EventCallback, StopTrainingOnNoModelImprovement
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv, IdentityEnv
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import SubprocVecEnv

from sb3_clippedppo import ClippedPPO
from tests.envs import masked_envs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_env():
    return InvalidActionEnvDiscrete(dim=20, n_invalid_actions=10)


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "autograd"])
def test_identity_is_learned_with_masks(fast_path):
    """sb3-contrib's performance test: 70 actions, 55 invalid at each step; a random policy scores about 6, an unmasked
    one about 30 with this budget; masked learning reaches 90."""
    env = InvalidActionEnvDiscrete(dim=70, n_invalid_actions=55)
    model = ClippedPPO("MlpPolicy", env, gamma=0.4, seed=32, fast_path=fast_path)
    assert model.uses_fast_path is fast_path
    model.learn(3000)
    evaluate_policy(model, env, n_eval_episodes=20, reward_threshold=90, warn=False)


@pytest.mark.parametrize(
    "make, threshold",
    [
        (lambda: InvalidActionEnvMultiDiscrete(dims=[10, 10], n_invalid_actions=14), 90),
        (lambda: InvalidActionEnvMultiBinary(dims=8, n_invalid_actions=4), 60),
    ],
    ids=["multidiscrete", "multibinary"],
)
def test_multi_component_identities_are_learned_with_masks(make, threshold):
    """The same kind of check on MultiDiscrete (fast path) and MultiBinary (autograd) actions: an episode's return is
    the number of steps whose whole action is the observation."""
    env = make()
    model = ClippedPPO("MlpPolicy", env, gamma=0.4, seed=32, n_steps=512, learning_rate=1e-3)
    model.learn(6000)
    evaluate_policy(model, env, n_eval_episodes=10, reward_threshold=threshold, warn=False)


def test_bootstrapping():
    env = gym.wrappers.TimeLimit(InvalidActionEnvDiscrete(dim=20, n_invalid_actions=10), 30)
    model = ClippedPPO("MlpPolicy", env, n_steps=64, seed=8)
    model.learn(128)
    assert model.rollout_buffer.keeps_masks


@pytest.mark.parametrize(
    "make, make_all_but_one_invalid",
    [
        (lambda: InvalidActionEnvDiscrete(dim=20, n_invalid_actions=10),
         lambda: InvalidActionEnvDiscrete(dim=20, n_invalid_actions=19)),
        (lambda: InvalidActionEnvMultiDiscrete(dims=[2, 3], n_invalid_actions=1),
         lambda: InvalidActionEnvMultiDiscrete(dims=[2, 3], n_invalid_actions=3)),
        (lambda: InvalidActionEnvMultiBinary(dims=3, n_invalid_actions=1),
         lambda: InvalidActionEnvMultiBinary(dims=3, n_invalid_actions=3)),
    ],
    ids=["discrete", "multidiscrete", "multibinary"],
)  # fmt: skip
def test_supports_action_space(make, make_all_but_one_invalid):
    env = make()
    model = ClippedPPO("MlpPolicy", env, n_steps=64, seed=8)
    model.learn(100)
    evaluate_policy(model, env, warn=False)
    # Only the right action valid: an untrained model scores (nearly) every step
    env = make_all_but_one_invalid()
    model = ClippedPPO("MlpPolicy", env, seed=8)
    evaluate_policy(model, env, reward_threshold=99, warn=False)


def test_disabling_masking():
    env = InvalidActionEnvDiscrete(dim=20, n_invalid_actions=19)
    model = ClippedPPO("MlpPolicy", env, seed=8)
    evaluate_policy(model, env, reward_threshold=99, warn=False)
    with pytest.raises(AssertionError):  # without masks, the perfect score is gone
        evaluate_policy(model, env, reward_threshold=99, warn=False, use_masking=False)

    env = IdentityEnv(dim=2)
    model = ClippedPPO("MlpPolicy", env, n_steps=64, seed=8)
    with pytest.raises(ValueError):  # MaskablePPO's default; ClippedPPO's when asked for
        model.learn(100, use_masking=True)
    with pytest.raises(ValueError):
        evaluate_policy(model, env, warn=False)
    model.learn(100)  # the default trains unmasked where the environment offers no masks
    model.learn(100, use_masking=False)
    evaluate_policy(model, env, warn=False, use_masking=False)


def test_masked_evaluation():
    env = InvalidActionEnvDiscrete(dim=20, n_invalid_actions=19)
    model = ClippedPPO("MlpPolicy", env, seed=8)
    masked_mean, _ = evaluate_policy(model, env, warn=False)
    unmasked_mean, _ = evaluate_policy(model, env, warn=False, use_masking=False)
    assert masked_mean > unmasked_mean


@pytest.mark.parametrize("vec_env_cls", [None, SubprocVecEnv], ids=["dummy", "subproc"])
def test_supports_multi_envs(vec_env_cls):
    env = make_vec_env(make_env, n_envs=2, vec_env_cls=vec_env_cls)
    assert is_masking_supported(env)
    model = ClippedPPO("MlpPolicy", env, n_steps=256, gamma=0.4, seed=32)
    model.learn(100)
    assert model.rollout_buffer.keeps_masks and not model.rollout_buffer.action_masks.all()
    evaluate_policy(model, env, warn=False)

    env = make_vec_env(IdentityEnv, n_envs=2, env_kwargs={"dim": 2}, vec_env_cls=vec_env_cls)
    assert not is_masking_supported(env)
    model = ClippedPPO("MlpPolicy", env, n_steps=256, gamma=0.4, seed=32)
    with pytest.raises(ValueError):
        model.learn(100, use_masking=True)
    with pytest.raises(ValueError):
        evaluate_policy(model, env, warn=False)
    model.learn(100, use_masking=False)
    evaluate_policy(model, env, warn=False, use_masking=False)
    env.close()


def test_callback(tmp_path):
    eval_env = make_env()
    model = ClippedPPO("MlpPolicy", make_env(), n_steps=64, gamma=0.4, seed=32, verbose=1)
    model.learn(100, callback=MaskableEvalCallback(eval_env, eval_freq=100, warn=False, log_path=tmp_path))
    assert (tmp_path / "evaluations.npz").is_file()
    model.learn(100, callback=MaskableEvalCallback(Monitor(eval_env), eval_freq=100, warn=False), progress_bar=True)


def test_child_callback():
    model = ClippedPPO("MlpPolicy", make_env(), n_steps=64, n_epochs=1)
    stop_callback = StopTrainingOnNoModelImprovement(1, 2)
    new_best_mean_callback = EventCallback()
    eval_callback = MaskableEvalCallback(
        Monitor(make_env()), eval_freq=64, callback_after_eval=stop_callback, callback_on_new_best=new_best_mean_callback
    )
    model.learn(128, callback=eval_callback)
    assert new_best_mean_callback.n_calls > 0
    assert stop_callback.n_calls > 0
    assert stop_callback.n_calls >= new_best_mean_callback.n_calls


def test_cnn():
    def action_mask_fn(env):
        invalid = random.randrange(env.action_space.n)
        return [i != invalid for i in range(env.action_space.n)]

    env = ActionMasker(FakeImageEnv(), action_mask_fn)
    model = ClippedPPO("CnnPolicy", env, n_steps=64, seed=32,
                       policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=32)))  # fmt: skip
    model.learn(100)
    assert model.rollout_buffer.keeps_masks
    evaluate_policy(model, env, warn=False)


class ToDictWrapper(gym.ObservationWrapper):
    """The observation as the single entry of a Dict space (MultiInputPolicy)."""

    def __init__(self, env):
        super().__init__(env)
        self.observation_space = gym.spaces.Dict({"obs": env.observation_space})

    def observation(self, observation):
        return {"obs": observation}


def test_dict_obs():
    env = ToDictWrapper(InvalidActionEnvDiscrete(dim=20, n_invalid_actions=10))
    model = ClippedPPO("MultiInputPolicy", env, n_steps=64, seed=8)
    model.learn(64)
    evaluate_policy(model, env, warn=False)
    env = ToDictWrapper(InvalidActionEnvDiscrete(dim=20, n_invalid_actions=19))
    evaluate_policy(ClippedPPO("MultiInputPolicy", env, seed=8), env, reward_threshold=99, warn=False)
    for env in (ToDictWrapper(InvalidActionEnvMultiDiscrete(dims=[2, 3], n_invalid_actions=1)),
                ToDictWrapper(InvalidActionEnvMultiBinary(dims=3, n_invalid_actions=1))):  # fmt: skip
        model = ClippedPPO("MultiInputPolicy", env, n_steps=32, batch_size=32, seed=8)
        model.learn(32)
        assert model.rollout_buffer.keeps_masks


def test_masked_actions_are_never_taken_in_learning():
    """An environment that fails on a masked action: the rollouts (both backends) never take one."""

    class Strict(InvalidActionEnvDiscrete):
        def step(self, action):
            assert int(action) not in self.invalid_actions, "a masked action was taken"
            return super().step(action)

    for fast_path in (True, False):
        env = make_vec_env(lambda: Strict(dim=20, n_invalid_actions=18), n_envs=4, seed=0)
        ClippedPPO("MlpPolicy", env, n_steps=64, seed=0, fast_path=fast_path).learn(1024)


# ------------------------------------------------------------------------------------------- RL Zoo and ONNX export

STRICT_ENV_MODULE = '''
import gymnasium as gym
import numpy as np
from sb3_contrib.common.envs import InvalidActionEnvDiscrete


class StrictMaskedIdentity(InvalidActionEnvDiscrete):
    """sb3-contrib's masked identity, failing on a masked action."""

    def __init__(self):
        super().__init__(dim=10, n_invalid_actions=7)

    def step(self, action):
        if int(action) in self.invalid_actions:
            raise RuntimeError("a masked action was taken")
        return super().step(action)


gym.register("StrictMaskedIdentity-v0", entry_point=StrictMaskedIdentity)
'''


def test_zoo_trains_a_masked_environment(tmp_path):
    """``python -m rl_zoo3.train --algo clippedppo`` on an environment that offers action_masks() and fails on a masked
    action: the Zoo's learn call masks by default (the Zoo's own evaluation predicts without masks, so it is off here)."""
    pytest.importorskip("rl_zoo3")
    from tests.zoo_utils import check, run

    (tmp_path / "strict_masked_env.py").write_text(STRICT_ENV_MODULE)
    (tmp_path / "masked.yml").write_text(
        "StrictMaskedIdentity-v0:\n  n_timesteps: 1024\n  policy: MlpPolicy\n  n_envs: 4\n  n_steps: 64\n  gamma: 0.4\n"
    )
    result = check(run(["-m", "rl_zoo3.train", "--algo", "clippedppo", "--env", "StrictMaskedIdentity-v0",
                        "--gym-packages", "strict_masked_env", "-conf", "masked.yml", "--eval-freq", "-1", "--seed", "0"],
                       tmp_path, env={"PYTHONPATH": str(tmp_path)}))  # fmt: skip
    assert (tmp_path / "logs" / "clippedppo" / "StrictMaskedIdentity-v0_1" / "StrictMaskedIdentity-v0.zip").is_file()
    assert "masked action" not in result.stderr


@pytest.mark.parametrize("make", masked_envs(10, 4, 2))
def test_onnx_export_takes_the_mask_as_a_second_input(make, tmp_path):
    """export_onnx(action_masks=True): inputs "observation" and "action_mask" (bool, batch x mask_dim); the file's actions
    are predict(deterministic=True, action_masks=...)'s."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from sb3_clippedppo.export import export_onnx, input_dtype
    from sb3_clippedppo.masking import component_sizes

    env = make_vec_env(make, n_envs=2, seed=0)
    model = ClippedPPO("MlpPolicy", env, n_steps=32, batch_size=64, seed=0)
    model.learn(128)
    session = ort.InferenceSession(str(export_onnx(model, tmp_path / "policy.onnx", action_masks=True)))
    inputs = session.get_inputs()
    sizes = component_sizes(env.action_space)
    assert [i.name for i in inputs] == ["observation", "action_mask"] and inputs[1].type == "tensor(bool)"
    assert inputs[1].shape[1] == sum(sizes)
    env.observation_space.seed(1)
    obs = np.stack([np.asarray(env.observation_space.sample()) for _ in range(64)])
    rng = np.random.default_rng(0)
    masks = rng.random((64, sum(sizes))) < 0.5
    for start, size in zip(np.cumsum((0, *sizes[:-1])), sizes, strict=True):
        masks[np.arange(64), start + rng.integers(0, size, 64)] = True
    got = session.run(None, {"observation": obs.astype(input_dtype(env.observation_space)), "action_mask": masks})[0]
    expected, _ = model.predict(obs, deterministic=True, action_masks=masks)
    np.testing.assert_array_equal(got, expected)
    unmasked, _ = model.predict(obs, deterministic=True)
    assert not np.array_equal(unmasked, expected)  # the masks changed some actions
