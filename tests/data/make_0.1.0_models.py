# How tests/data/clippedppo_0.1.0_*.zip were made, with sb3_clippedppo 0.1.0 (commit b44e5ae), for tests/test_saved_models.py.
import json

import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from sb3_clippedppo import ClippedPPO

out = {}
for name, env_id, kw in [
    ("pendulum", "Pendulum-v1", dict(policy_kwargs=dict(net_arch=[32, 32]))),
    ("pendulum_sds", "Pendulum-v1", dict(policy_kwargs=dict(net_arch=[16], state_dependent_std=True))),
    ("cartpole", "CartPole-v1", dict(policy_kwargs=dict(net_arch=[32]))),
]:
    env = make_vec_env(env_id, n_envs=2, seed=0)
    model = ClippedPPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=2, seed=0, **kw)
    model.learn(256)
    model.save(f"tests/data/clippedppo_0.1.0_{name}.zip")
    obs = np.random.default_rng(1).normal(size=(5, *env.observation_space.shape)).astype(np.float32)
    act, _ = model.predict(obs, deterministic=True)
    with th.no_grad():
        v = model.policy.predict_values(th.as_tensor(obs)).numpy().ravel()
    out[name] = dict(obs=obs.tolist(), actions=np.asarray(act).tolist(), values=v.tolist(), num_timesteps=model.num_timesteps)
with open("tests/data/clippedppo_0.1.0_predictions.json", "w") as file:
    json.dump(out, file, indent=1)
