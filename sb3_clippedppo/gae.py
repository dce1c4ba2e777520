"""Generalized Advantage Estimation (Schulman et al. 2016, "High-Dimensional Continuous Control Using Generalized
Advantage Estimation", eq. 16), as a pure function on NumPy arrays: :func:`compute_gae`. The rollout buffer
(:mod:`sb3_clippedppo.buffers`) calls it once per rollout."""

import numpy as np


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    episode_starts: np.ndarray,
    last_values: np.ndarray,
    dones: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> tuple[np.ndarray, np.ndarray]:
    r"""
    Generalized Advantage Estimation (Schulman et al. 2016, "High-Dimensional Continuous Control Using
    Generalized Advantage Estimation", eq. 16) and the TD(lambda) returns used as value targets.

    With :math:`m_{t+1} = 1 - \text{episode\_start}_{t+1}` (0 when step ``t`` ended an episode):

    .. math::

        \delta_t = r_t + \gamma\, m_{t+1} V(s_{t+1}) - V(s_t), \qquad
        \hat A_t = \delta_t + \gamma \lambda\, m_{t+1} \hat A_{t+1}, \qquad
        \hat R_t = \hat A_t + V(s_t).

    For the last step of the rollout, :math:`V(s_{t+1})` is ``last_values`` and :math:`m_{t+1} = 1 - \text{dones}`.
    An episode that was cut by a time limit (truncated, not terminated) is bootstrapped by the caller, who adds
    :math:`\gamma V(s_\text{terminal})` to that step's reward (as Stable-Baselines3 does): the recursion stops at
    every episode end, and only a true termination contributes a zero value.

    :param rewards: rewards :math:`r_t`, shape ``(n_steps, n_envs)``, float.
    :param values: value estimates :math:`V(s_t)` of the observations the actions were taken in,
        shape ``(n_steps, n_envs)``, float.
    :param episode_starts: 1.0 where ``s_t`` is the first observation of an episode, else 0.0,
        shape ``(n_steps, n_envs)``.
    :param last_values: :math:`V(s_{n})` of the observation after the last step, shape ``(n_envs,)``.
    :param dones: 1.0 where the last step of the rollout ended an episode, shape ``(n_envs,)``.
    :param gamma: discount factor, in [0, 1].
    :param gae_lambda: GAE's bias-variance trade-off :math:`\lambda`, in [0, 1] (1: Monte Carlo advantage,
        0: one-step TD error).
    :return: ``(advantages, returns)``, each of shape ``(n_steps, n_envs)`` and float32.
    :raises ValueError: if the shapes do not agree.
    """
    rewards = np.asarray(rewards, dtype=np.float32)
    values = np.asarray(values, dtype=np.float32)
    episode_starts = np.asarray(episode_starts, dtype=np.float32)
    n_steps = rewards.shape[0]
    if rewards.ndim != 2 or values.shape != rewards.shape or episode_starts.shape != rewards.shape:
        raise ValueError(
            "rewards, values and episode_starts must share the shape (n_steps, n_envs); got "
            f"{rewards.shape}, {values.shape} and {episode_starts.shape}"
        )
    n_envs = rewards.shape[1]
    last_values = np.asarray(last_values, dtype=np.float32).reshape(-1)
    dones = np.asarray(dones, dtype=np.float32).reshape(-1)
    if last_values.shape != (n_envs,) or dones.shape != (n_envs,):
        raise ValueError(
            f"last_values and dones must have shape (n_envs,) = ({n_envs},); got {last_values.shape} and {dones.shape}"
        )

    # next_non_terminal[t] = 1 - episode_starts[t + 1], and 1 - dones after the last step.
    next_non_terminal = np.empty_like(rewards)
    next_non_terminal[:-1] = 1.0 - episode_starts[1:]
    next_non_terminal[-1] = 1.0 - dones
    next_values = np.empty_like(values)
    next_values[:-1] = values[1:]
    next_values[-1] = last_values
    # All TD errors at once; only the discounted sum over time needs the backward loop.
    deltas = rewards + gamma * next_values * next_non_terminal - values
    decay = (gamma * gae_lambda) * next_non_terminal

    advantages = np.empty_like(rewards)
    last_advantage = np.zeros(n_envs, dtype=np.float32)
    for step in range(n_steps - 1, -1, -1):
        last_advantage = deltas[step] + decay[step] * last_advantage
        advantages[step] = last_advantage
    returns = advantages + values
    return advantages, returns
