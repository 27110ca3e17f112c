"""A trial's history read back whole: an epoch whose report the driver never logged (the trial's
process was killed after that epoch's checkpoint was on disk) is taken from the checkpoints, which
carry every epoch of their run; a history without a gap is left as Tune wrote it."""
from __future__ import annotations

import json

import pyarrow.fs

from harp.tune.checkpoints import with_checkpointed_epochs


def _checkpoint(trial_dir, number: int, epochs: list[int]) -> None:
    folder = trial_dir / f"checkpoint_{number:06d}"
    folder.mkdir(parents=True)
    (folder / "history.json").write_text(json.dumps([{"epoch": e, "val_top1": e / 10, "val_loss": 1.0 / e} for e in epochs]))


def test_an_epoch_lost_between_checkpoint_and_report_comes_from_the_checkpoints(tmp_path):
    tune_rows = [{"epoch": e, "val_top1": e / 10, "val_loss": 1.0 / e, "time_total_s": float(e)} for e in (1, 2, 4, 5)]
    _checkpoint(tmp_path, 3, [1, 2, 3])  # the retry resumed after epoch 3's checkpoint
    _checkpoint(tmp_path, 4, [1, 2, 3, 4, 5])
    filled = with_checkpointed_epochs(tune_rows, str(tmp_path), pyarrow.fs.LocalFileSystem())
    assert [row["epoch"] for row in filled] == [1, 2, 3, 4, 5]
    assert filled[2] == {"epoch": 3, "val_top1": 0.3, "val_loss": 1.0 / 3, "from_checkpoint": True}
    assert [row for row in filled if row.get("from_checkpoint")] == [filled[2]]
    assert filled[3] is tune_rows[2], "the rows Tune logged stay as they were"


def test_a_whole_history_reads_no_checkpoint_and_an_unrecoverable_gap_stays(tmp_path):
    whole = [{"epoch": e, "val_top1": 0.5} for e in (1, 2, 3)]
    assert with_checkpointed_epochs(whole, str(tmp_path / "missing"), pyarrow.fs.LocalFileSystem()) is whole
    (tmp_path / "checkpoint_000001").mkdir()
    (tmp_path / "checkpoint_000001" / "history.json").write_text("{not json")
    gap = [{"epoch": 1}, {"epoch": 3}]
    assert [r["epoch"] for r in with_checkpointed_epochs(gap, str(tmp_path), pyarrow.fs.LocalFileSystem())] == [1, 3]
