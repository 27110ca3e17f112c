"""Readers of the official data-set formats (layouts in the README's Data sets table): each turns annotations into rows.

A reader returns ``(rows, classes)``: rows are dicts with ``path`` (relative to the data root,
POSIX), ``label`` (class name), ``split`` (``train`` / ``val`` / ``test``; ``""`` when the data set
has no official split) and ``group`` (UCF101 ``gGG``; the source video where known: HMDB51's name
without its action, tags and clip number, Kinetics' YouTube id; else the file stem), and
``classes`` is the label order. Paths from annotation files that leave the data root (absolute,
or with ``..``) are rejected with an error naming the file and line.

Data sets as their official archives unpack: ``data.root`` may be the folder holding ``UCF-101/``
and ``ucfTrainTestlist/`` (or ``UCF-101/`` itself, the lists next to it), or the folder holding
``hmdb51_org/`` (or the 51 class folders directly) and ``testTrainMulti_7030_splits/``; the reader
finds the videos in whichever of those places the listed files are, and row paths include that
sub-folder. ``layout_hint`` says where a reader looks and what to set, for the error of an index
that finds nothing readable.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from harp.errors import HarpError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")
Rows = list[dict[str, Any]]

_UCF_GROUP = re.compile(r"_g(\d+)_c(\d+)", re.IGNORECASE)
_HMDB_CLIP = re.compile(r"_(\d+)$")
# HMDB51 names: <source video>_<action>_<body part>_<camera motion>_<people>_<viewpoint>_<quality>_<clip>,
# e.g. April_09_brush_hair_u_nm_np1_ba_goo_0 (README of the data set: body part h/u/f/l, camera cm/nm,
# np1..np3, viewpoint fr/ba/le/ri, quality bad/med/goo). The tags describe each clip, so clips of one
# source video may differ in them.
_HMDB_NAME = re.compile(r"^(?P<head>.+)_[hufl]_(?:cm|nm)_np\d+_(?:fr|ba|le|ri)_(?:bad|med|goo)_\d+$")
# Where the official archives put the videos, relative to data.root ("" = the root itself).
_UCF_VIDEO_DIRS = ("", "UCF-101", "UCF101")
_HMDB_VIDEO_DIRS = ("", "hmdb51_org", "hmdb51", "HMDB51")


def safe_relpath(raw: str, where: str) -> str:
    """A path relative to the data root, or HarpError if it is absolute or climbs out with '..'."""
    text = raw.strip().replace("\\", "/")
    path = PurePosixPath(text)
    if not text or path.is_absolute() or re.match(r"^[A-Za-z]:", text):
        raise HarpError(f"{where}: path {raw!r} is absolute; annotation paths must be relative to data.root")
    if ".." in path.parts:
        raise HarpError(f"{where}: path {raw!r} leaves the data root ('..'); annotation paths must stay inside data.root")
    return str(PurePosixPath(*[p for p in path.parts if p != "."]))


def hmdb_source(stem: str, label: str = "") -> str | None:
    """The source video of an HMDB51-style clip name (the name without ``_<action>`` and the tag/clip
    tail), or None when the name does not follow HMDB's pattern. ``label`` (the action) is stripped
    when the name carries it (``brush hair`` matches ``brush_hair``)."""
    match = _HMDB_NAME.match(stem)
    if match is None:
        return None
    head = match.group("head")
    for action in {label, label.replace(" ", "_")} - {""}:
        if head.endswith("_" + action) and len(head) > len(action) + 1:
            return head[: -len(action) - 1]
    return head


def _group_of(stem: str, label: str = "") -> str:
    """UCF101's ``gGG``, else HMDB51's source video, else the stem itself."""
    match = _UCF_GROUP.search(stem)
    if match:
        return f"g{int(match.group(1)):02d}"
    source = hmdb_source(stem, label)
    return source if source is not None else stem


def _video_dir(root: Path, rels: list[str], candidates: tuple[str, ...]) -> str:
    """Which of ``candidates`` (sub-folders of the root; "" is the root) holds the listed videos: the
    one where most of a sample of them exist ("" when none does; the probe then reports them)."""
    step = max(1, len(rels) // 64)
    sample = rels[::step][:64]
    best, best_count = "", 0
    for sub in candidates:
        base = root / sub if sub else root
        if not base.is_dir():
            continue
        count = sum((base / rel).is_file() for rel in sample)
        if count > best_count:
            best, best_count = sub, count
    return best


def _under(sub: str, rows: Rows) -> Rows:
    if sub:
        for row in rows:
            row["path"] = f"{sub}/{row['path']}"
    return rows


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
    return _under(_video_dir(root, [r["path"] for r in rows], _UCF_VIDEO_DIRS), rows), classes


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
            group = hmdb_source(stem, label) or _HMDB_CLIP.sub("", stem)
            rows.append({"path": rel, "label": label, "split": "train" if parts[1] == "1" else "test", "group": group})
    return _under(_video_dir(root, [r["path"] for r in rows], _HMDB_VIDEO_DIRS), rows), classes


_KINETICS_SPLITS = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validate": "val", "validation": "val",
    "test": "test", "testing": "test",
}  # fmt: skip


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
        group = _group_of(p.stem, p.parent.name)
        rows.append({"path": rel, "label": p.parent.name, "split": split_of.get(rel, "" if not split_of else "unused"), "group": group})
    listed = set(split_of) - {r["path"] for r in rows}
    for rel in sorted(listed):  # named in a split file but missing on disk: the probe reports it
        label = PurePosixPath(rel).parts[0]
        rows.append({"path": rel, "label": label, "split": split_of[rel], "group": _group_of(PurePosixPath(rel).stem, label)})
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
        group = str(rec.get("group") or "") or _group_of(PurePosixPath(rel).stem, str(rec["label"]))
        rows.append({"path": rel, "label": str(rec["label"]), "split": split_name, "group": group})
    return rows, sorted({r["label"] for r in rows})


def layout_hint(fmt: str, root: Path, annotations: str = "", split: int = 1) -> tuple[str, str]:
    """(where the reader of ``fmt`` looks for videos, what to set) for a one-line error."""
    exts = "|".join(e.lstrip(".") for e in VIDEO_EXTENSIONS)
    lists = annotations or None
    if fmt == "ucf101":
        where = (
            f"UCF-101/<Class>/*.avi (or <Class>/*.avi) listed in {lists or 'ucfTrainTestlist'}/trainlist0{split}.txt "
            f"and testlist0{split}.txt"
        )
        what = "set data.root to the folder that holds UCF-101/ and ucfTrainTestlist/ (or to UCF-101/ itself, with ucfTrainTestlist/ next to it)"
    elif fmt == "hmdb51":
        where = (
            f"hmdb51_org/<class>/*.avi (or <class>/*.avi) listed in {lists or 'testTrainMulti_7030_splits'}/"
            f"*_test_split{split}.txt"
        )
        what = (
            "set data.root to the folder that holds hmdb51_org/ (or the 51 class folders) and testTrainMulti_7030_splits/; "
            "hmdb51_org.rar holds one .rar per class: unpack those too"
        )
    elif fmt == "kinetics":
        where = f"<split>/<label>/, <label>/ or flat <youtube_id>_<start>_<end>.mp4 files named in {lists or 'annotations.csv'}"
        what = "set data.root to the folder that holds the video folders (and data.annotations to the CSV if it lives elsewhere)"
    elif fmt == "manifest":
        where = f"the path column of {lists or 'manifest.csv / manifest.parquet'}, relative to data.root"
        what = "set data.root to the folder those paths are relative to"
    else:
        where = f"<class>/<video>.{{{exts}}} one folder per class"
        what = "set data.root to the folder with one sub-folder per class"
    return where, what


READERS: dict[str, Callable[[Path, str, int], tuple[Rows, list[str]]]] = {
    "synthetic": read_folder,
    "ucf101": read_ucf101,
    "hmdb51": read_hmdb51,
    "kinetics": read_kinetics,
    "folder": read_folder,
    "manifest": read_manifest_file,
}
