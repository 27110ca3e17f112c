"""A sweep as a Ray Job: the files in ``jobs/`` (one per shipped search space).

A job spec says what ``harp submit`` sends to the cluster::

    space: 002_cnn3d_attention_ucf101      # a shipped space, or a path inside working_dir
    overrides: [data.root=/shared/data/UCF-101, sweep.output_dir=/shared/runs]
    entrypoint_resources: {num_cpus: 1}    # what the sweep driver itself reserves
    runtime_env:                           # Ray's runtime env; working_dir is relative to this file
      working_dir: ..
      excludes: [.venv, data, runs]
      env_vars: {PYTHONUNBUFFERED: "1"}
    env_from_client: [WANDB_PROJECT, WANDB_ENTITY, WANDB_MODE]   # copied from the submitter's environment

The entrypoint is always ``harp sweep --space S --resume-if-exists sweep.ray_address=auto ...``:
a resubmitted job continues its sweep. Secrets never go into a job spec: a secret-looking
variable (``*_KEY``, ``*_TOKEN``, ``*_SECRET``, ``*_PASSWORD``) in ``env_vars`` or
``env_from_client``, or a password inside an override's URL, is refused; the nodes' environment
provides them (``cluster.yaml``, or a Kubernetes Secret), because a runtime env is stored in the
cluster's job table and shown by the dashboard to everyone who can reach it.
"""
from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from harp.errors import ConfigError

SPEC_KEYS = ("description", "space", "overrides", "entrypoint_resources", "runtime_env", "env_from_client")
RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory", "resources")
RUNTIME_ENV_KEYS = ("working_dir", "excludes", "env_vars", "pip", "uv", "py_modules", "config")
# Never uploaded: the environment, caches, data and outputs (Ray also honours .gitignore).
DEFAULT_EXCLUDES = (
    ".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".import_linter_cache",
    "data", "runs", "wandb", "outputs", "*.mp4", "*.avi", "*.safetensors", "*.parquet", "*.db",
)
DEFAULT_SPACE = "default"
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.IGNORECASE)


@dataclass
class JobSpec:
    """One job spec file, checked. ``working_dir`` is absolute (resolved against the file's folder)."""

    space: str = DEFAULT_SPACE
    overrides: list[str] = field(default_factory=list)
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory: int | None = None
    resources: dict[str, float] = field(default_factory=dict)
    working_dir: Path = field(default_factory=Path.cwd)
    excludes: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDES))
    env_vars: dict[str, str] = field(default_factory=lambda: {"PYTHONUNBUFFERED": "1"})
    env_from_client: list[str] = field(default_factory=list)
    extra_runtime_env: dict[str, Any] = field(default_factory=dict)  # pip, uv, py_modules, config as given
    description: str = ""
    path: Path | None = None

    @property
    def where(self) -> str:
        return str(self.path) if self.path else "the job"

    def runtime_env(self, client_env: Mapping[str, str]) -> dict[str, Any]:
        """The runtime env sent with the job: working dir, excludes, env vars (those named in
        ``env_from_client`` copied from ``client_env`` when set there)."""
        env_vars = dict(self.env_vars)
        env_vars.update({name: client_env[name] for name in self.env_from_client if client_env.get(name)})
        return {**self.extra_runtime_env, "working_dir": str(self.working_dir), "excludes": list(self.excludes), "env_vars": env_vars}

    def entrypoint_options(self) -> dict[str, Any]:
        """Keyword arguments of ``JobSubmissionClient.submit_job`` for the driver's own resources."""
        options: dict[str, Any] = {"entrypoint_num_cpus": self.num_cpus, "entrypoint_num_gpus": self.num_gpus}
        if self.memory:
            options["entrypoint_memory"] = int(self.memory)
        if self.resources:
            options["entrypoint_resources"] = dict(self.resources)
        return options


def entrypoint(space: str, overrides: Sequence[str]) -> str:
    """The shell command the job runs: the sweep, continued when its directory already holds one."""
    words = ["harp", "sweep", "--space", space, "--resume-if-exists", "--quiet", "sweep.ray_address=auto", *overrides]
    return shlex.join(words)


def refuse_secrets(where: str, overrides: Sequence[str]) -> None:
    """A password inside an override's URL (``sweep.optuna_storage=postgresql://u:PW@host/db``)
    would be shown in the job table, the dashboard and the logs: refuse it."""
    for item in overrides:
        key, _, value = item.partition("=")
        if "://" in value and urlsplit(value).password:
            raise ConfigError(
                f"{where}: {key} carries a password in its URL, which the job table, dashboard and logs would show; "
                "drop it and let the nodes supply it (PGPASSWORD or ~/.pgpass for PostgreSQL, the cloud SDK's variables for storage)"
            )


def _secret_names(where: str, field_name: str, names: Sequence[str]) -> None:
    bad = [n for n in names if _SECRET_NAME.search(n)]
    if bad:
        raise ConfigError(
            f"{where}: {field_name} names {', '.join(bad)}: secrets never go into a job spec or its runtime env (the cluster's "
            "job table and dashboard show them); set them in the nodes' environment (cluster.yaml or a Kubernetes Secret)"
        )


def _unknown(where: str, section: str, given: Mapping[str, Any], valid: Sequence[str]) -> None:
    extra = [str(k) for k in given if k not in valid]
    if extra:
        raise ConfigError(f"{where}: unknown key{'s' if len(extra) > 1 else ''} {', '.join(section + k for k in extra)}; valid: {', '.join(valid)}")


def _mapping(where: str, name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: {name} must be a mapping, got {type(value).__name__}")
    return dict(value)


def _strings(where: str, name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {name} must be a list of strings")
    return list(value)


def parse_job_spec(data: Mapping[str, Any], *, base_dir: Path, path: Path | None = None) -> JobSpec:
    """Check a job spec's contents (``base_dir``: what ``working_dir`` is relative to)."""
    where = str(path) if path else "job spec"
    _unknown(where, "", data, SPEC_KEYS)
    resources = _mapping(where, "entrypoint_resources", data.get("entrypoint_resources"))
    _unknown(where, "entrypoint_resources.", resources, RESOURCE_KEYS)
    runtime = _mapping(where, "runtime_env", data.get("runtime_env"))
    _unknown(where, "runtime_env.", runtime, RUNTIME_ENV_KEYS)
    env_vars = {str(k): str(v) for k, v in _mapping(where, "runtime_env.env_vars", runtime.get("env_vars")).items()}
    env_from_client = _strings(where, "env_from_client", data.get("env_from_client"))
    _secret_names(where, "runtime_env.env_vars", list(env_vars))
    _secret_names(where, "env_from_client", env_from_client)
    overrides = _strings(where, "overrides", data.get("overrides"))
    refuse_secrets(where, overrides)
    working_dir = (base_dir / str(runtime.get("working_dir", "."))).resolve()
    if not working_dir.is_dir():
        raise ConfigError(f"{where}: runtime_env.working_dir={runtime.get('working_dir')!r} is not a directory (it is relative to the job spec's folder)")
    try:
        spec = JobSpec(
            space=str(data.get("space") or DEFAULT_SPACE),
            overrides=overrides,
            num_cpus=float(resources.get("num_cpus", 1.0)),
            num_gpus=float(resources.get("num_gpus", 0.0)),
            memory=int(resources["memory"]) if resources.get("memory") else None,
            resources={str(k): float(v) for k, v in _mapping(where, "entrypoint_resources.resources", resources.get("resources")).items()},
            working_dir=working_dir,
            excludes=_strings(where, "runtime_env.excludes", runtime.get("excludes")) if "excludes" in runtime else list(DEFAULT_EXCLUDES),
            env_vars=env_vars if "env_vars" in runtime else {"PYTHONUNBUFFERED": "1"},
            env_from_client=env_from_client,
            extra_runtime_env={k: v for k, v in runtime.items() if k not in ("working_dir", "excludes", "env_vars")},
            description=str(data.get("description") or ""),
            path=path,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: entrypoint_resources must be numbers ({exc})") from exc
    return spec


def load_job_spec(path: str | Path) -> JobSpec:
    """Read and check one ``jobs/*.yaml`` file."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"job spec not found: {file}; pass a file from jobs/ or use --space")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"{file}: a job spec is a mapping with keys {', '.join(SPEC_KEYS)}")
    return parse_job_spec(data, base_dir=file.resolve().parent, path=file)


__all__ = ["DEFAULT_EXCLUDES", "JobSpec", "SPEC_KEYS", "entrypoint", "load_job_spec", "parse_job_spec", "refuse_secrets"]
