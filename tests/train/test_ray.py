"""Real Ray: the loop in-process in a Ray Tune trial (resuming after a crash from its own
checkpoint), and a 2-worker TorchTrainer DDP run on CPU whose best checkpoint is evaluated."""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
from pathlib import Path

import pytest

from harp.config import load_config, to_dict
from harp.errors import HarpError
from harp.train.checkpoint_staging import STAGING
from harp.train.loop import REPORTED_METRICS
from harp.train.sessions import complete_checkpoints
from harp.train.val_confusion import VAL_CONFUSION, parse_val_confusion

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_local():
    import ray

    temp = tempfile.mkdtemp(prefix="hr", dir="/tmp")  # short: Ray's socket paths have a length limit
    ray.init(address="local", num_cpus=4, include_dashboard=True, dashboard_host="127.0.0.1",
             _temp_dir=temp, logging_level=logging.WARNING, configure_logging=False)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


def _cfg(synthetic_config, *extra):
    return load_config([f"data.root={synthetic_config.data.root}", "data.num_workers=0", "model.size=tiny",
                        "train.batch_size=4", "train.epochs=2", *extra])


def test_tune_trial_runs_the_loop_in_process_and_resumes_after_a_crash(ray_local, synthetic_config, tmp_path):
    from ray import tune

    cfg = _cfg(synthetic_config)

    def trainable(config):  # a closure: pickled by value into the trial actor
        from harp.config import from_dict
        from harp.train import TuneSession, train_loop

        class CrashOnce(TuneSession):
            def report(self, metrics, checkpoint_dir):
                super().report(metrics, checkpoint_dir)
                with open(config["reports"], "a") as log:  # every epoch the trial reports, over both runs
                    log.write(f"{metrics['epoch']}\n")
                marker = Path(config["marker"])
                if not marker.exists():
                    marker.write_text(str(metrics["epoch"]))
                    raise RuntimeError("simulated worker crash after the first epoch")

        c = from_dict(config["cfg"])
        train_loop(c, CrashOnce(c))

    tuner = tune.Tuner(
        trainable,
        param_space={"cfg": to_dict(cfg), "marker": str(tmp_path / "crashed"), "reports": str(tmp_path / "reports")},
        run_config=tune.RunConfig(name="inproc", storage_path=str(tmp_path / "tune"), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=1)),
    )
    result = tuner.fit()[0]
    assert result.error is None
    assert (tmp_path / "crashed").read_text() == "1"  # it did crash after epoch 1 ...
    assert result.metrics["epoch"] == 2  # ... and finished epoch 2 from epoch 1's checkpoint, not from scratch
    assert set(REPORTED_METRICS) <= set(result.metrics)
    # epoch 1 is not trained twice. (Not read from Tune's progress.csv: a restarted trial's copy is
    # restored from storage, which may predate epoch 1's row; harp's reader fills such gaps from
    # the checkpoints, see test_history_gaps.)
    assert (tmp_path / "reports").read_text().split() == ["1", "2"]
    with result.checkpoint.as_directory() as d:
        assert json.loads((Path(d) / "metrics.json").read_text())["epoch"] == 2
        assert (Path(d) / "model.safetensors").is_file() and (Path(d) / "state.pt").is_file()


def test_two_worker_ddp_run_keeps_its_best_checkpoint_and_evaluates(ray_local, synthetic_config, tmp_path):
    import ray.train

    from harp.data.manifest import load_manifest, manifest_path
    from harp.evaluate import evaluate_checkpoint
    from harp.train.checkpoint import read_config
    from harp.train.ray_train import POLL_INTERVAL_ENV, POLL_INTERVAL_S, run_torch_trainer
    from harp.tune.results import TrialRecord, best_train_run_checkpoint, validation_confusion

    cfg = _cfg(synthetic_config, "train.num_workers=2", "train.epochs=3", "sweep.metric=val_loss", "sweep.mode=min")
    with pytest.raises(HarpError, match="finite"):
        run_torch_trainer(cfg, storage_path=tmp_path, name="x", max_failures=-1)
    with pytest.raises(HarpError, match="divisible"):  # checked before paying the start-up
        run_torch_trainer(load_config([f"data.root={synthetic_config.data.root}", "train.num_workers=2", "train.batch_size=3"]),
                          storage_path=tmp_path, name="x")

    log = tmp_path / "reports.jsonl"

    class Record(ray.train.UserCallback):  # runs on the Train controller, sees every report
        def after_report(self, run_context, metrics, checkpoint):
            import os

            with open(log, "a") as handle:
                handle.write(json.dumps({**metrics[0], "poll_interval": os.environ.get(POLL_INTERVAL_ENV)}) + "\n")

    result = run_torch_trainer(cfg, storage_path=tmp_path, name="ddp", num_to_keep=2, callbacks=[Record()])
    assert result.error is None
    assert result.metrics["num_workers"] == 2 and result.metrics["epoch"] == 3
    reports = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["epoch"] for r in reports] == [1, 2, 3]
    assert {r["poll_interval"] for r in reports} == {POLL_INTERVAL_S}  # the controller polls its workers every 0.5 s, not 2 s
    # num_to_keep=2 scored by val_loss (min): the two best epochs survive (plus the latest, which Ray keeps to resume)
    two_best = sorted(sorted(reports, key=lambda r: r["val_loss"])[:2], key=lambda r: r["epoch"])
    kept = sorted(json.loads((p / "metrics.json").read_text())["epoch"] for p in Path(result.path).iterdir() if p.is_dir() and p.name.startswith("checkpoint_"))
    assert kept == sorted({r["epoch"] for r in two_best} | {3})
    # checkpoints were staged in the run and moved into place: nothing staged is left behind, each is whole
    assert not (Path(result.path) / STAGING).exists()
    assert [epoch for epoch, _, _ in complete_checkpoints(Path(result.path))] == kept
    # the best, found from the Train run's own results (not the latest)
    found = best_train_run_checkpoint(Path(result.path), "val_loss", "min")
    assert found is not None
    best = found.path
    assert json.loads((best / "metrics.json").read_text())["val_loss"] == min(r["val_loss"] for r in reports)
    saved = read_config(best)
    assert saved.train.threads and saved.train.threads >= 1, "the run records the threads it trained with"
    assert saved == dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=saved.train.threads))
    # its val confusion was counted over both ranks' shares of the val split, and the W&B callback
    # reads it from the file; a checkpoint without the file (older harp) is evaluated instead
    names, matrix = parse_val_confusion((best / VAL_CONFUSION).read_text())
    val_clips = sum(map(sum, matrix))
    best_metrics = json.loads((best / "metrics.json").read_text())
    assert val_clips == len(load_manifest(manifest_path(cfg.data)).query("split == 'val'"))
    assert sum(matrix[i][i] for i in range(len(names))) / val_clips == pytest.approx(best_metrics["val_top1"])
    record = TrialRecord(trial_id="t", params={}, status="TERMINATED", path=None, train_run=str(result.path))
    assert validation_confusion(record, metric="val_loss", mode="min") == (names, matrix)
    (best / VAL_CONFUSION).unlink()
    # ... which counts the same: the loop's tally is what a fresh evaluation of the val split gives
    assert validation_confusion(record, metric="val_loss", mode="min") == (names, matrix)
    # DDP-unwrapped weights load into a plain model and evaluate with multiple views
    metrics = evaluate_checkpoint(best, num_clips=2, num_crops=3, output_dir=tmp_path / "eval")
    assert metrics["num_videos"] > 0 and 0.0 <= metrics["top1"] <= metrics["top5"] <= 1.0
    assert ray.train.Result.from_path(result.path).metrics["epoch"] == 3
