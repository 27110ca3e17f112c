"""The sweep's progress for `harp sweep --quiet`: a Tune callback in the driver that prints one
line per finished trial, or keeps one line up to date when stdout is a terminal.

Tune's own output (``verbose=1``) is a status table and a result box per trial; ``--quiet`` turns
it off (``verbose=0``), and this is what is left: how many trials have ended and how, the best so
far, and each failure with its first error line (on a terminal too, where the updating line would
otherwise overwrite it).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from ray.tune import Callback

from harp.numbers import better, is_finite

if TYPE_CHECKING:
    from ray.tune.experiment import Trial


@dataclass
class _Seen:
    """What the callback has seen of one trial."""

    started: float = field(default_factory=time.monotonic)
    epoch: int = 0
    best: float | None = None


class SweepProgress(Callback):
    """One line per finished trial (``[2/8] trial 7823a1f2 COMPLETE val_top1=0.6200 ...``), or a
    single line rewritten in place when ``stream`` is a terminal."""

    def __init__(self, *, total: int, metric: str, mode: str, planned_epochs: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.metric = metric
        self.mode = mode
        self.planned_epochs = planned_epochs
        self.stream = stream if stream is not None else sys.stdout
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self._seen: dict[str, _Seen] = {}
        self._ended: dict[str, int] = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0}
        self._best: tuple[float, str] | None = None
        self._drawn = False

    # -- Tune's hooks -------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._seen.setdefault(trial.trial_id, _Seen())
        self._draw(trials)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any) -> None:
        seen = self._seen.setdefault(trial.trial_id, _Seen())
        seen.epoch = max(seen.epoch, int(result.get("epoch") or 0))
        value: Any = result.get(self.metric)
        if is_finite(value) and better(value, seen.best, self.mode):
            seen.best = float(value)
            if self._best is None or better(value, self._best[0], self.mode):
                self._best = (float(value), trial.trial_id)
        self._draw(trials)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if trial.status != "RUNNING" and trial.num_failures:  # a final error ended it (harp.tune.failures)
            self.on_trial_error(iteration, trials, trial)
            return
        seen = self._seen.get(trial.trial_id, _Seen())
        planned = int(trial.config.get("train.epochs", self.planned_epochs))
        state = "COMPLETE" if seen.epoch >= planned else "PRUNED"
        how = "" if state == "COMPLETE" else f" (stopped at epoch {seen.epoch}/{planned})"
        self._ended[state] += 1
        self._line(trial, f"{state}{how}", seen)
        self._draw(trials)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        from harp.tune.results import trial_error

        self._ended["FAIL"] += 1
        self._line(trial, f"FAIL: {trial_error(trial) or 'error'}", self._seen.get(trial.trial_id, _Seen()))
        self._draw(trials)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    # -- output -------------------------------------------------------------------------------
    @property
    def finished(self) -> int:
        return sum(self._ended.values())

    def _best_text(self) -> str:
        if self._best is None:
            return f"no {self.metric} yet"
        return f"best {self.metric}={self._best[0]:.4f} (trial {self._best[1]})"

    def _line(self, trial: Trial, outcome: str, seen: _Seen) -> None:
        """The permanent line of a trial that ended."""
        value = f" {self.metric}={seen.best:.4f}" if seen.best is not None else ""
        took = time.monotonic() - seen.started
        text = (f"[{self.finished}/{self.total}] trial {trial.trial_id} {outcome}{value}, "
                f"{seen.epoch} epochs, {took:.0f} s; {self._best_text()}")
        self._write(text, permanent=True)

    def _draw(self, trials: list[Trial]) -> None:
        """On a terminal: the one updating line (trials ended and running, the best so far)."""
        if not self.live:
            return
        running = sum(1 for t in trials if t.status == "RUNNING")
        ended = ", ".join(f"{n} {state.lower()}" for state, n in self._ended.items() if n)
        text = f"{self.finished}/{self.total} trials ended{' (' + ended + ')' if ended else ''}, {running} running; {self._best_text()}"
        self._write(text, permanent=False)

    def _write(self, text: str, *, permanent: bool) -> None:
        if self.live:
            self.stream.write("\r\033[K" + text + ("\n" if permanent else ""))
            self._drawn = not permanent
        elif permanent:
            self.stream.write(text + "\n")
        self.stream.flush()


__all__ = ["SweepProgress"]
