"""Flat parameter storage for the closed form (:class:`FlatParameters`): every parameter of the policy is a view into one
contiguous buffer and every gradient a view into another, and the optimizer gets one flat tensor per parameter group
(``"actor"``, ``"critic"``), so that zeroing, clipping and the optimizer step are one operation per group.

Used only with optimizers that act on each element independently (:data:`ELEMENTWISE_OPTIMIZERS`), for which a flat
tensor and separate tensors give the same update. The storage is this backend's own: a saved model holds SB3's layout
of the optimizer state (one tensor per parameter), :meth:`FlatParameters.per_tensor_state` gives it.
"""

import math

import numpy as np
import torch as th

from sb3_clippedppo.policies import ActorCriticPolicy, optimizer_arguments
from sb3_clippedppo.saving import regroup_optimizer_state

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
            optimizer.load_state_dict(regroup_optimizer_state(state, [[leaf] for leaf in leaves]))
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

    def per_tensor_state(self) -> dict:
        """The optimizer's state in SB3's layout (one entry per parameter tensor, in the groups' order), for saving."""
        return regroup_optimizer_state(self.policy.optimizer.state_dict(), self.group_params)

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
