"""The trap receiver stopped while the engine is stuck: every trap it got is queued, counted as
a kernel drop, or counted as lost at the stop, and the stop says how many."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from snmpkit import link_trap
from tocsin.engine.clock import ManualClock
from tocsin.model import Event
from tocsin.snmp.access import Community
from tocsin.snmp.settings import SnmpConfig
from tocsin.trapd import TrapReceiver


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("tocsin_snmp_packets_dropped_total", {"reason": reason}) or 0


async def test_a_stop_counts_the_traps_in_hand_read_and_in_the_socket(tmp_path: Path) -> None:
    """Test the stop of a receiver whose first batch never gets into the queue: kernel drops +
    shutdown losses = sent, the waiting gauge shows them first, and the stop logs its count."""
    receiver = TrapReceiver(
        config=SnmpConfig(
            listen=(("127.0.0.1", 0),), receive_buffer=1 << 20, communities=(Community(b"public"),)
        ),
        state_dir=tmp_path,
        clock=ManualClock(1000.0),
        batch_events=100,
    )
    offered: list[int] = []

    async def stuck(
        events: list[Event], _read_at: float, _source: str, _done: Callable[[], None] | None
    ) -> None:
        offered.append(len(events))
        await asyncio.Event().wait()  # the queue is full and the engine never makes room

    before = dropped("shutdown"), dropped("receive buffer full")
    sent = 3000
    with capture_logs() as logs:
        async with receiver:
            task = asyncio.create_task(receiver.run(stuck))
            port = receiver.bound[0].port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                for n in range(sent):
                    sender.sendto(link_trap(b"public", n % 8 + 1), ("127.0.0.1", port))
                    if n % 500 == 0:
                        await asyncio.sleep(0.01)  # the receiver reads some, then hands over
            await asyncio.sleep(0.1)
            waiting = REGISTRY.get_sample_value("tocsin_snmp_pending_traps")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    lost = dropped("shutdown") - before[0]
    kernel = dropped("receive buffer full") - before[1]
    assert len(offered) == 1  # the receiver waited on its first batch from then on
    assert waiting is not None
    assert lost >= waiting > offered[0]  # and what still waited in the socket
    assert lost + kernel == sent
    (stop,) = [entry for entry in logs if entry["event"] == "source_stopped"]
    assert stop["source"] == "snmp"
    assert stop["dropped"] == lost
