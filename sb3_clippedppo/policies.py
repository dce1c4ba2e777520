"""ClippedPPO's actor-critic policies: Stable-Baselines3's ``ActorCriticPolicy`` (its feature extractors, ``net_arch``,
preprocessing, orthogonal initialization, ``predict``, ``save``/``load``) with this package's closed-form action
distributions (:mod:`sb3_clippedppo.distributions`) and two parameter groups, ``"actor"`` and ``"critic"``, in its optimizer.

``MlpPolicy`` (``FlattenExtractor``), ``CnnPolicy`` (``NatureCNN``) and ``MultiInputPolicy`` (``CombinedExtractor``) are
the same class with SB3's default feature extractors for vectors, images and ``Dict`` observations. For the same seed,
a policy starts from exactly the weights SB3's PPO policy starts from.
"""

import functools
from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common import policies as sb3_policies
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor, FlattenExtractor, NatureCNN
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from sb3_clippedppo.buffers import RolloutBuffer, with_feature_axis
from sb3_clippedppo.distributions import LOG_STD_MAX, LOG_STD_MIN, DiagGaussian, Distribution, distribution_class
from sb3_clippedppo.masking.logits import masked_distribution
from sb3_clippedppo.normalization import NormalizingExtractor, ObservationNormalizer

# SB3's methods that training bypasses for a policy that offers distributions (check_distribution_interface)
BYPASSED_METHODS = ("forward", "evaluate_actions", "predict_values")
# Transitions per forward pass when a whole rollout is evaluated at once (evaluate_rollout): bounds the activations'
# memory for large rollouts
EVALUATION_CHUNK = 256


def optimizer_arguments(optimizer_class: type[th.optim.Optimizer], optimizer_kwargs: dict[str, Any]) -> dict[str, Any]:
    """
    The optimizer's keyword arguments: ``optimizer_kwargs``, plus ``fused=True`` for Adam and AdamW when it sets neither
    ``fused`` nor ``foreach`` (one kernel per step instead of several per parameter tensor; the same Adam, to float32
    rounding; PyTorch >= 2.4 on the CPU).
    """
    if issubclass(optimizer_class, (th.optim.Adam, th.optim.AdamW)) and not {"fused", "foreach"} & set(optimizer_kwargs):
        return {**optimizer_kwargs, "fused": True}
    return dict(optimizer_kwargs)


def check_net_arch(net_arch: Any) -> None:
    """
    Check a ``net_arch`` in one of Stable-Baselines3's forms: None, a list of layer sizes (used for the actor and the
    critic, not shared), or ``dict(pi=[...], vf=[...])`` (SB3 also accepts, with a warning, that dict inside a list).

    :param net_arch: the architecture.
    :raises TypeError: for any other form, or sizes that are not ints.
    :raises ValueError: for a layer size below 1.
    """
    if isinstance(net_arch, list) and net_arch and isinstance(net_arch[0], dict):
        net_arch = net_arch[0]
    if net_arch is None:
        return
    if isinstance(net_arch, dict):
        unknown = set(net_arch) - {"pi", "vf"}
        if unknown:
            raise TypeError(f"net_arch dict accepts only the keys 'pi' and 'vf', got {sorted(unknown)}")
        sizes = [*net_arch.get("pi", []), *net_arch.get("vf", [])]
    elif isinstance(net_arch, (list, tuple)):
        sizes = list(net_arch)
    else:
        raise TypeError(f"net_arch must be None, a list of ints or dict(pi=[...], vf=[...]), got {net_arch!r}")
    for size in sizes:
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool):
            raise TypeError(f"net_arch layer sizes must be ints, got {size!r}")
        if size < 1:
            raise ValueError(f"net_arch layer sizes must be >= 1, got {size}")


class ActorCriticPolicy(sb3_policies.ActorCriticPolicy):
    """
    Actor-critic policy (``"MlpPolicy"`` of :class:`~sb3_clippedppo.ClippedPPO`): Stable-Baselines3's
    ``ActorCriticPolicy`` with closed-form action distributions.

    Observations go through SB3's preprocessing (float cast; images divided by 255 when ``normalize_images``; one-hot
    for ``Discrete`` and ``MultiDiscrete``) and feature extractor, then through separate actor and critic MLPs
    (``net_arch``, SB3's ``MlpExtractor``) into ``action_net`` and ``value_net``:

    - ``Box`` actions: a diagonal Gaussian with mean ``action_net(latent)`` and a free, state-independent ``log_std`` of
      shape ``(k,)``, initialized to ``log_std_init``. With ``state_dependent_std=True``, ``action_net`` outputs the log
      standard deviation too (its second half), clamped to ``[LOG_STD_MIN, LOG_STD_MAX] = [-20, 2]``, its bias
      initialized to ``log_std_init``. Actions are not squashed; ClippedPPO clips them to the bounds for the environment.
    - ``Discrete``, ``MultiDiscrete``, ``MultiBinary`` actions: categorical, multi-categorical, Bernoulli logits.

    The optimizer has two parameter groups: ``"critic"`` (``value_net``, the critic's MLP and, when it is not shared,
    the critic's feature extractor) and ``"actor"`` (everything else, a shared feature extractor included), so that
    ClippedPPO's ``vf_learning_rate`` can set the critic's rate.

    - ``use_sde=True``: generalized State-Dependent Exploration (gSDE; Raffin et al. 2022, "Smooth Exploration for
      Robotic Reinforcement Learning"), with SB3's own ``StateDependentNoiseDistribution``: the action is
      ``mu(s) + eps(s)``, ``eps(s) = z(s) @ W`` with ``z`` the actor's latent features (not learned through the noise) and
      the exploration matrix ``W ~ N(0, std^2)``, ``std = exp(log_std)`` of shape ``(latent_dim, k)`` (``full_std``) or
      ``(latent_dim, 1)``; ``W`` is resampled by :meth:`reset_noise` (ClippedPPO does so at each rollout's start and every
      ``sde_sample_freq`` steps). Such a policy is trained as any SB3 policy (``offers_distributions`` is False), through
      autograd.

    Arguments are SB3's, with the same defaults and meanings, plus ``state_dependent_std`` and ``normalize_observations``.

    :param observation_space: ``Box`` (vector or image), ``Discrete``, ``MultiDiscrete``, ``MultiBinary`` or ``Dict``.
    :param action_space: ``Box``, ``Discrete``, ``MultiDiscrete`` or one-dimensional ``MultiBinary``.
    :param lr_schedule: learning-rate schedule; its value at progress 1 is the optimizer's initial rate.
    :param net_arch: hidden sizes: a list for both networks or ``dict(pi=[...], vf=[...])``; None: 64x64 (none after a CNN).
    :param activation_fn: activation class of the hidden layers.
    :param ortho_init: orthogonal initialization (gains sqrt(2) for hidden layers, 0.01 for ``action_net``, 1 for
        ``value_net``; biases zero), as SB3 and OpenAI Baselines.
    :param use_sde: gSDE for ``Box`` actions (see above).
    :param log_std_init: initial log standard deviation (``Box`` actions; with gSDE, of the exploration matrix's std).
    :param full_std: gSDE: one std per latent feature and action dimension (``(latent_dim, k)``), else per latent
        feature (``(latent_dim, 1)``).
    :param use_expln: gSDE: ``expln(log_std)`` (exp below 0, ``log1p(x) + 1`` above) instead of ``exp``, which keeps the
        std from growing too fast.
    :param squash_output: gSDE only: squash actions with tanh to ``[-1, 1]``, then rescale them to the ``Box`` bounds.
    :param features_extractor_class: SB3 feature extractor class.
    :param features_extractor_kwargs: its keyword arguments.
    :param share_features_extractor: one feature extractor for actor and critic (True) or one each.
    :param normalize_images: divide image observations by 255.
    :param optimizer_class: optimizer class (default Adam with ``eps=1e-5``, as SB3; Adam and AdamW get ``fused=True``
        unless ``optimizer_kwargs`` sets ``fused`` or ``foreach``, see :func:`optimizer_arguments`).
    :param optimizer_kwargs: optimizer arguments other than the learning rate.
    :param state_dependent_std: the actor outputs the log standard deviation per state (``Box`` actions only).
    :param normalize_observations: normalize vector observations with running statistics kept in the policy (saved
        with it; updated by ClippedPPO after each update, frozen for ``predict``): see :mod:`sb3_clippedppo.normalization`.
    :raises ValueError: for gSDE without ``Box`` actions or with ``state_dependent_std``, ``squash_output`` without gSDE,
        ``state_dependent_std`` without ``Box`` actions, layer sizes below 1.
    :raises TypeError: for an unsupported action space, or a ``net_arch`` or ``activation_fn`` of the wrong type.
    """

    log_std: nn.Parameter
    # The policy's capability: ClippedPPO trains it through forward_distribution (closed-form distributions, sampling
    # with noise drawn for the whole rollout, exact KL). A subclass that sets it to False is trained through SB3's
    # forward and evaluate_actions, as any SB3 ActorCriticPolicy (check_distribution_interface).
    offers_distributions: bool = True

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.Tanh,
        ortho_init: bool = True,
        use_sde: bool = False,
        log_std_init: float = 0.0,
        full_std: bool = True,
        use_expln: bool = False,
        squash_output: bool = False,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        share_features_extractor: bool = True,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        state_dependent_std: bool = False,
        normalize_observations: bool = False,
    ):
        if use_sde and not isinstance(action_space, spaces.Box):
            raise ValueError(f"use_sde=True (gSDE) needs a Box action space, got {action_space}")
        if use_sde and state_dependent_std:
            raise ValueError("use_sde=True and state_dependent_std=True both set the std: choose one")
        if squash_output and not use_sde:
            raise ValueError("squash_output=True is only available with gSDE (use_sde=True), as in SB3")
        if use_sde:  # SB3's gSDE distribution, used through SB3's forward and evaluate_actions
            self.offers_distributions = False
        if not (isinstance(activation_fn, type) and issubclass(activation_fn, nn.Module)):
            raise TypeError(f"activation_fn must be a torch.nn.Module class such as nn.Tanh, got {activation_fn!r}")
        check_net_arch(net_arch)
        self.distribution_class = distribution_class(action_space)
        if state_dependent_std and self.distribution_class is not DiagGaussian:
            raise ValueError(
                f"state_dependent_std=True needs a Box action space (it sets a Gaussian's std), got {action_space}"
            )
        self.state_dependent_std = bool(state_dependent_std)
        self.normalize_observations = bool(normalize_observations)
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=net_arch,
            activation_fn=activation_fn,
            ortho_init=ortho_init,
            use_sde=use_sde,
            log_std_init=log_std_init,
            full_std=full_std,
            use_expln=use_expln,
            squash_output=squash_output,
            features_extractor_class=features_extractor_class,
            features_extractor_kwargs=features_extractor_kwargs,
            share_features_extractor=share_features_extractor,
            normalize_images=normalize_images,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
        )

    def make_features_extractor(self) -> BaseFeaturesExtractor:
        """SB3's feature extractor, behind the observation normalization when ``normalize_observations``."""
        extractor = super().make_features_extractor()
        if not self.normalize_observations:
            self.obs_normalizer = None
            return extractor
        if getattr(self, "obs_normalizer", None) is None:
            self.obs_normalizer = ObservationNormalizer(self.observation_space)  # one, shared by actor and critic
        return NormalizingExtractor(extractor, self.obs_normalizer)  # type: ignore[arg-type]

    def update_observation_statistics(self, observations: PyTorchObs) -> None:
        """
        With ``normalize_observations``: add a batch of observations (as the rollout buffer stores them, a tensor
        ``(N, *obs_shape)`` or a dict of them) to the running statistics; otherwise nothing.
        """
        if self.obs_normalizer is not None:
            self.obs_normalizer.update(observations)

    def _build(self, lr_schedule: Schedule) -> None:
        """
        Build the networks, in SB3's order (so that a seed gives SB3's initial weights): the actor and critic MLPs
        (:meth:`_build_mlp_extractor`, which a subclass may override), ``action_net`` (and ``log_std``), ``value_net``,
        orthogonal initialization, then the optimizer with the ``"actor"`` and ``"critic"`` groups. With gSDE, SB3's own
        ``_build`` (its ``action_net`` and exploration ``log_std``), then the optimizer with those groups.
        """
        if self.use_sde:
            super()._build(lr_schedule)
            self.optimizer = self.optimizer_class(  # type: ignore[call-arg]
                self.parameter_groups(), lr=lr_schedule(1), **optimizer_arguments(self.optimizer_class, self.optimizer_kwargs)
            )
            return
        self._build_mlp_extractor()
        latent_dim_pi = self.mlp_extractor.latent_dim_pi
        n_outputs = self.distribution_class.param_dim(self.action_space)
        if self.distribution_class is DiagGaussian and not self.state_dependent_std:
            n_outputs //= 2  # the means; log_std is a parameter of its own
            self.action_net = nn.Linear(latent_dim_pi, n_outputs)
            self.log_std = nn.Parameter(th.ones(n_outputs) * self.log_std_init)
        else:
            self.action_net = nn.Linear(latent_dim_pi, n_outputs)
        self.value_net = nn.Linear(self.mlp_extractor.latent_dim_vf, 1)

        if self.ortho_init:
            # Gains from OpenAI Baselines, in SB3's module order
            module_gains: dict[nn.Module, float] = {
                self.features_extractor: 2**0.5,
                self.mlp_extractor: 2**0.5,
                self.action_net: 0.01,
                self.value_net: 1.0,
            }
            if not self.share_features_extractor:
                del module_gains[self.features_extractor]
                module_gains[self.pi_features_extractor] = 2**0.5
                module_gains[self.vf_features_extractor] = 2**0.5
            for module, gain in module_gains.items():
                module.apply(functools.partial(self.init_weights, gain=gain))
        if self.state_dependent_std:
            with th.no_grad():
                self.action_net.bias[n_outputs // 2 :] = self.log_std_init

        self.optimizer = self.optimizer_class(  # type: ignore[call-arg]
            self.parameter_groups(), lr=lr_schedule(1), **optimizer_arguments(self.optimizer_class, self.optimizer_kwargs)
        )

    def parameter_groups(self) -> list[dict[str, Any]]:
        """
        The optimizer's parameter groups: ``{"name": "actor", "params": [...]}`` and ``{"name": "critic", ...}``.
        The critic's are ``value_net``'s, the critic MLP's (``mlp_extractor.value_net``, where it exists) and those of
        the critic's own feature extractor (when not shared); the actor's are all others, ``log_std`` last.
        """
        critic_modules: list[nn.Module] = [self.value_net]
        if isinstance(getattr(self.mlp_extractor, "value_net", None), nn.Module):
            critic_modules.insert(0, self.mlp_extractor.value_net)
        if not self.share_features_extractor:
            critic_modules.insert(0, self.vf_features_extractor)
        critic = list(dict.fromkeys(p for module in critic_modules for p in module.parameters()))
        taken = {id(p) for p in critic}
        log_std = [self.log_std] if isinstance(getattr(self, "log_std", None), nn.Parameter) else []
        taken.update(id(p) for p in log_std)
        actor = [p for p in self.parameters() if id(p) not in taken] + log_std
        return [{"params": actor, "name": "actor"}, {"params": critic, "name": "critic"}]

    def _get_action_dist_from_latent(self, latent_pi: th.Tensor) -> Distribution:  # type: ignore[override]
        """The action distributions for the actor's latent features ``(B, latent_dim_pi)`` (SB3's with gSDE)."""
        if self.use_sde:
            return super()._get_action_dist_from_latent(latent_pi)  # type: ignore[return-value]
        output = self.action_net(latent_pi)
        if self.distribution_class is DiagGaussian:
            if self.state_dependent_std:
                mean, log_std = output.chunk(2, dim=-1)
                return DiagGaussian(mean, th.clamp(log_std, LOG_STD_MIN, LOG_STD_MAX))
            return DiagGaussian(output, self.log_std)
        return self.distribution_class.from_params(output, self.action_space)

    def forward_distribution(self, obs: PyTorchObs) -> tuple[Distribution, th.Tensor]:
        """
        The action distributions and the state values for a batch of observations, in one pass through the feature
        extractor(s) and both networks (as SB3's ``forward``, without choosing actions).

        :param obs: observations, a tensor ``(B, *obs_shape)`` or a dict of them (``Dict`` spaces), not yet preprocessed.
        :return: ``(distribution, values)``, values of shape ``(B,)``.
        """
        features = self.extract_features(obs)
        if self.share_features_extractor:
            latent_pi, latent_vf = self.mlp_extractor(features)
        else:
            pi_features, vf_features = features
            latent_pi = self.mlp_extractor.forward_actor(pi_features)
            latent_vf = self.mlp_extractor.forward_critic(vf_features)
        return self._get_action_dist_from_latent(latent_pi), self.value_net(latent_vf).squeeze(-1)

    def obs_to_tensor(self, observation: np.ndarray | dict[str, np.ndarray]) -> tuple[PyTorchObs, bool]:
        """SB3's ``obs_to_tensor`` (used by ``predict``), with scalar ``Box`` entries given a feature axis
        (:func:`~sb3_clippedppo.buffers.with_feature_axis`)."""
        tensor, vectorized = super().obs_to_tensor(observation)
        return with_feature_axis(tensor, self.observation_space), vectorized

    def distribution_from_params(self, params: th.Tensor) -> Distribution:
        """The distributions whose :meth:`~sb3_clippedppo.distributions.Distribution.params` are ``params`` ``(B, P)``."""
        return self.distribution_class.from_params(params, self.action_space)

    def draw_noise(self, *shape: int, device: th.device | str = "cpu") -> th.Tensor:
        """Sampling noise of shape ``(*shape, noise_dim)`` for this policy's distribution (torch's global generator)."""
        return self.distribution_class.draw_noise(shape, self.action_space, device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            state_dependent_std=self.state_dependent_std,
            normalize_observations=self.normalize_observations,
            share_features_extractor=self.share_features_extractor,
        )
        return data


def check_distribution_interface(policy: nn.Module) -> None:
    """
    Check that a policy which offers this package's distribution interface (``offers_distributions``) is trained through
    what it defines: :meth:`ActorCriticPolicy.forward_distribution` (which calls ``extract_features`` and
    ``_get_action_dist_from_latent``, so overriding those is fine) replaces SB3's ``forward``, ``evaluate_actions`` and
    ``predict_values`` during training, so a subclass that overrides one of those three would be bypassed silently.

    :param policy: the policy.
    :raises TypeError: for a subclass that offers distributions and overrides ``forward``, ``evaluate_actions`` or
        ``predict_values`` (set ``offers_distributions = False`` to have it trained through them, as SB3's PPO does).
    """
    if not getattr(policy, "offers_distributions", False):
        return
    bypassed = [name for name in BYPASSED_METHODS if getattr(type(policy), name) is not getattr(ActorCriticPolicy, name)]
    if bypassed:
        raise TypeError(
            f"{type(policy).__name__} overrides {', '.join(bypassed)}, which ClippedPPO does not call for a policy with "
            "offers_distributions = True (it trains through forward_distribution); set offers_distributions = False in "
            "the subclass to train it through SB3's forward and evaluate_actions, or override forward_distribution"
        )


@th.no_grad()
def evaluate_rollout(
    policy: sb3_policies.ActorCriticPolicy, buffer: RolloutBuffer, values_only: bool = False
) -> Iterator[tuple[slice, Distribution | None, th.Tensor]]:
    """
    The policy on a whole rollout, :data:`EVALUATION_CHUNK` transitions at a time, without gradient: the one loop behind
    the rollout's batched values and log-probabilities, the recomputed advantages and the KL after an update. What the
    caller computes from the distributions runs outside this generator: call it under ``torch.no_grad()`` too.

    :param policy: the policy.
    :param buffer: the rollout.
    :param values_only: only the values (SB3's ``predict_values``); otherwise the distributions too, which needs a
        policy that offers them (``offers_distributions``); masked by the rollout's action masks where the buffer keeps
        them (:func:`~sb3_clippedppo.masking.logits.masked_distribution`).
    :return: ``(chunk, distribution or None, values)`` for each chunk of the flattened rollout, values of shape ``(n,)``.
    """
    masks = buffer.flat_action_masks()
    for chunk, observations in buffer.chunks(EVALUATION_CHUNK):
        if values_only:
            yield chunk, None, policy.predict_values(observations).flatten()
        else:
            distribution, values = cast(ActorCriticPolicy, policy).forward_distribution(observations)
            if masks is not None:
                distribution = masked_distribution(distribution, masks[chunk])
            yield chunk, distribution, values


class ActorCriticCnnPolicy(ActorCriticPolicy):
    """:class:`ActorCriticPolicy` with SB3's ``NatureCNN`` feature extractor by default (``"CnnPolicy"``)."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        *args: Any,
        features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN,
        **kwargs: Any,
    ):
        kwargs["features_extractor_class"] = features_extractor_class
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)


class MultiInputActorCriticPolicy(ActorCriticPolicy):
    """:class:`ActorCriticPolicy` with SB3's ``CombinedExtractor`` by default, for ``Dict`` observations
    (``"MultiInputPolicy"``)."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        *args: Any,
        features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor,
        **kwargs: Any,
    ):
        kwargs["features_extractor_class"] = features_extractor_class
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)


MlpPolicy = ActorCriticPolicy
CnnPolicy = ActorCriticCnnPolicy
MultiInputPolicy = MultiInputActorCriticPolicy
