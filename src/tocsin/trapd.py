"""The daemon's SNMP trap receiver, built from `sources.snmp` and run as one source task."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Self

import structlog

from tocsin import obs
from tocsin.engine.clock import Clock
from tocsin.model import Event
from tocsin.snmp.access import CommunityAccess
from tocsin.snmp.events import TrapMapper
from tocsin.snmp.mibcompile import compile_mibs
from tocsin.snmp.mibs import MibIndex
from tocsin.snmp.settings import SnmpConfig
from tocsin.sources.snmp import (
    BUFFER_FULL,
    READ_ERROR,
    Intake,
    ListenAddress,
    TrapIntake,
    TrapSocket,
)
from tocsin.sources.snmpv3 import V3Receiver

__all__ = ["TrapReceiver", "load_mibs", "local_engine_id", "next_boots"]

log = structlog.get_logger("tocsin.snmp")

ENGINE_ID_FILE = "snmp-engine-id"
BOOTS_FILE = "snmp-engine-boots"
_DROPS_EVERY = 1.0  # seconds between reads of the kernel's drop counters
_LOG_EVERY = 60.0  # seconds between log lines about them


def local_engine_id(config: SnmpConfig, state_dir: Path) -> bytes:
    """Return the daemon's SNMPv3 engine ID: configured, or made once and kept in state_dir.

    Senders of v3 informs address the receiver by this ID, so it must not change across
    restarts. A made one is RFC 3411 format 5 (octets), enterprise 0, 12 random bytes.
    """
    if config.engine_id is not None:
        return config.engine_id
    path = state_dir / ENGINE_ID_FILE
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        pass
    except ValueError:
        log.warning("snmp_engine_id_unreadable", path=str(path), note="a new one is made")
    engine_id = b"\x80\x00\x00\x00\x05" + os.urandom(12)
    path.write_text(engine_id.hex() + "\n", encoding="ascii")
    return engine_id


def next_boots(state_dir: Path) -> int:
    """Count this start in state_dir and return the count: our v3 snmpEngineBoots.

    Senders of v3 informs check it against what they last saw, so it must only ever grow.
    """
    path = state_dir / BOOTS_FILE
    try:
        boots = int(path.read_text(encoding="ascii").strip()) + 1
    except FileNotFoundError:
        boots = 1
    except ValueError:
        log.warning("snmp_engine_boots_unreadable", path=str(path), note="counting from 1 again")
        boots = 1
    path.write_text(f"{boots}\n", encoding="ascii")
    return boots


def load_mibs(config: SnmpConfig, state_dir: Path) -> MibIndex:
    """Compile the operator's MIB folders (cached in state_dir) and load them with ours."""
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
            v3 = V3Receiver(
                users=config.users,
                engine_id=local_engine_id(config, state_dir),
                boots=next_boots(state_dir),
                send=lambda data, to: self._socket.send(self._intake.reply_socket(to), data, to),
            )
        self._unlogged_drops = 0
        self._drops_logged = -_LOG_EVERY
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
        if not self._config.communities and not self._config.users:
            log.warning(
                "snmp_nobody_allowed",
                note="sources.snmp lists no communities and no users: every trap is refused",
            )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._socket.__aexit__(*exc_info)

    async def run(self, put: Callable[[list[Event], float], Awaitable[None]]) -> None:
        """Receive until cancelled; `put` returns once the events are in the pipeline."""
        watcher = asyncio.create_task(self._watch_drops(), name="tocsin.source.snmp.drops")
        try:
            async for datagrams in self._socket:
                received = self._clock.now()
                intake = self._intake.take(datagrams, received)
                self._count(intake)
                events = intake.events
                for start in range(0, len(events), self._batch_events):  # the queue's unit
                    await put(events[start : start + self._batch_events], received)
                self._intake.acknowledge(intake, self._socket.send)
                obs.SNMP_INFORMS_ACKED.inc(len(intake.acks) + len(intake.v3_acks))
        finally:
            watcher.cancel()

    async def _watch_drops(self) -> None:
        """Read the kernel's drop counters every second, busy or idle (a storm may just stop)."""
        while True:
            await asyncio.sleep(_DROPS_EVERY)
            self._count_kernel_drops()

    def _count(self, intake: Intake) -> None:
        for version, count in intake.accepted.items():
            obs.SNMP_PACKETS.labels(version).inc(count)
        if self._intake.dropped:
            for reason, count in self._intake.dropped.items():
                obs.SNMP_DROPPED.labels(reason).inc(count)
            self._intake.dropped.clear()

    def _count_kernel_drops(self) -> None:
        if self._socket.read_errors:
            obs.SNMP_DROPPED.labels(READ_ERROR).inc(self._socket.read_errors)
            self._socket.read_errors = 0
        drops = self._socket.kernel_drops()
        if not drops:
            return
        obs.SNMP_DROPPED.labels(BUFFER_FULL).inc(drops)
        self._unlogged_drops += drops
        now = time.monotonic()
        if now - self._drops_logged >= _LOG_EVERY:
            self._drops_logged = now
            log.warning(
                "snmp_receive_buffer_overflow",
                dropped=self._unlogged_drops,
                fix="raise sources.snmp.receive_buffer (and net.core.rmem_max)",
            )
            self._unlogged_drops = 0
