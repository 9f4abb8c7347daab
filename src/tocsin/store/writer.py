"""The asyncio side of the store: one thread owns the connection, batches are group-committed."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Self, TypeVar

import structlog

from tocsin.obs import STORE_FAILURES
from tocsin.store.base import CommitBatch, Store, StoreError

__all__ = ["StoreWriter"]

T = TypeVar("T")

_log = structlog.get_logger(__name__)

_FIRST_RETRY_DELAY = 0.1
_MAX_RETRY_DELAY = 5.0


class StoreWriter:
    """Commit batches in order, merging whatever queued up while the last commit ran."""

    def __init__(self, *, store: Store, max_pending: int = 8) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self._store = store
        self._max_pending = max_pending
        self._queue: deque[tuple[CommitBatch, asyncio.Future[None]]] = deque()
        self._in_flight = 0
        # Admission in call order: a submit waiting for room is not overtaken by a later one
        # (asyncio.Lock lets newcomers barge past woken waiters), so snapshots commit in order.
        self._tickets = itertools.count()
        self._admitted = 0  # the ticket admitted next
        self._abandoned: set[int] = set()  # tickets whose caller was cancelled while waiting
        self._submitted = 0
        self._committed = 0
        self._failure: BaseException | None = None
        self._failing_since: float | None = None
        # One condition for every state change: queue grew, queue drained, batches committed.
        self._changed = asyncio.Condition()
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Batches submitted but not yet committed (queued plus those being committed)."""
        return len(self._queue) + self._in_flight

    @property
    def committed(self) -> int:
        """Batches committed since the writer started."""
        return self._committed

    async def __aenter__(self) -> Self:
        """Open the store in the worker thread, so the connection never leaves it."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tocsin-store")
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._store.open)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        self._executor = executor
        self._task = asyncio.create_task(self._run(executor), name="tocsin-store-writer")
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Commit everything submitted, then close the store and stop the thread."""
        if self._task is None:
            return  # abandoned: nothing more is committed
        try:
            await self.flush()
        finally:
            await self._stop()

    async def abandon(self) -> int:
        """Stop without committing what is pending (a shutdown deadline passed).

        Returns how many batches were given up. A commit already running in the thread ends
        on its own (within SQLite's busy timeout); nothing else is started.
        """
        given_up = self.pending
        self._queue.clear()
        task, executor = self._task, self._executor
        self._task = self._executor = None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if executor is not None:
            executor.submit(self._store.close)
            executor.shutdown(wait=False)
        return given_up

    @property
    def failing_since(self) -> float | None:
        """Monotonic time of the first of the current run of failed commits, if any."""
        return self._failing_since

    async def _stop(self) -> None:
        """Stop the commit task and close the store behind anything still in the thread."""
        task, executor = self._task, self._executor
        self._task = self._executor = None
        if task is None or executor is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._store.close)
        finally:
            executor.shutdown(wait=True)

    def _running(self) -> ThreadPoolExecutor:
        """Return the worker thread's executor, or refuse when the writer is not running."""
        if self._executor is None:
            raise RuntimeError("StoreWriter is not running; use it as `async with`")
        if self._failure is not None:
            raise StoreError("the store writer stopped after an unexpected error") from (
                self._failure
            )
        return self._executor

    async def call(self, fn: Callable[[Store], T]) -> T:
        """Run `fn(store)` in the worker thread; it does not wait for pending batches."""
        executor = self._running()
        return await asyncio.get_running_loop().run_in_executor(executor, fn, self._store)

    async def submit(self, batch: CommitBatch) -> asyncio.Future[None]:
        """Queue a batch, which the writer now owns; waits while `max_pending` are queued.

        The returned future completes when the batch is committed (for latency metrics);
        callers that only need ordering and durability at shutdown can ignore it.
        """
        self._running()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not batch:
            done.set_result(None)
            return done
        ticket = next(self._tickets)
        async with self._changed:
            try:
                await self._changed.wait_for(
                    lambda: (
                        (ticket == self._admitted and len(self._queue) < self._max_pending)
                        or self._failure is not None
                    )
                )
            except asyncio.CancelledError:
                self._abandoned.add(ticket)
                self._admit_next()
                raise
            self._running()
            self._queue.append((batch, done))
            self._submitted += 1
            self._abandoned.add(ticket)  # served: skipped like an abandoned one
            self._admit_next()
        return done

    def _admit_next(self) -> None:
        """Move admission past served and abandoned tickets; wake the waiters to look."""
        while self._admitted in self._abandoned:
            self._abandoned.discard(self._admitted)
            self._admitted += 1
        self._changed.notify_all()

    async def flush(self) -> None:
        """Return once every batch submitted before this call is committed."""
        self._running()
        target = self._submitted
        async with self._changed:
            await self._changed.wait_for(
                lambda: self._committed >= target or self._failure is not None
            )
        self._running()

    async def _run(self, executor: ThreadPoolExecutor) -> None:
        """Commit forever; an unexpected error stops the writer and fails its callers."""
        try:
            while True:
                await self._commit_next(executor)
        except Exception as exc:
            _log.exception("store_writer_failed")
            async with self._changed:
                self._failure = exc
                self._changed.notify_all()
            raise

    async def _commit_next(self, executor: ThreadPoolExecutor) -> None:
        """Take every queued batch and commit them as one transaction."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._queue))
            taken = len(self._queue)
            merged = CommitBatch()
            waiting: list[asyncio.Future[None]] = []
            while self._queue:
                batch, done = self._queue.popleft()
                merged.extend(batch)
                waiting.append(done)
            self._in_flight = taken
            self._changed.notify_all()
        await self._commit_until_done(executor, merged, batches=taken)
        for done in waiting:
            if not done.done():
                done.set_result(None)
        async with self._changed:
            self._in_flight = 0
            self._committed += taken
            self._changed.notify_all()

    async def _commit_until_done(
        self, executor: ThreadPoolExecutor, batch: CommitBatch, *, batches: int
    ) -> None:
        """Retry with backoff until the store takes the batch: dropping it would lose state."""
        loop = asyncio.get_running_loop()
        delay = _FIRST_RETRY_DELAY
        while True:
            try:
                await loop.run_in_executor(executor, self._store.commit, batch)
            except StoreError as exc:
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                STORE_FAILURES.inc()
                _log.error(
                    "store_commit_failed", reason=exc.reason, batches=batches, retry_in=delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY_DELAY)
            else:
                self._failing_since = None
                return
