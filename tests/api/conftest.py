"""Fixtures for the API tests: a real ApiServer over a real SQLite file (see apikit)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from apikit import ApiKit


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiKit]:
    """A running API with the kit's tokens (viewer, operator, admin, one bare) and open reads."""
    with ApiKit(tmp_path) as kit:
        yield kit
