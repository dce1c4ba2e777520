"""A plain reference implementation of ClippedPPO's update, kept in the tests to check the fast path against.

The straightforward way, as in Stable-Baselines3's PPO: separate parameter tensors, a standard (per-tensor) Adam,
``torch.distributions.Normal`` for log-probabilities and entropy, autograd, ``torch.nn.utils.clip_grad_norm_``.
"""

import copy

import numpy as np
import torch as th
from torch import nn
from torch.nn import functional as F


class ReferenceActorCritic(nn.Module):
    """A copy of a ClippedPPO MLP policy's networks and ``log_std`` as ordinary, separate parameters, in the order of
    ``policy.parameters()``."""

    def __init__(self, policy):
        super().__init__()
        self.log_std = nn.Parameter(policy.log_std.detach().clone())
        self.actor = copy.deepcopy(nn.Sequential(*policy.mlp_extractor.policy_net, policy.action_net))
        self.critic = copy.deepcopy(nn.Sequential(*policy.mlp_extractor.value_net, policy.value_net))
        # deepcopy keeps parameter *data* views into the policy's flat buffer: give each its own storage
        for param in self.parameters():
            param.data = param.data.clone()
            param.grad = None


def reference_train(model: ReferenceActorCritic, optimizer: th.optim.Optimizer, buffer, hyperparams: dict) -> int:
    """
    One update on ``buffer`` (a filled :class:`~sb3_clippedppo.buffers.RolloutBuffer`) with the same minibatch
    permutations as ClippedPPO (``torch.randperm`` on the global generator, once per epoch).

    :return: the number of optimizer steps taken.
    """
    n = buffer.n_transitions
    device = next(model.parameters()).device
    # stored in the spaces' dtypes (SB3's layout), used as float32 (as SB3's preprocessing does)
    obs, actions = (th.as_tensor(x.reshape(n, -1), device=device).float() for x in (buffer.observations, buffer.actions))
    old_values, old_log_prob, all_advantages, returns = (
        th.as_tensor(x.reshape(n), device=device) for x in (buffer.values, buffer.log_probs, buffer.advantages, buffer.returns)
    )
    steps = 0
    for _ in range(hyperparams["n_epochs"]):
        permutation = th.randperm(n).to(device)  # on the CPU generator, as ClippedPPO's minibatches
        for start in range(0, n, hyperparams["batch_size"]):
            idx = permutation[start : start + hyperparams["batch_size"]]
            mean = model.actor(obs[idx])
            values = model.critic(obs[idx]).flatten()
            dist = th.distributions.Normal(mean, model.log_std.exp().expand_as(mean))
            log_prob = dist.log_prob(actions[idx]).sum(dim=1)
            entropy = dist.entropy().sum(dim=1)
            advantages = all_advantages[idx]
            if hyperparams["normalize_advantage"] and len(advantages) > 1:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
            ratio = th.exp(log_prob - old_log_prob[idx])
            clip_range = hyperparams["clip_range"]
            policy_loss = -th.min(advantages * ratio, advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)).mean()
            clip_range_vf = hyperparams.get("clip_range_vf")
            if clip_range_vf is None:
                values_pred = values
            else:
                values_pred = old_values[idx] + th.clamp(values - old_values[idx], -clip_range_vf, clip_range_vf)
            value_loss = F.mse_loss(returns[idx], values_pred)
            entropy_loss = -th.mean(entropy)
            loss = policy_loss + hyperparams["ent_coef"] * entropy_loss + hyperparams["vf_coef"] * value_loss
            optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(model.parameters(), hyperparams["max_grad_norm"])
            optimizer.step()
            steps += 1
    return steps


def parameters_of(module: nn.Module) -> np.ndarray:
    """All parameters, in the order of ``ReferenceActorCritic``: ``log_std``, the actor's, the critic's."""
    if isinstance(module, ReferenceActorCritic):
        params = list(module.parameters())
    else:  # a ClippedPPO policy
        params = [module.log_std, *module.mlp_extractor.policy_net.parameters(), *module.action_net.parameters(),
                  *module.mlp_extractor.value_net.parameters(), *module.value_net.parameters()]  # fmt: skip
    return np.concatenate([p.detach().cpu().numpy().ravel() for p in params])
