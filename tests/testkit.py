"""Helpers that test modules import (fixtures live in conftest.py)."""

from __future__ import annotations

from tocsin.model import Event


def make_event(message: str = "", **kw: object) -> Event:
    """Build a log event with sensible defaults for tests."""
    kw.setdefault("time", 1_795_564_800.0)
    kw.setdefault("received", kw["time"])
    kw.setdefault("source", "log")
    kw.setdefault("origin", "/var/log/test.log")
    return Event(message=message, **kw)  # type: ignore[arg-type]
