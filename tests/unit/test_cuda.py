"""device="cuda": training runs on the GPU and computes the same update as on the CPU. Skipped without a CUDA GPU."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from sb3_clippedppo import ClippedPPO
from tests.reference_ppo import ReferenceActorCritic, parameters_of, reference_train

pytestmark = pytest.mark.skipif(not th.cuda.is_available(), reason="no CUDA GPU here: device='cuda' is not tested")

HYPERPARAMS = dict(n_steps=256, batch_size=64, n_epochs=3, learning_rate=3e-4, ent_coef=0.01, clip_range_vf=0.5)


def test_cuda_model_lives_on_the_gpu_and_trains(tmp_path):
    model = ClippedPPO("MlpPolicy", "Pendulum-v1", device="cuda", seed=0, **HYPERPARAMS)
    assert model.device.type == "cuda"
    assert all(p.is_cuda for p in model.policy.parameters())
    assert model.uses_fast_path and model.backend.flat.data.is_cuda and model.backend.flat.intact()
    before = model.policy.parameters_to_vector()
    model.learn(1024)
    assert model.backend.xp is th  # the closed form's arithmetic runs in torch on the GPU
    after = model.policy.parameters_to_vector()
    assert np.all(np.isfinite(after)) and not np.array_equal(before, after)
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    actions, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "model")
    on_cpu = ClippedPPO.load(tmp_path / "model", device="cpu")
    np.testing.assert_allclose(on_cpu.predict(obs, deterministic=True)[0], actions, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "autograd"])
def test_cuda_update_matches_the_reference_on_the_gpu(fast_path):
    model = ClippedPPO("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=4, seed=0), device="cuda", seed=0,
                       fast_path=fast_path, **HYPERPARAMS)  # fmt: skip
    _, callback = model._setup_learn(10**6, None)
    reference = ReferenceActorCritic(model.policy)
    optimizer = th.optim.Adam(reference.parameters(), lr=HYPERPARAMS["learning_rate"], eps=1e-5)
    settings = {"normalize_advantage": True, "vf_coef": 0.5, "max_grad_norm": 0.5, "clip_range": 0.2, **HYPERPARAMS}
    for _ in range(2):
        model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
        cpu_state, cuda_state = th.get_rng_state(), th.cuda.get_rng_state()
        model.train()
        th.set_rng_state(cpu_state)
        th.cuda.set_rng_state(cuda_state)
        reference_train(reference, optimizer, model.rollout_buffer, settings)
        np.testing.assert_allclose(parameters_of(model.policy), parameters_of(reference), rtol=0, atol=1e-4)


def test_cuda_learns_cartpole():
    model = ClippedPPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=8, seed=0), device="cuda", seed=0,
                       n_steps=32, batch_size=256, n_epochs=20, gae_lambda=0.8, gamma=0.98, learning_rate=1e-3)  # fmt: skip
    model.learn(50_000)
    assert np.mean([info["r"] for info in model.ep_info_buffer]) > 150


def test_cuda_cnn_and_dict_policies_train():
    from stable_baselines3.common.envs import FakeImageEnv, SimpleMultiObsEnv

    for policy, env in (
        ("CnnPolicy", FakeImageEnv(screen_height=40, screen_width=40)),
        ("MultiInputPolicy", SimpleMultiObsEnv()),
    ):
        model = ClippedPPO(policy, env, device="cuda", n_steps=64, batch_size=32, n_epochs=2, seed=0)
        assert next(model.policy.parameters()).is_cuda
        model.learn(128)
