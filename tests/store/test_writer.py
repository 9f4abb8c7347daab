"""StoreWriter on a real SQLite file: group commit, order, backpressure, retries, shutdown."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tocsin.model import FileIdentity, FileOffset, Incident, IncidentState
from tocsin.store.base import CommitBatch, HistoryEntry, Store, StoreError
from tocsin.store.sqlite import SqliteStore
from tocsin.store.writer import StoreWriter


def make_incident(incident_id: int, *, count: int = 1) -> Incident:
    """Build a minimal incident."""
    return Incident(
        id=incident_id,
        fingerprint=f"fp-{incident_id}",
        rule="r",
        key="k",
        title="t",
        state=IncidentState.NEW,
        priority="P3",
        impact="low",
        urgency="low",
        first_seen=1.0,
        last_seen=2.0,
        count=count,
    )


def step(number: int) -> CommitBatch:
    """Build the engine's `number`-th batch: it bumps incident 1, logs it, and moves an offset."""
    return CommitBatch(
        incidents=[make_incident(1, count=number)],
        history=[
            HistoryEntry(
                incident_id=1,
                time=float(number),
                from_state="new",
                to_state="new",
                actor="engine",
                note=str(number),
            )
        ],
        offsets=[
            FileOffset(
                path="/var/log/a",
                identity=FileIdentity(dev=1, ino=2, fp_len=3, fp_hash="h"),
                offset=number,
            )
        ],
    )


def commits() -> float:
    """Return how many store transactions were committed in this process so far."""
    return REGISTRY.get_sample_value("tocsin_store_commits_total") or 0.0


def failures() -> float:
    """Return how many store transactions failed in this process so far."""
    return REGISTRY.get_sample_value("tocsin_store_failures_total") or 0.0


class HookedStore(SqliteStore):
    """A SqliteStore that runs a test hook before each commit and records what it committed."""

    def __init__(self, *, path: Path, hook: Callable[[CommitBatch], None]) -> None:
        super().__init__(path=path)
        self.hook = hook
        self.committed: list[list[int]] = []  # history notes of each transaction

    def commit(self, batch: CommitBatch) -> None:
        """Run the hook, then commit and note which steps went into this transaction."""
        self.hook(batch)
        super().commit(batch)
        self.committed.append([int(entry.note) for entry in batch.history])


def read_back(path: Path) -> tuple[Incident | None, list[str], int]:
    """Return incident 1, its history notes, and the offset of /var/log/a from the file."""
    store = SqliteStore(path=path)
    store.open()
    try:
        offsets = store.load_offsets()
        offset = offsets["/var/log/a"].offset if offsets else 0
        notes = [entry.note for entry in store.incident_history(1)]
        return store.get_incident(1), notes, offset
    finally:
        store.close()


async def test_queued_batches_are_committed_as_one_transaction(tmp_path: Path) -> None:
    """Test that batches submitted while the writer is busy share one transaction."""
    path = tmp_path / "tocsin.db"
    before = commits()
    async with StoreWriter(store=SqliteStore(path=path), max_pending=64) as writer:
        for number in range(1, 51):
            await writer.submit(step(number))
        assert writer.pending == 50
        await writer.flush()
        assert (writer.pending, writer.committed) == (0, 50)
    assert commits() - before == 1
    incident, notes, offset = read_back(path)
    assert incident == make_incident(1, count=50)
    assert notes == [str(number) for number in range(1, 51)]
    assert offset == 50


async def test_order_is_kept_across_many_group_commits(tmp_path: Path) -> None:
    """Test that under backpressure groups stay small, in order, and the last snapshot wins."""
    path = tmp_path / "tocsin.db"
    store = HookedStore(path=path, hook=lambda batch: None)
    total, max_pending = 500, 16
    before = commits()
    async with StoreWriter(store=store, max_pending=max_pending) as writer:
        for number in range(1, total + 1):
            await writer.submit(step(number))
        await writer.flush()
    transactions = commits() - before
    assert math.ceil(total / max_pending) <= transactions <= 2 * math.ceil(total / max_pending)
    assert [number for group in store.committed for number in group] == list(range(1, total + 1))
    incident, notes, offset = read_back(path)
    assert incident == make_incident(1, count=total)
    assert notes == [str(number) for number in range(1, total + 1)]
    assert offset == total


async def test_submit_waits_while_max_pending_batches_are_queued(tmp_path: Path) -> None:
    """Test the backpressure: a full queue holds the producer until the commit finishes."""
    started, release = threading.Event(), threading.Event()

    def block(batch: CommitBatch) -> None:
        started.set()
        assert release.wait(10)

    store = HookedStore(path=tmp_path / "tocsin.db", hook=block)
    async with StoreWriter(store=store, max_pending=2) as writer:
        await writer.submit(step(1))
        assert await asyncio.to_thread(started.wait, 10)
        await writer.submit(step(2))
        await writer.submit(step(3))
        fourth = asyncio.create_task(writer.submit(step(4)))
        done, _ = await asyncio.wait({fourth}, timeout=0.2)
        assert not done
        assert writer.pending == 3
        release.set()
        await fourth
        await writer.flush()
    assert store.committed == [[1], [2, 3], [4]]


async def test_failed_commit_is_retried_without_dropping_or_reordering(tmp_path: Path) -> None:
    """Test that a transient StoreError is counted and retried, and later batches wait behind it."""
    path = tmp_path / "tocsin.db"
    attempts: list[int] = []
    failed = threading.Event()

    def fail_first(batch: CommitBatch) -> None:
        attempts.append(len(batch.history))
        if len(attempts) == 1:
            failed.set()
            raise StoreError("disk I/O error")

    store = HookedStore(path=path, hook=fail_first)
    failed_before, committed_before = failures(), commits()
    async with StoreWriter(store=store) as writer:
        await writer.submit(step(1))
        # Step 1 has failed once; step 2 must now queue behind its retry, not join it.
        assert await asyncio.to_thread(failed.wait, 10)
        await writer.submit(step(2))
        await writer.flush()
    assert failures() - failed_before == 1
    assert commits() - committed_before == 2
    assert attempts == [1, 1, 1]
    assert store.committed == [[1], [2]]
    _, notes, offset = read_back(path)
    assert (notes, offset) == (["1", "2"], 2)


async def test_unexpected_error_fails_flush_instead_of_hanging(tmp_path: Path) -> None:
    """Test that a bug in a store stops the writer loudly rather than blocking flush forever."""

    def explode(batch: CommitBatch) -> None:
        raise RuntimeError("bug")

    writer = StoreWriter(store=HookedStore(path=tmp_path / "tocsin.db", hook=explode))

    async def use() -> None:
        async with writer:
            await writer.submit(step(1))
            await writer.flush()

    with pytest.raises(StoreError, match="unexpected error") as raised:
        await use()
    assert isinstance(raised.value.__cause__, RuntimeError)
    with pytest.raises(RuntimeError, match="not running"):
        await writer.submit(step(2))


async def test_exit_commits_everything_then_closes(tmp_path: Path) -> None:
    """Test that leaving the context commits what was submitted without an explicit flush."""
    path = tmp_path / "tocsin.db"
    async with StoreWriter(store=SqliteStore(path=path)) as writer:
        for number in range(1, 4):
            await writer.submit(step(number))
    assert read_back(path)[1] == ["1", "2", "3"]
    with pytest.raises(RuntimeError, match="not running"):
        await writer.flush()


async def test_call_runs_in_the_thread_that_owns_the_connection(tmp_path: Path) -> None:
    """Test that `call` reaches the connection opened in the worker thread (sqlite3 checks it)."""
    async with StoreWriter(store=SqliteStore(path=tmp_path / "tocsin.db")) as writer:
        await writer.submit(step(7))
        await writer.flush()

        def where(store: Store) -> tuple[str, int]:
            return threading.current_thread().name, store.next_incident_id()

        thread, next_id = await writer.call(where)
    assert thread.startswith("tocsin-store")
    assert next_id == 2


async def test_a_waiting_submit_is_not_overtaken(tmp_path: Path) -> None:
    """Test FIFO admission: with the queue full, submits are admitted in call order, also
    when a waiter is cancelled, so a later snapshot never commits before an earlier one."""
    store = SqliteStore(path=tmp_path / "w.db")
    order: list[int] = []
    gate = threading.Event()
    original = store.commit

    def slow_commit(batch: CommitBatch) -> None:
        gate.wait(5)
        order.extend(o.offset for o in batch.offsets)
        original(batch)

    store.commit = slow_commit  # type: ignore[method-assign]
    async with StoreWriter(store=store, max_pending=1) as writer:

        def batch(n: int) -> CommitBatch:
            identity = FileIdentity(dev=1, ino=n, fp_len=0, fp_hash="")
            return CommitBatch(offsets=[FileOffset(f"/p{n}", identity, n)])

        await writer.submit(batch(1))  # taken by the writer, blocked on the gate
        await writer.submit(batch(2))  # fills the queue
        waiters = [asyncio.create_task(writer.submit(batch(n))) for n in (3, 4, 5)]
        await asyncio.sleep(0)
        waiters[1].cancel()  # 4 gives up its turn
        await asyncio.sleep(0)
        # A newcomer whose first step runs right when room appears, before the woken waiters.
        late: list[asyncio.Task[asyncio.Future[None]]] = []
        notify = writer._changed.notify_all

        def notify_and_barge() -> None:
            if gate.is_set() and not late:
                late.append(asyncio.ensure_future(writer.submit(batch(6))))
            notify()

        writer._changed.notify_all = notify_and_barge  # type: ignore[method-assign]
        gate.set()
        await asyncio.gather(waiters[0], waiters[2])
        await asyncio.gather(*late)
        await writer.flush()
    assert waiters[1].cancelled()
    assert order == [1, 2, 3, 5, 6]
