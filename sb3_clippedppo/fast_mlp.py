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
  gradient written out (below), back-propagated by hand through each ``Linear -> activation`` layer.
- **NumPy rollout actor** (:class:`NumpyMLP`): a float32 NumPy copy of the actor for the rollout's per-step actions;
  the rollout's values and log-probabilities are computed afterwards in one batched torch pass.

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

from collections.abc import Callable
from typing import Any, cast

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import FlattenExtractor, MlpExtractor
from torch import nn

from sb3_clippedppo.buffers import RolloutBatch, RolloutBuffer
from sb3_clippedppo.distributions import (
    Categorical,
    DiagGaussian,
    categorical_kl,
    gaussian_entropy,
    gaussian_kl,
    gaussian_log_prob,
)
from sb3_clippedppo.losses import LossCoefficients, LossTerms, clipped_surrogate_loss, value_loss_fn
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


# ---------------------------------------------------------------------------------------------- activations


def _tanh_derivative(grad: th.Tensor, z: th.Tensor, h: th.Tensor, module: nn.Module) -> th.Tensor:
    return th.addcmul(grad, grad, h * h, value=-1.0)  # grad * (1 - tanh(z)^2)


def _relu_derivative(grad: th.Tensor, z: th.Tensor, h: th.Tensor, module: nn.Module) -> th.Tensor:
    return grad * th.sign(h)  # h = relu(z) >= 0: sign(h) is 1 where z > 0, else 0 (a float mask: no bool promotion)


def _leaky_relu_derivative(grad: th.Tensor, z: th.Tensor, h: th.Tensor, module: nn.Module) -> th.Tensor:
    return th.where(z > 0, grad, grad * module.negative_slope)  # type: ignore[operator]


def _elu_derivative(grad: th.Tensor, z: th.Tensor, h: th.Tensor, module: nn.Module) -> th.Tensor:
    return th.where(z > 0, grad, grad * (h + module.alpha))  # for z <= 0: d/dz alpha (e^z - 1) = h + alpha


# Derivative of each supported activation h = act(z), applied to the incoming gradient: (grad_h, z, h, module) -> grad_z.
ACTIVATION_DERIVATIVES: dict[type[nn.Module], Callable[[th.Tensor, th.Tensor, th.Tensor, nn.Module], th.Tensor]] = {
    nn.Tanh: _tanh_derivative,
    nn.ReLU: _relu_derivative,
    nn.LeakyReLU: _leaky_relu_derivative,
    nn.ELU: _elu_derivative,
}

# NumPy versions of the same activations (in place where possible), for the rollout's NumPy copy of the actor.
NUMPY_ACTIVATIONS: dict[type[nn.Module], Callable[[np.ndarray, nn.Module], np.ndarray]] = {
    nn.Tanh: lambda x, module: np.tanh(x, out=x),
    nn.ReLU: lambda x, module: np.maximum(x, 0.0, out=x),
    nn.LeakyReLU: lambda x, module: np.where(x > 0, x, x * np.float32(module.negative_slope)),  # type: ignore[arg-type]
    nn.ELU: lambda x, module: np.where(x > 0, x, np.float32(module.alpha) * np.expm1(x)),  # type: ignore[arg-type]
}

Layer = tuple[nn.Linear, nn.Module | None]
Trace = list[tuple[th.Tensor, th.Tensor, th.Tensor]]


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
        elif (
            type(module) in ACTIVATION_DERIVATIVES
            and layers
            and layers[-1][1] is None
            and not getattr(module, "inplace", False)
        ):
            layers[-1] = (layers[-1][0], module)
        else:
            return None
    return layers if layers and layers[-1] == (output, None) else None


def mlp_forward(layers: list[Layer], x: th.Tensor) -> tuple[th.Tensor, Trace]:
    """Forward pass keeping ``(input, pre-activation, output)`` of each layer for :func:`mlp_backward`."""
    trace = []
    for linear, activation in layers:
        z = th.addmm(linear.bias, x, linear.weight.t())
        h = z if activation is None else activation(z)
        trace.append((x, z, h))
        x = h
    return x, trace


def mlp_backward(layers: list[Layer], trace: Trace, grad_out: th.Tensor) -> None:
    """Back-propagate ``grad_out`` (the loss's gradient w.r.t. the output), overwriting each layer's ``.grad``."""
    grad = grad_out
    for index in range(len(layers) - 1, -1, -1):
        (linear, activation), (x, z, h) = layers[index], trace[index]
        if activation is not None:
            grad = ACTIVATION_DERIVATIVES[type(activation)](grad, z, h, activation)
        th.mm(grad.t(), x, out=linear.weight.grad)
        th.sum(grad, dim=0, out=linear.bias.grad)
        if index > 0:
            grad = th.mm(grad, linear.weight)


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

    :param policy: the policy; its parameters' ``.grad`` must be tensors (:class:`FlatParameters` sees to that).
    """

    def __init__(self, policy: ActorCriticPolicy):
        self.policy = policy
        self.actor_layers = mlp_layers(policy.mlp_extractor.policy_net, policy.action_net)
        self.critic_layers = mlp_layers(policy.mlp_extractor.value_net, policy.value_net)
        self.discrete = policy.distribution_class is Categorical
        self.normalizer = policy.obs_normalizer
        self._saved: dict[str, Any] | None = None

    @th.no_grad()
    def forward(self, batch: RolloutBatch, advantages: th.Tensor, coefficients: LossCoefficients) -> LossTerms:
        """
        The loss for a minibatch, keeping what :meth:`backward` needs. Arguments as for
        :func:`~sb3_clippedppo.losses.ppo_loss`.

        :return: the loss terms.
        """
        clip_range, clip_range_vf, ent_coef, vf_coef, policy_objective, kl_coef = coefficients
        x = batch.observations.to(dtype=th.float32)  # type: ignore[union-attr]
        if self.normalizer is not None:
            x = self.normalizer(x)
        x = x.reshape(len(batch.actions), -1)
        output, actor_trace = mlp_forward(self.actor_layers, x)  # type: ignore[arg-type]
        values, critic_trace = mlp_forward(self.critic_layers, x)  # type: ignore[arg-type]
        values = values.squeeze(-1)
        penalty = policy_objective == "kl_penalty"
        if self.discrete:
            log_p = th.log_softmax(output, dim=-1)
            log_prob = log_p.gather(-1, batch.actions.long().unsqueeze(-1)).squeeze(-1)
            entropy = -(log_p.exp() * log_p).sum(dim=-1)
            entropy_loss = -entropy.mean()
            kl = categorical_kl(batch.old_distribution, output) if penalty else None
            distribution = (log_p, entropy)
        else:
            log_std = self.policy.log_std
            log_prob = gaussian_log_prob(batch.actions, output, log_std)
            entropy_loss = -gaussian_entropy(log_std)
            if penalty:
                old_mean, old_log_std = batch.old_distribution.chunk(2, dim=-1)
                kl = gaussian_kl(old_mean, old_log_std, output, log_std)
            distribution = (output, log_std)
        log_ratio = log_prob - batch.old_log_prob
        ratio = th.exp(log_ratio)
        if penalty:
            policy_loss = -(ratio * advantages).mean() + kl_coef * kl.mean()
        else:
            policy_loss = clipped_surrogate_loss(ratio, advantages, clip_range)
        value_loss = value_loss_fn(values, batch.old_values, batch.returns, clip_range_vf)
        loss = policy_loss + ent_coef * entropy_loss + vf_coef * value_loss
        self._saved = dict(
            batch=batch, advantages=advantages, clip_range=clip_range, clip_range_vf=clip_range_vf, ent_coef=ent_coef,
            vf_coef=vf_coef, kl_coef=kl_coef if penalty else None, distribution=distribution, actor_trace=actor_trace,
            values=values, critic_trace=critic_trace, ratio=ratio,
        )  # fmt: skip
        return LossTerms(policy_loss, value_loss, entropy_loss, loss, ratio, log_ratio)

    @th.no_grad()
    def backward(self) -> None:
        """
        Write the gradient of the last :meth:`forward`'s loss into every parameter's ``.grad`` (overwriting it).

        :raises RuntimeError: without a preceding :meth:`forward`.
        """
        if self._saved is None:
            raise RuntimeError("ClosedFormLoss.backward() needs a forward() first")
        saved, self._saved = self._saved, None
        batch, advantages, ratio, kl_coef = saved["batch"], saved["advantages"], saved["ratio"], saved["kl_coef"]
        ent_coef, vf_coef, clip_range_vf = saved["ent_coef"], saved["vf_coef"], saved["clip_range_vf"]
        n = ratio.shape[0]

        # Surrogate: d L_pg / d log pi_i = -A_i r_i / B where min() picks the unclipped term (ties: both agree);
        # PPO-Penalty's unclipped surrogate: everywhere
        surrogate = advantages * ratio
        if kl_coef is None:
            clip_range = saved["clip_range"]
            surrogate = surrogate * (surrogate <= advantages * th.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range))
        grad_log_prob = surrogate * (-1.0 / n)
        if self.discrete:
            # Through log softmax: (onehot - p) * g; entropy bonus: ent_coef * p (log p + H) / B;
            # KL(p_old || p): beta (p - p_old) / B
            log_p, entropy = saved["distribution"]
            p = log_p.exp()
            grad_output = -p * grad_log_prob.unsqueeze(-1)
            grad_output.scatter_add_(-1, batch.actions.long().unsqueeze(-1), grad_log_prob.unsqueeze(-1))
            grad_output += p * (log_p + entropy.unsqueeze(-1)) * (ent_coef / n)
            if kl_coef is not None:
                grad_output += (p - th.softmax(batch.old_distribution, dim=-1)) * (kl_coef / n)
        else:
            # Through the Gaussian log-density; the entropy bonus only reaches log_std;
            # KL(old || new): d/d mean = (mean - old_mean) / std^2, d/d log_std = 1 - (old_std^2 + (mean - old_mean)^2) / std^2
            mean, log_std = saved["distribution"]
            inv_std = th.exp(-log_std)
            z = (batch.actions - mean) * inv_std
            grad_output = grad_log_prob.unsqueeze(-1) * z * inv_std
            grad_log_std = th.mv((z * z - 1.0).t(), grad_log_prob) - ent_coef
            if kl_coef is not None:
                old_mean, old_log_std = batch.old_distribution.chunk(2, dim=-1)
                inv_var = inv_std * inv_std
                difference = mean - old_mean
                grad_output += difference * inv_var * (kl_coef / n)
                spread = (th.exp(2.0 * old_log_std) + difference * difference) * inv_var
                grad_log_std += (1.0 - spread).sum(dim=0) * (kl_coef / n)
            log_std.grad.copy_(grad_log_std)  # type: ignore[union-attr]

        # Value: d(vf_coef * L_v) / dV_i = vf_coef * 2 (V'_i - R_i) / B where the clipping is inactive
        values = saved["values"]
        if clip_range_vf is None:
            grad_values = (values - batch.returns) * (2.0 * vf_coef / n)
        else:
            delta = values - batch.old_values
            clipped = batch.old_values + th.clamp(delta, -clip_range_vf, clip_range_vf)
            grad_values = (clipped - batch.returns) * (delta.abs() <= clip_range_vf) * (2.0 * vf_coef / n)

        mlp_backward(self.actor_layers, saved["actor_trace"], grad_output)  # type: ignore[arg-type]
        mlp_backward(self.critic_layers, saved["critic_trace"], grad_values.unsqueeze(-1))  # type: ignore[arg-type]


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
        """Before an update: make sure the flat storage is intact (rebuilding it if not)."""
        self.flat.ensure()

    def rollout_step(self, noise: th.Tensor) -> Callable[[np.ndarray, int], np.ndarray]:
        """
        The per-step actor for one rollout, during which the parameters do not change: a NumPy copy of the actor taken
        now. It maps observations ``(n_envs, *obs_shape)`` and the step's index into ``noise`` (the rollout's noise from
        ``policy.draw_noise(n_steps, n_envs)``, on the CPU) to raw actions: ``(n_envs, k)`` float32
        (``mean + std * noise``) or ``(n_envs,)`` int64 (``argmax(logits + noise)``).
        """
        mlp = NumpyMLP(self.closed_form.actor_layers)  # type: ignore[arg-type]
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
