"""What ``harp predict VIDEO...`` means by its arguments: files, folders (their videos, recursively)
and glob patterns (expanded here, so quoting a pattern works too)."""
from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ogv"})


def _videos_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def expand_inputs(items: Iterable[str]) -> tuple[list[Path], list[str]]:
    """(files in the order given, problems): a file is taken as it is (its decode says whether it is
    a video), a folder gives the videos under it, a pattern its matches; each argument that names
    nothing is one problem line. Duplicates are kept once."""
    files: list[Path] = []
    problems: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_file():
            found = [path]
        elif path.is_dir():
            found = _videos_under(path)
            if not found:
                problems.append(f"{item}: no videos in this folder ({', '.join(sorted(VIDEO_SUFFIXES))})")
        elif glob.has_magic(item):
            matches = [Path(m) for m in sorted(glob.glob(item, recursive=True))]
            found = [p for p in matches if p.is_file()] + [v for p in matches if p.is_dir() for v in _videos_under(p)]
            if not found:
                problems.append(f"{item}: the pattern matches no file")
        else:
            found = []
            problems.append(f"{item}: no such file or folder")
        files.extend(found)
    unique = list(dict.fromkeys(files))
    return unique, problems


__all__ = ["VIDEO_SUFFIXES", "expand_inputs"]
