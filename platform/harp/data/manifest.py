"""Index a data set into a Parquet manifest: read the official annotations, probe every video in
parallel, carve the splits, write with pyarrow.

One row per video: ``path`` (relative to the data root), ``label``, ``label_index``, ``split``
(train / val / test; ``excluded`` for videos that failed the probe), ``official_split`` (what the
annotations said), ``group``, ``frames``, ``header_frames``, ``keyframe_interval``, ``fps``, ``width``, ``height``,
``duration``, ``size_bytes``, ``mtime_ns``, ``fingerprint`` (what a re-index checks before re-using
a probe) and ``error`` (the probe error; empty when the video is usable).
Unreadable videos are listed with their error and counted in the summary line, never a crash.

The manifest's Parquet metadata (key ``harp``) records the root, format, class order and the
split settings it was carved with; ``ensure_manifest`` rebuilds when those settings change
(re-using the probes of unchanged files, so a re-carve costs no decoding).

A class subset (``data.classes`` / ``data.classes_file``, ``data.per_class``) is indexed into a
manifest of its own (``harp_manifest[_splitN]_sub<hash>.parquet``, the hash of the classes and the
count), so the full data set's manifest and the subset's live side by side; only the chosen classes
are probed (re-using the full manifest's probes), and with ``per_class`` every class keeps that many
videos, split with exact counts (``harp.data.splits.select_exact``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from harp.config.schema import DataConfig
from harp.errors import HarpError

log = logging.getLogger("harp.data")

MANIFEST_COLUMNS = (
    "path", "label", "label_index", "split", "official_split", "group",
    "frames", "header_frames", "keyframe_interval", "fps", "width", "height", "duration", "size_bytes",
    "mtime_ns", "fingerprint", "error",
)  # fmt: skip
# Bumped when the manifest's columns or split rules change: an older manifest is re-indexed.
MANIFEST_VERSION = 3  # 3: HMDB51 groups are source videos; UCF101/HMDB51 videos found under UCF-101/, hmdb51_org/
SPLITS = ("train", "val", "test")
_SETTINGS = ("format", "split", "val_fraction", "val_strategy", "test_fraction", "seed", "annotations")


def manifest_path(cfg: DataConfig) -> Path:
    """``data.manifest`` if set, else ``<root>/harp_manifest[_splitN][_sub<hash>].parquet``."""
    if cfg.manifest:
        return Path(cfg.manifest)
    suffix = f"_split{cfg.split}" if cfg.format in ("ucf101", "hmdb51") else ""
    subset = _subset(cfg)
    if subset:
        digest = hashlib.blake2b(json.dumps(subset, sort_keys=True).encode(), digest_size=4).hexdigest()
        suffix += f"_sub{digest}"
    return Path(cfg.root) / f"harp_manifest{suffix}.parquet"


def selected_classes(cfg: DataConfig) -> list[str]:
    """``data.classes``, or the names in ``data.classes_file`` (one a line, ``#`` comments); [] = all."""
    if cfg.classes and cfg.classes_file:
        raise HarpError("data.classes and data.classes_file are both set; give the class subset once")
    if not cfg.classes_file:
        return [str(c) for c in cfg.classes]
    path = Path(cfg.classes_file).expanduser()
    if not path.is_absolute() and not path.is_file():
        path = Path(cfg.root) / path
    if not path.is_file():
        raise HarpError(f"data.classes_file={cfg.classes_file!r} not found (looked as given and under data.root)")
    names = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [name for name in names if name]


def _subset(cfg: DataConfig) -> dict[str, Any]:
    """The settings that make a subset (empty for the whole data set, so older manifests still match)."""
    out: dict[str, Any] = {}
    classes = selected_classes(cfg)
    if classes:
        out["class_subset"] = sorted(set(classes))
    if cfg.per_class:
        out["per_class"] = int(cfg.per_class)
    return out


def _settings(cfg: DataConfig) -> dict[str, Any]:
    return {"version": MANIFEST_VERSION, **{k: getattr(cfg, k) for k in _SETTINGS}, **_subset(cfg)}


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"harp")
    return json.loads(raw) if raw else {}


def load_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """The manifest as a DataFrame; ``df.attrs`` holds its metadata (root, format, classes, settings)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise HarpError(f"manifest {path} not found; run `harp data index` (with the same data.* settings) first")
    table = pq.read_table(path)
    df = table.to_pandas()
    raw = (table.schema.metadata or {}).get(b"harp")
    df.attrs.update(json.loads(raw) if raw else {})
    missing = set(MANIFEST_COLUMNS) - set(df.columns)
    if missing:
        raise HarpError(f"{path} is not a harp manifest (missing columns {sorted(missing)}); re-run `harp data index`")
    return df


def class_names(df: pd.DataFrame) -> list[str]:
    """Class names in label-index order (from the manifest's metadata, else from its rows)."""
    if df.attrs.get("classes"):
        return list(df.attrs["classes"])
    pairs = df[["label_index", "label"]].drop_duplicates().sort_values("label_index")
    return pairs["label"].tolist()


def _previous_probes(path: Path) -> dict[str, dict[str, Any]]:
    """Probe results of an earlier manifest at ``path``, keyed by relative path (a re-index cache)."""
    if not path.is_file():
        return {}
    try:
        old = load_manifest(path)
    except Exception:  # noqa: BLE001 - an unreadable old manifest is just no cache
        return {}
    from harp.data.probe import PROBE_COLUMNS

    cols = list(PROBE_COLUMNS)
    if not set(cols) <= set(old.columns):
        return {}
    return {rec["path"]: {c: rec[c] for c in cols} for rec in old[["path", *cols]].to_dict("records")}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock next to the manifest: concurrent trials index a data set once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def index_dataset(cfg: DataConfig, *, progress: bool = True, cache: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """Read annotations, probe, carve splits: the manifest as a DataFrame (not yet written)."""
    from harp.data.probe import probe_many
    from harp.data.readers import READERS
    from harp.data.splits import carve

    root = Path(cfg.root)
    if cfg.format not in READERS:
        raise HarpError(f"data.format={cfg.format!r}; choose one of: {', '.join(READERS)}")
    if not root.is_dir():
        raise HarpError(f"data.root={cfg.root!r} is not a folder")
    rows, classes = READERS[cfg.format](root, cfg.annotations, cfg.split)
    rows, classes = _keep_classes(cfg, rows, classes)
    if len(classes) < 2:
        raise HarpError(f"{cfg.format} data under {root}: found {len(classes)} class(es); a classifier needs at least 2")
    df = pd.DataFrame(rows, columns=["path", "label", "split", "group"])
    dup = df["path"].duplicated()
    if dup.any():
        log.warning("%d paths listed twice; keeping the first of each (%s ...)", int(dup.sum()), df.loc[dup, "path"].iloc[0])
        df = df[~dup].reset_index(drop=True)
    if df.empty:
        _nothing_readable(cfg, root, df)
    index_of = {c: i for i, c in enumerate(classes)}
    df["label_index"] = df["label"].map(index_of).astype("int64")
    df["official_split"] = df["split"]
    cache = cache or {}
    todo = [p for p in df["path"] if not _cache_valid(cache.get(p), root / p)]
    probed = dict(zip(todo, probe_many([root / p for p in todo], workers=cfg.probe_workers, progress=progress)))
    probes = [probed[p] if p in probed else cache[p] for p in df["path"]]
    probe_df = pd.DataFrame(probes, index=df.index)
    df = pd.concat([df, probe_df], axis=1)
    df["error"] = df["error"].fillna("").astype(str)
    if not (df["error"] == "").any():
        _nothing_readable(cfg, root, df)
    if cfg.per_class:
        df = _carve_subset(cfg, df)
    elif (df["split"] == "").any() and not (df["split"] == "test").any():  # no official test split
        df = carve(df, source="", target="test", fraction=cfg.test_fraction, strategy="group", seed=cfg.seed + 1)
    df.loc[df["split"] == "", "split"] = "train"
    if not cfg.per_class and not (df["split"] == "val").any():  # no official validation split
        df = carve(df, source="train", target="val", fraction=cfg.val_fraction, strategy=cfg.val_strategy, seed=cfg.seed)
    df.loc[df["error"] != "", "split"] = "excluded"
    _check_splits(cfg, root, df)
    df = df[list(MANIFEST_COLUMNS)]
    for col in ("frames", "header_frames", "width", "height", "size_bytes", "mtime_ns"):
        df[col] = df[col].astype("int64")
    for col in ("fps", "duration", "keyframe_interval"):
        df[col] = df[col].astype("float64")
    df.attrs.update({"root": str(root.resolve()), "classes": classes, **_settings(cfg), "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return df


def _keep_classes(cfg: DataConfig, rows: list[dict[str, Any]], classes: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows and classes of ``data.classes`` (in the data set's own class order), before probing."""
    wanted = selected_classes(cfg)
    if not wanted:
        return rows, classes
    unknown = [c for c in wanted if c not in classes]
    if unknown:
        shown = ", ".join(classes[:12]) + (" ..." if len(classes) > 12 else "")
        raise HarpError(f"data.classes names {len(unknown)} class(es) {cfg.format} does not have under {cfg.root}: {unknown[:5]}; classes are: {shown}")
    keep = set(wanted)
    return [r for r in rows if r["label"] in keep], [c for c in classes if c in keep]


def _carve_subset(cfg: DataConfig, df: pd.DataFrame) -> pd.DataFrame:
    """``data.per_class`` videos of each class, split with exact counts (the official split set aside)."""
    from harp.data.splits import exact_counts, select_exact

    counts = exact_counts(int(cfg.per_class), cfg.test_fraction, cfg.val_fraction)
    out = select_exact(df, per_class=int(cfg.per_class), counts=counts, seed=cfg.seed)
    log.info("class subset: %d classes x %d videos, %s per class", out["label"].nunique(), cfg.per_class,
             " / ".join(f"{counts[s]} {s}" for s in SPLITS))  # fmt: skip
    return out


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _nothing_readable(cfg: DataConfig, root: Path, df: pd.DataFrame) -> None:
    """Every listed video failed the probe: most often data.root points one folder off. One line."""
    from harp.data.readers import layout_hint

    where, what = layout_hint(cfg.format, root, cfg.annotations, cfg.split)
    example = f"; e.g. {df['path'].iloc[0]}: {_one_line(df['error'].iloc[0])}" if len(df) else ""
    raise HarpError(f"found 0 readable videos under {root} ({len(df)} listed; looked for {where}{example}); {what}")


def _check_splits(cfg: DataConfig, root: Path, df: pd.DataFrame) -> None:
    """A usable index has readable training videos, and test videos when the data set has an official
    test split or one was to be carved (``data.test_fraction > 0``; Kinetics' official train/val has
    none). One line saying which is empty and why."""
    from harp.data.readers import layout_hint

    counts = df["split"].value_counts()
    wanted = ["train"]
    if cfg.per_class:
        pass  # exact counts: a split is empty only when its fraction asks for none
    elif (df["official_split"] == "test").any() or ((df["official_split"] == "").any() and cfg.test_fraction > 0):
        wanted.append("test")
    empty = [s for s in wanted if int(counts.get(s, 0)) == 0]
    if not empty:
        return
    where, what = layout_hint(cfg.format, root, cfg.annotations, cfg.split)
    listed = int((df["official_split"] == empty[0]).sum())
    unreadable = int(((df["official_split"] == empty[0]) & (df["error"] != "")).sum())
    found = ", ".join(f"{int(counts.get(s, 0))} {s}" for s in (*SPLITS, "excluded"))
    if listed and unreadable == listed:
        cause = f"all {listed} videos the annotations list for {empty[0]} are unreadable (looked for {where}); {what}"
    elif empty[0] == "test" and not listed:
        cause = (
            f"no test split could be carved from {int((df['official_split'] == '').sum())} unsplit videos; "
            f"add videos or groups, raise data.test_fraction (now {cfg.test_fraction}), or give splits/test.txt"
        )
    else:
        cause = f"looked for {where}; {what}"
    raise HarpError(f"{cfg.format} index under {root} has an empty {' and '.join(empty)} split ({found}): {cause}")


def _cache_valid(entry: dict[str, Any] | None, file: Path) -> bool:
    """An earlier probe still describes ``file``: same size, mtime and head/tail fingerprint."""
    from harp.data.probe import IDENTITY_COLUMNS, file_identity

    if entry is None or entry.get("error"):
        return False  # always re-probe failures: the file may have been fixed
    try:
        now = file_identity(file)
    except OSError:
        return False
    return all(now[k] == entry.get(k) for k in IDENTITY_COLUMNS)


def write_manifest(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write atomically with pyarrow; ``df.attrs`` goes into the Parquet metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"harp"] = json.dumps(df.attrs, default=str).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table.replace_schema_metadata(meta), tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise HarpError(f"cannot write the manifest {path} ({exc.strerror}); set data.manifest=A_WRITABLE_PATH") from exc
    return path


def summarize(df: pd.DataFrame) -> str:
    """One line: counts per split, classes, unreadable videos (with the first few names and errors)."""
    counts = df["split"].value_counts()
    parts = [f"{int(counts.get(s, 0))} {s}" for s in SPLITS]
    bad = df[df["error"] != ""]
    line = f"{len(df)} videos, {len(class_names(df))} classes: {' / '.join(parts)}; {len(bad)} unreadable"
    if len(bad):
        shown = "; ".join(f"{p} ({e})" for p, e in zip(bad["path"].head(3), bad["error"].head(3)))
        line += f" (excluded from splits, listed in the manifest's error column): {shown}{' ...' if len(bad) > 3 else ''}"
    gop = df.loc[df["error"] == "", "keyframe_interval"].median()
    if gop > 50:
        line += f"; keyframes every {gop:.0f} frames (median): `harp data prepare` makes sparse sampling faster"
    return line


def build_manifest(cfg: DataConfig, *, progress: bool = True) -> Path:
    """Index + probe + splits -> Parquet at ``manifest_path(cfg)``; returns the path."""
    path = manifest_path(cfg)
    with _locked(path):
        _build(cfg, path, progress)
        return path


def _build(cfg: DataConfig, path: Path, progress: bool) -> pd.DataFrame:
    """Index the data set and write its manifest at ``path``; returns the manifest's rows."""
    cache = _previous_probes(path)
    if _subset(cfg) and not cfg.manifest:  # a subset re-uses the whole data set's probes too
        cache = {**_previous_probes(manifest_path(dataclasses.replace(cfg, classes=[], classes_file="", per_class=0))), **cache}
    df = index_dataset(cfg, progress=progress, cache=cache)
    write_manifest(df, path)
    return df


def _has_videos(root: Path) -> bool:
    from harp.data.readers import VIDEO_EXTENSIONS

    return root.is_dir() and any(p.suffix.lower() in VIDEO_EXTENSIONS for p in root.glob("*/*"))


def ensure_manifest(cfg: DataConfig, *, progress: bool = True, announce: bool = True) -> Path:
    """The manifest for ``cfg``: synthesise the demo data when format=synthetic and the root holds no
    videos, index when the manifest is missing or was carved with other settings; else reuse.
    ``announce`` logs the summary of a manifest it (re)builds (a caller that prints the summary
    itself, as ``harp data`` does, turns it off: once is enough)."""
    path = manifest_path(cfg)
    root = Path(cfg.root)
    with _locked(path):
        if cfg.format == "synthetic" and not _has_videos(root):
            from harp.data.synthetic import synthesize

            log.info("no videos under %s: synthesising the demo data set", root)
            synthesize(cfg.synth, root, progress=progress)
        if path.is_file():
            meta = read_metadata(path)
            if all(meta.get(k) == v for k, v in _settings(cfg).items()):
                return path
            log.info("manifest %s was carved with other settings: re-indexing (probes are reused)", path)
        df = _build(cfg, path, progress)
        if announce:  # not in _build: `harp data index` (build_manifest) prints the summary itself
            log.info("manifest %s: %s", path, summarize(df))
        return path
