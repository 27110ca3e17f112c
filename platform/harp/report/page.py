"""``harp report``'s page: one self-contained HTML file (figures embedded as PNG data, no script,
no font or style from the network, so it opens offline and attaches to a ticket as it is) plus the
same figures as PNG files.

Every section is always there; one whose data does not exist yet (a running sweep, a failed one,
a sweep that was never exported) says what is missing and how to get it.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harp.config.load import to_yaml
from harp.numbers import is_finite
from harp.report import costs, figures
from harp.report.links import how_to_open
from harp.report.snapshot import SweepSnapshot, age, duration, read_snapshot
from harp.tune.results import param_importances

# section id -> title, in page order
SECTIONS = {
    "overview": "Overview",
    "history": "Optimisation history",
    "parallel": "Parallel coordinates",
    "importance": "Parameter importances",
    "curves": "Learning curves",
    "cost": "Accuracy vs GFLOPs",
    "confusion": "Best model: confusion matrix and per-class accuracy",
    "cells": "Per-cell table (study sweeps)",
    "best-config": "Best config",
    "trials": "Trials",
    "data-quality": "Data quality",
    "open": "Open it elsewhere",
}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#263238;color:#fff;padding:16px 28px} header h1{margin:0 0 4px;font-size:22px}
nav{padding:8px 28px;background:#eceff1;font-size:13px} nav a{margin-right:12px;color:#37474f}
main{padding:8px 28px 40px;max-width:1280px} section{background:#fff;border:1px solid #e0e0e0;border-radius:6px;margin:16px 0;padding:12px 18px}
h2{font-size:18px;margin:4px 0 10px} figure{margin:0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:13px;color:#555;margin-top:4px} .missing{color:#8d6e63;font-style:italic}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0} th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f5f5f5} td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f6f8fa;padding:8px;overflow-x:auto;font-size:12px;border-radius:4px}
.state-COMPLETE{color:#1565c0}.state-PRUNED{color:#e65100}.state-FAIL,.state-ERROR{color:#c62828;font-weight:600}.state-RUNNING{color:#2e7d32}
.kv td:first-child{font-weight:600;background:#fafafa}
"""


@dataclass
class Report:
    """What ``build_report`` wrote."""

    html: Path
    figures: dict[str, Path] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # figure name -> why it is not there
    seconds: float = 0.0


class _Html(str):
    """Markup built here (escaped already): a table cell shows it as it is."""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if is_finite(value) else "–"
    return "–" if value is None else str(value)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for value in row:
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            text = value if isinstance(value, _Html) else _e(_fmt(value))
            cells.append(f"<td class=\"num\">{text}</td>" if numeric else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class=\"{cls}\"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _state(state: str) -> _Html:
    return _Html(f"<span class=\"state-{_e(state)}\">{_e(state)}</span>")


class _Writer:
    """Saves each figure as a PNG file and returns its <figure> element (the same bytes inline)."""

    def __init__(self, folder: Path, report: Report) -> None:
        self.folder = folder
        self.report = report
        folder.mkdir(parents=True, exist_ok=True)

    def figure(self, name: str, drawn: figures.Drawn) -> str:
        if drawn.figure is None:
            self.report.missing[name] = drawn.caption
            return f"<p class=\"missing\" data-missing=\"{_e(name)}\">{_e(drawn.caption)}</p>"
        buffer = io.BytesIO()
        drawn.figure.savefig(buffer, format="png", dpi=100)
        figures._plt().close(drawn.figure)
        data = buffer.getvalue()
        path = self.folder / f"{name}.png"
        path.write_bytes(data)
        self.report.figures[name] = path
        encoded = base64.b64encode(data).decode()
        return (f"<figure data-figure=\"{_e(name)}\"><img alt=\"{_e(name)}\" src=\"data:image/png;base64,{encoded}\">"
                f"<figcaption>{_e(drawn.caption)}</figcaption></figure>")


def _overview(snap: SweepSnapshot) -> str:
    counts = snap.counts()
    spent, budget = snap.epochs()
    best = snap.best_row()
    eta = snap.eta_seconds() if snap.activity.running else None
    rows = [
        ["sweep", _e(snap.name)],
        ["what", _e(snap.space.description or snap.space.name)],
        ["state", _e(snap.activity.describe()) + f"; Tune state written {_e(age(snap.activity.last_update))}"],
        ["trials", ", ".join(f"{_state(k)} {v}" for k, v in counts.items()) + f" (of {snap.cfg.sweep.num_samples})"],
        ["search", _e(f"searcher={snap.cfg.sweep.searcher}, scheduler={snap.cfg.sweep.scheduler}, metric={snap.metric} ({snap.mode})"
                      + (f", objectives {', '.join(snap.cfg.sweep.objectives)}" if snap.cfg.sweep.objectives else ""))],
        ["epochs", _e(f"{spent} trained of a budget of {budget} ({spent / max(1, budget):.0%}; ASHA stops poor trials early)")],
        ["best so far", _e(f"{snap.metric}={best.best:.4g}: trial {best.number} ({best.trial_id}, {best.family}, {best.state})") if best else "none yet"],
    ]
    if eta is not None:
        rows.append(["ETA", _e(f"at most {duration(eta)} (every unfinished trial trained to its planned epochs)")])
    rows.append(["directory", _e(snap.paths.root)])
    table = "<table class=\"kv\"><tbody>" + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows) + "</tbody></table>"
    notes = "".join(f"<p class=\"missing\">{_e(n)}</p>" for n in snap.notes)
    return table + notes


def _cells(snap: SweepSnapshot) -> str:
    csv_path, md_path = snap.table_files()
    if csv_path is None:
        why = ("not a study sweep (no sweep.group_by): the best model is above" if not snap.cfg.sweep.group_by
               else f"not exported yet: `harp export {snap.paths.root}` writes best/table.csv and best/table.md")
        return f"<p class=\"missing\" data-missing=\"cells\">{_e(why)}</p>"
    with open(csv_path, newline="") as handle:
        rows = list(csv.reader(handle))
    out = f"<p>From {_e(csv_path)}: each cell's own best trial, tested once.</p>" + _table(rows[0], rows[1:]) if rows else ""
    if md_path is not None:
        out += (f"<details><summary>{_e(md_path.name)} (the table as the paper lays it out, with its notes)</summary>"
                f"<pre>{_e(md_path.read_text())}</pre></details>")
    return out


def _best_config(snap: SweepSnapshot) -> str:
    exported = snap.paths.best / "config.yaml"
    best = snap.best_row()
    if exported.is_file():
        head = f"<p>{_e(exported)} (exported; <code>harp train --config {_e(exported)}</code> retrains it).</p>"
        text = exported.read_text()
    elif best is not None:
        head = f"<p>Not exported yet: the resolved config of the best trial so far ({_e(best.trial_id)}).</p>"
        resolved = snap.trial_config(best.record)
        text = to_yaml(resolved) if resolved is not None else "(the trial's config does not resolve)"
    else:
        return "<p class=\"missing\" data-missing=\"best-config\">no trial has a score yet</p>"
    params = best.record.params if best is not None else {}
    sampled = _table(["sampled parameter", "value"], [[k, v] for k, v in params.items()]) if params else ""
    return head + sampled + f"<details><summary>full config</summary><pre>{_e(text)}</pre></details>"


def _trials(snap: SweepSnapshot) -> str:
    if not snap.rows:
        return "<p class=\"missing\" data-missing=\"trials\">no trials yet</p>"
    keys = snap.param_keys
    rows = [[r.number, r.trial_id, r.family, _state(r.state), _short(r.stop_reason, 90), f"{r.record.epochs_done}/{r.planned}", r.best,
             *(r.record.params.get(k) for k in keys)] for r in snap.rows]
    out = _table(["#", "trial", "family", "state", "why it ended", "epochs", f"best {snap.metric}", *keys], rows)
    failures = snap.failures()
    if failures:
        out += "<h3>Failures</h3>" + _table(["#", "trial", "error (first line)"], [[r.number, r.trial_id, r.record.error] for r in failures])
    return out


def _data_quality(snap: SweepSnapshot) -> str:
    bad = snap.unreadable_videos
    parts = []
    if bad is None:
        parts.append(f"<p class=\"missing\">{_e(snap.notes[-1] if snap.notes else 'no manifest')}</p>")
    elif len(bad):
        parts.append(f"<p>{len(bad)} video(s) could not be decoded when the data set was indexed; they are in no split "
                     "(the manifest's error column):</p>" + _table(["path", "label", "error"], bad.head(50).values.tolist()))
    else:
        parts.append("<p>Every indexed video decoded (the manifest's error column is empty).</p>")
    skipped = [(r.number, r.trial_id, sum(int(h.get("skipped_files") or 0) for h in r.record.history)) for r in snap.rows]
    hit = [s for s in skipped if s[2]]
    if hit:
        parts.append("<p>Trials that skipped videos while training (a clip that failed to decode is replaced; skipped_files per "
                     "epoch, summed):</p>" + _table(["#", "trial", "skipped files"], hit))
    elif skipped:
        parts.append("<p>No trial skipped a video while training (skipped_files is 0 in every epoch).</p>")
    return "".join(parts)


def _open(snap: SweepSnapshot) -> str:
    out = []
    for item in how_to_open(snap):
        link = f" <a href=\"{_e(item.url)}\">{_e(item.url)}</a>" if item.url else ""
        commands = f"<pre>{_e(chr(10).join(item.commands))}</pre>" if item.commands else ""
        out.append(f"<h3>{_e(item.title)}</h3><p>{_e(' '.join(item.lines))}{link}</p>{commands}")
    return "".join(out)


def build_report(sweep_dir: str | Path, output: str | Path | None = None) -> Report:
    """Write ``report.html`` and ``figures/*.png`` for a sweep (running, finished or failed) into
    ``output`` (default ``<sweep>/report``); returns what was written and what is missing."""
    started = time.perf_counter()
    snap = read_snapshot(sweep_dir)
    out = Path(output) if output else snap.paths.root / "report"
    report = Report(out / "report.html")
    writer = _Writer(out / "figures", report)
    body: dict[str, str] = {"overview": _overview(snap)}
    body["history"] = writer.figure("optimisation_history", figures.optimisation_history(snap))
    body["parallel"] = writer.figure("parallel_coordinates", figures.parallel_coordinates(snap))
    study = snap.study
    scores, how = param_importances(study) if study is not None else ({}, "the Optuna study is not readable yet")
    body["importance"] = writer.figure("param_importances", figures.importances(scores, how))
    body["curves"] = writer.figure("learning_curves", figures.learning_curves(snap))
    gflops, source = costs.trial_gflops(snap) if snap.rows else ({}, "")
    on_front, front_label = costs.front(snap, gflops) if gflops else (set(), "")
    drawn = figures.cost_vs_accuracy(snap, gflops, on_front, front_label)
    if not drawn.missing:
        drawn.caption += f" GFLOPs {source}."
    body["cost"] = writer.figure("accuracy_vs_gflops", drawn)
    confusions = snap.confusions()
    body["confusion"] = "".join(writer.figure(f"confusion_{i}", figures.confusion(*c)) for i, c in enumerate(confusions[:8])) or (
        "<p class=\"missing\" data-missing=\"confusion\">"
        + _e(f"no exported model yet: `harp export {snap.paths.root}` tests the best checkpoint and writes its confusion matrix")
        + "</p>")
    body["cells"] = _cells(snap)
    body["best-config"] = _best_config(snap)
    body["trials"] = _trials(snap)
    body["data-quality"] = _data_quality(snap)
    body["open"] = _open(snap)
    nav = "".join(f"<a href=\"#{key}\">{_e(title)}</a>" for key, title in SECTIONS.items())
    sections = "".join(f"<section id=\"{key}\"><h2>{_e(title)}</h2>{body[key]}</section>" for key, title in SECTIONS.items())
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">"
            f"<title>harp report: {_e(snap.name)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>harp sweep {_e(snap.name)}</h1><div>{_e(snap.activity.describe())}; report made {_e(stamp)}</div></header>"
            f"<nav>{nav}</nav><main>{sections}</main></body></html>")
    report.html.write_text(page)
    (out / "report.json").write_text(json.dumps({"figures": {k: str(v) for k, v in report.figures.items()}, "missing": report.missing}, indent=2) + "\n")
    report.seconds = time.perf_counter() - started
    return report


__all__ = ["Report", "SECTIONS", "build_report"]
