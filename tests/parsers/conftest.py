"""Shared helpers for the parser tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest


def _utc(  # noqa: PLR0917 - reads like datetime()
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> float:
    """Return the epoch of a UTC wall-clock time."""
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC).timestamp()


@pytest.fixture
def utc() -> Callable[..., float]:
    """Give tests the epoch of a UTC time, so expected values read like dates."""
    return _utc


@pytest.fixture
def received() -> float:
    """Give tests a read time no parsed stamp coincides with."""
    return 1_800_000_000.25
