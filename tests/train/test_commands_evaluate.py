"""`harp train` and `harp evaluate` on the real synthetic videos; multi-view scores averaged per video."""
from __future__ import annotations

import csv
import json

import pytest
import torch

from harp.cli import main as harp


@pytest.fixture(scope="module")
def trained(synthetic_config, tmp_path_factory):
    """One short local run through the CLI (1 worker: in-process, no Ray)."""
    out = tmp_path_factory.mktemp("train")
    root = synthetic_config.data.root
    args = ["train", "--name", "cli", f"data.root={root}", "data.num_workers=0", "train.epochs=2", "train.batch_size=4",
            f"train.output_dir={out}", "optim.schedule=exponential", "optim.gamma=0.5", "optim.warmup_epochs=0.5"]
    return out / "cli", args


def test_harp_train_prints_epochs_and_where_the_checkpoints_are(trained, capsys):
    run_dir, args = trained
    assert harp(args) == 0
    text = capsys.readouterr().out
    assert "epoch 1/2" in text and "epoch 2/2" in text and "val_top1" in text
    assert f"best checkpoint:  {(run_dir / 'best').resolve()}" in text
    assert "harp evaluate" in text
    assert (run_dir / "config.yaml").is_file() and (run_dir / "latest" / "state.pt").is_file()
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]


def test_harp_evaluate_averages_softmax_over_clips_and_crops(trained, synthetic_config, tmp_path, capsys):
    from harp.data.loader import build_dataset
    from harp.data.transforms import to_model_input
    from harp.models import build_model
    from harp.train.checkpoint import load_checkpoint, read_config
    from harp.train.run import model_config, resolve_run

    run_dir, args = trained
    if not (run_dir / "best").exists():
        assert harp(args) == 0
    best = run_dir / "best"
    assert harp(["evaluate", str(best), "--clips", "2", "--crops", "3", "--output", str(tmp_path / "ev")]) == 0
    text = capsys.readouterr().out
    assert "2 clips x 3 crops" in text and "top-1" in text and "mean class accuracy" in text
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    n = metrics["num_videos"]
    rows = list(csv.reader(open(tmp_path / "ev" / "confusion.csv")))
    cm = [[int(v) for v in row[1:]] for row in rows[1:]]
    assert rows[0][1:] == list(metrics["per_class_accuracy"]) and sum(map(sum, cm)) == n
    assert metrics["top1"] == pytest.approx(sum(cm[i][i] for i in range(len(cm))) / n)
    assert (tmp_path / "ev" / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the same numbers by hand: 6 views per video, softmax, mean, argmax
    cfg = read_config(best)
    run = resolve_run(cfg)
    model = build_model(model_config(cfg), len(run.class_names))
    load_checkpoint(best, model)
    model.eval()
    dataset = build_dataset(cfg, "test", False, run.frames, run.frame_size, num_views_clips=2, num_crops=3)
    assert len(dataset) == n
    predictions = list(csv.DictReader(open(tmp_path / "ev" / "predictions.csv")))
    correct = 0
    with torch.no_grad():
        for i in range(n):
            item = dataset[i]
            assert item["video"].shape[0] == 6
            probs = model(to_model_input(item["video"], run.model.mean, run.model.std)).softmax(-1).mean(0)
            assert predictions[i]["predicted"] == run.class_names[int(probs.argmax())]
            assert float(predictions[i]["score"]) == pytest.approx(float(probs.max()), abs=1e-4)
            correct += int(probs.argmax()) == item["label"]
    assert metrics["top1"] == pytest.approx(correct / n)


def test_harp_train_resume_continues_the_run_in_its_directory(trained, capsys):
    run_dir, args = trained
    if not (run_dir / "latest").exists():
        assert harp(args) == 0
    assert harp(["train", "--resume", str(run_dir), "train.epochs=3"]) == 0  # config from the checkpoint
    text = capsys.readouterr().out
    assert "epoch 3/3" in text and "epoch 1/3" not in text and "epoch 2/3" not in text
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history][-3:] == [1, 2, 3]
    assert (run_dir / "latest").resolve().name == "epoch_0003"


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert harp(["evaluate", str(tmp_path)]) == 2
    assert "no config.yaml" in capsys.readouterr().err
    assert harp(["train", "train.batch_size=0"]) == 2
    assert "train.batch_size" in capsys.readouterr().err
    assert harp(["train", "--resume", str(tmp_path), "train.epochs=1"]) == 2
    assert "--resume" in capsys.readouterr().err
