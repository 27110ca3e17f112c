"""The report's figures, drawn with matplotlib (static PNGs: the page opens offline and the same
files are the figures a paper or a ticket gets).

Each function takes a ``SweepSnapshot`` and returns a ``Figure``, or None with the reason when the
sweep does not have what the figure needs yet (no finished trial, no export, one parameter ...).
Trials are coloured by their verdict everywhere: COMPLETE (ran all planned epochs), PRUNED
(stopped early by ASHA / the median rule), FAIL, RUNNING.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harp.confusion_figure import draw_confusion
from harp.numbers import is_finite, signed
from harp.report.snapshot import SweepSnapshot, TrialRow

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STATE_STYLE = {  # colour, marker
    "COMPLETE": ("#1f77b4", "o"),
    "PRUNED": ("#ff7f0e", "v"),
    "FAIL": ("#d62728", "X"),
    "RUNNING": ("#2ca02c", "^"),
}
OTHER_STYLE = ("#7f7f7f", "s")


@dataclass
class Drawn:
    """A figure, or why there is none."""

    figure: Figure | None
    caption: str

    @property
    def missing(self) -> bool:
        return self.figure is None


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _style(state: str) -> tuple[str, str]:
    return STATE_STYLE.get(state, OTHER_STYLE)


def _metric_label(snap: SweepSnapshot) -> str:
    return f"{snap.metric} ({'higher' if snap.mode == 'max' else 'lower'} is better)"


def _legend_by_state(ax: Any, rows: Sequence[TrialRow]) -> None:
    from matplotlib.lines import Line2D

    states = list(dict.fromkeys(row.state for row in rows))
    handles = [Line2D([], [], color=_style(s)[0], marker=_style(s)[1], linestyle="", label=s) for s in states]
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="best")


# ------------------------------------------------------------------------------------------
def optimisation_history(snap: SweepSnapshot) -> Drawn:
    """Each trial's best value in the order the sweep ran them, and the best so far."""
    rows = [r for r in snap.rows if r.number is not None]
    scored = [r for r in rows if r.best is not None]
    if not scored:
        return Drawn(None, f"no trial has reported {snap.metric} yet")
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 4.2))
    for row in scored:
        colour, marker = _style(row.state)
        ax.scatter(row.number, row.best, color=colour, marker=marker, s=46, zorder=3)
    best_x, best_y, best = [], [], None
    for row in sorted(scored, key=lambda r: r.number or 0):
        if best is None or signed(row.best, snap.mode) > signed(best, snap.mode):
            best = row.best
        best_x.append(row.number)
        best_y.append(best)
    ax.step(best_x, best_y, where="post", color="black", linewidth=1.2, label="best so far", zorder=2)
    failed = [r for r in rows if r.best is None and r.state == "FAIL"]
    if failed:
        low = ax.get_ylim()[0]
        ax.scatter([r.number for r in failed], [low] * len(failed), color=_style("FAIL")[0], marker="X", s=46, clip_on=False)
    ax.set_xlim(0.5, max(int(snap.cfg.sweep.num_samples), max(r.number or 0 for r in rows)) + 0.5)  # the whole sweep, to come too
    ax.set_xlabel("trial (order in the sweep)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(_metric_label(snap))
    ax.grid(alpha=0.3)
    _legend_by_state(ax, rows)
    fig.tight_layout()
    return Drawn(fig, f"Best {snap.metric} of each trial over its epochs (a pruned trial: its best before it was stopped; "
                      "failed trials on the axis), and the sweep's best so far.")


# ------------------------------------------------------------------------------------------
def _axis(snap: SweepSnapshot, key: str) -> tuple[str, list[Any], bool]:
    """('num' | 'cat', categories or (low, high), log scale) of one space key, over its alternatives."""
    params = [p for p in snap.space.params if p.key == key]
    if params and all(not p.is_choice for p in params):
        lows = [p.bounds[0] for p in params]
        highs = [p.bounds[1] for p in params]
        return "num", [min(lows), max(highs)], all(p.type == "loguniform" or p.log for p in params)
    seen = [row.record.params[key] for row in snap.rows if key in row.record.params]
    if not params and seen and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen):
        low, high = min(seen), max(seen)  # not in the space file: the range the trials sampled
        return "num", [low, high], low > 0 and high / low > 100
    values: list[Any] = []
    for p in params:
        values += [v for v in p.values if v not in values]
    for row in snap.rows:
        value = row.record.params.get(key)
        if key in row.record.params and value not in values:
            values.append(value)
    return "cat", values, False


def _position(kind: str, spec: list[Any], log: bool, value: Any) -> float | None:
    if kind == "cat":
        return spec.index(value) / max(1, len(spec) - 1) if value in spec else None
    if not is_finite(value):
        return None
    low, high = float(spec[0]), float(spec[1])
    if log and low > 0 and float(value) > 0:
        low, high, value = math.log10(low), math.log10(high), math.log10(float(value))
    return 0.5 if high == low else (float(value) - low) / (high - low)


def parallel_coordinates(snap: SweepSnapshot) -> Drawn:
    """Every trial as a line through its sampled values, coloured by its best value."""
    keys = snap.param_keys
    rows = [r for r in snap.rows if r.record.params]
    if len(keys) < 1 or not rows:
        return Drawn(None, "no sampled parameters yet")
    plt = _plt()
    from matplotlib import cm, colors

    axes = [(key, *_axis(snap, key)) for key in keys]
    scored = [r.best for r in rows if r.best is not None]
    norm = colors.Normalize(min(scored), max(scored)) if scored else colors.Normalize(0, 1)
    cmap = plt.get_cmap("viridis" if snap.mode == "max" else "viridis_r")
    fig, ax = plt.subplots(figsize=(max(6.5, 1.7 * (len(keys) + 1)), 4.6))
    n_axes = len(keys) + 1
    for row in rows:
        ys = [_position(kind, spec, log, row.record.params.get(key)) if key in row.record.params else None for key, kind, spec, log in axes]
        value = None if row.best is None else norm(row.best)
        ys.append(value)
        xs = list(range(n_axes))
        colour = cmap(value) if value is not None else _style("FAIL")[0]
        style = "--" if row.state == "PRUNED" else (":" if row.state == "FAIL" else "-")
        # a parameter a trial did not have (a condition did not hold) is drawn below the axis
        ax.plot(xs, [-0.08 if y is None else y for y in ys], style, color=colour, alpha=0.85, linewidth=1.4)
    for i, (_, kind, spec, log) in enumerate(axes):
        ax.axvline(i, color="black", linewidth=0.8)
        if kind == "cat":
            for j, v in enumerate(spec):
                label = str(v) if len(str(v)) <= 22 else "…" + str(v)[-21:]
                ax.text(i + 0.03, j / max(1, len(spec) - 1), label, fontsize=7, va="center")
        else:
            fmt = (lambda v: f"{v:.2g}") if log or abs(float(spec[1])) < 0.1 else (lambda v: f"{v:g}")
            ax.text(i + 0.03, 0, fmt(float(spec[0])), fontsize=7, va="bottom")
            ax.text(i + 0.03, 1, fmt(float(spec[1])) + (" (log)" if log else ""), fontsize=7, va="top")
    ax.axvline(n_axes - 1, color="black", linewidth=0.8)
    if scored:  # the metric's own axis: where its best and worst trials sit
        ax.text(n_axes - 1 + 0.03, 0, f"{norm.vmin:.4g}", fontsize=7, va="bottom")
        ax.text(n_axes - 1 + 0.03, 1, f"{norm.vmax:.4g}", fontsize=7, va="top")
    ax.set_xticks(range(n_axes), labels=[*keys, snap.metric], rotation=15, fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.14, 1.06)
    ax.set_xlim(-0.2, n_axes - 0.6)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=snap.metric, fraction=0.04, pad=0.02)
    fig.tight_layout()
    return Drawn(fig, "Each trial's sampled values (solid: COMPLETE, dashed: PRUNED, dotted: FAIL), coloured by its best "
                      f"{snap.metric}; a value below an axis means the parameter did not apply to that trial.")


# ------------------------------------------------------------------------------------------
def importances(scores: dict[str, float], how: str) -> Drawn:
    if not scores:
        return Drawn(None, f"parameter importances not computed: {how}")
    plt = _plt()
    names = list(scores)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.4))
    ax.barh(names, [scores[n] for n in names], color="#1f77b4")
    for i, name in enumerate(names):
        ax.text(scores[name], i, f" {scores[name]:.2f}", va="center", fontsize=8)
    ax.set_xlabel("importance (share of the total)")
    ax.set_xlim(0, max(1e-9, max(scores.values())) * 1.2)
    fig.tight_layout()
    return Drawn(fig, f"Parameter importance: {how}.")


# ------------------------------------------------------------------------------------------
def _rungs(snap: SweepSnapshot, max_epochs: int) -> list[int]:
    sweep = snap.cfg.sweep
    if sweep.scheduler != "asha":
        return []
    rungs, t = [], max(1, int(sweep.grace_period))
    while t < max_epochs:
        rungs.append(t)
        t *= max(2, int(sweep.reduction_factor))
    return rungs


def learning_curves(snap: SweepSnapshot) -> Drawn:
    """Every trial's validation curve; where ASHA stopped a trial, an X."""
    rows = [r for r in snap.rows if r.record.history]
    if not rows:
        return Drawn(None, "no trial has finished an epoch yet")
    second = "val_loss" if snap.metric != "val_loss" else "train_loss"
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    palette = plt.get_cmap("tab20")
    max_epoch = max(r.planned for r in rows)
    for i, row in enumerate(rows):
        colour = palette(i % 20)
        epochs = [int(h.get("epoch", 0)) for h in row.record.history]
        for ax, name in zip(axes, (snap.metric, second)):
            values = [h.get(name) for h in row.record.history]
            points = [(e, float(v)) for e, v in zip(epochs, values) if v is not None and is_finite(v)]
            if not points:
                continue
            ax.plot(*zip(*points), "-o", color=colour, markersize=3, linewidth=1.3, label=f"{row.number}: {row.family}" if ax is axes[0] else None)
            if row.state == "PRUNED":
                ax.scatter(*points[-1], marker="X", s=90, color="#d62728", zorder=4)
            elif row.state == "FAIL":
                ax.scatter(*points[-1], marker="*", s=90, color="#d62728", zorder=4)
    for ax, name in zip(axes, (snap.metric, second)):
        for rung in _rungs(snap, max_epoch):
            ax.axvline(rung, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2, loc="best", title="trial: family", title_fontsize=7)
    fig.tight_layout()
    rungs = _rungs(snap, max_epoch)
    where = f"; dotted lines: ASHA's rungs (epochs {', '.join(map(str, rungs))})" if rungs else ""
    return Drawn(fig, f"Learning curves of every trial. X: where the scheduler stopped a trial (PRUNED); *: where a trial failed{where}.")


# ------------------------------------------------------------------------------------------
def cost_vs_accuracy(snap: SweepSnapshot, gflops: dict[str, float], front: set[str], front_label: str) -> Drawn:
    """Best value against GFLOPs per clip; the Pareto front marked."""
    rows = [r for r in snap.rows if r.best is not None and r.trial_id in gflops]
    if not rows:
        return Drawn(None, "no trial with both a score and a GFLOPs count yet")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.4))
    families = list(dict.fromkeys(r.family for r in rows))
    palette = plt.get_cmap("tab10")
    for k, family in enumerate(families):
        mine = [r for r in rows if r.family == family]
        ax.scatter([gflops[r.trial_id] for r in mine], [r.best for r in mine], color=palette(k % 10), s=40, label=family, zorder=3)
    on_front = sorted((r for r in rows if r.trial_id in front), key=lambda r: gflops[r.trial_id])
    if on_front:
        ax.plot([gflops[r.trial_id] for r in on_front], [r.best for r in on_front], "-", color="black", linewidth=1.2, zorder=2, label=front_label)
        ax.scatter([gflops[r.trial_id] for r in on_front], [r.best for r in on_front], s=120, facecolors="none", edgecolors="black", zorder=4)
    values = [gflops[r.trial_id] for r in rows]
    if min(values) > 0 and max(values) / min(values) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("GFLOPs per clip (multiply-add = 2)")
    ax.set_ylabel(_metric_label(snap))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return Drawn(fig, f"Each trial's best {snap.metric} against its model's compute; circled: {front_label}.")


def pareto_set(points: dict[str, tuple[float, float]], mode: str) -> set[str]:
    """Trials no other trial beats on both the score (``mode``) and GFLOPs (lower)."""
    out = set()
    for tid, (score, cost) in points.items():
        dominated = any(
            signed(s, mode) >= signed(score, mode) and c <= cost and (signed(s, mode) > signed(score, mode) or c < cost)
            for other, (s, c) in points.items() if other != tid
        )
        if not dominated:
            out.add(tid)
    return out


# ------------------------------------------------------------------------------------------
def confusion(title: str, names: list[str], matrix: list[list[int]]) -> Drawn:
    """The confusion matrix (row-normalised colours, counts) and per-class accuracy beside it."""
    import numpy as np

    plt = _plt()
    cm = np.asarray(matrix, dtype=float)
    k = len(names)
    support = cm.sum(axis=1)
    accuracy = np.divide(np.diag(cm), np.maximum(support, 1))
    side = min(14.0, max(4.0, 0.35 * k + 2.5))
    fig, (left, right) = plt.subplots(1, 2, figsize=(side * 2, side), gridspec_kw={"width_ratios": [1.15, 1]})
    font = max(4, 9 - k // 12)
    draw_confusion(left, cm, names, font=font)
    order = list(range(k))[::-1]
    right.barh([names[i] for i in order], [accuracy[i] for i in order], color="#1f77b4")
    for y, i in enumerate(order):
        right.text(accuracy[i], y, f" {accuracy[i]:.0%} of {int(support[i])}", va="center", fontsize=7)
    right.set_xlim(0, 1.15)
    right.set_xlabel("per-class accuracy (recall)")
    right.tick_params(axis="y", labelsize=font)
    right.axvline(float(accuracy.mean()) if k else 0, color="black", linestyle=":", linewidth=1)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    total = int(cm.sum())
    return Drawn(fig, f"{title}: {total} videos, top-1 {np.trace(cm) / max(1, total):.1%}, mean class accuracy {accuracy.mean():.1%} (dotted line).")


__all__ = ["Drawn", "confusion", "cost_vs_accuracy", "importances", "learning_curves", "optimisation_history", "parallel_coordinates", "pareto_set"]
