"""Where the closed form applies: the rule, evaluated once by the chooser (:func:`closed_form_networks`).

It applies to a policy of this package that offers distributions and evaluates observations as
:class:`~sb3_clippedppo.policies.ActorCriticPolicy` does (no override of ``extract_features``,
``_get_action_dist_from_latent`` or ``forward_distribution``), whose actor and critic are SB3's ``MlpExtractor`` of
``Linear`` layers with Tanh/ReLU/LeakyReLU/ELU activations, on ``FlattenExtractor`` features (behind
``normalize_observations``, if set) of a non-image ``Box``, a ``Discrete``, a ``MultiDiscrete`` (one-dimensional ``nvec``)
or a ``MultiBinary`` observation (one-hot and flattened as SB3's ``preprocess_obs``,
:mod:`~sb3_clippedppo.backends.closed_form.observations`), with ``Box`` actions (state-independent ``log_std``) or
``Discrete`` or ``MultiDiscrete`` actions (one-dimensional ``nvec``; with or without action masks); for training,
also an objective with a closed-form gradient (the clipped surrogate or PPO-Penalty's) and an optimizer that updates
each element independently (flat storage, :mod:`~sb3_clippedppo.backends.closed_form.parameters`).
"""

from typing import Any, NamedTuple, cast

import numpy as np
from stable_baselines3.common.torch_layers import FlattenExtractor, MlpExtractor
from torch import nn

from sb3_clippedppo.backends.closed_form.mlp import Layer, mlp_layers
from sb3_clippedppo.backends.closed_form.observations import observation_layout
from sb3_clippedppo.backends.closed_form.parameters import ELEMENTWISE_OPTIMIZERS
from sb3_clippedppo.distributions import Categorical, DiagGaussian, MultiCategorical
from sb3_clippedppo.normalization import NormalizingExtractor
from sb3_clippedppo.policies import ActorCriticPolicy

# Methods through which the policy evaluates observations; the closed form computes the same thing itself
EVALUATION_METHODS = ("extract_features", "_get_action_dist_from_latent", "forward_distribution")
# Objectives whose gradient the closed form writes
OBJECTIVES = ("clip", "kl_penalty")


class MlpNetworks(NamedTuple):
    """The actor's and the critic's layers, each an MLP ending in its output layer (``action_net``, ``value_net``)."""

    actor: list[Layer]
    critic: list[Layer]


def closed_form_networks(policy: nn.Module, policy_objective: str | None) -> MlpNetworks | str:
    """
    The policy's networks as the closed form computes them, or why it cannot (see the module's docstring).

    :param policy: the policy.
    :param policy_objective: ClippedPPO's ``policy_objective`` for training; None to ask only whether the actor can
        act through the closed form's forward pass (``predict``).
    :return: the networks, or the reason as a sentence.
    """
    if getattr(policy, "use_sde", False):
        return "gSDE (use_sde=True) has no closed-form gradient here: it trains through autograd"
    if not (isinstance(policy, ActorCriticPolicy) and policy.offers_distributions):
        return "the policy is not one of sb3_clippedppo's with offers_distributions = True"
    overridden = [name for name in EVALUATION_METHODS if getattr(type(policy), name) is not getattr(ActorCriticPolicy, name)]
    if overridden:
        return f"{type(policy).__name__} overrides {', '.join(overridden)}"
    nvec: Any = getattr(policy.action_space, "nvec", None)
    multi_dimensional = policy.distribution_class is MultiCategorical and np.ndim(nvec) != 1
    if policy.distribution_class not in (DiagGaussian, Categorical, MultiCategorical) or policy.state_dependent_std:
        multi_dimensional = True
    if multi_dimensional:
        return (
            "only Box actions with a state-independent log_std, and Discrete and (one-dimensional) MultiDiscrete actions, "
            "have closed-form gradients"
        )
    extractors = {policy.pi_features_extractor, policy.vf_features_extractor}
    # normalize_observations wraps the extractor; the closed form applies the same normalization itself
    inner = [extractor.extractor if type(extractor) is NormalizingExtractor else extractor for extractor in extractors]
    if any(type(extractor) is not FlattenExtractor for extractor in inner):
        return "the features extractor is not FlattenExtractor"
    layout = observation_layout(policy.observation_space, policy.normalize_images)
    if isinstance(layout, str):
        return layout
    extractor = policy.mlp_extractor
    if type(extractor) is not MlpExtractor:
        return "mlp_extractor is not SB3's MlpExtractor"
    actor = mlp_layers(extractor.policy_net, policy.action_net)
    critic = mlp_layers(extractor.value_net, policy.value_net)
    if actor is None or critic is None:
        return "the networks are not Linear layers with Tanh, ReLU, LeakyReLU or ELU activations"
    if policy_objective is not None:
        if policy_objective not in OBJECTIVES:
            return f"policy_objective={policy_objective!r} has no closed-form gradient here"
        if not issubclass(policy.optimizer_class, ELEMENTWISE_OPTIMIZERS):
            return f"optimizer_class {policy.optimizer_class.__name__} is not known to update each element independently"
    return MlpNetworks(cast(list[Layer], actor), cast(list[Layer], critic))
