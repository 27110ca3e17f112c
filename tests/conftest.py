"""Shared fixtures. Data fixtures: a tiny synthetic video data set, made once per test session.

``synthetic_root``: the folder (4 classes x 6 clips, 64 px, 24-32 frames, some shorter clips);
``synthetic_manifest``: its Parquet manifest; ``synthetic_config``: a HarpConfig pointing at it.
"""
from __future__ import annotations

import pytest

SYNTH_OVERRIDES = (
    "data.synth.num_classes=4",
    "data.synth.clips_per_class=6",
    "data.synth.min_size=64",
    "data.synth.max_size=64",
    "data.synth.min_frames=24",
    "data.synth.max_frames=32",
    "data.synth.short_fraction=0.15",
    "data.num_workers=0",
)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    from harp.config import load_config
    from harp.data.synthetic import synthesize

    root = tmp_path_factory.mktemp("synthetic")
    cfg = load_config([*SYNTH_OVERRIDES, f"data.root={root}"])
    return synthesize(cfg.data.synth, root, progress=False)


@pytest.fixture(scope="session")
def synthetic_config(synthetic_root):
    from harp.config import load_config

    return load_config([*SYNTH_OVERRIDES, f"data.root={synthetic_root}"])


@pytest.fixture(scope="session")
def synthetic_manifest(synthetic_config):
    from harp.data.manifest import ensure_manifest

    return ensure_manifest(synthetic_config.data, progress=False)


@pytest.fixture(scope="module")
def ray_local():
    """A private local Ray (127.0.0.1, own temp dir) for one test module, shut down at the
    module's end: no module sees another's Ray, and the tests that must start their own (a
    simulated cluster, `ray start --head` for jobs, `harp serve`) find none running in-process."""
    from harp.config import load_config
    from harp.tune.ray_session import ray_session

    with ray_session(load_config(["sweep.ray_address=local"]), num_cpus=4, num_gpus=0):
        yield
