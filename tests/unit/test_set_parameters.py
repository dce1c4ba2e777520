"""``set_parameters`` and ``load`` fail as Stable-Baselines3's do: SB3's own ``test_save_load`` (its set_parameters
error cases, parameters that change when set, a save/load round trip), run against ClippedPPO with each parameter
storage (the fast path's flat buffers, autograd's per-tensor storage); and a clear error naming the object whose
parameters are not a state dict."""

from collections import OrderedDict
from copy import deepcopy

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.envs import IdentityEnvBox
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_clippedppo import ClippedPPO

FAST_PATH = pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "autograd"])


def trained(fast_path: bool, env=None) -> ClippedPPO:
    """SB3's test model (one hidden layer of 16 on IdentityEnvBox(-10, 10)), with fewer steps."""
    env = env or DummyVecEnv([lambda: IdentityEnvBox(-10, 10)])
    model = ClippedPPO("MlpPolicy", env, policy_kwargs=dict(net_arch=[16]), n_steps=64, batch_size=32, n_epochs=2,
                       seed=0, fast_path=fast_path)  # fmt: skip
    assert model.uses_fast_path is fast_path
    return model.learn(128)


@FAST_PATH
def test_sb3s_set_parameters_error_cases(fast_path):
    """SB3's tests/test_save_load.py::test_save_load, its error cases."""
    model = trained(fast_path)
    original_params = deepcopy(model.get_parameters())
    assert set(original_params) == {"policy", "policy.optimizer"}

    # Invalid object names: ValueError, whether or not exact_match
    invalid_object_params = deepcopy(original_params)
    invalid_object_params["I_should_not_be_a_valid_object"] = "and_I_am_an_invalid_tensor"
    with pytest.raises(ValueError, match="I_should_not_be_a_valid_object"):
        model.set_parameters(invalid_object_params, exact_match=True)
    with pytest.raises(ValueError, match="I_should_not_be_a_valid_object"):
        model.set_parameters(invalid_object_params, exact_match=False)

    # A missing object under exact_match: ValueError
    missing_object_params = dict(list(original_params.items())[:-1])
    with pytest.raises(ValueError):
        model.set_parameters(missing_object_params, exact_match=True)

    # A state dict without its last tensor under exact_match: torch's RuntimeError (load_state_dict, strict)
    missing_state_dict_tensor_params = {
        object_name: dict(list(object_params.items())[:-1]) for object_name, object_params in original_params.items()
    }
    with pytest.raises(RuntimeError):
        model.set_parameters(missing_state_dict_tensor_params, exact_match=True)

    # Nothing of the failed calls was applied halfway: the model is as it was
    for key, value in model.get_parameters()["policy"].items():
        th.testing.assert_close(value, original_params["policy"][key], rtol=0, atol=0)


@FAST_PATH
def test_sb3s_set_parameters_changes_the_parameters_and_save_load_round_trips(tmp_path, fast_path):
    """SB3's tests/test_save_load.py::test_save_load: the parameters set (all but each state dict's last tensor) change,
    the others do not; after a save and a load, the same parameters and the same actions, and training goes on."""
    env = DummyVecEnv([lambda: IdentityEnvBox(-10, 10)])
    model = trained(fast_path, env)
    env.reset()
    observations = np.concatenate([env.step([env.action_space.sample()])[0] for _ in range(10)], axis=0)
    original_params = deepcopy(model.get_parameters())

    random_params = {}
    for object_name, params in original_params.items():
        if "optim" in object_name:  # optimizer state: kept as it is (a custom layout)
            random_params[object_name] = params
        else:
            random_params[object_name] = OrderedDict(
                (param_name, th.rand_like(param)) for param_name, param in list(params.items())[:-1]
            )
    model.set_parameters(random_params, exact_match=False)

    new_params = model.get_parameters()
    last_key = list(original_params["policy"])[-1]
    for key, value in original_params["policy"].items():
        if key == last_key:
            assert th.allclose(value, new_params["policy"][key]), "a parameter not set changed"
        else:
            assert not th.allclose(value, new_params["policy"][key]), f"{key} did not change"
    # What the backend trains with changed too (the fast path's flat buffers are views of the parameters)
    if fast_path:
        assert model.backend.flat.intact()
    selected_actions, _ = model.predict(observations, deterministic=True)
    torch_actions, _ = model.policy.predict(observations, deterministic=True)
    np.testing.assert_allclose(selected_actions, torch_actions, rtol=1e-5, atol=1e-5)

    model.save(tmp_path / "test_save.zip")
    loaded = ClippedPPO.load(tmp_path / "test_save.zip", env=env)
    assert loaded.uses_fast_path is fast_path
    for key, value in loaded.get_parameters()["policy"].items():
        assert th.allclose(new_params["policy"][key], value), key
    np.testing.assert_allclose(loaded.predict(observations, deterministic=True)[0], selected_actions, rtol=1e-4)
    loaded.learn(64)
    assert loaded.num_timesteps == 64


@FAST_PATH
@pytest.mark.parametrize("name", ["policy", "policy.optimizer"])
@pytest.mark.parametrize("value", [3, None, [1, 2], "a string"], ids=["int", "none", "list", "str"])
def test_set_parameters_names_an_object_whose_parameters_are_not_a_state_dict(fast_path, name, value):
    model = ClippedPPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, seed=0, fast_path=fast_path)
    params = {**model.get_parameters(), name: value}
    with pytest.raises(TypeError, match=rf"'{name}' must be a state dict .* got {type(value).__name__}"):
        model.set_parameters(params)
    with pytest.raises(TypeError, match=r"'policy' must be a state dict"):
        model.set_parameters({"policy": 3})


def test_a_malformed_optimizer_state_fails_as_with_sb3s_ppo():
    """An optimizer state dict without its parameter groups: the error SB3's PPO gives (torch's)."""
    malformed = {"state": {}}
    sb3 = PPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32)
    with pytest.raises(Exception) as sb3_error:
        sb3.set_parameters({**sb3.get_parameters(), "policy.optimizer": malformed})
    for fast_path in (True, False):
        model = ClippedPPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, seed=0, fast_path=fast_path)
        with pytest.raises(type(sb3_error.value), match=str(sb3_error.value)):
            model.set_parameters({**model.get_parameters(), "policy.optimizer": malformed})
