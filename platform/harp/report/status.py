"""``harp status``'s view of a sweep in the terminal: whether it runs, its trials by state, the best
so far with its parameters, epochs spent against the budget, an ETA, and each failure's first
error line. Plain text (no colour, no cursor tricks besides ``--watch``'s screen clear), so it
pastes into a ticket and greps."""
from __future__ import annotations

from harp.report.snapshot import SweepSnapshot, age, duration


def render_status(snap: SweepSnapshot, *, max_trials: int = 40) -> str:
    cfg = snap.cfg
    lines = [
        f"sweep {snap.name}: {snap.space.description or snap.space.name}",
        f"  {snap.activity.describe()}; Tune state written {age(snap.activity.last_update)}",
        f"  {cfg.sweep.num_samples} trials, searcher={cfg.sweep.searcher}, scheduler={cfg.sweep.scheduler}, "
        f"metric={snap.metric} ({snap.mode}), {cfg.sweep.max_concurrent_trials} at a time",
    ]
    lines.append("trials: " + ", ".join(f"{count} {state}" for state, count in snap.counts().items()))
    spent, budget = snap.epochs()
    per_epoch = snap.seconds_per_epoch()
    epochs = f"epochs: {spent} of {budget} budgeted ({spent / max(1, budget):.0%})"
    if per_epoch is not None:
        epochs += f", {per_epoch:.1f} s per epoch (median)"
    lines.append(epochs)
    eta = snap.eta_seconds()
    if snap.activity.running and eta is not None:
        lines.append(f"ETA: at most {duration(eta)} (every unfinished trial to its planned epochs; ASHA usually stops some sooner)")
    best = snap.best_row()
    if best is None:
        lines.append(f"best so far: none (no trial has reported {snap.metric} yet)")
    else:
        epoch = best.record.best_epoch(snap.metric, snap.mode)
        lines.append(f"best so far: {snap.metric}={best.best:.4g} at epoch {epoch}, trial {best.number} ({best.trial_id}, {best.state})")
        lines += [f"  {key} = {value}" for key, value in best.record.params.items()]
    if snap.rows:
        lines.append("")
        lines.append(f"{'#':>3}  {'trial':<10} {'family':<16} {'state':<10} {'epochs':>7}  {'best ' + snap.metric:>14}  why it ended")
        for row in snap.rows[:max_trials]:
            score = f"{row.best:.4g}" if row.best is not None else "–"
            lines.append(f"{row.number if row.number is not None else '?':>3}  {row.trial_id:<10} {row.family[:16]:<16} {row.state:<10} "
                         f"{f'{row.record.epochs_done}/{row.planned}':>7}  {score:>14}  {row.stop_reason}")
        if len(snap.rows) > max_trials:
            lines.append(f"  ... and {len(snap.rows) - max_trials} more (harp report for all of them)")
    failures = snap.failures()
    if failures:
        lines.append("")
        lines.append(f"failures ({len(failures)}):")
        lines += [f"  trial {row.number} ({row.trial_id}): {row.record.error}" for row in failures]
    lines += [f"note: {note}" for note in snap.notes]
    return "\n".join(lines)


__all__ = ["render_status"]
