"""Inside a Ray Job, a relative path is a path into Ray's package cache.

A job's entrypoint runs in its unpacked working dir, ``<ray temp>/runtime_resources/
working_dir_files/_ray_pkg_<hash>/``: a sweep written to the default ``sweep.output_dir=runs``
would land there, on one node, and be deleted with the package. So inside a job the sweep's paths
must be absolute (a shared file system every node mounts) or URIs (``s3://...``), and a relative
one is refused with one line naming the key, before anything is written.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from harp.cluster.storage import is_uri
from harp.config.schema import HarpConfig
from harp.errors import ConfigError

# Set by Ray's job supervisor for every job entrypoint (ray.dashboard.modules.job.job_supervisor).
JOB_CONFIG_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"
PACKAGE_CACHE_DIR = "runtime_resources"  # ray._private.ray_constants.DEFAULT_RUNTIME_ENV_DIR_NAME

# Paths a sweep writes or that its trials (on other nodes) read.
JOB_PATH_KEYS = ("sweep.output_dir", "data.root", "data.manifest", "data.annotations")


class _Param(Protocol):  # harp.tune.params.Param, without importing harp.tune
    @property
    def key(self) -> str: ...

    @property
    def values(self) -> tuple[Any, ...]: ...


def _relative(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and not is_uri(value) and not os.path.isabs(os.path.expanduser(value))


def running_in_ray_job(env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None) -> bool:
    """Whether this process is a Ray Job's entrypoint (or runs inside its unpacked working dir)."""
    env = os.environ if env is None else env
    here = Path(os.getcwd() if cwd is None else cwd)
    return JOB_CONFIG_VAR in env or PACKAGE_CACHE_DIR in here.parts


def relative_paths(cfg: HarpConfig) -> list[tuple[str, str]]:
    """(key, value) of each of ``JOB_PATH_KEYS`` set to a relative local path."""
    found = []
    for key in JOB_PATH_KEYS:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if _relative(value):
            found.append((key, str(value)))
    return found


def relative_sampled_paths(params: Iterable[_Param]) -> list[tuple[str, str]]:
    """(key, value) of each relative data path a search space samples (``params.data.root: [data/UCF-101]``)."""
    return [(p.key, str(v)) for p in params if p.key in JOB_PATH_KEYS for v in p.values if _relative(v)]


def check_job_paths(cfg: HarpConfig, params: Iterable[_Param] = (), *, in_job: bool | None = None) -> None:
    """Refuse a relative ``sweep.output_dir`` (or data path, fixed or sampled by ``params``) when
    running as a Ray Job.

    Call it before the sweep resolves or writes anything (``harp sweep`` right after building its
    config). ``in_job`` defaults to ``running_in_ray_job()``; ``harp submit`` passes True to refuse
    the job before it is uploaded."""
    if not (running_in_ray_job() if in_job is None else in_job):
        return
    sampled = relative_sampled_paths(params)
    if sampled and not relative_paths(cfg):
        key, value = sampled[0]
        raise ConfigError(
            f"the search space samples {key}={value!r}, a relative path: inside a Ray Job it would point into Ray's package cache; "
            f"make its values absolute paths every node sees (e.g. ${{oc.env:HARP_DATA_DIR}}/... in the space file)"
        )
    bad = relative_paths(cfg)
    if not bad:
        return
    key, value = bad[0]
    if key == "sweep.output_dir":
        raise ConfigError(
            f"sweep.output_dir={value!r} is relative: inside a Ray Job it would be written into Ray's package cache and lost; "
            "set sweep.output_dir to shared storage every node sees (e.g. /shared/runs or s3://BUCKET/runs)"
        )
    raise ConfigError(
        f"{key}={value!r} is relative: inside a Ray Job it would point into Ray's package cache on one node; "
        f"set {key} to an absolute path every node sees"
    )


__all__ = ["JOB_CONFIG_VAR", "JOB_PATH_KEYS", "check_job_paths", "relative_paths", "relative_sampled_paths", "running_in_ray_job"]
