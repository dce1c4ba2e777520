"""ONNX export (sb3_clippedppo.export): the exported file's actions from raw observations equal
``model.predict(obs, deterministic=True)`` on 1,000 observations (1e-5 for Box actions, exactly for discrete ones), for
every policy alias and action space, with and without ``normalize_observations`` and a ``VecNormalize``; the RL Zoo
command on a HalfCheetah-v4 run; an episode driven by onnxruntime alone; clear errors. Needs the ``export`` extra."""

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

import sb3_clippedppo
from sb3_clippedppo import ClippedPPO
from sb3_clippedppo import export as export_module
from sb3_clippedppo.export import example_observations, export_onnx
from tests.zoo_utils import check, run

# One torch thread, as when these tests were written; the export itself does not depend on it
pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_OBSERVATIONS = 1000
IMAGE = spaces.Box(0, 255, (1, 36, 36), np.uint8)  # channels first: the smallest image NatureCNN takes
VECTOR = spaces.Box(-2.0, 2.0, (5,), np.float32)
ACTION_SPACES = {
    # narrow bounds, so that some means are clipped (checked in test_box_actions_are_clipped_as_predict_clips_them)
    "box": spaces.Box(-0.02, 0.02, (2,), np.float32),
    "discrete": spaces.Discrete(3),
    "multidiscrete": spaces.MultiDiscrete([3, 2]),
    "multibinary": spaces.MultiBinary(3),
}


class SpacesEnv(gym.Env):
    """Random observations of ``observation_space``, random rewards, episodes of 16 steps."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space):
        self.observation_space, self.action_space = observation_space, action_space
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(2**31)))
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        return self.observation_space.sample(), float(self.np_random.normal()), self.t >= 16, False, {}


def trained_model(policy, observation_space, action_space, normalization="none", **policy_kwargs):
    """A ClippedPPO model after two updates (weights and observation statistics away from their initial values)."""
    env = DummyVecEnv([lambda: SpacesEnv(observation_space, action_space)])
    if normalization == "vec_normalize":
        keys = ["vector"] if isinstance(observation_space, spaces.Dict) else None
        env = VecNormalize(env, norm_obs=True, norm_reward=False, norm_obs_keys=keys)
    if normalization == "normalize_observations":
        policy_kwargs["normalize_observations"] = True
    model = ClippedPPO(policy, env, n_steps=64, batch_size=32, n_epochs=2, learning_rate=3e-3, seed=0,
                       policy_kwargs=policy_kwargs)  # fmt: skip
    model.learn(128)
    return model, env if normalization == "vec_normalize" else None


def raw_observations(observation_space, n=N_OBSERVATIONS):
    """``n`` observations of the space, as the exported file takes them (input name -> array)."""
    return example_observations(observation_space, batch_size=n)


def predicted_actions(model, observations, vec_normalize):
    """``model.predict`` on the same observations, normalized by ``vec_normalize`` first when given (as in training)."""
    obs = observations if isinstance(model.observation_space, spaces.Dict) else observations["observation"]
    if vec_normalize is not None:
        obs = vec_normalize.normalize_obs(obs)
    return model.predict(obs, deterministic=True)[0]


def onnx_actions(path, observations):
    return ort.InferenceSession(str(path)).run(["action"], observations)[0]


def assert_same_actions(actual, expected, action_space):
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if isinstance(action_space, spaces.Box):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)
    else:
        np.testing.assert_array_equal(actual, expected)


def check_export(tmp_path, model, vec_normalize=None):
    path = export_onnx(model, tmp_path / "policy.onnx", vec_normalize=vec_normalize)
    observations = raw_observations(model.observation_space)
    assert_same_actions(onnx_actions(path, observations), predicted_actions(model, observations, vec_normalize),
                        model.action_space)  # fmt: skip
    return path


@pytest.mark.parametrize("normalization", ["none", "normalize_observations", "vec_normalize"])
@pytest.mark.parametrize("action", sorted(ACTION_SPACES))
def test_mlp_policy_matches_predict(tmp_path, action, normalization):
    model, vec_normalize = trained_model("MlpPolicy", VECTOR, ACTION_SPACES[action], normalization)
    check_export(tmp_path, model, vec_normalize)


@pytest.mark.parametrize(
    "observation_space",
    [spaces.Discrete(4), spaces.MultiDiscrete([3, 4]), spaces.MultiBinary(3), spaces.Box(-1, 1, (3,), np.float64),
     spaces.Box(-1, 1, (), np.float32)],
    ids=["discrete", "multidiscrete", "multibinary", "box-float64", "box-scalar"],
)  # fmt: skip
def test_mlp_policy_other_observation_spaces(tmp_path, observation_space):
    model, _ = trained_model("MlpPolicy", observation_space, ACTION_SPACES["discrete"])
    check_export(tmp_path, model)


@pytest.mark.parametrize("action", sorted(ACTION_SPACES))
def test_cnn_policy_matches_predict(tmp_path, action):
    """Images only: neither normalize_observations nor VecNormalize has anything to normalize."""
    model, _ = trained_model("CnnPolicy", IMAGE, ACTION_SPACES[action], features_extractor_kwargs=dict(features_dim=32))
    check_export(tmp_path, model)


@pytest.mark.parametrize("normalization", ["none", "normalize_observations", "vec_normalize"])
@pytest.mark.parametrize("action", sorted(ACTION_SPACES))
def test_multi_input_policy_matches_predict(tmp_path, action, normalization):
    """An image, a vector (the entry that is normalized) and a Discrete entry."""
    observation_space = spaces.Dict({"image": IMAGE, "vector": VECTOR, "discrete": spaces.Discrete(3)})
    model, vec_normalize = trained_model("MultiInputPolicy", observation_space, ACTION_SPACES[action], normalization)
    path = check_export(tmp_path, model, vec_normalize)
    assert [i.name for i in ort.InferenceSession(str(path)).get_inputs()] == list(observation_space.spaces)  # its order


def test_fast_path_model_and_the_model_is_left_unchanged(tmp_path):
    model, _ = trained_model("MlpPolicy", VECTOR, ACTION_SPACES["box"], "normalize_observations")
    assert model.uses_fast_path
    observations = raw_observations(model.observation_space)["observation"]
    before = model.predict(observations, deterministic=True)[0]
    parameters = {name: p.detach().clone() for name, p in model.policy.state_dict().items()}
    training = model.policy.training
    export_onnx(model, tmp_path / "policy.onnx")
    assert model.policy.training == training
    assert all(th.equal(p, model.policy.state_dict()[name]) for name, p in parameters.items())
    np.testing.assert_array_equal(model.predict(observations, deterministic=True)[0], before)
    model.learn(64)  # still trains: the export took a copy, not the fast path's flat parameters


def test_state_dependent_std_policy(tmp_path):
    model, _ = trained_model("MlpPolicy", VECTOR, ACTION_SPACES["box"], "normalize_observations", state_dependent_std=True)
    check_export(tmp_path, model)


@pytest.mark.skipif(not th.cuda.is_available(), reason="needs CUDA")
def test_model_on_cuda(tmp_path):
    env = DummyVecEnv([lambda: SpacesEnv(VECTOR, ACTION_SPACES["box"])])
    model = ClippedPPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=2, device="cuda", seed=0).learn(128)
    check_export(tmp_path, model)
    assert model.device.type == "cuda"  # the export took a CPU copy


def test_box_actions_are_clipped_as_predict_clips_them(tmp_path):
    model, _ = trained_model("MlpPolicy", VECTOR, ACTION_SPACES["box"])
    path = check_export(tmp_path, model)
    actions = onnx_actions(path, raw_observations(model.observation_space))
    at_bounds = np.mean(np.abs(actions) >= 0.02 - 1e-7)
    assert 0 < at_bounds < 1, at_bounds  # the file clips some means and not others


def test_metadata_names_spaces_and_version(tmp_path):
    model, vec_normalize = trained_model("MlpPolicy", VECTOR, ACTION_SPACES["multidiscrete"], "vec_normalize")
    path = export_onnx(model, tmp_path / "policy.onnx", vec_normalize=vec_normalize, metadata={"env_id": "Test-v0"})
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["observation_space"])["shape"] == [5]
    assert json.loads(props["action_space"]) == {"type": "MultiDiscrete", "shape": [2], "dtype": "int64", "nvec": [3, 2]}
    assert json.loads(props["inputs"]) == ["observation"]
    assert props["vec_normalize"] == "true"
    assert props["producer"] == f"sb3_clippedppo {sb3_clippedppo.__version__}"
    assert props["env_id"] == "Test-v0"


def test_vec_normalize_from_its_pickle(tmp_path):
    model, vec_normalize = trained_model("MlpPolicy", VECTOR, ACTION_SPACES["box"], "vec_normalize")
    vec_normalize.save(str(tmp_path / "vecnormalize.pkl"))
    path = export_onnx(model, tmp_path / "policy.onnx", vec_normalize=tmp_path / "vecnormalize.pkl")
    observations = raw_observations(model.observation_space)
    assert_same_actions(onnx_actions(path, observations), predicted_actions(model, observations, vec_normalize),
                        model.action_space)  # fmt: skip


def test_errors(tmp_path):
    with pytest.raises(TypeError, match="exports ClippedPPO models, got PPO"):
        export_onnx(PPO("MlpPolicy", "CartPole-v1", n_steps=64), tmp_path / "ppo.onnx")
    model, vec_normalize = trained_model("MlpPolicy", VECTOR, ACTION_SPACES["discrete"], "vec_normalize")
    with pytest.raises(TypeError, match="vec_normalize must be a VecNormalize"):
        export_onnx(model, tmp_path / "a.onnx", vec_normalize=3)
    other = VecNormalize(DummyVecEnv([lambda: SpacesEnv(spaces.Box(-1, 1, (4,)), ACTION_SPACES["discrete"])]))
    with pytest.raises(ValueError, match="differs from the model's"):
        export_onnx(model, tmp_path / "a.onnx", vec_normalize=other)
    with pytest.raises(ValueError, match="opset must be None or an int >= 17"):
        export_onnx(model, tmp_path / "a.onnx", opset=9)
    with pytest.raises(TypeError, match="supports Box, Discrete, MultiDiscrete and MultiBinary observations"):
        export_module.check_spaces(spaces.Tuple([VECTOR]), ACTION_SPACES["box"])
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*.tmp"))  # nothing written


def test_missing_extra_names_it(monkeypatch, tmp_path):
    real_import = export_module.importlib.import_module

    def without_onnxscript(name, *args):
        if name == "onnxscript":
            raise ModuleNotFoundError("No module named 'onnxscript'")
        return real_import(name, *args)

    monkeypatch.setattr(export_module.importlib, "import_module", without_onnxscript)
    model, _ = trained_model("MlpPolicy", VECTOR, ACTION_SPACES["discrete"])
    with pytest.raises(ModuleNotFoundError, match=r'pip install "sb3_clippedppo\[export\]"'):
        export_onnx(model, tmp_path / "policy.onnx")


def export_command(*args, cwd):
    return subprocess.run([sys.executable, "-m", "sb3_clippedppo.export", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


def test_command_errors(tmp_path):
    result = export_command(tmp_path / "logs" / "clippedppo" / "HalfCheetah-v4_1", "out.onnx", cwd=tmp_path)
    assert result.returncode == 2 and "does not exist" in result.stderr
    (tmp_path / "empty_1").mkdir()
    result = export_command(tmp_path / "empty_1", "out.onnx", cwd=tmp_path)
    assert result.returncode == 2 and "no model empty.zip" in result.stderr
    PPO("MlpPolicy", "CartPole-v1", n_steps=64).save(tmp_path / "ppo.zip")
    result = export_command(tmp_path / "ppo.zip", "out.onnx", cwd=tmp_path)
    assert result.returncode == 2 and "was not saved by ClippedPPO" in result.stderr
    (tmp_path / "out.onnx").write_text("a file the user keeps")
    ClippedPPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32).save(tmp_path / "model.zip")
    result = export_command(tmp_path / "model.zip", "out.onnx", cwd=tmp_path)
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert (tmp_path / "out.onnx").read_text() == "a file the user keeps"


@pytest.fixture(scope="module")
def halfcheetah_export(tmp_path_factory):
    """A short RL Zoo run of the shipped HalfCheetah-v4 entry (normalize: true), exported with the command."""
    cwd = tmp_path_factory.mktemp("zoo_export")
    check(run(["-m", "rl_zoo3.train", "--algo", "clippedppo", "--env", "HalfCheetah-v4", "--seed", "0", "-n", "2048",
               "--eval-freq", "-1", "--hyperparams", "normalize:True"], cwd))  # fmt: skip
    folder = cwd / "logs" / "clippedppo" / "HalfCheetah-v4_1"
    result = export_command(folder, "policy.onnx", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    model = ClippedPPO.load(folder / "HalfCheetah-v4.zip", device="cpu")
    vec_normalize = VecNormalize.load(str(folder / "HalfCheetah-v4" / "vecnormalize.pkl"),
                                      DummyVecEnv([lambda: gym.make("HalfCheetah-v4")]))  # fmt: skip
    return cwd / "policy.onnx", model, vec_normalize


def test_zoo_command_folds_in_vecnormalize(halfcheetah_export):
    path, model, vec_normalize = halfcheetah_export
    env = gym.make("HalfCheetah-v4")
    observations = np.stack([env.reset(seed=seed)[0] for seed in range(10)] +
                            [env.observation_space.sample() * 0.5 for _ in range(N_OBSERVATIONS - 10)])  # fmt: skip
    assert observations.dtype == np.float64  # raw observations, as the environment gives them
    actual = onnx_actions(path, {"observation": observations})
    expected = model.predict(vec_normalize.normalize_obs(observations), deterministic=True)[0]
    assert_same_actions(actual, expected, model.action_space)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["env_id"] == "HalfCheetah-v4" and props["vec_normalize"] == "true"


def test_halfcheetah_episode_driven_by_onnxruntime_alone(halfcheetah_export):
    path, model, vec_normalize = halfcheetah_export
    session = ort.InferenceSession(str(path))

    def episode_return(act):
        env = gym.make("HalfCheetah-v4")
        obs, _ = env.reset(seed=0)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total, done = total + reward, terminated or truncated
        return total

    onnx_return = episode_return(lambda obs: session.run(None, {"observation": obs[None]})[0][0])
    predict_return = episode_return(lambda obs: model.predict(vec_normalize.normalize_obs(obs), deterministic=True)[0])
    assert abs(onnx_return - predict_return) <= 0.02 * abs(predict_return), (onnx_return, predict_return)
