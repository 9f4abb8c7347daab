"""Integration fixtures: no daemon outlives its test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from daemon import RUNNING


@pytest.fixture(autouse=True)
def _no_leftover_daemons() -> Iterator[None]:
    """Kill any daemon process a test started and did not stop."""
    yield
    while RUNNING:
        daemon = RUNNING.pop()
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill9()
