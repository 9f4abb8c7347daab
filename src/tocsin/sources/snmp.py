"""Receive SNMP traps and informs on UDP: sockets drained in bursts, packets turned into events.

Two halves. `TrapSocket` is the I/O: non-blocking UDP sockets read with `recvfrom` in a loop
on each readiness callback, so a storm costs one loop wakeup per burst, not per packet. When
the consumer falls behind it stops reading, the kernel's receive buffer fills, and what the
kernel then drops is read back from /proc/net/udp and counted. Where that table cannot be
read (not Linux), it reads on and drops what does not fit itself, so every loss is counted.
`TrapIntake` is synchronous: v1/v2c through the fast BER decoder and the community check,
v3 through pysnmp's USM, then the MIB mapper. Every packet it refuses is counted by reason;
none raises.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self

import structlog

from tocsin.model import Event
from tocsin.obs import Throttle
from tocsin.snmp.access import CommunityAccess
from tocsin.snmp.ber import (
    BerError,
    decode_message,
    inform_response,
    is_v3,
    read_community,
    v1_to_v2,
)
from tocsin.snmp.events import TrapMapper, render_octets
from tocsin.snmp.reasons import (
    DUPLICATE_INFORM,
    MALFORMED,
    NO_V3_USERS,
    NOT_A_NOTIFICATION,
    UNSUPPORTED_VERSION,
)

if TYPE_CHECKING:
    from tocsin.sources.snmpv3 import V3Notification, V3Receiver

__all__ = [
    "Datagram",
    "Intake",
    "ListenAddress",
    "TrapIntake",
    "TrapSocket",
]

log = structlog.get_logger(__name__)

_BURST = 256  # datagrams read per readiness callback before the loop gets a turn
_MAX_DATAGRAM = 65535
_REMEMBERED_INFORMS = 4096
_INFORM_SECONDS = 60.0  # how long an inform's (sender, request-id) is remembered: senders retry
_REPORT_EVERY = 60.0
_DRAIN_SECONDS = 0.25  # at the stop, how long to count what waits in the sockets
_PROC_TABLES = ("/proc/net/udp", "/proc/net/udp6")

Datagram = tuple[bytes, tuple[str, int], int]  # payload, sender, index of the receiving socket


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """A UDP address to receive traps on."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class TrapSocket:
    """UDP sockets as an async iterator of datagram batches; stops reading when not drained."""

    def __init__(
        self,
        *,
        addresses: Sequence[ListenAddress],
        receive_buffer: int,
        max_pending: int = 16384,
        linger: float = 0.005,
        proc_tables: Sequence[str] = _PROC_TABLES,
    ) -> None:
        self._addresses = list(addresses)
        self._linger = linger
        self._receive_buffer = receive_buffer
        self._max_pending = max_pending
        self._proc_tables = proc_tables
        self._sockets: list[socket.socket] = []
        self._pending: list[Datagram] = []
        self._ready = asyncio.Event()
        self._paused = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inodes: dict[int, int] = {}  # socket inode -> kernel drops already counted
        self._index: dict[int, int] = {}  # socket inode -> its index in _sockets
        self.read_errors = 0
        self.kernel_counts = True  # the kernel's drops are readable: pause instead of dropping
        self._found = 0  # sockets the last read of the drop tables found
        self.overflowed = 0  # datagrams this receiver dropped itself (when they are not)
        self.receive_queued: list[int] = []  # bytes in each socket's kernel buffer, last read

    @property
    def bound(self) -> list[ListenAddress]:
        """The addresses actually bound (a port 0 in the config becomes the kernel's choice)."""
        return [ListenAddress(*s.getsockname()[:2]) for s in self._sockets]

    @property
    def pending(self) -> int:
        """Datagrams read and not taken yet."""
        return len(self._pending)

    @property
    def receive_buffers(self) -> list[int]:
        """The receive buffer the kernel granted each socket (it may cap the asked size)."""
        return [s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) for s in self._sockets]

    async def __aenter__(self) -> Self:
        """Bind every address or none: an OSError names the address that failed."""
        self._loop = asyncio.get_running_loop()
        try:
            for address in self._addresses:
                self._sockets.append(self._bind(address))
        except BaseException:
            self._close()
            raise
        for index, sock in enumerate(self._sockets):
            inode = os.fstat(sock.fileno()).st_ino
            self._inodes[inode] = 0
            self._index[inode] = index
        self.receive_queued = [0] * len(self._sockets)
        self.kernel_drops()  # a reused socket's old drops are not ours
        # Unreadable, pausing would hand the overflow to drops nobody can count.
        self.kernel_counts = self._found == len(self._inodes)
        self._watch()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> list[Datagram]:
        """Wait for datagrams and take all that are waiting (after `linger`, when only few)."""
        while not self._pending:
            self._ready.clear()
            await self._ready.wait()
        if len(self._pending) < _BURST and self._linger > 0:
            # A trickle: wait a moment for more, so a steady few thousand traps a second make
            # a few hundred batches (and store commits), not one per trap.
            await asyncio.sleep(self._linger)
        batch, self._pending = self._pending, []
        if self._paused:
            self._paused = False
            self._watch()
        return batch

    def discard(self) -> int:
        """Stop reading; drop what was read but not taken and what waits in the sockets'
        buffers; return how many (for counting: closing the sockets would hide the latter)."""
        count = len(self._pending) + self._drain()
        self._close()
        self._pending = []
        return count

    def _drain(self) -> int:
        """Read and count the datagrams the kernel holds for us, for at most _DRAIN_SECONDS."""
        count = 0
        deadline = time.monotonic() + _DRAIN_SECONDS
        for sock in self._sockets:
            while time.monotonic() < deadline:
                try:
                    sock.recv(1)  # the rest of the datagram is discarded by the kernel
                except OSError:  # BlockingIOError: empty
                    break
                count += 1
        return count

    def send(self, index: int, data: bytes, address: tuple[str, int]) -> None:
        """Send a reply (an inform's Response) from the socket that got the request."""
        try:
            self._sockets[index].sendto(data, address)
        except OSError as error:
            log.warning("snmp_send_failed", to=address[0], error=str(error))

    def kernel_drops(self) -> int:
        """Return the packets the kernel dropped on these sockets since the last call; note
        the bytes waiting in each socket's buffer on the way (`receive_queued`)."""
        new = 0
        seen: set[int] = set()
        for table in self._proc_tables:
            try:
                with open(table, encoding="ascii") as rows:
                    next(rows, None)
                    for row in rows:
                        parts = row.split()
                        inode = int(parts[9])
                        if inode in self._inodes:
                            seen.add(inode)
                            drops = int(parts[12])
                            new += max(0, drops - self._inodes[inode])
                            self._inodes[inode] = drops
                            self.receive_queued[self._index[inode]] = int(
                                parts[4].partition(":")[2], 16
                            )
            except (OSError, ValueError, IndexError):
                continue  # no /proc (not Linux): the receiver counts its own drops
        self._found = len(seen)
        return new

    def _bind(self, address: ListenAddress) -> socket.socket:
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:  # so 0.0.0.0 and [::] can both be listed
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._receive_buffer)
            sock.bind((address.host, address.port))
            sock.setblocking(False)
        except OSError as error:
            sock.close()
            raise OSError(
                error.errno, f"cannot listen on udp {address}: {error.strerror}"
            ) from None
        return sock

    def _watch(self) -> None:
        assert self._loop is not None
        for index, sock in enumerate(self._sockets):
            self._loop.add_reader(sock.fileno(), self._readable, sock, index)

    def _readable(self, sock: socket.socket, index: int) -> None:
        pending = self._pending
        receive = sock.recvfrom
        room = _BURST if self.kernel_counts else self._max_pending - len(pending)
        for _ in range(_BURST):
            try:
                data, sender = receive(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.read_errors += 1
                break
            if room > 0:
                pending.append((data, sender, index))
                room -= 1
            else:
                self.overflowed += 1  # the kernel's drops cannot be read: count our own
        if pending:
            self._ready.set()
        if len(pending) >= self._max_pending and self.kernel_counts and not self._paused:
            self._paused = True  # the kernel buffer takes over; its drops are counted
            assert self._loop is not None
            for each in self._sockets:
                self._loop.remove_reader(each.fileno())

    def _close(self) -> None:
        for sock in self._sockets:
            if self._loop is not None and not self._paused:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets.clear()


@dataclass(slots=True)
class Intake:
    """What one batch of datagrams gave: events, and the informs to answer once they are queued."""

    events: list[Event] = field(default_factory=list)
    # (socket index, Response, sender, request-id) for each new v2c inform
    acks: list[tuple[int, bytes, tuple[str, int], int]] = field(default_factory=list)
    # (socket index, Response, sender) for retransmissions of informs already answered
    resends: list[tuple[int, bytes, tuple[str, int]]] = field(default_factory=list)
    v3_acks: list[tuple[int, V3Notification]] = field(default_factory=list)  # socket, inform
    accepted: Counter[str] = field(default_factory=Counter)  # packets per version


class TrapIntake:
    """Decode, check and map datagrams; count and rate-limit-log every refusal."""

    def __init__(
        self,
        *,
        access: CommunityAccess,
        mapper: TrapMapper,
        v3: V3Receiver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._access = access
        self._mapper = mapper
        self._v3 = v3
        self._clock = clock
        self.dropped: Counter[str] = Counter()  # reason -> packets, drained by the daemon
        self.acknowledged = 0  # informs answered once committed, drained by the daemon
        self.reply_socket = 0  # where pysnmp's replies leave from: set around feed and ack
        self._throttle = Throttle(every=_REPORT_EVERY, clock=clock)
        # (sender, request-id) of recent v2c informs -> (first seen, answered yet)
        self._informs: OrderedDict[tuple[tuple[str, int], int], tuple[float, bool]] = OrderedDict()

    def take(self, datagrams: Sequence[Datagram], received: float) -> Intake:
        """Turn a batch of datagrams into events; bad ones are counted and skipped."""
        intake = Intake()
        now = self._clock()
        self._forget_informs(now)
        for data, sender, index in datagrams:
            try:
                self._one(intake, data, sender, index, received=received, now=now)
            except Exception as error:  # noqa: BLE001 - one packet must never stop the rest
                self._refuse(MALFORMED, sender, f"{error.__class__.__name__}: {error}")
        return intake

    def acknowledge(
        self, intake: Intake, send: Callable[[int, bytes, tuple[str, int]], None]
    ) -> None:
        """Answer the batch's informs: call this once its events are committed."""
        for index, response, sender, request_id in intake.acks:
            send(index, response, sender)
            seen = (sender[:2], request_id)
            if seen in self._informs:
                self._informs[seen] = (self._informs[seen][0], True)
            self.acknowledged += 1
        for index, response, sender in intake.resends:
            send(index, response, sender)
        if self._v3 is not None:
            for index, notification in intake.v3_acks:
                self.reply_socket = index
                self.acknowledged += self._v3.ack(notification)
            self._collect_v3(("-", 0))

    def _one(
        self,
        intake: Intake,
        data: bytes,
        sender: tuple[str, int],
        index: int,
        *,
        received: float,
        now: float,
    ) -> None:
        if is_v3(data):
            self._one_v3(intake, data, sender, index, received)
            return
        try:
            _, community = read_community(data)
        except BerError as error:
            unsupported = error.reason.startswith("SNMP version")
            self._refuse(UNSUPPORTED_VERSION if unsupported else MALFORMED, sender, str(error))
            return
        refusal = self._access.check(community, sender[0])
        if refusal is not None:
            self._refuse(refusal, sender, f"community {render_octets(community[:64])!r}")
            return
        try:
            message = decode_message(data)
        except BerError as error:
            reason = NOT_A_NOTIFICATION if error.reason.startswith("PDU ") else MALFORMED
            self._refuse(reason, sender, str(error))
            return
        version = "1" if message.version == 0 else "2c"
        event = self._mapper.event(
            varbinds=v1_to_v2(message) if message.version == 0 else message.varbinds,
            sender=sender[:2],
            received=received,
            version=version,
            pdu="inform" if message.pdu == "inform" else "trap",
            credential=("community", render_octets(message.community)),
        )
        if message.pdu == "inform":
            seen = (sender[:2], message.request_id)
            known = self._informs.get(seen)
            if known is not None:  # a retransmission
                self.dropped[DUPLICATE_INFORM] += 1
                if known[1]:  # we had answered: the answer was lost, so answer again
                    intake.resends.append((index, inform_response(data, message), sender))
                return
            self._informs[seen] = (now, False)
            intake.acks.append((index, inform_response(data, message), sender, message.request_id))
        intake.events.append(event)
        intake.accepted[version] += 1

    def _one_v3(
        self, intake: Intake, data: bytes, sender: tuple[str, int], index: int, received: float
    ) -> None:
        if self._v3 is None:
            self._refuse(NO_V3_USERS, sender, "an SNMPv3 packet")
            return
        self.reply_socket = index
        notifications = self._v3.feed(data, sender[:2])
        self._collect_v3(sender)
        for notification in notifications:
            intake.events.append(
                self._mapper.event(
                    varbinds=notification.varbinds,
                    sender=sender[:2],
                    received=received,
                    version="3",
                    pdu="inform" if notification.pdu == "inform" else "trap",
                    credential=("user", notification.user),
                )
            )
            intake.accepted["3"] += 1
            if notification.pdu == "inform":
                intake.v3_acks.append((index, notification))

    def _collect_v3(self, sender: tuple[str, int]) -> None:
        """Count what the v3 receiver refused (in feed, or in ack for an earlier packet)."""
        assert self._v3 is not None
        if self._v3.rejected:
            for reason, count in self._v3.rejected.items():
                self._refuse(reason, sender, "SNMPv3 security check", count)
            self._v3.rejected.clear()

    def _forget_informs(self, now: float) -> None:
        """Let go of informs older than a sender retries, and of the oldest beyond the bound."""
        informs = self._informs
        while informs:
            first_seen = next(iter(informs.values()))[0]
            if now - first_seen < _INFORM_SECONDS and len(informs) <= _REMEMBERED_INFORMS:
                break
            informs.popitem(last=False)

    def _refuse(self, reason: str, sender: tuple[str, int], detail: str, count: int = 1) -> None:
        self.dropped[reason] += count
        held = self._throttle.allow(reason, count)
        if held is not None:
            log.warning(
                "snmp_packet_dropped",
                reason=reason,
                sender=sender[0],
                detail=detail[:200],
                not_logged_since_last=held + count - 1,
            )
