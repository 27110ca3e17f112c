"""Weights & Biases from the Tune level: one run per trial, grouped by sweep, plus a summary run.

Runs are opened by a Tune ``Callback`` in the driver, never inside Train workers (``setup_wandb``
inside Train V2 workers would open one run per rank). What a run holds, so that the W&B project
can be filtered, grouped and read without harp:

- id ``<sweep>-<trial id>`` (stable: a retried trial keeps its one open run, a resumed sweep
  resumes it with ``resume="allow"``), group = sweep name, name ``<n>-<family>-<trial id>``
  (n = the trial's order in the sweep);
- config: the trial's resolved config (``harp``: the sweep's base config with the trial's
  sampled values applied, ``harp.tune.trial.trial_config``) and the sampled ``params``;
- every per-epoch metric with ``epoch`` as the step metric (``define_metric``); the summary of
  the sweep metric and the other validation metrics is their best epoch (``max``/``min``), and
  ``best_epoch``/``best/<metric>`` are the metrics of the sweep metric's best epoch;
- at the end the truth about the trial: tag and ``summary.state`` COMPLETE, PRUNED (with
  ``pruned_at_epoch``) or FAIL (with its error line), as Optuna recorded it (the searcher tells
  Optuna before Tune tells callbacks), else as this callback saw it: a trial that ended before
  its planned epochs without an error was stopped by the scheduler;
- the trial's console (Tune's ``log_to_file`` copies of its stdout/stderr) as ``output.log``;
- the confusion matrix of its best checkpoint on the validation split.

The summary run (``log_summary``, written by export) is ``harp.tune.wandb_summary``; the mode,
the once-per-sweep connectivity check and W&B's folders are ``harp.tune.wandb_mode``.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from harp.numbers import better, is_finite
from harp.tune.failures import is_final
from harp.tune.results import Confusion
from harp.tune.wandb_mode import RunMode, has_api_key, resolve_mode, sweep_mode, sweep_wandb_dirs, sync_hint
from harp.tune.wandb_summary import log_summary

if TYPE_CHECKING:
    import optuna
    import wandb
    from ray.tune.experiment import Trial
    from ray.tune.stopper import Stopper

log = logging.getLogger("harp.tune")

# Keys of a Tune result that are bookkeeping, not metrics worth a chart.
_SKIP = {
    "config", "trial_id", "experiment_id", "date", "timestamp", "pid", "hostname", "node_ip", "done",
    "time_this_iter_s", "time_since_restore", "iterations_since_restore", "checkpoint_dir_name",
    "should_checkpoint", "checkpoint_path", "experiment_tag", "training_iteration", "time_total_s",
}
# Metrics whose summary is their best epoch, and which way is better.
_BEST_OF = {"val_top1": "max", "val_top5": "max", "val_loss": "min", "train_loss": "min"}
STATES = ("COMPLETE", "PRUNED", "FAIL", "INTERRUPTED")
CONSOLE_FILE = "output.log"  # the name W&B gives a run's console log


def _scalars(result: Mapping[str, Any]) -> dict[str, float]:
    """The chartable numbers of a Tune result (booleans as 0/1; NaN and bookkeeping left out)."""
    out = {}
    for key, value in result.items():
        if key in _SKIP or key.startswith("config/"):
            continue
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, (int, float)) and is_finite(value):
            out[key] = value
    return out


def trial_order(trial: Trial) -> int | None:
    """The trial's place in the sweep (1, 2, ...): Tune's experiment tag starts with it."""
    head = str(getattr(trial, "experiment_tag", "") or "").split("_", 1)[0]
    return int(head) if head.isdigit() else None


def run_name(order: int | None, family: str, trial_id: str) -> str:
    return f"{order if order is not None else '?'}-{family}-{trial_id}"


def console_log(trial: Trial) -> str | None:
    """The trial's stdout and stderr as Tune's ``log_to_file`` wrote them (in the trial's working
    directory on the node that ran it), or None when they are not on this machine."""
    storage = getattr(trial, "storage", None)
    try:
        folder = Path(storage.trial_working_directory) if storage is not None else None
    except Exception:  # a trial without its directory name yet
        folder = None
    if folder is None:
        return None
    parts = []
    for name in ("stdout", "stderr"):
        file = folder / name
        if file.is_file() and file.stat().st_size:
            parts.append(f"===== {name} =====\n{file.read_text(errors='replace').rstrip()}\n")
    return "\n".join(parts) if parts else None


def _sweep_metric(base_config: Mapping[str, Any]) -> tuple[str, str]:
    """(sweep.metric, its mode) of the sweep's base config."""
    sweep = base_config.get("sweep") or {}
    return str(sweep.get("metric") or "val_top1"), "min" if str(sweep.get("mode")) == "min" else "max"


class WandbCallback(Callback):
    """One W&B run per Tune trial (id = sweep + trial id, group = sweep name), from the driver."""

    def __init__(
        self,
        *,
        sweep_name: str,
        project: str,
        entity: str | None,
        mode: str,
        directory: str | Path,
        base_config: Mapping[str, Any],
        confusion: Callable[[Trial], Confusion | None] | None = None,
    ) -> None:
        self.sweep_name = sweep_name
        self.project = project
        self.entity = entity
        self.requested_mode = str(mode)
        self.mode: RunMode = resolve_mode(mode)  # no network here; ``setup`` checks once
        self.directory = Path(directory)
        self.base_config = dict(base_config)
        self.metric, self.metric_mode = _sweep_metric(self.base_config)
        self.confusion = confusion
        self._runs: dict[str, wandb.Run] = {}
        self._seen: dict[str, dict[str, Any]] = {}  # trial id -> last epoch, best epoch's metrics, retries
        self._dirs: contextlib.ExitStack | None = None
        self._study: optuna.Study | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment (tuner.pkl): open runs, the folder
        # context and the study stay in this process.
        state = self.__dict__.copy()
        state.update(_runs={}, _seen={}, _dirs=None, _study=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a callback pickled by an older harp (a sweep resumed after an upgrade) lacks the newer fields
        self.__dict__.update(state)
        metric, metric_mode = _sweep_metric(self.base_config)
        defaults: dict[str, Any] = {"requested_mode": str(self.mode), "metric": metric, "metric_mode": metric_mode, "_seen": {}, "_dirs": None, "_study": None}
        for name, value in defaults.items():
            self.__dict__.setdefault(name, value)

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled"

    # -- the sweep -------------------------------------------------------------------------
    def setup(self, stop: Stopper | None = None, num_samples: int | None = None, total_num_samples: int | None = None, **info: Any) -> None:
        """Once per ``Tuner.fit`` (fresh or restored): W&B's folders into the sweep directory, and
        the connectivity check that turns a sweep without a usable W&B offline."""
        self.mode = sweep_mode(self.requested_mode, self.directory)
        if not self.enabled:
            return
        if self._dirs is None:
            self._dirs = contextlib.ExitStack()
            self._dirs.enter_context(sweep_wandb_dirs(self.directory))

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        for trial_id in list(self._runs):  # trials still running: the sweep was interrupted
            run = self._runs.pop(trial_id)
            try:
                self._set_state(run, "INTERRUPTED", reason=f"interrupted at epoch {self._seen.get(trial_id, {}).get('epoch', 0)}")
                run.finish(exit_code=0)
            except Exception as exc:
                log.warning("W&B: closing the run of trial %s failed (%s)", trial_id, exc)
        if self._dirs is not None:
            self._dirs.close()
            self._dirs = None

    # -- one trial -------------------------------------------------------------------------
    def _resolved_config(self, params: Mapping[str, Any]) -> dict[str, Any]:
        from harp.config.load import to_dict
        from harp.tune.trial import trial_config

        try:
            return to_dict(trial_config(self.base_config, params))
        except Exception as exc:  # the trial itself will fail with this; its run still opens
            log.warning("W&B: trial config not resolvable (%s); logging the base config", exc)
            return dict(self.base_config)

    def _open(self, trial: Trial) -> wandb.Run:
        import wandb

        run = self._runs.get(trial.trial_id)
        if run is not None:  # a retried trial: its run stays open across the retry
            return run
        params = dict(trial.config)
        resolved = self._resolved_config(params)
        family = str((resolved.get("model") or {}).get("family") or "model")
        order = trial_order(trial)
        self.directory.mkdir(parents=True, exist_ok=True)
        run = wandb.init(
            project=self.project,
            entity=self.entity,
            group=self.sweep_name,
            id=f"{self.sweep_name}-{trial.trial_id}",
            name=run_name(order, family, trial.trial_id),
            job_type="trial",
            tags=[family],
            dir=str(self.directory),
            mode=self.mode,
            resume="allow",
            reinit="create_new",
            config={"harp": resolved, "params": params, "trial_id": trial.trial_id, "trial_order": order, "sweep": self.sweep_name},
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
        )
        run.define_metric("epoch")
        self._runs[trial.trial_id] = run
        self._seen.setdefault(trial.trial_id, {"epoch": 0, "best": None, "retries": 0, "defined": set()})
        return run

    def _define(self, run: wandb.Run, names: set[str], defined: set[str]) -> None:
        """``epoch`` is the step of every per-epoch metric (not of the tables logged at the end);
        the summary of the sweep metric and of the validation metrics is their best epoch."""
        best_of = {**_BEST_OF, self.metric: self.metric_mode}
        for name in sorted(names - defined - {"epoch"}):
            if name in best_of:
                run.define_metric(name, step_metric="epoch", summary=best_of[name])
            else:
                run.define_metric(name, step_metric="epoch")
            defined.add(name)

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if not self.enabled:
            return
        if trial.trial_id in self._runs:  # started again after a crash: the same run goes on
            self._seen[trial.trial_id]["retries"] += 1
            return
        try:
            self._open(trial)
        except Exception as exc:  # W&B must never stop a sweep
            log.warning("W&B: could not open a run for trial %s (%s)", trial.trial_id, exc)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any) -> None:
        if not self.enabled:
            return
        try:
            run = self._open(trial)
            metrics = _scalars(result)
            seen = self._seen[trial.trial_id]
            epoch = int(metrics.get("epoch", result.get("training_iteration", 0)))
            if epoch <= seen["epoch"]:
                return  # an epoch a retried trial reports again (it resumed from an older checkpoint)
            metrics["epoch"] = epoch
            seen["epoch"] = epoch
            self._define(run, set(metrics), seen["defined"])
            run.log(metrics)
            best = seen["best"] or {}
            if is_finite(metrics.get(self.metric)) and better(metrics[self.metric], best.get(self.metric), self.metric_mode):
                seen["best"] = metrics
        except Exception as exc:
            log.warning("W&B: logging trial %s failed (%s)", trial.trial_id, exc)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        # also where a trial with an error no retry can fix ends (harp.tune.failures stops it):
        # the verdict, not this hook, says FAIL
        if self.enabled:
            self._finish(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if self.enabled:
            self._finish(trial, failed=True)

    # -- the end of a trial ------------------------------------------------------------------
    def _optuna_verdict(self, trial_id: str) -> dict[str, Any] | None:
        """Optuna's state of the trial (``state``, ``stop_reason``, ``epochs_done``), or None."""
        try:
            if self._study is None:
                from harp.config.load import from_dict
                from harp.tune.results import load_study
                from harp.tune.sweep_dir import SweepPaths

                self._study = load_study(from_dict(self.base_config), SweepPaths(self.directory))
            if self._study is None:
                return None
            for t in self._study.get_trials(deepcopy=False):
                if t.user_attrs.get("tune_trial_id") == trial_id and t.state.is_finished():
                    return {"state": t.state.name, **t.user_attrs}
        except Exception as exc:
            log.debug("W&B: Optuna state of %s unreadable (%s)", trial_id, exc)
        return None

    def verdict(self, trial: Trial, *, failed: bool) -> tuple[str, str, int | None]:
        """(COMPLETE | PRUNED | FAIL, why, the epoch it stopped at)."""
        seen = self._seen.get(trial.trial_id, {})
        epoch = int(seen.get("epoch") or 0)
        planned = int(dict(trial.config).get("train.epochs", (self.base_config.get("train") or {}).get("epochs", 0)) or 0)
        optuna_says = self._optuna_verdict(trial.trial_id)
        if optuna_says is not None:
            state = {"COMPLETE": "COMPLETE", "PRUNED": "PRUNED", "FAIL": "FAIL"}.get(optuna_says["state"], "FAIL")
            epoch = int(optuna_says.get("epochs_done") or epoch)
            return state, str(optuna_says.get("stop_reason") or state.lower()), epoch
        if failed or (epoch < planned and is_final(trial)):  # an error no retry can fix ends a trial early too
            return "FAIL", "error", epoch
        if epoch < planned:
            return "PRUNED", f"stopped by the scheduler at epoch {epoch}/{planned}", epoch
        return "COMPLETE", "completed", epoch

    def _set_state(self, run: wandb.Run, state: str, *, reason: str, epoch: int | None = None) -> None:
        run.tags = tuple(t for t in (run.tags or ()) if t not in STATES) + (state,)
        run.summary["state"] = state
        run.summary["stop_reason"] = reason
        if state == "PRUNED" and epoch is not None:
            run.summary["pruned_at_epoch"] = epoch

    def _finish(self, trial: Trial, *, failed: bool) -> None:
        run = self._runs.pop(trial.trial_id, None)
        if run is None:
            return
        seen = self._seen.pop(trial.trial_id, {})
        state = "FAIL" if failed else "COMPLETE"
        try:
            state, reason, epoch = self.verdict(trial, failed=failed)
            self._set_state(run, state, reason=reason, epoch=epoch)
            run.summary["epochs_done"] = epoch
            run.summary["retries"] = int(seen.get("retries") or 0)
            best = seen.get("best")
            if best:
                run.summary["best_epoch"] = best["epoch"]
                for key, value in best.items():
                    run.summary[f"best/{key}"] = value
            if state == "FAIL":
                from harp.tune.results import trial_error

                run.summary["error"] = trial_error(trial) or "error"
            elif self.confusion is not None:
                self._log_confusion(run, trial)
            self._attach_console(run, trial)
        except Exception as exc:
            log.warning("W&B: the end of trial %s's run is incomplete (%s)", trial.trial_id, exc)
        finally:
            try:
                run.finish(exit_code=1 if state == "FAIL" else 0)
            except Exception as exc:
                log.warning("W&B: closing the run of trial %s failed (%s)", trial.trial_id, exc)

    def _log_confusion(self, run: wandb.Run, trial: Trial) -> None:
        import wandb

        assert self.confusion is not None
        found = self.confusion(trial)
        if found is None:
            return
        names, matrix = found
        rows: list[Iterable[Any]] = [[names[i], names[j], int(matrix[i][j])] for i in range(len(names)) for j in range(len(names))]
        run.log({"val_confusion": wandb.Table(columns=["actual", "predicted", "count"], data=rows)})
        run.summary["val_confusion_matrix"] = [[int(v) for v in row] for row in matrix]

    def _attach_console(self, run: wandb.Run, trial: Trial) -> None:
        text = console_log(trial)
        if text is None:
            run.summary["console"] = "not on this machine (the trial ran on another node)"
            return
        path = Path(run.dir) / CONSOLE_FILE
        path.write_text(text)
        run.save(str(path), base_path=run.dir, policy="end")


__all__ = ["STATES", "WandbCallback", "console_log", "has_api_key", "log_summary", "resolve_mode", "run_name", "sync_hint", "trial_order"]
