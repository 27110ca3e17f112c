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
  harp sweep --resume-if-exists --space default sweep.name=nightly   # a resubmitted job continues

A sweep directory holds one sweep: a second `harp sweep` into it refuses (while the first runs,
and after), `--resume` continues it. Ctrl-C (SIGINT) or SIGTERM stops a sweep cleanly: the
trials keep their checkpoints, nothing is exported, and `--resume` continues it later.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from harp.cluster.job_env import check_job_paths
from harp.cluster.resources import check_trials_fit, node_capacities, worker_counts
from harp.config.flags import add_hydra_flags, refuse_multirun, show_job_config
from harp.config.load import load_config, to_dict
from harp.config.schema import HarpConfig
from harp.errors import ConfigError
from harp.export.cells import study_layout
from harp.tune.checks import check_sweep
from harp.tune.interrupt import SweepInterrupted, stop_on_signals
from harp.tune.params import PATH_KEYS, SOURCE_KEY, anchored
from harp.tune.space import SearchSpace, base_config, describe_space, find_space, load_space
from harp.tune.study_copy import study_line
from harp.tune.sweep_dir import SWEEP_FILE, TUNE_DIR, SweepPaths, directory_size, format_size, read_sweep, record_resume_changes, sweep_differences

log = logging.getLogger("harp.tune")

DEFAULT_SPACE = "search_spaces/default.yaml"
_PATH_KEYS = (*PATH_KEYS, "train.output_dir", SOURCE_KEY)


def absolutise_paths(cfg: HarpConfig) -> None:
    """Trials run in Ray worker processes (maybe elsewhere): relative data/output paths and a
    relative ``file:`` pretraining source are made absolute against the directory `harp sweep`
    was started from."""
    for dotted in _PATH_KEYS:
        section, key = dotted.split(".")
        node = getattr(cfg, section)
        setattr(node, key, anchored(dotted, getattr(node, key), Path.cwd()))


def _print_header(cfg: HarpConfig, space: SearchSpace, paths: SweepPaths, resume: bool) -> None:
    print(f"harp sweep {cfg.sweep.name}: {space.description or space.name}{' (resumed)' if resume else ''}")
    print(f"  space {space.path or space.name}: {cfg.sweep.num_samples} trials, searcher={cfg.sweep.searcher}, "
          f"scheduler={cfg.sweep.scheduler}, metric={cfg.sweep.metric} ({cfg.sweep.mode}), "
          f"{cfg.sweep.max_concurrent_trials} at a time")
    print(describe_space(space))
    print(f"  sweep directory: {paths.describe()}")
    print(f"  {study_line(cfg, paths)}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harp sweep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default=None, help=f"search-space YAML (default: {DEFAULT_SPACE})")
    parser.add_argument("--resume", metavar="SWEEP_DIR", default=None,
                        help="continue the sweep in this directory (--space/overrides, if given, must match it)")
    parser.add_argument("--resume-if-exists", action="store_true",
                        help="continue the sweep in sweep.output_dir/sweep.name if it holds one, else start it "
                             "(what a Ray Job entrypoint wants: a resubmitted job continues its sweep)")
    parser.add_argument("--allow-changes", action="store_true",
                        help="resume even though the base config differs from the sweep's (the new values apply to "
                             "the trials still to run)")
    parser.add_argument("--no-export", action="store_true", help="skip the evaluation and export at the end")
    parser.add_argument("--quiet", action="store_true",
                        help="no Tune progress table: the header, one line per finished trial (one updating line on a terminal) "
                             "and the summary")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. sweep.num_samples=16 data.root=/data/UCF-101")
    add_hydra_flags(parser)
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_intermixed_args(argv)  # options may follow overrides: `harp sweep a=b --quiet c=d`
    refuse_multirun(args)
    if args.resume and args.resume_if_exists:
        raise ConfigError("pass either --resume SWEEP_DIR or --resume-if-exists, not both")
    with stop_on_signals():
        try:
            return _sweep(args)
        except SweepInterrupted as exc:
            print(f"harp sweep: interrupted ({exc}) before the sweep ran or after it ended; nothing exported", file=sys.stderr)
            return exc.exit_code


def _fresh_config(args: argparse.Namespace) -> tuple[HarpConfig, SearchSpace, dict[str, Any]]:
    """The base config, space and raw space file a fresh start (or --resume-if-exists) is given."""
    space_file = find_space(args.space or DEFAULT_SPACE)
    space = load_space(space_file)
    cfg = base_config(space, args.overrides)
    # Inside a Ray Job a relative path would land in Ray's package cache and be lost: refused here,
    # before absolutise_paths makes it absolute against that cache.
    check_job_paths(cfg, space.params)
    absolutise_paths(cfg)
    return cfg, space, yaml.safe_load(space_file.read_text()) or {}


def _resume_config(args: argparse.Namespace) -> tuple[HarpConfig, SearchSpace, dict[str, Any], SweepPaths]:
    """--resume DIR: the directory's config and space, or those given (to be compared with them)."""
    stored_cfg, stored_space, paths = read_sweep(args.resume)
    stored_raw = dict(json.loads(paths.read_text(SWEEP_FILE)).get("space") or {})
    if args.space:
        cfg, space, raw = _fresh_config(args)
    elif args.overrides:
        cfg, space, raw = load_config(args.overrides, layer=to_dict(stored_cfg)), stored_space, stored_raw
        absolutise_paths(cfg)
    else:
        cfg, space, raw = stored_cfg, stored_space, stored_raw
    cfg.sweep.output_dir = paths.output_dir  # a path or a URI (s3://bucket/runs)
    cfg.sweep.name = paths.name
    return cfg, space, raw, paths


def _check_resume(args: argparse.Namespace, cfg: HarpConfig, raw: dict[str, Any], paths: SweepPaths) -> None:
    """A resume continues the sweep the directory holds: its space, and its base config unless
    --allow-changes (then the changes are recorded in sweep.json)."""
    differences = sweep_differences(paths, cfg, raw)
    if differences.params:
        raise ConfigError(
            f"{paths.where} was started with other search-space params ({', '.join(differences.params)} differ); "
            "a resumed sweep keeps its space: drop --space to continue it, or pick another sweep.name"
        )
    if differences.fixed_settings:
        raise ConfigError(
            f"{paths.where} was started with other sweep settings ({differences.describe()}); "
            "Tune's saved state keeps them, so a resume cannot change them: drop those overrides, or pick another sweep.name"
        )
    if not differences.config:
        return
    if not args.allow_changes:
        raise ConfigError(
            f"{paths.where} was started with another base config ({differences.describe()}); "
            "resume with its own (drop the overrides), pass --allow-changes to use the new values for the trials "
            "still to run, or pick another sweep.name"
        )
    print(f"resuming with changes (--allow-changes): {differences.describe()}")
    record_resume_changes(paths, cfg, differences)


def _sweep(args: argparse.Namespace) -> int:
    started = time.time()
    resume = bool(args.resume)
    if resume:
        cfg, space, raw_space, _ = _resume_config(args)
    else:
        cfg, space, raw_space = _fresh_config(args)
        if args.resume_if_exists and not cfg.sweep.name:
            raise ConfigError("--resume-if-exists needs sweep.name: the directory sweep.output_dir/sweep.name to continue")
    check_sweep(cfg, space)  # before any data or Ray: a bad space, metric or name is one line at once
    study_layout(cfg)  # and a study's group_by / table layout
    if show_job_config(args, cfg):  # --cfg job: the sweep's base config, nothing run
        return 0

    from harp.data.manifest import ensure_manifest  # pandas: not for `harp sweep --help`

    manifest = ensure_manifest(cfg.data)
    print(f"data: {cfg.data.format} at {cfg.data.root} (manifest {manifest})")
    from harp.commands.pretrain import ensure_sweep_sources  # torch: not for `harp sweep --help`

    ensure_sweep_sources(cfg, space)  # a source the space samples that harp builds (synthetic-src): built once, before any trial

    # Ray and wandb take seconds to import: `harp sweep --help` and a bad override should not wait
    from harp.tune.lock import sweep_lock
    from harp.tune.ray_session import ray_session
    from harp.tune.sweep_dir import check_sweep_dir
    from harp.tune.tuner import can_resume, prepare_sweep, run_sweep
    from harp.tune.wandb_logging import resolve_mode, sync_hint

    cfg, paths = prepare_sweep(cfg, space)
    with sweep_lock(paths.root):  # held from here: a second sweep into the directory refuses before starting Ray
        restorable = can_resume(paths)
        if args.resume_if_exists:
            resume = restorable
            print(f"sweep directory {paths.where} {'holds a sweep: continuing it' if resume else 'holds none: starting it'}")
        check_sweep_dir(paths, resume=resume, restorable=restorable)
        if resume and (args.space or args.overrides):
            _check_resume(args, cfg, raw_space, paths)
        _print_header(cfg, space, paths, resume)
        with ray_session(cfg):
            # a trial no node can hold would wait forever in Ray's queue: one line instead
            check_trials_fit(cfg, worker_counts(space.params, cfg.train.num_workers), node_capacities())
            outcome = run_sweep(cfg, space, raw_space=raw_space, resume=resume, verbose=0 if args.quiet else 1,
                                extra_callbacks=_progress(cfg) if args.quiet else ())
    if outcome.interrupted is not None:
        finished = _finished_before_the_stop(outcome.paths)
        print(f"\ninterrupted: {finished} of {cfg.sweep.num_samples} trials finished; resume with harp sweep --resume {outcome.paths.where}")
        print(f"  (no best/ from a partial sweep; `harp export {outcome.paths.where}` writes one from the trials so far)")
        return 128 + outcome.interrupted

    results = [outcome.results[i] for i in range(len(outcome.results))]  # a ResultGrid indexes, typed without __iter__
    errors = [r for r in results if r.error is not None]
    print(f"\nsweep finished in {time.time() - started:.0f} s: {len(results)} trials, {len(errors)} with errors")
    _print_errors(errors)

    wandb_mode = resolve_mode(cfg.wandb.mode)
    if not args.no_export:
        _export_and_report(cfg, outcome.paths, wandb_mode)
    print(f"\nsweep directory: {outcome.paths.where} ({format_size(directory_size(outcome.paths))}; "
          f"`harp clean {outcome.paths.where}` keeps only each trial's best checkpoint)")
    print(f"  Optuna {study_line(cfg, outcome.paths)} (study '{cfg.sweep.name}'; optuna-dashboard <storage>)")
    print(f"  Tune results:  {outcome.paths.uri(TUNE_DIR)}")
    if wandb_mode == "offline":
        print(f"  W&B (offline): {outcome.paths.wandb}; upload with: {sync_hint(outcome.paths.root)}")
    elif wandb_mode == "online":
        print(f"  W&B: project {cfg.wandb.project}, group {cfg.sweep.name}")
    print(f"  resume with:   harp sweep --resume {outcome.paths.where}")
    print(f"  report page:   harp report {outcome.paths.where}")
    print(f"  trial status:  harp status {outcome.paths.where}")
    return 0


def _finished_before_the_stop(paths: SweepPaths) -> int:
    """Trials of an interrupted sweep that ended (completed, stopped early or failed), from the
    experiment state Tune saved when the stop came. Not from the ResultGrid ``fit`` returns: Tune's
    clean-up marks the trials it stops TERMINATED in memory, so a trial cut off mid-run counted as
    finished there (and ran again on resume)."""
    from harp.tune.results import load_trials

    return sum(record.ended for record in load_trials(paths))


def _progress(cfg: HarpConfig) -> list[Any]:
    """--quiet: one line per finished trial instead of Tune's output (harp.tune.progress). Tune's
    new output engine prints its configuration box, a TensorBoard hint and an error box even at
    verbose=0; its classic one prints nothing there (a trial's error still comes as its log line)."""
    from harp.tune.progress import SweepProgress

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    return [SweepProgress(total=cfg.sweep.num_samples, metric=cfg.sweep.metric, mode=cfg.sweep.mode, planned_epochs=int(cfg.train.epochs))]


def _print_errors(errors: list[Any]) -> None:
    """One line per failed trial (at most five): its cause, not Ray's wrapper."""
    from harp.tune.results import error_line

    for result in errors[:5]:
        trial = re.search(r"_([0-9a-f]{5,})_\d+", Path(result.path).name)  # harp_trial_<id>_<n>_<params>
        print(f"  trial {trial.group(1) if trial else Path(result.path).name}: {(error_line(result.error) or 'error')[:300]}")


def _export_and_report(cfg: HarpConfig, paths: SweepPaths, wandb_mode: str) -> None:
    from harp.export import export_sweep  # torch and pandas: only once the sweep has run

    print(f"\nexporting: the best checkpoint (one per cell in a study) tested on the {cfg.eval.split} split, "
          f"written to {paths.where} ...", flush=True)
    summary = export_sweep(paths.where)
    if summary.get("cells") is not None:  # a study: one best trial per cell, in a table
        print(f"\n{summary['table']}")
        print(f"exported: {summary['table_md']}, {summary['table_csv']}, one folder per cell under {summary['best_dir']}/")
        print(f"retrain a cell: harp train --config {summary['best_dir']}/<cell>/config.yaml")
        return
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
