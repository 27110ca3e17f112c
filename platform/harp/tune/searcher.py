"""A Ray Tune ``Searcher`` on Optuna's ask/tell API that tells Optuna the truth.

Ray's ``OptunaSearch`` records a trial that ASHA stopped after one epoch as COMPLETE with that
one epoch's score, so TPE learns from truncated runs as if they were final. Here:

- every reported epoch becomes an Optuna intermediate value (``trial.report(value, step=epoch)``);
- a trial that ends before its planned epochs without an error (ASHA / median stopped it) is told
  ``PRUNED`` (Optuna keeps its last intermediate value and TPE treats it as pruned);
- a trial that ran all its epochs is told ``COMPLETE`` with its best value over epochs (the value
  of the checkpoint that is kept and exported);
- a trial that raised is told ``FAIL``.

Sampling is define-by-run (``SearchSpace.sample``), so conditional parameters are only asked for
when they apply. Samplers: ``tpe`` (default), ``random``, ``grid`` (every combination enqueued
once), ``cmaes`` and ``nsga2`` (multi-objective, e.g. val_top1 max vs gflops min; Tune's own
metric/mode must then stay unset, this searcher holds the lists). The study lives in an
``RDBStorage`` (SQLite in the sweep directory or any SQLAlchemy URL), one study per sweep; a
restored sweep reconnects to the same study and goes on.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ray.tune.search import Searcher

from harp.errors import ConfigError
from harp.tune.space import SearchSpace

log = logging.getLogger("harp.tune")

SAMPLERS = ("tpe", "random", "grid", "cmaes", "nsga2")


@dataclass(frozen=True)
class Objective:
    metric: str
    mode: str  # "max" | "min"

    @property
    def direction(self) -> str:
        return "maximize" if self.mode == "max" else "minimize"


def parse_objectives(metric: str, mode: str, extra: Sequence[str] = ()) -> list[Objective]:
    """The sweep metric first, then ``name:min|max`` entries (``sweep.objectives``)."""
    objectives = [Objective(metric, mode)]
    for item in extra:
        name, _, direction = str(item).partition(":")
        direction = direction or "min"
        if direction not in ("min", "max") or not name:
            raise ConfigError(f"sweep.objectives entry {item!r} must look like NAME:min or NAME:max (e.g. gflops:min)")
        objectives.append(Objective(name, direction))
    return objectives


def make_storage(url: str) -> Any:
    """An ``optuna.storages.RDBStorage`` (OptunaSearch-style APIs want the object, not the URL)."""
    import optuna

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    return optuna.storages.RDBStorage(url, **kwargs)


def make_sampler(name: str, *, seed: int, num_samples: int, multi_objective: bool) -> Any:
    import optuna

    if name not in SAMPLERS:
        raise ConfigError(f"sweep.searcher={name!r} is not valid; choose one of: {', '.join(SAMPLERS)}")
    if multi_objective and name == "cmaes":
        raise ConfigError("sweep.searcher=cmaes is single-objective; use nsga2 (or tpe) with sweep.objectives")
    if name == "nsga2" and not multi_objective:
        raise ConfigError("sweep.searcher=nsga2 is multi-objective: set sweep.objectives, e.g. sweep.objectives=[gflops:min]")
    startup = max(2, min(10, num_samples // 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            return optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=startup, multivariate=True, group=True, constant_liar=True
            )
        if name in ("random", "grid"):
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "cmaes":
            try:
                import cmaes  # noqa: F401
            except ImportError as exc:
                raise ConfigError("sweep.searcher=cmaes needs the 'cmaes' package: pip install cmaes") from exc
            return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup, warn_independent_sampling=False)
        population = max(4, min(50, num_samples // 2))
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


class HarpOptunaSearch(Searcher):
    """Ray Tune searcher: Optuna ask/tell, define-by-run, honest PRUNED/COMPLETE/FAIL states."""

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
        super().__init__(metric=None, mode=None)
        self.space = space
        self.objectives = list(objectives)
        self.storage_url = storage_url
        self.study_name = study_name
        self.sampler_name = sampler
        self.seed = seed
        self.num_samples = num_samples
        self.planned_epochs = planned_epochs
        self.epoch_attr = epoch_attr
        # tune trial id -> optuna storage trial id / number / params / progress
        self._live: dict[str, dict[str, Any]] = {}
        self._grid: list[dict[str, Any]] | None = space.grid_points() if sampler == "grid" else None
        self._study: Any = None
        self._trial_objs: dict[str, Any] = {}
        self.study  # create (or reconnect to) the study now so a bad storage fails before Ray starts

    # -- the study ---------------------------------------------------------------------------
    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def study(self) -> Any:
        if self._study is None:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            sampler = make_sampler(
                self.sampler_name, seed=self.seed, num_samples=self.num_samples, multi_objective=self.multi_objective
            )
            self._study = optuna.create_study(
                study_name=self.study_name,
                storage=make_storage(self.storage_url),
                sampler=sampler,
                directions=[o.direction for o in self.objectives],
                load_if_exists=True,
            )
            study = self._study
            if not study.user_attrs:
                study.set_user_attr("metrics", [o.metric for o in self.objectives])
                study.set_user_attr("modes", [o.mode for o in self.objectives])
                study.set_user_attr("sampler", self.sampler_name)
                study.set_user_attr("search_space", str(self.space.path or self.space.name))
            if self._grid is not None and not study.trials:
                for point in self._grid:
                    study.enqueue_trial(point, skip_if_exists=True)
        return self._study

    @property
    def metric(self) -> str:  # type: ignore[override]
        return self.objectives[0].metric

    @property
    def mode(self) -> str:  # type: ignore[override]
        return self.objectives[0].mode

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        # The objectives are set here, not by TuneConfig(metric, mode): a TuneConfig metric would
        # silently turn a multi-objective study into a single-objective one.
        if metric and metric != self.objectives[0].metric:
            log.warning("ignoring TuneConfig metric %r: this searcher optimises %s", metric, self.objectives)
        return True

    # -- ask ---------------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        import optuna

        study = self.study
        if self._grid is not None:
            waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
            if not waiting:
                return Searcher.FINISHED
        trial = study.ask()
        params = self.space.sample(trial)
        trial.set_user_attr("tune_trial_id", trial_id)
        self._trial_objs[trial_id] = trial
        self._live[trial_id] = {
            "optuna_id": trial._trial_id,
            "number": trial.number,
            "params": params,
            "planned": int(params.get("train.epochs", self.planned_epochs)),
            "epoch": 0,
            "best": None,
            "last": {},
        }
        return dict(params)

    # -- tell --------------------------------------------------------------------------------
    def _trial(self, trial_id: str) -> Any:
        if trial_id not in self._trial_objs:
            import optuna

            self._trial_objs[trial_id] = optuna.trial.Trial(self.study, self._live[trial_id]["optuna_id"])
        return self._trial_objs[trial_id]

    def _better(self, new: float, old: float | None) -> bool:
        if old is None:
            return True
        return new > old if self.objectives[0].mode == "max" else new < old

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        info = self._live.get(trial_id)
        if info is None:
            return
        epoch = result.get(self.epoch_attr)
        value = result.get(self.objectives[0].metric)
        if epoch is None or not _finite(value):
            return
        epoch = int(epoch)
        info["epoch"] = max(info["epoch"], epoch)
        info["last"] = {o.metric: result.get(o.metric) for o in self.objectives}
        if self._better(float(value), info["best"]):
            info["best"] = float(value)
            info["best_costs"] = [result.get(o.metric) for o in self.objectives[1:]]
        if not self.multi_objective:
            # Optuna keeps one value per step; a resumed trial re-reporting a step is ignored.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._trial(trial_id).report(float(value), step=epoch)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        import optuna

        info = self._live.get(trial_id)
        if info is None:
            return
        state = optuna.trial.TrialState
        trial = self._trial(trial_id)
        if result and not error:
            # Tune hands the last result (the one that finished the trial, or made ASHA stop it)
            # to on_trial_complete only: record it as an epoch like the others.
            self.on_trial_result(trial_id, result)
        try:
            if error:
                trial.set_user_attr("stop_reason", "error")
                self.study.tell(trial, state=state.FAIL)
            elif info["best"] is None:
                trial.set_user_attr("stop_reason", "no metric reported")
                self.study.tell(trial, state=state.FAIL)
            elif info["epoch"] < info["planned"]:
                trial.set_user_attr("stop_reason", f"pruned at epoch {info['epoch']}/{info['planned']}")
                trial.set_user_attr("epochs_done", info["epoch"])
                self.study.tell(trial, state=state.PRUNED)
            else:
                trial.set_user_attr("stop_reason", "completed")
                trial.set_user_attr("epochs_done", info["epoch"])
                values = [info["best"]]
                for cost, objective in zip(info.get("best_costs") or [], self.objectives[1:]):
                    if not _finite(cost):
                        raise ConfigError(
                            f"objective '{objective.metric}' was not reported by trial {trial_id}; "
                            "the trial must report every sweep.objectives metric"
                        )
                    values.append(float(cost))
                self.study.tell(trial, values if self.multi_objective else values[0])
        except ConfigError as exc:
            log.error("%s", exc)
            trial.set_user_attr("stop_reason", str(exc))
            self.study.tell(trial, state=state.FAIL)
        finally:
            self._live.pop(trial_id, None)
            self._trial_objs.pop(trial_id, None)

    # -- Tune experiment checkpoints (Tuner.restore) -----------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_study"] = None  # reconnect to the storage instead of pickling engines
        state["_trial_objs"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.__getstate__(), fh)

    def restore(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "rb") as fh:
            self.__setstate__(pickle.load(fh))

    def get_state(self) -> dict[str, Any]:
        return self.__getstate__()

    def set_state(self, state: dict[str, Any]) -> None:
        self.__setstate__(state)


__all__ = ["HarpOptunaSearch", "Objective", "SAMPLERS", "make_sampler", "make_storage", "parse_objectives"]
