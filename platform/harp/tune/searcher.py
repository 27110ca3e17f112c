"""The sweep's Ray Tune searcher: Ray's ``OptunaSearch``, telling Optuna the truth about each trial.

Ray's ``OptunaSearch`` already does the study: it creates or reconnects to it in the storage
(``load_if_exists``), asks it for a trial through a define-by-run space function
(``SearchSpace.sample``, so a conditional parameter is only asked for when it applies), and holds
the objectives as metric/mode lists (NSGA-II: e.g. val_top1 max and gflops min). What it gets wrong
for a sweep under ASHA is the end of a trial: it reports ``training_iteration`` (which restarts at
1 after ``Tuner.restore``) and records a trial ASHA stopped after one epoch as COMPLETE with that
epoch's score, so TPE learns from truncated runs as if they were final. This subclass overrides
only that, plus grid enqueueing and pickling:

- every reported epoch becomes an Optuna intermediate value at ``step=epoch`` (harp's own counter);
- a trial that ends before its planned epochs without an error (ASHA / median stopped it) is told
  ``PRUNED`` (Optuna keeps its last intermediate value and TPE treats it as pruned);
- a trial that ran all its epochs is told ``COMPLETE`` with its best value over epochs (the value
  of the checkpoint that is kept and exported);
- a trial that raised is told ``FAIL``;
- ``grid`` enqueues every combination once into a fresh study and ends the sweep when none waits;
- a pickled searcher (Tune's experiment state, ``Tuner.restore``) carries no study: it reconnects
  to the storage on first use, so a resumed sweep reads the database as it is now, not a cache.

What a reader of the study sees (optuna-dashboard, ``study.best_params``): the objectives by
name (``study.set_metric_names``: ``val_top1``, ``gflops``), and each config key once, under its
own name, so ``best_params`` are overrides for ``harp config`` / ``harp train`` as they are. A key
of several alternatives is held with their union (``harp.tune.params``); the study's user attr
``alternatives`` lists them, and each trial's ``ranges`` says which one it sampled in.
"""
from __future__ import annotations

import logging
import pickle
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from harp.errors import ConfigError
from harp.numbers import Mode, better, is_finite
from harp.tune.params import Param, SearchSpace
from harp.tune.study import make_sampler, make_storage

log = logging.getLogger("harp.tune")


@dataclass(frozen=True)
class Objective:
    metric: str
    mode: Mode

    @property
    def direction(self) -> str:
        return "maximize" if self.mode == "max" else "minimize"


def parse_objectives(metric: str, mode: str, extra: Sequence[str] = ()) -> list[Objective]:
    """The sweep metric first, then ``name:min|max`` entries (``sweep.objectives``)."""
    objectives = [Objective(metric, "max" if str(mode) == "max" else "min")]
    for item in extra:
        name, _, direction = str(item).partition(":")
        direction = direction or "min"
        if direction not in ("min", "max") or not name:
            raise ConfigError(f"sweep.objectives entry {item!r} must look like NAME:min or NAME:max (e.g. gflops:min)")
        objectives.append(Objective(name, "max" if direction == "max" else "min"))
    return objectives


@dataclass
class _Progress:
    """What the searcher has seen of one running trial."""

    number: int  # the Optuna trial number (public and stable; the storage id is looked up from it)
    planned: int  # epochs the trial was configured for
    epoch: int = 0  # last epoch reported
    best: float | None = None  # best value of the first objective so far
    best_costs: list[Any] = field(default_factory=list)  # the other objectives at that epoch


class HarpOptunaSearch(OptunaSearch):
    """``OptunaSearch`` with honest PRUNED / COMPLETE / FAIL states and one study per sweep.

    Inherited state it uses (OptunaSearch has no public accessor for either): ``_ot_study``, the
    study it created, and ``_ot_trials``, Tune trial id -> the Optuna trial its ``suggest`` asked
    for. ``_setup_study`` (OptunaSearch's own study creation) reconnects after unpickling.

    With several objectives Tune sees the metric/mode lists, so it checks that every result
    carries every objective (the trainable adds the measured costs to each report).
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        objectives: Sequence[Objective],
        storage_url: str,
        study_name: str,
        sampler: str = "tpe",
        seed: int = 0,
        num_samples: int = 8,
        planned_epochs: int = 1,
        epoch_attr: str = "epoch",
    ) -> None:
        if not objectives:
            raise ConfigError("a sweep needs at least one objective (sweep.metric)")
        self.space = space
        self.objectives = list(objectives)
        self.sampler_name = sampler
        self.planned_epochs = planned_epochs
        self.epoch_attr = epoch_attr
        self.storage = make_storage(storage_url)
        self._progress: dict[str, _Progress] = {}
        multi = len(self.objectives) > 1
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no INFO line per study and trial
        # Creates (or reconnects to) the study now, so a bad storage fails before Ray starts trials.
        super().__init__(
            space=space.sample,
            metric=[o.metric for o in self.objectives] if multi else self.objectives[0].metric,
            mode=[o.mode for o in self.objectives] if multi else self.objectives[0].mode,
            sampler=make_sampler(sampler, seed=seed, num_samples=num_samples, multi_objective=multi, space=space),
            study_name=study_name,
            storage=self.storage,
        )
        study = self.study
        if not study.user_attrs:
            study.set_user_attr("metrics", [o.metric for o in self.objectives])
            study.set_user_attr("modes", [o.mode for o in self.objectives])
            study.set_user_attr("sampler", sampler)
            study.set_user_attr("search_space", str(space.path or space.name))
            alternatives = describe_alternatives(space)
            if alternatives:
                study.set_user_attr("alternatives", alternatives)
        if study.metric_names is None:  # optuna-dashboard names the objectives (not "Objective 0")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([o.metric for o in self.objectives])
        if sampler == "grid" and not study.trials:
            # Not OptunaSearch's points_to_evaluate: those are enqueued again on every reconnect.
            for point in space.grid_points():
                study.enqueue_trial(point, skip_if_exists=True)

    # -- the study ---------------------------------------------------------------------------
    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def study(self) -> optuna.Study:
        """The sweep's study, reconnected to its storage on first use after unpickling."""
        if self._ot_study is None:
            optuna.logging.set_verbosity(optuna.logging.WARNING)  # e.g. in a restored driver
            self._setup_study(self.mode)
        return cast(optuna.Study, self._ot_study)  # OptunaSearch declares it None until set up

    @property
    def _study(self) -> optuna.Study | None:
        """The study when connected; None in a freshly unpickled searcher (no engines travel)."""
        return self._ot_study

    def _optuna_trial(self, trial_id: str) -> optuna.trial.Trial:
        """The Optuna trial of a Tune trial; after a restore, rebuilt from its number."""
        trial = self._ot_trials.get(trial_id)
        if trial is None:
            study = self.study
            study_id = self.storage.get_study_id_from_name(study.study_name)
            storage_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, self._progress[trial_id].number)
            trial = self._ot_trials[trial_id] = optuna.trial.Trial(study, storage_id)
        return trial

    # -- ask ---------------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        study = self.study  # (re)connected here: OptunaSearch.suggest reads _ot_study directly
        if self.sampler_name == "grid" and not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
            return Searcher.FINISHED  # type: ignore[return-value]  # Ray's signature omits its own sentinel
        if super().suggest(trial_id) is None:
            return None
        trial = self._ot_trials[trial_id]
        trial.set_user_attr("tune_trial_id", trial_id)
        # OptunaSearch's answer holds the values as Optuna stores them (list choices as JSON
        # strings): replaying the trial's choices through the space decodes them, in sampling order.
        params = self.space.sample(optuna.trial.FixedTrial(trial.params))
        chosen = self.space.decoded(trial.params)
        alternatives = [self.space.alternative_for(key, chosen) for key in chosen if self.space.has_alternatives(key)]
        ranges = {param.key: _alternative_text(param) for param in alternatives if param is not None}
        if ranges:  # which of a key's alternatives this trial sampled in (the study holds their union)
            trial.set_user_attr("ranges", ranges)
        self._progress[trial_id] = _Progress(trial.number, int(params.get("train.epochs", self.planned_epochs)))
        return params

    # -- tell --------------------------------------------------------------------------------
    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        progress = self._progress.get(trial_id)
        if progress is None:
            return
        epoch = result.get(self.epoch_attr)
        first = self.objectives[0]
        value: Any = result.get(first.metric)
        if epoch is None or not is_finite(value):
            return
        epoch = int(epoch)
        progress.epoch = max(progress.epoch, epoch)
        if better(value, progress.best, first.mode):
            progress.best = float(value)
            progress.best_costs = [result.get(o.metric) for o in self.objectives[1:]]
        if not self.multi_objective:  # Optuna has intermediate values for one objective only
            # one value per step: a resumed trial re-reporting a step is ignored (and warned about)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._optuna_trial(trial_id).report(float(value), step=epoch)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        progress = self._progress.get(trial_id)
        if progress is None:
            return
        state = optuna.trial.TrialState
        trial = self._optuna_trial(trial_id)
        if result and not error:
            # Tune hands the last result (the one that finished the trial, or made ASHA stop it)
            # to on_trial_complete only: record it as an epoch like the others.
            self.on_trial_result(trial_id, result)
        try:
            if error:
                trial.set_user_attr("stop_reason", "error")
                self.study.tell(trial, state=state.FAIL)
            elif progress.best is None:
                trial.set_user_attr("stop_reason", "no metric reported")
                self.study.tell(trial, state=state.FAIL)
            elif progress.epoch < progress.planned:
                trial.set_user_attr("stop_reason", f"pruned at epoch {progress.epoch}/{progress.planned}")
                trial.set_user_attr("epochs_done", progress.epoch)
                self.study.tell(trial, state=state.PRUNED)
            else:
                trial.set_user_attr("stop_reason", "completed")
                trial.set_user_attr("epochs_done", progress.epoch)
                values = [progress.best, *self._costs(trial_id, progress)]
                self.study.tell(trial, values if self.multi_objective else values[0])
        except ConfigError as exc:
            log.error("%s", exc)
            trial.set_user_attr("stop_reason", str(exc))
            self.study.tell(trial, state=state.FAIL)
        finally:
            self._progress.pop(trial_id, None)
            self._ot_trials.pop(trial_id, None)

    def _costs(self, trial_id: str, progress: _Progress) -> list[float]:
        """The other objectives at the trial's best epoch; each must be a finite number."""
        costs = []
        for cost, objective in zip(progress.best_costs, self.objectives[1:]):
            if not is_finite(cost):
                raise ConfigError(
                    f"objective '{objective.metric}' was not reported by trial {trial_id}; "
                    "the trial must report every sweep.objectives metric"
                )
            costs.append(float(cost))
        return costs

    # -- pickling (Tune's experiment state, Tuner.restore) -------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_ot_study"] = None  # reconnect instead of pickling the study and its storage cache
        state["_ot_trials"] = {}  # Optuna trials hold the study; rebuilt from _progress numbers
        return state

    def save(self, checkpoint_path: str) -> None:
        # OptunaSearch.save pickles __dict__ with the study in it; OptunaSearch.restore takes this too.
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.__getstate__(), fh)

    def restore(self, checkpoint_path: str) -> None:
        """Tuner.restore: this searcher as Tune last saved it, and the truth about the trials the
        dead driver asked Optuna for after that save (Tune saves its state every few seconds, so a
        killed driver can leave a trial RUNNING in the study that no restored Tune trial will ever
        finish): those are told FAIL, so the study never shows a trial running forever."""
        super().restore(checkpoint_path)
        self.fail_orphans()

    def fail_orphans(self) -> list[int]:
        """Tell FAIL every RUNNING trial of the study that no Tune trial of this searcher owns;
        returns their numbers."""
        known = {progress.number for progress in self._progress.values()}
        study = self.study
        study_id = self.storage.get_study_id_from_name(study.study_name)
        orphans = []
        for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if frozen.number in known:
                continue
            trial = optuna.trial.Trial(study, self.storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number))
            trial.set_user_attr("stop_reason", "the sweep driver died while it ran; the resumed sweep asked for a new trial")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            orphans.append(frozen.number)
        if orphans:
            log.warning("Optuna trials %s were left RUNNING by a driver that died: told FAIL", orphans)
        return orphans


def _alternative_text(param: Param) -> str:
    return f"{param.describe()} when {param.describe_when()}"


def describe_alternatives(space: SearchSpace) -> dict[str, list[str]]:
    """Each key of several alternatives -> its alternatives as text (``loguniform [0.01, 0.1] when
    optim.name=sgd``): the study holds the key once, with their union, and says so in a user attr."""
    return {key: [_alternative_text(p) for p in space.alternatives(key)] for key in space.keys if space.has_alternatives(key)}


__all__ = ["HarpOptunaSearch", "Objective", "describe_alternatives", "parse_objectives"]
