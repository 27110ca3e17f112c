"""Fixtures for the study-table tests: two tiny synthetic data sets with different class counts
(the two data sets of a study), made once per session."""
from __future__ import annotations

import pytest

# Every class in 4 groups of 2 clips: test, validation and train each get whole groups.
SYNTH = {"clips_per_class": 8, "clips_per_group": 2, "min_size": 64, "max_size": 64, "min_frames": 24, "max_frames": 32, "short_fraction": 0.15}
CLASS_COUNTS = (3, 4)


@pytest.fixture(scope="session")
def study_roots(tmp_path_factory):
    """Two synthetic data sets: 3 classes and 4 classes (the second holds the first's and one more)."""
    from harp.config import load_config
    from harp.data.manifest import ensure_manifest
    from harp.data.synthetic import synthesize

    roots = []
    parent = tmp_path_factory.mktemp("study-data")
    for count in CLASS_COUNTS:
        root = parent / f"synthetic-{count}-classes"
        cfg = load_config([*(f"data.synth.{k}={v}" for k, v in SYNTH.items()), f"data.synth.num_classes={count}", f"data.root={root}", "data.num_workers=0"])
        synthesize(cfg.data.synth, root, progress=False)
        ensure_manifest(cfg.data, progress=False)
        roots.append(str(root))
    return roots

