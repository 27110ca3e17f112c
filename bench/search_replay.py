"""Searches replayed against the tabular benchmark (``search_table``), with harp's own searcher
(``harp.tune.searcher.HarpOptunaSearch``) and trial scheduler (``harp.tune.tuner.build_trial_scheduler``).

A replayed trial does no training: it reports the recorded validation curve of the configuration
the searcher chose, one epoch per report, and stops where ASHA stops it. Compute is counted in
epochs reported (every epoch of every trial, stopped or not), the way a real sweep spends it.

Two engines drive the same searcher and scheduler objects:

- ``tune``: a real Ray Tune run per search (``Tuner.fit`` with a replay trainable, Tune's trial
  loop, concurrency limiter and stopper);
- ``direct``: the calls Tune's controller makes, in Tune's order (scheduler.on_trial_result, then
  searcher.on_trial_result unless the decision is STOP; on a stop or the last epoch,
  scheduler.on_trial_complete then searcher.on_trial_complete with the last result), with
  ``concurrency`` trials in flight that advance one epoch per time step. No actors, so a search
  takes well under a second and many seeds are cheap; ``--engine both`` shows the two agree.

Methods: harp's TPE + ASHA (truthful PRUNED), TPE alone, random, random + ASHA, grid (a shuffled
grid order per seed), Ray's stock ``OptunaSearch`` + ASHA (which tells Optuna COMPLETE with the
last value of a trial ASHA stopped), and Optuna's own loop with its successive-halving pruner
(the peer baseline: no Ray at all).
"""
from __future__ import annotations

import math
import random
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search_table import GRID, Table

METRIC = "val_top1"
# ASHA's (and the Optuna loop's SHA pruner's) first rung, in epochs: harp's default 1, or what
# search_efficiency.py --grace-period sets for the whole run (where the table's rankings settle)
SCHEDULE = {"grace_period": 1}
METHODS = ("tpe+asha", "tpe", "random", "random+asha", "grid", "stock-optuna+asha", "optuna-loop+sha")
LABELS = {
    "tpe+asha": "TPE + ASHA (harp, PRUNED)",
    "tpe": "TPE",
    "random": "random",
    "random+asha": "random + ASHA",
    "grid": "grid (shuffled order)",
    "stock-optuna+asha": "stock OptunaSearch + ASHA",
    "optuna-loop+sha": "Optuna loop + SHA pruner",
}


@dataclass
class Trace:
    """What one search spent and found: (epochs used so far, best value so far) after every report."""

    method: str
    seed: int
    engine: str
    used: list[int] = field(default_factory=list)
    best: list[float] = field(default_factory=list)
    trials: int = 0

    def add(self, value: float) -> None:
        previous = self.best[-1] if self.best else float("-inf")
        self.used.append(len(self.used) + 1)
        self.best.append(max(previous, value) if math.isfinite(value) else previous)

    def best_at(self, budget: int) -> float:
        """The best value found within ``budget`` epochs (-inf before the first report)."""
        best = float("-inf")
        for used, value in zip(self.used, self.best):
            if used > budget:
                break
            best = value
        return best

    def epochs_to(self, target: float) -> int | None:
        """Epochs spent when the best first reached ``target`` (None: never within the budget)."""
        return next((used for used, value in zip(self.used, self.best) if value >= target), None)


# -- the search space and the configs the table holds ------------------------------------------
def lr_bounds() -> tuple[float, float]:
    """A log-uniform range whose nearest grid LR is each grid LR with equal probability."""
    lrs = sorted(GRID["optim.lr"])
    ratio = math.sqrt(lrs[1] / lrs[0])
    return lrs[0] / ratio, lrs[-1] * ratio


def space_dict(method: str, seed: int) -> dict[str, Any]:
    """The params section of the replayed space: categorical knobs, a log-uniform LR; the grid as
    grid lists (in a per-seed shuffled order: Tune runs a grid in its enqueue order)."""
    if method == "grid":
        rng = random.Random(seed)
        return {k: {"type": "grid", "values": rng.sample(list(v), len(v))} for k, v in GRID.items()}
    low, high = lr_bounds()
    params: dict[str, Any] = {k: {"type": "categorical", "values": list(v)} for k, v in GRID.items() if k != "optim.lr"}
    params["optim.lr"] = {"type": "loguniform", "low": low, "high": high}
    return params


def snap(config: Mapping[str, Any]) -> tuple[Any, ...]:
    """The table's configuration for a sampled one: the LR snapped to the nearest grid LR (log scale)."""
    out = []
    for key, values in GRID.items():
        value = config[key]
        if key == "optim.lr":
            value = min(values, key=lambda v: abs(math.log(v) - math.log(float(config[key]))))
        out.append(value)
    return tuple(out)


def harp_config(method: str, seed: int, epochs: int, storage_dir: Path) -> tuple[Any, Any]:
    """(HarpConfig, SearchSpace) of a replayed sweep: harp's own config and space parsing."""
    from harp.tune.space import base_config, parse_space

    searcher = {"tpe+asha": "tpe", "tpe": "tpe", "random": "random", "random+asha": "random", "grid": "grid", "stock-optuna+asha": "tpe"}[method]
    scheduler = "asha" if "asha" in method else "none"
    space = parse_space(
        {
            "config": {"train.epochs": epochs, "wandb.mode": "disabled"},
            "sweep": {"name": f"replay-{method}-{seed}", "output_dir": str(storage_dir), "searcher": searcher, "scheduler": scheduler,
                      "num_samples": 48, "seed": seed, "metric": METRIC, "mode": "max", "grace_period": SCHEDULE["grace_period"]},
            "params": space_dict(method, seed),
        },
        name=f"replay-{method}-{seed}",
    )  # fmt: skip
    cfg = base_config(space)
    cfg.sweep.name = f"replay-{method}-{seed}"
    return cfg, space


def make_searcher(method: str, cfg: Any, space: Any, storage_dir: Path) -> Any:
    """harp's searcher (or, for the stock row, Ray's OptunaSearch with the same TPE sampler)."""
    from harp.tune.searcher import HarpOptunaSearch, Objective
    from harp.tune.study import make_sampler, make_storage

    url = f"sqlite:///{storage_dir / 'optuna.db'}"
    if method == "stock-optuna+asha":
        from ray.tune.search.optuna import OptunaSearch

        sampler = make_sampler("tpe", seed=cfg.sweep.seed, num_samples=cfg.sweep.num_samples, multi_objective=False)
        return OptunaSearch(space=space.sample, metric=METRIC, mode="max", sampler=sampler, study_name=str(cfg.sweep.name), storage=make_storage(url))
    return HarpOptunaSearch(
        space, objectives=[Objective(METRIC, "max")], storage_url=url, study_name=str(cfg.sweep.name), sampler=cfg.sweep.searcher,
        seed=cfg.sweep.seed, num_samples=cfg.sweep.num_samples, planned_epochs=cfg.train.epochs,
    )  # fmt: skip


def make_scheduler(cfg: Any, epochs: int) -> Any:
    from harp.tune.tuner import build_trial_scheduler

    return build_trial_scheduler(cfg, epochs)


def _scratch() -> str | None:
    """Memory-backed scratch space for the studies' SQLite files (no fsync per Optuna write)."""
    return "/dev/shm" if Path("/dev/shm").is_dir() else None


# -- the direct engine ---------------------------------------------------------------------------
class _Trial:
    """What harp's schedulers read of a Tune trial: its id and status."""

    RUNNING = "RUNNING"

    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id
        self.status = self.RUNNING
        self.num_failures = 0


def run_direct(method: str, seed: int, table: Table, budget: int, concurrency: int) -> Trace:
    """One search, Tune's calls in Tune's order, ``concurrency`` trials advancing one epoch a step."""
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import Searcher

    curves, failed = table.curves(), table.failed()
    trace = Trace(method, seed, "direct")
    with tempfile.TemporaryDirectory(prefix="harp-replay-", dir=_scratch()) as tmp:
        cfg, space = harp_config(method, seed, table.epochs, Path(tmp))
        searcher = make_searcher(method, cfg, space, Path(tmp))
        scheduler = make_scheduler(cfg, table.epochs)
        running: list[tuple[_Trial, tuple[Any, ...], int]] = []  # (trial, config, next epoch)
        exhausted = False
        while len(trace.used) < budget:
            while not exhausted and len(running) < concurrency:
                trial = _Trial(f"t{trace.trials:05d}")
                config = searcher.suggest(trial.trial_id)
                if config is None or config == Searcher.FINISHED:
                    exhausted = True
                    break
                trace.trials += 1
                scheduler.on_trial_add(None, trial)
                running.append((trial, snap(config), 1))
            if not running:
                break
            still = []
            for trial, key, epoch in running:
                if len(trace.used) >= budget:
                    break
                curve = curves[key]
                if epoch > len(curve):  # diverged before this epoch: the trial raised
                    scheduler.on_trial_error(None, trial)
                    searcher.on_trial_complete(trial.trial_id, error=True)
                    continue
                result = {"epoch": epoch, METRIC: curve[epoch - 1], "training_iteration": epoch, "trial_id": trial.trial_id}
                trace.add(curve[epoch - 1])
                decision = scheduler.on_trial_result(None, trial, result)
                last = epoch == len(curve) and key not in failed
                if decision != TrialScheduler.STOP and not last:
                    searcher.on_trial_result(trial.trial_id, result)
                    still.append((trial, key, epoch + 1))
                    continue
                scheduler.on_trial_complete(None, trial, result)
                searcher.on_trial_complete(trial.trial_id, result=result)
            running = still
    return trace


# -- the Ray Tune engine -------------------------------------------------------------------------
def replay_trial(config: dict[str, Any], *, curves: dict[tuple[Any, ...], list[float]], failed: set[tuple[Any, ...]]) -> None:
    """The replay trainable: the recorded curve of the sampled configuration, one report per epoch."""
    from ray import tune

    key = snap(config)
    for epoch, value in enumerate(curves[key], start=1):
        tune.report({"epoch": epoch, METRIC: value})
    if key in failed:
        raise RuntimeError(f"training diverged after epoch {len(curves[key])}")


def run_tune(method: str, seed: int, table: Table, budget: int, concurrency: int) -> Trace:
    """One search as a real Ray Tune run (Ray must be initialised)."""
    from ray import tune
    from ray.tune import Callback, CheckpointConfig, FailureConfig, RunConfig, Stopper, TuneConfig, Tuner

    trace = Trace(method, seed, "tune")

    class Count(Callback, Stopper):  # type: ignore[misc]
        """Counts each (trial, epoch) once as Tune's driver sees it; stops the run at the budget."""

        def __init__(self) -> None:
            self.seen: set[tuple[str, int]] = set()
            self.trials: set[str] = set()

        def on_trial_result(self, iteration: int, trials: Any, trial: Any, result: dict, **info: Any) -> None:
            key = (trial.trial_id, int(result.get("epoch", 0)))
            if key[1] and key not in self.seen and len(trace.used) < budget:
                self.seen.add(key)
                self.trials.add(trial.trial_id)
                trace.add(float(result[METRIC]))

        def __call__(self, trial_id: str, result: dict) -> bool:
            return False

        def stop_all(self) -> bool:
            return len(trace.used) >= budget

    with tempfile.TemporaryDirectory(prefix="harp-replay-", dir=_scratch()) as tmp:
        cfg, space = harp_config(method, seed, table.epochs, Path(tmp))
        searcher = make_searcher(method, cfg, space, Path(tmp))
        count = Count()
        tuner = Tuner(
            tune.with_parameters(replay_trial, curves=table.curves(), failed=table.failed()),
            tune_config=TuneConfig(search_alg=searcher, scheduler=make_scheduler(cfg, table.epochs),
                                   num_samples=-1 if method != "grid" else len(space.grid_points()),
                                   max_concurrent_trials=concurrency, reuse_actors=True),
            run_config=RunConfig(storage_path=tmp, name="tune", stop=count, callbacks=[count], verbose=0,
                                 checkpoint_config=CheckpointConfig(num_to_keep=1), failure_config=FailureConfig(max_failures=0)),
        )  # fmt: skip
        tuner.fit()
        trace.trials = len(count.trials)
    return trace


# -- Optuna's own loop (the peer baseline) -------------------------------------------------------
def run_optuna_loop(seed: int, table: Table, budget: int) -> Trace:
    """Optuna alone: the same TPE sampler and space, its successive-halving pruner with ASHA's
    rungs (min resource = grace period, the same reduction factor), one trial at a time."""
    import optuna

    from harp.tune.study import make_sampler

    curves, failed = table.curves(), table.failed()
    cfg, space = harp_config("tpe+asha", seed, table.epochs, Path(tempfile.gettempdir()))
    trace = Trace("optuna-loop+sha", seed, "optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=cfg.sweep.grace_period, reduction_factor=cfg.sweep.reduction_factor)
    sampler = make_sampler("tpe", seed=seed, num_samples=cfg.sweep.num_samples, multi_objective=False)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)

    def objective(trial: optuna.Trial) -> float:
        key = snap(space.sample(trial))
        trace.trials += 1
        best = float("-inf")
        for epoch, value in enumerate(curves[key], start=1):
            if len(trace.used) >= budget:
                study.stop()
                break
            trace.add(value)
            best = max(best, value)
            trial.report(value, step=epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        if key in failed:
            raise RuntimeError("diverged")
        return best

    while len(trace.used) < budget:
        study.optimize(objective, n_trials=1, catch=(RuntimeError,))
    return trace


def run_search(method: str, seed: int, table: Table, budget: int, concurrency: int, engine: str) -> Trace:
    if method == "optuna-loop+sha":
        return run_optuna_loop(seed, table, budget)
    runner: Callable[..., Trace] = run_tune if engine == "tune" else run_direct
    return runner(method, seed, table, budget, concurrency)


def grid_budget(table: Table) -> int:
    """Epochs the whole grid costs (a configuration that diverged costs the epochs it ran)."""
    return sum(len(curve) for curve in table.curves().values())


def grid_best(table: Table) -> float:
    return max(max(curve) for curve in table.curves().values() if curve)


def summarise(traces: Sequence[Trace], budget: int, target: float, fractions: Sequence[float]) -> dict[str, Any]:
    """Median and IQR of the best value at each budget fraction, and of the epochs to ``target``."""
    import numpy as np

    out: dict[str, Any] = {"seeds": len(traces), "trials": float(np.median([t.trials for t in traces]))}
    for frac in fractions:
        values = np.array([t.best_at(int(round(frac * budget))) for t in traces])
        q1, med, q3 = np.percentile(values, [25, 50, 75])
        out[f"best@{int(frac * 100)}%"] = (float(med), float(q1), float(q3))
    # a search that never reached the target counts as needing more than the whole budget
    never = 1e9
    to = np.array([never if t.epochs_to(target) is None else t.epochs_to(target) / budget for t in traces], dtype=float)
    q1, med, q3 = np.percentile(to, [25, 50, 75])
    out["to_target"] = tuple(float("inf") if v > 1.0 else float(v) for v in (med, q1, q3))
    out["reached"] = int((to <= 1.0).sum())
    return out
