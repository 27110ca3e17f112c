"""Fixtures of the serving tests: a model trained here on the session's synthetic data set (one
short epoch: what it predicts is not the point, that its file is all the tools need is), laid out
the ways ``--model`` accepts; tiny models that do know the synthetic motion classes (trained on
first use, for the explanation tests); and the kinds of bad files users send."""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from .trained_models import TrainedModel, train_tiny

TRAIN_OVERRIDES = (
    "model.family=cnn3d_attention",
    "model.size=tiny",
    "train.epochs=1",
    "train.batch_size=4",
    "train.max_steps_per_epoch=2",
    "wandb.mode=disabled",
    "eval.num_clips=2",
    "eval.num_crops=3",
)


@pytest.fixture(scope="session")
def trained_checkpoint(synthetic_config, synthetic_manifest, tmp_path_factory) -> Path:
    """A training run's checkpoint directory (weights, state, config, metrics)."""
    from harp.commands.train import train_local
    from harp.config import load_config
    from harp.config.load import to_dict

    cfg = load_config(TRAIN_OVERRIDES, layer=to_dict(synthetic_config))
    result = train_local(cfg, tmp_path_factory.mktemp("serve-run") / "run", quiet=True)
    return Path(result["best"])


@pytest.fixture(scope="session")
def sweep_dir(trained_checkpoint, tmp_path_factory) -> Path:
    """A sweep directory (its sweep.json from the real writer) whose export's best/ holds only the
    weights file: no config.yaml, no state.pt, so everything must come from the file's metadata."""
    from harp.train.checkpoint import read_config
    from harp.tune.space import parse_space
    from harp.tune.sweep_dir import SweepPaths, write_sweep_files

    paths = SweepPaths(tmp_path_factory.mktemp("serve-sweep") / "sweep")
    write_sweep_files(read_config(trained_checkpoint), parse_space({}, name="serve-test"), paths, {})
    paths.best.mkdir()
    shutil.copyfile(trained_checkpoint / "model.safetensors", paths.best / "model.safetensors")
    return paths.root


@pytest.fixture(scope="session")
def best_dir(sweep_dir) -> Path:
    return sweep_dir / "best"


@pytest.fixture(scope="session")
def motion_model(tmp_path_factory) -> Callable[[str], TrainedModel]:
    """``motion_model(family)``: that family's tiny model trained on the synthetic motion classes
    (``trained_models.RECIPES``), trained the first time a test asks for it, once per session, on
    one thread (repeatable weights; tiny batches gain nothing from a second thread on a busy machine)."""
    root = tmp_path_factory.mktemp("motion-models")
    trained: dict[str, TrainedModel] = {}

    def get(family: str) -> TrainedModel:
        if family not in trained:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                trained[family] = train_tiny(family, root / family)
            finally:
                torch.set_num_threads(threads)
        return trained[family]

    return get


@pytest.fixture(scope="session")
def bad_files(synthetic_root, tmp_path_factory) -> dict[str, Path]:
    """A text file, random bytes named .mp4, and a real mp4 cut in half."""
    folder = tmp_path_factory.mktemp("bad-videos")
    text = folder / "notes.txt"
    text.write_text("not a video\n")
    noise = folder / "noise.mp4"
    noise.write_bytes(bytes(range(256)) * 64)
    real = sorted(Path(synthetic_root).rglob("*.mp4"))[0].read_bytes()
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(real[: len(real) // 3])
    return {"text": text, "noise": noise, "truncated": truncated}


def synthetic_videos(root: Path, per_class: int = 1) -> list[Path]:
    """The first ``per_class`` videos of each class folder."""
    return [p for d in sorted(q for q in root.iterdir() if q.is_dir() and q.name != "splits") for p in sorted(d.glob("*.mp4"))[:per_class]]
