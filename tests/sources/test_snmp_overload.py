"""The trap socket when the engine falls behind or tocsin stops: every datagram is taken,
counted as dropped (by the kernel or by tocsin), or counted as lost at the stop."""

from __future__ import annotations

import asyncio
import socket

from snmpkit import link_trap
from tocsin.sources.snmp import ListenAddress, TrapSocket

PACKET = link_trap(b"public", 1)


def blast(port: int, count: int) -> None:
    """Send `count` traps to 127.0.0.1:`port` at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(count):
            sender.sendto(PACKET, ("127.0.0.1", port))


async def test_the_stop_counts_what_waits_in_the_socket_and_in_hand() -> None:
    """Test that discard counts datagrams read but not taken and those still in the kernel's
    buffer (closing the socket would drop those unseen)."""
    async with TrapSocket(
        addresses=[ListenAddress("127.0.0.1", 0)], receive_buffer=1 << 20
    ) as traps:
        port = traps.bound[0].port
        blast(port, 50)
        await asyncio.sleep(0.05)  # the reader takes them in
        assert traps.pending == 50
        blast(port, 70)  # no turn of the loop: these stay in the kernel's buffer
        traps.kernel_drops()
        assert traps.receive_queued[0] > 0
        assert traps.discard() == 120
        assert traps.pending == 0


async def test_the_kernel_buffer_fill_is_read_back() -> None:
    """Test that receive_queued shows the bytes waiting in the kernel and goes back to 0."""
    async with TrapSocket(
        addresses=[ListenAddress("127.0.0.1", 0)], receive_buffer=1 << 20, max_pending=10
    ) as traps:
        blast(traps.bound[0].port, 1000)
        await asyncio.sleep(0.05)  # one burst read (then paused), the rest waits in the kernel
        assert traps.kernel_drops() == 0
        assert traps.kernel_counts
        assert traps.pending < 1000
        assert traps.receive_queued[0] >= (1000 - traps.pending) * len(PACKET)
        taken = 0
        while taken < 1000:
            taken += len(await asyncio.wait_for(traps.__anext__(), 5))
        traps.kernel_drops()
        assert traps.receive_queued[0] == 0
        assert taken == 1000


async def test_without_the_kernel_counters_the_receiver_drops_and_counts_itself() -> None:
    """Test the fallback where /proc/net/udp cannot be read: reading goes on, what does not
    fit the hand-over is dropped and counted, and taken + dropped == sent."""
    async with TrapSocket(
        addresses=[ListenAddress("127.0.0.1", 0)],
        receive_buffer=1 << 20,
        max_pending=50,
        proc_tables=("/nonexistent/udp",),
    ) as traps:
        assert not traps.kernel_counts
        port = traps.bound[0].port
        for _ in range(15):
            blast(port, 200)
            await asyncio.sleep(0.01)  # read on, though nothing is taken
        await asyncio.sleep(0.05)
        assert traps.pending == 50
        taken = len(await traps.__anext__())
        assert taken == 50
        assert traps.overflowed == 3000 - 50
