"""OutboxSender on a real SQLite file through a real StoreWriter: order, retries, restarts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tocsin.model import Outgoing
from tocsin.outbox import OutboxSender
from tocsin.store.base import CommitBatch, StoreError
from tocsin.store.sqlite import SqliteStore
from tocsin.store.writer import StoreWriter

CHANNEL = "mqtt:local"

Step = int | Exception | None  # take that many / raise it / hang until cancelled


def message(n: int, channel: str = CHANNEL) -> Outgoing:
    """Build the n-th message; its payload says which it is."""
    return Outgoing(channel, "temp", {"topic": "t", "payload": f"m{n}", "qos": 1, "retain": False})


def names(*numbers: int) -> list[str]:
    """Return the payloads of messages `numbers`."""
    return [f"m{n}" for n in numbers]


class Receiver:
    """The far end of a channel: records what it took; takes part, fails or hangs on demand."""

    def __init__(self, *plan: Step) -> None:
        self.plan = list(plan)  # one step per call; when it runs out, every call takes all
        self.got: list[str] = []
        self.sizes: list[int] = []  # how many messages each call offered
        self.gate: asyncio.Event | None = None  # when set: each call waits for it first

    async def send(self, messages: Sequence[Outgoing]) -> int:
        """Take a prefix of `messages` as the plan says."""
        self.sizes.append(len(messages))
        if self.gate is not None:
            await self.gate.wait()
        step = self.plan.pop(0) if self.plan else len(messages)
        if step is None:
            await asyncio.Event().wait()
            raise AssertionError("unreachable: the sender is cancelled while hanging")
        if isinstance(step, Exception):
            raise step
        self.got.extend(m.body["payload"] for m in messages[:step])
        return step


class Sleeps:
    """A sleep that records the delay and returns at once (after one turn of the loop)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


class CountingStore(SqliteStore):
    """A real store that counts page reads and can fail the first few of them."""

    def __init__(self, *, path: Path, failing_loads: int = 0) -> None:
        super().__init__(path=path)
        self.loads = 0
        self.failing_loads = failing_loads

    def load_outbox(self, channel: str, after: int, limit: int) -> list[tuple[int, Outgoing]]:
        """Count the read; fail it while `failing_loads` remain."""
        self.loads += 1
        if self.failing_loads:
            self.failing_loads -= 1
            raise StoreError("disk I/O error")
        return super().load_outbox(channel, after, limit)


async def until(condition: Callable[[], bool]) -> None:
    """Wait (polling, at most 5 s) until `condition` holds."""
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 - the state changes in the store's thread too
            await asyncio.sleep(0.001)


@contextlib.asynccontextmanager
async def running(sender: OutboxSender) -> AsyncIterator[None]:
    """Run the sender for the block, then cancel it."""
    task = asyncio.create_task(sender.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def commit(writer: StoreWriter, sender: OutboxSender, *messages: Outgoing) -> None:
    """Submit messages as the daemon does: count them, and wake the sender once committed."""
    done = await writer.submit(CommitBatch(outbox=list(messages)))
    sender.added(sum(m.channel == CHANNEL for m in messages))
    done.add_done_callback(lambda _: sender.wake())


def make_sender(writer: StoreWriter, receiver: Receiver, **options: object) -> OutboxSender:
    """Build a sender for CHANNEL with a recording sleep, no jitter and a frozen log clock."""
    options.setdefault("sleep", Sleeps())
    return OutboxSender(
        channel=CHANNEL,
        writer=writer,
        send=receiver.send,
        clock=lambda: 0.0,
        jitter=lambda: 1.0,
        **options,  # type: ignore[arg-type]
    )


async def waiting(writer: StoreWriter) -> dict[str, int]:
    """Return the store's per-channel count of unsent rows."""
    return await writer.call(lambda store: store.count_outbox())


async def test_committed_rows_are_sent_in_order_and_deleted(tmp_path: Path) -> None:
    """Test that rows of several batches go out in commit order, a page at a time, then vanish."""
    receiver = Receiver()
    store = CountingStore(path=tmp_path / "t.db")
    async with StoreWriter(store=store) as writer:
        sender = make_sender(writer, receiver, page=2)
        async with running(sender):
            await until(lambda: store.loads == 1)  # started: the daemon starts senders first
            await commit(writer, sender, message(1), message(2), message(3, "mqtt:other"))
            await commit(writer, sender, message(4), message(5))
            await until(lambda: sender.sent == 4)
            assert receiver.got == names(1, 2, 4, 5)
            assert max(receiver.sizes) == 2
            assert (sender.pending, sender.failures) == (0, 0)
            await writer.flush()  # deletions go with the next commit
            assert await waiting(writer) == {"mqtt:other": 1}


async def test_rows_committed_during_a_send_are_sent_next(tmp_path: Path) -> None:
    """Test that a wake() arriving while a page is being sent is not lost."""
    receiver = Receiver()
    receiver.gate = asyncio.Event()
    store = CountingStore(path=tmp_path / "t.db")
    async with StoreWriter(store=store) as writer:
        sender = make_sender(writer, receiver)
        async with running(sender):
            await until(lambda: store.loads == 1)
            await commit(writer, sender, message(1))
            await until(lambda: len(receiver.sizes) == 1)
            await commit(writer, sender, message(2))
            await writer.flush()
            assert sender.pending == 2
            first, receiver.gate = receiver.gate, asyncio.Event()
            first.set()
            await until(lambda: len(receiver.sizes) == 2)
            assert (sender.sent, sender.pending) == (1, 1)
            receiver.gate.set()
            await until(lambda: sender.sent == 2)
            assert sender.pending == 0
    assert receiver.got == names(1, 2)


async def test_partial_delivery_resends_only_the_rest(tmp_path: Path) -> None:
    """Test that a send taking a prefix leads to the remainder being offered next, in order."""
    receiver = Receiver(2, 1)
    sleeps = Sleeps()
    async with StoreWriter(store=SqliteStore(path=tmp_path / "t.db")) as writer:
        await writer.submit(CommitBatch(outbox=[message(n) for n in range(1, 6)]))
        await writer.flush()
        sender = make_sender(writer, receiver, sleep=sleeps)
        async with running(sender):
            await until(lambda: sender.sent == 5)
        await writer.flush()  # deletions go with the next commit
        assert await waiting(writer) == {}
    assert sender.pending == 0
    assert receiver.sizes == [5, 3, 2]
    assert receiver.got == names(1, 2, 3, 4, 5)
    assert (sleeps.delays, sender.failures) == ([], 0)


async def test_failures_back_off_exponentially_and_retry_the_same_rows(tmp_path: Path) -> None:
    """Test that raising or taking nothing backs off (capped), is logged once, and is retried."""
    receiver = Receiver(OSError("broker down"), 0, ConnectionResetError(), 1, ValueError("x"))
    sleeps = Sleeps()
    async with StoreWriter(store=SqliteStore(path=tmp_path / "t.db")) as writer:
        sender = make_sender(writer, receiver, sleep=sleeps, retry_min=0.5, retry_max=1.5)
        with capture_logs() as logs:
            async with running(sender):
                await commit(writer, sender, message(1), message(2))
                await until(lambda: sender.sent == 2)
    assert receiver.got == names(1, 2)
    assert receiver.sizes == [2, 2, 2, 2, 1, 1]
    # Doubling from 0.5, capped at 1.5; a success starts again from the bottom.
    assert sleeps.delays == [1.0, 1.5, 1.5, 1.0]
    assert sender.failures == 4
    failed = [e for e in logs if e["event"] == "outbox_failed"]
    assert [(e["stage"], e["reason"], e["unlogged"]) for e in failed] == [
        ("send", "broker down", 0)
    ]
    recovered = [e["failures"] for e in logs if e["event"] == "outbox_recovered"]
    assert recovered == [3, 1]


async def test_store_errors_back_off_too(tmp_path: Path) -> None:
    """Test that a failing store read is retried after a delay instead of ending the sender."""
    receiver = Receiver()
    sleeps = Sleeps()
    store = CountingStore(path=tmp_path / "t.db", failing_loads=2)
    async with StoreWriter(store=store) as writer:
        await writer.submit(CommitBatch(outbox=[message(1)]))
        sender = make_sender(writer, receiver, sleep=sleeps)
        async with running(sender):
            await until(lambda: sender.sent == 1)
    assert receiver.got == names(1)
    assert (sleeps.delays, sender.failures) == ([1.0, 2.0], 2)


async def test_a_restart_resends_what_was_not_delivered(tmp_path: Path) -> None:
    """Test that rows not yet deleted when tocsin stops are sent by the next run, and only those."""
    path = tmp_path / "t.db"
    first = Receiver(2, None)
    async with StoreWriter(store=SqliteStore(path=path)) as writer:
        sender = make_sender(writer, first)
        async with running(sender):
            await commit(writer, sender, *(message(n) for n in range(1, 6)))
            await until(lambda: sender.sent == 2 and len(first.sizes) == 2)
    assert first.got == names(1, 2)

    second = Receiver()
    second.gate = asyncio.Event()
    async with StoreWriter(store=SqliteStore(path=path)) as writer:
        sender = make_sender(writer, second)
        async with running(sender):
            await until(lambda: len(second.sizes) == 1)
            assert sender.pending == 3  # read from the store at start
            second.gate.set()
            await until(lambda: sender.sent == 3)
            assert sender.pending == 0
        await writer.flush()  # deletions go with the next commit
        assert await waiting(writer) == {}
    assert second.got == names(3, 4, 5)


async def test_pending_settles_when_the_outbox_runs_dry(tmp_path: Path) -> None:
    """Test that rows both added and already in the store at start are not left counted twice."""
    receiver = Receiver()
    receiver.gate = asyncio.Event()
    async with StoreWriter(store=SqliteStore(path=tmp_path / "t.db")) as writer:
        sender = make_sender(writer, receiver)
        await commit(writer, sender, message(1), message(2))
        await writer.flush()
        async with running(sender):
            await until(lambda: len(receiver.sizes) == 1)
            assert sender.pending == 4  # the start-up read counted them again
            receiver.gate.set()
            await until(lambda: sender.sent == 2 and sender.pending == 0)
    assert receiver.got == names(1, 2)


async def test_wake_starts_an_idle_sender_which_does_not_poll(tmp_path: Path) -> None:
    """Test that an idle sender reads nothing until woken, and sends what was committed then."""
    receiver = Receiver()
    store = CountingStore(path=tmp_path / "t.db")
    async with StoreWriter(store=store) as writer:
        sender = make_sender(writer, receiver)
        async with running(sender):
            await until(lambda: store.loads == 1)
            await writer.submit(CommitBatch(outbox=[message(1)]))
            await writer.flush()
            for _ in range(50):
                await asyncio.sleep(0)
            assert (store.loads, receiver.got) == (1, [])
            sender.wake()
            await until(lambda: sender.sent == 1)
            loads = store.loads
            for _ in range(50):
                await asyncio.sleep(0)
            assert store.loads == loads  # idle again, not reading in a loop
    assert receiver.got == names(1)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"page": 0}, "page must be at least 1"),
        ({"retry_min": 0.0}, "0 < retry_min <= retry_max"),
        ({"retry_min": 2.0, "retry_max": 1.0}, "0 < retry_min <= retry_max"),
    ],
)
async def test_bad_options_are_refused(
    tmp_path: Path, options: dict[str, float], problem: str
) -> None:
    """Test that a sender that could never send or would spin is refused at construction."""
    writer = StoreWriter(store=SqliteStore(path=tmp_path / "t.db"))
    with pytest.raises(ValueError, match=problem):
        make_sender(writer, Receiver(), **options)
