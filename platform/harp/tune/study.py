"""The two parts of a sweep's Optuna study that harp chooses: where it is stored and which
sampler proposes the next trial.

Kept apart from the searcher (which only decides what Optuna is told) so a sampler choice can be
checked, and a storage opened, without Ray.
"""
from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any

from harp.errors import ConfigError

if TYPE_CHECKING:
    import optuna

    from harp.tune.params import SearchSpace

# The samplers `sweep.searcher` may name. ``grid`` is a RandomSampler over a study into which the
# searcher enqueues every grid point (Optuna's GridSampler cannot follow conditional parameters).
OPTUNA_SAMPLERS = ("tpe", "random", "grid", "cmaes", "nsga2")


_CREATE_ATTEMPTS = 4


JOURNAL_SCHEME = "journal://"


def journal_file(url: str) -> str | None:
    """The file of a ``journal:///abs/path.log`` storage URL, or None for a database URL.

    Optuna's JournalStorage keeps a study as an append-only log of its operations in one file
    (file locks let several drivers share it, on NFS too) instead of rows behind SQL: each ask and
    tell is one appended line and an in-memory replay, not dozens of SQLAlchemy statements and
    commits. ``bench/driver_scale.py --storages sqlite,journal`` measures what that saves the
    sweep's driver per trial. optuna-dashboard opens the file directly."""
    if not url.startswith(JOURNAL_SCHEME):
        return None
    path = url[len(JOURNAL_SCHEME) :]
    if not path.startswith("/") or path.endswith("/"):
        raise ConfigError(f"sweep.optuna_storage={url}: a journal URL names one file by its absolute path, e.g. journal:///shared/studies/NAME.log")
    return path


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """The Optuna storage for ``url`` (Ray's OptunaSearch wants the storage object, not the URL):
    a ``JournalStorage`` for a ``journal:///`` file (``journal_file``), else an ``RDBStorage``.

    SQLite gets a 60 s lock timeout: trials of one sweep finish close together and would otherwise
    see "database is locked". Optuna creates its tables without a lock, so two sweeps opening a
    fresh database at the same moment race (one sees a duplicate-key error; optuna#1092): the loser
    retries, and then finds the tables the winner made."""
    import optuna
    import sqlalchemy.exc

    journal = journal_file(url)
    if journal is not None:
        from pathlib import Path

        from optuna.storages.journal import JournalFileBackend

        Path(journal).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(journal))
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError):
            if attempt + 1 == _CREATE_ATTEMPTS or url.startswith("sqlite"):
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def make_sampler(
    name: str, *, seed: int, num_samples: int, multi_objective: bool, space: SearchSpace | None = None
) -> optuna.samplers.BaseSampler:
    """The Optuna sampler for ``sweep.searcher``, sized to the sweep: TPE and CMA-ES start with
    about a third of the trials random (2..10), NSGA-II's population is about half of them (4..50).
    Given the ``space``, one whose keys have alternatives gets the sampler wrapped so each value
    lies inside the alternative that applies (``harp.tune.alternatives``)."""
    sampler = _base_sampler(name, seed=seed, num_samples=num_samples, multi_objective=multi_objective)
    if space is None or not any(space.has_alternatives(key) for key in space.keys):
        return sampler
    from harp.tune.alternatives import AlternativesSampler

    return AlternativesSampler(sampler, space)


def _base_sampler(name: str, *, seed: int, num_samples: int, multi_objective: bool) -> optuna.samplers.BaseSampler:
    import optuna

    if name not in OPTUNA_SAMPLERS:
        raise ConfigError(f"sweep.searcher={name!r} is not valid; choose one of: {', '.join(OPTUNA_SAMPLERS)}")
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
        from harp.tune.nsga2 import NSGAIISampler  # Optuna's, picklable

        population = max(4, min(50, num_samples // 2))
        return NSGAIISampler(seed=seed, population_size=population)


__all__ = ["JOURNAL_SCHEME", "OPTUNA_SAMPLERS", "journal_file", "make_sampler", "make_storage"]
