"""The daemon's SNMP trap receiver, built from `sources.snmp` and run as one source task."""

from __future__ import annotations

import asyncio
import functools
import json
import os
from pathlib import Path
from typing import Self

import structlog

from tocsin import obs
from tocsin.engine.clock import Clock
from tocsin.files import replace_text
from tocsin.model import Put
from tocsin.snmp.access import CommunityAccess
from tocsin.snmp.events import TrapMapper
from tocsin.snmp.mibcompile import compile_mibs
from tocsin.snmp.mibs import MibIndex
from tocsin.snmp.reasons import BUFFER_FULL, READ_ERROR, SHUTDOWN
from tocsin.snmp.settings import SnmpConfig
from tocsin.sources.snmp import Intake, ListenAddress, TrapIntake, TrapSocket
from tocsin.sources.snmpv3 import V3Receiver

__all__ = ["TrapReceiver", "engine_identity", "load_mibs"]

log = structlog.get_logger("tocsin.snmp")


ENGINE_FILE = "snmp-engine.json"  # our v3 engine ID and boot count
_MAX_BOOTS = 2**31 - 1
_DROPS_EVERY = 1.0  # seconds between reads of the kernel's drop counters
_LOG_EVERY = 60.0  # seconds between log lines about them


def engine_identity(config: SnmpConfig, state_dir: Path) -> tuple[bytes, int]:
    """Return our SNMPv3 engine ID and boot count, counting this start, kept in state_dir.

    Senders of v3 informs address the receiver by its engine ID, so a made one (RFC 3411
    format 5: enterprise 0, 12 random bytes) is kept across restarts, and they check its boot
    count against what they saw last, so that only ever grows for one ID (RFC 3414, 2.2.2).
    """
    path = state_dir / ENGINE_FILE
    saved: tuple[bytes, int] | None = None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        saved = (bytes.fromhex(data["engine_id"]), int(data["boots"]))
    except FileNotFoundError:
        pass
    except (ValueError, KeyError, TypeError) as error:
        log.warning("snmp_engine_file_unreadable", path=str(path), error=str(error))
    if config.engine_id is not None:
        engine_id = config.engine_id
        boots = saved[1] if saved is not None and saved[0] == engine_id else 0
    elif saved is not None:
        engine_id, boots = saved
    else:
        engine_id, boots = b"\x80\x00\x00\x00\x05" + os.urandom(12), 0
    boots = min(boots + 1, _MAX_BOOTS)
    replace_text(path, json.dumps({"engine_id": engine_id.hex(), "boots": boots}) + "\n")
    return engine_id, boots


def load_mibs(config: SnmpConfig, state_dir: Path) -> MibIndex:
    """Compile the operator's MIB folders into state_dir/mibs and load them after ours."""
    compiled = state_dir / "mibs"
    if config.mib_dirs:
        report = compile_mibs(config.mib_dirs, compiled)
        for problem in report.problems:
            log.warning("mib_not_compiled", file=str(problem.file), problem=problem.reason)
    index, problems = MibIndex.load([compiled] if config.mib_dirs else [])
    for problem in problems:
        log.warning("mib_not_loaded", file=str(problem.file), problem=problem.reason)
    return index


class TrapReceiver:
    """Bind the trap sockets, then turn each burst of datagrams into one queued batch."""

    def __init__(
        self, *, config: SnmpConfig, state_dir: Path, clock: Clock, batch_events: int = 2048
    ) -> None:
        self._config = config
        self._batch_events = batch_events
        self._clock = clock
        self._socket = TrapSocket(
            addresses=[ListenAddress(host, port) for host, port in config.listen],
            receive_buffer=config.receive_buffer,
        )
        v3 = None
        if config.users:
            engine_id, boots = engine_identity(config, state_dir)
            v3 = V3Receiver(
                users=config.users,
                engine_id=engine_id,
                boots=boots,
                send=lambda data, to: self._socket.send(self._intake.reply_socket, data, to),
            )
        self._throttle = obs.Throttle(every=_LOG_EVERY)
        self._unqueued = 0  # accepted traps of the batch in hand that are not in the queue yet
        self._intake = TrapIntake(
            access=CommunityAccess(config.communities),
            mapper=TrapMapper(load_mibs(config, state_dir)),
            v3=v3,
        )

    @property
    def bound(self) -> list[ListenAddress]:
        """Where traps are received (the kernel's port when the config said 0)."""
        return self._socket.bound

    async def __aenter__(self) -> Self:
        """Bind every listen address; OSError names the one that failed."""
        await self._socket.__aenter__()
        for address, size in zip(self.bound, self._socket.receive_buffers, strict=True):
            obs.SNMP_RECEIVE_BUFFER.labels(str(address)).set(size)
            if size < self._config.receive_buffer:
                log.warning(
                    "snmp_receive_buffer_capped",
                    listen=str(address),
                    asked=self._config.receive_buffer,
                    granted=size,
                    fix="raise net.core.rmem_max (sysctl) to at least the asked size",
                )
            else:
                log.info(
                    "snmp_receive_buffer",
                    listen=str(address),
                    granted=size,
                    note="traps wait here while the engine is behind; beyond, the kernel "
                    "drops them and tocsin counts the drops",
                )
        if not self._config.communities and not self._config.users:
            log.warning(
                "snmp_nobody_allowed",
                note="sources.snmp lists no communities and no users: every trap is refused",
            )
        if not self._socket.kernel_counts:
            log.warning(
                "snmp_kernel_drops_unreadable",
                note="/proc/net/udp does not show the trap sockets: when the engine falls "
                "behind, tocsin reads on and drops (and counts) traps itself",
            )
        obs.SNMP_PENDING.set_function(self._waiting)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._socket.__aexit__(*exc_info)

    async def run(self, put: Put) -> None:
        """Receive until cancelled; `put` returns once the events are in the pipeline, and
        calls its last argument once they are committed: then informs are answered."""
        watcher = asyncio.create_task(self._watch_drops(), name="tocsin.source.snmp.drops")
        try:
            async for datagrams in self._socket:
                received = self._clock.now()
                intake = self._intake.take(datagrams, received)
                self._count(intake)
                events = intake.events
                self._unqueued = len(events)
                answer = functools.partial(self._answer, intake)
                for start in range(0, len(events), self._batch_events):  # the queue's unit
                    last = start + self._batch_events >= len(events)
                    chunk = events[start : start + self._batch_events]
                    await put(chunk, received, "snmp", answer if last else None)
                    self._unqueued -= len(chunk)
                if not events:
                    answer()  # resends of informs already answered, refusals to count
        except asyncio.CancelledError:
            # Stopping: traps read but not queued, and those waiting in the sockets, are lost
            # (informs among them unanswered, so their senders retry); counted, not silent.
            self._count_kernel_drops()  # before the close: the kernel's last drops
            lost = self._socket.discard() + self._unqueued
            self._unqueued = 0
            if lost:
                obs.SNMP_DROPPED.labels(SHUTDOWN).inc(lost)
                log.warning(
                    "source_stopped",
                    source="snmp",
                    dropped=lost,
                    note="traps received but not queued when tocsin stopped are lost",
                )
            raise
        finally:
            watcher.cancel()

    def _waiting(self) -> int:
        """Traps read and not yet in the engine queue (the gauge's reading)."""
        return self._socket.pending + self._unqueued

    def _answer(self, intake: Intake) -> None:
        """Answer a batch's informs, once its events are committed (commits keep order)."""
        self._intake.acknowledge(intake, self._socket.send)
        self._count_acks()

    async def _watch_drops(self) -> None:
        """Read the kernel's drop counters every second, busy or idle (a storm may just stop)."""
        while True:
            await asyncio.sleep(_DROPS_EVERY)
            self._count_kernel_drops()

    def _count_acks(self) -> None:
        if self._intake.acknowledged:
            obs.SNMP_INFORMS_ACKED.inc(self._intake.acknowledged)
            self._intake.acknowledged = 0
        self._count_dropped()  # acknowledging may have failed

    def _count(self, intake: Intake) -> None:
        for version, count in intake.accepted.items():
            obs.SNMP_PACKETS.labels(version).inc(count)
        self._count_dropped()

    def _count_dropped(self) -> None:
        if self._intake.dropped:
            for reason, count in self._intake.dropped.items():
                obs.SNMP_DROPPED.labels(reason).inc(count)
            self._intake.dropped.clear()

    def _count_kernel_drops(self) -> None:
        traps = self._socket
        if traps.read_errors:
            obs.SNMP_DROPPED.labels(READ_ERROR).inc(traps.read_errors)
            traps.read_errors = 0
        drops = traps.kernel_drops() + traps.overflowed
        traps.overflowed = 0
        for address, queued in zip(traps.bound, traps.receive_queued, strict=False):
            obs.SNMP_RECEIVE_QUEUE.labels(str(address)).set(queued)
        if not drops:
            return
        obs.SNMP_DROPPED.labels(BUFFER_FULL).inc(drops)
        held = self._throttle.allow(BUFFER_FULL, drops)
        if held is not None:
            log.warning(
                "snmp_receive_buffer_overflow",
                dropped=held + drops,
                fix="raise sources.snmp.receive_buffer (and net.core.rmem_max)",
            )
