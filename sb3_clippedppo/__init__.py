"""sb3_clippedppo: Proximal Policy Optimization (clipped, KL-stopped) for continuous control, on Stable-Baselines3.

The public names are imported lazily, so that importing a submodule that needs neither torch nor
Stable-Baselines3 (such as the RL Zoo registration hook) stays cheap.
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.3.0"

__all__ = [
    "ActorCriticCnnPolicy",
    "ActorCriticPolicy",
    "ClippedPPO",
    "CnnPolicy",
    "MlpPolicy",
    "MultiInputActorCriticPolicy",
    "MultiInputPolicy",
    "NonFiniteLossError",
    "RolloutBuffer",
    "compute_gae",
]

_LAZY = {
    "ClippedPPO": "sb3_clippedppo.clipped_ppo",
    "NonFiniteLossError": "sb3_clippedppo.losses",
    **dict.fromkeys(
        (
            "ActorCriticCnnPolicy",
            "ActorCriticPolicy",
            "CnnPolicy",
                    "MlpPolicy",
            "MultiInputActorCriticPolicy",
            "MultiInputPolicy",
        ),
        "sb3_clippedppo.policies",
    ),
    "RolloutBuffer": "sb3_clippedppo.buffers",
    "compute_gae": "sb3_clippedppo.gae",
}

if TYPE_CHECKING:
    from sb3_clippedppo.buffers import RolloutBuffer
    from sb3_clippedppo.clipped_ppo import ClippedPPO
    from sb3_clippedppo.gae import compute_gae
    from sb3_clippedppo.losses import NonFiniteLossError
    from sb3_clippedppo.policies import (
        ActorCriticCnnPolicy,
        ActorCriticPolicy,
        CnnPolicy,
        MlpPolicy,
        MultiInputActorCriticPolicy,
        MultiInputPolicy,
    )


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sb3_clippedppo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
