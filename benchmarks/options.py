"""Benchmark rows for ClippedPPO's options beyond SB3's PPO, each against plain ClippedPPO on the same settings.

Each option trains ClippedPPO through the benchmark runner (:mod:`benchmarks.run`, so the RL Zoo with
``benchmarks/hyperparams.yml``) with the option's overrides, into its own sweep folder
``OUT/<option>/clippedppo/<env>_<n>/``; the baseline is the main sweep's ClippedPPO rows. Settings per environment:

- ``vf_lr``: a separate value learning rate; walker-walk: the walker seed's 1e-3 (policy 3e-4);
  HalfCheetah-v4: the same ratio, 3.33 times the Zoo's 2.0633e-05.
- ``kl_penalty``: PPO-Penalty with the paper's initial beta 1 and d_targ 0.01 (Schulman et al. 2017, section 4).
- ``state_dependent_std``: the actor outputs the log standard deviation per state.
- ``kl_adaptive_lr``: KL-adaptive learning rate; HalfCheetah-v4 needs a ``target_kl`` for it (0.01, which also
  turns on KL early stopping there); walker-walk already has target_kl 0.01.

Example (3 seeds per option and environment, 2 runs at a time)::

    python -m benchmarks.options --seeds 0 1 2 --jobs 2 --out benchmarks/results/options
"""

import argparse
from pathlib import Path

from benchmarks import run

HALFCHEETAH_POLICY = (
    "dict(log_std_init=-2, ortho_init=False, activation_fn=nn.ReLU, net_arch=dict(pi=[256, 256], vf=[256, 256])"
)
WALKER_POLICY = "dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=nn.Tanh"

# option -> environment -> Zoo --hyperparams overrides (values are Python expressions, as the Zoo reads them)
OPTIONS: dict[str, dict[str, list[str]]] = {
    "vf_lr": {
        "HalfCheetah-v4": ["vf_learning_rate:6.8789e-05"],
        "dm_control/walker-walk-v0": ["vf_learning_rate:1e-3"],
    },
    "kl_penalty": {
        "HalfCheetah-v4": ["policy_objective:'kl_penalty'", "kl_coef:1.0", "kl_target:0.01"],
        "dm_control/walker-walk-v0": ["policy_objective:'kl_penalty'", "kl_coef:1.0", "kl_target:0.01"],
    },
    "state_dependent_std": {
        "HalfCheetah-v4": [f"policy_kwargs:'{HALFCHEETAH_POLICY}, state_dependent_std=True)'"],
        "dm_control/walker-walk-v0": [f"policy_kwargs:'{WALKER_POLICY}, state_dependent_std=True)'"],
    },
    "kl_adaptive_lr": {
        "HalfCheetah-v4": ["target_kl:0.01", "kl_adaptive_lr:True"],
        "dm_control/walker-walk-v0": ["kl_adaptive_lr:True"],
    },
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--options", nargs="+", choices=list(OPTIONS), default=list(OPTIONS))
    parser.add_argument("--envs", nargs="+", default=list(run.DEFAULT_ENVS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="one sweep folder per option is made inside")
    parser.add_argument("--n-timesteps", type=int, default=0, help="override n_timesteps (0: keep the file's)")
    parser.add_argument("--dry-run", action="store_true")
    args, extra = parser.parse_known_args(argv)
    for env in args.envs:
        for option in args.options:
            overrides = OPTIONS[option][env]
            command = ["--algos", "clippedppo", "--envs", env, "--seeds", *map(str, args.seeds), "--jobs", str(args.jobs),
                       "--out", str(args.out / option), "--hyperparams", *overrides, *extra]  # fmt: skip
            if args.n_timesteps:
                command += ["--n-timesteps", str(args.n_timesteps)]
            if args.dry_run:
                command.append("--dry-run")
            print(f"== {option} on {env}: python -m benchmarks.run {' '.join(command)}", flush=True)
            run.main(command)


if __name__ == "__main__":
    main()
