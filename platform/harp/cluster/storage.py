"""``sweep.output_dir`` -> a pyarrow filesystem and a path on it.

A sweep directory is a local path (which on a cluster must be a shared file system every node
mounts at the same place, e.g. NFS/EFS) or a URI pyarrow resolves: ``s3://bucket/prefix``,
``gs://bucket/prefix``, ``file:///abs/path``. Ray Tune takes the pair as ``storage_path`` +
``storage_filesystem``; export reads the sweep back through the same pair.

Endpoints and credentials come from the environment, as pyarrow and the cloud SDKs read them
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_PROFILE``,
``GOOGLE_APPLICATION_CREDENTIALS``): a key inside the URI would be copied into ``sweep.json``, job
specs and logs, so it is refused. Every problem is one ``ConfigError`` line naming the key.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from harp.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow.fs

KEY = "sweep.output_dir"
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


__all__ = ["KEY", "StorageLocation", "check_writable", "is_uri", "redacted", "resolve_output_dir"]
