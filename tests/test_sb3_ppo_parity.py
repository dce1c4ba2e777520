"""ClippedPPO's update against Stable-Baselines3's own ``PPO.train()``: the same weights, the same rollout (GAE
included) and the same minibatch permutations give the same parameters after the update, in both SB3's default
setting and the walker seed's (target_kl early stopping, 2x64 tanh, orthogonal initialization)."""

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common import buffers as sb3_buffers
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from sb3_clippedppo import ClippedPPO

SETTINGS = {
    "sb3-defaults": dict(n_steps=256, batch_size=64, n_epochs=4),
    # the walker seed's settings, scaled down; target_kl 0.002 so that early stopping really happens
    "walker-style": dict(n_steps=500, batch_size=125, n_epochs=10, gamma=0.99, gae_lambda=0.95, clip_range=0.2,
                         target_kl=0.002, learning_rate=1e-3,
                         policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=th.nn.Tanh)),
}  # fmt: skip


def copy_weights_into_sb3(model: ClippedPPO, sb3_model: PPO) -> None:
    ours = [m for m in model.policy.actor if isinstance(m, th.nn.Linear)]
    theirs = [m for m in sb3_model.policy.mlp_extractor.policy_net if isinstance(m, th.nn.Linear)]
    theirs.append(sb3_model.policy.action_net)
    ours_vf = [m for m in model.policy.critic if isinstance(m, th.nn.Linear)]
    theirs_vf = [m for m in sb3_model.policy.mlp_extractor.value_net if isinstance(m, th.nn.Linear)]
    theirs_vf.append(sb3_model.policy.value_net)
    with th.no_grad():
        for source, target in zip(ours + ours_vf, theirs + theirs_vf, strict=True):
            target.weight.copy_(source.weight)
            target.bias.copy_(source.bias)
        sb3_model.policy.log_std.copy_(model.policy.log_std)


def sb3_parameters(sb3_model: PPO) -> np.ndarray:
    policy = sb3_model.policy
    actor = [*policy.mlp_extractor.policy_net.parameters(), *policy.action_net.parameters()]
    critic = [*policy.mlp_extractor.value_net.parameters(), *policy.value_net.parameters()]
    return np.concatenate([p.detach().numpy().ravel() for p in [*actor, *critic, policy.log_std]])


def our_parameters(model: ClippedPPO) -> np.ndarray:
    policy = model.policy
    params = [*policy.actor.parameters(), *policy.critic.parameters(), policy.log_std]
    return np.concatenate([p.detach().numpy().ravel() for p in params])


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_update_matches_sb3_ppo(setting, monkeypatch):
    hyperparams = SETTINGS[setting]
    model = ClippedPPO("MlpPolicy", VecNormalize(make_vec_env("HalfCheetah-v4", n_envs=1, seed=0)), seed=0, **hyperparams)
    sb3_model = PPO("MlpPolicy", VecNormalize(make_vec_env("HalfCheetah-v4", n_envs=1, seed=0)), seed=0, **hyperparams)
    copy_weights_into_sb3(model, sb3_model)
    np.testing.assert_array_equal(our_parameters(model), sb3_parameters(sb3_model))
    _, callback = model._setup_learn(10**6, None)
    sb3_model._setup_learn(10**6, None)
    # SB3 draws each epoch's permutation with NumPy; make it draw ClippedPPO's (torch.randperm, global generator)
    monkeypatch.setattr(sb3_buffers.np.random, "permutation", lambda n: th.randperm(n).numpy())

    early_stops = 0
    for _ in range(3):
        model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
        ours, theirs = model.rollout_buffer, sb3_model.rollout_buffer
        theirs.reset()
        # The same transitions, and SB3's own GAE on them (with ClippedPPO's values and log-probabilities)
        for step in range(model.n_steps):
            theirs.add(
                ours.observations[step], ours.actions[step], ours.rewards[step], ours.episode_starts[step],
                th.as_tensor(ours.values[step]), th.as_tensor(ours.log_probs[step]),
            )  # fmt: skip
        with th.no_grad():
            last_values = model.policy.predict_values(model.policy.obs_to_tensor(model._last_obs)[0])
        theirs.compute_returns_and_advantage(last_values=last_values.flatten(), dones=model._last_episode_starts)
        np.testing.assert_allclose(theirs.advantages, ours.advantages, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(theirs.returns, ours.returns, rtol=1e-5, atol=1e-5)
        # SB3's log-probability of the stored actions under the same weights is the stored one
        with th.no_grad():
            _, sb3_log_prob, _ = sb3_model.policy.evaluate_actions(
                th.as_tensor(ours.observations[:, 0]), th.as_tensor(ours.actions[:, 0])
            )
        np.testing.assert_allclose(sb3_log_prob.numpy(), ours.log_probs[:, 0], rtol=1e-4, atol=1e-4)

        updates_before = (model._n_updates, sb3_model._n_updates)
        rng_state = th.get_rng_state()
        model.train()
        th.set_rng_state(rng_state)
        sb3_model.train()
        epochs = (model._n_updates - updates_before[0], sb3_model._n_updates - updates_before[1])
        assert epochs[0] == epochs[1], f"epochs run before the KL early stop: ClippedPPO {epochs[0]}, SB3 PPO {epochs[1]}"
        early_stops += epochs[0] < model.n_epochs
        difference = np.abs(our_parameters(model) - sb3_parameters(sb3_model)).max()
        assert difference <= 1e-4, f"max |parameter difference| after the update: {difference:.2e}"
    if hyperparams.get("target_kl"):
        assert early_stops > 0  # the early stop was exercised, not just configured
