"""Seeded short runs whose final parameters fingerprint ClippedPPO's default behaviour.

``python -m tests.defaults_fingerprint`` writes ``tests/data/defaults_fingerprint.json``; it was generated with the
code of commit bcd6b78 (before the optional features of the "beyond SB3's PPO" issue), and
``tests/test_options.py`` checks that the current code, with every new option at its default, reproduces it bit for bit.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from sb3_clippedppo import ClippedPPO

PATH = Path(__file__).parent / "data" / "defaults_fingerprint.json"
RUNS = {
    # Box actions: closed-form gradients, NumPy rollout actor
    "pendulum": dict(env="Pendulum-v1", n_envs=2, timesteps=1024,
                     kwargs=dict(n_steps=256, batch_size=64, n_epochs=3, ent_coef=0.01, clip_range_vf=0.3, target_kl=0.05)),
    # Discrete actions: autograd, categorical policy
    "cartpole": dict(env="CartPole-v1", n_envs=2, timesteps=1024,
                     kwargs=dict(n_steps=128, batch_size=64, n_epochs=3, learning_rate=1e-3)),
}  # fmt: skip


def run(name: str) -> np.ndarray:
    th.set_num_threads(1)
    spec = RUNS[name]
    model = ClippedPPO("MlpPolicy", make_vec_env(spec["env"], n_envs=spec["n_envs"], seed=0), seed=0, **spec["kwargs"])
    model.learn(spec["timesteps"])
    return model.policy.parameters_to_vector().astype(np.float32)


def fingerprint(params: np.ndarray) -> dict:
    return {"sha256": hashlib.sha256(params.tobytes()).hexdigest(), "size": int(params.size), "sum": float(params.sum())}


if __name__ == "__main__":
    PATH.parent.mkdir(exist_ok=True)
    PATH.write_text(json.dumps({name: fingerprint(run(name)) for name in RUNS}, indent=2) + "\n")
    print(PATH.read_text())
