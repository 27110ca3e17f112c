"""``sweep.refit``: retrain a cell's chosen config on train + validation before its one test.

The papers train on the whole official training split; a sweep's trials hold out a validation
share of it to choose among themselves. Once a cell's config and epoch count are chosen, the
refit trains that config again with the validation share folded back into train
(``data.val_fraction=0`` on a manifest of its own, carved from the cell's manifest so no video is
probed twice) for the chosen number of epochs; its last checkpoint is the one tested. The LR
schedule spans the refit's epochs.

The test split must not move: it is carved before validation (or is the official one), and the
refit checks that its test videos are exactly the cell's before training. A finished refit with
the same config is reused, so ``harp export`` can rebuild a table without training again.
"""
from __future__ import annotations

import copy
import logging
import shutil
from pathlib import Path

from harp.config.load import to_yaml
from harp.config.schema import HarpConfig
from harp.errors import HarpError

log = logging.getLogger("harp.export")

REFIT_CONFIG = "refit.yaml"


def refit_config(cfg: HarpConfig, *, epochs: int, run_dir: Path) -> HarpConfig:
    """``cfg`` trained on train + val for ``epochs`` epochs, one worker, writing into ``run_dir``."""
    refit = copy.deepcopy(cfg)
    refit.data.val_fraction = 0.0
    refit.data.manifest = str(run_dir / "manifest.parquet")
    refit.train.epochs = int(epochs)
    refit.train.num_workers = 1
    refit.train.output_dir = str(run_dir)
    return refit


def _test_videos(manifest: Path) -> set[str]:
    from harp.data.manifest import load_manifest

    df = load_manifest(manifest)
    return set(df.loc[df["split"] == "test", "path"])


def _carve_refit_manifest(cfg: HarpConfig, refit: HarpConfig) -> None:
    """The refit's manifest: the cell's, re-carved without validation; the same test videos."""
    from harp.data.manifest import ensure_manifest

    source = ensure_manifest(cfg.data, progress=False)
    target = Path(refit.data.manifest)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)  # its probes are reused by the re-carve
    ensure_manifest(refit.data, progress=False)
    if _test_videos(source) != _test_videos(target):
        raise HarpError(
            f"refit of {cfg.model.family} on {cfg.data.root}: folding validation into train would change the test split; "
            "set sweep.refit=false for this data set"
        )


def _finished(run_dir: Path, refit: HarpConfig) -> Path | None:
    """The last checkpoint of an earlier refit with this very config, if it ran to the end."""
    from harp.train.checkpoint import read_metrics

    latest = run_dir / "latest"
    recorded = run_dir / REFIT_CONFIG
    if not (recorded.is_file() and (latest / "model.safetensors").is_file()):
        return None
    if recorded.read_text() != to_yaml(refit) or int(read_metrics(latest).get("epoch", 0)) != refit.train.epochs:
        return None
    return latest.resolve()


def refit_cell(cfg: HarpConfig, *, epochs: int, run_dir: Path) -> tuple[Path, HarpConfig]:
    """Train ``cfg`` on train + val for ``epochs`` epochs in this process; returns (its last
    checkpoint, the refit config)."""
    refit = refit_config(cfg, epochs=epochs, run_dir=run_dir)
    done = _finished(run_dir, refit)
    if done is not None:
        log.info("refit in %s is complete: reused", run_dir)
        return done, refit
    from harp.train import LocalSession, train_loop  # torch: only when a cell is refit

    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    _carve_refit_manifest(cfg, refit)
    (run_dir / REFIT_CONFIG).write_text(to_yaml(refit))
    log.info("refit: %s for %d epochs on train+val in %s", refit.model.family, epochs, run_dir)
    session = LocalSession(refit, run_dir)
    train_loop(refit, session)
    return (run_dir / "latest").resolve(), refit


__all__ = ["refit_cell", "refit_config"]
