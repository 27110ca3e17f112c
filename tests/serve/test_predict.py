"""``harp predict``: the model's own test protocol (the same scores as ``harp evaluate``), folders,
globs, JSON lines, and one line per bad file while the rest go on."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from harp.cli import main as harp
from harp.serve.predict import Predictor, VideoError

from .conftest import synthetic_videos


def test_predict_scores_videos_as_evaluate_does(trained_checkpoint, best_dir, tmp_path):
    """Same clips x crops, same decoding, same averaging: evaluate's per-video predictions and scores."""
    from harp.evaluate import evaluate_checkpoint

    metrics = evaluate_checkpoint(trained_checkpoint, split="test", output_dir=tmp_path / "eval", device="cpu")
    assert (metrics["num_clips"], metrics["num_crops"]) == (2, 3)
    predictor = Predictor(best_dir, device="cpu")
    assert predictor.protocol.views == 6
    with open(tmp_path / "eval" / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 4
    for row in rows:
        prediction = predictor.predict(row["video"])
        assert prediction.video.views.shape == (6, 8, 32, 32, 3)
        assert prediction.top[0][0] == row["predicted"]
        assert prediction.top[0][1] == pytest.approx(float(row["score"]), abs=1e-4)
        assert float(prediction.probabilities.sum()) == pytest.approx(1.0, abs=1e-5)
        assert [p for _, p in prediction.top] == sorted((p for _, p in prediction.top), reverse=True)
        assert len(prediction.top) == 4  # 4 classes: the top-5 is all of them


def test_batched_scores_equal_one_at_a_time(best_dir, synthetic_root):
    predictor = Predictor(best_dir, device="cpu", num_clips=1, num_crops=1)
    videos = [predictor.read(p) for p in synthetic_videos(Path(synthetic_root))]
    together = predictor.probabilities([v.views for v in videos])
    alone = [predictor.probabilities([v.views])[0] for v in videos]
    for a, b in zip(together, alone):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_bad_files_are_one_line_each(best_dir, bad_files):
    predictor = Predictor(best_dir, device="cpu")
    for path in bad_files.values():
        with pytest.raises(VideoError) as caught:
            predictor.read(path)
        message = str(caught.value)
        assert message.startswith(f"{path.name}: ") and "\n" not in message and caught.value.path == path


def test_too_long_video_is_refused(best_dir, synthetic_root):
    predictor = Predictor(best_dir, device="cpu")
    video = synthetic_videos(Path(synthetic_root))[0]
    with pytest.raises(VideoError, match=r"longer than the 0.01 s allowed") as caught:
        predictor.read(video, max_duration_s=0.01)
    assert caught.value.too_long


def test_cli_json_folders_globs_and_bad_files(sweep_dir, synthetic_root, bad_files, capsys):
    root = Path(synthetic_root)
    first_class = sorted(d for d in root.iterdir() if d.is_dir() and d.name != "splits")[0]
    pattern = str(root / "*" / "*_g01_c01.mp4")
    code = harp(["predict", str(first_class), pattern, str(bad_files["text"]), str(bad_files["truncated"]), str(root / "missing.mp4"),
                 "--model", str(sweep_dir), "--json", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 1  # some failed, the rest were predicted
    objects = [json.loads(line) for line in out.splitlines()]
    expected = list(dict.fromkeys([*sorted(first_class.glob("*.mp4")), *sorted(root.glob("*/*_g01_c01.mp4"))]))
    good = [o for o in objects if "error" not in o]
    assert [Path(o["video"]) for o in good] == expected
    assert all(len(o["top"]) == 4 and o["top"][0]["probability"] >= o["top"][-1]["probability"] for o in good)
    errors = {Path(o["video"]).name: o["error"] for o in objects if "error" in o}
    assert set(errors) == {"notes.txt", "truncated.mp4"}
    assert "not a readable video" in errors["notes.txt"]
    lines = err.strip().splitlines()
    assert any("missing.mp4: no such file or folder" in line for line in lines)
    assert sum("notes.txt" in line for line in lines) == 1 and sum("truncated.mp4" in line for line in lines) == 1
    assert lines[-1] == f"harp predict: {len(expected)} predicted, 3 failed"


def test_cli_table(best_dir, synthetic_root, capsys):
    videos = synthetic_videos(Path(synthetic_root))[:2]
    assert harp(["predict", *map(str, videos), "--model", str(best_dir), "--top", "2", "--no-progress", "--batch", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["video", "rank", "label", "probability"]
    assert len(lines) == 1 + 2 * 2
    assert lines[1].startswith(videos[0].name) and lines[2].split()[0] == "2" and lines[3].startswith(videos[1].name)


def test_cli_refuses_without_videos_or_model(best_dir, synthetic_root, tmp_path, capsys):
    assert harp(["predict", str(tmp_path / "*.mp4"), "--model", str(best_dir)]) == 2
    assert "no video to predict" in capsys.readouterr().err
    video = synthetic_videos(Path(synthetic_root))[0]
    assert harp(["predict", str(video), "--model", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip() == f"harp predict: error: {tmp_path / 'nope'} does not exist; pass an export's best/, " \
        "a study cell's best/<cell>/, a sweep directory, or a .safetensors file"
