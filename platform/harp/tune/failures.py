"""Trial errors: a deterministic one ends the trial at once, a crash is retried; both in one line.

Tune's ``FailureConfig(max_failures)`` retries every trial error from the trial's checkpoint: a
trial that found too many undecodable videos or an unreadable pretrained file would fail the same
way ``max_failures`` more times. harp's schedulers (``FailFast`` mixed into FIFO, ASHA and the
median rule) end such a trial instead: an error whose cause is a ``HarpError`` that is not
retryable (``harp.errors.is_retryable``) is final, while a killed or crashed worker (Ray's
``RayActorError``), a ``RetryableError`` or any other exception is retried as before.

How (Ray 2.60, whose ``Trial.should_recover`` only counts failures): a trial Tune requeues for a
retry, or ``Tuner.restore`` resumes, goes through the scheduler's ``on_trial_add`` as PENDING with
its failures counted and its pickled error (``error.pkl``) on disk. For a final error the
scheduler tells the searcher the trial failed, stops it through ``stop_trial`` and marks it
ERROR with ``_set_trial_status`` (both in the API Tune grants schedulers), so Tune never starts it
again, and the experiment state, ``trials.parquet`` and Optuna all say it failed. A ``--resume``
does not rerun it either: the same inputs would fail the same way.
"""
from __future__ import annotations

import logging
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule

from harp.errors import is_retryable
from harp.tune.results import error_line, root_cause, trial_exception

log = logging.getLogger("harp.tune")


def is_final(trial: Trial) -> bool:
    """Whether the trial's latest error is one a retry cannot fix (a deterministic HarpError)."""
    exc = trial_exception(trial)
    return exc is not None and not is_retryable(root_cause(exc))


class FailFast:
    """Scheduler mixin: a trial whose error is final is not started again (see above)."""

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        super().on_trial_add(tune_controller, trial)  # type: ignore[misc]
        # A trial is added once when created and again each time it is requeued for a retry, or
        # resumed by Tuner.restore: only a PENDING trial that already failed is looked at.
        if trial.status != Trial.PENDING or not trial.num_failures or not is_final(trial):
            return
        log.warning("trial %s failed with an error a retry cannot fix; not retried: %s", trial.trial_id, error_line(trial_exception(trial)))
        tune_controller.search_alg.on_trial_complete(trial.trial_id, error=True)
        tune_controller.stop_trial(trial)
        tune_controller._set_trial_status(trial, Trial.ERROR)


class FifoFailFast(FailFast, FIFOScheduler):
    """FIFO (``sweep.scheduler=none``) with final errors not retried."""


class AshaFailFast(FailFast, ASHAScheduler):
    """ASHA with final errors not retried."""


class MedianFailFast(FailFast, MedianStoppingRule):
    """The median stopping rule with final errors not retried."""


__all__ = ["AshaFailFast", "FailFast", "FifoFailFast", "MedianFailFast", "is_final"]
