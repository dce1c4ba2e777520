"""The fast path for MLP actor-critics (:class:`ClosedFormBackend`): flat parameter storage, closed-form gradients and a
NumPy rollout actor.

For the small networks of continuous control, PyTorch's per-operation overhead costs more than the arithmetic:
autograd records every operation of the forward pass and replays it, an optimizer step and a gradient-norm clip
touch each parameter tensor separately, and a forward pass for one observation takes tens of microseconds. This
backend computes exactly the same update with fewer, larger operations:

- **Flat storage** (:class:`FlatParameters`): every parameter becomes a view into one contiguous buffer (its gradient
  into another), and the optimizer gets one flat tensor per parameter group (``"actor"``, ``"critic"``). Zeroing,
  clipping and the optimizer step are then one operation per group. Used only with optimizers that act on each element
  independently (:data:`ELEMENTWISE_OPTIMIZERS`: Adam, AdamW, SGD, ...), for which a flat tensor and separate tensors
  give the same update.
- **Closed-form gradients** (:meth:`ClosedFormBackend.backward`): the loss is the shared one,
  :func:`~sb3_clippedppo.losses.ppo_loss_terms`, on the distributions' own expressions
  (:mod:`sb3_clippedppo.distributions`) and the policy's normalization (:func:`~sb3_clippedppo.normalization.normalize`);
  only its gradient is written here (below), back-propagated by hand through each ``Linear -> activation`` layer. On the
  CPU this arithmetic runs in NumPy, on arrays that share memory with the flat buffers and the minibatch (a NumPy
  operation costs about a third of a torch one, and a minibatch of these networks is some sixty small operations); on a
  GPU it runs in torch. One implementation serves both: it uses only operations that NumPy and torch spell the same way.
- **NumPy rollout actor** (:meth:`ClosedFormBackend.rollout_step`): the same forward pass (:func:`mlp_forward`) for the
  rollout's per-step actions; the rollout's values and log-probabilities are computed afterwards in batched torch
  passes. ``predict(deterministic=True)`` uses it too (:func:`deterministic_actions`, for any policy that
  :func:`actor_reason` accepts, on the CPU), since evaluations call ``predict`` at every step.

While ClippedPPO learns on the fast path, torch runs on one thread and NumPy's BLAS library gets the threads
(:mod:`sb3_clippedppo.threads`), so that the two thread pools never spin against each other.

:func:`unsupported_reason` says where it applies: a policy of this package that SB3's ``MlpExtractor`` builds from
``Linear`` layers and Tanh/ReLU/LeakyReLU/ELU activations, on ``FlattenExtractor`` features of a non-image ``Box``
observation, with ``Box`` actions (state-independent ``log_std``) or ``Discrete`` actions, and either objective (the
clipped surrogate or PPO-Penalty's).
ClippedPPO chooses it automatically there (``fast_path="auto"``); ``fast_path=False`` trains through autograd and gives
the same numbers up to float32 rounding (``tests/test_fast_path.py``).

The loss's gradient, written out term by term (clipped surrogate and PPO-Penalty, Gaussian and categorical
actions, value loss, back-propagation through the layers): ``docs/algorithm.md``, "The gradient in closed form".
"""

import math
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, NamedTuple, cast

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
    categorical_entropy,
    categorical_kl,
    categorical_log_prob,
    gaussian_entropy,
    gaussian_kl,
    gaussian_log_prob,
    log_softmax,
)
from sb3_clippedppo.losses import SCALAR_TERMS, LossCoefficients, LossTerms, ppo_loss_terms
from sb3_clippedppo.normalization import NormalizingExtractor, RunningMeanStd, normalize
from sb3_clippedppo.policies import ActorCriticPolicy, optimizer_arguments, uses_forward_distribution
from sb3_clippedppo.saving import regroup_optimizer_state
from sb3_clippedppo.update import EVALUATION_CHUNK, RolloutStep, UpdateBackend

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


def mlp_forward(layers: list[ArrayLayer], x: Array, xp: Any, trace: Trace | None = None) -> Array:
    """
    The network's output for inputs ``x`` of shape ``(B, in_features)``: ``(B, out_features)``.

    :param layers: the network, as arrays of its parameters.
    :param x: the inputs.
    :param xp: ``numpy`` or ``torch``, the arrays' module.
    :param trace: a list to which ``(input, pre-activation, output)`` of each layer is appended, for :func:`mlp_backward`;
        None keeps nothing (the rollout's actor).
    """
    for layer in layers:
        z = x @ layer.weight.T
        z += layer.bias
        h = z if layer.activation is None else ACTIVATIONS[type(layer.activation)].forward(z, layer.activation, xp)
        if trace is not None:
            trace.append((x, z, h))
        x = h
    return x


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


def actor_reason(policy: nn.Module) -> str | None:
    """
    Why the NumPy actor (:func:`deterministic_actions`, the rollout's actor) cannot compute ``policy``'s actions, or None
    when it can: a policy of this package (not overriding SB3's evaluation methods) whose actor and critic are SB3's
    ``MlpExtractor`` of ``Linear`` layers with Tanh/ReLU/LeakyReLU/ELU activations, on ``FlattenExtractor`` features
    (behind ``normalize_observations``, if set) of a non-image ``Box`` observation, with ``Box`` actions
    (state-independent ``log_std``) or ``Discrete`` actions.

    :param policy: the policy.
    :return: a reason, or None.
    """
    if not uses_forward_distribution(policy):
        return "the policy is not one of sb3_clippedppo's, or its subclass overrides an evaluation method"
    policy = cast(ActorCriticPolicy, policy)
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
    return None


def unsupported_reason(policy: nn.Module, policy_objective: str) -> str | None:
    """
    Why the fast path cannot train ``policy``, or None when it can (see the module's docstring): :func:`actor_reason`,
    an objective with a closed-form gradient here, and an optimizer that updates each element independently.

    :param policy: the policy.
    :param policy_objective: ClippedPPO's ``policy_objective``.
    :return: a reason, or None.
    """
    if not uses_forward_distribution(policy):
        return actor_reason(policy)
    if policy_objective not in ("clip", "kl_penalty"):
        return f"policy_objective={policy_objective!r} has no closed-form gradient here"
    reason = actor_reason(policy)
    if reason is not None:
        return reason
    policy = cast(ActorCriticPolicy, policy)
    if not issubclass(policy.optimizer_class, ELEMENTWISE_OPTIMIZERS):
        return f"optimizer_class {policy.optimizer_class.__name__} is not known to update each element independently"
    return None


def numpy_layers(layers: list[Layer]) -> list[ArrayLayer]:
    """The layers' parameters as NumPy arrays (views of them on the CPU, copies from another device), without gradients."""
    return [ArrayLayer(lin.weight.detach().cpu().numpy(), lin.bias.detach().cpu().numpy(), None, None, act)
            for lin, act in layers]  # fmt: skip


def features(observations: Array, obs_dim: int, xp: Any, obs_parameters: tuple[Array, Array] | None) -> Array:
    """
    Observations ``(B, *obs_shape)`` as the networks' float32 inputs ``(B, obs_dim)`` (no copy when they already are),
    normalized with the policy's statistics under ``normalize_observations`` (``obs_parameters``: mean and inverse
    standard deviation, :meth:`~sb3_clippedppo.normalization.RunningMeanStd.parameters_as`), as the policy's
    preprocessing, ``NormalizingExtractor`` and ``FlattenExtractor`` give them.
    """
    x = observations.reshape(-1, obs_dim)
    x = np.asarray(x, dtype=np.float32) if xp is np else x.to(dtype=th.float32)
    return x if obs_parameters is None else normalize(x, *obs_parameters)


class NumpyActor(NamedTuple):
    """The actor as NumPy arrays, for :func:`deterministic_actions`, with the parameters and statistics they were taken
    from; ``key`` (:func:`actor_key`) says when to take them again."""

    key: tuple[Any, ...]
    parameters: tuple[th.Tensor, ...]  # weight and bias of each layer
    statistics: RunningMeanStd | None  # the policy's observation statistics
    layers: list[ArrayLayer]
    obs_parameters: tuple[np.ndarray, np.ndarray] | None
    obs_dim: int


def actor_key(parameters: tuple[th.Tensor, ...], statistics: RunningMeanStd | None) -> tuple[Any, ...]:
    """What a :class:`NumpyActor` depends on beyond the memory it shares: the parameters' storage addresses (flat
    storage, a device or dtype change move them) and the observation statistics' count (it grows at each update)."""
    return (*(p.data_ptr() for p in parameters), None if statistics is None else float(statistics.count))


def numpy_actor(policy: ActorCriticPolicy) -> NumpyActor:
    """
    ``policy``'s actor as NumPy views of its parameters, kept on the policy and taken again when a parameter's storage
    changes or the observation statistics change (:func:`actor_key`). The layers are found once: like the choice of the
    NumPy actor (``ActorCriticPolicy._numpy_actor``), this assumes that the policy's modules are not replaced.

    :param policy: a policy that :func:`actor_reason` accepts, on the CPU.
    """
    actor: NumpyActor | None = getattr(policy, "_numpy_actor_cache", None)
    if actor is not None and actor.key == actor_key(actor.parameters, actor.statistics):
        return actor
    pairs = cast(list[Layer], mlp_layers(policy.mlp_extractor.policy_net, policy.action_net))
    parameters = tuple(p for lin, _ in pairs for p in (lin.weight, lin.bias))
    statistics = None if policy.obs_normalizer is None else policy.obs_normalizer.statistics()[0]
    obs_parameters = None if statistics is None else statistics.parameters_as(np.float32(0))
    obs_dim = int(np.prod(policy.observation_space.shape))  # type: ignore[arg-type]
    actor = NumpyActor(actor_key(parameters, statistics), parameters, statistics, numpy_layers(pairs), obs_parameters, obs_dim)
    policy._numpy_actor_cache = actor  # type: ignore[assignment]
    return actor


def deterministic_actions(policy: ActorCriticPolicy, observations: np.ndarray) -> np.ndarray:
    """
    The actions of ``policy.predict(observations, deterministic=True)`` before SB3's reshaping and clipping, from a NumPy
    forward pass of the actor (:func:`mlp_forward`, the rollout's actor): the Gaussian means ``(B, action_dim)``
    float32, or the argmax of the logits ``(B,)`` int64. The same numbers as the policy's torch forward pass up to
    float32 rounding.

    :param policy: a policy that :func:`actor_reason` accepts, on the CPU.
    :param observations: observations ``(B, *obs_shape)`` of the policy's observation space.
    """
    actor = numpy_actor(policy)
    output = mlp_forward(actor.layers, features(observations, actor.obs_dim, np, actor.obs_parameters), np)
    return np.argmax(output, axis=-1) if policy.distribution_class is Categorical else output


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
        optimizer = self.policy.optimizer_class(groups, **kwargs)
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


# ---------------------------------------------------------------------------------------------- the backend


class ClosedFormContext(NamedTuple):
    """What :meth:`ClosedFormBackend.backward` needs from the forward pass of :meth:`ClosedFormBackend.loss`."""

    coefficients: LossCoefficients
    output: Array  # (B, k) actor output: Gaussian means or logits
    actions: Array  # (B, k) float32 or (B,) int64
    old_distribution: Array  # (B, P): the rollout policy's distribution parameters (P = 0 if not kept)
    actor_trace: Trace
    critic_trace: Trace


class ClosedFormBackend(UpdateBackend):
    """
    The update of :func:`~sb3_clippedppo.losses.ppo_loss_terms` with closed-form gradients, for a policy that
    :func:`unsupported_reason` accepts (the module's docstring derives them): the loss terms are the shared ones,
    computed on NumPy arrays that share memory with the parameters, their gradients (:class:`FlatParameters`) and the
    minibatch; :meth:`backward` writes their gradient. The rollout acts through a NumPy forward pass of the actor; the
    rollout's values and log-probabilities are computed at its end, in batched torch passes.

    On the CPU the arithmetic runs in NumPy (NumPy's cost per operation is a third of PyTorch's, and these networks are
    small enough for that to matter); on another device it runs in torch. Both give the same numbers up to float32
    rounding.

    :param policy: a policy that :func:`unsupported_reason` accepts.
    :param array_module: ``numpy`` or ``torch`` to choose the arithmetic's library (``numpy`` needs the CPU); default
        (None): NumPy on the CPU, torch elsewhere.
    :raises ValueError: for a policy it does not support, or another ``array_module``.
    """

    fast_path = True

    def __init__(self, policy: ActorCriticPolicy, array_module: Any = None):
        reason = unsupported_reason(policy, "clip")  # either objective; the policy decides the rest
        if reason is not None:
            raise ValueError(f"the fast path does not apply: {reason}")
        if array_module not in (None, np, th):
            raise ValueError(f"array_module must be None, numpy or torch, got {array_module!r}")
        super().__init__(policy)
        self.policy: ActorCriticPolicy = policy
        self.array_module = array_module
        self.flat = FlatParameters(policy)
        self.actor_layers = cast(list[Layer], mlp_layers(policy.mlp_extractor.policy_net, policy.action_net))
        self.critic_layers = cast(list[Layer], mlp_layers(policy.mlp_extractor.value_net, policy.value_net))
        self.discrete = policy.distribution_class is Categorical
        self.obs_statistics = policy.obs_normalizer.statistics()[0] if policy.obs_normalizer is not None else None
        self.obs_dim = int(np.prod(policy.observation_space.shape))  # type: ignore[arg-type]
        self.xp: Any = np

    def _array(self, tensor: th.Tensor) -> Array:
        """A tensor as this backend's array type, sharing its memory."""
        return tensor.detach().numpy() if self.xp is np else tensor.detach()

    def prepare(self) -> None:
        """
        Make sure the flat storage is intact (rebuilding it if not), then take this backend's views of the parameters
        and their gradients.

        :raises ValueError: for ``array_module=numpy`` with the policy on another device than the CPU.
        """
        self.flat.ensure()
        on_cpu = self.policy.device.type == "cpu"
        if self.array_module is np and not on_cpu:
            raise ValueError(f"array_module=numpy needs the policy on the CPU, it is on {self.policy.device}")
        self.xp = (np if on_cpu else th) if self.array_module is None else self.array_module

        def layers(pairs: list[Layer]) -> list[ArrayLayer]:
            def array(tensor: th.Tensor | None) -> Array:  # a parameter or its gradient (FlatParameters creates them)
                return self._array(cast(th.Tensor, tensor))

            return [ArrayLayer(array(lin.weight), array(lin.bias), array(lin.weight.grad), array(lin.bias.grad), act)
                    for lin, act in pairs]  # fmt: skip

        self.actor, self.critic = layers(self.actor_layers), layers(self.critic_layers)
        if not self.discrete:
            log_std = cast(th.Tensor, self.policy.log_std)
            self.log_std, self.log_std_grad = self._array(log_std), self._array(cast(th.Tensor, log_std.grad))
        like = np.float32(0) if self.xp is np else th.zeros((), device=self.policy.device)
        self.obs_parameters = None if self.obs_statistics is None else self.obs_statistics.parameters_as(like)

    def rollout_step(self, n_steps: int, n_envs: int, keep_distributions: bool) -> RolloutStep:
        """The actor's NumPy forward pass on the environments' observations, then ``mean + std * noise`` (Gaussian) or
        ``argmax(logits + noise)`` (categorical, the Gumbel-max trick), with the rollout's noise from
        ``policy.draw_noise``; values, log-probabilities and distribution parameters are left to :meth:`finish_rollout`."""
        self.prepare()
        if self.xp is np:
            actor, obs_parameters = self.actor, self.obs_parameters
        else:  # on another device: a NumPy copy of the actor (one observation per environment is too small for a GPU)
            actor = numpy_layers(self.actor_layers)
            obs_parameters = None if self.obs_statistics is None else self.obs_statistics.parameters_as(np.float32(0))
        noise = self.policy.draw_noise(n_steps, n_envs).numpy()

        def act(obs: np.ndarray) -> np.ndarray:
            return mlp_forward(actor, features(obs, self.obs_dim, np, obs_parameters), np)

        if self.discrete:
            return lambda obs, step: (np.argmax(act(obs) + noise[step], axis=-1), None, None, None)
        std = np.exp(cast(th.Tensor, self.policy.log_std).detach().cpu().numpy())
        return lambda obs, step: (act(obs) + std * noise[step], None, None, None)

    @th.no_grad()
    def finish_rollout(self, buffer: RolloutBuffer) -> None:
        """The rollout's values, log-probabilities (and distribution parameters where the buffer keeps them), in batched
        passes of :data:`EVALUATION_CHUNK` transitions."""
        actions = buffer.flat_actions()
        values, log_probs = buffer.values.reshape(-1), buffer.log_probs.reshape(-1)
        distributions = buffer.old_distributions.reshape(buffer.n_transitions, -1)
        for chunk, observations in buffer.chunks(EVALUATION_CHUNK):
            distribution, chunk_values = self.policy.forward_distribution(observations)
            values[chunk] = chunk_values.cpu().numpy()
            log_probs[chunk] = distribution.log_prob(actions[chunk]).cpu().numpy()
            if buffer.keeps_distributions:
                distributions[chunk] = distribution.params().cpu().numpy()

    def loss(self, batch: RolloutBatch, advantages: th.Tensor, coefficients: LossCoefficients) -> LossTerms:
        """The minibatch's loss terms (:func:`~sb3_clippedppo.losses.ppo_loss_terms` on this backend's arrays), without
        an autograd graph; the context for :meth:`backward` rides along in ``terms.context``."""
        penalty = coefficients.policy_objective == "kl_penalty"
        x = features(self._array(batch.observations), self.obs_dim, self.xp, self.obs_parameters)  # type: ignore[arg-type]
        actor_trace: Trace = []
        critic_trace: Trace = []
        output = mlp_forward(self.actor, x, self.xp, actor_trace)
        values = mlp_forward(self.critic, x, self.xp, critic_trace)[:, 0]
        names = ("actions", "old_values", "old_log_prob", "returns", "old_distribution")
        arrays = SimpleNamespace(**{name: self._array(getattr(batch, name)) for name in names})
        actions, old_distribution, kl = arrays.actions, arrays.old_distribution, None
        if self.discrete:
            log_prob, entropy = categorical_log_prob(output, actions), categorical_entropy(output)
            if penalty:
                kl = categorical_kl(old_distribution, output)
        else:
            log_prob, entropy = gaussian_log_prob(actions, output, self.log_std), gaussian_entropy(self.log_std)
            if penalty:
                k = output.shape[-1]
                kl = gaussian_kl(old_distribution[:, :k], old_distribution[:, k:], output, self.log_std)
        terms = ppo_loss_terms(log_prob, entropy, values, arrays, self._array(advantages), coefficients, kl)
        context = ClosedFormContext(coefficients, output, actions, old_distribution, actor_trace, critic_trace)
        scalars = {name: th.as_tensor(getattr(terms, name)) for name in SCALAR_TERMS}
        return terms._replace(context=context, **scalars)

    def backward(self, terms: LossTerms) -> None:
        """
        Write the gradient of ``terms.loss`` into every parameter's ``.grad`` (overwriting it), from the loss's derivatives
        with respect to the log-probabilities and the values (``terms.grad_log_prob``, ``terms.grad_values``).

        :raises ValueError: for terms that :meth:`loss` did not compute.
        """
        if not isinstance(terms.context, ClosedFormContext):
            raise ValueError("ClosedFormBackend.backward() takes the terms of its own loss()")
        xp, context, grad_log_prob = self.xp, terms.context, terms.grad_log_prob
        n, (_, _, ent_coef, _, policy_objective, kl_coef) = len(grad_log_prob), context.coefficients
        output, old_distribution = context.output, context.old_distribution
        if self.discrete:
            # Through log softmax: (onehot - p) * g; the entropy bonus: ent_coef * p (log p + H) / B;
            # KL(p_old || p): beta (p - p_old) / B
            log_p = log_softmax(output)
            p = xp.exp(log_p)
            grad_output = -p * grad_log_prob[:, None]
            rows = np.arange(n) if xp is np else th.arange(n, device=output.device)
            indices = context.actions.astype(np.int64) if xp is np else context.actions.long()
            grad_output[rows, indices] += grad_log_prob
            grad_output += p * (log_p - xp.sum(p * log_p, axis=-1, keepdims=True)) * (ent_coef / n)
            if policy_objective == "kl_penalty":
                grad_output += (p - xp.exp(log_softmax(old_distribution))) * (kl_coef / n)
        else:
            # d log pi_i / d mu_ij = z_ij / sigma_j, d log pi_i / d log_std_j = z_ij^2 - 1; the entropy bonus: -ent_coef;
            # KL(old || new): d/d mu = (mu - mu_old) / sigma^2, d/d log_std = 1 - (sigma_old^2 + (mu - mu_old)^2) / sigma^2
            inv_std = xp.exp(-self.log_std)
            z = (context.actions - output) * inv_std
            grad_output = grad_log_prob[:, None] * z * inv_std
            grad_log_std = (z * z - 1.0).T @ grad_log_prob - ent_coef
            if policy_objective == "kl_penalty":
                k = output.shape[-1]
                old_mean, old_log_std = old_distribution[:, :k], old_distribution[:, k:]
                inv_var = inv_std * inv_std
                difference = output - old_mean
                grad_output += difference * inv_var * (kl_coef / n)
                spread = (xp.exp(2.0 * old_log_std) + difference * difference) * inv_var
                grad_log_std += xp.sum(1.0 - spread, axis=0) * (kl_coef / n)
            self.log_std_grad[...] = grad_log_std
        mlp_backward(self.actor, context.actor_trace, grad_output, xp)
        mlp_backward(self.critic, context.critic_trace, terms.grad_values[:, None], xp)

    def clip_grad_norm_(self, max_norm: float) -> float:
        return self.flat.clip_grad_norm_(max_norm)
