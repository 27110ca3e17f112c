"""Ray's token as a client finds it (and a warning for a token file others can read), and
sweep.output_dir resolved to a pyarrow filesystem: file paths, file:// and a real S3 server (moto)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.fs
import pytest

from harp.cluster.auth import TOKEN_PATH_VAR, TOKEN_VAR, find_token, token_file_warning
from harp.cluster.storage import check_writable, resolve_output_dir
from harp.errors import ConfigError, HarpError


@pytest.fixture
def no_ray_env(monkeypatch, tmp_path):
    for var in (TOKEN_VAR, TOKEN_PATH_VAR, "RAY_AUTH_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # Ray's default file: ~/.ray/auth_token
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def test_token_precedence_is_rays(no_ray_env: Path, monkeypatch, tmp_path: Path):
    assert find_token() is None
    default = no_ray_env / ".ray" / "auth_token"
    default.parent.mkdir()
    default.write_text("a" * 64)
    default.chmod(0o600)
    assert find_token().path == default
    named = tmp_path / "cluster_token"
    named.write_text("b" * 64)
    monkeypatch.setenv(TOKEN_PATH_VAR, str(named))
    assert find_token().path == named and find_token().kind == TOKEN_PATH_VAR
    monkeypatch.setenv(TOKEN_VAR, "c" * 64)
    assert find_token().kind == TOKEN_VAR and "c" * 64 not in find_token().describe()
    # Ray's loader and auth mode are process-wide (C++): ask them in a fresh process, as the CLI is
    assert _headers_in_a_client_process() == {"authorization": "Bearer " + "c" * 64}  # Ray's loader, Ray's precedence
    monkeypatch.delenv(TOKEN_VAR)
    assert _headers_in_a_client_process() == {"authorization": "Bearer " + "b" * 64}
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert _headers_in_a_client_process() == {}


def _headers_in_a_client_process() -> dict:
    code = "import json; from harp.cluster.auth import client_headers, find_token; print(json.dumps(client_headers(find_token())))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_missing_or_empty_token_path_is_one_line(no_ray_env: Path, monkeypatch, tmp_path: Path):
    monkeypatch.setenv(TOKEN_PATH_VAR, str(tmp_path / "missing"))
    with pytest.raises(HarpError, match=r"RAY_AUTH_TOKEN_PATH=.*missing: cannot read the token file"):
        find_token()
    (tmp_path / "empty").write_text("\n")
    monkeypatch.setenv(TOKEN_PATH_VAR, str(tmp_path / "empty"))
    with pytest.raises(HarpError, match="the token file is empty"):
        find_token()


def test_a_token_file_others_can_read_is_warned_about(no_ray_env: Path):
    token = no_ray_env / ".ray" / "auth_token"
    token.parent.mkdir()
    token.write_text("d" * 64)
    token.chmod(0o644)
    warning = token_file_warning(find_token())
    assert warning and "readable by other users (mode 644)" in warning and f"chmod 600 {token}" in warning
    assert "d" * 64 not in warning
    token.chmod(0o600)
    assert token_file_warning(find_token()) is None


def test_plain_paths_and_file_uris_resolve_to_the_local_filesystem(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    location = resolve_output_dir("runs")
    assert isinstance(location.filesystem, pyarrow.fs.LocalFileSystem) and location.path == str(tmp_path / "runs")
    location = resolve_output_dir(f"file://{tmp_path}/shared/runs")
    assert location.is_local and location.path == f"{tmp_path}/shared/runs"
    check_writable(location)
    assert (tmp_path / "shared" / "runs").is_dir() and not list((tmp_path / "shared" / "runs").iterdir())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "sweep.output_dir is empty"),
        ("s3:///runs", "sweep.output_dir='s3:///runs': no bucket name; write s3://BUCKET/PREFIX"),
        ("s3://", "no bucket name"),
        ("gs:///runs", "no bucket name; write gs://BUCKET/PREFIX"),
        ("file://relative/runs", "not an absolute file URI"),
        ("nosuchfs://x/y", "pyarrow cannot resolve it (Unrecognized filesystem type"),
        ("s3://AKIAEXAMPLE:SECRETEXAMPLE@bucket/runs", "credentials in the URI"),
    ],
)
def test_a_bad_output_dir_is_one_line_naming_the_key(value: str, expected: str):
    with pytest.raises(ConfigError) as err:
        resolve_output_dir(value)
    message = str(err.value)
    assert expected in message and "\n" not in message and "sweep.output_dir" in message
    assert "SECRETEXAMPLE" not in message


def test_s3_output_dir_on_a_real_s3_server(moto_s3, monkeypatch):
    for key, value in moto_s3.env.items():
        monkeypatch.setenv(key, value)  # endpoint and credentials from the environment, as on a cluster
    location = resolve_output_dir(f"s3://{moto_s3.bucket}/runs")
    assert type(location.filesystem).__name__ == "S3FileSystem" and location.path == f"{moto_s3.bucket}/runs"
    assert location.join("sweep-a", "tune") == f"{moto_s3.bucket}/runs/sweep-a/tune"
    check_writable(location)
    fs = location.filesystem
    with fs.open_output_stream(location.join("sweep-a", "sweep.json")) as out:
        out.write(b'{"name": "sweep-a"}')
    listed = [info.path for info in fs.get_file_info(pyarrow.fs.FileSelector(location.path, recursive=True))]
    assert f"{moto_s3.bucket}/runs/sweep-a/sweep.json" in listed
    assert not [p for p in listed if ".harp-probe" in p]  # the probe is deleted

    import boto3  # the same object, seen by another S3 client

    s3 = boto3.client("s3", endpoint_url=moto_s3.endpoint, region_name="us-east-1")
    assert s3.get_object(Bucket=moto_s3.bucket, Key="runs/sweep-a/sweep.json")["Body"].read() == b'{"name": "sweep-a"}'


def test_a_missing_bucket_is_one_line_before_any_trial(moto_s3, monkeypatch):
    for key, value in moto_s3.env.items():
        monkeypatch.setenv(key, value)
    location = resolve_output_dir("s3://no-such-bucket/runs")
    with pytest.raises(ConfigError) as err:
        check_writable(location)
    message = str(err.value)
    assert message.startswith("sweep.output_dir='s3://no-such-bucket/runs': cannot write there (")
    assert "not found" in message and "\n" not in message
