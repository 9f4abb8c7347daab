"""Deliver one channel's outbox rows in order, deleting each once it is sent (at-least-once).

Rows are committed with the batch whose actions made them, so nothing is lost across a
restart; a row is deleted only after delivery, so a crash in between sends it twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import structlog

from tocsin.model import Outgoing
from tocsin.obs import Throttle
from tocsin.store.base import CommitBatch, Store, StoreError
from tocsin.store.writer import StoreWriter

__all__ = ["OutboxSender", "Send"]

T = TypeVar("T")

# Delivers a prefix of the messages in order and returns how many (0..len); raises when none.
Send = Callable[[Sequence[Outgoing]], Awaitable[int]]

_log = structlog.get_logger(__name__)


class OutboxSender:
    """Page through a channel's rows after a cursor, send them, delete them, wait for more."""

    def __init__(
        self,
        *,
        channel: str,
        writer: StoreWriter,
        send: Send,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        page: int = 500,
        retry_min: float = 0.5,
        retry_max: float = 60.0,
        log_every: float = 60.0,
    ) -> None:
        if page < 1:
            raise ValueError("page must be at least 1")
        if not 0 < retry_min <= retry_max:
            raise ValueError("retries need 0 < retry_min <= retry_max")
        self._channel = channel
        self._writer = writer
        self._send = send
        self._sleep = sleep
        self._jitter = jitter
        self._page = page
        self._retry_min = retry_min
        self._retry_max = retry_max
        self._throttle = Throttle(every=log_every, clock=clock)
        self._woken = asyncio.Event()
        self._ceiling = retry_min  # backoff's upper bound; doubles per failure in a row
        self._failing = 0  # failures since the last success
        self._pending = 0
        self._cursor = 0  # the last row delivered; AUTOINCREMENT ids never go back
        self._deleting: asyncio.Future[None] | None = None  # the last deletion's commit
        self.sent = 0  # messages delivered (and deleted) since start
        self.failures = 0  # failed attempts: send raised or took nothing, or the store failed

    def use(self, send: Send) -> None:
        """Send with `send` from the next message on (a reload changed the receiver)."""
        self._send = send
        self.wake()

    @property
    def pending(self) -> int:
        """Messages waiting: committed or submitted, not yet delivered."""
        return self._pending

    def added(self, n: int) -> None:
        """Count `n` rows of this channel the daemon just submitted."""
        self._pending += n

    def wake(self) -> None:
        """Note that new rows were committed; cheap, so a commit's done-callback may call it."""
        self._woken.set()

    async def run(self) -> None:
        """Send forever; cancel it to stop (undelivered rows stay in the store for next time).

        `pending` starts from the rows the store holds; rows added and committed before that
        first read are counted twice until the outbox next runs dry, when it is set right.
        """
        counts = await self._store(lambda store: store.count_outbox())
        self._pending += counts.get(self._channel, 0)
        while True:
            self._woken.clear()  # before the read, so a commit during it is not missed
            rows = await self._store(self._load_page)
            if not rows:
                await self._idle()
                continue
            delivered = await self._deliver([message for _, message in rows])
            await self._delete([row_id for row_id, _ in rows[:delivered]])
            self._cursor = rows[delivered - 1][0]
            self.sent += delivered
            self._pending = max(0, self._pending - delivered)
            if delivered == len(rows) < self._page and not self._woken.is_set():
                await self._idle()  # that was the last of them, and nothing new was committed

    async def _idle(self) -> None:
        """Wait for wake(); sent everything committed, so only rows in flight are pending."""
        if self._deleting is not None:
            await asyncio.wait({self._deleting})  # our own deletion is not "in flight" work
            self._deleting = None
        if self._writer.pending == 0:
            self._pending = 0  # every submitted batch is committed and sent: undo any drift
        await self._woken.wait()

    def _load_page(self, store: Store) -> list[tuple[int, Outgoing]]:
        """Read the next page after the cursor (in the writer's thread)."""
        return store.load_outbox(self._channel, self._cursor, self._page)

    async def _delete(self, ids: list[int]) -> None:
        """Delete delivered rows with the next commit (no fsync of their own): a crash before
        it sends them again, as the at-least-once contract allows; the cursor skips them now."""
        if ids:
            self._deleting = await self._writer.submit(CommitBatch(delivered=ids))

    async def _deliver(self, messages: list[Outgoing]) -> int:
        """Send until at least the first message is taken; back off between failures."""
        while True:
            try:
                delivered = await self._send(messages)
            except Exception as exc:  # noqa: BLE001 - any send failure is retried, never fatal
                reason = str(exc) or type(exc).__name__
            else:
                if delivered > 0:
                    self._recovered()
                    return min(delivered, len(messages))
                reason = "nothing was delivered"
            await self._back_off("send", reason)

    async def _store(self, fn: Callable[[Store], T]) -> T:
        """Run one store call in the writer's thread, retrying with backoff while it fails."""
        while True:
            try:
                result = await self._writer.call(fn)
            except StoreError as exc:
                await self._back_off("store", exc.reason)
            else:
                self._recovered()
                return result

    async def _back_off(self, stage: str, reason: str) -> None:
        """Count and log (rate-limited) one failure, then wait a jittered, growing delay."""
        self.failures += 1
        self._failing += 1
        self._ceiling = min(self._retry_max, self._ceiling * 2)
        delay = self._retry_min + self._jitter() * (self._ceiling - self._retry_min)
        unlogged = self._throttle.allow(stage)
        if unlogged is not None:
            _log.warning(
                "outbox_failed",
                channel=self._channel,
                stage=stage,
                reason=reason,
                pending=self._pending,
                retry_in=round(delay, 3),
                unlogged=unlogged,
            )
        await self._sleep(delay)

    def _recovered(self) -> None:
        """Reset the backoff after a success, saying so when there were failures."""
        if self._failing:
            _log.info("outbox_recovered", channel=self._channel, failures=self._failing)
        self._failing = 0
        self._ceiling = self._retry_min
