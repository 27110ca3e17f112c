"""A study's table: ``best/table.csv`` (one row per cell, every number) and ``best/table.md``
(the paper's layout: rows x columns of test top-1, then every cell in full, then how the numbers
were obtained), readable on its own."""
from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from harp.config.schema import HarpConfig
from harp.export.cells import StudyLayout, value_order
from harp.export.study import CellResult
from harp.numbers import is_finite
from harp.tune.space import SearchSpace

TABLE_CSV = "table.csv"
TABLE_MD = "table.md"
REFIT_MARK = "†"


def _pct(value: Any) -> str:
    return f"{100.0 * float(value):.1f}" if is_finite(value) else "–"


def _num(value: Any, fmt: str) -> str:
    return format(float(value), fmt) if is_finite(value) else "–"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(_md_cell(c) for c in cells) + " |"


def csv_rows(cells: Sequence[CellResult], layout: StudyLayout, metric: str) -> list[dict[str, Any]]:
    """The table as records: the cell's keys, then what was searched, chosen and measured."""
    rows = []
    for cell in cells:
        test = cell.test
        views = cell.views
        row: dict[str, Any] = {key: cell.labels[key] for key in layout.keys}
        row.update(
            cell=cell.name,
            trials=cell.trials,
            epochs_spent=cell.epochs_spent,
            trial_id=cell.trial_id or "",
            epoch=cell.epoch,
            epochs_planned=cell.epochs_planned,
            **{f"val_{metric.removeprefix('val_')}": cell.val},
            test_top1=test.get("top1"),
            test_top5=test.get("top5"),
            test_mean_class_accuracy=test.get("mean_class_accuracy"),
            test_videos=test.get("num_videos"),
            split=cell.protocol.get("split"),
            num_clips=cell.protocol.get("num_clips"),
            num_crops=cell.protocol.get("num_crops"),
            gflops_per_view=cell.gflops_per_view,
            views=views,
            gflops_per_video=cell.gflops_per_view * views if cell.gflops_per_view is not None and views else None,
            mparams=cell.mparams,
            refit=cell.refit,
            refit_epochs=cell.refit_epochs,
            note=cell.note,
        )
        rows.append(row)
    return rows


def _label(cell: CellResult, keys: Sequence[str]) -> str:
    return " / ".join(cell.labels[k] for k in keys)


def _ordered(cells: Sequence[CellResult], keys: Sequence[str], space: SearchSpace) -> list[str]:
    """The labels of ``keys`` in the order the space lists the values (else as first seen)."""
    seen = list(dict.fromkeys(_label(c, keys) for c in cells))
    return value_order(space, keys[0], seen) if len(keys) == 1 else seen


def ordered_cells(cells: Sequence[CellResult], layout: StudyLayout, space: SearchSpace) -> list[CellResult]:
    """The cells row by row, column by column, as the grid shows them."""
    rows, columns = _ordered(cells, layout.rows, space), _ordered(cells, layout.columns, space) if layout.columns else []
    return sorted(cells, key=lambda c: (rows.index(_label(c, layout.rows)), columns.index(_label(c, layout.columns)) if columns else 0))


def _grid(cells: Sequence[CellResult], layout: StudyLayout, space: SearchSpace) -> list[str]:
    """The rows x columns table of test top-1 (%), in the order the space lists the values."""
    row_labels = _ordered(cells, layout.rows, space)
    column_labels = _ordered(cells, layout.columns, space) if layout.columns else ["test top-1 (%)"]
    by_position = {(_label(c, layout.rows), _label(c, layout.columns) if layout.columns else column_labels[0]): c for c in cells}
    corner = " \\ ".join(filter(None, [" / ".join(layout.rows), " / ".join(layout.columns)]))
    lines = [_row([corner, *column_labels]), "|" + "---|" + "---:|" * len(column_labels)]
    for row_label in row_labels:
        values = []
        for column_label in column_labels:
            cell = by_position.get((row_label, column_label))
            if cell is None:
                values.append("")
            else:
                values.append(_pct(cell.test.get("top1")) + (REFIT_MARK if cell.refit else ""))
        lines.append(_row([row_label, *values]))
    return lines


def _details(cells: Sequence[CellResult], layout: StudyLayout, metric: str) -> list[str]:
    header = [*layout.keys, "top-1 %", "top-5 %", "mean class acc. %", f"{metric} %", "GFLOPs/view x views",
              "params (M)", "epoch (of)", "trials", "epochs spent", "refit", "trial"]
    lines = [_row(header), "|" + "---|" * len(layout.keys) + "---:|" * (len(header) - len(layout.keys) - 2) + "---|---|"]
    for cell in cells:
        views = cell.views
        cost = f"{_num(cell.gflops_per_view, '.3g')} x {views}" if views else _num(cell.gflops_per_view, ".3g")
        epoch = f"{cell.epoch} ({cell.epochs_planned})" if cell.epoch is not None else "–"
        refit = f"yes, {_count(cell.refit_epochs or 0, 'epoch')}" if cell.refit else "no"
        lines.append(_row([
            *(cell.labels[k] for k in layout.keys),
            _pct(cell.test.get("top1")), _pct(cell.test.get("top5")), _pct(cell.test.get("mean_class_accuracy")),
            _pct(cell.val) if metric.endswith(("top1", "top5")) else _num(cell.val, ".4g"),
            cost, _num(cell.mparams, ".2f"), epoch, str(cell.trials), str(cell.epochs_spent), refit,
            cell.trial_id or cell.note,
        ]))
    return lines


def _protocol(cells: Sequence[CellResult]) -> str:
    protocols = {(c.protocol.get("split"), c.protocol.get("num_clips"), c.protocol.get("num_crops")) for c in cells if c.protocol}
    if len(protocols) == 1:
        split, clips, crops = next(iter(protocols))
        return f"the {split} split, {_count(int(clips or 0), 'clip')} x {_count(int(crops or 0), 'crop')} per video, softmax scores averaged over the views"
    return "each cell's own view protocol (see the columns num_clips and num_crops of table.csv), softmax scores averaged over the views"


def render_markdown(cells: Sequence[CellResult], layout: StudyLayout, cfg: HarpConfig, space: SearchSpace, *, evaluated: bool) -> str:
    """table.md: the grid, every cell, and the notes a reader needs to trust the numbers."""
    metric, mode = cfg.sweep.metric, cfg.sweep.mode
    title = f"## {cfg.sweep.name or space.name}: test top-1 (%) per cell"
    lines = [title, ""]
    if space.description:
        lines += [space.description, ""]
    lines += _grid(cells, layout, space)
    notes = [
        f"Test top-1 accuracy (%) on {_protocol(cells)}." if evaluated else "Not evaluated on the test split (export --no-eval): the grid is empty.",
        f"Cells: one per {' x '.join(layout.keys)}. In each cell its own best trial was chosen by {metric} ({mode}) on that cell's "
        "validation split, and its best checkpoint was tested once; validation scores of different cells are never compared.",
        "GFLOPs per view are measured with torch.utils.flop_counter (a multiply-add counts 2); a video costs GFLOPs/view x views.",
    ]
    if any(c.refit for c in cells):
        notes.append(f"{REFIT_MARK} refit: the chosen config was retrained on train + validation for its chosen number of epochs before the test.")
    missing = [c for c in cells if c.note]
    if missing:
        notes.append("No result: " + "; ".join(f"{c.name} ({c.note})" for c in missing) + ".")
    lines += ["", *notes, "", "### Every cell", "", *_details(cells, layout, metric), ""]
    return "\n".join(lines)


def write_table(cells: Sequence[CellResult], layout: StudyLayout, cfg: HarpConfig, space: SearchSpace, out: Path, *, evaluated: bool) -> tuple[Path, Path, str]:
    """Write ``table.csv`` and ``table.md`` into ``out`` (cells in table order); returns their
    paths and the Markdown."""
    cells = ordered_cells(cells, layout, space)
    records = csv_rows(cells, layout, cfg.sweep.metric)
    csv_path = out / TABLE_CSV
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]) if records else list(layout.keys))
        writer.writeheader()
        for record in records:
            writer.writerow({k: ("" if v is None else v) for k, v in record.items()})
    markdown = render_markdown(cells, layout, cfg, space, evaluated=evaluated)
    md_path = out / TABLE_MD
    md_path.write_text(markdown)
    return csv_path, md_path, markdown


__all__ = ["TABLE_CSV", "TABLE_MD", "csv_rows", "ordered_cells", "render_markdown", "write_table"]
