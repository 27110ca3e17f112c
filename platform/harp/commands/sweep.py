"""``harp sweep``: run a hyperparameter sweep, then evaluate and export its best trial.

With no arguments it runs ``search_spaces/default.yaml`` on the embedded synthetic data set
(synthesised on first use) on a private local Ray instance, and ends by printing the best config,
its test metrics and where everything was written.

Examples:
  harp sweep
  harp sweep --space search_spaces/001_timesformer_hmdb25.yaml data.root=/data/hmdb51
  harp sweep sweep.num_samples=20 sweep.searcher=random wandb.mode=disabled
  harp sweep sweep.searcher=nsga2 'sweep.objectives=[gflops:min]'
  harp sweep --resume runs/default-20261122-021500      # continue an interrupted sweep
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

import yaml

from harp.config.flags import add_hydra_flags, refuse_multirun, show_job_config
from harp.config.schema import HarpConfig
from harp.errors import ConfigError
from harp.export import export_sweep
from harp.tune.space import SearchSpace, base_config, describe_space, find_space, load_space
from harp.tune.sweep_dir import SweepPaths, read_sweep

log = logging.getLogger("harp.tune")

DEFAULT_SPACE = "search_spaces/default.yaml"
_PATH_KEYS = (("data", "root"), ("data", "manifest"), ("data", "annotations"), ("train", "output_dir"))


def absolutise_paths(cfg: HarpConfig) -> None:
    """Trials run in Ray worker processes (maybe elsewhere): relative data/output paths are made
    absolute against the directory `harp sweep` was started from."""
    for section, key in _PATH_KEYS:
        value = getattr(getattr(cfg, section), key)
        if value and "://" not in value and not os.path.isabs(value):
            setattr(getattr(cfg, section), key, str(Path(value).resolve()))


def _print_header(cfg: HarpConfig, space: SearchSpace, paths: SweepPaths) -> None:
    print(f"harp sweep {cfg.sweep.name}: {space.description or space.name}")
    print(f"  space {space.path or space.name}: {cfg.sweep.num_samples} trials, searcher={cfg.sweep.searcher}, "
          f"scheduler={cfg.sweep.scheduler}, metric={cfg.sweep.metric} ({cfg.sweep.mode}), "
          f"{cfg.sweep.max_concurrent_trials} at a time")
    print(describe_space(space))
    print(f"  sweep directory: {paths.root}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harp sweep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default=None, help=f"search-space YAML (default: {DEFAULT_SPACE})")
    parser.add_argument("--resume", metavar="SWEEP_DIR", default=None, help="continue the sweep in this directory")
    parser.add_argument("--no-export", action="store_true", help="skip the evaluation and export at the end")
    parser.add_argument("--quiet", action="store_true", help="no Tune progress table")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. sweep.num_samples=16 data.root=/data/UCF-101")
    add_hydra_flags(parser)
    args = parser.parse_args(argv)
    refuse_multirun(args)

    started = time.time()
    if args.resume:
        if args.space or args.overrides:
            raise ConfigError("--resume continues a sweep exactly as it was started: drop --space and the overrides")
        cfg, space, paths = read_sweep(args.resume)
        if not paths.has_tune_state():
            raise ConfigError(f"{args.resume} holds no Tune state to resume")
        cfg.sweep.output_dir = str(paths.root.parent)
        raw_space: dict[str, Any] = {}
    else:
        space_file = find_space(args.space or DEFAULT_SPACE)
        space = load_space(space_file)
        cfg = base_config(space, args.overrides)
        if show_job_config(args, cfg):  # --cfg job: the sweep's base config, nothing run
            return 0
        absolutise_paths(cfg)
        raw_space = yaml.safe_load(space_file.read_text()) or {}

    from harp.data.manifest import ensure_manifest  # pandas: not for `harp sweep --help`

    manifest = ensure_manifest(cfg.data)
    print(f"data: {cfg.data.format} at {cfg.data.root} (manifest {manifest})")

    # Ray and wandb take seconds to import: `harp sweep --help` and a bad override should not wait
    from harp.tune.ray_session import ray_session
    from harp.tune.tuner import prepare_sweep, run_sweep
    from harp.tune.wandb_logging import resolve_mode, sync_hint

    cfg, paths = prepare_sweep(cfg, space)
    _print_header(cfg, space, paths)
    with ray_session(cfg):
        outcome = run_sweep(cfg, space, raw_space=raw_space, verbose=0 if args.quiet else 1)
    results = [outcome.results[i] for i in range(len(outcome.results))]  # a ResultGrid indexes, typed without __iter__
    errors = [r for r in results if r.error is not None]
    print(f"\nsweep finished in {time.time() - started:.0f} s: {len(results)} trials, {len(errors)} with errors")
    for result in errors[:5]:
        print(f"  trial {result.path.rsplit('/', 1)[-1]}: {str(result.error).splitlines()[0][:200]}")

    wandb_mode = resolve_mode(cfg.wandb.mode)
    if not args.no_export:
        _export_and_report(cfg, outcome.paths, wandb_mode)
    print(f"\nsweep directory: {outcome.paths.root}")
    print(f"  Optuna study:  {cfg.sweep.optuna_storage or 'sqlite:///' + str(outcome.paths.optuna_db)} "
          f"(study '{cfg.sweep.name}'; optuna-dashboard <storage>)")
    print(f"  Tune results:  {outcome.paths.tune}")
    if wandb_mode == "offline":
        print(f"  W&B (offline): {outcome.paths.wandb}; upload with: {sync_hint(outcome.paths.root)}")
    elif wandb_mode == "online":
        print(f"  W&B: project {cfg.wandb.project}, group {cfg.sweep.name}")
    print(f"  resume with:   harp sweep --resume {outcome.paths.root}")
    return 0


def _export_and_report(cfg: HarpConfig, paths: SweepPaths, wandb_mode: str) -> None:
    summary = export_sweep(paths.root)
    print(f"\nbest trial {summary['trial_id']} (best checkpoint: epoch {summary.get('checkpoint_epoch')}, "
          f"{cfg.sweep.metric}={summary['val'].get(cfg.sweep.metric, float('nan')):.4f} on val)")
    print("best config (the sampled values; full config in best/config.yaml):")
    for key, value in summary["params"].items():
        print(f"  {key} = {value}")
    test = summary.get("test") or {}
    if test:
        protocol = summary.get("protocol", {})
        shown = [f"{k}={test[k]:.4f}" for k in ("top1", "top5", "mean_class_accuracy") if isinstance(test.get(k), (int, float))]
        print(f"test ({protocol.get('num_clips')} clips x {protocol.get('num_crops')} crops): " + ", ".join(shown))
    print(f"exported: {summary['best_dir']}/ (config.yaml, model.safetensors, metrics.json, confusion.png), {summary['trials_parquet']}")
    print(f"retrain:  harp train --config {summary['best_dir']}/config.yaml")
