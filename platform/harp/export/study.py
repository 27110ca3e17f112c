"""A study's export: per cell, its best trial by the validation metric -> (refit) -> one test.

Each cell (``sweep.group_by``: a data set x family, ...) is ranked on its own: validation scores
of different data sets or families are never compared. The chosen checkpoint of each cell is
evaluated once on that cell's test split with the config's view protocol (``eval.num_clips`` x
``eval.num_crops``, scores averaged), and ``best/<cell>/`` holds its ``config.yaml`` (retrains
it), ``model.safetensors`` and ``metrics.json``. The table itself is ``harp.export.table``.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harp.config.load import to_dict, to_yaml
from harp.config.schema import HarpConfig
from harp.errors import HarpError
from harp.export.cells import DATA_KEY, CellKey, StudyLayout, cell_dir_names, cell_key, cell_labels
from harp.export.refit import refit_cell
from harp.export.single import copy_checkpoint_files, test_checkpoint
from harp.numbers import jsonable
from harp.tune.results import TrialRecord, best_trial_checkpoint, group_trials, pick_best
from harp.tune.sweep_dir import SweepPaths
from harp.tune.trial import trial_config

log = logging.getLogger("harp.export")


@dataclass
class CellResult:
    """One cell of a study's table: how it was searched, what was chosen, how it tested."""

    labels: dict[str, str]  # group_by key -> printable value
    name: str  # its folder under best/
    trials: int  # trials the search spent on this cell
    epochs_spent: int  # epochs those trials trained, together
    trial_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None  # the chosen checkpoint's epoch
    epochs_planned: int | None = None
    val: float | None = None  # the sweep metric of the chosen checkpoint, on this cell's val split
    test: dict[str, Any] = field(default_factory=dict)  # top1, top5, mean_class_accuracy, num_videos
    protocol: dict[str, Any] = field(default_factory=dict)  # split, num_clips, num_crops
    gflops_per_view: float | None = None
    mparams: float | None = None
    refit: bool = False
    refit_epochs: int | None = None
    note: str = ""  # why a cell has no result

    @property
    def views(self) -> int | None:
        clips, crops = self.protocol.get("num_clips"), self.protocol.get("num_crops")
        return int(clips) * int(crops) if clips and crops else None


def _cost(cfg: HarpConfig, num_classes: int) -> tuple[float, float]:
    """(GFLOPs per view, M params) of the cell's model, measured (``harp.models.flops``)."""
    from harp.models.flops import measure
    from harp.train.run import model_config

    cost = measure(model_config(cfg), num_classes)
    return float(cost.gflops), float(cost.mparams)


def _num_classes(checkpoint: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(checkpoint / "model.safetensors"), framework="pt") as handle:
        meta = handle.metadata() or {}
    if "num_classes" not in meta:
        raise HarpError(f"{checkpoint} does not record its number of classes")
    return int(meta["num_classes"])


def _export_cell(
    cell: CellResult, records: list[TrialRecord], resolved: dict[str, HarpConfig], cfg: HarpConfig, paths: SweepPaths,
    *, best_dir: Path, evaluate: bool, num_clips: int | None, num_crops: int | None,
) -> None:
    """Choose, (refit,) copy and test one cell into ``best_dir/<cell>``, filling ``cell`` in; a
    cell without a usable trial keeps a note instead of failing the others. A checkpoint on remote
    storage is downloaded for the block that reads it (a refit runs in this machine's own
    directory of the sweep)."""
    from harp.train.checkpoint import read_config  # torch: not for `harp export --help`

    metric, mode = cfg.sweep.metric, cfg.sweep.mode
    try:
        best = pick_best(records, metric, mode)
    except HarpError:
        cell.note = f"no trial reported {metric}"
        return
    found = best_trial_checkpoint(best, metric, mode)
    if found is None:
        cell.note = f"trial {best.trial_id} kept no checkpoint"
        return
    with found.local_directory() as found_dir:
        trained = read_config(found_dir) if (found_dir / "config.yaml").is_file() else resolved[best.trial_id]
        cell.trial_id, cell.params = best.trial_id, dict(best.params)
        cell.epoch = int(found.metrics.get("epoch") or best.best_epoch(metric, mode) or trained.train.epochs)
        cell.epochs_planned = trained.train.epochs
        cell.val = found.metrics.get(metric)
        checkpoint, final, source = found_dir, trained, found.describe()
        if cfg.sweep.refit:
            checkpoint, final = refit_cell(trained, epochs=cell.epoch, run_dir=paths.root / "refit" / cell.name)
            cell.refit, cell.refit_epochs, source = True, final.train.epochs, str(checkpoint)
        out = best_dir / cell.name
        out.mkdir(parents=True)
        (out / "config.yaml").write_text(to_yaml(final))
        copy_checkpoint_files(checkpoint, out)
        cell.gflops_per_view, cell.mparams = _cost(final, _num_classes(checkpoint))
        if evaluate:
            cell.test, cell.protocol = test_checkpoint(checkpoint, final, out, num_clips=num_clips, num_crops=num_crops)
        else:
            cell.protocol = {"split": final.eval.split, "num_clips": num_clips or final.eval.num_clips, "num_crops": num_crops or final.eval.num_crops}
    record = {**asdict(cell), "views": cell.views, "checkpoint": source, "metric": metric, "mode": str(mode)}
    (out / "metrics.json").write_text(json.dumps(jsonable(record), indent=2, sort_keys=True) + "\n")


def _split_by_data_set(layout: StudyLayout, resolved: dict[str, HarpConfig], params: dict[str, dict[str, Any]]) -> StudyLayout:
    """The layout, with the data set as one more column key when the trials train on several data
    sets and group_by does not say so: their validation scores are never ranked together."""
    if DATA_KEY in layout.keys:
        return layout
    data_sets = {cell_key(cfg, params[trial_id], [DATA_KEY]) for trial_id, cfg in resolved.items()}
    if len(data_sets) < 2:
        return layout
    log.warning("the trials train on %d data sets but sweep.group_by=%s leaves them out: the cells are split by data set too",
                len(data_sets), list(layout.keys))
    return StudyLayout((*layout.keys, DATA_KEY), layout.rows, (*layout.columns, DATA_KEY))


def export_cells(
    cfg: HarpConfig, layout: StudyLayout, paths: SweepPaths, records: list[TrialRecord],
    *, best_dir: Path, evaluate: bool, num_clips: int | None, num_crops: int | None,
) -> tuple[StudyLayout, list[CellResult]]:
    """``best/<cell>/`` for every cell of the study (``best/``, written at ``best_dir``, is
    rebuilt): the layout (with the data set added when group_by forgot it) and the cells, in the
    order their first trial appears."""
    base = to_dict(cfg)
    resolved = {r.trial_id: trial_config(base, r.params) for r in records}
    layout = _split_by_data_set(layout, resolved, {r.trial_id: r.params for r in records})
    keys: dict[str, CellKey] = {r.trial_id: cell_key(resolved[r.trial_id], r.params, layout.keys) for r in records}
    grouped = group_trials(records, lambda r: keys[r.trial_id])
    cell_keys = list(grouped)
    labels = cell_labels(cell_keys, layout.keys)
    names = cell_dir_names(labels)
    if best_dir.exists():
        shutil.rmtree(best_dir)
    best_dir.mkdir(parents=True)
    cells = []
    for key in cell_keys:
        members = grouped[key]
        cell = CellResult(
            labels=dict(zip(layout.keys, labels[key])),
            name=names[key],
            trials=len(members),
            epochs_spent=sum(r.epochs_done for r in members),
        )
        log.info("cell %s: %d trials", cell.name, cell.trials)
        _export_cell(cell, members, resolved, cfg, paths, best_dir=best_dir, evaluate=evaluate, num_clips=num_clips, num_crops=num_crops)
        cells.append(cell)
    return layout, cells


__all__ = ["CellResult", "export_cells"]
