"""Actor-critic policy for ClippedPPO: a diagonal Gaussian (Box actions) or categorical (Discrete actions) actor
and a value critic, as two separate MLPs.

Log-probabilities and entropies are computed in closed form (no ``torch.distributions`` objects), and all
parameters live in one contiguous buffer (gradients likewise) so that gradient clipping and the optimizer step
are a handful of large operations instead of several small ones per layer.
"""

import math
from collections.abc import Callable, Collection
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

LOG_2PI = math.log(2.0 * math.pi)
# Range of a state-dependent log standard deviation (as Stable-Baselines3's SAC): std in [2e-9, 7.4]
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


def gaussian_log_prob(actions: th.Tensor, mean: th.Tensor, log_std: th.Tensor) -> th.Tensor:
    r"""
    Log-density of actions under a diagonal Gaussian, summed over action dimensions:
    :math:`\log \pi(a|s) = -\frac12 \sum_i \left(\frac{a_i - \mu_i}{\sigma_i}\right)^2 - \sum_i \log \sigma_i
    - \frac{k}{2} \log 2\pi`.

    :param actions: actions, shape ``(B, k)``, float.
    :param mean: Gaussian means :math:`\mu`, shape ``(B, k)``.
    :param log_std: :math:`\log \sigma`, shape ``(k,)`` (state-independent) or ``(B, k)``.
    :return: log-probabilities, shape ``(B,)``, in nats.
    """
    z = (actions - mean) * th.exp(-log_std)
    return -0.5 * (z * z).sum(dim=-1) - log_std.sum(dim=-1) - 0.5 * LOG_2PI * mean.shape[-1]


def gaussian_entropy(log_std: th.Tensor) -> th.Tensor:
    r"""
    Differential entropy of a diagonal Gaussian, :math:`\sum_i \left(\frac12 + \frac12 \log 2\pi + \log \sigma_i\right)`.

    :param log_std: :math:`\log \sigma`, shape ``(k,)`` or ``(B, k)``.
    :return: entropy in nats, shape ``()`` or ``(B,)``.
    """
    return (0.5 + 0.5 * LOG_2PI + log_std).sum(dim=-1)


def categorical_log_prob(logits: th.Tensor, actions: th.Tensor) -> th.Tensor:
    """
    Log-probability of action indices under a categorical distribution.

    :param logits: unnormalized log-probabilities, shape ``(B, n)``.
    :param actions: action indices, shape ``(B,)``, integer.
    :return: log-probabilities, shape ``(B,)``.
    """
    return th.log_softmax(logits, dim=-1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def categorical_entropy(logits: th.Tensor) -> th.Tensor:
    """
    Entropy :math:`-\\sum_j p_j \\log p_j` of a categorical distribution given by logits.

    :param logits: shape ``(B, n)``.
    :return: entropy in nats, shape ``(B,)``.
    """
    log_p = th.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


def gaussian_kl(mean_p: th.Tensor, log_std_p: th.Tensor, mean_q: th.Tensor, log_std_q: th.Tensor) -> th.Tensor:
    r"""
    :math:`KL(p \,\|\, q)` between diagonal Gaussians, summed over action dimensions:
    :math:`\sum_j \log\frac{\sigma_{q,j}}{\sigma_{p,j}}
    + \frac{\sigma_{p,j}^2 + (\mu_{p,j} - \mu_{q,j})^2}{2 \sigma_{q,j}^2} - \frac12`.

    :param mean_p: means of p, shape ``(B, k)``.
    :param log_std_p: log standard deviations of p, shape ``(B, k)`` or ``(k,)``.
    :param mean_q: means of q, shape ``(B, k)``.
    :param log_std_q: log standard deviations of q, shape ``(B, k)`` or ``(k,)``.
    :return: KL divergences in nats, shape ``(B,)``.
    """
    variance_ratio = th.exp(2.0 * (log_std_p - log_std_q))
    squared_distance = ((mean_p - mean_q) * th.exp(-log_std_q)) ** 2
    return (log_std_q - log_std_p + 0.5 * (variance_ratio + squared_distance) - 0.5).sum(dim=-1)


def categorical_kl(logits_p: th.Tensor, logits_q: th.Tensor) -> th.Tensor:
    r"""
    :math:`KL(p \,\|\, q) = \sum_j p_j (\log p_j - \log q_j)` between categorical distributions given by logits.

    :param logits_p: shape ``(B, n)``.
    :param logits_q: shape ``(B, n)``.
    :return: KL divergences in nats, shape ``(B,)``.
    """
    log_p = th.log_softmax(logits_p, dim=-1)
    return (log_p.exp() * (log_p - th.log_softmax(logits_q, dim=-1))).sum(dim=-1)


def build_mlp(input_dim: int, hidden_sizes: list[int], output_dim: int, activation_fn: type[nn.Module]) -> nn.Sequential:
    """
    ``Linear -> activation`` for each hidden size, then a linear output layer.

    :param input_dim: input features.
    :param hidden_sizes: widths of the hidden layers (may be empty: a linear map).
    :param output_dim: output features.
    :param activation_fn: activation class, instantiated once per hidden layer.
    :return: the network.
    """
    layers: list[nn.Module] = []
    last = input_dim
    for size in hidden_sizes:
        layers += [nn.Linear(last, size), activation_fn()]
        last = size
    layers.append(nn.Linear(last, output_dim))
    return nn.Sequential(*layers)


Layer = tuple[nn.Linear, nn.Module | None]


def mlp_layers(network: nn.Module, activations: Collection[type[nn.Module]]) -> list[Layer] | None:
    """
    A ``Linear -> activation -> ... -> Linear`` network (as :func:`build_mlp` makes) as ``(linear, activation or None)``
    pairs, or None when it holds anything else: another module, an activation not in ``activations``, an in-place
    activation, a Linear without bias.

    :param network: the network.
    :param activations: the activation classes the caller can handle.
    :return: the layers, or None.
    """
    if not isinstance(network, nn.Sequential):
        return None
    layers: list[Layer] = []
    for module in network:
        if isinstance(module, nn.Linear) and module.bias is not None:
            layers.append((module, None))
        elif type(module) in activations and layers and layers[-1][1] is None and not getattr(module, "inplace", False):
            layers[-1] = (layers[-1][0], module)
        else:
            return None
    return layers or None


# NumPy versions of activations (in place where possible), for the rollout's NumPy copy of the actor.
NUMPY_ACTIVATIONS: dict[type[nn.Module], Callable[[np.ndarray, nn.Module], np.ndarray]] = {
    nn.Tanh: lambda x, module: np.tanh(x, out=x),
    nn.ReLU: lambda x, module: np.maximum(x, 0.0, out=x),
    nn.LeakyReLU: lambda x, module: np.where(x > 0, x, x * np.float32(module.negative_slope)),  # type: ignore[arg-type]
    nn.ELU: lambda x, module: np.where(x > 0, x, np.float32(module.alpha) * np.expm1(x)),  # type: ignore[arg-type]
}


class NumpyMLP:
    """
    A float32 NumPy copy of a ``Linear -> activation -> ... -> Linear`` network, for evaluating it on a few
    observations at a time: for one observation it is several times faster than a torch forward pass. It does not
    follow later changes of the network's parameters.

    :param layers: the network's layers, from :func:`mlp_layers` with ``NUMPY_ACTIVATIONS``.
    """

    def __init__(self, layers: list[Layer]):
        self.layers = [
            (
                linear.weight.detach().cpu().numpy().T.astype(np.float32, order="C"),
                linear.bias.detach().cpu().numpy().astype(np.float32),
                None if activation is None else NUMPY_ACTIVATIONS[type(activation)],
                activation,
            )
            for linear, activation in layers
        ]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Outputs for inputs ``x`` of shape ``(B, in_features)`` (float32), shape ``(B, out_features)``."""
        for weight, bias, activation, module in self.layers:
            x = x @ weight
            x += bias
            if activation is not None:
                x = activation(x, module)
        return x


def parse_net_arch(net_arch: list[int] | dict[str, list[int]] | None) -> tuple[list[int], list[int]]:
    """
    Hidden layer sizes of the actor and the critic, from Stable-Baselines3's ``net_arch`` forms:
    ``None`` (64, 64 for both), a list (the same sizes for both, not shared), or ``dict(pi=[...], vf=[...])``.

    :param net_arch: the architecture.
    :return: ``(pi_sizes, vf_sizes)``.
    :raises TypeError: for any other form.
    :raises ValueError: for a non-positive layer size.
    """
    if net_arch is None:
        pi, vf = [64, 64], [64, 64]
    elif isinstance(net_arch, dict):
        unknown = set(net_arch) - {"pi", "vf"}
        if unknown:
            raise TypeError(f"net_arch dict accepts only the keys 'pi' and 'vf', got {sorted(unknown)}")
        pi, vf = list(net_arch.get("pi", [])), list(net_arch.get("vf", []))
    elif isinstance(net_arch, (list, tuple)):
        pi, vf = list(net_arch), list(net_arch)
    else:
        raise TypeError(f"net_arch must be None, a list of ints or dict(pi=[...], vf=[...]), got {net_arch!r}")
    for size in pi + vf:
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool):
            raise TypeError(
                f"net_arch layer sizes must be ints (a shared-layer dict inside a list is not supported), got {size!r}"
            )
        if size < 1:
            raise ValueError(f"net_arch layer sizes must be >= 1, got {size}")
    return [int(s) for s in pi], [int(s) for s in vf]


class MlpActorCriticPolicy(BasePolicy):
    """
    Actor-critic policy with separate actor and critic MLPs (``MlpPolicy`` of :class:`~sb3_clippedppo.ClippedPPO`).

    - Box actions: the actor outputs the mean of a diagonal Gaussian whose log standard deviation ``log_std``
      is a free, state-independent parameter of shape ``(action_dim,)``, initialized to ``log_std_init``.
      With ``state_dependent_std=True`` the actor outputs the log standard deviation too (its second half),
      clamped to ``[LOG_STD_MIN, LOG_STD_MAX] = [-20, 2]``, with the output bias initialized to ``log_std_init``.
      Sampled actions are not squashed; they are clipped to the action bounds only when sent to the environment.
    - Discrete actions: the actor outputs the logits of a categorical distribution.

    With ``ortho_init``, weights are orthogonal with gain sqrt(2) in hidden layers, 0.01 in the actor's output
    layer and 1 in the critic's, biases zero (as in Stable-Baselines3 and OpenAI Baselines); otherwise PyTorch's
    default initialization is kept.

    :param observation_space: a ``Box`` observation space (flattened to ``obs_dim`` features, cast to float32).
    :param action_space: a ``Box`` or ``Discrete`` action space.
    :param lr_schedule: learning-rate schedule; its value at progress 1 is the optimizer's initial rate.
    :param net_arch: hidden sizes: ``None`` (64, 64), a list used for both networks, or ``dict(pi=[...], vf=[...])``.
    :param activation_fn: activation class for hidden layers (default ``nn.Tanh``).
    :param ortho_init: whether to use orthogonal initialization.
    :param log_std_init: initial value of ``log_std`` (Box actions only).
    :param state_dependent_std: whether the actor outputs the log standard deviation per state (Box actions only).
    :param optimizer_class: optimizer class (default Adam with eps=1e-5, as SB3's PPO).
    :param optimizer_kwargs: extra optimizer arguments, excluding the learning rate.
    :raises TypeError: for unsupported spaces or arguments of the wrong type.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.Tanh,
        ortho_init: bool = True,
        log_std_init: float = 0.0,
        state_dependent_std: bool = False,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
    ):
        if optimizer_kwargs is None:
            optimizer_kwargs = {"eps": 1e-5} if optimizer_class is th.optim.Adam else {}
        super().__init__(
            observation_space,
            action_space,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            squash_output=False,
        )
        if not isinstance(observation_space, spaces.Box):
            raise TypeError(f"observation_space must be a gymnasium.spaces.Box, got {observation_space}")
        if not isinstance(action_space, (spaces.Box, spaces.Discrete)):
            raise TypeError(f"action_space must be a gymnasium.spaces.Box or Discrete, got {action_space}")
        if not (isinstance(activation_fn, type) and issubclass(activation_fn, nn.Module)):
            raise TypeError(f"activation_fn must be a torch.nn.Module class such as nn.Tanh, got {activation_fn!r}")

        self.net_arch = net_arch
        self.activation_fn = activation_fn
        self.ortho_init = ortho_init
        self.log_std_init = float(log_std_init)
        self.obs_dim = int(np.prod(observation_space.shape))
        self.is_discrete = isinstance(action_space, spaces.Discrete)
        self.action_dim = int(action_space.n) if self.is_discrete else int(np.prod(action_space.shape))
        if state_dependent_std and self.is_discrete:
            raise ValueError("state_dependent_std=True needs a Box action space (it sets a Gaussian's std)")
        self.state_dependent_std = bool(state_dependent_std)

        pi_sizes, vf_sizes = parse_net_arch(net_arch)
        actor_outputs = 2 * self.action_dim if self.state_dependent_std else self.action_dim
        self.actor = build_mlp(self.obs_dim, pi_sizes, actor_outputs, activation_fn)
        self.critic = build_mlp(self.obs_dim, vf_sizes, 1, activation_fn)
        if not self.is_discrete and not self.state_dependent_std:
            self.log_std = nn.Parameter(th.full((self.action_dim,), self.log_std_init))
        if ortho_init:
            self._orthogonal_init()
        if self.state_dependent_std:
            with th.no_grad():
                self.actor[-1].bias[self.action_dim :] = self.log_std_init

        self._flatten_parameters()
        self.optimizer = self._make_optimizer(lr_schedule(1))

    # ------------------------------------------------------------------ construction

    def _orthogonal_init(self) -> None:
        for network, output_gain in ((self.actor, 0.01), (self.critic, 1.0)):
            linears = [m for m in network if isinstance(m, nn.Linear)]
            for layer in linears:
                nn.init.orthogonal_(layer.weight, gain=output_gain if layer is linears[-1] else math.sqrt(2))
                nn.init.zeros_(layer.bias)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The actor's parameters (including ``log_std``) and the critic's, in a fixed order."""
        has_log_std = not self.is_discrete and not self.state_dependent_std
        actor = list(self.actor.parameters()) + ([self.log_std] if has_log_std else [])
        return {"actor": actor, "critic": list(self.critic.parameters())}

    def _make_optimizer(self, learning_rate: float) -> th.optim.Optimizer:
        kwargs = dict(self.optimizer_kwargs)
        device_type = self._flat_data.device.type
        if (
            self.optimizer_class in (th.optim.Adam, th.optim.AdamW)
            and "fused" not in kwargs
            and "foreach" not in kwargs
            and device_type in ("cpu", "cuda")
        ):
            # One fused kernel for the whole update (numerically the same Adam).
            kwargs["fused"] = True
        groups = [{"params": [leaf], "name": name} for name, leaf in self._flat_leaves.items()]
        return self.optimizer_class(groups, lr=learning_rate, **kwargs)

    # ------------------------------------------------------------------ flat parameter storage

    def _flatten_parameters(self) -> None:
        """
        Move every parameter into one contiguous buffer (``_flat_data``) and every gradient into another
        (``_flat_grad``), keeping the modules' parameters as views, so that zeroing gradients, clipping their norm
        and the optimizer step each act on one tensor per parameter group. Called at construction, after a device
        or dtype change, and whenever :meth:`ensure_flat_parameters` finds the views broken.
        """
        groups = self.parameter_groups()
        params = [p for group in groups.values() for p in group]
        total = sum(p.numel() for p in params)
        data = th.empty(total, dtype=params[0].dtype, device=params[0].device)
        grad = th.zeros_like(data)
        offset = 0
        with th.no_grad():
            for param in params:
                size = param.numel()
                data[offset : offset + size].copy_(param.reshape(-1))
                param.data = data[offset : offset + size].view_as(param)
                param.grad = grad[offset : offset + size].view_as(param)
                offset += size
        leaves: dict[str, th.Tensor] = {}
        offset = 0
        for name, group in groups.items():
            size = sum(p.numel() for p in group)
            leaf = data[offset : offset + size].detach()
            leaf.grad = grad[offset : offset + size]
            leaves[name] = leaf
            offset += size

        old_leaves = getattr(self, "_flat_leaves", None)
        optimizer = getattr(self, "optimizer", None)
        # The optimizer's state (e.g. Adam moments), indexed by position, to carry over to the new leaves.
        optimizer_state = optimizer.state_dict() if optimizer is not None and old_leaves is not None else None
        self._flat_data, self._flat_grad, self._flat_leaves = data, grad, leaves
        self._flat_params = params
        if optimizer is not None and optimizer_state is not None and old_leaves is not None:
            replacement = {id(old_leaves[name]): leaf for name, leaf in leaves.items()}
            for group in optimizer.param_groups:
                group["params"] = [replacement.get(id(p), p) for p in group["params"]]
            optimizer.state.clear()
            # load_state_dict casts the state to each new leaf's device with the optimizer's own rules.
            optimizer.load_state_dict(optimizer_state)

    def flat_parameters_intact(self) -> bool:
        """Whether every parameter and gradient is still a view into the flat buffers, and the optimizer uses them."""
        offset = 0
        element_size = self._flat_data.element_size()
        data_ptr, grad_ptr = self._flat_data.data_ptr(), self._flat_grad.data_ptr()
        params = [p for group in self.parameter_groups().values() for p in group]
        if len(params) != len(self._flat_params):
            return False
        for param in params:
            grad = param.grad
            if param.data_ptr() != data_ptr + offset * element_size or grad is None:
                return False
            if grad.data_ptr() != grad_ptr + offset * element_size:
                return False
            offset += param.numel()
        leaves = list(self._flat_leaves.values())
        optimizer_params = [p for group in self.optimizer.param_groups for p in group["params"]]
        if [id(p) for p in optimizer_params] != [id(leaf) for leaf in leaves]:
            return False
        offset = 0
        for leaf in leaves:
            if leaf.grad is None or leaf.grad.data_ptr() != grad_ptr + offset * element_size:
                return False
            offset += leaf.numel()
        return True

    def ensure_flat_parameters(self) -> None:
        """Restore the flat storage if something replaced a parameter or gradient tensor (e.g. ``deepcopy``,
        ``optimizer.zero_grad(set_to_none=True)`` or ``load_from_vector``); values and optimizer state are kept."""
        if not self.flat_parameters_intact():
            self._flatten_parameters()

    def zero_flat_grad(self) -> None:
        """Set every gradient to zero in place (one operation)."""
        self._flat_grad.zero_()

    def clip_grad_norm_(self, max_norm: float) -> float:
        """
        Scale all gradients so that their global L2 norm is at most ``max_norm``, as ``torch.nn.utils.clip_grad_norm_``
        does, on the flat gradient buffer.

        :param max_norm: the largest allowed norm.
        :return: the norm before clipping, as a Python float (NaN or inf when a gradient is not finite).
        """
        norm = float(th.linalg.vector_norm(self._flat_grad))
        scale = max_norm / (norm + 1e-6)
        if scale < 1.0:
            self._flat_grad.mul_(scale)
        return norm

    def optimizer_parameters(self) -> list[th.Tensor]:
        """The tensors the optimizer updates: one flat leaf per parameter group, each with its flat gradient."""
        return list(self._flat_leaves.values())

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        # .to(device), .double(), ... replace parameter storage: rebuild the flat buffers on the new device.
        module = super()._apply(fn, recurse)
        if hasattr(self, "_flat_data") and not self.flat_parameters_intact():
            self._flatten_parameters()
        return module

    # ------------------------------------------------------------------ forward passes

    def preprocess(self, obs: th.Tensor) -> th.Tensor:
        """Flatten observations to ``(B, obs_dim)`` float32 on the policy's device."""
        return obs.to(device=self._flat_data.device, dtype=th.float32).reshape(-1, self.obs_dim)

    def action_params(self, obs: th.Tensor) -> th.Tensor:
        """
        The actor's output for preprocessed observations ``(B, obs_dim)``: Gaussian means ``(B, action_dim)`` (Box),
        means and log standard deviations ``(B, 2 * action_dim)`` (Box with ``state_dependent_std``), or logits
        ``(B, n)`` (Discrete).
        """
        return self.actor(obs)

    def gaussian_params(self, params: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """
        ``(mean, log_std)`` of the Gaussian from :meth:`action_params`' output (Box actions).

        :return: means ``(B, action_dim)`` and log standard deviations ``(action_dim,)`` (state-independent) or
            ``(B, action_dim)`` (state-dependent, clamped to ``[LOG_STD_MIN, LOG_STD_MAX]``).
        """
        if self.state_dependent_std:
            mean, log_std = params.split(self.action_dim, dim=-1)
            return mean, th.clamp(log_std, LOG_STD_MIN, LOG_STD_MAX)
        return params, self.log_std

    def distribution_params(self, params: th.Tensor) -> th.Tensor:
        """
        Everything that defines the action distributions, per observation, as one tensor: ``[mean, log_std]`` of
        shape ``(B, 2 * action_dim)`` (Box) or the logits ``(B, n)`` (Discrete). The rollout buffer keeps them for
        :meth:`kl_divergence`.
        """
        if self.is_discrete:
            return params
        mean, log_std = self.gaussian_params(params)
        return th.cat([mean, log_std.expand_as(mean)], dim=-1)

    def kl_divergence(self, old_distribution: th.Tensor, params: th.Tensor) -> th.Tensor:
        """
        Exact ``KL(pi_old(.|s) || pi(.|s))`` per observation.

        :param old_distribution: :meth:`distribution_params` of the old policy, shape ``(B, P)``.
        :param params: :meth:`action_params` of the current policy for the same observations.
        :return: shape ``(B,)``, in nats.
        """
        if self.is_discrete:
            return categorical_kl(old_distribution, params)
        mean, log_std = self.gaussian_params(params)
        old_mean, old_log_std = old_distribution.split(self.action_dim, dim=-1)
        return gaussian_kl(old_mean, old_log_std, mean, log_std)

    def value(self, obs: th.Tensor) -> th.Tensor:
        """State values ``V(s)``, shape ``(B,)``, for preprocessed observations ``(B, obs_dim)``."""
        return self.critic(obs).squeeze(-1)

    def predict_values(self, obs: PyTorchObs) -> th.Tensor:
        """State values of (raw) observations, shape ``(B, 1)``, as in Stable-Baselines3."""
        return self.critic(self.preprocess(obs))  # type: ignore[arg-type]

    def log_prob_and_entropy(self, params: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """
        Closed-form log-probability and entropy.

        :param params: output of :meth:`action_params`, shape ``(B, action_dim)`` or ``(B, n)``.
        :param actions: raw actions ``(B, action_dim)`` float, or indices ``(B,)`` for Discrete.
        :return: ``(log_prob, entropy)``, each of shape ``(B,)``.
        """
        if self.is_discrete:
            return categorical_log_prob(params, actions), categorical_entropy(params)
        mean, log_std = self.gaussian_params(params)
        log_prob = gaussian_log_prob(actions, mean, log_std)
        return log_prob, gaussian_entropy(log_std).expand(log_prob.shape[0])

    def evaluate_actions(self, obs: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """
        Values, log-probabilities and entropies for observations and actions (the update's forward pass).

        :param obs: observations, shape ``(B, *obs_shape)``.
        :param actions: actions, ``(B, action_dim)`` float or ``(B,)`` indices.
        :return: ``(values, log_prob, entropy)``, each of shape ``(B,)``.
        """
        x = self.preprocess(obs)
        log_prob, entropy = self.log_prob_and_entropy(self.actor(x), actions)
        return self.critic(x).squeeze(-1), log_prob, entropy

    def sample(self, params: th.Tensor, noise: th.Tensor) -> th.Tensor:
        """
        Actions from distribution parameters and pre-drawn noise: ``mean + exp(log_std) * noise`` with standard
        normal noise (Box), or ``argmax(logits + noise)`` with standard Gumbel noise (Discrete; the Gumbel-max trick).

        :param params: output of :meth:`action_params`.
        :param noise: noise of the same shape, from :meth:`draw_noise`.
        :return: actions, ``(B, action_dim)`` float or ``(B,)`` int64.
        """
        if self.is_discrete:
            return th.argmax(params + noise, dim=-1)
        mean, log_std = self.gaussian_params(params)
        return mean + th.exp(log_std) * noise

    def draw_noise(self, *batch_shape: int, device: th.device | str = "cpu") -> th.Tensor:
        """
        Noise for :meth:`sample` from torch's global generator: standard normal for Box actions,
        standard Gumbel for Discrete.

        :param batch_shape: leading dimensions, e.g. ``(n_steps, n_envs)``.
        :param device: device of the noise.
        :return: tensor of shape ``(*batch_shape, action_dim)`` (or ``(*batch_shape, n)``), float32.
        """
        shape = (*batch_shape, self.action_dim)
        if self.is_discrete:
            uniform = th.rand(shape, device=device).clamp_(min=1e-20, max=1.0 - 1e-7)
            return -th.log(-th.log(uniform))
        return th.randn(shape, device=device)

    def make_rollout_sampler(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """
        The per-step action sampler for collecting a rollout, during which the parameters do not change: a function
        from observations ``(n_envs, *obs_shape)`` and one step of noise from :meth:`draw_noise` (a CPU tensor or
        array of shape ``(n_envs, action_dim)``) to raw actions, ``(n_envs, action_dim)`` float32 (Box) or
        ``(n_envs,)`` int64 (Discrete), as :meth:`sample` computes them.

        When the actor is a plain MLP, the sampler evaluates a NumPy copy of its weights taken now (for one
        observation, several times faster than torch); make a new sampler after the parameters change.
        Otherwise it runs the torch actor.
        """
        layers = mlp_layers(self.actor, NUMPY_ACTIVATIONS)
        if layers is None:
            device = self._flat_data.device

            @th.no_grad()
            def torch_sampler(obs: np.ndarray, noise: np.ndarray) -> np.ndarray:
                params = self.action_params(self.preprocess(th.as_tensor(obs)))
                return self.sample(params, th.as_tensor(noise, device=device)).cpu().numpy()

            return torch_sampler

        actor = NumpyMLP(layers)
        obs_dim, action_dim = self.obs_dim, self.action_dim
        if self.is_discrete:
            return lambda obs, noise: np.argmax(actor(np.asarray(obs, np.float32).reshape(-1, obs_dim)) + noise, axis=-1)
        if self.state_dependent_std:

            def state_dependent_sampler(obs: np.ndarray, noise: np.ndarray) -> np.ndarray:
                out = actor(np.asarray(obs, np.float32).reshape(-1, obs_dim))
                log_std = np.clip(out[:, action_dim:], LOG_STD_MIN, LOG_STD_MAX)
                return out[:, :action_dim] + np.exp(log_std) * noise

            return state_dependent_sampler
        std = np.exp(self.log_std.detach().cpu().numpy())
        return lambda obs, noise: actor(np.asarray(obs, np.float32).reshape(-1, obs_dim)) + std * noise

    def forward(self, obs: th.Tensor, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """
        Actions, values and log-probabilities for a batch of observations (Stable-Baselines3's policy API).

        :param obs: observations, shape ``(B, *obs_shape)``.
        :param deterministic: return the mean (Box) or the most likely action (Discrete) instead of a sample.
        :return: ``(actions, values (B, 1), log_prob (B,))``.
        """
        x = self.preprocess(obs)
        params = self.actor(x)
        actions = self._select(params, deterministic)
        log_prob, _ = self.log_prob_and_entropy(params, actions)
        return actions, self.critic(x), log_prob

    def _select(self, params: th.Tensor, deterministic: bool) -> th.Tensor:
        if deterministic:
            return th.argmax(params, dim=-1) if self.is_discrete else self.gaussian_params(params)[0]
        return self.sample(params, self.draw_noise(params.shape[0], device=params.device))

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        """Actions for :meth:`predict`: the Gaussian mean (or argmax) when deterministic, else a sample."""
        return self._select(self.actor(self.preprocess(observation)), deterministic)  # type: ignore[arg-type]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.pop("normalize_images", None)
        data.update(
            lr_schedule=self._dummy_schedule,
            net_arch=self.net_arch,
            activation_fn=self.activation_fn,
            ortho_init=self.ortho_init,
            log_std_init=self.log_std_init,
            state_dependent_std=self.state_dependent_std,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
        )
        return data


MlpPolicy = MlpActorCriticPolicy
