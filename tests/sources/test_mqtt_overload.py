"""BrokerLink when its consumer falls behind, against a real mosquitto: the broker holds QoS 1
messages (flow control), QoS 0 ones are dropped and counted, what is left at a stop is told."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mqttkit import (
    WAIT,
    Broker,
    Publisher,
    link_config,
    needs_mosquitto,
    payloads,
    running_broker,
    running_link,
)
from tocsin.sources.mqtt import BrokerLink

pytestmark = [pytest.mark.integration, needs_mosquitto]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with running_broker(tmp_path / "broker") as started:
        yield started


class Drops:
    """What the link reported dropping, summed."""

    def __init__(self) -> None:
        self.total = 0
        self.reports = 0

    def __call__(self, count: int) -> None:
        self.total += count
        self.reports += 1


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait for something the link does not signal."""
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110 - nothing to wait on: poll
            await asyncio.sleep(0.005)


async def settle() -> None:
    """Give the link time to read whatever the broker would still send."""
    await asyncio.sleep(0.3)


async def send(port: int, count: int, *, qos: int, first: int = 0) -> None:
    """Publish numbered messages on a/n; return once the broker has them all."""
    with Publisher(port) as publisher:
        infos = publisher.send([("a/n", b"%d" % i) for i in range(first, first + count)], qos=qos)
        await asyncio.to_thread(Publisher.wait, infos)


async def test_qos0_beyond_high_water_is_dropped_and_counted_while_reading_goes_on(
    broker: Broker,
) -> None:
    """Test that untaken QoS 0 messages stop at high_water, the rest counted as dropped, and
    that the link still reads (later messages arrive once there is room)."""
    drops = Drops()
    link = BrokerLink(link_config(broker.port), [("a/#", 0)], high_water=64, on_dropped=drops)
    async with running_link(link):
        await send(broker.port, 1000, qos=0)
        await eventually(lambda: link.waiting + drops.total == 1000)
        assert link.waiting == 64
        assert drops.reports < 1000  # counted per read, not per message
        taken = link.take(1000)
        assert payloads(taken) == [b"%d" % i for i in range(64)]  # the first ones are kept
        await send(broker.port, 5, qos=0, first=1000)
        await eventually(lambda: link.waiting == 5)
        assert payloads(link.take(10)) == [b"%d" % i for i in range(1000, 1005)]
    assert drops.total == 936
    assert link.unacked == 0


async def test_unacknowledged_qos1_waits_at_the_broker(broker: Broker) -> None:
    """Test MQTT 5 flow control: without acknowledgements the broker stops sending (at
    receive_maximum; mosquitto 2.0 was seen to send up to 20 more), none is dropped, and
    acknowledging lets the rest come, in order."""
    drops = Drops()
    link = BrokerLink(
        link_config(broker.port, receive_maximum=50),
        [("a/#", 1)],
        high_water=20,  # below what the broker sends: QoS 1 is never dropped for it
        on_dropped=drops,
    )
    async with running_link(link):
        await send(broker.port, 1000, qos=1)
        await settle()
        held = link.unacked
        assert 0 < held <= 100  # the broker holds the other 900 and more
        assert link.waiting == held
        taken = link.take(held)
        await settle()
        assert (link.waiting, link.unacked) == (0, held)  # taken is not acknowledged
        most = held
        while len(taken) < 1000:
            link.ack([(d[0], d[1]) for d in taken[-held:]])
            async with asyncio.timeout(WAIT):
                await link.wait()
            batch = link.take(1000)
            most = max(most, link.unacked)
            taken += batch
            held = len(batch)
        link.ack([(d[0], d[1]) for d in taken[-held:]])
        assert link.unacked == 0
        assert most <= 100
    assert payloads(taken) == [b"%d" % i for i in range(1000)]
    assert drops.total == 0


async def test_at_a_stop_untaken_qos0_is_counted_lost_and_qos1_stays_with_the_broker(
    broker: Broker,
) -> None:
    """Test that after stop_reading nothing more arrives, and discard tells the QoS 0 losses
    apart from the QoS 1 messages the broker will send again."""
    link = BrokerLink(link_config(broker.port), [("q0/#", 0), ("q1/#", 1)], high_water=1000)
    async with running_link(link):
        with Publisher(broker.port) as publisher:
            infos = publisher.send([("q0/a", b"x")] * 5, qos=0)
            infos += publisher.send([("q1/a", b"y")] * 7, qos=1)
            await asyncio.to_thread(Publisher.wait, infos)
        await eventually(lambda: link.waiting == 12)
        link.stop_reading()
        await send(broker.port, 3, qos=1)
        await settle()
        assert link.waiting == 12
        assert link.unacked == 7
        assert link.discard() == 5
        assert link.waiting == 0
