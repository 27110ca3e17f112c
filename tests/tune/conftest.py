"""Fixtures for the sweep tests: one private local Ray instance (dashboard on 127.0.0.1, own temp
dir, ``address="local"`` so nothing attaches to another cluster) shared by every test here."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_local():
    from harp.config import load_config
    from harp.tune.ray_session import ray_session

    cfg = load_config(["sweep.ray_address=local"])
    with ray_session(cfg, num_cpus=2, num_gpus=0):
        yield
