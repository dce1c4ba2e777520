"""The fast path for MLP actor-critics: flat parameter storage, closed-form gradients and a NumPy rollout actor.

For the small networks of continuous control, PyTorch's per-operation overhead costs more than the arithmetic:
autograd records every operation of the forward pass and replays it, an optimizer step and a gradient-norm clip
touch each parameter tensor separately, and a forward pass for one observation takes tens of microseconds. This
module computes exactly the same update with fewer, larger operations:

- **Flat storage** (:class:`FlatParameters`): every parameter becomes a view into one contiguous buffer (its gradient
  into another), and the optimizer gets one flat tensor per parameter group (``"actor"``, ``"critic"``). Zeroing,
  clipping and the optimizer step are then one operation per group. Used only with optimizers that act on each element
  independently (:data:`ELEMENTWISE_OPTIMIZERS`: Adam, AdamW, SGD, ...), for which a flat tensor and separate tensors
  give the same update.
- **Closed-form gradients** (:class:`ClosedFormLoss`): the loss of :func:`~sb3_clippedppo.losses.ppo_loss` with its
  gradient written out (below), back-propagated by hand through each ``Linear -> activation`` layer. On the CPU this
  arithmetic runs in NumPy, on arrays that share memory with the flat buffers and the minibatch (a NumPy operation
  costs about a third of a torch one, and a minibatch of these networks is some sixty small operations); on a GPU it
  runs in torch. One implementation serves both: it uses only operations that NumPy and torch spell the same way.
- **NumPy rollout actor** (:class:`NumpyMLP`): a float32 NumPy copy of the actor for the rollout's per-step actions;
  the rollout's values and log-probabilities are computed afterwards in one batched torch pass.

While ClippedPPO learns on the fast path, torch runs on one thread and NumPy's BLAS library gets the threads
(:mod:`sb3_clippedppo.threads`), so that the two thread pools never spin against each other.

:func:`unsupported_reason` says where it applies: a policy of this package that SB3's ``MlpExtractor`` builds from
``Linear`` layers and Tanh/ReLU/LeakyReLU/ELU activations, on ``FlattenExtractor`` features of a non-image ``Box``
observation, with ``Box`` actions (state-independent ``log_std``) or ``Discrete`` actions, and either objective (the
clipped surrogate or PPO-Penalty's).
ClippedPPO chooses it automatically there (``fast_path="auto"``); ``fast_path=False`` trains through autograd and gives
the same numbers up to float32 rounding (``tests/test_fast_path.py``).

The gradient, for a minibatch of size ``B`` (Schulman et al. 2017, eq. 7 and 9):

- ``L = L_pg + vf_coef * L_v + ent_coef * L_ent``;
- ``L_pg = -1/B sum_i min(r_i A_i, clip(r_i, 1 - eps, 1 + eps) A_i)``: ``dL_pg / d log pi_i = -A_i r_i / B`` where the
  unclipped term is the minimum, else 0; PPO-Penalty (section 4), ``L_pg = -1/B sum_i r_i A_i + beta/B sum_i KL_i`` with
  ``KL_i = KL(pi_old(.|s_i) || pi(.|s_i))``: ``dL_pg / d log pi_i = -A_i r_i / B`` everywhere, plus the KL's gradient;
- Gaussian, ``log pi_i = -1/2 sum_j z_ij^2 - sum_j log_std_j - k/2 log 2 pi`` with ``z_ij = (a_ij - mu_ij) / sigma_j``:
  ``d log pi_i / d mu_ij = z_ij / sigma_j``, ``d log pi_i / d log_std_j = z_ij^2 - 1``; ``L_ent = -sum_j (1/2 + 1/2 log 2 pi
  + log_std_j)``: ``dL_ent / d log_std_j = -1``; ``dKL_i / d mu_ij = (mu_ij - mu_old,ij) / sigma_j^2``,
  ``dKL_i / d log_std_j = 1 - (sigma_old,ij^2 + (mu_ij - mu_old,ij)^2) / sigma_j^2``;
- categorical, ``log pi_i = l_{i a_i} - logsumexp(l_i)``: ``d log pi_i / d l_ij = [j = a_i] - p_ij``;
  ``L_ent = -1/B sum_i H_i`` with ``H_i = -sum_j p_ij log p_ij``: ``dL_ent / d l_ij = p_ij (log p_ij + H_i) / B``;
  ``dKL_i / d l_ij = p_ij - p_old,ij``;
- ``L_v = 1/B sum_i (R_i - V'_i)^2`` with ``V'`` the (optionally clipped) value prediction:
  ``dL_v / dV_i = 2 (V'_i - R_i) / B`` where the clipping is inactive, else 0;
- through ``h = act(z)``, ``z = x W^T + b``: ``dz = dh * act'(z)``, ``dW = dz^T x``, ``db = sum_i dz_i``, ``dx = dz W``.
"""

import math
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import FlattenExtractor, MlpExtractor
from torch import nn

from sb3_clippedppo.buffers import RolloutBatch, RolloutBuffer
from sb3_clippedppo.distributions import LOG_2PI, Categorical, DiagGaussian
from sb3_clippedppo.losses import LossCoefficients, LossTerms, ratio_statistics
from sb3_clippedppo.normalization import CLIP, NormalizingExtractor
from sb3_clippedppo.policies import ActorCriticPolicy, optimizer_arguments, uses_forward_distribution

# Optimizers whose update of each element depends only on that element's gradient and state: for them, one flat
# tensor per parameter group gives the same update as the separate parameter tensors.
ELEMENTWISE_OPTIMIZERS: tuple[type[th.optim.Optimizer], ...] = (
    th.optim.Adam,
    th.optim.AdamW,
    th.optim.Adamax,
    th.optim.NAdam,
    th.optim.RAdam,
    th.optim.SGD,
    th.optim.RMSprop,
    th.optim.Adagrad,
)


# ---------------------------------------------------------------------------------------------- activations and layers

# ``Array`` is a NumPy array (on the CPU) or a torch tensor (elsewhere); ``xp`` the module of either, ``numpy`` or
# ``torch``. The code below uses only operations that both spell the same way (operators, ``xp.tanh``, ``xp.where``,
# ``xp.clip``, ``xp.sum(x, axis=..., keepdims=...)``, ``xp.matmul(a, b, out=...)``, ...).
Array = Any


class Activation(NamedTuple):
    """An activation ``h = act(z)`` and its derivative, for NumPy arrays and torch tensors alike."""

    forward: Callable[[Array, nn.Module, Any], Array]  # (z, module, xp) -> h
    derivative: Callable[[Array, Array, Array, nn.Module, Any], Array]  # (grad_h, z, h, module, xp) -> grad_z


ACTIVATIONS: dict[type[nn.Module], Activation] = {
    # tanh' = 1 - tanh^2
    nn.Tanh: Activation(lambda z, m, xp: xp.tanh(z), lambda g, z, h, m, xp: g * (1.0 - h * h)),
    # relu' = [z > 0] = [h > 0]
    nn.ReLU: Activation(lambda z, m, xp: xp.clip(z, 0.0, None), lambda g, z, h, m, xp: g * (h > 0)),
    nn.LeakyReLU: Activation(
        lambda z, m, xp: xp.where(z > 0, z, z * m.negative_slope),
        lambda g, z, h, m, xp: xp.where(z > 0, g, g * m.negative_slope),
    ),
    # elu(z) = alpha (e^z - 1) for z <= 0, whose derivative is h + alpha there (clip: no overflow for large z)
    nn.ELU: Activation(
        lambda z, m, xp: xp.where(z > 0, z, m.alpha * xp.expm1(xp.clip(z, None, 0.0))),
        lambda g, z, h, m, xp: xp.where(z > 0, g, g * (h + m.alpha)),
    ),
}

Layer = tuple[nn.Linear, nn.Module | None]
Trace = list[tuple[Array, Array, Array]]


class ArrayLayer(NamedTuple):
    """One ``Linear -> activation`` layer as arrays that share memory with its parameters and their gradients."""

    weight: Array  # (out_features, in_features)
    bias: Array  # (out_features,)
    weight_grad: Array
    bias_grad: Array
    activation: nn.Module | None


def mlp_layers(hidden: nn.Module, output: nn.Module) -> list[Layer] | None:
    """
    The network ``hidden`` (an ``nn.Sequential`` of ``Linear -> activation`` pairs, possibly empty) followed by the
    ``Linear`` layer ``output``, as ``(linear, activation or None)`` pairs; None when it holds anything else (another
    module, an unsupported or in-place activation, a Linear without bias).

    :param hidden: the hidden layers (SB3's ``MlpExtractor.policy_net`` or ``value_net``).
    :param output: the output layer (``action_net`` or ``value_net``).
    :return: the layers, or None.
    """
    if not isinstance(hidden, nn.Sequential):
        return None
    layers: list[Layer] = []
    for module in [*hidden, output]:
        if type(module) is nn.Linear and module.bias is not None:
            layers.append((module, None))
        elif type(module) in ACTIVATIONS and layers and layers[-1][1] is None and not getattr(module, "inplace", False):
            layers[-1] = (layers[-1][0], module)
        else:
            return None
    return layers if layers and layers[-1] == (output, None) else None


def mlp_forward(layers: list[ArrayLayer], x: Array, xp: Any) -> tuple[Array, Trace]:
    """Forward pass keeping ``(input, pre-activation, output)`` of each layer for :func:`mlp_backward`."""
    trace = []
    for layer in layers:
        z = x @ layer.weight.T
        z += layer.bias
        h = z if layer.activation is None else ACTIVATIONS[type(layer.activation)].forward(z, layer.activation, xp)
        trace.append((x, z, h))
        x = h
    return x, trace


def mlp_backward(layers: list[ArrayLayer], trace: Trace, grad_out: Array, xp: Any) -> None:
    """Back-propagate ``grad_out`` (the loss's gradient w.r.t. the output), overwriting each layer's gradients."""
    grad = grad_out
    for index in range(len(layers) - 1, -1, -1):
        layer, (x, z, h) = layers[index], trace[index]
        if layer.activation is not None:
            grad = ACTIVATIONS[type(layer.activation)].derivative(grad, z, h, layer.activation, xp)
        xp.matmul(grad.T, x, out=layer.weight_grad)
        xp.sum(grad, axis=0, out=layer.bias_grad)
        if index > 0:
            grad = grad @ layer.weight


class NumpyMLP:
    """
    A float32 NumPy copy of a ``Linear -> activation -> ... -> Linear`` network, for evaluating it on a few
    observations at a time: for one observation it is several times faster than a torch forward pass. It does not
    follow later changes of the network's parameters.

    :param layers: the network's layers, from :func:`mlp_layers`.
    """

    def __init__(self, layers: list[Layer]):
        self.layers = [
            (
                linear.weight.detach().cpu().numpy().T.astype(np.float32, order="C"),
                linear.bias.detach().cpu().numpy().astype(np.float32),
                activation,
            )
            for linear, activation in layers
        ]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Outputs for inputs ``x`` of shape ``(B, in_features)`` (float32), shape ``(B, out_features)``."""
        for weight, bias, activation in self.layers:
            x = x @ weight
            x += bias
            if activation is not None:
                x = ACTIVATIONS[type(activation)].forward(x, activation, np)
        return x


def unsupported_reason(policy: nn.Module, policy_objective: str) -> str | None:
    """
    Why the fast path cannot train ``policy``, or None when it can (see the module's docstring).

    :param policy: the policy.
    :param policy_objective: ClippedPPO's ``policy_objective``.
    :return: a reason, or None.
    """
    if not uses_forward_distribution(policy):
        return "the policy is not one of sb3_clippedppo's, or its subclass overrides an evaluation method"
    policy = cast(ActorCriticPolicy, policy)
    if policy_objective not in ("clip", "kl_penalty"):
        return f"policy_objective={policy_objective!r} has no closed-form gradient here"
    if policy.distribution_class not in (DiagGaussian, Categorical) or policy.state_dependent_std:
        return "only Box actions with a state-independent log_std, and Discrete actions, have closed-form gradients"
    extractors = {policy.pi_features_extractor, policy.vf_features_extractor}
    # normalize_observations wraps the extractor; the fast path applies the same normalization itself
    inner = [extractor.extractor if type(extractor) is NormalizingExtractor else extractor for extractor in extractors]
    if any(type(extractor) is not FlattenExtractor for extractor in inner):
        return "the features extractor is not FlattenExtractor"
    space = policy.observation_space
    if not isinstance(space, spaces.Box) or (policy.normalize_images and is_image_space(space)):
        return f"observations are not a (non-image) Box: {space}"
    extractor = policy.mlp_extractor
    if type(extractor) is not MlpExtractor:
        return "mlp_extractor is not SB3's MlpExtractor"
    if (
        mlp_layers(extractor.policy_net, policy.action_net) is None
        or mlp_layers(extractor.value_net, policy.value_net) is None
    ):
        return "the networks are not Linear layers with Tanh, ReLU, LeakyReLU or ELU activations"
    if not issubclass(policy.optimizer_class, ELEMENTWISE_OPTIMIZERS):
        return f"optimizer_class {policy.optimizer_class.__name__} is not known to update each element independently"
    return None


# ---------------------------------------------------------------------------------------------- flat storage


class FlatParameters:
    """
    Every parameter of ``policy`` as a view into one contiguous buffer, every gradient as a view into another, and
    ``policy.optimizer`` replaced by one of the same class and arguments over one flat tensor per parameter group
    (learning rates, group names and optimizer state carried over).

    :param policy: the policy; its optimizer's groups must hold all its parameters.
    """

    def __init__(self, policy: ActorCriticPolicy):
        self.policy = policy
        self.group_params = [list(group["params"]) for group in policy.optimizer.param_groups]
        self.params = [p for group in self.group_params for p in group]
        if {id(p) for p in self.params} != {id(p) for p in policy.parameters()}:
            raise ValueError("flat storage needs an optimizer whose parameter groups hold every parameter of the policy")
        self.flatten()

    def flatten(self) -> None:
        """(Re)build the flat buffers and the optimizer; parameter values and optimizer state are kept."""
        data = th.cat([p.detach().reshape(-1) for p in self.params])
        grad = th.zeros_like(data)
        offset, leaves = 0, []
        for group in self.group_params:
            start = offset
            for param in group:
                size = param.numel()
                param.data = data[offset : offset + size].view_as(param)
                param.grad = grad[offset : offset + size].view_as(param)
                offset += size
            leaf = data[start:offset].detach()
            leaf.grad = grad[start:offset]
            leaves.append(leaf)

        old = self.policy.optimizer
        kwargs = optimizer_arguments(self.policy.optimizer_class, self.policy.optimizer_kwargs)
        groups = [
            {"params": [leaf], "lr": group["lr"], **({"name": group["name"]} if "name" in group else {})}
            for group, leaf in zip(old.param_groups, leaves, strict=True)
        ]
        optimizer = self.policy.optimizer_class(groups, **kwargs)  # type: ignore[call-arg]
        state = old.state_dict()
        if state["state"]:
            optimizer.load_state_dict(regroup_optimizer_state(state, optimizer))
        self.policy.optimizer = optimizer
        self.data, self.grad, self.leaves = data, grad, leaves
        self._grad_array = grad.numpy() if grad.device.type == "cpu" else None  # for a cheaper norm on the CPU

    def intact(self) -> bool:
        """Whether every parameter and gradient is still a view into the flat buffers, and the optimizer uses them."""
        data_ptr, grad_ptr, element_size = self.data.data_ptr(), self.grad.data_ptr(), self.data.element_size()
        if {id(p) for p in self.params} != {id(p) for p in self.policy.parameters()}:
            return False
        offset = 0
        for param in self.params:
            if param.data_ptr() != data_ptr + offset * element_size or param.grad is None:
                return False
            if param.grad.data_ptr() != grad_ptr + offset * element_size:
                return False
            offset += param.numel()
        optimizer_params = [p for group in self.policy.optimizer.param_groups for p in group["params"]]
        if [id(p) for p in optimizer_params] != [id(leaf) for leaf in self.leaves]:
            return False
        return all(
            leaf.grad is not None and leaf.grad.data_ptr() == leaf.data_ptr() - data_ptr + grad_ptr for leaf in self.leaves
        )

    def ensure(self) -> None:
        """Restore the flat storage if something replaced a parameter, gradient or the optimizer (e.g. ``.to(device)``,
        ``optimizer.zero_grad(set_to_none=True)``, ``load_from_vector``); values and optimizer state are kept."""
        if not self.intact():
            self.flatten()

    def clip_grad_norm_(self, max_norm: float) -> float:
        """
        Scale all gradients so that their global L2 norm is at most ``max_norm``, as ``torch.nn.utils.clip_grad_norm_``.

        :return: the norm before clipping, as a Python float (NaN or inf when a gradient is not finite).
        """
        grad = self._grad_array
        norm = math.sqrt(float(np.dot(grad, grad))) if grad is not None else math.inf
        if not math.isfinite(norm):  # on another device, or a float32 overflow of the squares: torch's norm
            norm = float(th.linalg.vector_norm(self.grad))
        scale = max_norm / (norm + 1e-6)
        if scale < 1.0:
            self.grad.mul_(scale)
        return norm


def regroup_optimizer_state(state_dict: dict[str, Any], optimizer: th.optim.Optimizer) -> dict[str, Any]:
    """
    An optimizer state dict saved with one tensor per parameter regrouped for an optimizer over flat tensors (one
    per group), or the reverse, so that a model saved with either storage loads with the other. Groups are matched
    in order; each per-element state tensor (e.g. Adam's moments) is split or concatenated, scalars (``step``) copied.
    A state dict that already matches is returned unchanged.

    :param state_dict: the saved ``optimizer.state_dict()``.
    :param optimizer: the optimizer to load it into.
    :return: a state dict for ``optimizer``.
    :raises ValueError: when the groups or sizes do not correspond.
    """
    saved_groups, current_groups = state_dict["param_groups"], optimizer.param_groups
    if [len(g["params"]) for g in saved_groups] == [len(g["params"]) for g in current_groups]:
        return state_dict
    if len(saved_groups) != len(current_groups):
        raise ValueError(f"optimizer state has {len(saved_groups)} parameter groups, the optimizer {len(current_groups)}")
    new_state: dict[int, dict[str, Any]] = {}
    new_groups = []
    index = 0
    for saved, current in zip(saved_groups, current_groups, strict=True):
        sizes = [p.numel() for p in current["params"]]
        shapes = [p.shape for p in current["params"]]
        entries = [state_dict["state"].get(i) for i in saved["params"]]
        if all(entry is None for entry in entries):
            pieces: list[dict[str, Any] | None] = [None] * len(sizes)
        else:
            keys = next(entry for entry in entries if entry is not None)
            flat: dict[str, Any] = {}
            for key, value in keys.items():
                if isinstance(value, th.Tensor) and value.dim() > 0:
                    flat[key] = th.cat([entry[key].reshape(-1) for entry in entries])  # type: ignore[index]
                else:
                    flat[key] = value
            total = sum(sizes)
            if any(isinstance(v, th.Tensor) and v.dim() > 0 and v.numel() != total for v in flat.values()):
                raise ValueError("optimizer state does not match the parameters' sizes")
            pieces = []
            offset = 0
            for size, shape in zip(sizes, shapes, strict=True):
                pieces.append(
                    {
                        key: value[offset : offset + size].reshape(shape).clone()
                        if isinstance(value, th.Tensor) and value.dim() > 0
                        else (value.clone() if isinstance(value, th.Tensor) else value)
                        for key, value in flat.items()
                    }
                )
                offset += size
        ids = list(range(index, index + len(sizes)))
        for i, piece in zip(ids, pieces, strict=True):
            if piece is not None:
                new_state[i] = piece
        new_groups.append({**saved, "params": ids})
        index += len(sizes)
    return {"state": new_state, "param_groups": new_groups}


# ---------------------------------------------------------------------------------------------- the loss


class ClosedFormLoss:
    """
    :func:`~sb3_clippedppo.losses.ppo_loss` with closed-form gradients, for a policy that :func:`unsupported_reason`
    accepts. Per minibatch, call :meth:`forward` (no autograd graph is built) and, when the step is to be taken,
    :meth:`backward`.

    On the CPU the arithmetic runs in NumPy, on arrays that share memory with the parameters, their gradients and the
    minibatch (NumPy's cost per operation is a third of PyTorch's, and these networks are small enough for that to
    matter); on another device it runs in torch. Both give the same numbers up to float32 rounding.

    :param policy: the policy; its parameters' ``.grad`` must be tensors (:class:`FlatParameters` sees to that) by the
        first :meth:`forward`. Call :meth:`bind` again after parameters, gradients or the observation statistics are
        replaced.
    :param array_module: ``numpy`` or ``torch`` to choose the arithmetic's library (``numpy`` needs the CPU); default
        (None): NumPy on the CPU, torch elsewhere.
    :raises ValueError: for another ``array_module``.
    """

    def __init__(self, policy: ActorCriticPolicy, array_module: Any = None):
        if array_module not in (None, np, th):
            raise ValueError(f"array_module must be None, numpy or torch, got {array_module!r}")
        self.array_module = array_module
        self.policy = policy
        self.actor_layers = cast(list[Layer], mlp_layers(policy.mlp_extractor.policy_net, policy.action_net))
        self.critic_layers = cast(list[Layer], mlp_layers(policy.mlp_extractor.value_net, policy.value_net))
        self.discrete = policy.distribution_class is Categorical
        self.normalizer = policy.obs_normalizer
        self.xp: Any = np
        self._bound = False
        self._saved: dict[str, Any] | None = None

    def _array(self, tensor: th.Tensor) -> Array:
        """A tensor as this loss's array type, sharing its memory."""
        return tensor.detach().numpy() if self.xp is np else tensor.detach()

    def _tensors(self, *arrays: Array) -> list[th.Tensor]:
        """Arrays back as tensors, sharing their memory."""
        return [th.from_numpy(np.asarray(a)) for a in arrays] if self.xp is np else list(arrays)

    def bind(self) -> None:
        """
        Take this loss's views of the parameters, their gradients and the observation statistics.

        :raises ValueError: for ``array_module=numpy`` with the policy on another device than the CPU.
        :raises RuntimeError: when a parameter has no ``.grad`` tensor.
        """
        on_cpu = self.policy.device.type == "cpu"
        if self.array_module is np and not on_cpu:
            raise ValueError(f"array_module=numpy needs the policy on the CPU, it is on {self.policy.device}")
        self.xp = (np if on_cpu else th) if self.array_module is None else self.array_module
        if any(p.grad is None for p in self.policy.parameters()):
            raise RuntimeError("ClosedFormLoss writes into the parameters' .grad tensors: create them first (FlatParameters)")

        def layers(pairs: list[Layer]) -> list[ArrayLayer]:
            return [
                ArrayLayer(*(self._array(t) for t in (lin.weight, lin.bias, lin.weight.grad, lin.bias.grad)), act)  # type: ignore[arg-type]
                for lin, act in pairs
            ]

        self.actor, self.critic = layers(self.actor_layers), layers(self.critic_layers)
        if not self.discrete:
            self.log_std, self.log_std_grad = self._array(self.policy.log_std), self._array(self.policy.log_std.grad)  # type: ignore[arg-type]
        self.obs_statistics = None
        if self.normalizer is not None:
            statistics = self.normalizer.stats[0].numpy_parameters()  # mean, 1 / std: (obs_dim,) float32 each
            self.obs_statistics = tuple(a if self.xp is np else th.as_tensor(a, device=self.policy.device) for a in statistics)
        self._bound = True

    def forward(self, batch: RolloutBatch, advantages: th.Tensor, coefficients: LossCoefficients) -> LossTerms:
        """
        The loss for a minibatch, keeping what :meth:`backward` needs. Arguments as for
        :func:`~sb3_clippedppo.losses.ppo_loss`.

        :return: the loss terms.
        """
        if not self._bound:
            self.bind()
        xp = self.xp
        clip_range, clip_range_vf, ent_coef, vf_coef, policy_objective, kl_coef = coefficients
        penalty = policy_objective == "kl_penalty"
        n = len(batch.actions)
        actions, old_log_prob, old_values, returns, old_distribution, advantages = (
            self._array(t)
            for t in (batch.actions, batch.old_log_prob, batch.old_values, batch.returns, batch.old_distribution, advantages)
        )
        x = self._array(batch.observations.to(dtype=th.float32)).reshape(n, -1)  # type: ignore[union-attr]
        if self.obs_statistics is not None:
            mean, inv_std = self.obs_statistics
            x = xp.clip((x - mean) * inv_std, -CLIP, CLIP)
        output, actor_trace = mlp_forward(self.actor, x, xp)
        values, critic_trace = mlp_forward(self.critic, x, xp)
        values = values[:, 0]

        if self.discrete:
            # log softmax: log p_ij = l_ij - logsumexp_j(l_ij); entropy H_i = -sum_j p_ij log p_ij
            log_p = log_softmax(output, xp)
            p = xp.exp(log_p)
            actions = actions.astype(np.int64) if xp is np else actions.long()
            log_prob = log_p[self._rows(n), actions]
            entropy = -xp.sum(p * log_p, axis=-1)
            entropy_loss = -entropy.mean()
            if penalty:  # KL(p_old || p) = sum_j p_old,j (log p_old,j - log p_j)
                old_log_p = log_softmax(old_distribution, xp)
                old_p = xp.exp(old_log_p)
                kl = xp.sum(old_p * (old_log_p - log_p), axis=-1)
            distribution = (p, log_p, entropy, actions, old_p if penalty else None)
        else:
            # log pi_i = -1/2 sum_j z_ij^2 - sum_j log_std_j - k/2 log 2 pi, z = (a - mu) / sigma
            log_std = self.log_std
            inv_std = xp.exp(-log_std)
            z = (actions - output) * inv_std
            log_prob = -0.5 * xp.sum(z * z, axis=-1) - xp.sum(log_std) - 0.5 * LOG_2PI * z.shape[-1]
            entropy_loss = -xp.sum(0.5 + 0.5 * LOG_2PI + log_std)
            if penalty:  # KL(old || new) = sum_j log(sigma / sigma_old) + (sigma_old^2 + (mu - mu_old)^2) / (2 sigma^2) - 1/2
                k = z.shape[-1]
                old_mean, old_log_std = old_distribution[:, :k], old_distribution[:, k:]
                spread = (xp.exp(2.0 * old_log_std) + (output - old_mean) ** 2) * (inv_std * inv_std)
                kl = xp.sum(log_std - old_log_std + 0.5 * spread - 0.5, axis=-1)
            distribution = (output, inv_std, z, old_distribution)
        log_ratio = log_prob - old_log_prob
        ratio = xp.exp(log_ratio)
        surrogate = advantages * ratio
        if penalty:  # PPO-Penalty, Schulman et al. 2017 section 4
            policy_loss = -surrogate.mean() + kl_coef * kl.mean()
        else:  # the clipped surrogate, eq. 7; the gradient flows where the unclipped term is the minimum
            clipped = advantages * xp.clip(ratio, 1.0 - clip_range, 1.0 + clip_range)
            policy_loss = -xp.minimum(surrogate, clipped).mean()
            surrogate = surrogate * (surrogate <= clipped)
        if clip_range_vf is None:
            predicted, value_mask = values, None
        else:  # SB3's value clipping: V' = V_old + clip(V - V_old, -c, c); no gradient where the clip is active
            delta = values - old_values
            predicted, value_mask = old_values + xp.clip(delta, -clip_range_vf, clip_range_vf), xp.abs(delta) <= clip_range_vf
        value_loss = ((returns - predicted) ** 2).mean()
        loss = policy_loss + ent_coef * entropy_loss + vf_coef * value_loss
        self._saved = dict(
            n=n, surrogate=surrogate, ent_coef=ent_coef, vf_coef=vf_coef, kl_coef=kl_coef if penalty else None,
            distribution=distribution, actor_trace=actor_trace, critic_trace=critic_trace, predicted=predicted,
            returns=returns, value_mask=value_mask,
        )  # fmt: skip
        statistics = ratio_statistics(ratio, log_ratio, clip_range)
        return LossTerms(*self._tensors(policy_loss, value_loss, entropy_loss, loss, ratio, log_ratio, *statistics))

    def _rows(self, n: int) -> Array:
        return np.arange(n) if self.xp is np else th.arange(n, device=self.policy.device)

    def backward(self) -> None:
        """
        Write the gradient of the last :meth:`forward`'s loss into every parameter's ``.grad`` (overwriting it).

        :raises RuntimeError: without a preceding :meth:`forward`.
        """
        if self._saved is None:
            raise RuntimeError("ClosedFormLoss.backward() needs a forward() first")
        saved, self._saved = self._saved, None
        xp, n, kl_coef, ent_coef = self.xp, saved["n"], saved["kl_coef"], saved["ent_coef"]

        # d L_pg / d log pi_i = -A_i r_i / B where the unclipped term is the minimum (PPO-Penalty: everywhere)
        grad_log_prob = saved["surrogate"] * (-1.0 / n)
        if self.discrete:
            # Through log softmax: (onehot - p) * g; entropy bonus: ent_coef * p (log p + H) / B;
            # KL(p_old || p): beta (p - p_old) / B
            p, log_p, entropy, actions, old_p = saved["distribution"]
            grad_output = -p * grad_log_prob[:, None]
            grad_output[self._rows(n), actions] += grad_log_prob
            grad_output += p * (log_p + entropy[:, None]) * (ent_coef / n)
            if kl_coef is not None:
                grad_output += (p - old_p) * (kl_coef / n)
        else:
            # d log pi_i / d mu_ij = z_ij / sigma_j, d log pi_i / d log_std_j = z_ij^2 - 1; the entropy bonus: -ent_coef;
            # KL(old || new): d/d mu = (mu - mu_old) / sigma^2, d/d log_std = 1 - (sigma_old^2 + (mu - mu_old)^2) / sigma^2
            mean, inv_std, z, old_distribution = saved["distribution"]
            grad_output = grad_log_prob[:, None] * z * inv_std
            grad_log_std = (z * z - 1.0).T @ grad_log_prob - ent_coef
            if kl_coef is not None:
                k = z.shape[-1]
                old_mean, old_log_std = old_distribution[:, :k], old_distribution[:, k:]
                inv_var = inv_std * inv_std
                difference = mean - old_mean
                grad_output += difference * inv_var * (kl_coef / n)
                spread = (xp.exp(2.0 * old_log_std) + difference * difference) * inv_var
                grad_log_std += xp.sum(1.0 - spread, axis=0) * (kl_coef / n)
            self.log_std_grad[...] = grad_log_std

        # d(vf_coef * L_v) / dV_i = vf_coef * 2 (V'_i - R_i) / B where the value clipping is inactive
        grad_values = (saved["predicted"] - saved["returns"]) * (2.0 * saved["vf_coef"] / n)
        if saved["value_mask"] is not None:
            grad_values = grad_values * saved["value_mask"]

        mlp_backward(self.actor, saved["actor_trace"], grad_output, xp)
        mlp_backward(self.critic, saved["critic_trace"], grad_values[:, None], xp)


def log_softmax(logits: Array, xp: Any) -> Array:
    """``log softmax`` over the last axis, shape as ``logits``."""
    shifted = logits - xp.amax(logits, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


# ---------------------------------------------------------------------------------------------- the backend


class FastMlp:
    """
    The fast path as ClippedPPO's core calls it: :meth:`prepare` before an update, :meth:`rollout_step` for each
    rollout, :meth:`evaluate_rollout` after it, and per minibatch :meth:`loss`, :meth:`backward` and
    :meth:`clip_grad_norm_` (then the core's ``optimizer.step()``).

    :param policy: a policy that :func:`unsupported_reason` accepts.
    :raises ValueError: for a policy it does not support.
    """

    def __init__(self, policy: ActorCriticPolicy):
        reason = unsupported_reason(policy, "clip")  # either objective; the policy decides the rest
        if reason is not None:
            raise ValueError(f"the fast path does not apply: {reason}")
        self.policy = policy
        self.flat = FlatParameters(policy)
        self.closed_form = ClosedFormLoss(policy)
        self.obs_dim = int(np.prod(policy.observation_space.shape))  # type: ignore[arg-type]

    def prepare(self) -> None:
        """Before an update: make sure the flat storage is intact (rebuilding it if not), and bind the loss to it."""
        self.flat.ensure()
        self.closed_form.bind()

    def rollout_step(self, noise: th.Tensor) -> Callable[[np.ndarray, int], np.ndarray]:
        """
        The per-step actor for one rollout, during which the parameters do not change: a NumPy copy of the actor taken
        now. It maps observations ``(n_envs, *obs_shape)`` and the step's index into ``noise`` (the rollout's noise from
        ``policy.draw_noise(n_steps, n_envs)``, on the CPU) to raw actions: ``(n_envs, k)`` float32
        (``mean + std * noise``) or ``(n_envs,)`` int64 (``argmax(logits + noise)``).
        """
        mlp = NumpyMLP(self.closed_form.actor_layers)
        obs_dim, noise_array = self.obs_dim, noise.numpy()
        if self.closed_form.normalizer is None:

            def actor(obs: np.ndarray) -> np.ndarray:
                return mlp(np.asarray(obs, np.float32).reshape(-1, obs_dim))

        else:  # normalize_observations, with the statistics of this rollout
            mean, inv_std = (a.reshape(-1) for a in self.closed_form.normalizer.stats[0].numpy_parameters())

            def actor(obs: np.ndarray) -> np.ndarray:
                x = (np.asarray(obs, np.float32).reshape(-1, obs_dim) - mean) * inv_std
                return mlp(np.clip(x, -CLIP, CLIP, out=x))

        if self.closed_form.discrete:
            return lambda obs, step: np.argmax(actor(obs) + noise_array[step], axis=-1)
        std = np.exp(self.policy.log_std.detach().cpu().numpy())
        return lambda obs, step: actor(obs) + std * noise_array[step]

    @th.no_grad()
    def evaluate_rollout(self, buffer: RolloutBuffer, chunk_size: int = 256) -> None:
        """
        Fill the rollout's values, log-probabilities (and, where the buffer keeps them, distribution parameters) in
        batched passes of ``chunk_size`` transitions (small chunks keep the activations' memory small).
        """
        observations, actions = buffer.flat_observations(), buffer.flat_actions()
        values, log_probs = buffer.values.reshape(-1), buffer.log_probs.reshape(-1)
        distributions = buffer.old_distributions.reshape(buffer.size, -1)
        for start in range(0, buffer.size, chunk_size):
            chunk = slice(start, start + chunk_size)
            distribution, chunk_values = self.policy.forward_distribution(observations[chunk])  # type: ignore[index]
            values[chunk] = chunk_values.cpu().numpy()
            log_probs[chunk] = distribution.log_prob(actions[chunk]).cpu().numpy()
            if distributions.shape[1]:
                distributions[chunk] = distribution.params().cpu().numpy()

    def loss(self, batch: RolloutBatch, advantages: th.Tensor, coefficients: LossCoefficients) -> LossTerms:
        """The minibatch's loss terms (:meth:`ClosedFormLoss.forward`)."""
        return self.closed_form.forward(batch, advantages, coefficients)

    def backward(self) -> None:
        """Write the last :meth:`loss`'s gradient into every parameter's ``.grad``."""
        self.closed_form.backward()

    def clip_grad_norm_(self, max_norm: float) -> float:
        """Clip the global gradient norm to ``max_norm``; return the norm before clipping."""
        return self.flat.clip_grad_norm_(max_norm)
