"""Throughput of ClippedPPO against Stable-Baselines3's PPO on identical settings (CPU), at three thread settings.

Each measurement is one fresh child process that builds a model and times one ``learn`` call, split into rollout
collection (from ``on_rollout_start`` to ``on_rollout_end``) and the rest (the update, and logging), with the CPU time
of the ``learn`` call summed over all the process's threads; its peak resident memory comes from the operating system
(``wait4``). Algorithms alternate A B A B ... for ``--reps`` repetitions, so that a drift in the machine's speed hits
both; the report gives medians and the per-pair ratio ClippedPPO / PPO (median and range).

Thread settings (``--threads``, no environment variable is set for the child):
- ``default``: nothing set, torch's default (one thread per core), which is what users get;
- ``1``: ``torch.set_num_threads(1)`` (what the RL Zoo's ``--num-threads 1`` does), the controlled setting;
- ``all``: ``torch.set_num_threads(os.cpu_count())``, every logical core.

Settings:
- ``sb3-defaults``: SB3's default PPO arguments (2048 steps, batch 64, 10 epochs, 64x64 tanh), no normalization.
- ``zoo``: the RL Zoo's HalfCheetah-v4 block (VecNormalize, 512 steps, batch 64, 20 epochs, 256x256 ReLU).
- ``cnn``: ``CnnPolicy`` (SB3's NatureCNN) on SB3's ``FakeImageEnv`` (84x84 images with 4 channels, as four stacked
  Atari frames; 6 discrete actions; random images, so the environment costs next to nothing) with the RL Zoo's Atari
  PPO settings (8 environments, 128 steps, batch 256, 4 epochs, learning rate 2.5e-4, clip range 0.1, entropy
  coefficient 0.01). ClippedPPO trains it through autograd (the fast path is for MLPs).

``--zoo-command`` also times the command users run, ``python -m rl_zoo3.train --algo ALGO --env HalfCheetah-v4 --seed
REP -n STEPS`` (each algorithm's shipped hyperparameters: ``hyperparams/clippedppo.yml`` and the Zoo's ``ppo.yml``;
default threads; no evaluation before 25,000 steps), alternating the two algorithms, and reads the last ``time/fps``
from each log.

Example::

    python -m benchmarks.throughput --reps 5 --zoo-command --out benchmarks/results/throughput

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

from benchmarks.common import machine_info, zoo_hyperparams

ALGOS = ("clippedppo", "ppo")
THREADS = ("default", "1", "all")  # in the report's order: what users get first
ZOO_COMMAND_ENV = "HalfCheetah-v4"
ZOO_COMMAND_STEPS = 20 * 512
CPU_HEADER = "CPU s (all threads)"
SETTINGS = {
    # name: (zoo block, None for SB3 defaults, or "cnn"; timesteps per measurement)
    "sb3-defaults": (None, 6 * 2048),
    "zoo": ("HalfCheetah-v4", 12 * 512),
    "cnn": ("cnn", 3 * 8 * 128),
}
# The RL Zoo's PPO settings for Atari (hyperparams/ppo.yml, atari block), with constant rates
ATARI_PPO = dict(n_steps=128, n_epochs=4, batch_size=256, learning_rate=2.5e-4, clip_range=0.1, vf_coef=0.5, ent_coef=0.01)


def torch_threads(threads: str) -> int | None:
    """The ``torch.set_num_threads`` argument of a thread setting (None: leave torch's default)."""
    if threads not in THREADS:
        raise ValueError(f"threads must be one of {THREADS}, got {threads!r}")
    return {"default": None, "1": 1, "all": os.cpu_count() or 1}[threads]


def child(algo: str, setting: str, timesteps: int, seed: int, threads: str = "1") -> dict:
    """Build and time one model in this process, with the thread setting ``threads``; returns the figures."""
    import torch as th

    count = torch_threads(threads)
    if count is not None:
        th.set_num_threads(count)
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_clippedppo import ClippedPPO

    block, _ = SETTINGS[setting]
    policy = "MlpPolicy"
    if block == "cnn":
        from stable_baselines3.common.envs import FakeImageEnv

        policy, hyperparams = "CnnPolicy", ATARI_PPO
        env = make_vec_env(lambda: FakeImageEnv(action_dim=6, n_channels=4), n_envs=8, seed=seed)
    else:
        hyperparams, normalize = zoo_hyperparams(block) if block else ({}, False)
        env = make_vec_env("HalfCheetah-v4", n_envs=1, seed=seed)
        if normalize:
            env = VecNormalize(env)
    model = (ClippedPPO if algo == "clippedppo" else PPO)(policy, env, seed=seed, device="cpu", **hyperparams)

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
    }


def measure(algo: str, setting: str, timesteps: int, seed: int, threads: str) -> dict:
    """Run :func:`child` in a fresh interpreter; adds its peak RSS (MiB)."""
    command = [sys.executable, "-m", "benchmarks.throughput", "--child", algo, setting, str(timesteps), str(seed), threads]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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


def summarize(runs: list[dict]) -> dict:
    """Per thread setting and setting: medians per algorithm and the per-pair ratio ClippedPPO / PPO."""
    summary: dict = {}
    for threads in [t for t in THREADS if any(r["threads"] == t for r in runs)]:
        for setting in sorted({r["setting"] for r in runs if r["threads"] == threads}):
            by_algo = {
                algo: [r for r in runs if r["threads"] == threads and r["setting"] == setting and r["algo"] == algo]
                for algo in ALGOS
            }
            entry: dict = {}
            for algo, rs in by_algo.items():
                entry[algo] = {
                    key: statistics.median(r[key] for r in rs)
                    for key in ("steps_per_s", "learn_s", "rollout_s", "update_s", "cpu_s", "peak_rss_mib", "torch_threads")
                }
                entry[algo]["steps_per_s_all"] = [round(r["steps_per_s"], 1) for r in rs]
            for key in ("steps_per_s", "rollout_s", "update_s", "peak_rss_mib"):
                entry[f"ratio_{key}"] = ratio_range([r[key] for r in by_algo["clippedppo"]], [r[key] for r in by_algo["ppo"]])
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


def format_report(summary: dict, zoo: dict | None, meta: dict) -> str:
    machine = meta["machine"]
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
                f"## threads {threads} (torch {entry['clippedppo']['torch_threads']}), {setting}: {environment} "
                f"({meta['timesteps'][setting]} steps per learn call)"
            )
            lines.append(f"| algorithm | steps/s (median) | learn s | rollout s | update s | {CPU_HEADER} | peak RSS MiB |")
            lines.append("|---|---|---|---|---|---|---|")
            for algo in ALGOS:
                e = entry[algo]
                lines.append(
                    f"| {algo} | {e['steps_per_s']:.0f} | {e['learn_s']:.2f} | {e['rollout_s']:.2f} | {e['update_s']:.2f} "
                    f"| {e['cpu_s']:.2f} | {e['peak_rss_mib']:.0f} |"
                )
            for key, label in (("steps_per_s", "steps/s"), ("rollout_s", "rollout time"), ("update_s", "update time"),
                               ("peak_rss_mib", "peak RSS")):  # fmt: skip
                r = entry[f"ratio_{key}"]
                lines.append(f"- ClippedPPO / PPO {label}: median {r['median']:.2f} (range {r['min']:.2f}-{r['max']:.2f})")
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        algo, setting, timesteps, seed, threads = argv[1], argv[2], int(argv[3]), int(argv[4]), argv[5]
        print(json.dumps(child(algo, setting, timesteps, seed, threads)))
        return {}
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--threads", nargs="+", choices=THREADS, default=list(THREADS), help="thread settings")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per algorithm (>= 3 for the report)")
    parser.add_argument("--timesteps-scale", type=float, default=1.0, help="scale the steps per learn call")
    parser.add_argument("--zoo-command", action="store_true", help="also time the RL Zoo command (see the docstring)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="folder for throughput.json and throughput.txt")
    args = parser.parse_args(argv)
    json_path, text_path = args.out / "throughput.json", args.out / "throughput.txt"
    if json_path.exists() or text_path.exists():
        parser.error(f"{json_path} or {text_path} exists; refusing to overwrite")

    timesteps = {s: max(1, int(SETTINGS[s][1] * args.timesteps_scale)) for s in args.settings}
    zoo_steps = max(512, int(ZOO_COMMAND_STEPS * args.timesteps_scale))
    threads_order = [t for t in THREADS if t in args.threads]
    runs, zoo_runs = [], []
    for rep in range(args.reps):
        if args.zoo_command:
            for algo in ALGOS:
                zoo_runs.append({**zoo_command(algo, zoo_steps, args.seed + rep), "rep": rep})
                print(f"rep {rep} zoo command {algo:10s} {zoo_runs[-1]['fps']:8d} fps", flush=True)
        for threads in threads_order:
            for setting in args.settings:
                for algo in ALGOS:  # A B A B ...
                    figures = measure(algo, setting, timesteps[setting], args.seed + rep, threads)
                    figures["rep"] = rep
                    runs.append(figures)
                    print(f"rep {rep} threads {threads:7s} {setting:12s} {algo:10s} {figures['steps_per_s']:8.0f} steps/s",
                          flush=True)  # fmt: skip
    machine = machine_info()
    meta = {
        "command": "python -m benchmarks.throughput " + " ".join(argv),
        "reps": args.reps,
        "timesteps": timesteps,
        "zoo_command_steps": zoo_steps if args.zoo_command else None,
        "machine": {**machine, "default_torch_threads": machine.pop("torch_threads")},
    }
    summary = summarize(runs)
    zoo = summarize_zoo_command(zoo_runs) if args.zoo_command else None
    report = format_report(summary, zoo, meta)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"meta": meta, "summary": summary, "zoo_command": zoo, "runs": runs,
                                     "zoo_command_runs": zoo_runs}, indent=2) + "\n")  # fmt: skip
    text_path.write_text(report + "\n")
    print(report)
    return {**summary, "zoo-command": zoo} if zoo is not None else summary


if __name__ == "__main__":
    main()
