"""Throughput of ClippedPPO against Stable-Baselines3's PPO on identical settings (CPU, one torch thread).

Each measurement is one fresh child process that builds a model and times one ``learn`` call, split into rollout
collection (from ``on_rollout_start`` to ``on_rollout_end``) and the rest (the update, and logging), with the CPU time
of the ``learn`` call summed over all the process's threads (about equal to the wall time when it runs on one thread);
its peak resident memory comes from the operating system (``wait4``). Algorithms alternate A B A B ... for ``--reps``
repetitions, so that a drift in the machine's speed hits both; the report gives medians and the per-pair ratio
ClippedPPO / PPO (median and range).

Settings:
- ``sb3-defaults``: SB3's default PPO arguments (2048 steps, batch 64, 10 epochs, 64x64 tanh), no normalization.
- ``zoo``: the RL Zoo's HalfCheetah-v4 block (VecNormalize, 512 steps, batch 64, 20 epochs, 256x256 ReLU).
- ``cnn``: ``CnnPolicy`` (SB3's NatureCNN) on SB3's ``FakeImageEnv`` (84x84 images with 4 channels, as four stacked
  Atari frames; 6 discrete actions; random images, so the environment costs next to nothing) with the RL Zoo's Atari
  PPO settings (8 environments, 128 steps, batch 256, 4 epochs, learning rate 2.5e-4, clip range 0.1, entropy
  coefficient 0.01). ClippedPPO trains it through autograd (the fast path is for MLPs).

Example::

    python -m benchmarks.throughput --reps 5 --out benchmarks/results/throughput

writes ``throughput.json`` and ``throughput.txt`` into ``--out`` (refusing to overwrite them).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import machine_info, zoo_hyperparams

ALGOS = ("clippedppo", "ppo")
SETTINGS = {
    # name: (zoo block, None for SB3 defaults, or "cnn"; timesteps per measurement)
    "sb3-defaults": (None, 6 * 2048),
    "zoo": ("HalfCheetah-v4", 12 * 512),
    "cnn": ("cnn", 3 * 8 * 128),
}
# The RL Zoo's PPO settings for Atari (hyperparams/ppo.yml, atari block), with constant rates
ATARI_PPO = dict(n_steps=128, n_epochs=4, batch_size=256, learning_rate=2.5e-4, clip_range=0.1, vf_coef=0.5, ent_coef=0.01)


def child(algo: str, setting: str, timesteps: int, seed: int) -> dict:
    """Build and time one model in this process; returns the figures."""
    import torch as th

    th.set_num_threads(1)
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
        "timesteps": model.num_timesteps,
        "learn_s": learn_s,
        "rollout_s": timer.rollout_s,
        "update_s": learn_s - timer.rollout_s,
        "cpu_s": cpu_s,
        "steps_per_s": model.num_timesteps / learn_s,
    }


def measure(algo: str, setting: str, timesteps: int, seed: int) -> dict:
    """Run :func:`child` in a fresh interpreter; adds its peak RSS (MiB)."""
    command = [sys.executable, "-m", "benchmarks.throughput", "--child", algo, setting, str(timesteps), str(seed)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    stdout, stderr = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    figures = json.loads(stdout.strip().splitlines()[-1])
    figures["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux: KiB
    return figures


def summarize(runs: list[dict]) -> dict:
    """Per setting: medians per algorithm and the per-pair ratio ClippedPPO / PPO."""
    summary: dict = {}
    for setting in sorted({r["setting"] for r in runs}):
        by_algo = {algo: [r for r in runs if r["setting"] == setting and r["algo"] == algo] for algo in ALGOS}
        entry: dict = {}
        for algo, rs in by_algo.items():
            entry[algo] = {
                key: statistics.median(r[key] for r in rs)
                for key in ("steps_per_s", "learn_s", "rollout_s", "update_s", "cpu_s", "peak_rss_mib")
                if all(key in r for r in rs)  # cpu_s: not in results recorded before it was measured
            }
            entry[algo]["steps_per_s_all"] = [round(r["steps_per_s"], 1) for r in rs]
        pairs = list(zip(by_algo["clippedppo"], by_algo["ppo"], strict=True))
        for key in ("steps_per_s", "rollout_s", "update_s", "peak_rss_mib"):
            ratios = [a[key] / b[key] for a, b in pairs]
            entry[f"ratio_{key}"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
        summary[setting] = entry
    return summary


def format_report(summary: dict, meta: dict) -> str:
    lines = [
        f"# Throughput, CPU, 1 torch thread ({meta['reps']} alternating repetitions per algorithm)",
        f"command: {meta['command']}",
        f"machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores; commit {meta['machine']['commit']}",
        "",
    ]
    for setting, entry in summary.items():
        environment = "FakeImageEnv 84x84x4, CnnPolicy" if setting == "cnn" else "HalfCheetah-v4, MlpPolicy"
        lines.append(f"## {setting}: {environment} ({meta['timesteps'][setting]} steps per learn call)")
        lines.append("| algorithm | steps/s (median) | learn s | rollout s | update s | CPU s (all threads) | peak RSS MiB |")
        lines.append("|---|---|---|---|---|---|---|")
        for algo in ALGOS:
            e = entry[algo]
            cpu = f"{e['cpu_s']:.2f}" if "cpu_s" in e else "-"
            lines.append(
                f"| {algo} | {e['steps_per_s']:.0f} | {e['learn_s']:.2f} | {e['rollout_s']:.2f} | {e['update_s']:.2f} "
                f"| {cpu} | {e['peak_rss_mib']:.0f} |"
            )
        for key, label in (("steps_per_s", "steps/s"), ("rollout_s", "rollout time"), ("update_s", "update time")):
            r = entry[f"ratio_{key}"]
            lines.append(f"- ClippedPPO / PPO {label}: median {r['median']:.2f} (range {r['min']:.2f}-{r['max']:.2f})")
        r = entry["ratio_peak_rss_mib"]
        lines.append(f"- ClippedPPO / PPO peak RSS: median {r['median']:.2f} (range {r['min']:.2f}-{r['max']:.2f})")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        algo, setting, timesteps, seed = argv[1], argv[2], int(argv[3]), int(argv[4])
        print(json.dumps(child(algo, setting, timesteps, seed)))
        return {}
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--reps", type=int, default=3, help="repetitions per algorithm (>= 3 for the report)")
    parser.add_argument("--timesteps-scale", type=float, default=1.0, help="scale the steps per learn call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="folder for throughput.json and throughput.txt")
    args = parser.parse_args(argv)
    json_path, text_path = args.out / "throughput.json", args.out / "throughput.txt"
    if json_path.exists() or text_path.exists():
        parser.error(f"{json_path} or {text_path} exists; refusing to overwrite")

    timesteps = {s: max(1, int(SETTINGS[s][1] * args.timesteps_scale)) for s in args.settings}
    runs = []
    for rep in range(args.reps):
        for setting in args.settings:
            for algo in ALGOS:  # A B A B ...
                figures = measure(algo, setting, timesteps[setting], args.seed + rep)
                figures["rep"] = rep
                runs.append(figures)
                print(f"rep {rep} {setting:12s} {algo:10s} {figures['steps_per_s']:8.0f} steps/s", flush=True)
    meta = {
        "command": "python -m benchmarks.throughput " + " ".join(argv),
        "reps": args.reps,
        "timesteps": timesteps,
        "machine": {**machine_info(), "torch_threads": 1},
    }
    summary = summarize(runs)
    report = format_report(summary, meta)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=2) + "\n")
    text_path.write_text(report + "\n")
    print(report)
    return summary


if __name__ == "__main__":
    main()
