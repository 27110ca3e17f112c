"""Job specs (jobs/*.yaml) and `harp submit --dry-run`: one spec per shipped space, the entrypoint
continues a resubmitted sweep, secrets and relative paths are refused in one line."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harp.cluster.job_env import check_job_paths, running_in_ray_job
from harp.cluster.job_spec import entrypoint, load_job_spec, parse_job_spec
from harp.config import load_config
from harp.errors import ConfigError
from harp.tune.space import shipped_spaces

from .conftest import REPO, client_env, harp

JOBS = REPO / "jobs"


def test_every_shipped_space_has_a_job_spec_that_loads():
    names = {p.stem for p in JOBS.glob("*.yaml")}
    assert set(shipped_spaces()) <= names, set(shipped_spaces()) - names
    for name in shipped_spaces():
        spec = load_job_spec(JOBS / f"{name}.yaml")
        assert spec.space == name
        assert spec.working_dir == REPO  # `working_dir: ..` is relative to the spec file
        assert {".venv", ".git", ".mypy_cache", "data", "runs"} <= set(spec.excludes)
        assert spec.num_cpus >= 0.5 and spec.num_gpus == 0
        assert any(o.startswith("sweep.output_dir=/") for o in spec.overrides)
        text = (JOBS / f"{name}.yaml").read_text()
        assert "WANDB_API_KEY" not in text.split("#")[0] and "api_key" not in text.lower()
        assert "WANDB_PROJECT" in spec.env_from_client


def test_entrypoint_continues_a_resubmitted_sweep():
    line = entrypoint("002_cnn3d_attention_ucf101", ["sweep.output_dir=/shared/runs", "sweep.name=x y"])
    assert line.startswith("harp sweep --space 002_cnn3d_attention_ucf101 --resume-if-exists")
    assert "sweep.ray_address=auto" in line and "'sweep.name=x y'" in line


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"spce": "default"}, "unknown key spce; valid: description, space"),
        ({"runtime_env": {"workdir": "."}}, "unknown key runtime_env.workdir; valid: working_dir"),
        ({"entrypoint_resources": {"cpus": 1}}, "unknown key entrypoint_resources.cpus; valid: num_cpus"),
        ({"runtime_env": {"env_vars": {"WANDB_API_KEY": "abc123"}}}, "runtime_env.env_vars names WANDB_API_KEY: secrets never go"),
        ({"env_from_client": ["WANDB_API_KEY"]}, "env_from_client names WANDB_API_KEY: secrets never go"),
        ({"overrides": ["sweep.optuna_storage=postgresql://harp:s3cret@db/harp"]}, "sweep.optuna_storage carries a password"),
        ({"runtime_env": {"working_dir": "nowhere"}}, "runtime_env.working_dir='nowhere' is not a directory"),
        ({"entrypoint_resources": {"num_cpus": "many"}}, "entrypoint_resources must be numbers"),
    ],
)
def test_a_bad_job_spec_is_one_line(tmp_path: Path, data, expected):
    with pytest.raises(ConfigError) as err:
        parse_job_spec(data, base_dir=tmp_path, path=tmp_path / "job.yaml")
    message = str(err.value)
    assert expected in message and "\n" not in message
    assert "s3cret" not in message and "abc123" not in message


def test_env_from_client_copies_only_what_is_set(tmp_path: Path):
    spec = parse_job_spec({"env_from_client": ["WANDB_PROJECT", "WANDB_ENTITY"]}, base_dir=tmp_path)
    env = spec.runtime_env({"WANDB_PROJECT": "harp-test", "WANDB_API_KEY": "never-sent"})
    assert env["env_vars"]["WANDB_PROJECT"] == "harp-test"
    assert "WANDB_ENTITY" not in env["env_vars"] and "never-sent" not in str(env)
    assert env["working_dir"] == str(tmp_path.resolve())


def test_dry_run_prints_the_job_and_where_the_sweep_goes():
    out = harp("submit", "jobs/002_cnn3d_attention_ucf101.yaml", "--dry-run", "sweep.name=s002")
    assert out.returncode == 0, out.stderr
    assert "entrypoint: harp sweep --space 002_cnn3d_attention_ucf101 --resume-if-exists" in out.stdout
    assert "sweep directory: /shared/runs/s002" in out.stdout
    assert "data.root=/shared/data/UCF-101" in out.stdout


def test_submit_refuses_a_relative_output_dir_before_uploading(tmp_path: Path):
    out = harp("submit", "--space", "default", "--dry-run", "data.root=/shared/data/synthetic-6", "--address", "http://127.0.0.1:9")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "sweep.output_dir='runs' is relative" in lines[0] and "package cache" in lines[0]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("sweep.output_dir=s3:///runs", "sweep.output_dir='s3:///runs': no bucket name; write s3://BUCKET/PREFIX"),
        ("sweep.output_dir=file://rel/runs", "not an absolute file URI"),
        ("sweep.output_dir=s3://AKIA:wJalr@bucket/runs", "sweep.output_dir carries a password in its URL"),
    ],
)
def test_submit_refuses_a_bad_storage_uri_in_one_line(override, expected):
    out = harp("submit", "--space", "default", "--dry-run", "data.root=/d", override, env=client_env())
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], out.stderr
    assert "wJalr" not in out.stderr + out.stdout


def test_spaces_that_sample_relative_data_roots_are_refused_for_jobs():
    out = harp("submit", "jobs/003_five_families.yaml", "--dry-run")
    assert out.returncode == 2
    assert "samples data.root='data/UCF-101', a relative path" in out.stderr


def test_inside_a_job_a_relative_output_dir_is_refused(tmp_path: Path):
    cfg = load_config([])
    package = tmp_path / "runtime_resources" / "working_dir_files" / "_ray_pkg_abc"
    package.mkdir(parents=True)
    assert running_in_ray_job(env={}, cwd=package)
    assert running_in_ray_job(env={"RAY_JOB_CONFIG_JSON_ENV_VAR": "{}"}, cwd=tmp_path)
    assert not running_in_ray_job(env={}, cwd=tmp_path)
    with pytest.raises(ConfigError, match=r"^sweep.output_dir='runs' is relative: inside a Ray Job"):
        check_job_paths(cfg, in_job=True)
    check_job_paths(cfg, in_job=False)  # outside a job the default `runs` is fine
    cfg = load_config(["sweep.output_dir=/shared/runs", "data.root=/shared/data"])
    check_job_paths(cfg, in_job=True)
    cfg = load_config(["sweep.output_dir=s3://bucket/runs", "data.root=/shared/data"])
    check_job_paths(cfg, in_job=True)


def test_job_spec_yaml_round_trip_has_no_literal_secret_anywhere():
    for path in JOBS.glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        env_vars = (data.get("runtime_env") or {}).get("env_vars") or {}
        assert all(not k.upper().endswith(("KEY", "TOKEN", "SECRET", "PASSWORD")) for k in env_vars), path
