"""The daemon's desks behind the API: durable changes to silences and maintenance windows.

Every change is written to the store (its own fsync'd transaction) before the engine uses
it and before the API answers, so what an operator was told took effect survives kill -9.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import cast

import structlog

from tocsin import obs
from tocsin.engine.muting import Muter
from tocsin.mute.matchers import Matchers
from tocsin.mute.oneoff import OneOffWindow, WindowError
from tocsin.mute.schedule import MaintenanceWindow
from tocsin.mute.silences import Silence, SilenceBook, SilenceError, SilenceState
from tocsin.store.base import StoreError
from tocsin.store.writer import StoreWriter

__all__ = ["Maintenance", "Silences", "load_silences", "load_windows"]

log = structlog.get_logger("tocsin")


async def load_silences(writer: StoreWriter) -> SilenceBook:
    """Every saved silence; a damaged record is reported and skipped, never fatal."""
    loaded: list[Silence] = []
    for data in await writer.call(lambda s: s.load_silences()):
        try:
            loaded.append(Silence.from_dict(json.loads(data)))
        except (SilenceError, ValueError) as exc:
            log.error("silence_unreadable", problem=str(exc), record=data[:200])
    return SilenceBook(silences=loaded)


async def load_windows(writer: StoreWriter) -> list[OneOffWindow]:
    """Every saved API-made window; a damaged record is reported and skipped."""
    loaded: list[OneOffWindow] = []
    for data in await writer.call(lambda s: s.load_windows()):
        try:
            loaded.append(OneOffWindow.from_dict(json.loads(data)))
        except (WindowError, ValueError) as exc:
            log.error("maintenance_window_unreadable", problem=str(exc), record=data[:200])
    return loaded


class Silences:
    """The daemon's SilenceDesk: a change is saved durably before the engine sees it."""

    def __init__(self, *, book: SilenceBook, muter: Muter, writer: StoreWriter) -> None:
        self.book = book
        self.muter = muter
        self.writer = writer
        self._lock = asyncio.Lock()  # one change at a time: validate, save, then apply

    def list(self, state: str | None) -> list[Silence]:
        """Return silences, oldest first."""
        now = time.time()
        if state is None:
            return self.book.list(now=now)
        return self.book.list(state=cast(SilenceState, state), now=now)

    def get(self, silence_id: str) -> Silence | None:
        """Return one silence."""
        return self.book.get(silence_id)

    async def add(
        self, *, matchers: Matchers, starts_at: float, ends_at: float, created_by: str, comment: str
    ) -> Silence:
        """Validate, save (one fsync'd transaction), then let the engine use it."""
        async with self._lock:
            scratch = SilenceBook(silences=self.book.list(now=time.time()))
            silence = scratch.add(
                matchers=matchers,
                starts_at=starts_at,
                ends_at=ends_at,
                created_by=created_by,
                comment=comment,
                now=time.time(),
            )
            await self._save(silence)
            self.book.restore(silence)
            self.muter.silences_changed()
        obs.SILENCES.labels("created").inc()
        log.info("silence_created", **silence.to_dict())
        return silence

    async def expire(self, silence_id: str) -> Silence:
        """End a silence now, saved before it takes effect."""
        async with self._lock:
            scratch = SilenceBook(silences=self.book.list(now=time.time()))
            silence = scratch.expire(silence_id, now=time.time())
            await self._save(silence)
            self.book.restore(silence)
            self.muter.silences_changed()
        obs.SILENCES.labels("expired").inc()
        log.info("silence_expired", id=silence_id)
        return silence

    async def _save(self, silence: Silence) -> None:
        data = json.dumps(silence.to_dict())
        await self.writer.call(lambda s: s.save_silence(silence.id, silence.ends_at, data))


class Maintenance:
    """The daemon's MaintenanceDesk: config windows, plus one-off ones made through the API."""

    def __init__(
        self,
        *,
        configured: Sequence[MaintenanceWindow],
        made: Sequence[OneOffWindow],
        muter: Muter,
        writer: StoreWriter,
    ) -> None:
        self.configured = tuple(configured)
        self.made = {w.name: w for w in made}
        self.muter = muter
        self.writer = writer
        # One change at a time: each reads, awaits the store, then writes back.
        self._lock = asyncio.Lock()
        self._apply()

    def _apply(self) -> None:
        made = [w.window for w in self.made.values()]
        self.muter.set_windows([*self.configured, *(w for w in made if w is not None)])

    def list(self) -> tuple[tuple[MaintenanceWindow, ...], list[OneOffWindow]]:
        """The configured windows and the API-made ones, oldest first."""
        return self.configured, sorted(self.made.values(), key=lambda w: (w.created_at, w.name))

    async def add(
        self,
        *,
        name: str,
        matchers: Matchers,
        start: float,
        end: float,
        created_by: str,
        comment: str,
        remind_before: float | None,
    ) -> OneOffWindow:
        """Create a one-off window, saved before it takes effect; names are never reused."""
        async with self._lock:
            if name.strip() in self.made or any(w.name == name.strip() for w in self.configured):
                raise WindowError(f"a maintenance window named {name.strip()} already exists")
            window = OneOffWindow.create(
                name=name,
                matchers=matchers,
                start=start,
                end=end,
                created_by=created_by,
                comment=comment,
                now=time.time(),
                remind_before=remind_before,
            )
            await self._save(window)
        log.info("maintenance_window_created", **window.to_dict())
        return window

    async def end(self, name: str) -> OneOffWindow:
        """End an API-made window now (config windows change in the config)."""
        async with self._lock:
            window = self.made.get(name)
            if window is None:
                raise WindowError(f"no API-made maintenance window named {name}")
            ended = window.end_now(time.time())
            await self._save(ended)
        log.info("maintenance_window_ended", name=name)
        return ended

    async def remind(self) -> None:
        """Log, once, each window whose end is within its remind_before.

        A store that fails is not fatal here: the reminder is logged again at a later tick.
        """
        now = time.time()
        for name in [w.name for w in self.made.values() if w.reminder_due(now)]:
            async with self._lock:
                window = self.made[name]
                if not window.reminder_due(now):
                    continue
                log.warning(
                    "maintenance_window_ending",
                    name=window.name,
                    ends_in_seconds=round(window.end - now),
                    created_by=window.created_by,
                    comment=window.comment,
                )
                obs.MAINTENANCE_REMINDERS.inc()
                try:
                    await self._save(replace(window, reminded=True))
                except StoreError as exc:
                    log.error("maintenance_reminder_not_saved", name=name, reason=exc.reason)

    async def _save(self, window: OneOffWindow) -> None:
        data = json.dumps(window.to_dict())
        await self.writer.call(lambda s: s.save_window(window.name, data))
        self.made[window.name] = window
        self._apply()
