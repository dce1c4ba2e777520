"""The update backends: how a policy acts during a rollout, how a minibatch's loss is evaluated and differentiated.

- :mod:`~sb3_clippedppo.backends.base`: the interface the algorithm calls (``UpdateBackend``);
- :mod:`~sb3_clippedppo.backends.autograd`: any SB3 ``ActorCriticPolicy``, gradients from autograd;
- :mod:`~sb3_clippedppo.backends.closed_form`: this package's MLP policies, gradients in closed form (the fast path);
- :mod:`~sb3_clippedppo.backends.chooser`: picks one, once; the only module that knows both.
"""
