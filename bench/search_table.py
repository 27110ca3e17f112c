"""The tabular benchmark behind ``bench/search_efficiency.py``: every configuration of a small grid
trained for real with harp's loop on a synthetic data set, every epoch's validation metrics kept.

Replaying a search against such a table (the idea of NAS-Bench-101, Ying et al. 2019, and HPO-B,
Pineda Arango et al. 2021) costs seconds per search instead of hours of training, so every method
can be run with many seeds and compared by medians instead of by one lucky run.

The grid (64 configurations of 10 epochs: sized so the build takes under an hour with both cores
of the 2-core machine, ``--jobs 2``) is fixed here so that the table and the searches that replay it agree:
family x optimiser x learning rate x batch size x sampler. The build is resumable: each finished
configuration is written to its own JSON file under ``<cache>/runs/``, and the Parquet table is
assembled from those files; a killed build continues with the configurations it had not finished.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("HARP_BENCH_CACHE", Path.home() / ".cache" / "harp-bench"))

GRID: dict[str, tuple[Any, ...]] = {
    "model.family": ("tsm", "cnn3d_attention"),
    "optim.name": ("sgd", "adamw"),
    "optim.lr": (1.0e-3, 3.0e-3, 1.0e-2, 3.0e-2),
    "train.batch_size": (8, 16),
    "sampling.method": ("uniform", "equidistant"),
}
EPOCHS = 10
# The demo's data set (search_spaces/default.yaml: the six motion classes, 100 clips each, 64-128 px)
# with a larger validation split (120 val clips: one clip is 0.8 points of top-1). A harder, smaller
# set (60 clips at 48-64 px) was tried first: no configuration learnt it in 8 epochs (best 0.40,
# most at chance), so the table was noise that no searcher can beat random on.
DATA_OVERRIDES = (
    "data.synth.num_classes=6",
    "data.synth.clips_per_class=100",
    "data.val_fraction=0.2",
    "data.test_fraction=0.1",
    "data.num_workers=0",
)
FIXED_OVERRIDES = ("model.size=tiny", "optim.schedule=cosine", "optim.warmup_epochs=0.5", "wandb.mode=disabled", "train.threads=1")
CURVE_COLUMNS = ("val_top1", "val_loss", "train_loss", "epoch_time_s")


@dataclass(frozen=True)
class Table:
    """The recorded grid: one row per (configuration, epoch)."""

    frame: Any  # pandas.DataFrame: config keys, epoch, CURVE_COLUMNS, failed_at (0 = trained to the end)
    fingerprint: str  # a short hash of the Parquet file: kept searches are only reused against the table they replayed

    @property
    def keys(self) -> list[str]:
        return list(GRID)

    def curves(self) -> dict[tuple[Any, ...], list[float]]:
        """config tuple (in GRID order) -> val_top1 per epoch (shorter when training diverged)."""
        out: dict[tuple[Any, ...], list[float]] = {}
        for key, group in self.frame.groupby(self.keys, sort=False):
            out[tuple(_plain(v) for v in key)] = [float(v) for v in group.sort_values("epoch")["val_top1"]]
        return out

    def failed(self) -> set[tuple[Any, ...]]:
        rows = self.frame[self.frame["failed_at"] > 0]
        return {tuple(_plain(v) for v in key) for key, _ in rows.groupby(self.keys, sort=False)}

    @property
    def epochs(self) -> int:
        return int(self.frame["epoch"].max())


def _plain(value: Any) -> Any:
    """numpy scalars from pandas as Python values (so they compare and hash like the GRID's)."""
    return value.item() if hasattr(value, "item") else value


def configurations() -> Iterator[dict[str, Any]]:
    for values in itertools.product(*GRID.values()):
        yield dict(zip(GRID, values))


def config_id(point: Mapping[str, Any]) -> str:
    return "_".join(f"{v:g}" if isinstance(v, float) else str(v) for v in point.values())


def data_root(cache: Path = CACHE) -> Path:
    return cache / "demo6"


def _train_one(point: Mapping[str, Any], root: Path, epochs: int) -> dict[str, Any]:
    """Train one configuration for ``epochs`` epochs with harp's loop; its per-epoch metrics."""
    from harp.config import load_config
    from harp.errors import HarpError
    from harp.train import LocalSession, train_loop

    overrides = [f"data.root={root}", *DATA_OVERRIDES, *FIXED_OVERRIDES, f"train.epochs={epochs}"]
    overrides += [f"{k}={v}" for k, v in point.items()]
    cfg = load_config(overrides)
    rows: list[dict[str, float]] = []
    work = Path(tempfile.mkdtemp(prefix="harp-bench-table-"))
    failed_at, error = 0, ""
    start = time.perf_counter()
    try:
        session = LocalSession(cfg, work, keep=1, on_report=lambda m, _: rows.append({k: float(m[k]) for k in ("epoch", *CURVE_COLUMNS)}))
        train_loop(cfg, session)
    except HarpError as exc:  # diverged: the curve stops where the loss went NaN
        failed_at, error = len(rows) + 1, str(exc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"point": dict(point), "rows": rows, "failed_at": failed_at, "error": error, "wall_s": time.perf_counter() - start}


def build(cache: Path = CACHE, epochs: int = EPOCHS, limit: int | None = None, log: Any = print, jobs: int = 1) -> Path:
    """Train every configuration not yet recorded under ``cache/runs`` (``jobs`` at a time, one
    process and one thread each) and (re)write the Parquet table."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from harp.config import load_config
    from harp.data.manifest import ensure_manifest

    root = data_root(cache)
    ensure_manifest(load_config([f"data.root={root}", *DATA_OVERRIDES]).data, progress=False)
    runs = cache / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    todo = [p for p in configurations() if _recorded_epochs(runs / f"{config_id(p)}.json") != epochs][:limit]
    log(f"{len(todo)} of {math.prod(len(v) for v in GRID.values())} configurations to train ({epochs} epochs each, {jobs} at a time)")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_train_one, point, root, epochs): point for point in todo}
        for i, future in enumerate(as_completed(futures)):
            point, record = futures[future], future.result()
            record["epochs"] = epochs
            tmp = runs / f"{config_id(point)}.json.tmp"
            tmp.write_text(json.dumps(record))
            tmp.replace(runs / f"{config_id(point)}.json")  # atomic: a killed build never leaves half a record
            best = max((r["val_top1"] for r in record["rows"]), default=float("nan"))
            log(f"[{i + 1}/{len(todo)}] {config_id(point)}: best val_top1 {best:.3f}, {record['wall_s']:.0f} s"
                + (f" (diverged at epoch {record['failed_at']})" if record["failed_at"] else ""))
    return assemble(cache)


def _recorded_epochs(path: Path) -> int | None:
    """The epochs a configuration's record was trained for (None when there is no whole record)."""
    try:
        return int(json.loads(path.read_text())["epochs"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def assemble(cache: Path = CACHE) -> Path:
    """The Parquet table from the per-configuration records (every configuration must be there)."""
    import pandas as pd

    rows = []
    missing = []
    for point in configurations():
        path = cache / "runs" / f"{config_id(point)}.json"
        if not path.is_file():
            missing.append(config_id(point))
            continue
        record = json.loads(path.read_text())
        for row in record["rows"]:
            rows.append({**point, **row, "epoch": int(row["epoch"]), "failed_at": int(record["failed_at"])})
        if not record["rows"]:  # diverged in its first epoch: one chance-level row so the config exists
            rows.append({**point, "epoch": 1, **{c: float("nan") for c in CURVE_COLUMNS}, "failed_at": 1})
    if missing:
        raise SystemExit(f"{len(missing)} configurations not trained yet (e.g. {missing[0]}); run --build again")
    out = cache / "search_table.parquet"
    pd.DataFrame(rows).to_parquet(out, index=False)
    return out


def load_table(cache: Path = CACHE) -> Table:
    import hashlib
    import io

    import pandas as pd

    path = cache / "search_table.parquet"
    if not path.is_file():
        raise SystemExit(f"no tabular benchmark at {path}; build it first: bench/search_efficiency.py --build")
    data = path.read_bytes()
    return Table(pd.read_parquet(io.BytesIO(data)), hashlib.blake2b(data, digest_size=4).hexdigest())


def grid_values(key: str) -> Sequence[Any]:
    return GRID[key]
