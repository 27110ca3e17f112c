"""Weights that describe themselves: a best/model.safetensors alone rebuilds its model, and
``--model`` finds it in the layouts users have (best/, a study cell, a sweep directory, the file)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open

from harp.errors import HarpError
from harp.models import build_model
from harp.serve import load_model, resolve_weights
from harp.train.checkpoint import load_checkpoint, read_config, read_model_card, read_state
from harp.train.run import model_config


def test_metadata_carries_what_rebuilds_and_feeds_the_model(trained_checkpoint):
    with safe_open(str(trained_checkpoint / "model.safetensors"), framework="pt") as handle:
        meta = handle.metadata()
    cfg = read_config(trained_checkpoint)
    assert meta["family"] == "cnn3d_attention" and meta["size"] == "tiny"
    assert int(meta["frames"]) == 8 and int(meta["frame_size"]) == 32 and int(meta["num_classes"]) == 4
    assert json.loads(meta["class_names"]) == read_state(trained_checkpoint)["class_names"]
    assert json.loads(meta["mean"]) == pytest.approx([0.45, 0.45, 0.45]) and json.loads(meta["std"]) == pytest.approx([0.225] * 3)
    assert json.loads(meta["options"]) == {} and "eval:" in meta["config"]
    card = read_model_card(trained_checkpoint / "model.safetensors")
    assert card.config == cfg and card.num_classes == 4 and card.config.eval.num_crops == 3


def test_the_file_alone_gives_the_trained_model(trained_checkpoint, best_dir):
    assert sorted(p.name for p in best_dir.iterdir()) == ["model.safetensors"]  # no config.yaml, no state.pt
    model, card = load_model(best_dir, "cpu")
    assert not model.training and card.class_names == tuple(read_state(trained_checkpoint)["class_names"])
    reference = build_model(model_config(read_config(trained_checkpoint)), 4)
    load_checkpoint(trained_checkpoint, reference)
    reference.eval()
    x = torch.randn(2, 3, card.frames, card.frame_size, card.frame_size)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)


def test_model_paths_users_pass(sweep_dir, best_dir, tmp_path):
    weights = best_dir / "model.safetensors"
    assert resolve_weights(sweep_dir) == weights  # a sweep directory means its best/
    assert resolve_weights(best_dir) == weights
    assert resolve_weights(weights) == weights
    study = tmp_path / "best"
    for cell in ("ucf101__tsm", "ucf101__mdt"):
        (study / cell).mkdir(parents=True)
        shutil.copyfile(weights, study / cell / "model.safetensors")
    assert resolve_weights(study / "ucf101__tsm") == study / "ucf101__tsm" / "model.safetensors"
    with pytest.raises(HarpError, match=r"2 study cells \(ucf101__mdt, ucf101__tsm\); pass one of them"):
        resolve_weights(study)
    with pytest.raises(HarpError, match="does not exist"):
        resolve_weights(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarpError, match="holds no model"):
        resolve_weights(tmp_path / "empty")
    unexported = tmp_path / "unexported"
    shutil.copytree(sweep_dir, unexported, ignore=shutil.ignore_patterns("best"))
    with pytest.raises(HarpError, match="has no best/ yet; run `harp export"):
        resolve_weights(unexported)


def test_weights_from_before_the_metadata_fall_back_to_their_neighbours(trained_checkpoint, tmp_path):
    """An old checkpoint (family/epoch/num_classes only) still loads through config.yaml and state.pt."""
    from safetensors.torch import load_file, save_file

    old = tmp_path / "old"
    shutil.copytree(trained_checkpoint, old)
    tensors = load_file(str(old / "model.safetensors"))
    save_file(tensors, str(old / "model.safetensors"), metadata={"family": "cnn3d_attention", "epoch": "1", "num_classes": "4"})
    model, card = load_model(old, "cpu")
    assert card.frames == 8 and card.class_names == tuple(read_state(trained_checkpoint)["class_names"])
    (old / "state.pt").unlink()
    with pytest.raises(HarpError, match="does not name its classes"):
        read_model_card(old / "model.safetensors")
    (old / "notes.safetensors").write_text("not weights")
    with pytest.raises(HarpError, match="not a readable safetensors file"):
        read_model_card(old / "notes.safetensors")
