"""Readers of the official data-set formats (layouts in the README's Data sets table): each turns annotations into rows.

A reader returns ``(rows, classes)``: rows are dicts with ``path`` (relative to the data root,
POSIX), ``label`` (class name), ``split`` (``train`` / ``val`` / ``test``; ``""`` when the data set
has no official split) and ``group`` (UCF101 ``gGG``; the source video id where known; else the
file stem), and ``classes`` is the label order. Paths from annotation files that leave the data
root (absolute, or with ``..``) are rejected with an error naming the file and line.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from harp.errors import HarpError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")
Rows = list[dict[str, Any]]

_UCF_GROUP = re.compile(r"_g(\d+)_c(\d+)", re.IGNORECASE)
_HMDB_CLIP = re.compile(r"_(\d+)$")


def safe_relpath(raw: str, where: str) -> str:
    """A path relative to the data root, or HarpError if it is absolute or climbs out with '..'."""
    text = raw.strip().replace("\\", "/")
    path = PurePosixPath(text)
    if not text or path.is_absolute() or re.match(r"^[A-Za-z]:", text):
        raise HarpError(f"{where}: path {raw!r} is absolute; annotation paths must be relative to data.root")
    if ".." in path.parts:
        raise HarpError(f"{where}: path {raw!r} leaves the data root ('..'); annotation paths must stay inside data.root")
    return str(PurePosixPath(*[p for p in path.parts if p != "."]))


def _group_of(stem: str) -> str:
    match = _UCF_GROUP.search(stem)
    return f"g{int(match.group(1)):02d}" if match else stem


def _find(root: Path, annotations: str, *candidates: str) -> Path:
    """The annotation file/folder: data.annotations if set, else the first candidate that exists
    under the root or next to it."""
    if annotations:
        path = Path(annotations)
        path = path if path.is_absolute() or path.exists() else root / annotations
        if not path.exists():
            raise HarpError(f"data.annotations={annotations!r} not found")
        return path
    for name in candidates:
        for base in (root, root.parent):
            if (base / name).exists():
                return base / name
    raise HarpError(f"no {' or '.join(candidates)} under {root} or next to it; set data.annotations=PATH")


def _lines(path: Path) -> list[tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1) if line.strip()]


def read_ucf101(root: Path, annotations: str, split: int) -> tuple[Rows, list[str]]:
    """UCF101: ucfTrainTestlist/classInd.txt, trainlist0N.txt (path label), testlist0N.txt (path)."""
    if split not in (1, 2, 3):
        raise HarpError(f"data.split={split}: UCF101 has splits 1, 2, 3")
    folder = _find(root, annotations, "ucfTrainTestlist")
    class_ind = folder / "classInd.txt"
    if not class_ind.is_file():
        raise HarpError(f"{class_ind} not found (UCF101's official class list)")
    classes_by_index: dict[int, str] = {}
    for n, line in _lines(class_ind):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise HarpError(f"{class_ind}:{n}: expected '<index> <ClassName>', got {line!r}")
        classes_by_index[int(parts[0])] = parts[1]
    classes = [classes_by_index[k] for k in sorted(classes_by_index)]
    rows: Rows = []
    for split_name, file_name in (("train", f"trainlist0{split}.txt"), ("test", f"testlist0{split}.txt")):
        list_file = folder / file_name
        if not list_file.is_file():
            raise HarpError(f"{list_file} not found (UCF101 split {split})")
        for n, line in _lines(list_file):
            parts = line.split()
            rel = safe_relpath(parts[0], f"{list_file}:{n}")
            label = PurePosixPath(rel).parts[0] if len(PurePosixPath(rel).parts) > 1 else ""
            if len(parts) > 1:
                if not parts[1].isdigit() or int(parts[1]) not in classes_by_index:
                    raise HarpError(f"{list_file}:{n}: unknown class index {parts[1]!r}")
                label = classes_by_index[int(parts[1])]
            if label not in classes:
                raise HarpError(f"{list_file}:{n}: class {label!r} of {rel!r} is not in classInd.txt")
            rows.append({"path": rel, "label": label, "split": split_name, "group": _group_of(PurePosixPath(rel).stem)})
    return rows, classes


def read_hmdb51(root: Path, annotations: str, split: int) -> tuple[Rows, list[str]]:
    """HMDB51: testTrainMulti_7030_splits/<class>_test_split{N}.txt, lines '<name>.avi K' with
    K = 1 train, 2 test, 0 unused (left out)."""
    if split not in (1, 2, 3):
        raise HarpError(f"data.split={split}: HMDB51 has splits 1, 2, 3")
    folder = _find(root, annotations, "testTrainMulti_7030_splits")
    files = sorted(folder.glob(f"*_test_split{split}.txt"))
    if not files:
        raise HarpError(f"no *_test_split{split}.txt files in {folder} (HMDB51's official splits)")
    classes = sorted(f.name[: -len(f"_test_split{split}.txt")] for f in files)
    rows: Rows = []
    for list_file in files:
        label = list_file.name[: -len(f"_test_split{split}.txt")]
        for n, line in _lines(list_file):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise HarpError(f"{list_file}:{n}: expected '<name>.avi <0|1|2>', got {line!r}")
            if parts[1] == "0":
                continue
            name = safe_relpath(parts[0], f"{list_file}:{n}")
            rel = safe_relpath(f"{label}/{name}", f"{list_file}:{n}")
            stem = PurePosixPath(name).stem
            rows.append({"path": rel, "label": label, "split": "train" if parts[1] == "1" else "test", "group": _HMDB_CLIP.sub("", stem)})
    return rows, classes


_KINETICS_SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validate": "val", "validation": "val", "test": "test", "testing": "test"}


def read_kinetics(root: Path, annotations: str, split: int) -> tuple[Rows, list[str]]:
    """Kinetics CSV 'label,youtube_id,time_start,time_end,split'; files '<id>_<start:06d>_<end:06d>.mp4'
    under <split>/<label>/, <label>/ or flat. Rows whose file is missing are kept; the probe reports them."""
    csv_path = _find(root, annotations, "annotations.csv", "kinetics.csv", "train.csv")
    rows: Rows = []
    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"label", "youtube_id", "time_start", "time_end"} - set(reader.fieldnames or ())
        if missing:
            raise HarpError(f"{csv_path}: missing columns {sorted(missing)}; expected label,youtube_id,time_start,time_end,split")
        for n, rec in enumerate(reader, 2):
            try:
                name = f"{rec['youtube_id']}_{int(float(rec['time_start'])):06d}_{int(float(rec['time_end'])):06d}.mp4"
            except ValueError:
                raise HarpError(f"{csv_path}:{n}: time_start/time_end must be numbers, got {rec['time_start']!r}, {rec['time_end']!r}") from None
            label = rec["label"].strip()
            split_name = _KINETICS_SPLITS.get((rec.get("split") or "train").strip().lower())
            if split_name is None:
                raise HarpError(f"{csv_path}:{n}: unknown split {rec.get('split')!r}; use train, val or test")
            candidates = [f"{rec.get('split', '').strip()}/{label}/{name}", f"{label}/{name}", f"{label.replace(' ', '_')}/{name}", name]
            rel = next((c for c in candidates if (root / c).is_file()), candidates[0] if rec.get("split") else candidates[1])
            rows.append({"path": safe_relpath(rel, f"{csv_path}:{n}"), "label": label, "split": split_name, "group": rec["youtube_id"]})
    classes = sorted({r["label"] for r in rows})
    return rows, classes


def _split_files(root: Path) -> dict[str, Path]:
    folder = root / "splits"
    return {s: folder / f"{s}.txt" for s in ("train", "val", "test") if (folder / f"{s}.txt").is_file()}


def read_folder(root: Path, annotations: str, split: int) -> tuple[Rows, list[str]]:
    """One folder per class. Split files <root>/splits/{train,val,test}.txt (relative paths) are used
    when present; otherwise every video is unsplit and a test split is carved (group-aware)."""
    if not root.is_dir():
        raise HarpError(f"data.root={str(root)!r} is not a folder")
    class_file = root / "classes.txt"
    videos = sorted(p for p in root.glob("*/*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    classes = _lines(class_file) if class_file.is_file() else None
    class_list = [c for _, c in classes] if classes else sorted({p.parent.name for p in videos})
    split_of: dict[str, str] = {}
    for split_name, list_file in _split_files(root).items():
        for n, line in _lines(list_file):
            split_of[safe_relpath(line.split()[0], f"{list_file}:{n}")] = split_name
    rows: Rows = []
    for p in videos:
        rel = p.relative_to(root).as_posix()
        if p.parent.name not in class_list:
            continue
        rows.append({"path": rel, "label": p.parent.name, "split": split_of.get(rel, "" if not split_of else "unused"), "group": _group_of(p.stem)})
    listed = set(split_of) - {r["path"] for r in rows}
    for rel in sorted(listed):  # named in a split file but missing on disk: the probe reports it
        rows.append({"path": rel, "label": PurePosixPath(rel).parts[0], "split": split_of[rel], "group": _group_of(PurePosixPath(rel).stem)})
    rows = [r for r in rows if r["split"] != "unused"]
    if not rows:
        raise HarpError(f"no videos found under {root} (expected <class>/<video>{'|'.join(VIDEO_EXTENSIONS)})")
    return rows, class_list


def read_manifest_file(root: Path, annotations: str, split: int) -> tuple[Rows, list[str]]:
    """A generic CSV or Parquet manifest with columns path,label[,split][,group]."""
    import pandas as pd

    path = _find(root, annotations, "manifest.csv", "manifest.parquet")
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str, keep_default_na=False)
    if not {"path", "label"} <= set(table.columns):
        raise HarpError(f"{path}: a manifest needs columns path,label[,split][,group]; found {', '.join(map(str, table.columns))}")
    rows: Rows = []
    for n, rec in enumerate(table.to_dict("records"), 2):
        rel = safe_relpath(str(rec["path"]), f"{path}:{n}")
        split_name = str(rec.get("split") or "").strip().lower()
        split_name = _KINETICS_SPLITS.get(split_name, "") if split_name else ""
        group = str(rec.get("group") or "") or _group_of(PurePosixPath(rel).stem)
        rows.append({"path": rel, "label": str(rec["label"]), "split": split_name, "group": group})
    return rows, sorted({r["label"] for r in rows})


READERS: dict[str, Callable[[Path, str, int], tuple[Rows, list[str]]]] = {
    "synthetic": read_folder,
    "ucf101": read_ucf101,
    "hmdb51": read_hmdb51,
    "kinetics": read_kinetics,
    "folder": read_folder,
    "manifest": read_manifest_file,
}
