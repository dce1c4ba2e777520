"""Throughput of ClippedPPO against Stable-Baselines3's PPO at equal settings (CPU), at three thread settings; or of two
versions of ClippedPPO (``--versions``).

Each measurement is one fresh child process that builds a model from a Zoo entry (:mod:`benchmarks.builder`, the
environments and ``VecNormalize`` arguments of ``rl_zoo3.train``) and times one ``learn`` call, split into rollout
collection (from ``on_rollout_start`` to ``on_rollout_end``) and the rest (the update, and logging), with the CPU time
of the ``learn`` call summed over all the process's threads; its peak resident memory comes from the operating system
(``wait4``). Algorithms alternate A B A B ... for ``--reps`` repetitions, so that a drift in the machine's speed hits
both; the report gives medians and the per-pair ratio ClippedPPO / PPO (median and range).

Thread settings (``--threads``, no environment variable is set for the child):
- ``default``: nothing set, torch's default (one thread per core), which is what users get;
- ``1``: ``torch.set_num_threads(1)`` (what the RL Zoo's ``--num-threads 1`` does), the controlled setting;
- ``all``: ``torch.set_num_threads(os.cpu_count())``, every logical core.

Settings (``--settings``; each the same entry for both algorithms):
- ``zoo``: the RL Zoo's HalfCheetah-v4 entry (``benchmarks/hyperparams.yml``: VecNormalize, 512 steps, batch 64, 20
  epochs, 256x256 ReLU);
- ``shipped``: ClippedPPO's shipped HalfCheetah-v4 entry (``hyperparams/clippedppo.yml``: 16 environments x 32 steps,
  batch 256, 10 epochs);
- ``sb3-defaults``: SB3's default PPO arguments on HalfCheetah-v4 (``benchmarks/settings.yml``: 2048 steps, batch 64,
  10 epochs, 64x64 tanh, no normalization);
- ``cnn``: ``CnnPolicy`` on SB3's ``FakeImageEnv`` with the RL Zoo's Atari PPO settings (``benchmarks/settings.yml``).
  ClippedPPO trains it through autograd (the fast path is for MLPs).

``--zoo-command`` also times the command users run, ``python -m rl_zoo3.train --algo ALGO --env HalfCheetah-v4 --seed
REP -n STEPS``, alternating the two algorithms, and reads the last ``time/fps`` from each log. Each algorithm then
trains with its own shipped entry (``hyperparams/clippedppo.yml`` and the Zoo's ``ppo.yml``): that ratio compares two
sets of hyperparameters, not two implementations.

``--versions BEFORE`` measures ClippedPPO only, in this checkout ("after") and in the checkout ``BEFORE`` (its
``sb3_clippedppo`` imported first; the benchmark code is this checkout's), alternating: did a change cost speed? The
report gives each pair's ratio after / before.

Example (the README's speed table)::

    python -m benchmarks.throughput --reps 5 --threads default 1 --zoo-command --out benchmarks/results/throughput/builder

writes ``throughput.json`` and ``throughput.txt`` into ``--out`` (refusing to overwrite them).
"""

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import builder

ALGOS = builder.ALGORITHMS
THREADS = ("default", "1", "all")  # in the report's order: what users get first
ZOO_COMMAND_ENV = "HalfCheetah-v4"
ZOO_COMMAND_STEPS = 20 * 512
CPU_HEADER = "CPU s (all threads)"
SETTINGS = {
    # name: (hyperparameter file, entry, timesteps per measurement)
    "sb3-defaults": (builder.SETTINGS_YML, "HalfCheetah-v4", 6 * 2048),
    "zoo": (builder.HYPERPARAMS_YML, "HalfCheetah-v4", 12 * 512),
    "shipped": (builder.SHIPPED_YML, "HalfCheetah-v4", 12 * 512),
    "cnn": (builder.SETTINGS_YML, builder.FAKE_IMAGE_ENV, 3 * 8 * 128),
}
DEFAULT_SETTINGS = ("zoo", "shipped", "sb3-defaults", "cnn")
VERSIONS = ("after", "before")


def torch_threads(threads: str) -> int | None:
    """The ``torch.set_num_threads`` argument of a thread setting (None: leave torch's default)."""
    if threads not in THREADS:
        raise ValueError(f"threads must be one of {THREADS}, got {threads!r}")
    return {"default": None, "1": 1, "all": os.cpu_count() or 1}[threads]


def child(algo: str, setting: str, timesteps: int, seed: int, threads: str = "1", package_from: str = "") -> dict:
    """
    Build and time one model in this process, with the thread setting ``threads``; returns the figures.

    :param algo: ``clippedppo`` or ``ppo``.
    :param setting: a key of :data:`SETTINGS`.
    :param timesteps: the steps of the ``learn`` call.
    :param seed: the model's seed.
    :param threads: a thread setting (:data:`THREADS`).
    :param package_from: a checkout whose ``sb3_clippedppo`` to import instead of this one's (``--versions``).
    """
    if package_from:
        # The package may be imported already (the RL Zoo hook's .pth imports it at start-up): forget it, then import the
        # checkout's first
        for name in [name for name in sys.modules if name == "sb3_clippedppo" or name.startswith("sb3_clippedppo.")]:
            del sys.modules[name]
        sys.path.insert(0, package_from)
    import torch as th
    from stable_baselines3.common.callbacks import BaseCallback

    import sb3_clippedppo

    count = torch_threads(threads)
    if count is not None:
        th.set_num_threads(count)
    conf, env_id, _ = SETTINGS[setting]
    model = builder.build(algo, builder.read_entry(env_id, conf), seed=seed)

    class RolloutTimer(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.rollout_s = 0.0
            self._start = 0.0

        def _on_rollout_start(self) -> None:
            self._start = time.perf_counter()

        def _on_rollout_end(self) -> None:
            self.rollout_s += time.perf_counter() - self._start

        def _on_step(self) -> bool:
            return True

    timer = RolloutTimer()
    cpu_start, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    model.learn(timesteps, callback=timer)
    learn_s = time.perf_counter() - start
    cpu_end = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    cpu_s = cpu_end.ru_utime - cpu_start.ru_utime + cpu_end.ru_stime - cpu_start.ru_stime
    return {
        "algo": algo,
        "setting": setting,
        "threads": threads,
        "torch_threads": th.get_num_threads(),
        "timesteps": model.num_timesteps,
        "learn_s": learn_s,
        "rollout_s": timer.rollout_s,
        "update_s": learn_s - timer.rollout_s,
        "cpu_s": cpu_s,
        "steps_per_s": model.num_timesteps / learn_s,
        "package": str(Path(sb3_clippedppo.__file__).resolve().parent),
    }


def measure(algo: str, setting: str, timesteps: int, seed: int, threads: str, package_from: str = "") -> dict:
    """Run :func:`child` in a fresh interpreter; adds its peak RSS (MiB)."""
    command = [sys.executable, "-m", "benchmarks.throughput", "--child", algo, setting, str(timesteps), str(seed), threads,
               package_from]  # fmt: skip
    process = subprocess.Popen(command, cwd=builder.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    stdout, stderr = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    figures = json.loads(stdout.strip().splitlines()[-1])
    figures["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux: KiB
    return figures


def zoo_command(algo: str, timesteps: int, seed: int) -> dict:
    """
    Run ``python -m rl_zoo3.train --algo ALGO --env HalfCheetah-v4 --seed SEED -n TIMESTEPS`` in a scratch folder with
    the default threads; returns the last ``time/fps`` of its log and its wall-clock seconds.

    :raises RuntimeError: when the command fails or logs no fps.
    """
    with tempfile.TemporaryDirectory(prefix="zoo-command-") as scratch:
        command = [sys.executable, "-m", "rl_zoo3.train", "--algo", algo, "--env", ZOO_COMMAND_ENV, "--seed", str(seed),
                   "-n", str(timesteps)]  # fmt: skip
        start = time.perf_counter()
        result = subprocess.run(command, cwd=scratch, capture_output=True, text=True)
        wall = time.perf_counter() - start
    fps = re.findall(r"\|\s+fps\s+\|\s+(\d+)\s+\|", result.stdout)
    if result.returncode != 0 or not fps:
        raise RuntimeError(f"{' '.join(command)} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return {"algo": algo, "timesteps": timesteps, "seed": seed, "fps": int(fps[-1]), "wall_s": wall,
            "command": "python -m " + " ".join(command[2:])}  # fmt: skip


def ratio_range(numerators: list[float], denominators: list[float]) -> dict:
    """Median, min and max of the pairwise ratios."""
    ratios = [a / b for a, b in zip(numerators, denominators, strict=True)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def summarize(runs: list[dict], names: tuple[str, str] = ALGOS, key: str = "algo") -> dict:
    """
    Per thread setting and setting: medians per algorithm (or version) and the per-pair ratio of the first over the second.

    :param runs: the measurements.
    :param names: the two values of ``key`` compared (ClippedPPO and PPO, or after and before).
    :param key: what tells the two apart: ``algo`` or ``version``.
    """
    summary: dict = {}
    for threads in [t for t in THREADS if any(r["threads"] == t for r in runs)]:
        for setting in sorted({r["setting"] for r in runs if r["threads"] == threads}):
            by_algo = {
                name: [r for r in runs if r["threads"] == threads and r["setting"] == setting and r[key] == name]
                for name in names
            }
            entry: dict = {}
            for algo, rs in by_algo.items():
                entry[algo] = {
                    figure: statistics.median(r[figure] for r in rs)
                    for figure in ("steps_per_s", "learn_s", "rollout_s", "update_s", "cpu_s", "peak_rss_mib", "torch_threads")
                }
                entry[algo]["steps_per_s_all"] = [round(r["steps_per_s"], 1) for r in rs]
            first, second = (by_algo[name] for name in names)
            for figure in ("steps_per_s", "rollout_s", "update_s", "peak_rss_mib"):
                entry[f"ratio_{figure}"] = ratio_range([r[figure] for r in first], [r[figure] for r in second])
            summary.setdefault(threads, {})[setting] = entry
    return summary


def summarize_zoo_command(runs: list[dict]) -> dict:
    """Median fps per algorithm of the Zoo command, and the per-pair ratio."""
    by_algo = {algo: [r for r in runs if r["algo"] == algo] for algo in ALGOS}
    entry: dict = {algo: {"fps": statistics.median(r["fps"] for r in rs), "fps_all": [r["fps"] for r in rs],
                          "wall_s": statistics.median(r["wall_s"] for r in rs), "command": rs[0]["command"]}
                   for algo, rs in by_algo.items()}  # fmt: skip
    entry["ratio_fps"] = ratio_range([r["fps"] for r in by_algo["clippedppo"]], [r["fps"] for r in by_algo["ppo"]])
    return entry


def format_report(summary: dict, zoo: dict | None, meta: dict, names: tuple[str, str] = ALGOS) -> str:
    """The text report: the Zoo command's fps, then a table per thread setting and setting (``names``: the rows)."""
    machine = meta["machine"]
    label = "ClippedPPO / PPO" if names == ALGOS else f"ClippedPPO {names[0]} / {names[1]}"
    lines = [
        f"# Throughput, CPU ({meta['reps']} alternating repetitions per algorithm)",
        f"command: {meta['command']}",
        f"machine: {machine['cpu']}, {machine['cores']} cores, torch's default {machine['default_torch_threads']} threads; "
        f"commit {machine['commit']}; torch {machine['versions']['torch']}, numpy {machine['versions']['numpy']}, "
        f"stable_baselines3 {machine['versions']['stable_baselines3']}",
        "",
    ]
    if zoo is not None:
        lines += [
            f"## The RL Zoo command, default threads ({meta['zoo_command_steps']} steps, fps from the Zoo's log)",
            "| algorithm | command | fps (median) | all |",
            "|---|---|---|---|",
            *(f"| {algo} | `{zoo[algo]['command']}` | {zoo[algo]['fps']:.0f} | {zoo[algo]['fps_all']} |" for algo in ALGOS),
            f"- ClippedPPO / PPO fps: median {zoo['ratio_fps']['median']:.2f} "
            f"(range {zoo['ratio_fps']['min']:.2f}-{zoo['ratio_fps']['max']:.2f})",
            "",
        ]
    for threads, settings in summary.items():
        for setting, entry in settings.items():
            environment = "FakeImageEnv 84x84x4, CnnPolicy" if setting == "cnn" else "HalfCheetah-v4, MlpPolicy"
            lines.append(
                f"## threads {threads} (torch {entry[names[0]]['torch_threads']}), {setting}: {environment} "
                f"({meta['timesteps'][setting]} steps per learn call)"
            )
            lines.append(f"| algorithm | steps/s (median) | learn s | rollout s | update s | {CPU_HEADER} | peak RSS MiB |")
            lines.append("|---|---|---|---|---|---|---|")
            for algo in names:
                e = entry[algo]
                lines.append(
                    f"| {algo} | {e['steps_per_s']:.0f} | {e['learn_s']:.2f} | {e['rollout_s']:.2f} | {e['update_s']:.2f} "
                    f"| {e['cpu_s']:.2f} | {e['peak_rss_mib']:.0f} |"
                )
            for figure, name in (("steps_per_s", "steps/s"), ("rollout_s", "rollout time"), ("update_s", "update time"),
                                 ("peak_rss_mib", "peak RSS")):  # fmt: skip
                r = entry[f"ratio_{figure}"]
                lines.append(f"- {label} {name}: median {r['median']:.2f} (range {r['min']:.2f}-{r['max']:.2f})")
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        algo, setting, timesteps, seed, threads = argv[1], argv[2], int(argv[3]), int(argv[4]), argv[5]
        print(json.dumps(child(algo, setting, timesteps, seed, threads, argv[6] if len(argv) > 6 else "")))
        return {}
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])  # fmt: skip
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(DEFAULT_SETTINGS))
    parser.add_argument("--threads", nargs="+", choices=THREADS, default=list(THREADS), help="thread settings")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per algorithm (>= 3 for the report)")
    parser.add_argument("--timesteps-scale", type=float, default=1.0, help="scale the steps per learn call")
    parser.add_argument("--zoo-command", action="store_true", help="also time the RL Zoo command (see above)")
    parser.add_argument("--versions", type=Path, metavar="BEFORE",
                        help="compare ClippedPPO in this checkout with the checkout BEFORE instead of with SB3's PPO")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="folder for throughput.json and throughput.txt")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.timesteps_scale <= 0:
        parser.error(f"--reps must be >= 1 and --timesteps-scale > 0, got {args.reps} and {args.timesteps_scale}")
    if args.versions is not None and not (args.versions / "sb3_clippedppo" / "__init__.py").is_file():
        parser.error(f"--versions {args.versions}: no sb3_clippedppo package there")
    if args.versions is not None and args.zoo_command:
        parser.error("--versions compares ClippedPPO with itself: it takes no --zoo-command")
    json_path, text_path = args.out / "throughput.json", args.out / "throughput.txt"
    if json_path.exists() or text_path.exists():
        parser.error(f"{json_path} or {text_path} exists; refusing to overwrite")

    timesteps = {s: max(1, int(SETTINGS[s][2] * args.timesteps_scale)) for s in args.settings}
    zoo_steps = max(512, int(ZOO_COMMAND_STEPS * args.timesteps_scale))
    threads_order = [t for t in THREADS if t in args.threads]
    # (name, algo, the package's checkout) of the two sides, in the order they alternate
    sides = [(algo, algo, "") for algo in ALGOS]
    if args.versions is not None:
        sides = [("after", "clippedppo", str(builder.ROOT)), ("before", "clippedppo", str(args.versions.resolve()))]
    runs, zoo_runs = [], []
    for rep in range(args.reps):
        if args.zoo_command:
            for algo in ALGOS:
                zoo_runs.append({**zoo_command(algo, zoo_steps, args.seed + rep), "rep": rep})
                print(f"rep {rep} zoo command {algo:10s} {zoo_runs[-1]['fps']:8d} fps", flush=True)
        for threads in threads_order:
            for setting in args.settings:
                for name, algo, checkout in sides:  # A B A B ...
                    figures = measure(algo, setting, timesteps[setting], args.seed + rep, threads, checkout)
                    figures.update(rep=rep, version=name)
                    runs.append(figures)
                    print(f"rep {rep} threads {threads:7s} {setting:12s} {name:10s} {figures['steps_per_s']:8.0f} steps/s",
                          flush=True)  # fmt: skip
    machine = builder.machine_info()
    meta = {
        "command": "python -m benchmarks.throughput " + " ".join(argv),
        "reps": args.reps,
        "timesteps": timesteps,
        "zoo_command_steps": zoo_steps if args.zoo_command else None,
        "machine": {**machine, "default_torch_threads": machine.pop("torch_threads")},
    }
    names = VERSIONS if args.versions is not None else ALGOS
    if args.versions is not None:
        meta["versions"] = {"after": builder.git_commit(builder.ROOT), "before": builder.git_commit(args.versions.resolve())}
    summary = summarize(runs, names, "version")
    zoo = summarize_zoo_command(zoo_runs) if args.zoo_command else None
    report = format_report(summary, zoo, meta, names)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"meta": meta, "summary": summary, "zoo_command": zoo, "runs": runs,
                                     "zoo_command_runs": zoo_runs}, indent=2) + "\n")  # fmt: skip
    text_path.write_text(report + "\n")
    print(report)
    return {**summary, "zoo-command": zoo} if zoo is not None else summary


if __name__ == "__main__":
    main()
