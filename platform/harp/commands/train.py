"""``harp train``: train one configuration and say where its checkpoints are.

One worker runs the loop in this process (no Ray start-up); ``train.num_workers>1`` runs it
data-parallel on a Ray Train TorchTrainer (DDP, gloo on CPU / NCCL on GPU) on a local Ray
instance (``sweep.ray_address``). ``--config best/config.yaml`` retrains an exported sweep winner.
"""
from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harp.config.flags import add_hydra_flags, refuse_multirun, show_job_config
from harp.config.load import load_config, to_yaml
from harp.config.schema import HarpConfig
from harp.errors import HarpError
from harp.models.registry import check_family

log = logging.getLogger("harp.train")


def format_epoch(metrics: Mapping[str, Any], epochs: int) -> str:
    """One line per epoch: what a person watching a run wants to see."""

    def num(key: str, fmt: str) -> str:
        value = metrics.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return format(value, fmt)

    return (
        f"epoch {int(metrics['epoch'])}/{epochs}  train_loss {num('train_loss', '.4f')}  val_loss {num('val_loss', '.4f')}  "
        f"val_top1 {num('val_top1', '.3f')}  val_top5 {num('val_top5', '.3f')}  lr {num('lr', '.2e')}  "
        f"clips/s {num('clips_per_s', '.1f')}  data_wait {num('data_wait_frac', '.0%')}  skipped {int(metrics.get('skipped_files', 0))}"
    )


def default_run_name(cfg: HarpConfig) -> str:
    return f"{cfg.model.family}-{time.strftime('%Y%m%d-%H%M%S')}"


def resolve_resume(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory (-> its latest checkpoint)."""
    path = Path(path)
    if (path / "model.safetensors").is_file():
        return path
    if (path / "latest" / "model.safetensors").is_file():
        return (path / "latest").resolve()
    raise HarpError(f"--resume {path}: neither a checkpoint directory nor a run directory with a latest/ checkpoint")


def train_local(cfg: HarpConfig, run_dir: Path, *, resume: Path | None = None, quiet: bool = False) -> dict[str, Any]:
    """One worker, in this process. Returns {'history', 'best', 'latest', 'run_dir'}."""
    from harp.train import LocalSession, train_loop  # function-level: torch, so `harp train --help` stays instant

    def show(metrics: dict[str, float], _: Path | None) -> None:
        if not quiet:
            print(format_epoch(metrics, cfg.train.epochs), flush=True)

    session = LocalSession(cfg, run_dir, resume_from=resume, on_report=show)
    history = train_loop(cfg, session)
    return {"history": history, "best": session.best, "latest": run_dir / "latest", "run_dir": run_dir}


def _print_callback(epochs: int):
    import ray.train

    class PrintEpochs(ray.train.UserCallback):
        """Runs on the Train controller: one line per reported epoch (rank 0's metrics), kept in
        ``history`` for the comparison with an exported trial."""

        history: list[dict[str, Any]] = []

        def after_report(self, run_context, metrics, checkpoint) -> None:  # noqa: ARG002
            if metrics:
                self.history.append(dict(metrics[0]))
                print(format_epoch(metrics[0], epochs), flush=True)

    return PrintEpochs()


def train_distributed(cfg: HarpConfig, output_dir: Path, name: str) -> dict[str, Any]:
    """train.num_workers DDP workers on a TorchTrainer; re-running with the same name resumes."""
    import ray  # function-level (here and in _print_callback): Ray is slow to import and one worker never needs it

    from harp.train.ray_train import run_torch_trainer  # function-level: torch, see train_local
    from harp.tune.ray_session import shutdown_ray
    from harp.tune.results import best_train_run_checkpoint  # Ray: see above

    started = False
    if not ray.is_initialized():
        ray.init(address=cfg.sweep.ray_address, include_dashboard=True, dashboard_host="127.0.0.1", logging_level=logging.WARNING)
        started = True
    try:
        printer = _print_callback(cfg.train.epochs)
        result = run_torch_trainer(cfg, storage_path=output_dir.resolve(), name=name, callbacks=[printer])
        found = best_train_run_checkpoint(result, cfg.sweep.metric, cfg.sweep.mode)
        best = found.path if found is not None else None
        latest = Path(result.checkpoint.path) if result.checkpoint is not None else None
        return {"history": printer.history, "best": best, "latest": latest, "run_dir": Path(result.path), "result": result}
    finally:
        if started:
            shutdown_ray()


def _warn_if_environment_differs(cfg: HarpConfig, exported: Path) -> None:
    """Say once, before training, when this retrain cannot reproduce the exported run exactly."""
    from harp.train.reproduce import apply_runtime, current_environment, describe_drift, read_environment  # torch: see train_local
    from harp.train.run import default_device

    recorded = read_environment(exported)
    if recorded is None:
        return
    now = current_environment(apply_runtime(cfg), default_device(cfg))
    drift = describe_drift(recorded, now)
    print(f"note: {drift}" if drift else f"reproducing the exported run: same harp, torch, device and {now.threads} thread(s)", flush=True)


def _compare_with_export(history: list[dict[str, Any]], exported: Path) -> None:
    """The retrain's per-epoch validation metrics beside the exported trial's, and the largest gap."""
    from harp.train.reproduce import compare_histories, read_history  # torch: see train_local

    recorded = read_history(exported)
    if not recorded or not history:
        return
    table, worst = compare_histories(recorded, history)
    print(f"\ncompared with the exported trial ({exported}):\n{table}")
    verdict = "reproduced exactly" if worst == 0.0 else "differs"
    print(f"max |difference| over epochs: {worst:.3g} ({verdict})", flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="harp train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  harp train model.family=tsm optim.lr=0.01 train.epochs=10\n"
        "  harp train --config runs/my-sweep/best/config.yaml\n  harp train train.num_workers=2   # DDP on Ray Train",
    )
    parser.add_argument("--config", help="a YAML config file (e.g. an exported best/config.yaml)")
    parser.add_argument("--name", help="run name (default: <family>-<timestamp>); runs go to train.output_dir/NAME")
    parser.add_argument("--resume", help="one worker: a checkpoint directory or run directory to resume from exactly "
                        "(continues in that run's directory unless --name is given)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model.family=tsm optim.lr=0.01")
    add_hydra_flags(parser)
    args = parser.parse_args(argv)
    refuse_multirun(args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    resume = resolve_resume(args.resume) if args.resume else None
    # a resumed run starts from its own config (overrides on top, e.g. train.epochs=20)
    cfg = load_config(args.overrides, args.config or (resume / "config.yaml" if resume else None))
    if show_job_config(args, cfg):
        return 0
    check_family(cfg.model.family)  # an unknown family fails here, in one line, before any data work
    output_dir = Path(cfg.train.output_dir)
    name = args.name or default_run_name(cfg)
    if resume is not None and not args.name and resume.parent.name == "checkpoints":
        # resuming a local run continues in its own directory (history, best/latest, ranking)
        output_dir, name = resume.parent.parent.parent, resume.parent.parent.name
    print(f"harp train: {cfg.model.family} ({cfg.model.size}), {cfg.train.epochs} epochs, batch {cfg.train.batch_size}, "
          f"{cfg.optim.name} lr {cfg.optim.lr:g}, {cfg.train.num_workers} worker(s), data {cfg.data.root}", flush=True)
    exported = Path(args.config).parent if args.config else None
    if exported is not None:
        _warn_if_environment_differs(cfg, exported)
    if cfg.train.num_workers == 1:
        run_dir = output_dir / name
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
        out = train_local(cfg, run_dir, resume=resume)
    else:
        if args.resume:
            raise HarpError("--resume is for one worker; with train.num_workers>1 re-run with the same --name to resume")
        out = train_distributed(cfg, output_dir, name)
    best = out["best"]
    if exported is not None:
        _compare_with_export(out["history"], exported)
    print(f"run directory:    {out['run_dir']}")
    if best is not None:
        from harp.train.checkpoint import read_metrics  # function-level: torch, see train_local

        score = read_metrics(best).get(cfg.sweep.metric)
        shown = f" ({cfg.sweep.metric} {score:.4f})" if isinstance(score, (int, float)) else ""
        print(f"best checkpoint:  {Path(best).resolve()}{shown}")
        print(f"latest:           {Path(out['latest']).resolve() if out['latest'] else '-'}")
        print(f"evaluate it:      harp evaluate {Path(best).resolve()} --clips {cfg.eval.num_clips} --crops {cfg.eval.num_crops}")
    return 0
