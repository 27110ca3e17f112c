"""The per-phase breakdown and the before/after comparison of ``bench/sweep_overhead.py``."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

import trial_phases

BENCH = Path(__file__).resolve().parent
ORDER = (
    "actor start (driver -> trial function)",
    "config resolution",
    "runtime settings",
    "resume check",
    "TorchTrainer start-up (-> first worker loop)",
    "train worker session",
    "manifest load",
    "datasets + loaders",
    "model build",
    "DDP prepare",
    "first batch",
    "train epochs",
    "validation",
    "checkpoint + report",
    "W&B (driver)",
    "teardown (trial function -> driver complete)",
    "trial total (driver start -> complete)",
)


def sweep_space(data_root: str, out: str, name: str, trials: int, steps: int, workers: int, wandb: str = "disabled",
                overrides: Sequence[str] = ()) -> Any:
    """K grid trials (one LR each) of 1 epoch of ``steps`` steps, one at a time; ``overrides``
    (``key=value``, e.g. a bigger model) are applied to every trial."""
    from harp.tune.space import parse_space

    config: dict[str, Any] = {"data.root": data_root, "data.num_workers": 0, "train.epochs": 1, "train.max_steps_per_epoch": steps,
                              "train.batch_size": 8, "train.num_workers": workers, "wandb.mode": wandb}
    for item in overrides:
        key, _, value = item.partition("=")
        config[key] = yaml.safe_load(value)
    return parse_space(
        {
            "config": config,
            "sweep": {"name": name, "output_dir": out, "searcher": "grid", "scheduler": "none", "max_concurrent_trials": 1, "max_failures": 0},
            "params": {"optim.lr": {"type": "grid", "values": [10 ** (-2 - i / 2) for i in range(trials)]}},
        },
        name=name,
    )  # fmt: skip


def run_breakdown(args: argparse.Namespace, data_root: str, work: Path) -> dict[str, dict[str, list[float]]]:
    """Per-phase seconds of each trial: plain loop, 1-worker in-process sweep, 2-worker TorchTrainer sweep."""
    import ray
    from ray.tune import Callback

    from harp.train import LocalSession, train_loop
    from harp.tune.space import apply_params, base_config
    from harp.tune.tuner import run_sweep

    log = work / "phases.jsonl"
    os.environ[trial_phases.LOG_ENV] = str(log)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(BENCH), os.environ.get("PYTHONPATH", "")) if p)  # Ray workers import trial_phases
    os.environ["HARP_FORCE_TORCHTRAINER"] = "0"
    trial_phases.install()
    results: dict[str, dict[str, list[float]]] = {}

    # the plain loop: the same phases, no Ray
    space = sweep_space(data_root, str(work / "runs"), "phases-plain", args.trials, args.steps, 1, "disabled", args.set)
    cfg = base_config(space)
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    for i, point in enumerate(space.grid_points()):
        trial_cfg = apply_params(cfg, point)
        starts[f"plain{i}"] = time.time()
        train_loop(trial_cfg, LocalSession(trial_cfg, work / "phases-plain" / str(i)))
        ends[f"plain{i}"] = time.time()
    events = [e for e in trial_phases.read(log) if not e["trial"]]
    plain = {k: v for k, v in trial_phases.breakdown([{**e, "trial": ""} for e in events], starts, ends).items()}
    results["plain loop"] = plain

    class Times(Callback):
        def __init__(self) -> None:
            self.starts: dict[str, float] = {}
            self.ends: dict[str, float] = {}

        def on_trial_start(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            self.starts[trial.trial_id] = time.time()

        def on_trial_complete(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            self.ends[trial.trial_id] = time.time()

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", configure_logging=False,
             runtime_env={"worker_process_setup_hook": trial_phases.install})  # fmt: skip
    try:
        for label, workers in (("1 worker, in-process", 1), ("2 workers, TorchTrainer", 2)):
            warm = sweep_space(data_root, str(work / "runs"), f"phases-warm-{workers}", 1, 1, workers, "disabled", args.set)
            run_sweep(base_config(warm), warm, verbose=0)  # the worker pool's first start is not a trial's cost
            log.write_text("")
            times = Times()
            space = sweep_space(data_root, str(work / "runs"), f"phases-{workers}w", args.trials, args.steps, workers, args.wandb, args.set)
            run_sweep(base_config(space), space, verbose=0, extra_callbacks=(times,))
            results[label] = trial_phases.breakdown(trial_phases.read(log), times.starts, times.ends)
    finally:
        ray.shutdown()
    print_breakdown(results, args)
    return results


def print_breakdown(results: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> None:
    labels = list(results)
    model = " ".join(args.set) or "tiny cnn3d_attention"
    print(f"\nPer-phase seconds per trial (median over K={args.trials} trials; W&B {args.wandb} in the sweeps; "
          f"1 epoch of {args.steps} steps; {model}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})\n")  # fmt: skip
    print("| phase | " + " | ".join(labels) + " |")
    print("|---|" + "---:|" * len(labels))
    phases = [p for p in ORDER if any(p in r for r in results.values())]
    phases += sorted({p for r in results.values() for p in r} - set(phases))
    for phase in phases:
        cells = [f"{statistics.median(results[label][phase]):.2f}" if results[label].get(phase) else "-" for label in labels]
        print(f"| {phase} | " + " | ".join(cells) + " |")


# -- before / after ---------------------------------------------------------------------------------
def before_after(args: argparse.Namespace, argv: list[str]) -> int:
    """Run this bench on the harp package at ``--before`` and on the working tree, each in a
    subprocess, and print both tables with after/before ratios."""
    root = BENCH.parent
    passthrough = [a for i, a in enumerate(argv) if a != "--before" and (i == 0 or argv[i - 1] != "--before") and not a.startswith("--before=")]
    passthrough = [a for i, a in enumerate(passthrough) if a != "--json" and (i == 0 or passthrough[i - 1] != "--json")]
    outputs = {}
    with tempfile.TemporaryDirectory(prefix="harp-bench-before-") as tmp:
        archive = subprocess.run(["git", "-C", str(root), "archive", args.before, "platform/harp"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        for label, pythonpath in (("before", str(Path(tmp) / "platform")), ("after", "")):
            out = Path(tmp) / f"{label}.json"
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env.get("PYTHONPATH", "")) if p)
            print(f"\n=== {label}: harp from {'git ' + args.before if pythonpath else 'the working tree'} ===", flush=True)
            subprocess.run([sys.executable, str(BENCH / "sweep_overhead.py"), *passthrough, "--json", str(out)], env=env, check=True)
            outputs[label] = json.loads(out.read_text())
    print_comparison(outputs)
    if args.json:
        Path(args.json).write_text(json.dumps(outputs, indent=2))
    return 0


def print_comparison(outputs: dict[str, dict[str, Any]]) -> None:
    before, after = outputs["before"], outputs["after"]
    print("\nBefore / after (same run, same machine load): overhead per trial over the plain loop\n")
    if before.get("rows") and after.get("rows"):
        print("| row | before overhead/trial (s) | after overhead/trial (s) | after / before |")
        print("|---|---:|---:|---:|")
        for b, a in zip(before["rows"], after["rows"]):
            if b["row"].startswith("plain"):
                continue
            ratio = a["overhead_per_trial_s"] / b["overhead_per_trial_s"] if b["overhead_per_trial_s"] > 0 else float("nan")
            print(f"| {a['row']} | {b['overhead_per_trial_s']:.2f} | {a['overhead_per_trial_s']:.2f} | {ratio:.2f} |")
    if before.get("phases") and after.get("phases"):
        print("\n| breakdown row | phase | before (s) | after (s) | after / before |")
        print("|---|---|---:|---:|---:|")
        for label, phases in after["phases"].items():
            for phase in ORDER:
                b, a = before["phases"].get(label, {}).get(phase), phases.get(phase)
                if not a or not b:
                    continue
                mb, ma = statistics.median(b), statistics.median(a)
                print(f"| {label} | {phase} | {mb:.2f} | {ma:.2f} | {ma / mb if mb > 0 else float('nan'):.2f} |")
