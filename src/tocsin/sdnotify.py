"""systemd's sd_notify protocol without libsystemd: readiness, status, reload, stop, watchdog.

Each message is one datagram to the socket named by $NOTIFY_SOCKET (a path, or an abstract
name written `@name`). Without $NOTIFY_SOCKET (not started by systemd) every call does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping

import structlog

__all__ = ["SystemdNotifier"]

log = structlog.get_logger("tocsin")

Sleep = Callable[[float], Awaitable[None]]


class SystemdNotifier:
    """Tell systemd how the daemon is doing; never raises, so systemd cannot take tocsin down.

    The watchdog is pinged by a task on the daemon's own event loop (`heartbeat`): a loop that
    hangs stops pinging, and systemd restarts the daemon; a loop that runs always pings in time.
    """

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        env = os.environ if environ is None else environ
        self._sleep = sleep
        self._address = _address(env.get("NOTIFY_SOCKET", ""))
        # Seconds between watchdog pings (half the timeout), None when no watchdog is ours.
        self.watchdog_interval = _watchdog_interval(env) if self._address is not None else None
        self._status = ""
        self._stopping = False
        self._failed = False  # a send failed already: later failures are not logged

    @property
    def enabled(self) -> bool:
        """True when systemd listens (NOTIFY_SOCKET is set and usable)."""
        return self._address is not None

    def ready(self, status: str = "") -> None:
        """Say that start-up is done: systemd then starts the units that wait for tocsin."""
        self._status = _one_line(status)
        self._send("READY=1", status=self._status)

    @contextlib.contextmanager
    def reloading(self) -> Iterator[None]:
        """Say RELOADING=1 while the block runs, READY=1 after it, whether it failed or not
        (a failed reload leaves the old config running, so the daemon is ready either way)."""
        kept = self._status
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send("RELOADING=1", f"MONOTONIC_USEC={usec}", status="reloading the config")
        try:
            yield
        finally:
            self._send("READY=1", status=kept)

    def stopping(self, status: str = "") -> None:
        """Say that shutdown has begun; status lines from `keep_status` stop here."""
        self._stopping = True
        self._status = _one_line(status)
        self._send("STOPPING=1", status=self._status)

    def status(self, text: str) -> None:
        """Set the line `systemctl status` shows; sent only when it changed."""
        line = _one_line(text)
        if line != self._status:
            self._status = line
            self._send(f"STATUS={line}")  # an empty one clears the line

    def ping(self) -> None:
        """Tell the watchdog the daemon is alive (when the watchdog is on and watches us)."""
        if self.watchdog_interval is not None:
            self._send("WATCHDOG=1")

    async def heartbeat(self) -> None:
        """Ping the watchdog every half timeout, from this loop, until cancelled."""
        interval = self.watchdog_interval
        if interval is None:
            return
        while True:
            self.ping()
            await self._sleep(interval)

    async def keep_status(self, summary: Callable[[], str], *, every: float) -> None:
        """Refresh the status line from `summary` every `every` seconds, until stopping."""
        if not self.enabled:
            return
        while True:
            await self._sleep(every)
            if self._stopping:
                return
            self.status(summary())

    def _send(self, *fields: str, status: str = "") -> None:
        """Send one datagram (with STATUS= when `status` is given); a failure is logged once
        and otherwise ignored."""
        address = self._address
        if address is None:
            return
        lines = [*fields, f"STATUS={status}"] if status else list(fields)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)  # a full socket buffer must never stall the loop
                sock.sendto("\n".join(lines).encode(), address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning(
                    "sd_notify_failed",
                    socket=address.replace("\0", "@", 1),
                    message=lines[0],
                    error=str(exc),
                    note="systemd may miss readiness, status or watchdog pings; "
                    "later failures are not logged",
                )


def _address(value: str) -> str | None:
    """Return the socket address to send to: a path, or an abstract name with its NUL."""
    if not value:
        return None
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    log.warning(
        "sd_notify_unsupported",
        notify_socket=value,
        note="only a path or an @abstract name is supported; systemd will not be told anything",
    )
    return None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of WATCHDOG_USEC in seconds, or None if unset, invalid, or for another process."""
    usec = env.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    owner = env.get("WATCHDOG_PID", "")
    try:
        timeout = int(usec)
        if owner and int(owner) != os.getpid():
            return None  # the watchdog watches another process (we were started by it)
    except ValueError:
        log.warning("sd_watchdog_invalid", watchdog_usec=usec, watchdog_pid=owner)
        return None
    if timeout <= 0:
        return None
    return timeout / 2 / 1_000_000


def _one_line(text: str) -> str:
    """A status is one line: each line break becomes a space."""
    return " ".join(text.splitlines())
