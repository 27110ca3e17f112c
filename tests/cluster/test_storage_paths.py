"""A sweep directory on remote storage, without Ray: where each part lives (the bucket, or this
driver's own directory), the sweep's files written and read back through the filesystem, export's
upload-over-the-old, the study's one line, and the SQLite study's copy beside a remote sweep as
drivers on different machines hand it on. Against moto's S3 server on 127.0.0.1 (and file://)."""
from __future__ import annotations

import json
import logging
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

import boto3
import pytest
import yaml

from harp.config import load_config
from harp.errors import ConfigError, HarpError
from harp.tune.space import parse_space
from harp.tune.study_copy import (
    STUDY_COPY,
    fetch_study_copy,
    readable_study_url,
    set_aside_stale_study,
    study_line,
    upload_study_copy,
)
from harp.tune.sweep_dir import (
    REMOTE_FILE,
    SWEEP_FILE,
    SweepPaths,
    check_sweep_dir,
    directory_size,
    mark_driver_dir,
    open_sweep_dir,
    read_sweep,
    record_resume_changes,
    recorded_driver_dir,
    sweep_differences,
    sweep_paths,
    train_runs_location,
    write_sweep_files,
)
from harp.tune.sweep_location import mirror_exports


@pytest.fixture
def s3(moto_s3, monkeypatch, tmp_path: Path):
    """moto's endpoint and dummy credentials in the environment (as on a cluster), this test's own
    prefix in the bucket, and HARP_STATE_DIR in the test's temp dir ("machine A")."""
    for key, value in moto_s3.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HARP_STATE_DIR", str(tmp_path / "machine-a"))
    prefix = f"runs-{uuid.uuid4().hex[:8]}"
    client = boto3.client("s3", endpoint_url=moto_s3.endpoint, region_name="us-east-1")
    return moto_s3, f"s3://{moto_s3.bucket}/{prefix}", prefix, client


def _objects(client, bucket: str, prefix: str) -> dict[str, int]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


def _space(tmp_path: Path):
    raw = {"description": "storage test", "params": {"optim.lr": {"type": "loguniform", "low": 1e-3, "high": 1e-2}}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    return parse_space(raw, name="space", path=path), raw


def test_where_each_part_of_a_sweep_lives(s3, tmp_path: Path, monkeypatch):
    server, base, prefix, _ = s3
    paths = sweep_paths(base, "exp")
    assert paths.is_remote and paths.where == f"{base}/exp" and paths.name == "exp" and paths.output_dir == base
    assert paths.storage.path == f"{server.bucket}/{prefix}/exp" and paths.tune_path == f"{server.bucket}/{prefix}/exp/tune"
    assert paths.root == tmp_path / "machine-a" / "sweeps" / "s3" / server.bucket / prefix / "exp"
    assert paths.uri("best", "metrics.json") == f"{base}/exp/best/metrics.json"
    assert paths.optuna_db.parent == paths.root  # what an object store cannot hold stays on the driver
    runs = train_runs_location(paths.where)
    assert runs.path == f"{server.bucket}/{prefix}/exp/train_runs" and runs.value == f"{base}/exp/train_runs"
    assert type(runs.filesystem).__name__ == "S3FileSystem"

    local = sweep_paths(f"file://{tmp_path}/shared/runs", "exp")  # file:// is a local path: SQLite and the lock beside it
    assert not local.is_remote and local.root == tmp_path / "shared" / "runs" / "exp" and local.where == str(local.root)
    monkeypatch.chdir(tmp_path)
    assert sweep_paths("runs", "exp").root == tmp_path / "runs" / "exp"
    assert train_runs_location(str(local.root)).path == str(local.root / "train_runs")


def test_sweep_files_round_trip_through_s3(s3, tmp_path: Path, monkeypatch):
    server, base, prefix, client = s3
    cfg = load_config(["sweep.name=exp", f"sweep.output_dir={base}", "train.epochs=2"])
    space, raw = _space(tmp_path)
    paths = sweep_paths(base, "exp")
    check_sweep_dir(paths, resume=False)  # nothing there yet
    write_sweep_files(cfg, space, paths, raw)
    keys = _objects(client, server.bucket, prefix)
    assert {f"{prefix}/exp/{n}" for n in (SWEEP_FILE, "base_config.yaml", "space.yaml")} <= set(keys)
    assert not (paths.root / SWEEP_FILE).exists()  # nothing of it on the driver's disk

    again, again_space, opened = read_sweep(f"{base}/exp")
    assert opened.where == paths.where and again.train.epochs == 2 and again_space.keys == space.keys
    with pytest.raises(ConfigError, match=rf"^{base}/exp already holds a sweep: continue it with `harp sweep --resume {base}/exp`"):
        check_sweep_dir(paths, resume=False)
    with pytest.raises(ConfigError, match=rf"^{base}/exp holds no Tune state to resume"):
        check_sweep_dir(paths, resume=True)

    changed = load_config(["sweep.name=exp", f"sweep.output_dir={base}", "train.epochs=3"])
    differences = sweep_differences(paths, changed, raw)
    assert differences.config == {"train.epochs": (2, 3)} and not differences.params
    record_resume_changes(paths, changed, differences)
    info = json.loads(client.get_object(Bucket=server.bucket, Key=f"{prefix}/exp/{SWEEP_FILE}")["Body"].read())
    assert info["base_config"]["train"]["epochs"] == 3 and info["resumed_with_changes"][0]["changes"] == {"train.epochs": [2, 3]}
    assert directory_size(paths) == sum(_objects(client, server.bucket, f"{prefix}/exp/").values()) > 0

    # resumed elsewhere, the sweep keeps the driver directory it was started with: Tune's restored
    # searcher reopens its SQLite study at the path it was pickled with
    monkeypatch.setenv("HARP_STATE_DIR", str(tmp_path / "machine-b"))
    elsewhere = sweep_paths(base, "exp")
    assert elsewhere.root != paths.root and recorded_driver_dir(elsewhere).root == paths.root
    assert read_sweep(f"{base}/exp")[2].root == elsewhere.root  # a reader: that directory is not on this machine
    mark_driver_dir(recorded_driver_dir(elsewhere))  # a resume makes it, and marks it with the sweep's URI
    assert read_sweep(f"{base}/exp")[2].root == paths.root
    assert open_sweep_dir(paths.root).where == paths.where and json.loads((paths.root / REMOTE_FILE).read_text())["uri"] == paths.where
    with pytest.raises(ConfigError, match=r"cannot make this driver's directory for it, /dev/null/harp .*sweep.optuna_storage") as err:
        mark_driver_dir(SweepPaths(Path("/dev/null/harp"), paths.remote))
    assert "\n" not in str(err.value)
    with pytest.raises(HarpError, match=rf"^{base}/nothing is not a harp sweep directory \(no sweep.json\)"):
        read_sweep(f"{base}/nothing")


def test_writing_uploads_over_the_old_and_only_on_success(s3):
    server, base, prefix, client = s3
    paths = sweep_paths(base, "exp")
    started = time.time() - 1
    with paths.writing("best") as best:
        (best / "cell").mkdir(parents=True)
        (best / "cell" / "model.safetensors").write_bytes(b"one")
        (best / "metrics.json").write_text("{}")
        staging = best.parent
    assert not staging.exists()  # the local copy is gone once uploaded
    with paths.writing("best") as best:
        best.mkdir()
        (best / "metrics.json").write_text('{"v": 2}')
    keys = _objects(client, server.bucket, f"{prefix}/exp/best")
    assert [k for k in keys if keys[k]] == [f"{prefix}/exp/best/metrics.json"]  # the old cell/ is gone
    with paths.writing("best", "cell", "model.safetensors") as weights:  # a file: uploaded beside what is there
        weights.write_bytes(b"weights")
    mirror_exports(paths)  # what the report reads, without the weights, on this machine
    assert sorted(str(p.relative_to(paths.best)) for p in paths.best.rglob("*") if p.is_file()) == ["metrics.json"]
    assert (paths.best / "metrics.json").read_text() == '{"v": 2}'
    assert not any(p.name.startswith("harp-upload-") for p in Path(tempfile.gettempdir()).iterdir() if p.stat().st_mtime > started)
    with pytest.raises(RuntimeError), paths.writing("best") as best:
        best.mkdir()
        (best / "metrics.json").write_text('{"v": 3}')
        raise RuntimeError("evaluation failed")
    assert paths.read_text("best", "metrics.json") == '{"v": 2}'  # a failed export leaves the last one


def test_the_study_is_stated_in_one_line_without_a_password(s3, tmp_path: Path):
    _, base, _, _ = s3
    remote = sweep_paths(base, "exp")
    cfg = load_config(["sweep.name=exp", f"sweep.output_dir={base}"])
    line = study_line(cfg, remote)
    assert line.startswith(f"study: sqlite:///{remote.root}/optuna.db (local to this driver: set sweep.optuna_storage for a cluster")
    assert f"{base}/exp/optuna.db" in line and "\n" not in line
    local = sweep_paths(str(tmp_path / "runs"), "exp")
    assert study_line(cfg, local) == f"study: sqlite:///{tmp_path}/runs/exp/optuna.db (in the sweep directory)"
    cfg.sweep.optuna_storage = "postgresql+psycopg2://harp:S3cretPw@db.example:5432/studies"
    assert study_line(cfg, remote) == "study: postgresql+psycopg2://***@db.example:5432/studies (sweep.optuna_storage)"


def _study(path: Path, *values: float) -> None:
    """A small SQLite file standing in for a study: its rows say which driver wrote last."""
    with sqlite3.connect(path) as db:
        db.execute("create table if not exists t (v real)")
        db.executemany("insert into t values (?)", [(v,) for v in values])


def _rows(path: Path) -> list[float]:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("select v from t order by rowid")]


def test_the_driver_local_study_is_handed_on_through_its_copy(s3, tmp_path: Path, monkeypatch, caplog):
    _, base, _, _ = s3
    cfg = load_config(["sweep.name=exp", f"sweep.output_dir={base}"])
    a = sweep_paths(base, "exp")
    a.root.mkdir(parents=True)
    _study(a.optuna_db, 1.0)
    upload_study_copy(cfg, a)  # machine A stops its run
    assert a.exists(STUDY_COPY)

    monkeypatch.setenv("HARP_STATE_DIR", str(tmp_path / "machine-b"))
    b = sweep_paths(base, "exp")
    assert b.root != a.root and not b.optuna_db.exists()
    url = readable_study_url(cfg, b)  # `harp status` on B reads a copy beside, never over, a study
    assert url is not None and url.endswith("optuna.copy.db") and not b.optuna_db.exists()
    fetch_study_copy(cfg, b)  # B resumes the sweep: A's study
    assert _rows(b.optuna_db) == [1.0]
    _study(b.optuna_db, 2.0)
    upload_study_copy(cfg, b)

    monkeypatch.setenv("HARP_STATE_DIR", str(tmp_path / "machine-a"))
    fetch_study_copy(cfg, a)  # A again: B's copy is newer than A's own, which A has not changed since
    assert _rows(a.optuna_db) == [1.0, 2.0]
    _study(a.optuna_db, 3.0)  # A's driver is killed: no upload; resumed on A, A's file is the newest
    fetch_study_copy(cfg, a)
    assert _rows(a.optuna_db) == [1.0, 2.0, 3.0]
    assert readable_study_url(cfg, a) == f"sqlite:///{a.optuna_db}"

    monkeypatch.setenv("HARP_STATE_DIR", str(tmp_path / "machine-b"))  # B wrote meanwhile too: both changed
    _study(b.optuna_db, 9.0)
    upload_study_copy(cfg, b)
    monkeypatch.setenv("HARP_STATE_DIR", str(tmp_path / "machine-a"))
    with caplog.at_level(logging.WARNING, logger="harp.tune"):
        fetch_study_copy(cfg, a)
    assert _rows(a.optuna_db) == [1.0, 2.0, 3.0] and "both changed since they were last synced: keeping the local one" in caplog.text

    set_aside_stale_study(cfg, a)  # a fresh sweep at the same URI (the old one deleted): an empty study
    assert not a.optuna_db.exists() and list(a.root.glob("optuna.db.old-*"))

    cfg.sweep.optuna_storage = "sqlite:////nowhere/else.db"  # an RDB of its own: no copies at all
    _study(a.optuna_db, 5.0)
    a.storage.delete(STUDY_COPY)
    upload_study_copy(cfg, a)
    assert not a.exists(STUDY_COPY)
