"""Fixtures for the report and status tests: a copy of the tiny synthetic data set with one video
that does not decode (the data-quality section), one finished and exported sweep on it (ASHA
stops the hopeless trials, a bad pretrained file fails one), and the session's private local Ray.

Sweeps here are as small as still prove the point: 4 classes x 6 clips, two optimiser steps per
epoch, three epochs, one trial at a time."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sweep_spaces import tiny_space
from waiting import wait_for  # noqa: F401  (re-exported: the tests import it from here)

EPOCHS = 3
GOOD_LR, BAD_LR = 3e-3, 1e-6



@pytest.fixture(scope="session")
def report_data(synthetic_config, synthetic_root, tmp_path_factory) -> dict[str, Any]:
    """The ``data`` config of a copy of the synthetic set plus one file that is no video."""
    from harp.config import load_config
    from harp.config.load import to_dict
    from harp.data.manifest import ensure_manifest

    root = tmp_path_factory.mktemp("report-data") / "synthetic"
    shutil.copytree(synthetic_root, root, ignore=shutil.ignore_patterns("harp_manifest*"))
    first_class = sorted(p for p in root.iterdir() if p.is_dir() and p.name != "splits")[0]
    broken = first_class / "broken_g99_c01.mp4"
    broken.write_bytes(b"this is not a video\n" * 64)
    for listing in (root / "splits").glob("train.txt"):  # a split file lists it, as a real data set's would
        listing.write_text(listing.read_text().rstrip("\n") + f"\n{first_class.name}/{broken.name}\n")
    data = {**to_dict(synthetic_config)["data"], "root": str(root)}
    ensure_manifest(load_config(layer={"data": data}).data, progress=False)
    return data


def space_dict(data: dict[str, Any], output_dir: Path, name: str, *, params: dict[str, Any], epochs: int = EPOCHS, **sweep: Any) -> dict[str, Any]:
    """A grid sweep with ASHA on val_loss (grace 1, halving), two optimiser steps per epoch."""
    config = {"train.max_steps_per_epoch": 2, "model.size": "tiny", "eval.num_crops": 1}
    asha = {"searcher": "grid", "scheduler": "asha", "grace_period": 1, "reduction_factor": 2, "metric": "val_loss", "mode": "min", "max_failures": 0}
    space = tiny_space(data, output_dir, name, epochs=epochs, params=params, config=config, description="report test:", **{**asha, **sweep})
    del space["sweep"]["num_samples"]  # a grid: as many trials as points
    return space


@pytest.fixture(scope="session")
def finished_sweep(report_data, tmp_path_factory) -> Path:
    """A finished, exported sweep: two good trials, two hopeless ones (ASHA may stop them) and one
    whose pretrained file is no state dict (FAIL); its best model tested (best/confusion.csv)."""
    from harp.config import load_config
    from harp.export import export_sweep
    from harp.tune.ray_session import ray_session
    from harp.tune.space import base_config, parse_space
    from harp.tune.tuner import run_sweep

    tmp = tmp_path_factory.mktemp("report-sweep")
    bad = tmp / "bad.pth"
    bad.write_bytes(b"not a state dict" * 64)
    params = {
        "model.family": {"type": "grid", "values": ["cnn3d_attention", "tsm"]},
        "optim.lr": {"type": "grid", "values": [GOOD_LR, BAD_LR]},
        "model.pretrained": {"type": "grid", "values": ["none", f"file:{bad}"], "when": {"optim.lr": [BAD_LR], "model.family": ["tsm"]}},
    }
    raw = space_dict(report_data, tmp / "runs", "finished", params=params)
    space = parse_space(raw, name="finished")
    with ray_session(load_config(["sweep.ray_address=local"]), num_cpus=4, num_gpus=0):  # its own Ray, for the sweep only
        outcome = run_sweep(base_config(space), space, raw_space=raw, verbose=0)
    export_sweep(outcome.paths.root, wandb_summary=False)
    return outcome.paths.root


def harp(*args: str) -> list[str]:
    return [sys.executable, "-m", "harp.cli", *args]


def write_space(path: Path, space: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path
