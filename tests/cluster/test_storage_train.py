"""A multi-worker trial's Ray Train run in a sweep directory on S3 (moto on 127.0.0.1): the two
workers write their checkpoints into the bucket through the sweep's filesystem
(``train_runs_location`` -> ``run_torch_trainer(storage_filesystem=...)``), and ``harp.tune.results``
finds the run from the trial's pointer and reads its best checkpoint back through a download that
is gone afterwards."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import boto3
import pytest

from harp.config import load_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_with_s3(moto_s3, tmp_path_factory):
    """A private local Ray started with moto's endpoint and credentials in the environment (Ray's
    processes inherit it, as a cluster's nodes have theirs) and its own TMPDIR for the driver."""
    from harp.tune.ray_session import ray_session

    saved = dict(os.environ)
    os.environ.update(moto_s3.env, HARP_STATE_DIR=str(tmp_path_factory.mktemp("state")), TMPDIR=str(tmp_path_factory.mktemp("user-tmp")))
    try:
        import tempfile

        tempfile.tempdir = None  # tempfile reads TMPDIR again
        with ray_session(load_config(["sweep.ray_address=local"]), num_cpus=3, num_gpus=0):
            yield moto_s3
    finally:
        os.environ.clear()
        os.environ.update(saved)
        tempfile.tempdir = None


def test_a_train_run_of_a_multi_worker_trial_lives_in_the_bucket(ray_with_s3, synthetic_config, synthetic_manifest, tmp_path: Path):
    import tempfile

    from harp.train.ray_train import run_torch_trainer
    from harp.tune.results import best_train_run_checkpoint, train_run_of, write_train_run
    from harp.tune.sweep_dir import sweep_paths, train_runs_location

    server = ray_with_s3
    prefix = f"runs-{uuid.uuid4().hex[:8]}"
    paths = sweep_paths(f"s3://{server.bucket}/{prefix}", "ddp-sweep")
    runs = train_runs_location(paths.where)  # what the trial process gets from the sweep directory it is handed
    cfg = load_config([f"data.root={synthetic_config.data.root}", "data.num_workers=0", "model.size=tiny", "train.batch_size=4",
                       "train.epochs=2", "train.max_steps_per_epoch=2", "train.num_workers=2", "sweep.metric=val_loss", "sweep.mode=min"])
    result = run_torch_trainer(cfg, storage_path=runs.path, storage_filesystem=runs.filesystem, name="trial01", max_failures=0)
    assert result.error is None and result.metrics["epoch"] == 2

    s3 = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=server.bucket, Prefix=f"{prefix}/ddp-sweep/train_runs/trial01/").get("Contents", [])]
    weights = [k for k in keys if k.endswith("/model.safetensors")]
    assert len(weights) == 2, keys  # one checkpoint per epoch, written by the workers into the bucket

    trial_dir = tmp_path / "harp_trial_x"  # the pointer the trial leaves in its Tune trial directory
    write_train_run(trial_dir, runs.value, "trial01")
    assert train_run_of(trial_dir) == f"{paths.where}/train_runs/trial01"
    found = best_train_run_checkpoint(train_run_of(trial_dir), "val_loss", "min")
    assert found is not None and not found.is_local
    assert found.describe().startswith(f"{paths.where}/train_runs/trial01/checkpoint_")
    with found.local_directory() as local:
        metrics = json.loads((local / "metrics.json").read_text())
        assert (local / "model.safetensors").is_file() and local.is_relative_to(tempfile.gettempdir())
    assert metrics["val_loss"] == found.metrics["val_loss"] and not local.exists()  # the download is removed
