"""``sweep.output_dir`` -> a pyarrow filesystem and a path on it.

A sweep directory is a local path (which on a cluster must be a shared file system every node
mounts at the same place, e.g. NFS/EFS) or a URI pyarrow resolves: ``s3://bucket/prefix``,
``gs://bucket/prefix``, ``file:///abs/path``. Ray Tune takes the pair as ``storage_path`` +
``storage_filesystem``; export reads the sweep back through the same pair.

Endpoints and credentials come from the environment, as pyarrow and the cloud SDKs read them
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_PROFILE``,
``GOOGLE_APPLICATION_CREDENTIALS``): a key inside the URI would be copied into ``sweep.json``, job
specs and logs, so it is refused. Every problem is one ``ConfigError`` line naming the key.
(pyarrow pickles a filesystem with its endpoint but without credentials, so Ray's trial processes
find their own in the environment too.)

What an object store cannot hold (a SQLite study, a lock, W&B's local files) lives on the driver, in
``driver_dir``: ``$HARP_STATE_DIR`` (default ``$XDG_STATE_HOME/harp``, i.e. ``~/.local/state/harp``).
"""
from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from harp.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow.fs

KEY = "sweep.output_dir"
STATE_DIR_VAR = "HARP_STATE_DIR"
_BUCKET_SCHEMES = ("s3", "gs", "gcs")


def is_uri(value: str) -> bool:
    """Whether ``value`` names a filesystem by scheme (``s3://``, ``file://``, ...), not a plain path."""
    return "://" in value


@dataclass(frozen=True)
class StorageLocation:
    """Where a sweep directory lives: the filesystem, the path on it, and the value it came from."""

    filesystem: pyarrow.fs.FileSystem
    path: str
    value: str

    @property
    def is_local(self) -> bool:
        import pyarrow.fs

        return isinstance(self.filesystem, pyarrow.fs.LocalFileSystem)

    def join(self, *parts: str) -> str:
        """A path below this location on the same filesystem (always '/'-separated)."""
        return "/".join([self.path.rstrip("/"), *(p.strip("/") for p in parts)])

    def describe(self) -> str:
        """One line for a sweep's start: where Tune's results and checkpoints go."""
        kind = type(self.filesystem).__name__
        return f"{self.value} ({'local or shared file system' if self.is_local else kind})"

    def uri(self, *parts: str) -> str:
        """How a person names a path below this location: the value it came from, extended."""
        return "/".join([self.value.rstrip("/"), *(p.strip("/") for p in parts)]) if parts else self.value

    def child(self, *parts: str) -> StorageLocation:
        return StorageLocation(self.filesystem, self.join(*parts), self.uri(*parts))

    # -- reading and writing through the filesystem ---------------------------------------------
    def _type(self, *parts: str) -> pyarrow.fs.FileType:
        return self.filesystem.get_file_info(self.join(*parts) if parts else self.path).type

    def exists(self, *parts: str) -> bool:
        import pyarrow.fs

        return self._type(*parts) != pyarrow.fs.FileType.NotFound

    def is_file(self, *parts: str) -> bool:
        import pyarrow.fs

        return self._type(*parts) == pyarrow.fs.FileType.File

    def read_bytes(self, *parts: str) -> bytes:
        with self.filesystem.open_input_stream(self.join(*parts)) as stream:
            return bytes(stream.readall())

    def read_text(self, *parts: str) -> str:
        return self.read_bytes(*parts).decode("utf-8")

    def write_bytes(self, data: bytes, *parts: str) -> None:
        target = self.join(*parts)
        if self.is_local:  # an object store has no directories to make
            self.filesystem.create_dir(target.rpartition("/")[0], recursive=True)
        with self.filesystem.open_output_stream(target) as out:
            out.write(data)

    def write_text(self, text: str, *parts: str) -> None:
        self.write_bytes(text.encode("utf-8"), *parts)

    def delete(self, *parts: str) -> None:
        """Remove a file or a directory tree below this location (nothing when it is missing)."""
        import pyarrow.fs

        kind = self._type(*parts)
        if kind == pyarrow.fs.FileType.Directory:
            self.filesystem.delete_dir(self.join(*parts))
        elif kind != pyarrow.fs.FileType.NotFound:
            self.filesystem.delete_file(self.join(*parts))

    def upload(self, local: Path, *parts: str) -> None:
        """Copy a local file or directory tree to ``parts`` below this location (pyarrow's copy_files)."""
        import pyarrow.fs

        target = self.join(*parts)
        if self.is_local and local.is_dir():
            self.filesystem.create_dir(target, recursive=True)
        elif self.is_local:
            self.filesystem.create_dir(target.rpartition("/")[0], recursive=True)
        pyarrow.fs.copy_files(str(local), target, source_filesystem=pyarrow.fs.LocalFileSystem(), destination_filesystem=self.filesystem)

    def download(self, local: Path, *parts: str) -> None:
        """Copy a file or directory tree below this location to the local path ``local``."""
        import pyarrow.fs

        local.parent.mkdir(parents=True, exist_ok=True)
        if self._type(*parts) == pyarrow.fs.FileType.Directory:
            local.mkdir(parents=True, exist_ok=True)
        pyarrow.fs.copy_files(self.join(*parts), str(local), source_filesystem=self.filesystem, destination_filesystem=pyarrow.fs.LocalFileSystem())

    def files(self, *parts: str) -> Iterator[pyarrow.fs.FileInfo]:
        """Every file below ``parts`` (recursively); nothing when it is missing."""
        import pyarrow.fs

        selector = pyarrow.fs.FileSelector(self.join(*parts) if parts else self.path, recursive=True, allow_not_found=True)
        return (info for info in self.filesystem.get_file_info(selector) if info.type == pyarrow.fs.FileType.File)

    def size(self, *parts: str) -> int:
        """Bytes in the files below ``parts``."""
        return sum(int(info.size or 0) for info in self.files(*parts))


def redacted(value: str) -> str:
    """``value`` with any user:password in its URI replaced, so no message repeats a secret."""
    parts = urlsplit(value) if is_uri(value) else None
    if parts is None or not (parts.username or parts.password):
        return value
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def _fail(value: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{KEY}={redacted(value)!r}: {problem}; {fix}")


def resolve_output_dir(value: str, *, key: str = KEY) -> StorageLocation:
    """The filesystem and path ``value`` names; a plain path is made absolute (against the
    current directory), a URI is resolved by pyarrow. Nothing is created or contacted yet."""
    import pyarrow
    import pyarrow.fs

    if not value or not value.strip():
        raise ConfigError(f"{key} is empty; give a directory or a URI such as s3://BUCKET/runs")
    if not is_uri(value):
        return StorageLocation(pyarrow.fs.LocalFileSystem(), str(Path(value).expanduser().resolve()), value)
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if parts.username or parts.password:
        raise _fail(value, "credentials in the URI would be copied into sweep.json, job specs and logs",
                    "drop them and set them in the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ...)")
    if scheme in _BUCKET_SCHEMES and not parts.netloc:
        raise _fail(value, "no bucket name", f"write {scheme}://BUCKET/PREFIX")
    try:
        filesystem, path = pyarrow.fs.FileSystem.from_uri(value)
    except (pyarrow.ArrowException, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if scheme == "file":
            raise _fail(value, f"not an absolute file URI ({reason})", "write file:///ABSOLUTE/PATH (three slashes) or a plain path") from exc
        raise _fail(value, f"pyarrow cannot resolve it ({reason})", "use a path or an s3://, gs:// or file:/// URI") from exc
    return StorageLocation(filesystem, path.rstrip("/") or path, value)


def check_writable(location: StorageLocation) -> None:
    """Create the location and write, read and delete a probe file there: a missing bucket, a
    refused credential or a read-only mount is one line now, not a traceback after the first trial."""
    import pyarrow

    probe = location.join(f".harp-probe-{uuid.uuid4().hex[:8]}")
    fs = location.filesystem
    try:
        fs.create_dir(location.path, recursive=True)
        with fs.open_output_stream(probe) as out:
            out.write(b"harp")
        with fs.open_input_stream(probe) as back:
            ok = back.read() == b"harp"
        fs.delete_file(probe)
    except (OSError, pyarrow.ArrowException) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _fail(location.value, f"cannot write there ({reason})",
                    "create the bucket or directory, and check the credentials and endpoint in the environment") from exc
    if not ok:
        raise _fail(location.value, "a probe file read back different bytes", "check the storage's consistency settings")


def _safe(part: str) -> str:
    part = re.sub(r"[^A-Za-z0-9._=-]+", "_", part)
    return "_" if part in ("", ".", "..") else part


def driver_dir(location: StorageLocation) -> Path:
    """This machine's own directory for a sweep directory on remote storage: what an object store
    cannot hold (the SQLite study, the lock, W&B's local files). ``$HARP_STATE_DIR`` (default
    ``$XDG_STATE_HOME/harp``, ``~/.local/state/harp``), then ``sweeps/<filesystem>/<bucket>/<prefix>``:
    the same sweep gets the same directory every time this machine drives it."""
    base = os.environ.get(STATE_DIR_VAR) or os.path.join(os.environ.get("XDG_STATE_HOME") or "~/.local/state", "harp")
    parts = [_safe(p) for p in location.path.split("/") if p]
    return Path(base).expanduser().resolve().joinpath("sweeps", _safe(location.filesystem.type_name), *parts)


__all__ = ["KEY", "STATE_DIR_VAR", "StorageLocation", "check_writable", "driver_dir", "is_uri", "redacted", "resolve_output_dir"]
