"""Metrics with hand-computed numbers; checkpoint directories round-trip weights, state and RNG."""
from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

from harp.config import load_config
from harp.config.schema import OptimConfig
from harp.errors import HarpError
from harp.models import build_model
from harp.train.checkpoint import load_checkpoint, read_config, save_checkpoint, unwrap
from harp.train.lr_schedule import build_lr_schedule
from harp.train.metrics import (
    RunningSums,
    confusion_matrix,
    mean_class_accuracy,
    per_class_accuracy,
    topk_correct,
)
from harp.train.optim import build_optimizer
from harp.train.run import model_config

from .helpers import read_weights_metadata, topk_accuracy


def test_topk_counts_by_hand() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1]])
    labels = torch.tensor([1, 2, 0, 0])
    # row 0: top1 hit; row 1: label 2 is 2nd; row 2: label 0 is 3rd; row 3: top1 hit
    assert topk_correct(logits, labels, (1, 2, 5)) == {1: 2, 2: 3, 5: 4}
    assert topk_accuracy(logits, labels, (1,)) == {1: 0.5}


def test_confusion_and_class_accuracies() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    preds = np.array([0, 1, 0, 1, 1, 0])
    cm = confusion_matrix(preds, labels, 4)
    assert cm.tolist() == [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    acc = per_class_accuracy(cm)
    assert acc[:3].tolist() == pytest.approx([2 / 3, 1.0, 0.0]) and math.isnan(acc[3])
    assert mean_class_accuracy(cm) == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)  # the empty class is left out


def test_running_sums_average_over_ranks_with_gloo(tmp_path) -> None:
    sums = RunningSums()
    sums.add(loss=3.0, clips=2)
    sums.add(loss=1.0, clips=2)
    assert sums.reduce() == {"clips": 4.0, "loss": 4.0}
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        assert sums.reduce() == {"clips": 4.0, "loss": 4.0}
        wrapped = nn.parallel.DistributedDataParallel(nn.Linear(2, 2))
        assert isinstance(unwrap(wrapped), nn.Linear)
    finally:
        dist.destroy_process_group()


def test_checkpoint_directory_round_trip(tmp_path) -> None:
    cfg = load_config(["model.family=cnn3d_attention", "optim.name=sgd", "optim.schedule=cosine"])
    model = build_model(model_config(cfg), 5)
    opt = build_optimizer(model, OptimConfig(name="sgd", lr=0.1))
    sched = build_lr_schedule(opt, cfg.optim, steps_per_epoch=3, epochs=2)
    x = torch.randn(2, 3, 8, 32, 32)
    model(x).sum().backward()
    opt.step()
    sched.step()
    random.seed(5)
    np.random.seed(6)
    torch.manual_seed(7)
    save_checkpoint(tmp_path / "ck", model=model, cfg=cfg, metrics={"val_top1": 0.5, "epoch": 1}, optimizer=opt,
                    scheduler=sched, epoch=1, global_step=3, num_classes=5, class_names=list("abcde"))
    expected_rng = (random.random(), np.random.rand(), torch.rand(1))
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["config.yaml", "metrics.json", "model.safetensors", "state.pt"]
    state = torch.load(tmp_path / "ck" / "state.pt", weights_only=True)  # no pickled objects
    assert state["epoch"] == 1 and state["global_step"] == 3 and state["class_names"] == list("abcde")
    assert json.loads((tmp_path / "ck" / "metrics.json").read_text())["val_top1"] == 0.5
    assert read_config(tmp_path / "ck") == cfg
    assert read_weights_metadata(tmp_path / "ck")["family"] == "cnn3d_attention"

    fresh = build_model(model_config(cfg), 5)
    opt2 = build_optimizer(fresh, OptimConfig(name="sgd", lr=0.1))
    sched2 = build_lr_schedule(opt2, cfg.optim, steps_per_epoch=3, epochs=2)
    loaded = load_checkpoint(tmp_path / "ck", fresh, opt2, sched2, restore_rng=True)
    assert (random.random(), np.random.rand()) == expected_rng[:2] and torch.equal(torch.rand(1), expected_rng[2])
    assert loaded["metrics"]["val_top1"] == 0.5
    model.eval(), fresh.eval()
    torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)
    assert sched2.last_epoch == sched.last_epoch and opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert opt2.state_dict()["state"].keys() == opt.state_dict()["state"].keys()

    wrong = build_model(model_config(cfg), 7)
    with pytest.raises(HarpError, match="does not match the model"):
        load_checkpoint(tmp_path / "ck", wrong)
    with pytest.raises(HarpError, match="not a harp checkpoint"):
        load_checkpoint(tmp_path, fresh)
