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
- ``recompute_advantages``: advantages and returns recomputed with the current critic before every epoch.
- ``ent_coef_schedule``: the entropy coefficient decaying linearly to 0 from 0.001 (``lin_0.001``; HalfCheetah-v4's
  constant is the Zoo's 4.0e-4, about its mean over training; walker-walk's is 0).
- ``normalize_observations``: observations normalized inside the policy instead of by ``VecNormalize`` (which keeps
  normalizing rewards: ``normalize: {norm_obs: False, norm_reward: True}``).

One sweep on Ray (:func:`benchmarks.run.run_jobs`) runs every option x environment x seed, so a cluster trains them
all at once; the other options are the runner's (``--address``, ``--jobs``, ``--retries``, ...).

Example (3 seeds per option and environment, 2 runs at a time)::

    python -m benchmarks.options --seeds 0 1 2 --jobs 2 --out runs/options

then ``python -m benchmarks.dataset add runs/options/<option> --variant <option>`` per option adds the runs to the
dataset in ``benchmarks/results/``.
"""

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
        "HalfCheetah-v4": ["policy_objective:'kl_penalty'", "kl_coef:1.0", "kl_penalty_target:0.01"],
        "dm_control/walker-walk-v0": ["policy_objective:'kl_penalty'", "kl_coef:1.0", "kl_penalty_target:0.01"],
    },
    "state_dependent_std": {
        "HalfCheetah-v4": [f"policy_kwargs:'{HALFCHEETAH_POLICY}, state_dependent_std=True)'"],
        "dm_control/walker-walk-v0": [f"policy_kwargs:'{WALKER_POLICY}, state_dependent_std=True)'"],
    },
    "kl_adaptive_lr": {
        "HalfCheetah-v4": ["target_kl:0.01", "kl_adaptive_lr:True"],
        "dm_control/walker-walk-v0": ["kl_adaptive_lr:True"],
    },
    "recompute_advantages": {
        "HalfCheetah-v4": ["recompute_advantages:True"],
        "dm_control/walker-walk-v0": ["recompute_advantages:True"],
    },
    "ent_coef_schedule": {
        "HalfCheetah-v4": ["ent_coef:'lin_0.001'"],
        "dm_control/walker-walk-v0": ["ent_coef:'lin_0.001'"],
    },
    "normalize_observations": {
        "HalfCheetah-v4": [
            'normalize:"dict(norm_obs=False, norm_reward=True)"',
            f"policy_kwargs:'{HALFCHEETAH_POLICY}, normalize_observations=True)'",
        ],
        "dm_control/walker-walk-v0": [
            'normalize:"dict(norm_obs=False, norm_reward=True)"',
            f"policy_kwargs:'{WALKER_POLICY}, normalize_observations=True)'",
        ],
    },
}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = run.parser(algos=False)
    parser.description = __doc__.split("\n")[0]
    parser.add_argument("--options", nargs="+", choices=list(OPTIONS), default=list(OPTIONS))
    parser.set_defaults(seeds=[0, 1, 2])
    args = parser.parse_args(argv)
    run.check_args(parser, args)
    for env in args.envs:
        if env not in OPTIONS[args.options[0]]:
            parser.error(f"--envs {env}: the options have settings for {', '.join(OPTIONS[args.options[0]])} only")
    jobs = [run.Job("clippedppo", env, seed, args.out / option, (*OPTIONS[option][env], *args.hyperparams))
            for env in args.envs for option in args.options for seed in args.seeds]  # fmt: skip
    return run.exit_if_failed(run.run_jobs(jobs, args))


if __name__ == "__main__":
    main()
