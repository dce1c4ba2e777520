"""The closed form's arithmetic: an MLP of ``Linear -> activation`` layers, its forward pass and its back-propagation,
for NumPy arrays (on the CPU) and torch tensors (elsewhere) alike.

The networks are those of SB3's ``MlpExtractor`` followed by the output layer (``action_net`` or ``value_net``);
:func:`mlp_layers` reads them off the modules, :func:`mlp_forward` evaluates them (keeping each layer's input,
pre-activation and output when a backward pass follows) and :func:`mlp_backward` writes each layer's gradient from the
loss's gradient with respect to the output (the chain rule, layer by layer: ``docs/algorithm.md``, "The gradient in
closed form").
"""

from collections.abc import Callable
from typing import Any, NamedTuple

from torch import nn

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


def numpy_layers(layers: list[Layer]) -> list[ArrayLayer]:
    """The layers' parameters as NumPy arrays (views of them on the CPU, copies from another device), without gradients."""
    return [ArrayLayer(lin.weight.detach().cpu().numpy(), lin.bias.detach().cpu().numpy(), None, None, act)
            for lin, act in layers]  # fmt: skip
