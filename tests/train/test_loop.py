"""The per-worker loop on in-memory clips: learning, metrics, checkpoints, exact resume, accumulation."""
from __future__ import annotations

import json
import math

import pytest
import torch

from harp.config import load_config
from harp.errors import HarpError
from harp.models import build_model
from harp.train import LocalSession, train_loop
from harp.train.checkpoint import load_checkpoint, read_state
from harp.train.loop import REPORTED_METRICS
from harp.train.run import model_config
from harp.train.val_confusion import VAL_CONFUSION, parse_val_confusion

# 4 frames of 16 px keep each step in milliseconds; the model pools adaptively so any size works.
BASE = ["model.family=cnn3d_attention", "model.size=tiny", "model.frames=4", "model.frame_size=16", "train.batch_size=8", "optim.lr=0.02", "data.num_workers=0"]


def _cfg(tmp_path, *extra):
    return load_config([*BASE, f"train.output_dir={tmp_path}", *extra])


def _weights(run_dir, epoch):
    cfg = load_config([], run_dir / "checkpoints" / f"epoch_{epoch:04d}" / "config.yaml")
    model = build_model(model_config(cfg), 4)
    load_checkpoint(run_dir / "checkpoints" / f"epoch_{epoch:04d}", model)
    return model.state_dict()


def test_local_run_learns_reports_every_metric_and_keeps_best_checkpoints(tmp_path, fake_data):
    fake_data["train"] = 48
    cfg = _cfg(tmp_path, "train.epochs=4", "sweep.metric=val_top1")
    lines = []
    session = LocalSession(cfg, tmp_path / "run", keep=1, on_report=lambda m, d: lines.append((m, d)))
    history = train_loop(cfg, session)
    assert [m["epoch"] for m in history] == [1, 2, 3, 4]
    for metrics in history:
        assert set(REPORTED_METRICS) <= set(metrics)
        assert all(math.isfinite(float(metrics[k])) for k in REPORTED_METRICS)
        assert 0.0 <= metrics["data_wait_frac"] <= 1.0 and metrics["clips_per_s"] > 0
        assert metrics["skipped_files"] == 0
    assert max(m["val_top1"] for m in history) >= 0.6, history  # 4 classes: chance is 0.25
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_top5"] == 1.0  # k capped at the 4 classes
    # cosine schedule: lr falls to ~0 by the last step
    assert history[-1]["lr"] < 0.1 * cfg.optim.lr
    # best (by val_top1) and latest kept; the others deleted; symlinks point at them
    run = tmp_path / "run"
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    best_epoch = max(history, key=lambda m: m["val_top1"])["epoch"]  # first of ties
    assert (run / "best").resolve().name == f"epoch_{best_epoch:04d}"
    assert (run / "latest").resolve().name == "epoch_0004"
    assert set(kept) == {f"epoch_{best_epoch:04d}", "epoch_0004"}
    saved = json.loads((run / "latest" / "metrics.json").read_text())
    assert saved["val_top1"] == pytest.approx(history[-1]["val_top1"])
    state = read_state(run / "latest")  # weights_only=True
    assert state["epoch"] == 4 and state["global_step"] == 4 * (48 // 8)
    assert len(lines) == 4 and (run / "history.jsonl").read_text().count("\n") == 4
    # each checkpoint carries the val confusion of the validation that scored it
    for epoch in (best_epoch, 4):
        names, matrix = parse_val_confusion((run / "checkpoints" / f"epoch_{epoch:04d}" / VAL_CONFUSION).read_text())
        metrics = history[epoch - 1]
        clips = sum(map(sum, matrix))
        assert len(names) == 4 and clips == fake_data["val"]
        assert sum(matrix[i][i] for i in range(4)) / clips == pytest.approx(metrics["val_top1"])


def test_resume_is_exact(tmp_path, fake_data):
    # a persistent loader worker whose random flips come from the item key's generator, as in the real pipeline
    straight = _cfg(tmp_path, "data.num_workers=1", "train.epochs=3", "optim.name=sgd", "optim.lr=0.01", "optim.schedule=step", "optim.milestones=[2]")
    train_loop(straight, LocalSession(straight, tmp_path / "a", keep=5))
    first = load_config([], tmp_path / "a" / "checkpoints" / "epoch_0001" / "config.yaml")
    # a second run that stopped after epoch 1 resumes from its checkpoint
    b = tmp_path / "b"
    short = _cfg(tmp_path, "data.num_workers=1", "train.epochs=1", "optim.name=sgd", "optim.lr=0.01", "optim.schedule=step", "optim.milestones=[2]")
    train_loop(short, LocalSession(short, b, keep=5))
    # the schedule must be the 3-epoch one: resume with the full config
    resumed = LocalSession(first, b, keep=5, resume_from=tmp_path / "a" / "checkpoints" / "epoch_0001")
    history = train_loop(first, resumed)
    assert [m["epoch"] for m in history] == [2, 3]
    assert [p.name for p, _ in resumed.checkpoints] == ["epoch_0001", "epoch_0002", "epoch_0003"]  # ranking continues
    a_w, b_w = _weights(tmp_path / "a", 3), _weights(b, 3)
    for key in a_w:
        assert torch.equal(a_w[key], b_w[key]), key
    a_hist = [json.loads(line) for line in (tmp_path / "a" / "history.jsonl").read_text().splitlines()]
    assert history[-1]["val_loss"] == pytest.approx(a_hist[-1]["val_loss"], rel=0, abs=0)
    assert history[-1]["lr"] == pytest.approx(0.001)  # gamma 0.1 after the epoch-2 milestone


def test_loader_workers_change_neither_the_data_nor_the_dropout_stream(tmp_path, fake_data):
    common = ["train.epochs=2", "model.dropout=0.5", "optim.name=sgd", "optim.lr=0.01", "optim.schedule=none"]
    inline, workers = _cfg(tmp_path, *common, "data.num_workers=0"), _cfg(tmp_path, *common, "data.num_workers=2")
    h0 = train_loop(inline, LocalSession(inline, tmp_path / "w0"))
    h2 = train_loop(workers, LocalSession(workers, tmp_path / "w2"))
    assert [m["train_loss"] for m in h0] == [m["train_loss"] for m in h2]
    w0, w2 = _weights(tmp_path / "w0", 2), _weights(tmp_path / "w2", 2)
    for key in w0:
        assert torch.equal(w0[key], w2[key]), key


def test_gradient_accumulation_matches_the_full_batch(tmp_path, fake_data):
    common = ["train.epochs=1", "model.dropout=0.0", "optim.name=sgd", "optim.lr=0.05", "optim.schedule=none", "optim.l2=0.01"]
    full = _cfg(tmp_path, *common)
    accum = _cfg(tmp_path, *common, "train.grad_accum_steps=4")
    h1 = train_loop(full, LocalSession(full, tmp_path / "full"))
    h2 = train_loop(accum, LocalSession(accum, tmp_path / "accum"))
    assert h1[0]["global_step"] == h2[0]["global_step"] == 4
    w1, w2 = _weights(tmp_path / "full", 1), _weights(tmp_path / "accum", 1)
    for key in w1:
        torch.testing.assert_close(w1[key], w2[key], rtol=1e-4, atol=1e-5)


def test_skip_budget_fails_loudly_naming_the_files(tmp_path, fake_data):
    fake_data["bad"] = frozenset({3, 7, 11})
    cfg = _cfg(tmp_path, "train.epochs=1", "data.max_bad_fraction=0.05")
    with pytest.raises(HarpError, match="broken_7.mp4"):
        train_loop(cfg, LocalSession(cfg, tmp_path / "run"))
    ok = _cfg(tmp_path, "train.epochs=1", "data.max_bad_fraction=0.5")
    history = train_loop(ok, LocalSession(ok, tmp_path / "run2"))
    assert history[0]["skipped_files"] == 3


def test_batch_size_must_split_over_workers_and_accumulation(tmp_path, fake_data):
    cfg = _cfg(tmp_path, "train.epochs=1", "train.batch_size=6", "train.grad_accum_steps=4")
    with pytest.raises(HarpError, match="divisible"):
        train_loop(cfg, LocalSession(cfg, tmp_path / "run"))
    cfg = _cfg(tmp_path, "train.epochs=1", "sampling.num_frames=8")  # BASE sets model.frames=4
    with pytest.raises(HarpError, match="sampling.num_frames=8"):
        train_loop(cfg, LocalSession(cfg, tmp_path / "run"))


def test_bf16_autocast_step_cap_smoothing_and_clipping(tmp_path, fake_data):
    cfg = _cfg(tmp_path, "train.epochs=2", "train.precision=bf16", "train.max_steps_per_epoch=2", "optim.label_smoothing=0.1",
               "train.clip_grad_norm=0.5", "train.grad_accum_steps=2", "optim.schedule=cosine", "optim.warmup_epochs=1")
    history = train_loop(cfg, LocalSession(cfg, tmp_path / "run"))
    assert [m["global_step"] for m in history] == [2, 4]  # 2 optimiser steps (of 2 micro-batches each) per epoch
    assert all(math.isfinite(m["train_loss"]) and math.isfinite(m["val_loss"]) for m in history)
    assert history[0]["lr"] == pytest.approx(cfg.optim.lr)  # end of the 1-epoch warmup


def test_without_a_val_split_val_metrics_are_nan_and_training_goes_on(tmp_path, fake_data):
    fake_data["val"] = 0
    cfg = _cfg(tmp_path, "train.epochs=1", "train.max_steps_per_epoch=1")
    history = train_loop(cfg, LocalSession(cfg, tmp_path / "run"))
    assert math.isnan(history[0]["val_top1"]) and math.isnan(history[0]["val_loss"])
    assert math.isfinite(history[0]["train_loss"]) and (tmp_path / "run" / "best" / "model.safetensors").is_file()
    assert not (tmp_path / "run" / "best" / VAL_CONFUSION).exists()  # nothing validated, no confusion


def test_divergence_fails_with_a_clear_error(tmp_path, fake_data):
    cfg = _cfg(tmp_path, "train.epochs=1", "optim.name=sgd", "optim.lr=1e12", "optim.schedule=none", "optim.momentum=0.0")
    with pytest.raises(HarpError, match="diverged"):
        train_loop(cfg, LocalSession(cfg, tmp_path / "run"))
