"""The trap socket and intake: bursts, backpressure with counted kernel drops, informs, fuzz."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import shutil
import socket
import time
from collections.abc import Callable

import pytest

from snmpkit import encode_v1, encode_v2, fuzz_seeds, get_request, link_trap, mutate
from tocsin.engine.clock import ManualClock
from tocsin.snmp.access import Community, CommunityAccess
from tocsin.snmp.events import TrapMapper
from tocsin.snmp.mibs import MibIndex
from tocsin.snmp.reasons import DUPLICATE_INFORM
from tocsin.sources.snmp import (
    Datagram,
    ListenAddress,
    TrapIntake,
    TrapSocket,
)

SENDER = ("192.0.2.10", 40000)
MIBS, _ = MibIndex.load([])


def intake(*communities: Community, clock: Callable[[], float] = time.monotonic) -> TrapIntake:
    return TrapIntake(
        access=CommunityAccess(communities or (Community(b"public"),)),
        mapper=TrapMapper(MIBS),
        clock=clock,
    )


def test_a_v2c_linkdown_becomes_an_event_with_mib_names() -> None:
    """Test the event of a v2c linkDown: names, labels, host, version, community."""
    taken = intake().take([(link_trap(b"public", 3), SENDER, 0)], 1000.0)
    (event,) = taken.events
    assert (event.source, event.host, event.time, event.program) == (
        "snmp", "192.0.2.10", 1000.0, "snmptrap",
    )  # fmt: skip
    assert event.origin == "snmp://192.0.2.10:40000"
    assert event.fields == {
        "trap": "IF-MIB::linkDown",
        "trap_oid": "1.3.6.1.6.3.1.1.5.3",
        "vars": {"ifIndex": 3, "ifDescr": "eth3", "ifAdminStatus": "up", "ifOperStatus": "down"},
        "version": "2c",
        "pdu": "trap",
        "community": "public",
        "agent": "192.0.2.10",
        "uptime": 12345,
    }
    assert event.message == (
        "IF-MIB::linkDown ifIndex=3 ifDescr=eth3 ifAdminStatus=up ifOperStatus=down"
    )
    assert taken.accepted == {"2c": 1}
    assert not taken.acks


def test_v1_traps_are_mapped_in_their_v2_form() -> None:
    """Test a v1 generic trap (coldStart) and an enterprise-specific one (numeric OID)."""
    cold = encode_v1(b"public", "1.3.6.1.4.1.8072.3.2.10", "10.0.0.5", 0, 0, 7, [])
    own = encode_v1(
        b"public", "1.3.6.1.4.1.99999", "0.0.0.0", 6, 12, 7,
        [("1.3.6.1.4.1.99999.3.1", ("OctetString", b"\x00\x1b\x2c\xff"))],
    )  # fmt: skip
    first, second = intake().take([(cold, SENDER, 0), (own, SENDER, 0)], 1.0).events
    assert first.fields["trap"] == "SNMPv2-MIB::coldStart"
    assert first.host == "10.0.0.5"  # the v1 agent-addr field
    assert first.fields["version"] == "1"
    assert second.fields["trap"] == "1.3.6.1.4.1.99999.0.12"
    assert second.host == "192.0.2.10"  # agent-addr 0.0.0.0: the packet's sender
    assert second.fields["vars"]["1.3.6.1.4.1.99999.3.1"] == "00:1b:2c:ff"  # not text: hex


def test_repeated_variable_names_keep_their_instances() -> None:
    """Test two ifIndex rows in one trap: the second is keyed by name and instance."""
    data = encode_v2(
        b"public",
        [
            ("1.3.6.1.6.3.1.1.4.1.0", ("ObjectIdentifier", "1.3.6.1.6.3.1.1.5.3")),
            ("1.3.6.1.2.1.2.2.1.1.1", ("Integer", 1)),
            ("1.3.6.1.2.1.2.2.1.1.2", ("Integer", 2)),
            ("1.3.6.1.2.1.1.2.0", ("ObjectIdentifier", "1.3.6.1.2.1.2.2.1.1.4")),
        ],
        inform=False,
    )
    (event,) = intake().take([(data, SENDER, 0)], 1.0).events
    assert event.fields["vars"] == {
        "ifIndex": 1,
        "ifIndex.2": 2,
        "sysObjectID": "IF-MIB::ifIndex.4",
    }


def test_refusals_are_counted_and_never_stop_the_batch() -> None:
    """Test bad community, wrong network, garbage, a GET request and v3 without users."""
    ops = Community(b"ops", (ipaddress.ip_network("10.0.0.0/8"),))
    receiver = intake(Community(b"public"), ops)
    v3_packet = b"\x30\x03\x02\x01\x03"  # a message that says version 3, nothing else
    batch: list[Datagram] = [
        (link_trap(b"nope", 1), SENDER, 0),
        (link_trap(b"ops", 1), SENDER, 0),
        (b"\x30\x03\x02\x01", SENDER, 0),
        (get_request(b"public"), SENDER, 0),
        (v3_packet, SENDER, 0),
        (link_trap(b"public", 2), SENDER, 0),
        (link_trap(b"ops", 3), ("10.1.1.1", 162), 0),
    ]
    taken = receiver.take(batch, 1.0)
    assert [e.fields["vars"]["ifIndex"] for e in taken.events] == [2, 3]
    assert receiver.dropped == {
        "bad community": 1,
        "community not allowed from this network": 1,
        "malformed": 1,
        "not a trap or inform": 1,
        "no SNMPv3 users configured": 1,
    }


def test_a_retransmitted_inform_is_one_event_and_is_answered_again(clock: ManualClock) -> None:
    """Test inform dedup: one event per (sender, request-id); the answer repeats once given."""
    receiver = intake(clock=clock.now)
    inform = link_trap(b"public", 4, inform=True)
    first = receiver.take([(inform, SENDER, 0), (inform, SENDER, 0)], 1.0)
    assert len(first.events) == 1
    assert receiver.dropped == {DUPLICATE_INFORM: 1}  # before the answer: nothing to resend
    assert not first.resends
    sent: list[tuple[int, bytes, tuple[str, int]]] = []
    receiver.acknowledge(first, lambda i, d, a: sent.append((i, d, a)))
    assert receiver.acknowledged == 1
    (index, response, to) = sent[0]
    assert (index, to) == (0, SENDER)
    assert response != inform
    assert response.replace(b"\xa2", b"\xa6", 1) == inform  # the PDU tag: Response
    again = receiver.take([(inform, SENDER, 0)], 2.0)
    assert not again.events
    assert not again.acks
    assert again.resends == [(0, response, SENDER)]
    assert receiver.dropped == {DUPLICATE_INFORM: 2}
    other_sender = receiver.take([(inform, ("192.0.2.11", 40000), 0)], 3.0)
    assert len(other_sender.events) == 1


def test_an_inform_request_id_is_news_again_after_a_minute(clock: ManualClock) -> None:
    """Test that a sender which restarts and reuses a request-id later is not taken for a retry."""
    receiver = intake(clock=clock.now)
    inform = link_trap(b"public", 4, inform=True)
    first = receiver.take([(inform, SENDER, 0)], 1.0)
    receiver.acknowledge(first, lambda i, d, a: None)
    clock.advance_to(clock.now() + 59)
    assert not receiver.take([(inform, SENDER, 0)], 2.0).events  # a retry
    clock.advance_to(clock.now() + 2)
    later = receiver.take([(inform, SENDER, 0)], 3.0)
    assert len(later.events) == 1
    assert len(later.acks) == 1
    unanswered = receiver.take([(link_trap(b"public", 7, inform=True), SENDER, 0)], 4.0)
    assert len(unanswered.events) == 1  # never acknowledged (the daemon stopped, say) ...
    clock.advance_to(clock.now() + 61)
    retry = receiver.take([(link_trap(b"public", 7, inform=True), SENDER, 0)], 5.0)
    assert len(retry.events) == 1  # ... and not held back as a duplicate forever


def test_100k_mutated_packets_through_the_intake_never_raise_and_are_all_accounted() -> None:
    """Test the whole receive path on 100,000 mutated real traps: each an event or a drop."""
    rng = random.Random(4)
    seeds = fuzz_seeds()
    receiver = intake()
    events = duplicates = 0
    for start in range(0, 100_000, 1000):
        batch = [(mutate(rng, rng.choice(seeds)), SENDER, 0) for _ in range(1000)]
        taken = receiver.take(batch, float(start))
        events += len(taken.events)
    duplicates = receiver.dropped.pop(DUPLICATE_INFORM, 0)
    assert events + duplicates + sum(receiver.dropped.values()) == 100_000
    assert events > 1000
    assert set(receiver.dropped) <= {
        "bad community", "malformed", "not a trap or inform", "unsupported version",
        "no SNMPv3 users configured",
    }  # fmt: skip


async def test_bursts_are_taken_together_and_overflow_is_counted_by_the_kernel() -> None:
    """Test backpressure: unread, the socket pauses; sent == taken + kernel drops, exactly."""
    async with TrapSocket(
        addresses=[ListenAddress("127.0.0.1", 0)], receive_buffer=4096, max_pending=50
    ) as traps:
        port = traps.bound[0].port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            packet = link_trap(b"public", 1)
            for _ in range(3000):
                sender.sendto(packet, ("127.0.0.1", port))
        taken = 0
        while True:
            try:
                batch = await asyncio.wait_for(traps.__anext__(), 0.5)
            except TimeoutError:
                break
            taken += len(batch)
            assert all(data == packet for data, _, _ in batch)
        drops = traps.kernel_drops()
        assert drops > 0  # a 4 KiB buffer cannot hold 3000 unread traps
        assert taken + drops == 3000
        assert traps.kernel_drops() == 0  # counted once


async def test_an_inform_is_answered_only_when_acknowledged() -> None:
    """Test with net-snmp's snmpinform: no Response until acknowledge(), then success."""
    if shutil.which("snmpinform") is None:
        pytest.skip("snmpinform is not installed (Debian package 'snmp')")
    receiver = intake()
    async with TrapSocket(
        addresses=[ListenAddress("127.0.0.1", 0)], receive_buffer=1 << 20
    ) as traps:
        target = f"127.0.0.1:{traps.bound[0].port}"

        async def inform(wait: str) -> asyncio.subprocess.Process:
            return await asyncio.create_subprocess_exec(
                "snmpinform", "-M", "/nonexistent", "-m", "", "-v", "2c", "-c", "public",
                "-t", wait, "-r", "0", target, "", "1.3.6.1.6.3.1.1.5.1",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip

        unanswered = await inform("1")
        taken = receiver.take(await traps.__anext__(), 1.0)
        assert len(taken.events) == 1
        assert await asyncio.wait_for(unanswered.wait(), 10) != 0  # it timed out

        answered = await inform("5")
        taken = receiver.take(await traps.__anext__(), 2.0)
        assert len(taken.events) == 1
        await asyncio.sleep(0.2)
        assert answered.returncode is None  # still waiting for us
        receiver.acknowledge(taken, traps.send)
        assert await asyncio.wait_for(answered.wait(), 10) == 0
