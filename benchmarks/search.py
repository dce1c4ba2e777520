"""Hyperparameter search for ClippedPPO with the RL Zoo's own ``--optimize``, on one shared Optuna study.

``start`` creates the study in a journal file (so that workers starting together do not race to create it), enqueues
the starting points of :func:`starting_points` for the environment (the shipped settings, alone, with each of
ClippedPPO's levers and with a few variants: Optuna runs enqueued trials first, then samples with TPE), and runs
``--workers`` Zoo worker processes on it, one per core, until the study holds ``--trials`` trials. ``dump`` writes
every trial of a study (number, state, value, parameters, duration) to a CSV file; ``rerank`` trains the best few
trials again with other seeds and ranks them by their mean, since a single seed's value overstates the winner;
``best`` prints a trial's settings as a block for ``hyperparams/clippedppo.yml``. Workers on other machines join the
same study with the command that ``start`` prints (a journal file on a shared filesystem, or a PostgreSQL URL; see
``benchmarks/README.md``).

Example (the search summarized under ``benchmarks/results/search/``: its trials table and gzipped journal)::

    python -m benchmarks.search start --env HalfCheetah-v4 --study halfcheetah --trials 50 --workers 2 \\
        --n-timesteps 300000 --n-evaluations 3 --out runs/search/halfcheetah
    python -m benchmarks.search dump --storage runs/search/halfcheetah/study.log --study halfcheetah
"""

import argparse
import csv
import subprocess
import sys
from pathlib import Path
from typing import Any

# The settings shipped when the committed studies ran (the walker entry has since gained normalize_observations and
# recompute_advantages, the HalfCheetah entry a learning rate decaying linearly from 8e-5), in the sampler's own
# parameter names (``sb3_clippedppo.zoo.sample_clippedppo_params``)
SHIPPED = {
    "HalfCheetah-v4": dict(
        n_steps_pow=9, batch_size_pow=6, one_minus_gamma=0.02, one_minus_gae_lambda=0.08, learning_rate=2.0633e-05,
        ent_coef=0.000401762, clip_range=0.1, n_epochs=20, max_grad_norm=0.8, vf_coef=0.58096, target_kl=None,
        log_std_init=-2.0, ortho_init=False, net_arch="medium", activation_fn="relu", vf_lr_multiplier=1,
        policy_objective="clip", state_dependent_std=False,
    ),
    # the walker seed's settings (5000 steps per rollout and batches of 250 rounded to powers of 2), PPO-Penalty
    "dm_control/walker-walk-v0": dict(
        n_steps_pow=12, batch_size_pow=8, one_minus_gamma=0.01, one_minus_gae_lambda=0.05, learning_rate=3e-4,
        ent_coef=1e-8, clip_range=0.2, n_epochs=10, max_grad_norm=0.5, vf_coef=0.5, target_kl=0.01,
        kl_adaptive_lr=False, log_std_init=0.0, ortho_init=True, net_arch="small", activation_fn="tanh",
        vf_lr_multiplier=3, policy_objective="kl_penalty", kl_coef=1.0, kl_penalty_target=0.01, state_dependent_std=False,
    ),
}  # fmt: skip
LEVERS_OFF = dict(learning_rate_schedule="constant", ent_coef_schedule="constant", recompute_advantages=False,
                  normalize_observations=False)  # fmt: skip
LEVERS = [
    {},
    dict(normalize_observations=True),
    dict(recompute_advantages=True),
    dict(learning_rate_schedule="linear"),
    dict(normalize_observations=True, recompute_advantages=True, learning_rate_schedule="linear"),
]


# Further starting points per environment, on top of the shipped settings: larger learning rates, with a decay
VARIANTS = {
    "HalfCheetah-v4": [
        dict(learning_rate=6e-5),
        dict(learning_rate=6e-5, learning_rate_schedule="linear", recompute_advantages=True),
        dict(learning_rate=2e-4, learning_rate_schedule="linear", recompute_advantages=True),
        dict(learning_rate=2e-4, learning_rate_schedule="linear", recompute_advantages=True, clip_range=0.2, n_epochs=10),
    ],
}


def starting_points(env_id: str) -> list[dict[str, Any]]:
    """
    The trials enqueued first: the shipped settings alone, with each of ClippedPPO's levers (:data:`LEVERS`) and with the
    environment's :data:`VARIANTS`; none for environments without shipped settings here.
    """
    if env_id not in SHIPPED:
        return []
    changes = LEVERS + VARIANTS.get(env_id, [])
    return [{**SHIPPED[env_id], **LEVERS_OFF, **change} for change in changes]


def create_study(storage: str, study: str, env_id: str) -> int:
    """Create the study (maximize) unless it exists, and enqueue the starting points if it is new; returns how many."""
    import optuna

    backend = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    existing = {s.study_name for s in optuna.get_all_study_summaries(backend)}
    if study in existing:
        return 0
    created = optuna.create_study(storage=backend, study_name=study, direction="maximize")
    points = starting_points(env_id)
    for params in points:
        created.enqueue_trial(params)
    return len(points)


def worker_command(args: argparse.Namespace, storage: str, seed: int, log_folder: Path) -> list[str]:
    """One Zoo worker's command line."""
    command = [
        sys.executable, "-m", "rl_zoo3.train", "--algo", "clippedppo", "--env", args.env, "-optimize",
        "--n-jobs", "1", "--max-total-trials", str(args.trials), "--n-trials", str(args.trials),
        "--sampler", "tpe", "--pruner", "median", "-n", str(args.n_timesteps), "--n-evaluations", str(args.n_evaluations),
        "--eval-episodes", str(args.eval_episodes), "--num-threads", "1", "--seed", str(seed),
        "--storage", storage, "--study-name", args.study, "-f", str(log_folder), "--no-optim-plots",
    ]  # fmt: skip
    if args.env.startswith("dm_control/"):
        command += ["--gym-packages", "shimmy"]
    return command


def start(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    storage = str(out / "study.log")
    enqueued = create_study(storage, args.study, args.env)
    print(f"study {args.study!r} in {storage}: {enqueued} starting points enqueued")
    processes = []
    for worker in range(args.workers):
        command = worker_command(args, storage, args.seed + worker, out / "_zoo")
        print(" ".join(command), flush=True)
        log = open(out / f"worker_{worker}.log", "w")  # noqa: SIM115 (open while the worker runs)
        processes.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log))
    codes = []
    for process, log in processes:
        codes.append(process.wait())
        log.close()
    print(f"workers done, exit codes {codes}")
    dump_trials(storage, args.study, out / "trials.csv")


def rerank(args: argparse.Namespace) -> None:
    """
    Train the ``--top`` best finished trials again with other seeds, at the trials' budget, and rank them by their mean
    final evaluation over all their seeds (the search's own and these): a single seed's value overstates the winner.
    Writes ``rerank.csv`` beside the journal.
    """
    import numpy as np
    import optuna

    out = Path(args.storage).parent
    backend = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(args.storage))
    trials = optuna.load_study(storage=backend, study_name=args.study).trials
    finished = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    top = sorted(finished, key=lambda t: -t.value)[: args.top]  # type: ignore[operator]
    jobs = []
    for trial in top:
        for seed in args.seeds:
            folder = out / "_rerank" / f"trial{trial.number}_seed{seed}"
            command = [
                sys.executable, "-m", "rl_zoo3.train", "--algo", "clippedppo", "--env", args.env, "--storage", args.storage,
                "--study-name", args.study, "--trial-id", str(trial.number), "-n", str(args.n_timesteps), "--seed", str(seed),
                "--eval-freq", str(args.n_timesteps // args.n_evaluations), "--eval-episodes", str(args.eval_episodes),
                "--num-threads", "1", "-f", str(folder),
            ]  # fmt: skip
            if args.env.startswith("dm_control/"):
                command += ["--gym-packages", "shimmy"]
            jobs.append((trial, seed, folder, command))
    results: dict[int, list[float]] = {t.number: [float(t.value)] for t in top}  # type: ignore[arg-type]
    for start in range(0, len(jobs), args.workers):
        batch = jobs[start : start + args.workers]
        processes = [(job, subprocess.Popen(job[3], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)) for job in batch]
        for (trial, seed, folder, command), process in processes:
            if process.wait() != 0:
                raise RuntimeError(f"{' '.join(command)} failed with exit code {process.returncode}")
            evaluations = next(folder.rglob("evaluations.npz"))
            results[trial.number].append(float(np.load(evaluations)["results"][-1].mean()))
            print(f"trial {trial.number} seed {seed}: {results[trial.number][-1]:.1f}", flush=True)
    with open(out / "rerank.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["trial", "mean", "search_value", *(f"seed_{seed}" for seed in args.seeds)])
        for number, values in sorted(results.items(), key=lambda item: -float(np.mean(item[1]))):
            writer.writerow([number, f"{np.mean(values):.1f}", *(f"{v:.1f}" for v in values)])
    print((out / "rerank.csv").read_text())


def dump_trials(storage: str, study: str, path: Path) -> None:
    """Every trial of the study, one row each, to ``path`` (CSV)."""
    import optuna

    backend = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    trials = optuna.load_study(storage=backend, study_name=study).trials
    names = sorted({name for trial in trials for name in trial.params})
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["number", "state", "value", "duration_s", "last_report_step", *names])
        for trial in trials:
            duration = trial.duration.total_seconds() if trial.duration else ""
            last_step = max(trial.intermediate_values) if trial.intermediate_values else ""
            writer.writerow([trial.number, trial.state.name, trial.value, duration, last_step,
                             *(trial.params.get(name, "") for name in names)])  # fmt: skip
    print(f"{len(trials)} trials written to {path}")


def best_block(storage: str, study: str, number: int | None = None) -> str:
    """The settings of trial ``number`` (default: the best), as the lines of a ``hyperparams/clippedppo.yml`` entry."""
    import optuna

    backend = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    loaded = optuna.load_study(storage=backend, study_name=study)
    trial = loaded.best_trial if number is None else loaded.trials[number]
    params = dict(trial.params)
    which = "best of study" if number is None else "study"
    lines = [f"# {which} {study!r}: trial {trial.number}, value {trial.value:.1f}"]
    lines.append(f"n_steps: {2 ** params.pop('n_steps_pow')}")
    lines.append(f"batch_size: {2 ** params.pop('batch_size_pow')}")
    lines.append(f"gamma: {1 - params.pop('one_minus_gamma'):.6g}")
    lines.append(f"gae_lambda: {1 - params.pop('one_minus_gae_lambda'):.6g}")
    learning_rate, ent_coef = params.pop("learning_rate"), params.pop("ent_coef")
    linear_lr = params.pop("learning_rate_schedule", "constant") == "linear"
    lines.append(f"learning_rate: {'lin_' if linear_lr else ''}{learning_rate:.6g}")
    multiplier = params.pop("vf_lr_multiplier", 1)
    if multiplier != 1:
        lines.append(f"vf_learning_rate: {'lin_' if linear_lr else ''}{learning_rate * multiplier:.6g}")
    lines.append(f"ent_coef: {'lin_' if params.pop('ent_coef_schedule', 'constant') == 'linear' else ''}{ent_coef:.6g}")
    policy_kwargs = {
        "log_std_init": params.pop("log_std_init"),
        "ortho_init": params.pop("ortho_init"),
        "activation_fn": {"tanh": "nn.Tanh", "relu": "nn.ReLU", "elu": "nn.ELU"}[params.pop("activation_fn")],
        "net_arch": {
            "tiny": "dict(pi=[64], vf=[64])",
            "small": "dict(pi=[64, 64], vf=[64, 64])",
            "medium": "dict(pi=[256, 256], vf=[256, 256])",
        }[params.pop("net_arch")],  # fmt: skip
    }
    for name in ("state_dependent_std", "normalize_observations"):
        if params.get(name):
            policy_kwargs[name] = True
        params.pop(name, None)
    for name, value in sorted(params.items()):
        lines.append(f"{name}: {'null' if value is None else value}")
    lines.append('policy_kwargs: "dict(' + ", ".join(f"{k}={v}" for k, v in policy_kwargs.items()) + ')"')
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("start", help="create the study, enqueue the starting points, run the workers")
    run.add_argument("--env", required=True)
    run.add_argument("--study", required=True)
    run.add_argument("--out", required=True, help="folder of the study's journal (study.log), logs and trials.csv")
    run.add_argument("--trials", type=int, default=50, help="trials in the study, all workers together")
    run.add_argument("--workers", type=int, default=2, help="worker processes on this machine (one per core)")
    run.add_argument("--n-timesteps", type=int, default=300_000, help="steps per trial")
    run.add_argument("--n-evaluations", type=int, default=3, help="evaluations per trial (for the median pruner)")
    run.add_argument("--eval-episodes", type=int, default=5)
    run.add_argument("--seed", type=int, default=0, help="seed of the first worker (the others: +1, +2, ...)")
    again = commands.add_parser("rerank", help="train the best trials again with other seeds; rank by the mean")
    again.add_argument("--storage", required=True)
    again.add_argument("--study", required=True)
    again.add_argument("--env", required=True)
    again.add_argument("--top", type=int, default=3)
    again.add_argument("--seeds", type=int, nargs="+", default=[101, 102])
    again.add_argument("--workers", type=int, default=2)
    again.add_argument("--n-timesteps", type=int, default=300_000)
    again.add_argument("--n-evaluations", type=int, default=3)
    again.add_argument("--eval-episodes", type=int, default=5)
    for name in ("dump", "best"):
        sub = commands.add_parser(name)
        sub.add_argument("--storage", required=True, help="the study's journal file")
        sub.add_argument("--study", required=True)
        if name == "dump":
            sub.add_argument("--out", help="CSV file (default: trials.csv beside the journal)")
        else:
            sub.add_argument("--trial", type=int, help="this trial rather than the best")
    args = parser.parse_args(argv)
    if args.command == "start":
        if args.trials < 1 or args.workers < 1 or args.n_timesteps < 1 or args.n_evaluations < 1:
            parser.error("--trials, --workers, --n-timesteps and --n-evaluations must be >= 1")
        start(args)
    elif args.command == "rerank":
        rerank(args)
    elif args.command == "dump":
        dump_trials(args.storage, args.study, Path(args.out) if args.out else Path(args.storage).parent / "trials.csv")
    else:
        print(best_block(args.storage, args.study, args.trial))


if __name__ == "__main__":
    main()
