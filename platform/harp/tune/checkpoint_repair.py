"""Before a sweep resumes: put back a checkpoint that Tune's saved state names but that is gone.

Tune writes its experiment state every few seconds, while the driver's checkpoint retention
(``CheckpointConfig.num_to_keep``) deletes a trial's older checkpoints as soon as it records a newer
one. A driver killed between the two leaves a state that names a checkpoint already deleted, and
``Tuner.restore`` then fails that trial at once, every retry ("Could not recover from checkpoint as
it does not exist on storage anymore"), although newer whole checkpoints of it are on disk.

So before the restore, each unfinished trial whose named checkpoint is missing gets that directory
back as a copy of the newest whole checkpoint at or before the named epoch (else the oldest after
it). The trial then resumes as any resumed trial does (``harp.train.sessions.TuneSession``): from
the newest whole checkpoint on disk, reporting the epochs in between again first.

Local trial directories only: on remote storage the restore fails as before, with Tune's message.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from harp.train.sessions import complete_checkpoints
from harp.tune.results import load_trials
from harp.tune.sweep_dir import SweepPaths

log = logging.getLogger("harp.tune")


def restore_missing_checkpoints(paths: SweepPaths) -> list[Path]:
    """Recreate the missing checkpoints Tune's state names for unfinished in-process trials of the
    sweep at ``paths``; returns the directories put back."""
    if paths.is_remote:
        return []
    restored = []
    for record in load_trials(paths):
        if record.status == "TERMINATED" or record.trial is None or record.train_run is not None or record.path is None:
            continue
        manager = record.trial.run_metadata.checkpoint_manager
        latest = manager.latest_checkpoint_result if manager is not None else None
        if latest is None or latest.checkpoint is None:
            continue
        named = Path(latest.checkpoint.path)
        if named.exists() or named.parent != record.path:
            continue
        epoch = int(latest.metrics.get("epoch", 0) or 0)
        whole = complete_checkpoints(record.path)
        if not whole:
            continue
        older = [c for c in whole if c[0] <= epoch]
        source_epoch, source, _ = older[-1] if older else whole[0]
        shutil.copytree(source, named)
        log.warning("trial %s: Tune's saved state names %s (epoch %d), deleted before the driver stopped; put back as a copy of %s "
                    "(epoch %d) so the trial resumes from its newest checkpoint", record.trial_id, named.name, epoch, source.name, source_epoch)
        restored.append(named)
    return restored


__all__ = ["restore_missing_checkpoints"]
