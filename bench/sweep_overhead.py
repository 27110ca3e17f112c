"""Trial overhead: a sweep of K very short trials vs the same training in a plain loop.

    .venv/bin/python bench/sweep_overhead.py                 # K=3, tiny model, synthetic data
    .venv/bin/python bench/sweep_overhead.py --trials 4 --steps 2 --json runs/bench_overhead.json
    .venv/bin/python bench/sweep_overhead.py --breakdown-only --before HEAD~1 --set model.family=timesformer \
        --set model.size=base --set model.frames=2 --set model.frame_size=32   # base-size checkpoints, cheap steps

Rows (each the same K trainings: 1 epoch of ``--steps`` optimiser steps + validation, 1 at a time):

- plain loop: ``train_loop`` K times in this process, no Ray at all (the reference);
- sweep, 1 worker in-process: harp's default for 1-worker trials (the loop inside the Tune trial);
- sweep, 1 worker via TorchTrainer: what in-process trials avoid (``HARP_FORCE_TORCHTRAINER=1``);
- sweep, 2 workers via TorchTrainer: data-parallel trials (DDP over gloo on CPU).

Each sweep row gets its own Ray instance (Ray workers inherit the environment Ray started with,
which is how the forced-TorchTrainer row is switched on); Ray's start-up is reported apart, and a
1-trial warm-up sweep runs before each timed row (the first sweep of a fresh Ray instance also
pays for its worker pool); each sweep
row is the wall time of ``Tuner.fit()`` including searcher, scheduler, checkpoints and W&B-off
bookkeeping. ratio = sweep wall / plain wall; overhead/trial = (sweep - plain) / K.

Then the per-phase breakdown (``--no-breakdown`` skips it): the same K trials once more as a 1-worker
in-process sweep and as a 2-worker TorchTrainer sweep (and the plain loop), with harp's functions
timed in every process (``bench/trial_phases.py``, installed in Ray's workers through
``worker_process_setup_hook``) and W&B in ``--wandb`` mode (offline: what a sweep without an API key
does). Per phase the median over the K trials: actor start, config resolution, manifest load,
datasets, model build, first batch, train epochs, validation, checkpoint + report, W&B in the
driver, teardown.

``--before REV`` also runs every row on the harp package as committed at REV (``git archive``, read
only, into a temporary folder put first on PYTHONPATH) in a subprocess of this run, and prints
before/after ratios next to the rows: the overhead cuts measured in one run, on the same load.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from overhead_phases import before_after, run_breakdown, sweep_space


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3, help="K trials per row")
    parser.add_argument("--steps", type=int, default=3, help="optimiser steps per trial (1 epoch)")
    parser.add_argument("--data-root", default=None, help="synthetic data folder (default: a fresh small one in a temp dir)")
    parser.add_argument("--skip-forced", action="store_true", help="skip the 1-worker TorchTrainer row")
    parser.add_argument("--json", default=None, help="also write the rows as JSON")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the per-phase breakdown")
    parser.add_argument("--breakdown-only", action="store_true", help="only the per-phase breakdown")
    parser.add_argument("--wandb", default="offline", choices=("offline", "disabled"), help="W&B mode of the breakdown sweeps")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every trial, e.g. model.family=timesformer (repeatable)")
    parser.add_argument("--before", default=None, help="git revision whose harp package is the 'before' of a before/after comparison")
    args = parser.parse_args(argv)
    if args.before:
        return before_after(args, argv or sys.argv[1:])

    from harp.config import load_config
    from harp.data.manifest import ensure_manifest
    from harp.train import LocalSession, train_loop
    from harp.tune.ray_session import ray_session
    from harp.tune.space import apply_params, base_config
    from harp.tune.tuner import run_sweep

    work = Path(tempfile.mkdtemp(prefix="harp-bench-overhead-"))
    data_root = args.data_root or str(work / "data")
    seed_cfg = load_config([f"data.root={data_root}", "data.synth.num_classes=4", "data.synth.clips_per_class=10",
                            "data.synth.max_size=64", "data.num_workers=0"])
    ensure_manifest(seed_cfg.data, progress=False)
    rows: list[dict] = []
    if args.breakdown_only:
        phases = run_breakdown(args, data_root, work)
        _finish(args, work, {"phases": phases})
        return 0

    # plain loop: the same K trainings, no Ray
    space = sweep_space(data_root, str(work / "runs"), "plain", args.trials, args.steps, 1, overrides=args.set)
    cfg = base_config(space)
    start = time.perf_counter()
    for point in space.grid_points():
        trial_cfg = apply_params(cfg, point)
        train_loop(trial_cfg, LocalSession(trial_cfg, work / "plain" / str(point["optim.lr"])))
    plain = time.perf_counter() - start
    rows.append({"row": "plain loop (no Ray)", "workers": 1, "wall_s": plain, "torchtrainer": False})

    cases = [("sweep, in-process trials", 1, False)]
    if not args.skip_forced:
        cases.append(("sweep, TorchTrainer per trial", 1, True))
    cases.append(("sweep, TorchTrainer per trial (DDP)", 2, False))
    ray_starts = []
    for label, workers, forced in cases:
        # Ray workers inherit the environment Ray was started with: one Ray instance per row
        os.environ["HARP_FORCE_TORCHTRAINER"] = "1" if forced else "0"
        start = time.perf_counter()
        with ray_session(cfg, num_cpus=2):
            ray_starts.append(time.perf_counter() - start)
            # warm-up (not reported): the first sweep of a fresh Ray instance pays its worker pool's start
            warm = sweep_space(data_root, str(work / "runs"), f"warmup-{len(ray_starts)}", 1, 1, workers, overrides=args.set)
            run_sweep(base_config(warm), warm, verbose=0)
            name = f"overhead-{workers}w{'-forced' if forced else ''}"
            timed_space = sweep_space(data_root, str(work / "runs"), name, args.trials, args.steps, workers, overrides=args.set)
            sweep_cfg = base_config(timed_space)
            start = time.perf_counter()
            outcome = run_sweep(sweep_cfg, timed_space, verbose=0)
            wall = time.perf_counter() - start
        errors = [r.error for r in outcome.results if r.error is not None]
        if errors:
            print(f"{label}: {len(errors)} trials failed: {errors[0]}", file=sys.stderr)
        used_trainer = any((p / "train_run.json").is_file() for p in (work / "runs" / name / "tune").glob("harp_trial_*"))
        rows.append({"row": label, "workers": workers, "wall_s": wall, "torchtrainer": used_trainer})
    os.environ.pop("HARP_FORCE_TORCHTRAINER", None)
    ray_start = sum(ray_starts) / len(ray_starts)

    print(f"\nTrial overhead: K={args.trials} trials x 1 epoch of {args.steps} steps ({' '.join(args.set) or 'tiny cnn3d_attention'}, "
          f"batch 8, synthetic 4 classes), {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    print(f"Ray start-up (ray.init local + dashboard), once per sweep: {ray_start:.1f} s (mean of {len(ray_starts)})\n")
    print(f"| {'row':<38} | workers | TorchTrainer | wall (s) | ratio vs plain | overhead / trial (s) |")
    print(f"|{'-' * 40}|---------|--------------|----------|----------------|----------------------|")
    for row in rows:
        row["ratio"] = row["wall_s"] / plain
        row["overhead_per_trial_s"] = (row["wall_s"] - plain) / args.trials
        trainer = "yes" if row["torchtrainer"] else "no"
        print(f"| {row['row']:<38} | {row['workers']:>7} | {trainer:>12} | {row['wall_s']:>8.1f} | "
              f"{row['ratio']:>14.2f} | {row['overhead_per_trial_s']:>20.1f} |")
    phases = {} if args.no_breakdown else run_breakdown(args, data_root, work)
    _finish(args, work, {"ray_start_s": ray_start, "trials": args.trials, "steps": args.steps, "rows": rows, "phases": phases})
    return 0


def _finish(args: argparse.Namespace, work: Path, result: dict) -> None:
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
