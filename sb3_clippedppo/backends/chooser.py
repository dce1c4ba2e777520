"""The choice of the update backend, made once when the model is set up (``ClippedPPO(fast_path=...)``): the only module
that knows both backends. Without :mod:`sb3_clippedppo.backends.closed_form`, delete its import and the two lines that
use it, and every policy trains through autograd."""

from typing import cast

from stable_baselines3.common.policies import ActorCriticPolicy as SB3ActorCriticPolicy

from sb3_clippedppo.backends.autograd import AutogradBackend
from sb3_clippedppo.backends.base import UpdateBackend
from sb3_clippedppo.backends.closed_form import ClosedFormBackend, closed_form_networks
from sb3_clippedppo.policies import ActorCriticPolicy


def choose_backend(policy: SB3ActorCriticPolicy, fast_path: bool | str, policy_objective: str) -> tuple[UpdateBackend, str]:
    """
    The backend for ``ClippedPPO(fast_path=...)``. Both compute the same update (to float32 rounding); the closed form is
    faster for the small MLPs of continuous control, where torch's per-operation overhead costs more than the arithmetic,
    and applies only to them (:func:`~sb3_clippedppo.backends.closed_form.applicability.closed_form_networks` decides,
    once).

    :param policy: the policy.
    :param fast_path: ``"auto"``: the closed form where it applies, else autograd; ``True``: the closed form, or an
        error; ``False``: autograd.
    :param policy_objective: ClippedPPO's ``policy_objective``.
    :return: the backend, and why the closed form was not chosen (``""`` when it was, or with ``fast_path=False``).
    :raises ValueError: for ``fast_path=True`` where the closed form does not apply (the message says why).
    """
    if fast_path is False:
        return AutogradBackend(policy), ""
    networks = closed_form_networks(policy, policy_objective)
    if not isinstance(networks, str):
        return ClosedFormBackend(cast(ActorCriticPolicy, policy), networks), ""  # closed_form_networks checked the class
    if fast_path is True:
        raise ValueError(f"fast_path=True, but the fast path does not apply: {networks}")
    return AutogradBackend(policy), networks
