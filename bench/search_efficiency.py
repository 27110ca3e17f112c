"""Search efficiency: does harp's TPE + ASHA find the grid's best model for less compute than the grid?

    nice -n 15 .venv/bin/python bench/search_efficiency.py --build --jobs 2   # once: train the grid (~40 min)
    .venv/bin/python bench/search_efficiency.py                           # 20 seeds per method, direct engine
    .venv/bin/python bench/search_efficiency.py --engine tune --seeds 5   # the same searches as Ray Tune runs

``--build`` trains every configuration of ``search_table.GRID`` with harp's loop on a synthetic set
and records every epoch's validation metrics (``<cache>/search_table.parquet``, cache =
``$HARP_BENCH_CACHE`` or ``~/.cache/harp-bench``; resumable). The searches then replay that table
(``search_replay``): each method searches the same space with harp's real searcher and scheduler,
and its compute is counted in epochs. Per method the table gives the median [IQR] over seeds of the
best val top-1 after 10/25/50/100 % of the grid's epochs, and of the share of the grid's epochs
needed to come within ``--tolerance`` (1 point) of the grid's best. Each finished search is kept
under ``<cache>/traces/`` (a rerun only runs the missing ones; ``--fresh`` reruns all); the plot
(median and IQR band of the best-so-far against compute) goes to
``<cache>/search_efficiency_<engine>[_g<grace>].png``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import search_replay
import search_table
from search_replay import LABELS, METHODS, Trace

FRACTIONS = (0.10, 0.25, 0.50, 1.00)


def trace_path(cache: Path, table: Any, engine: str, method: str, seed: int, concurrency: int) -> Path:
    kind = "optuna" if method == "optuna-loop+sha" else engine
    grace = search_replay.SCHEDULE["grace_period"]
    folder = f"{kind}-c{concurrency}" + (f"-g{grace}" if grace != 1 else "")
    return cache / "traces" / table.fingerprint / folder / f"{method}-{seed:03d}.json"


def load_or_run(cache: Path, engine: str, method: str, seed: int, table: Any, budget: int, concurrency: int, fresh: bool) -> Trace:
    path = trace_path(cache, table, engine, method, seed, concurrency)
    if path.is_file() and not fresh:
        return Trace(**json.loads(path.read_text()))
    trace = search_replay.run_search(method, seed, table, budget, concurrency, engine)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(trace.__dict__))
    tmp.replace(path)
    return trace


def _cell(stats: tuple[float, float, float], percent: bool = False) -> str:
    med, q1, q3 = stats
    if percent:
        fmt = lambda v: ">100%" if v == float("inf") else f"{100 * v:.0f}%"  # noqa: E731
        return f"{fmt(med)} [{fmt(q1)}, {fmt(q3)}]"
    return f"{med:.3f} [{q1:.3f}, {q3:.3f}]"


def print_table(rows: dict[str, dict[str, Any]], engine: str, budget: int, target: float, best: float, tolerance: float) -> None:
    print(f"\nengine: {engine}; grid best val top-1 {best:.3f}; target {target:.3f} (within {100 * tolerance:.0f} point); "
          f"grid compute {budget} epochs; ASHA grace period {search_replay.SCHEDULE['grace_period']} epoch(s); median [IQR] over seeds\n")  # fmt: skip
    head = "| method | seeds | trials (median) | " + " | ".join(f"best @ {int(100 * f)}%" for f in FRACTIONS) + " | compute to target | reached |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for method, s in rows.items():
        cells = " | ".join(_cell(s[f"best@{int(100 * f)}%"]) for f in FRACTIONS)
        print(f"| {LABELS[method]} | {s['seeds']} | {s['trials']:.0f} | {cells} | {_cell(s['to_target'], True)} | {s['reached']}/{s['seeds']} |")


def plot(traces: dict[str, list[Trace]], budget: int, target: float, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    xs = np.arange(1, budget + 1)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for method, group in traces.items():
        curves = np.array([[t.best_at(int(x)) for x in xs] for t in group])
        curves[~np.isfinite(curves)] = np.nan
        q1, med, q3 = np.nanpercentile(curves, [25, 50, 75], axis=0)
        (line,) = ax.plot(100 * xs / budget, med, label=f"{LABELS[method]} ({len(group)} seeds)")
        ax.fill_between(100 * xs / budget, q1, q3, alpha=0.15, color=line.get_color())
    ax.axhline(target, color="k", linestyle=":", linewidth=1, label="grid best - 1 point")
    ax.set_xlabel("compute spent (% of the grid's epochs)")
    ax.set_ylabel("best val top-1 so far (median, IQR band)")
    ax.set_xscale("log")
    ax.set_xticks([1, 2, 5, 10, 25, 50, 100], labels=["1", "2", "5", "10", "25", "50", "100"])
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", action="store_true", help="train the grid (resumable) and write the Parquet table, then replay")
    parser.add_argument("--build-only", action="store_true", help="train the grid and stop")
    parser.add_argument("--jobs", type=int, default=1, help="configurations trained at once by --build (one core each)")
    parser.add_argument("--cache", default=str(search_table.CACHE), help="cache folder (table, traces, plot)")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--engine", choices=("direct", "tune", "both"), default="direct")
    parser.add_argument("--tune-seeds", type=int, default=None, help="seeds for the Ray Tune engine (default: --seeds)")
    parser.add_argument("--concurrency", type=int, default=4, help="trials in flight (max_concurrent_trials)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of: " + ", ".join(METHODS))
    parser.add_argument("--tolerance", type=float, default=0.01, help="'reached the grid's best' = within this much top-1")
    parser.add_argument("--fresh", action="store_true", help="rerun searches already kept under <cache>/traces")
    parser.add_argument("--json", default=None, help="also write the summary as JSON here")
    parser.add_argument("--grace-period", type=int, default=1, help="ASHA's first rung in epochs (sweep.grace_period; harp's default 1)")
    args = parser.parse_args(argv)
    search_replay.SCHEDULE["grace_period"] = args.grace_period
    cache = Path(args.cache)
    if args.build or args.build_only:
        search_table.build(cache, log=lambda line: print(line, flush=True), jobs=args.jobs)
        if args.build_only:
            return 0
    table = search_table.load_table(cache)
    budget, best = search_replay.grid_budget(table), search_replay.grid_best(table)
    target = best - args.tolerance
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    engines = ["direct", "tune"] if args.engine == "both" else [args.engine]
    summary: dict[str, Any] = {"grid_best": best, "target": target, "budget_epochs": budget, "engines": {}}
    for engine in engines:
        seeds = args.tune_seeds if (engine == "tune" and args.tune_seeds) else args.seeds
        traces: dict[str, list[Trace]] = {}
        start = time.perf_counter()
        context = _ray(engine)
        with context:
            for method in methods:
                t0 = time.perf_counter()
                traces[method] = [load_or_run(cache, engine, method, s, table, budget, args.concurrency, args.fresh) for s in range(seeds)]
                print(f"{engine:6s} {LABELS[method]:28s} {seeds} seeds in {time.perf_counter() - t0:6.1f} s", file=sys.stderr, flush=True)
        rows = {m: search_replay.summarise(traces[m], budget, target, FRACTIONS) for m in methods}
        print_table(rows, engine, budget, target, best, args.tolerance)
        grace = search_replay.SCHEDULE["grace_period"]
        out = cache / f"search_efficiency_{engine}{f'_g{grace}' if grace != 1 else ''}.png"
        plot(traces, budget, target, out, f"Replayed searches on the {len(table.curves())}-configuration synthetic grid ({engine} engine, "
             f"{args.concurrency} trials in flight)")  # fmt: skip
        print(f"\nplot: {out}   ({time.perf_counter() - start:.0f} s)")
        summary["engines"][engine] = rows
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


class _ray:
    """A shared local Ray instance for every Tune-engine search (nothing for the direct engine)."""

    def __init__(self, engine: str) -> None:
        self.engine = engine

    def __enter__(self) -> None:
        if self.engine == "tune":
            os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
            os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "3600")
            import ray

            ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False, configure_logging=False, _node_ip_address="127.0.0.1")

    def __exit__(self, *exc: Any) -> None:
        if self.engine == "tune":
            import ray

            ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
