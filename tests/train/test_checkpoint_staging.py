"""A TorchTrainer run's checkpoints are moved into the run directory (a rename on the same
filesystem), not copied there by Ray; storage this node cannot see, or an object store, keeps
Ray's upload. Ray Train's own StorageContext, on real folders."""
from __future__ import annotations

import shutil

import pyarrow.fs

from harp.train.checkpoint_staging import STAGING, move_into_run, staging_root


def _storage(root, name="run", filesystem=None):
    from ray.train.v2._internal.execution.storage import StorageContext

    return StorageContext(storage_path=str(root), experiment_dir_name=name, storage_filesystem=filesystem)


def _staged(root, text="weights"):
    root.mkdir(parents=True, exist_ok=True)
    folder = root / "epoch-0001-x"
    folder.mkdir()
    (folder / "model.safetensors").write_text(text)
    (folder / "metrics.json").write_text("{}")
    return folder


def test_a_checkpoint_staged_in_the_run_is_renamed_into_place_not_copied(tmp_path):
    from ray.train import Checkpoint

    storage = _storage(tmp_path)
    root = staging_root(storage)
    assert root == tmp_path / "run" / STAGING  # Ray validated the run directory: the marker is there
    staged = _staged(root)
    inode = (staged / "model.safetensors").stat().st_ino

    persisted = move_into_run(Checkpoint.from_directory(str(staged)), "checkpoint_2026-12-02_00-00-00.000", storage=storage)

    destination = tmp_path / "run" / "checkpoint_2026-12-02_00-00-00.000"
    assert persisted.path == str(destination)
    assert isinstance(persisted.filesystem, pyarrow.fs.LocalFileSystem)
    assert not staged.exists()
    assert (destination / "model.safetensors").stat().st_ino == inode  # the same file: no byte copied
    assert sorted(p.name for p in destination.iterdir()) == ["metrics.json", "model.safetensors"]


def test_when_the_name_is_taken_ray_copies_as_it_would_have(tmp_path):
    from ray.train import Checkpoint

    storage = _storage(tmp_path)
    taken = tmp_path / "run" / "checkpoint_a"
    taken.mkdir(parents=True)
    (taken / "other").write_text("x")  # a non-empty folder cannot be renamed over
    staged = _staged(staging_root(storage), "new weights")

    persisted = move_into_run(Checkpoint.from_directory(str(staged)), "checkpoint_a", storage=storage)

    assert persisted.path == str(taken)
    assert (taken / "model.safetensors").read_text() == "new weights"
    assert staged.exists()  # Ray's copy leaves the source; the session deletes it after report


def test_storage_this_node_cannot_see_or_not_a_local_filesystem_keeps_rays_upload(tmp_path):
    storage = _storage(tmp_path)
    (tmp_path / "run" / ".validate_storage_marker").unlink()  # what a head-node-only path looks like elsewhere
    assert staging_root(storage) is None

    wrapped = pyarrow.fs.SubTreeFileSystem(str(tmp_path / "sub"), pyarrow.fs.LocalFileSystem())
    (tmp_path / "sub").mkdir()
    assert staging_root(_storage("store", filesystem=wrapped)) is None
    assert staging_root(object()) is None  # not a StorageContext at all


def test_harp_clean_counts_a_killed_workers_staging_folder_among_a_trials_checkpoints(tmp_path):
    from harp.tune.clean import trial_checkpoints
    from harp.tune.results import TrialRecord

    run = tmp_path / "train_runs" / "t1"
    for name in ("checkpoint_a", "checkpoint_b"):
        (run / name).mkdir(parents=True)
    _staged(run / STAGING)  # a worker killed while it saved epoch 1
    record = TrialRecord(trial_id="t1", params={}, status="TERMINATED", path=None, train_run=str(run))
    assert trial_checkpoints(record) == [run / "checkpoint_a", run / "checkpoint_b", run / STAGING]
    shutil.rmtree(run / STAGING)
    assert trial_checkpoints(record) == [run / "checkpoint_a", run / "checkpoint_b"]
