"""The sd_notify protocol against a real unix datagram socket, as systemd would listen on it."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tocsin.app import Daemon
from tocsin.config import load_config
from tocsin.sdnotify import SystemdNotifier


@dataclass
class Listener:
    """A bound datagram socket and the NOTIFY_SOCKET value that names it."""

    sock: socket.socket
    name: str

    def received(self) -> list[str]:
        """Return every datagram waiting now, oldest first, without waiting for more."""
        messages = []
        while True:
            try:
                messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return messages


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest) -> Iterator[Listener]:
    """Listen where systemd would: a socket file, or an abstract name (`@name`)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setblocking(False)
    folder = tempfile.mkdtemp(prefix="sd")  # short: a socket path has at most 107 bytes
    try:
        if request.param == "path":
            path = os.path.join(folder, "notify")
            sock.bind(path)
            yield Listener(sock, path)
        else:
            name = f"tocsin-test-{uuid.uuid4().hex}"
            sock.bind("\0" + name)
            yield Listener(sock, "@" + name)
    finally:
        sock.close()
        shutil.rmtree(folder)


class Sleeps:
    """A virtual clock for the loops: records each requested sleep, ends the loop after `n`."""

    def __init__(self, n: int) -> None:
        self.delays: list[float] = []
        self.n = n

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if len(self.delays) >= self.n:
            raise asyncio.CancelledError


def test_ready_status_and_stopping_are_sent_as_systemd_expects(listener: Listener) -> None:
    """Test that READY=1, STATUS= and STOPPING=1 arrive as one datagram each."""
    notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": listener.name})
    assert notifier.enabled
    notifier.ready("running: 3 sources")
    notifier.status("running: 3 sources")  # unchanged: not sent again
    notifier.status("running: 4 sources\nand a second line")
    notifier.status("")  # clears the line
    notifier.stopping("stopping: finishing 7 queued events")
    assert listener.received() == [
        "READY=1\nSTATUS=running: 3 sources",
        "STATUS=running: 4 sources and a second line",
        "STATUS=",
        "STOPPING=1\nSTATUS=stopping: finishing 7 queued events",
    ]


def test_a_reload_says_reloading_with_the_monotonic_time_then_ready(listener: Listener) -> None:
    """Test that a reload sends RELOADING=1 with MONOTONIC_USEC, then READY=1 and the old
    status, also when the reload failed."""
    notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": listener.name})
    notifier.ready("running: 1 sources")
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    with notifier.reloading():
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        during = listener.received()
    assert listener.received() == ["READY=1\nSTATUS=running: 1 sources"]
    with pytest.raises(ValueError, match="bad rule"), notifier.reloading():
        raise ValueError("bad rule")
    after_failure = listener.received()

    assert during[0] == "READY=1\nSTATUS=running: 1 sources"
    fields = dict(line.split("=", 1) for line in during[1].splitlines())
    assert fields.keys() == {"RELOADING", "MONOTONIC_USEC", "STATUS"}
    assert fields["RELOADING"] == "1"
    assert before <= int(fields["MONOTONIC_USEC"]) <= after
    assert len(after_failure) == 2
    assert after_failure[0].startswith("RELOADING=1\n")
    assert after_failure[1] == "READY=1\nSTATUS=running: 1 sources"


async def test_the_watchdog_is_pinged_every_half_timeout(listener: Listener) -> None:
    """Test that the heartbeat pings, then sleeps half of WATCHDOG_USEC, again and again."""
    sleeps = Sleeps(3)
    notifier = SystemdNotifier(
        environ={
            "NOTIFY_SOCKET": listener.name,
            "WATCHDOG_USEC": "30000000",
            "WATCHDOG_PID": str(os.getpid()),
        },
        sleep=sleeps,
    )
    assert notifier.watchdog_interval == 15.0
    with pytest.raises(asyncio.CancelledError):
        await notifier.heartbeat()
    assert sleeps.delays == [15.0, 15.0, 15.0]
    assert listener.received() == ["WATCHDOG=1"] * 3


@pytest.mark.parametrize(
    "watchdog",
    [
        {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"},  # another process's watchdog
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "thirty"},
        {},
    ],
)
async def test_no_pings_without_a_watchdog_of_ours(
    listener: Listener, watchdog: dict[str, str]
) -> None:
    """Test that a watchdog for another pid, or none, or a broken one, gets no pings."""
    sleeps = Sleeps(3)
    notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": listener.name, **watchdog}, sleep=sleeps)
    assert notifier.watchdog_interval is None
    await asyncio.wait_for(notifier.heartbeat(), 1.0)  # returns at once: nothing to ping
    notifier.ping()
    assert sleeps.delays == []
    assert listener.received() == []


async def test_a_blocked_loop_sends_no_pings_until_it_runs_again(listener: Listener) -> None:
    """Test that the pings come from the event loop: none while it is blocked."""
    notifier = SystemdNotifier(
        environ={"NOTIFY_SOCKET": listener.name, "WATCHDOG_USEC": "40000"}  # every 20 ms
    )
    heartbeat = asyncio.create_task(notifier.heartbeat())
    try:
        await asyncio.sleep(0.15)
        assert len(listener.received()) >= 3
        time.sleep(0.3)  # noqa: ASYNC251 - the loop hangs, as under test: 15 pings would be due
        assert listener.received() == []
        await asyncio.sleep(0.15)
        assert len(listener.received()) >= 3
    finally:
        heartbeat.cancel()


async def test_status_is_refreshed_when_it_changes_until_stopping(listener: Listener) -> None:
    """Test that keep_status sends a changed summary, skips an unchanged one, and ends at
    STOPPING=1 without overwriting its status."""
    summaries = iter(["running: 0 queued", "running: 0 queued", "running: 5 queued"])
    asked: list[str] = []

    def summary() -> str:
        asked.append(next(summaries))
        return asked[-1]

    async def sleep(delay: float) -> None:
        assert delay == 2.0
        if len(asked) == 3:
            notifier.stopping("stopping")

    notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": listener.name}, sleep=sleep)
    await asyncio.wait_for(notifier.keep_status(summary, every=2.0), 1.0)
    assert listener.received() == [
        "STATUS=running: 0 queued",
        "STATUS=running: 5 queued",
        "STOPPING=1\nSTATUS=stopping",
    ]


async def test_without_notify_socket_nothing_is_sent_and_no_loop_runs() -> None:
    """Test that outside systemd every call is a no-op and the loops end at once."""
    sleeps = Sleeps(1)
    notifier = SystemdNotifier(environ={"WATCHDOG_USEC": "30000000"}, sleep=sleeps)
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    notifier.ready("running")
    with notifier.reloading():
        notifier.status("reloading")
    notifier.ping()
    notifier.stopping()
    await asyncio.wait_for(notifier.heartbeat(), 1.0)
    await asyncio.wait_for(notifier.keep_status(lambda: "x", every=2.0), 1.0)
    assert sleeps.delays == []


def test_send_errors_are_logged_once_and_never_raised() -> None:
    """Test that a socket nobody listens on costs one warning and no exception."""
    missing = f"/nonexistent-{uuid.uuid4().hex}/notify"
    with capture_logs() as logs:
        notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": missing, "WATCHDOG_USEC": "1000"})
        notifier.ready("running")
        notifier.ping()
        notifier.stopping()
    failures = [entry for entry in logs if entry["event"] == "sd_notify_failed"]
    assert len(failures) == 1
    assert failures[0]["socket"] == missing
    assert failures[0]["message"] == "READY=1"


@pytest.mark.parametrize("value", ["vsock:2:1234", "relative/notify", "@"])
def test_an_unusable_notify_socket_is_reported_and_ignored(value: str) -> None:
    """Test that a NOTIFY_SOCKET that is neither a path nor an abstract name disables
    notifications with a warning."""
    with capture_logs() as logs:
        notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": value, "WATCHDOG_USEC": "1000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert [entry["notify_socket"] for entry in logs] == [value]


def test_the_daemon_wraps_a_reload_in_reloading_and_ready(
    listener: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that Daemon.reloading, which reload will use, tells systemd through
    $NOTIFY_SOCKET."""
    (tmp_path / "tocsin.yaml").write_text("state_dir: state\nrules: []\n")
    monkeypatch.setenv("NOTIFY_SOCKET", listener.name)
    daemon = Daemon(load_config(tmp_path / "tocsin.yaml"))
    with daemon.reloading():
        assert listener.received()[0].startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert listener.received() == ["READY=1"]
