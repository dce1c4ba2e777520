"""Observation normalization inside the policy (``policy_kwargs=dict(normalize_observations=True)``).

The policy keeps a running mean and variance of its vector observations (``Box`` observations, or the ``Box`` entries
of a ``Dict``, that are not images) as buffers, and feeds its feature extractor ``clip((obs - mean) / sqrt(var + 1e-8),
-10, 10)``, as SB3's ``VecNormalize`` does. Unlike ``VecNormalize``, the statistics live in the policy: they are saved in
the model zip with the weights, and a loaded model predicts correctly without a separate ``vecnormalize.pkl``.

ClippedPPO updates the statistics after each update, from the observations of the rollout that update used: a rollout
and its update see the same normalization (the stored log-probabilities stay those of the policy being updated), and
``predict`` never changes them. The first rollout is seen with mean 0 and variance 1 (clipped to +-10).
"""

from typing import Any, cast

import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_clippedppo.distributions import array_module

EPSILON = 1e-8
CLIP = 10.0


def normalize(x: Any, mean: Any, inv_std: Any) -> Any:
    """
    ``clip((x - mean) * inv_std, -10, 10)``: the normalization the policy applies (and ``VecNormalize``), written once for
    torch tensors (the policy's own forward pass) and NumPy arrays (the closed form,
    :mod:`sb3_clippedppo.backends.closed_form`).

    :param x: observations, shape ``(B, *shape)``.
    :param mean: running mean, shape ``shape``, of ``x``'s kind and dtype.
    :param inv_std: ``1 / sqrt(var + 1e-8)``, shape ``shape``.
    :return: normalized observations, shape and dtype of ``x``.
    """
    return array_module(x).clip((x - mean) * inv_std, -CLIP, CLIP)


class RunningMeanStd(nn.Module):
    """
    Running mean and variance of a stream of batches (Chan et al.'s parallel algorithm, as SB3's ``RunningMeanStd``),
    as float64 buffers.

    :param shape: shape of one observation.
    """

    mean: th.Tensor
    var: th.Tensor
    count: th.Tensor

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.register_buffer("mean", th.zeros(shape, dtype=th.float64))
        self.register_buffer("var", th.ones(shape, dtype=th.float64))
        self.register_buffer("count", th.tensor(1e-4, dtype=th.float64))

    @th.no_grad()
    def update(self, batch: th.Tensor) -> None:
        """Add a batch of observations, shape ``(N, *shape)``."""
        batch = batch.to(dtype=th.float64).reshape(-1, *self.mean.shape)
        batch_count = batch.shape[0]
        batch_mean, batch_var = batch.mean(dim=0), batch.var(dim=0, unbiased=False)
        total = self.count + batch_count
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * batch_count + delta * delta * self.count * batch_count / total
        self.mean += delta * batch_count / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def normalize(self, x: th.Tensor) -> th.Tensor:
        """:func:`normalize` with these statistics, in ``x``'s dtype."""
        return normalize(x, *self.parameters_as(x))

    def parameters_as(self, x: Any) -> tuple[Any, Any]:
        """``(mean, 1 / sqrt(var + 1e-8))`` in the kind (tensor or NumPy array), dtype and device of ``x``."""
        inv_std = th.rsqrt(self.var + EPSILON)
        if isinstance(x, th.Tensor):
            return self.mean.to(x.dtype), inv_std.to(x.dtype)
        return self.mean.cpu().numpy().astype(x.dtype), inv_std.cpu().numpy().astype(x.dtype)


def normalizable(space: spaces.Space) -> bool:
    """Whether observations of ``space`` are normalized: a ``Box`` that is not an image."""
    return isinstance(space, spaces.Box) and not is_image_space(space, check_channels=False)


class ObservationNormalizer(nn.Module):
    """
    Running statistics of the vector observations of ``observation_space`` (a ``Box``, or the normalizable entries of a
    ``Dict``) and their normalization.

    :param observation_space: the observation space.
    :raises ValueError: when the space has nothing to normalize.
    """

    def __init__(self, observation_space: spaces.Space):
        super().__init__()
        if isinstance(observation_space, spaces.Dict):
            self.keys: list[str | None] = [key for key, space in observation_space.spaces.items() if normalizable(space)]
            shapes = [observation_space[key].shape or (1,) for key in self.keys]  # type: ignore[index]
        elif normalizable(observation_space):
            self.keys, shapes = [None], [observation_space.shape or (1,)]
        else:
            self.keys, shapes = [], []
        if not self.keys:
            raise ValueError(
                "normalize_observations=True needs vector observations (a Box that is not an image, or a Dict with one), "
                f"got {observation_space}"
            )
        self.stats = nn.ModuleList([RunningMeanStd(tuple(shape)) for shape in shapes])

    def forward(self, observations: Any) -> Any:
        """Normalized observations: a tensor ``(B, *shape)``, or a dict whose normalizable entries are normalized."""
        if self.keys == [None]:
            return self.statistics()[0].normalize(observations)
        normalized = dict(observations)
        for key, stats in zip(self.keys, self.statistics(), strict=True):
            normalized[key] = stats.normalize(observations[key])
        return normalized

    def statistics(self) -> list[RunningMeanStd]:
        """The running statistics, one per normalized entry (in the order of ``keys``)."""
        return [cast(RunningMeanStd, stats) for stats in self.stats]

    def update(self, observations: Any) -> None:
        """Add a batch of observations (a tensor ``(N, *shape)``, or a dict of them) to the statistics."""
        for key, stats in zip(self.keys, self.statistics(), strict=True):
            stats.update(observations if key is None else observations[key])


class NormalizingExtractor(BaseFeaturesExtractor):
    """
    A feature extractor that normalizes its (preprocessed) observations first.

    :param extractor: the feature extractor (e.g. SB3's ``FlattenExtractor``).
    :param normalizer: the policy's :class:`ObservationNormalizer` (shared with the critic's extractor).
    """

    def __init__(self, extractor: BaseFeaturesExtractor, normalizer: ObservationNormalizer):
        super().__init__(extractor._observation_space, extractor.features_dim)
        self.extractor = extractor
        self.normalizer = normalizer

    def forward(self, observations: Any) -> th.Tensor:
        return self.extractor(self.normalizer(observations))
