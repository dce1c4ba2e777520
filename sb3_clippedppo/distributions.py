"""Action distributions in closed form: diagonal Gaussian (``Box`` actions), categorical (``Discrete``),
multi-categorical (``MultiDiscrete``) and Bernoulli (``MultiBinary``).

Each class is a batch of ``B`` distributions with the same small interface as Stable-Baselines3's distributions
(``log_prob``, ``entropy``, ``sample``, ``mode``, ``get_actions``), written out with closed-form expressions instead of
``torch.distributions`` objects, plus what ClippedPPO's options need: the exact KL divergence between two batches
(:meth:`Distribution.kl`) and all parameters as one tensor (:meth:`Distribution.params`, :meth:`Distribution.from_params`)
that the rollout buffer can keep.

The closed-form expressions (``gaussian_log_prob``, ``categorical_entropy``, ...) are functions of tensors or NumPy
arrays alike: the classes call them on tensors, the closed form (:mod:`sb3_clippedppo.backends.closed_form`) on NumPy arrays.

Sampling takes pre-drawn noise (:meth:`Distribution.draw_noise`), so that a whole rollout's noise can be drawn at once and
the same actions follow whichever way the policy is evaluated: ``mean + std * noise`` with standard normal noise (Gaussian),
``argmax(logits + noise)`` with standard Gumbel noise (categorical: the Gumbel-max trick), ``logits + noise > 0`` with
standard logistic noise (Bernoulli).
"""

import math
from abc import ABC, abstractmethod
from typing import Any, TypeVar, cast

import numpy as np
import torch as th
from gymnasium import spaces

LOG_2PI = math.log(2.0 * math.pi)
# Range of a state-dependent log standard deviation (as Stable-Baselines3's SAC): std in [2e-9, 7.4]
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0

SelfDistribution = TypeVar("SelfDistribution", bound="Distribution")
# A torch tensor or a NumPy array: the functions below that take it are written with operations both spell alike
Array = Any


def array_module(x: Any) -> Any:
    """``numpy`` for a NumPy array (or scalar), ``torch`` for a tensor: the module whose functions the closed-form
    expressions below call, so that they serve both the autograd path (tensors) and the fast path (NumPy arrays)."""
    return th if isinstance(x, th.Tensor) else np


def log_softmax(logits: Array) -> Array:
    """``log softmax`` over the last axis, shape as ``logits`` (torch's own for a tensor; for a NumPy array, shifted by
    the maximum so that ``exp`` cannot overflow)."""
    if isinstance(logits, th.Tensor):
        return th.log_softmax(logits, dim=-1)
    shifted = logits - np.amax(logits, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def gaussian_log_prob(actions: Array, mean: Array, log_std: Array) -> Array:
    r"""
    Log-density of actions under a diagonal Gaussian, summed over action dimensions:
    :math:`\log \pi(a|s) = -\frac12 \sum_i z_i^2 - \sum_i \log \sigma_i - \frac{k}{2} \log 2\pi` with
    :math:`z_i = (a_i - \mu_i) / \sigma_i`.

    :param actions: actions, shape ``(B, k)``, float (a tensor or a NumPy array, as every argument).
    :param mean: Gaussian means :math:`\mu`, shape ``(B, k)``.
    :param log_std: :math:`\log \sigma`, shape ``(k,)`` (state-independent) or ``(B, k)``.
    :return: log-probabilities, shape ``(B,)``, in nats.
    """
    xp = array_module(mean)
    z = (actions - mean) * xp.exp(-log_std)
    return -0.5 * xp.sum(z * z, axis=-1) - xp.sum(log_std, axis=-1) - 0.5 * LOG_2PI * mean.shape[-1]


def gaussian_entropy(log_std: Array) -> Array:
    r"""
    Differential entropy of a diagonal Gaussian, :math:`\sum_i \left(\frac12 + \frac12 \log 2\pi + \log \sigma_i\right)`.

    :param log_std: :math:`\log \sigma`, shape ``(k,)`` or ``(B, k)``.
    :return: entropy in nats, shape ``()`` or ``(B,)``.
    """
    return array_module(log_std).sum(0.5 + 0.5 * LOG_2PI + log_std, axis=-1)


def gaussian_kl(mean_p: Array, log_std_p: Array, mean_q: Array, log_std_q: Array) -> Array:
    r"""
    :math:`KL(p \,\|\, q)` between diagonal Gaussians, summed over action dimensions:
    :math:`\sum_j \log\frac{\sigma_{q,j}}{\sigma_{p,j}} + \frac{\sigma_{p,j}^2 + (\mu_{p,j} - \mu_{q,j})^2}{2 \sigma_{q,j}^2}
    - \frac12`.

    :param mean_p: means of p, shape ``(B, k)``.
    :param log_std_p: log standard deviations of p, shape ``(B, k)`` or ``(k,)``.
    :param mean_q: means of q, shape ``(B, k)``.
    :param log_std_q: log standard deviations of q, shape ``(B, k)`` or ``(k,)``.
    :return: KL divergences in nats, shape ``(B,)``.
    """
    xp = array_module(mean_q)
    variance_ratio = xp.exp(2.0 * (log_std_p - log_std_q))
    squared_distance = ((mean_p - mean_q) * xp.exp(-log_std_q)) ** 2
    return xp.sum(log_std_q - log_std_p + 0.5 * (variance_ratio + squared_distance) - 0.5, axis=-1)


def take_actions(log_p: Array, actions: Array) -> Array:
    """``log_p[i, actions[i]]`` for each row ``i``: shape ``(B,)`` from ``(B, n)`` and integer indices ``(B,)``."""
    if isinstance(log_p, th.Tensor):
        return log_p.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    return np.take_along_axis(log_p, actions.astype(np.int64)[:, None], axis=-1)[:, 0]


def categorical_log_prob(logits: Array, actions: Array) -> Array:
    """
    Log-probability of action indices under a categorical distribution.

    :param logits: unnormalized log-probabilities, shape ``(B, n)`` (a tensor or a NumPy array).
    :param actions: action indices, shape ``(B,)``, integer (or float holding integers).
    :return: log-probabilities, shape ``(B,)``.
    """
    return take_actions(log_softmax(logits), actions)


def categorical_entropy(logits: Array) -> Array:
    r"""
    Entropy :math:`-\sum_j p_j \log p_j` of a categorical distribution given by logits.

    :param logits: shape ``(B, n)`` (a tensor or a NumPy array).
    :return: entropy in nats, shape ``(B,)``.
    """
    xp, log_p = array_module(logits), log_softmax(logits)
    return -xp.sum(xp.exp(log_p) * log_p, axis=-1)


def categorical_kl(logits_p: Array, logits_q: Array) -> Array:
    r"""
    :math:`KL(p \,\|\, q) = \sum_j p_j (\log p_j - \log q_j)` between categorical distributions given by logits.

    :param logits_p: shape ``(B, n)`` (a tensor or a NumPy array).
    :param logits_q: shape ``(B, n)``.
    :return: KL divergences in nats, shape ``(B,)``.
    """
    xp, log_p = array_module(logits_q), log_softmax(logits_p)
    return xp.sum(xp.exp(log_p) * (log_p - log_softmax(logits_q)), axis=-1)


def gumbel_noise(shape: tuple[int, ...], device: th.device | str = "cpu") -> th.Tensor:
    """Standard Gumbel noise ``-log(-log(u))``, ``u ~ U(0, 1)`` kept away from 0 and 1, float32."""
    uniform = th.rand(shape, device=device).clamp_(min=1e-20, max=1.0 - 1e-7)
    return -th.log(-th.log(uniform))


class Distribution(ABC):
    """
    A batch of ``B`` action distributions. Subclasses hold their parameters as tensors whose first dimension is ``B``;
    every method returns tensors of shape ``(B,)`` or ``(B, ...)``.
    """

    @abstractmethod
    def log_prob(self, actions: th.Tensor) -> th.Tensor:
        """Log-probability (or log-density) of ``actions``, summed over action dimensions, shape ``(B,)``, in nats."""

    @abstractmethod
    def entropy(self) -> th.Tensor:
        """Entropy, shape ``(B,)``, in nats."""

    @abstractmethod
    def sample(self, noise: th.Tensor | None = None) -> th.Tensor:
        """
        Actions drawn from the distributions.

        :param noise: noise from :meth:`draw_noise` of shape ``(B, noise_dim)``; None draws it now.
        :return: actions, in the layout :meth:`log_prob` takes.
        """

    @abstractmethod
    def mode(self) -> th.Tensor:
        """The most likely actions (the mean of a Gaussian)."""

    @abstractmethod
    def kl(self, other: "Distribution") -> th.Tensor:
        """Exact ``KL(self || other)`` for a batch ``other`` of the same kind and size, shape ``(B,)``, in nats."""

    @abstractmethod
    def params(self) -> th.Tensor:
        """All parameters as one tensor of shape ``(B, param_dim(action_space))``, for :meth:`from_params`."""

    @classmethod
    @abstractmethod
    def from_params(cls: type[SelfDistribution], params: th.Tensor, action_space: spaces.Space) -> SelfDistribution:
        """The distributions whose :meth:`params` are ``params`` (shape ``(B, param_dim)``)."""

    @staticmethod
    @abstractmethod
    def param_dim(action_space: spaces.Space) -> int:
        """Width of :meth:`params` for ``action_space``."""

    @staticmethod
    @abstractmethod
    def draw_noise(shape: tuple[int, ...], action_space: spaces.Space, device: th.device | str = "cpu") -> th.Tensor:
        """
        Noise for :meth:`sample`, from torch's global generator.

        :param shape: leading dimensions, e.g. ``(n_steps, n_envs)``.
        :param action_space: the action space.
        :param device: device of the noise.
        :return: float32 tensor of shape ``(*shape, noise_dim)``.
        """

    def _same_kind(self: SelfDistribution, other: "Distribution") -> SelfDistribution:
        """``other``, checked to be a batch of the same kind as this one.

        :raises TypeError: for another kind of distribution."""
        if type(other) is not type(self):
            raise TypeError(f"KL divergence needs two {type(self).__name__} batches, got {type(other).__name__}")
        return other

    def get_actions(self, deterministic: bool = False) -> th.Tensor:
        """:meth:`mode` if ``deterministic``, else :meth:`sample` (Stable-Baselines3's name)."""
        return self.mode() if deterministic else self.sample()


class DiagGaussian(Distribution):
    """
    Diagonal Gaussians over ``Box`` actions (flattened to ``k = prod(shape)`` dimensions), not squashed.

    :param mean: means, shape ``(B, k)``.
    :param log_std: log standard deviations, shape ``(k,)`` (state-independent) or ``(B, k)``.
    """

    def __init__(self, mean: th.Tensor, log_std: th.Tensor):
        self.mean, self.log_std = mean, log_std

    def log_prob(self, actions: th.Tensor) -> th.Tensor:
        return gaussian_log_prob(actions.reshape(self.mean.shape), self.mean, self.log_std)

    def entropy(self) -> th.Tensor:
        return gaussian_entropy(self.log_std).expand(self.mean.shape[0])

    def sample(self, noise: th.Tensor | None = None) -> th.Tensor:
        if noise is None:
            noise = th.randn_like(self.mean)
        return self.mean + th.exp(self.log_std) * noise

    def mode(self) -> th.Tensor:
        return self.mean

    def kl(self, other: Distribution) -> th.Tensor:
        other = self._same_kind(other)
        return gaussian_kl(self.mean, self.log_std, other.mean, other.log_std)

    def params(self) -> th.Tensor:
        return th.cat([self.mean, self.log_std.expand_as(self.mean)], dim=-1)

    @classmethod
    def from_params(cls, params: th.Tensor, action_space: spaces.Space) -> "DiagGaussian":
        mean, log_std = params.chunk(2, dim=-1)
        return cls(mean, log_std)

    @staticmethod
    def param_dim(action_space: spaces.Space) -> int:
        return 2 * spaces.flatdim(action_space)

    @staticmethod
    def draw_noise(shape: tuple[int, ...], action_space: spaces.Space, device: th.device | str = "cpu") -> th.Tensor:
        return th.randn((*shape, spaces.flatdim(action_space)), device=device)


class LogitsDistribution(Distribution, ABC):
    """A distribution whose parameters are one tensor of logits, shape ``(B, n)``, ``n = action_space.n``."""

    def __init__(self, logits: th.Tensor):
        self.logits = logits

    def params(self) -> th.Tensor:
        return self.logits

    @classmethod
    def from_params(cls: type[SelfDistribution], params: th.Tensor, action_space: spaces.Space) -> SelfDistribution:
        return cls(params)  # type: ignore[call-arg]

    @staticmethod
    def param_dim(action_space: spaces.Space) -> int:
        return spaces.flatdim(action_space)


class Categorical(LogitsDistribution):
    """
    Categorical distributions over ``Discrete(n)`` actions; actions are indices of shape ``(B,)``, int64.

    :param logits: unnormalized log-probabilities, shape ``(B, n)``.
    """

    def log_prob(self, actions: th.Tensor) -> th.Tensor:
        return categorical_log_prob(self.logits, actions.reshape(-1))

    def entropy(self) -> th.Tensor:
        return categorical_entropy(self.logits)

    def sample(self, noise: th.Tensor | None = None) -> th.Tensor:
        if noise is None:
            noise = gumbel_noise(self.logits.shape, self.logits.device)
        return th.argmax(self.logits + noise, dim=-1)

    def mode(self) -> th.Tensor:
        return th.argmax(self.logits, dim=-1)

    def kl(self, other: Distribution) -> th.Tensor:
        other = self._same_kind(other)
        return categorical_kl(self.logits, other.logits)

    @staticmethod
    def draw_noise(shape: tuple[int, ...], action_space: spaces.Space, device: th.device | str = "cpu") -> th.Tensor:
        return gumbel_noise((*shape, spaces.flatdim(action_space)), device)


class MultiCategorical(Distribution):
    """
    Independent categorical distributions over ``MultiDiscrete(nvec)`` actions; actions have shape ``(B, len(nvec))``,
    int64. Log-probabilities, entropies and KL divergences are sums over the components.

    :param logits: the components' logits side by side, shape ``(B, sum(nvec))``.
    :param nvec: number of choices of each component.
    """

    def __init__(self, logits: th.Tensor, nvec: tuple[int, ...]):
        self.logits, self.nvec = logits, tuple(int(n) for n in nvec)
        self.components = logits.split(self.nvec, dim=-1)

    def log_prob(self, actions: th.Tensor) -> th.Tensor:
        columns = actions.reshape(-1, len(self.nvec)).unbind(dim=-1)
        return sum(categorical_log_prob(c, a) for c, a in zip(self.components, columns, strict=True))

    def entropy(self) -> th.Tensor:
        return sum(categorical_entropy(c) for c in self.components)

    def sample(self, noise: th.Tensor | None = None) -> th.Tensor:
        if noise is None:
            noise = gumbel_noise(self.logits.shape, self.logits.device)
        perturbed = (self.logits + noise).split(self.nvec, dim=-1)
        return th.stack([th.argmax(c, dim=-1) for c in perturbed], dim=-1)

    def mode(self) -> th.Tensor:
        return th.stack([th.argmax(c, dim=-1) for c in self.components], dim=-1)

    def kl(self, other: Distribution) -> th.Tensor:
        other = self._same_kind(other)
        return sum(categorical_kl(p, q) for p, q in zip(self.components, other.components, strict=True))

    def params(self) -> th.Tensor:
        return self.logits

    @classmethod
    def from_params(cls, params: th.Tensor, action_space: spaces.Space) -> "MultiCategorical":
        return cls(params, tuple(cast(spaces.MultiDiscrete, action_space).nvec.reshape(-1)))

    @staticmethod
    def param_dim(action_space: spaces.Space) -> int:
        return spaces.flatdim(action_space)

    @staticmethod
    def draw_noise(shape: tuple[int, ...], action_space: spaces.Space, device: th.device | str = "cpu") -> th.Tensor:
        return gumbel_noise((*shape, MultiCategorical.param_dim(action_space)), device)


class Bernoulli(LogitsDistribution):
    r"""
    Independent Bernoulli distributions over ``MultiBinary(n)`` actions; actions are 0.0 or 1.0, shape ``(B, n)``, float32.
    With :math:`p = \sigma(l)` for logits :math:`l`: :math:`\log p = -\text{softplus}(-l)`,
    :math:`\log (1 - p) = -\text{softplus}(l)`.

    :param logits: log-odds of a 1, shape ``(B, n)``.
    """

    def log_prob(self, actions: th.Tensor) -> th.Tensor:
        actions = actions.reshape(self.logits.shape).to(self.logits.dtype)
        return -(
            actions * th.nn.functional.softplus(-self.logits) + (1.0 - actions) * th.nn.functional.softplus(self.logits)
        ).sum(dim=-1)

    def entropy(self) -> th.Tensor:
        p = th.sigmoid(self.logits)
        softplus = th.nn.functional.softplus
        return (p * softplus(-self.logits) + (1.0 - p) * softplus(self.logits)).sum(dim=-1)

    def sample(self, noise: th.Tensor | None = None) -> th.Tensor:
        if noise is None:
            noise = Bernoulli._logistic(self.logits.shape, self.logits.device)
        return (self.logits + noise > 0).to(self.logits.dtype)

    def mode(self) -> th.Tensor:
        return (self.logits > 0).to(self.logits.dtype)

    def kl(self, other: Distribution) -> th.Tensor:
        other = self._same_kind(other)
        softplus = th.nn.functional.softplus
        p = th.sigmoid(self.logits)
        # p (log p - log q) + (1 - p) (log (1 - p) - log (1 - q))
        log_ratio_1 = softplus(-other.logits) - softplus(-self.logits)
        log_ratio_0 = softplus(other.logits) - softplus(self.logits)
        return (p * log_ratio_1 + (1.0 - p) * log_ratio_0).sum(dim=-1)

    @staticmethod
    def draw_noise(shape: tuple[int, ...], action_space: spaces.Space, device: th.device | str = "cpu") -> th.Tensor:
        return Bernoulli._logistic((*shape, spaces.flatdim(action_space)), device)

    @staticmethod
    def _logistic(shape: tuple[int, ...], device: th.device | str) -> th.Tensor:
        """Standard logistic noise ``log(u) - log(1 - u)``: ``P(l + noise > 0) = sigmoid(l)``."""
        uniform = th.rand(shape, device=device).clamp_(min=1e-7, max=1.0 - 1e-7)
        return th.log(uniform) - th.log1p(-uniform)


def distribution_class(action_space: spaces.Space) -> type[Distribution]:
    """
    The distribution for an action space: :class:`DiagGaussian` (``Box``), :class:`Categorical` (``Discrete``),
    :class:`MultiCategorical` (``MultiDiscrete``), :class:`Bernoulli` (one-dimensional ``MultiBinary``).

    :param action_space: the action space.
    :return: the class.
    :raises TypeError: for any other space.
    """
    if isinstance(action_space, spaces.Box):
        return DiagGaussian
    if isinstance(action_space, spaces.Discrete):
        return Categorical
    if isinstance(action_space, spaces.MultiDiscrete):
        return MultiCategorical
    if isinstance(action_space, spaces.MultiBinary):
        if not isinstance(action_space.n, (int, np.integer)):
            raise TypeError(f"MultiBinary action spaces must be one-dimensional (flatten it), got {action_space}")
        return Bernoulli
    raise TypeError(f"action space must be a gymnasium Box, Discrete, MultiDiscrete or MultiBinary, got {action_space}")
