"""The daemon's MQTT side: ack ordering, the intake's routing and resend skipping, the service."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from mqttkit import (
    WAIT,
    Broker,
    Publisher,
    collect,
    link_config,
    needs_mosquitto,
    payloads,
    running_broker,
    running_link,
)
from tocsin.engine.clock import ManualClock
from tocsin.model import Event, Outgoing
from tocsin.mqtt.settings import parse_brokers, parse_subscriptions
from tocsin.mqttd import AckQueue, MqttService, _BrokerIntake
from tocsin.sources.mqtt import BrokerLink, Delivery
from tocsin.yamlsrc import load_yaml


def live(test: Callable[..., object]) -> Callable[..., object]:
    """Mark a test that starts mosquitto."""
    return pytest.mark.integration(needs_mosquitto(test))


CONFIG = """\
mqtt:
  brokers:
    local: {host: 127.0.0.1, port: PORT, client_id: tocsin-mqttd-test, reconnect_min: 20ms,
            reconnect_max: 200ms}
sources:
  mqtt:
    - {topic: "sensors/+/temp", topic_fields: "sensors/{site}/temp", name: temps}
    - {topic: "sensors/+/hum", decoder: text, qos: 0, name: humidity}
"""


def configured(port: int = 1883) -> tuple[_BrokerIntake, MqttService]:
    """Return the intake and the service of CONFIG with the broker on `port`."""
    doc = load_yaml(CONFIG.replace("PORT", str(port)), name="tocsin.yaml")
    brokers = parse_brokers(doc["mqtt"], doc.mark, Path())
    subscriptions = parse_subscriptions(doc["sources"]["mqtt"], doc.mark, brokers)
    service = MqttService(
        brokers=brokers, subscriptions=subscriptions, clock=ManualClock(1_795_564_800.0)
    )
    return _BrokerIntake(brokers["local"], subscriptions), service


class Acks:
    """An ack function that records each call."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[int, int]]] = []

    def __call__(self, mids: Sequence[tuple[int, int]]) -> int:
        self.calls.append(list(mids))
        return len(mids)


def test_acks_leave_in_receive_order_when_batches_complete_out_of_order() -> None:
    """Test that a batch's acks wait for every earlier batch, then leave in one call."""
    acks = Acks()
    queue = AckQueue(acks)
    first = queue.add([(1, 1), (1, 2)])
    second = queue.add([(1, 3)])
    empty = queue.add([])
    fourth = queue.add([(2, 4)])
    empty()
    second()
    assert acks.calls == []
    assert len(queue) == 4
    first()
    assert acks.calls == [[(1, 1), (1, 2), (1, 3)]]
    assert len(queue) == 1
    fourth()
    assert acks.calls == [[(1, 1), (1, 2), (1, 3)], [(2, 4)]]
    assert len(queue) == 0


def test_a_batch_with_nothing_to_ack_makes_no_call() -> None:
    """Test that completing batches of QoS 0 messages only does not write an empty ack."""
    acks = Acks()
    queue = AckQueue(acks)
    queue.add([])()
    assert acks.calls == []
    assert len(queue) == 0


RECEIVED = 1_795_564_800.0
BERLIN: Delivery = (1, 1, 1, False, False, "sensors/berlin/temp", b'{"v": 1}')


def test_the_intake_routes_maps_and_counts() -> None:
    """Test routing to the subscription that matches, the events, acks and drop counts."""
    intake, _ = configured()
    events, acks, _ = intake.take(
        [
            BERLIN,
            (1, 0, 0, False, True, "sensors/berlin/hum", b"55"),
            (1, 2, 1, False, False, "other/x", b"1"),
            (1, 3, 1, False, False, None, b"1"),
        ],
        RECEIVED,
    )
    temp, hum = events
    assert (temp.origin, temp.fields["site"], temp.fields["payload"]) == (
        "sensors/berlin/temp",
        "berlin",
        {"v": 1},
    )
    assert (hum.origin, hum.fields["payload"], hum.fields["retain"]) == (
        "sensors/berlin/hum",
        "55",
        True,
    )
    assert {temp.received, hum.received} == {RECEIVED}
    assert acks == [(1, 1), (1, 2), (1, 3)]  # every QoS 1 message, made an event or not
    assert intake.received == {"temps": 1, "humidity": 1}
    assert intake.dropped == {"no subscription": 1, "invalid topic": 1}
    assert intake.redelivered == 0


def test_the_intake_skips_a_resend_it_took_and_keeps_one_it_did_not() -> None:
    """Test resends: one seen in an earlier batch is dropped and acked, a new one is kept."""
    intake, _ = configured()
    intake.take([BERLIN], RECEIVED)
    resend = (2, 1, 1, True, False, "sensors/berlin/temp", b'{"v": 1}')
    unseen = (2, 9, 1, True, False, "sensors/paris/temp", b'{"v": 2}')
    events, acks, _ = intake.take([resend, unseen], RECEIVED)
    assert [event.fields["site"] for event in events] == ["paris"]
    assert acks == [(2, 1), (2, 9)]
    assert intake.dropped == {"duplicate": 1}
    assert intake.redelivered == 2
    assert intake.received == {"temps": 2}  # the first batch's and paris


def test_a_batch_that_never_reached_the_queue_is_forgotten() -> None:
    """Test that forgetting a lost batch lets the broker's resends of it through as new."""
    intake, _ = configured()
    _, _, learned = intake.take([BERLIN], RECEIVED)
    intake.forget(learned)  # its put was cancelled: nothing of it was queued
    resend = (2, 1, 1, True, False, "sensors/berlin/temp", b'{"v": 1}')
    events, _, _ = intake.take([resend], RECEIVED)
    assert [event.fields["site"] for event in events] == ["berlin"]
    assert intake.dropped == {}


def test_the_intake_keeps_repeated_qos0_and_unflagged_messages() -> None:
    """Test that only a flagged QoS 1 resend is skipped: QoS 0 and unflagged repeats count."""
    intake, _ = configured()
    hum: Delivery = (1, 0, 0, False, False, "sensors/berlin/hum", b"55")
    events, _, _ = intake.take([BERLIN, BERLIN, hum, hum], RECEIVED)
    assert len(events) == 4
    assert intake.dropped == {}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with running_broker(tmp_path / "broker") as started:
        yield started


def outgoing(count: int, qos: int = 1) -> list[Outgoing]:
    return [
        Outgoing(
            "mqtt:local",
            "r",
            {"topic": f"alerts/{i % 3}", "payload": f"m{i}", "qos": qos, "retain": False},
        )
        for i in range(count)
    ]


async def until(condition: Callable[[], bool]) -> None:
    """Wait for a state the service does not signal."""
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110 - nothing to wait on: poll
            await asyncio.sleep(0.005)


@live
@pytest.mark.parametrize("qos", [0, 1])
async def test_the_outbox_sender_publishes_a_list_in_order(broker: Broker, qos: int) -> None:
    """Test `mqtt:NAME`'s send function: every message, in order, and the count."""
    _, service = configured(broker.port)
    reader = BrokerLink(link_config(broker.port, client_id="reader"), [("alerts/#", 1)])
    assert service.outbox_limit("mqtt:local") == 100_000
    async with service, running_link(reader):
        send = service.channels["mqtt:local"]
        assert await send(outgoing(50, qos)) == 50
        taken = await collect(reader, 50)
    assert payloads(taken) == [b"m%d" % i for i in range(50)]
    assert [d[5] for d in taken[:3]] == ["alerts/0", "alerts/1", "alerts/2"]


@live
async def test_the_outbox_sender_waits_for_the_broker(broker: Broker) -> None:
    """Test that a send while the broker is down completes once it is back."""
    _, service = configured(broker.port)
    reader = BrokerLink(link_config(broker.port, client_id="reader"), [("alerts/#", 1)])
    async with service, running_link(reader):
        link = service.links["local"]
        await until(lambda: link.is_connected)
        await asyncio.to_thread(broker.stop)
        await until(lambda: not link.is_connected)
        sending = asyncio.create_task(service.channels["mqtt:local"](outgoing(5)))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not sending.done()
        await asyncio.to_thread(broker.start)
        async with asyncio.timeout(WAIT):
            assert await sending == 5
        taken = await collect(reader, 5)
    assert payloads(taken) == [b"m%d" % i for i in range(5)]


class Pipeline:
    """A stand-in for the daemon's queue: keeps each batch's events and its commit callback."""

    def __init__(self) -> None:
        self.batches: list[tuple[list[Event], Callable[[], None] | None]] = []
        self.events: list[Event] = []
        self.arrived = asyncio.Event()

    async def put(
        self, events: list[Event], _received: float, source: str, done: Callable[[], None] | None
    ) -> None:
        assert source == "mqtt"
        self.batches.append((events, done))
        self.events += events
        self.arrived.set()

    async def until(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.events) < count:
                self.arrived.clear()
                await self.arrived.wait()

    def commit(self) -> None:
        for _, done in self.batches:
            if done is not None:
                done()
        self.batches.clear()


async def consume(service: MqttService, pipeline: Pipeline) -> asyncio.Task[None]:
    (body,) = service.consumers().values()
    return asyncio.create_task(body(pipeline.put))


@live
async def test_events_never_committed_come_again_and_committed_ones_do_not(
    broker: Broker,
) -> None:
    """Test at-least-once through the service: ack after commit, resend after a restart."""
    first, second = Pipeline(), Pipeline()
    _, service = configured(broker.port)
    async with service:
        task = await consume(service, first)
        await until(lambda: service.links["local"].is_connected)
        with Publisher(broker.port) as publisher:
            publisher.wait(publisher.send([("sensors/a/temp", b"1"), ("sensors/b/temp", b"2")]))
        await first.until(2)
        first.commit()
        with Publisher(broker.port) as publisher:
            publisher.wait(publisher.send([("sensors/c/temp", b"3")]))
        await first.until(3)  # taken, never committed
        task.cancel()
    _, service = configured(broker.port)
    async with service:
        task = await consume(service, second)
        with Publisher(broker.port) as publisher:
            publisher.wait(publisher.send([("sensors/d/temp", b"4")]))
        await second.until(2)
        task.cancel()
    assert [e.fields["site"] for e in first.events] == ["a", "b", "c"]
    assert [e.fields["site"] for e in second.events] == ["c", "d"]
