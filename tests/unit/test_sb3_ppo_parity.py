"""ClippedPPO's update against Stable-Baselines3's own ``PPO.train()``: the same initial weights (a seed gives SB3's),
the same rollout (GAE included) and the same minibatch permutations give the same parameters after the update, in SB3's
default setting, the walker seed's (target_kl early stopping) with 4 environments, with Discrete and MultiDiscrete
actions, with the RL Zoo's Humanoid-v4 entry verbatim, and with gSDE (the RL Zoo's Pendulum-v1 entry, scaled down);
through the fast path and through autograd."""

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common import buffers as sb3_buffers
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnvMultiDiscrete
from stable_baselines3.common.vec_env import VecNormalize

from sb3_clippedppo import ClippedPPO

SETTINGS = {
    "sb3-defaults": ("HalfCheetah-v4", 1, dict(n_steps=256, batch_size=64, n_epochs=4)),
    # the walker seed's settings, scaled down; target_kl 0.002 so that early stopping really happens
    "walker-style-4-envs": ("HalfCheetah-v4", 4, dict(n_steps=125, batch_size=125, n_epochs=10, gamma=0.99, gae_lambda=0.95,
                            clip_range=0.2, target_kl=0.002, learning_rate=1e-3,
                            policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=th.nn.Tanh))),
    "discrete-4-envs": ("CartPole-v1", 4, dict(n_steps=64, batch_size=64, n_epochs=4, ent_coef=0.01, clip_range_vf=0.2)),
    # SB3's identity test's environment: MultiDiscrete observations (one-hot) and actions
    "multidiscrete-4-envs": (lambda: IdentityEnvMultiDiscrete(4), 4, dict(n_steps=64, batch_size=64, n_epochs=4,
                                                                            gamma=0.4, ent_coef=0.01)),
    # batch_size above the rollout (the RL Zoo's MountainCarContinuous-v0 entry): one minibatch of the whole rollout
    "batch-above-rollout": ("Pendulum-v1", 1, dict(n_steps=8, batch_size=256, n_epochs=10, learning_rate=7.77e-05)),
    # the RL Zoo's Humanoid-v4 entry verbatim: one environment, ortho_init off, log_std_init -2, ReLU, max_grad_norm 2
    "zoo-humanoid": ("Humanoid-v4", 1, dict(n_steps=512, batch_size=256, gamma=0.95, learning_rate=3.56987e-05,
                                            ent_coef=0.00238306, clip_range=0.3, n_epochs=5, gae_lambda=0.9, max_grad_norm=2,
                                            vf_coef=0.431892, policy_kwargs=dict(log_std_init=-2, ortho_init=False,
                                            activation_fn=th.nn.ReLU, net_arch=dict(pi=[256, 256], vf=[256, 256])))),
    # gSDE with the exploration matrix resampled every 4 steps (the autograd backend only)
    "gsde-4-envs": ("Pendulum-v1", 4, dict(n_steps=64, batch_size=64, n_epochs=4, gamma=0.9, gae_lambda=0.95,
                                           learning_rate=1e-3, use_sde=True, sde_sample_freq=4)),
}  # fmt: skip


def parameters(model) -> dict[str, np.ndarray]:
    return {name: value.detach().numpy().copy() for name, value in model.policy.state_dict().items()}


def sb3_permutation(n_steps: int, n_envs: int):
    """SB3 flattens its rollout env-major (env * n_steps + step), ClippedPPO step-major (step * n_envs + env): draw
    ClippedPPO's permutation (torch.randperm, global generator) and express it in SB3's indices."""

    def permutation(n: int) -> np.ndarray:
        ours = th.randperm(n).numpy()
        return (ours % n_envs) * n_steps + ours // n_envs

    return permutation


def paired_models(sb3_class, make_env, fast_path, hyperparams, n_envs, monkeypatch):
    """ClippedPPO and an SB3 algorithm (``sb3_class``) built alike, checked to start from the same weights, set up to
    learn, with SB3's minibatch permutations made ClippedPPO's (:func:`sb3_permutation`); returns both and ClippedPPO's
    callback."""
    model = ClippedPPO("MlpPolicy", make_env(), seed=0, fast_path=fast_path, **hyperparams)
    sb3_model = sb3_class("MlpPolicy", make_env(), seed=0, **hyperparams)
    assert model.uses_fast_path is fast_path
    ours, theirs = parameters(model), parameters(sb3_model)
    assert list(ours) == list(theirs) and all(np.array_equal(ours[k], theirs[k]) for k in ours)
    _, callback = model._setup_learn(10**6, None)
    sb3_model._setup_learn(10**6, None)
    monkeypatch.setattr(sb3_buffers.np.random, "permutation", sb3_permutation(model.n_steps, n_envs))
    return model, sb3_model, callback


def copy_rollout(model, sb3_buffer, discrete: bool, masks: bool = False) -> None:
    """ClippedPPO's rollout (transitions, values, log-probabilities and, with ``masks``, action masks) into an SB3
    rollout buffer, then SB3's own GAE on it: the same advantages as ClippedPPO's."""
    buffer, n_envs = model.rollout_buffer, model.n_envs
    sb3_buffer.reset()
    for step in range(model.n_steps):
        actions = buffer.actions[step].reshape(n_envs, -1) if discrete else buffer.actions[step]
        extra = {"action_masks": buffer.action_masks[step]} if masks else {}
        sb3_buffer.add(
            buffer.observations[step], actions, buffer.rewards[step], buffer.episode_starts[step],
            th.as_tensor(buffer.values[step]), th.as_tensor(buffer.log_probs[step]), **extra,
        )  # fmt: skip
    with th.no_grad():
        last_values = model.policy.predict_values(model.policy.obs_to_tensor(model._last_obs)[0])
    sb3_buffer.compute_returns_and_advantage(last_values=last_values.flatten(), dones=model._last_episode_starts)
    np.testing.assert_allclose(sb3_buffer.advantages, buffer.advantages, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "autograd"])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_update_matches_sb3_ppo(setting, fast_path, monkeypatch):
    env_id, n_envs, hyperparams = SETTINGS[setting]
    if fast_path and hyperparams.get("use_sde"):
        pytest.skip("gSDE trains through autograd only")

    def make_env():
        env = make_vec_env(env_id, n_envs=n_envs, seed=0)
        return VecNormalize(env) if env_id in ("HalfCheetah-v4", "Humanoid-v4") else env

    model, sb3_model, callback = paired_models(PPO, make_env, fast_path, hyperparams, n_envs, monkeypatch)
    discrete = env_id == "CartPole-v1"

    early_stops = 0
    for _ in range(3):
        model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
        buffer, sb3_buffer = model.rollout_buffer, sb3_model.rollout_buffer
        # The same transitions, and SB3's own GAE on them (with ClippedPPO's values and log-probabilities)
        copy_rollout(model, sb3_buffer, discrete)
        np.testing.assert_allclose(sb3_buffer.returns, buffer.returns, rtol=1e-5, atol=1e-5)
        # SB3's log-probability of the stored actions under the same weights is the stored one
        stored_actions = th.as_tensor(buffer.actions.reshape(-1, *buffer.actions.shape[2:]))
        if discrete:  # the buffer holds SB3's layout (N, 1); SB3's PPO.train flattens Discrete actions the same way
            stored_actions = stored_actions.long().flatten()
        with th.no_grad():
            _, sb3_log_prob, _ = sb3_model.policy.evaluate_actions(
                th.as_tensor(buffer.observations.reshape(-1, *buffer.observations.shape[2:])), stored_actions
            )
        np.testing.assert_allclose(sb3_log_prob.numpy(), buffer.log_probs.ravel(), rtol=1e-4, atol=1e-4)

        updates_before = (model._n_updates, sb3_model._n_updates)
        rng_state = th.get_rng_state()
        model.train()
        th.set_rng_state(rng_state)
        sb3_model.train()
        epochs = (model._n_updates - updates_before[0], sb3_model._n_updates - updates_before[1])
        assert epochs[0] == epochs[1], f"epochs run before the KL early stop: ClippedPPO {epochs[0]}, SB3 PPO {epochs[1]}"
        early_stops += epochs[0] < model.n_epochs
        ours, theirs = parameters(model), parameters(sb3_model)
        difference = max(np.abs(ours[k] - theirs[k]).max() for k in ours)
        assert difference <= 1e-4, f"max |parameter difference| after the update: {difference:.2e}"
    if hyperparams.get("target_kl"):
        assert early_stops > 0  # the early stop was exercised, not just configured
    initial = parameters(PPO("MlpPolicy", make_env(), seed=0, **hyperparams))
    assert max(np.abs(ours[k] - initial[k]).max() for k in ours) > 1e-3  # the updates moved the parameters


# sb3-contrib's masked environments (MaskablePPO's own tests): Discrete(20) observations and actions with 10 of the 20
# actions invalid at each step; MultiDiscrete([3, 4]) observations and actions with 3 of the 7 choices invalid
MASKED_SETTINGS = {
    "masked-discrete-4-envs": ("InvalidActionEnvDiscrete", dict(dim=20, n_invalid_actions=10)),
    "masked-multidiscrete-4-envs": ("InvalidActionEnvMultiDiscrete", dict(dims=[3, 4], n_invalid_actions=3)),
}


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "autograd"])
@pytest.mark.parametrize("setting", list(MASKED_SETTINGS))
def test_masked_update_matches_maskable_ppo(setting, fast_path, monkeypatch):
    """Invalid-action masking (sb3_clippedppo.masking) against sb3-contrib's MaskablePPO.train(): the same initial
    weights, the same masked rollout (ClippedPPO's, masks included, copied into MaskablePPO's buffer) and the same
    minibatch permutations give the same parameters after each update, through the fast path and through autograd."""
    sb3_contrib = pytest.importorskip("sb3_contrib")
    from sb3_contrib.common.envs import invalid_actions_env

    env_class, env_kwargs = MASKED_SETTINGS[setting]
    n_envs, hyperparams = 4, dict(n_steps=32, batch_size=64, n_epochs=3, gamma=0.4, ent_coef=0.01, clip_range_vf=0.3)

    def make_env():
        return make_vec_env(getattr(invalid_actions_env, env_class), n_envs=n_envs, seed=0, env_kwargs=env_kwargs)

    model, sb3_model, callback = paired_models(sb3_contrib.MaskablePPO, make_env, fast_path, hyperparams, n_envs, monkeypatch)
    discrete = env_class == "InvalidActionEnvDiscrete"

    for _ in range(3):
        model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
        buffer, sb3_buffer = model.rollout_buffer, sb3_model.rollout_buffer
        assert buffer.keeps_masks and not buffer.action_masks.all()  # masked, with invalid actions
        flat_masks = buffer.action_masks.reshape(-1, buffer.action_masks.shape[-1])
        if discrete:
            assert flat_masks[np.arange(len(flat_masks)), buffer.actions.reshape(-1)].all()  # only valid actions taken
        copy_rollout(model, sb3_buffer, discrete, masks=True)
        # MaskablePPO's masked log-probability of the stored actions under the same weights is the stored one
        stored_actions = th.as_tensor(buffer.actions.reshape(-1, *buffer.actions.shape[2:]))
        if discrete:
            stored_actions = stored_actions.long().flatten()
        with th.no_grad():
            _, sb3_log_prob, _ = sb3_model.policy.evaluate_actions(
                th.as_tensor(buffer.observations.reshape(-1, *buffer.observations.shape[2:])), stored_actions,
                action_masks=flat_masks,
            )  # fmt: skip
        np.testing.assert_allclose(sb3_log_prob.numpy(), buffer.log_probs.ravel(), rtol=1e-4, atol=1e-4)

        rng_state = th.get_rng_state()
        model.train()
        th.set_rng_state(rng_state)
        sb3_model.train()
        ours, theirs = parameters(model), parameters(sb3_model)
        difference = max(np.abs(ours[k] - theirs[k]).max() for k in ours)
        assert difference <= 1e-4, f"max |parameter difference| after the update: {difference:.2e}"
    initial = parameters(sb3_contrib.MaskablePPO("MlpPolicy", make_env(), seed=0, **hyperparams))
    assert max(np.abs(ours[k] - initial[k]).max() for k in ours) > 1e-3  # the updates moved the parameters
