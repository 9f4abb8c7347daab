"""Helpers that test modules import (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from tocsin.model import Event


def make_event(message: str = "", **kw: object) -> Event:
    """Build a log event with sensible defaults for tests."""
    kw.setdefault("time", 1_795_564_800.0)
    kw.setdefault("received", kw["time"])
    kw.setdefault("source", "log")
    kw.setdefault("origin", "/var/log/test.log")
    return Event(message=message, **kw)  # type: ignore[arg-type]


T = TypeVar("T")


@overload
async def eventually(check: Callable[[], Awaitable[T | None]], what: str) -> T: ...
@overload
async def eventually(check: Callable[[], T | None], what: str) -> T: ...
async def eventually(check: Callable[[], Any], what: str) -> Any:
    """Poll `check` until it answers (real processes take real time), or fail saying what."""
    deadline = time.monotonic() + 10.0
    while True:
        answer = check()
        found = await answer if inspect.isawaitable(answer) else answer
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
