"""Both update paths (the fast path: flat buffers, fused Adam, closed-form gradients, batched rollout evaluation; and
autograd) against the plain reference implementation in tests/reference_ppo.py: same rollouts of 4 environments, same
minibatch permutations, several updates, parameters equal to 1e-5."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from sb3_clippedppo import ClippedPPO
from tests.reference_ppo import ReferenceActorCritic, parameters_of, reference_train

SETTINGS = {
    # SB3's default architecture (64x64 tanh, orthogonal init)
    "sb3-defaults": dict(n_steps=64, batch_size=64, n_epochs=4, learning_rate=3e-4, ent_coef=0.0, vf_coef=0.5,
                         max_grad_norm=0.5, clip_range=0.2),
    # RL Zoo HalfCheetah-style: ReLU, log_std_init -2, no ortho init, value clipping, entropy bonus, small lr
    "zoo-style": dict(n_steps=48, batch_size=64, n_epochs=5, learning_rate=2e-4, ent_coef=0.004, vf_coef=0.58,
                      max_grad_norm=0.8, clip_range=0.1, clip_range_vf=0.2, gamma=0.98, gae_lambda=0.92,
                      policy_kwargs=dict(log_std_init=-2, ortho_init=False, activation_fn=th.nn.ReLU,
                                         net_arch=dict(pi=[64, 64], vf=[32, 32]))),
}  # fmt: skip


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "autograd"])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_updates_match_reference_implementation(setting, fast_path):
    hyperparams = SETTINGS[setting]
    env = VecNormalize(make_vec_env("HalfCheetah-v4", n_envs=4, seed=0))
    model = ClippedPPO("MlpPolicy", env, seed=0, device="cpu", fast_path=fast_path, **hyperparams)
    assert model.uses_fast_path is fast_path
    _, callback = model._setup_learn(10**6, None)

    reference = ReferenceActorCritic(model.policy)
    np.testing.assert_array_equal(parameters_of(reference), parameters_of(model.policy))
    optimizer = th.optim.Adam(reference.parameters(), lr=hyperparams["learning_rate"], eps=1e-5)
    settings = {"normalize_advantage": True, **hyperparams}

    for _ in range(4):
        model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
        rng_state = th.get_rng_state()
        model.train()
        th.set_rng_state(rng_state)  # the reference draws the same permutations
        steps = reference_train(reference, optimizer, model.rollout_buffer, settings)
        assert steps == model.n_epochs * (model.rollout_buffer.n_transitions // model.batch_size)
        difference = np.abs(parameters_of(model.policy) - parameters_of(reference)).max()
        print(f"max |difference| after update: {difference:.2e}")
        assert difference <= 1e-5

    # The parameters did move: the comparison is not trivially true
    initial = ClippedPPO("MlpPolicy", VecNormalize(make_vec_env("HalfCheetah-v4", n_envs=4)), seed=0, **hyperparams)
    assert np.abs(parameters_of(model.policy) - parameters_of(initial.policy)).max() > 1e-3
