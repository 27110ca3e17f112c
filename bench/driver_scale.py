"""Driver scale: what the sweep driver spends per trial as a sweep grows to 1,000 trials.

    nice -n 15 .venv/bin/python bench/driver_scale.py                        # 1,000 trials, SQLite and PostgreSQL
    .venv/bin/python bench/driver_scale.py --trials 100 --storages sqlite    # a quick look
    .venv/bin/python bench/driver_scale.py --sampler-knobs fast              # TPE's cheaper settings
    .venv/bin/python bench/driver_scale.py --storages sqlite,journal         # the storage layer's share

A Ray Tune sweep of a trivial trainable (one report of a number computed from its config, so no
training time hides the driver's) with harp's searcher (``build_searcher``: HarpOptunaSearch, TPE)
and scheduler (``build_trial_scheduler``: ASHA), on SQLite (the sweep directory's file) and on a real
PostgreSQL server this bench starts on 127.0.0.1 (``tests/cluster/servers.py``'s ``Postgres``) and
stops. Measured in the driver, per trial, in windows of the sweep (trials 1-10, 11-100, 101-1000):

- ask: ``searcher.suggest`` (TPE's proposal; includes its storage reads);
- tell: ``on_trial_result`` + ``on_trial_complete`` (intermediate values, the final state);
- storage: time inside the Optuna storage's methods (outermost calls only), part of ask + tell;
- driver CPU: this process's CPU time (all threads) per trial: Tune's controller, the searcher, the
  storage client; wall per trial for reference.

``--storages journal`` runs the same sweep with ``sweep.optuna_storage=journal:///<file>`` (Optuna's
JournalStorage: an append-only file, no SQL per call), to show what the RDB storage (SQLAlchemy
statements and commits) costs the driver.
``--sampler-knobs fast`` swaps in TPE with ``multivariate=False``, ``constant_liar=False`` and
``n_ei_candidates=8`` (the knobs that make a TPE ask cost less per past trial), to show what they buy.
Results are kept as JSON under ``<cache>/driver_scale/`` (a rerun skips finished runs; ``--fresh``).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("HARP_BENCH_CACHE", Path.home() / ".cache" / "harp-bench")) / "driver_scale"
TESTS_CLUSTER = Path(__file__).resolve().parent.parent / "tests" / "cluster"
WINDOWS = ((1, 10), (11, 100), (101, 1000), (1001, 10**9))


class Timers:
    """Per-trial seconds of ask / tell / storage, and process CPU at each completed trial."""

    def __init__(self) -> None:
        self.ask: list[float] = []
        self.tell: dict[str, float] = {}
        self.storage = 0.0
        self.storage_at_ask: list[float] = []  # storage seconds inside each ask
        self.storage_by_trial: dict[str, float] = {}
        self.cpu: list[float] = []  # process CPU time when the n-th trial completed
        self.wall: list[float] = []
        self._depth = 0

    def wrap_storage(self, storage: Any) -> None:
        """Time every public method of the storage object (outermost call only). The timed
        methods are instance attributes, which the searcher's pickled state (Tune's experiment
        checkpoint) must not carry: the storage's class leaves them out of its state."""
        timed = []
        for name in dir(storage):
            if name.startswith("_"):
                continue
            attr = getattr(storage, name)
            if callable(attr):
                setattr(storage, name, self._timed_storage(attr))
                timed.append(name)
        storage.__dict__["_bench_timed"] = tuple(timed)
        _untimed_state(type(storage))

    def _timed_storage(self, fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self._depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.storage += time.perf_counter() - t0

        return wrapper


def _untimed_state(cls: type) -> None:
    """Make ``cls``'s pickled state leave out the timed methods ``Timers.wrap_storage`` set."""
    if getattr(cls, "_bench_untimed", False):
        return
    original = cls.__getstate__

    def getstate(self: Any) -> Any:
        state = original(self)
        timed = self.__dict__.get("_bench_timed", ())
        if isinstance(state, dict) and timed:
            state = {k: v for k, v in state.items() if k not in timed and k != "_bench_timed"}
        return state

    cls.__getstate__ = getstate  # type: ignore[method-assign]
    cls._bench_untimed = True  # type: ignore[attr-defined]


def _instrument(searcher: Any, timers: Timers) -> None:
    timers.wrap_storage(searcher.storage)
    study = searcher.study
    if study._storage is not searcher.storage:  # Optuna wraps an RDBStorage in its cache layer
        timers.wrap_storage(study._storage)
    suggest, on_result, on_complete = searcher.suggest, searcher.on_trial_result, searcher.on_trial_complete

    def timed_suggest(trial_id: str) -> Any:
        s0, t0 = timers.storage, time.perf_counter()
        out = suggest(trial_id)
        timers.ask.append(time.perf_counter() - t0)
        timers.storage_at_ask.append(timers.storage - s0)
        return out

    def timed(fn: Any, trial_id: str, *args: Any, **kwargs: Any) -> Any:
        s0, t0 = timers.storage, time.perf_counter()
        try:
            return fn(trial_id, *args, **kwargs)
        finally:
            timers.tell[trial_id] = timers.tell.get(trial_id, 0.0) + time.perf_counter() - t0
            timers.storage_by_trial[trial_id] = timers.storage_by_trial.get(trial_id, 0.0) + timers.storage - s0

    searcher.suggest = timed_suggest
    searcher.on_trial_result = functools.partial(timed, on_result)
    searcher.on_trial_complete = functools.partial(timed, on_complete)
    searcher.__dict__["_bench_timed"] = ("suggest", "on_trial_result", "on_trial_complete")
    _untimed_state(type(searcher))  # Tune pickles the searcher at every experiment checkpoint


def trivial_trial(config: dict[str, Any]) -> None:
    """One report of a smooth function of the sampled config: TPE has something to model."""
    import math

    from ray import tune

    x = math.log10(float(config["optim.lr"]))
    score = 1.0 - (x + 2.5) ** 2 / 4 - 0.1 * (config["model.family"] != "tsm") + 0.05 * (config["train.batch_size"] == 16)
    tune.report({"epoch": 1, "val_top1": score})


def _fast_sampler(seed: int) -> Any:
    import optuna

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=10, multivariate=False, constant_liar=False, n_ei_candidates=8)


def run_one(storage: str, url: str | None, trials: int, concurrency: int, knobs: str, work: Path) -> dict[str, Any]:
    from ray.tune import Callback, RunConfig, TuneConfig, Tuner

    from harp.tune.space import base_config, parse_space
    from harp.tune.sweep_dir import SweepPaths
    from harp.tune.tuner import build_searcher, build_trial_scheduler

    name = f"scale-{storage}-{knobs}-{trials}"
    sweep = {"name": name, "output_dir": str(work), "searcher": "tpe", "scheduler": "asha", "num_samples": trials, "seed": 0,
             "max_concurrent_trials": concurrency}  # fmt: skip
    if url:
        sweep["optuna_storage"] = url
    space = parse_space(
        {
            "config": {"train.epochs": 1, "wandb.mode": "disabled"},
            "sweep": sweep,
            "params": {"optim.lr": {"type": "loguniform", "low": 1e-5, "high": 1e-1},
                       "model.family": {"type": "categorical", "values": ["tsm", "cnn3d_attention"]},
                       "train.batch_size": {"type": "categorical", "values": [8, 16]}},
        },
        name=name,
    )  # fmt: skip
    cfg = base_config(space)
    cfg.sweep.name = name
    paths = SweepPaths((work / name).resolve())
    paths.root.mkdir(parents=True, exist_ok=True)
    searcher = build_searcher(cfg, space, paths, check_fresh=bool(url))
    if knobs == "fast":
        searcher._ot_study.sampler = _fast_sampler(0)  # the study OptunaSearch made; only the sampler differs
    timers = Timers()
    _instrument(searcher, timers)

    class Clock(Callback):
        def on_trial_complete(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            timers.cpu.append(time.process_time())
            timers.wall.append(time.perf_counter())

    cpu0, wall0 = time.process_time(), time.perf_counter()
    Tuner(
        trivial_trial,
        tune_config=TuneConfig(search_alg=searcher, scheduler=build_trial_scheduler(cfg, 1), num_samples=trials,
                               max_concurrent_trials=concurrency, reuse_actors=True),
        run_config=RunConfig(storage_path=str(paths.root), name="tune", callbacks=[Clock()], verbose=0),
    ).fit()  # fmt: skip
    return {"storage": storage, "knobs": knobs, "trials": trials, "concurrency": concurrency, "cpu0": cpu0, "wall0": wall0,
            "ask": timers.ask, "storage_at_ask": timers.storage_at_ask, "tell": list(timers.tell.values()),
            "storage_tell": list(timers.storage_by_trial.values()), "cpu": timers.cpu, "wall": timers.wall}  # fmt: skip


def _window(values: list[float], lo: int, hi: int) -> list[float]:
    return values[lo - 1 : hi]


def _per_trial(marks: list[float], start: float, lo: int, hi: int) -> float | None:
    """(mark at trial hi - mark at trial lo-1) / trials in the window."""
    if len(marks) < lo:
        return None
    hi = min(hi, len(marks))
    before = marks[lo - 2] if lo >= 2 else start
    return (marks[hi - 1] - before) / (hi - lo + 1)


def summarise(run: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for lo, hi in WINDOWS:
        if len(run["ask"]) < lo:
            break
        hi = min(hi, len(run["ask"]))
        med = lambda xs: 1000 * statistics.median(xs) if xs else float("nan")  # noqa: E731
        storage = [a + b for a, b in zip(_window(run["storage_at_ask"], lo, hi), _window(run["storage_tell"], lo, hi))]
        cpu = _per_trial(run["cpu"], run["cpu0"], lo, hi)
        wall = _per_trial(run["wall"], run["wall0"], lo, hi)
        rows.append({"window": f"{lo}-{hi}", "ask_ms": med(_window(run["ask"], lo, hi)), "tell_ms": med(_window(run["tell"], lo, hi)),
                     "storage_ms": med(storage), "driver_cpu_ms": 1000 * cpu if cpu is not None else float("nan"),
                     "wall_ms": 1000 * wall if wall is not None else float("nan")})  # fmt: skip
    return rows


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    sys.path.insert(0, str(TESTS_CLUSTER))
    from servers import Postgres  # tests/cluster/servers.py: initdb + pg_ctl on 127.0.0.1, stopped on exit

    server = Postgres.start("harp_scale")
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8, help="max_concurrent_trials (logical CPUs are raised to fit)")
    parser.add_argument("--storages", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql, journal (Optuna's JournalStorage file)")
    parser.add_argument("--sampler-knobs", default="harp", choices=("harp", "fast", "both"))
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    import ray

    CACHE.mkdir(parents=True, exist_ok=True)
    knobs = ["harp", "fast"] if args.sampler_knobs == "both" else [args.sampler_knobs]
    results = []
    with tempfile.TemporaryDirectory(prefix="harp-bench-scale-") as tmp:
        ray.init(num_cpus=max(2, args.concurrency), include_dashboard=False, logging_level="WARNING", configure_logging=False, log_to_driver=False)
        try:
            for storage in [s.strip() for s in args.storages.split(",") if s.strip()]:
                for knob in knobs:
                    out = CACHE / f"{storage}-{knob}-{args.trials}-c{args.concurrency}.json"
                    if out.is_file() and not args.fresh:
                        results.append(json.loads(out.read_text()))
                        continue
                    with (postgres() if storage == "postgresql" else contextlib.nullcontext()) as server:
                        url = server.create_database(f"scale_{knob}_{int(time.time())}") if server is not None else None
                        if storage == "journal":  # harp's sweep.optuna_storage=journal:///... (Optuna's JournalStorage)
                            url = f"journal://{Path(tmp).resolve()}/scale-{knob}-{args.trials}.log"
                        run = run_one(storage, url, args.trials, args.concurrency, knob, Path(tmp))
                    out.write_text(json.dumps(run))
                    results.append(run)
                    print(f"{storage} ({knob} TPE): {len(run['ask'])} trials", file=sys.stderr, flush=True)
        finally:
            ray.shutdown()
    print(f"\nDriver cost per trial, trivial trainable, TPE + ASHA, {args.concurrency} trials in flight, W&B disabled; "
          f"median ms per trial in each window (driver CPU and wall: mean over the window); {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print("| storage | TPE settings | trials | ask (ms) | tell (ms) | storage (ms) | driver CPU (ms) | wall (ms) |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    summary = []
    for run in results:
        for row in summarise(run):
            summary.append({"storage": run["storage"], "knobs": run["knobs"], **row})
            print(f"| {run['storage']} | {run['knobs']} | {row['window']} | {row['ask_ms']:.1f} | {row['tell_ms']:.1f} | {row['storage_ms']:.1f} "
                  f"| {row['driver_cpu_ms']:.0f} | {row['wall_ms']:.0f} |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
