"""Fixtures of the training tests."""
from __future__ import annotations

import pytest

from .fake_data import install


@pytest.fixture
def fake_data(monkeypatch):
    """The loop's data set-up routed to in-memory clips; a dict to tweak sizes / bad indices."""
    return install(monkeypatch)
