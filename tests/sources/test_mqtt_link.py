"""BrokerLink against a real mosquitto: deliveries, deferred acks, sessions, TLS, auth, reconnects."""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mqttkit import (
    WAIT,
    Broker,
    Pki,
    Publisher,
    collect,
    link_config,
    make_pki,
    needs_mosquitto,
    payloads,
    refusing_subscriptions,
    running_broker,
    running_link,
)
from tocsin.mqtt.settings import BrokerConfig, TlsConfig
from tocsin.sources.mqtt import BrokerDownError, BrokerLink, SubscribeResult

pytestmark = [pytest.mark.integration, needs_mosquitto]

VERSIONS = ["5", "3.1.1"]


class States:
    """The link's state reports in order, and a way to wait for one."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self._changed = asyncio.Event()

    def __call__(self, what: str, about: dict[str, Any]) -> None:
        self.seen.append((what, about))
        self._changed.set()

    def names(self) -> list[str]:
        return [what for what, _ in self.seen]

    def of(self, what: str) -> list[dict[str, Any]]:
        return [about for name, about in self.seen if name == what]

    async def reach(self, what: str, count: int = 1) -> dict[str, Any]:
        """Wait for the `count`th report of `what` and return its details."""
        async with asyncio.timeout(WAIT):
            while len(self.of(what)) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.of(what)[count - 1]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with running_broker(tmp_path / "broker") as started:
        yield started


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def new_link(
    config: BrokerConfig, filters: list[tuple[str, int]], **options: Any
) -> tuple[BrokerLink, States]:
    states = States()
    return BrokerLink(config, filters, on_state=states, **options), states


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait for something the link does not signal (a count of waiting deliveries)."""
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110 - nothing to wait on: poll
            await asyncio.sleep(0.005)


async def flush(link: BrokerLink) -> None:
    """Return once the broker has read everything the link wrote so far (acks included)."""
    await link.publish("sync", b"", 1, False)


async def send(
    port: int, messages: list[tuple[str, bytes]], *, qos: int = 1, retain: bool = False
) -> None:
    """Publish from a separate client; return once the broker has every message."""
    with Publisher(port) as publisher:
        infos = publisher.send(messages, qos=qos, retain=retain)
        await asyncio.to_thread(Publisher.wait, infos)


def numbered(count: int, topic: str = "a/n") -> list[tuple[str, bytes]]:
    return [(topic, b"%d" % i) for i in range(count)]


@pytest.mark.parametrize("version", VERSIONS)
async def test_deliveries_are_tuples_in_arrival_order(broker: Broker, version: str) -> None:
    """Test the fields of QoS 0, QoS 1 and retained deliveries, and what was subscribed."""
    await send(broker.port, [("a/kept", b"kept")], retain=True)
    link, states = new_link(link_config(broker.port, version=version), [("a/#", 1), ("b/+", 0)])
    async with running_link(link):
        assert link.is_connected
        assert link.subscribed == [SubscribeResult("a/#", 1), SubscribeResult("b/+", 0)]
        assert states.of("connected") == [{"session_present": False}]
        await send(broker.port, [("a/one", b"1"), ("b/two", b"2"), ("a/three", b"3")])
        kept, one, two, three = await collect(link, 4)
    assert link.generation == 1
    assert (kept[0], *kept[2:]) == (1, 1, False, True, "a/kept", b"kept")
    assert (one[0], *one[2:]) == (1, 1, False, False, "a/one", b"1")
    assert two == (1, 0, 0, False, False, "b/two", b"2")  # granted QoS 0: no packet id
    assert (three[0], *three[2:]) == (1, 1, False, False, "a/three", b"3")
    assert 0 < one[1] != three[1] > 0


async def test_take_batches_and_wait(broker: Broker) -> None:
    """Test that take() hands out up to `limit` in order and wait() blocks until one arrives."""
    link, _ = new_link(link_config(broker.port), [("a/#", 1)])
    async with running_link(link):
        await send(broker.port, numbered(10))
        await eventually(lambda: link.waiting == 10)
        assert payloads(link.take(3)) == [b"0", b"1", b"2"]
        assert link.waiting == 7
        assert payloads(link.take(100)) == [b"%d" % i for i in range(3, 10)]
        assert link.take(5) == []
        waiter = asyncio.create_task(link.wait())
        await asyncio.sleep(0)
        assert not waiter.done()
        await send(broker.port, [("a/late", b"late")])
        async with asyncio.timeout(WAIT):
            await waiter
        assert payloads(link.take(5)) == [b"late"]


@pytest.mark.parametrize("version", VERSIONS)
async def test_unacked_messages_come_again_after_a_broker_restart(
    broker: Broker, version: str
) -> None:
    """Test that taken but unacknowledged QoS 1 messages are resent, flagged, with their ids."""
    link, states = new_link(link_config(broker.port, version=version), [("a/#", 1)])
    async with running_link(link):
        await send(broker.port, numbered(6))
        first = await collect(link, 6, ack=False)
        assert link.ack([(d[0], d[1]) for d in first[:3]]) == 3
        await flush(link)
        await asyncio.to_thread(broker.restart)
        await states.reach("connected", 2)
        assert link.session_present is True
        assert link.generation > 1  # one per connection attempt
        assert link.waiting == 3  # resends come before the SUBACK the link waited for
        again = link.take(10)
        assert [d[1] for d in again] == [d[1] for d in first[3:]]
        assert {(d[0], d[3]) for d in again} == {(link.generation, True)}
        assert payloads(again) == [b"3", b"4", b"5"]
        assert link.ack([(1, d[1]) for d in again]) == 0  # the old connection's ids
        assert link.ack([(d[0], d[1]) for d in again]) == 3
        await flush(link)
        await asyncio.to_thread(broker.restart)
        await states.reach("connected", 3)
        await send(broker.port, [("a/end", b"end")])
        assert payloads(await collect(link, 1)) == [b"end"]  # nothing came back before it


@pytest.mark.parametrize("version", VERSIONS)
async def test_unacked_messages_come_again_after_the_link_restarts(
    broker: Broker, version: str
) -> None:
    """Test that cancelling the link and running it again resends what was not acknowledged."""
    link, states = new_link(link_config(broker.port, version=version), [("a/#", 1)])
    async with running_link(link):
        await send(broker.port, numbered(4))
        first = await collect(link, 4, ack=False)
        link.ack([(d[0], d[1]) for d in first[::2]])
        await flush(link)
    assert not link.is_connected
    assert link.ack([(d[0], d[1]) for d in first]) == 0  # no connection: nothing is written
    async with running_link(link):
        assert link.session_present is True
        again = await collect(link, 2)
        await send(broker.port, [("a/end", b"end")])
        assert payloads(await collect(link, 1)) == [b"end"]
    assert [(d[0], d[1], d[3], d[6]) for d in again] == [
        (2, first[1][1], True, b"1"),
        (2, first[3][1], True, b"3"),
    ]
    assert states.names().count("session_lost") == 0


@pytest.mark.parametrize("version", VERSIONS)
async def test_messages_sent_while_away_arrive_on_resume(broker: Broker, version: str) -> None:
    """Test the persistent session: QoS 1 messages published while the link was down."""
    link, states = new_link(link_config(broker.port, version=version), [("a/#", 1)])
    async with running_link(link):
        assert link.session_present is False
    await send(broker.port, numbered(5))
    async with running_link(link):
        assert link.session_present is True
        away = await collect(link, 5)
    # mosquitto flags these as resends (it put them in flight while the link was away):
    # the intake keeps a flagged message it never took.
    assert payloads(away) == [b"0", b"1", b"2", b"3", b"4"]
    assert states.of("connected") == [{"session_present": False}, {"session_present": True}]
    assert "session_lost" not in states.names()


async def test_a_broker_without_the_session_reports_it_lost(broker: Broker) -> None:
    """Test `session_lost` when the broker comes back without its persistence file."""
    link, states = new_link(link_config(broker.port), [("a/#", 1)])
    async with running_link(link):
        await asyncio.to_thread(broker.stop)
        await states.reach("disconnected")
        broker.forget_sessions()
        await asyncio.to_thread(broker.start)
        await states.reach("connected", 2)
        assert link.session_present is False
        await send(broker.port, [("a/after", b"after")])  # subscribed again on the new session
        assert payloads(await collect(link, 1)) == [b"after"]
    names = [n for n in states.names() if n in ("connected", "session_lost")]
    assert names == ["connected", "session_lost", "connected"]


def sized(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.mark.parametrize("version", VERSIONS)
async def test_payloads_of_every_length_class_arrive_intact(broker: Broker, version: str) -> None:
    """Test remaining-length boundaries, a 1 MiB payload and 5,000 small ones back to back."""
    topic = "a/sizes"
    overhead = 2 + len(topic) + 2 + (1 if version == "5" else 0)  # topic, packet id, properties
    sizes = [0, 1, 127, 128, 16383, 16384, 1 << 20]
    sizes += [remaining - overhead for remaining in (127, 128, 16383, 16384, 2097151, 2097152)]
    messages = [(topic, sized(size, seed)) for seed, size in enumerate(sizes)]
    messages += [(topic, b"%d." % i + b"x" * (i % 300)) for i in range(5000)]
    link, _ = new_link(link_config(broker.port, version=version), [("a/#", 1)])
    async with running_link(link):
        await send(broker.port, messages)
        taken = await collect(link, len(messages))
    assert [len(p) for p in payloads(taken)] == [len(p) for _, p in messages]
    assert payloads(taken) == [p for _, p in messages]


async def test_payloads_over_tls_arrive_intact(tmp_path: Path, pki: Pki) -> None:
    """Test the read-ahead over TLS, where decrypted bytes wait inside the SSL object."""
    messages = [("a/t", sized(size, size)) for size in (0, 1, 16383, 16384, 1 << 20)]
    messages += [("a/t", b"%d" % i) for i in range(3000)]
    with running_broker(tmp_path / "broker", tls=pki.tls()) as broker:
        tls = TlsConfig(pki.ca, None, None, verify=True)
        link, _ = new_link(link_config(broker.tls_port, tls=tls), [("a/#", 1)])
        async with running_link(link):
            await send(broker.port, messages)
            taken = await collect(link, len(messages))
    assert payloads(taken) == [p for _, p in messages]


async def test_a_full_buffer_pauses_reading_until_half_is_taken(broker: Broker) -> None:
    """Test the last resort (3.1.1 to a broker without an in-flight limit): reading stops at
    twice high_water, resumes below half of that, loses nothing."""
    link, _ = new_link(link_config(broker.port, version="3.1.1"), [("a/#", 1)], high_water=32)
    async with running_link(link):
        await send(broker.port, numbered(1000))
        await eventually(lambda: link.waiting == 64)
        for _ in range(50):  # let any bytes the broker sent be read, if the link still read
            await asyncio.sleep(0)
        assert link.waiting == 64
        taken = link.take(30)  # 34 left: not below half, still paused
        await asyncio.sleep(0.05)
        assert link.waiting == 34
        taken += link.take(3)  # 31 left: below half
        await eventually(lambda: link.waiting == 64)
        most = 0
        while len(taken) < 1000:
            async with asyncio.timeout(WAIT):
                await link.wait()
            most = max(most, link.waiting)
            taken += link.take(10)
            link.ack([(d[0], d[1]) for d in taken[-10:]])
            await asyncio.sleep(0)
    assert most <= 64
    assert payloads(taken) == [b"%d" % i for i in range(1000)]


async def test_reconnects_with_growing_jittered_delays(broker: Broker) -> None:
    """Test the states and backoff while the broker is down, and the reconnect when it is back."""
    config = link_config(broker.port, reconnect_min=0.05, reconnect_max=0.4)
    link, states = new_link(config, [("a/#", 1)])
    async with running_link(link):
        await asyncio.to_thread(broker.stop)
        lost = await states.reach("disconnected")
        assert lost["reason"] == "connection lost"
        assert not link.is_connected
        await states.reach("connect_failed", 4)
        await states.reach("reconnecting", 5)
        await asyncio.to_thread(broker.start)
        await states.reach("connected", 2)
        assert link.is_connected
        await send(broker.port, [("a/back", b"back")])
        assert payloads(await collect(link, 1)) == [b"back"]
    names = states.names()
    assert names[:3] == ["connected", "disconnected", "reconnecting"]
    assert names[3:11] == ["connect_failed", "reconnecting"] * 4
    assert states.of("connect_failed")[-1]["reason"] == "connection refused"
    delays = [about["retry_in"] for about in states.of("reconnecting")]
    ceilings = [0.05, 0.1, 0.2, 0.4, 0.4]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=False)), delays
    assert any(d != c for d, c in zip(delays, ceilings, strict=False)), delays  # jittered


@pytest.mark.parametrize(
    ("trusted", "verify"), [("ca", True), ("other_ca", False)], ids=["right CA", "verify off"]
)
async def test_tls_connects(tmp_path: Path, pki: Pki, trusted: str, verify: bool) -> None:
    """Test TLS to a server cert for 127.0.0.1: the CA that signed it, or no verification."""
    with running_broker(tmp_path / "broker", tls=pki.tls()) as broker:
        tls = TlsConfig(getattr(pki, trusted), None, None, verify=verify)
        link, _ = new_link(link_config(broker.tls_port, tls=tls), [("a/#", 1)])
        async with running_link(link):
            await send(broker.port, [("a/secure", b"s")])
            assert payloads(await collect(link, 1)) == [b"s"]


async def test_tls_with_the_wrong_ca_fails(tmp_path: Path, pki: Pki) -> None:
    """Test that a server cert the CA did not sign is a `tls` connect failure, retried."""
    with running_broker(tmp_path / "broker", tls=pki.tls()) as broker:
        tls = TlsConfig(pki.other_ca, None, None, verify=True)
        link, states = new_link(link_config(broker.tls_port, tls=tls), [("a/#", 1)])
        async with running_link(link, connect=False):
            await states.reach("connect_failed", 2)
        assert {about["reason"] for about in states.of("connect_failed")} == {"tls"}
        assert "certificate verify failed" in states.of("connect_failed")[0]["error"]
        assert "connected" not in states.names()


async def test_a_required_client_certificate(
    tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """Test a broker that requires client certs: ours connects; none is a prompt `tls` failure."""
    with running_broker(tmp_path / "broker", tls=pki.tls(require_client_cert=True)) as broker:
        tls = TlsConfig(pki.ca, pki.client_cert, pki.client_key, verify=True)
        link, _ = new_link(link_config(broker.tls_port, tls=tls), [("a/#", 1)])
        async with running_link(link):
            await send(broker.port, [("a/mutual", b"m")])
            assert payloads(await collect(link, 1)) == [b"m"]
        anonymous = link_config(
            broker.tls_port, client_id="anonymous", tls=TlsConfig(pki.ca, None, None, True)
        )
        link, states = new_link(anonymous, [("a/#", 1)])
        async with running_link(link, connect=False):
            # The server's alert comes after the handshake, before CONNACK: not a 10s timeout.
            await states.reach("connect_failed", 3)
    failures = states.of("connect_failed")
    assert {about["reason"] for about in failures} == {"tls"}
    assert "certificate required" in failures[0]["error"]
    assert not [r for r in caplog.records if r.name == "asyncio"]  # no callback on a closed fd


async def test_username_and_password(tmp_path: Path) -> None:
    """Test that the right password connects and a wrong one is `refused`, retried."""
    with running_broker(tmp_path / "broker", users={"alice": "s3cret"}) as broker:
        right = link_config(broker.port, username="alice", password="s3cret")
        link, _ = new_link(right, [("a/#", 1)])
        async with running_link(link):
            assert link.is_connected
        wrong = link_config(broker.port, client_id="w", username="alice", password="guess")
        link, states = new_link(wrong, [("a/#", 1)])
        async with running_link(link, connect=False):
            await states.reach("connect_failed", 2)
        assert {about["reason"] for about in states.of("connect_failed")} == {"refused"}
        assert "connected" not in states.names()


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_refused_subscription_is_reported(tmp_path: Path, version: str) -> None:
    """Test a filter the broker refuses: None in `subscribed`, while the others still deliver."""
    refusing = refusing_subscriptions(tmp_path / "dynsec", "closed/#")
    with running_broker(tmp_path / "broker", extra=refusing) as broker:
        link, _ = new_link(
            link_config(broker.port, version=version), [("closed/#", 1), ("open/#", 1)]
        )
        async with running_link(link):
            reason = "Not authorized" if version == "5" else "refused"
            assert link.subscribed == [
                SubscribeResult("closed/#", None, reason),
                SubscribeResult("open/#", 1),
            ]
            await send(broker.port, [("closed/x", b"hidden"), ("open/x", b"seen")])
            assert payloads(await collect(link, 1)) == [b"seen"]


async def test_an_acl_file_grants_and_withholds(tmp_path: Path) -> None:
    """Test what an acl_file read denial looks like: granted, then nothing delivered."""
    acl = "user alice\ntopic readwrite open/#\ntopic write closed/#\n"
    with running_broker(tmp_path / "broker", users={"alice": "pw"}, acl=acl) as broker:
        config = link_config(broker.port, username="alice", password="pw")
        link, _ = new_link(config, [("closed/#", 1), ("open/#", 1)])
        writer, _ = new_link(replace(config, client_id="writer"), [])
        async with running_link(link), running_link(writer):
            assert [result.granted for result in link.subscribed] == [1, 1]
            await writer.publish("closed/x", b"hidden", 1, False)
            await writer.publish("open/x", b"seen", 1, False)
            assert payloads(await collect(link, 1)) == [b"seen"]


@pytest.mark.parametrize("qos", [0, 1])
async def test_publish_reaches_a_subscriber(broker: Broker, qos: int) -> None:
    """Test publish() at QoS 0 and 1, in order, to another client subscribed to the topic."""
    reader, _ = new_link(link_config(broker.port, client_id="reader"), [("out/#", 1)])
    writer, _ = new_link(link_config(broker.port, client_id="writer"), [])
    async with running_link(reader), running_link(writer):
        for i in range(20):
            await writer.publish(f"out/{i % 3}", b"%d" % i, qos, False)
        taken = await collect(reader, 20)
    assert payloads(taken) == [b"%d" % i for i in range(20)]
    assert {d[2] for d in taken} == {qos}
    assert writer.subscribed == []


async def test_publish_without_a_connection_raises(broker: Broker) -> None:
    """Test BrokerDownError before the first connect and after the broker went away."""
    link, states = new_link(link_config(broker.port), [])
    with pytest.raises(BrokerDownError, match="not connected"):
        await link.publish("out/x", b"x", 1, False)
    async with running_link(link):
        await asyncio.to_thread(broker.stop)
        await states.reach("disconnected")
        with pytest.raises(BrokerDownError, match="not connected"):
            await link.publish("out/x", b"x", 1, False)


async def test_a_publish_in_flight_fails_when_the_connection_drops(broker: Broker) -> None:
    """Test that a QoS 1 publish waiting for its PUBACK raises once the connection is lost."""
    link, states = new_link(link_config(broker.port), [])
    async with running_link(link):
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGSTOP)  # reads nothing, acknowledges nothing
        publishing = asyncio.create_task(link.publish("out/x", b"x", 1, False))
        await asyncio.sleep(0)
        await asyncio.to_thread(broker.stop, signal.SIGKILL)
        await states.reach("disconnected")
        async with asyncio.timeout(WAIT):
            with pytest.raises(BrokerDownError):
                await publishing


async def test_reconnect_makes_the_broker_resend(broker: Broker) -> None:
    """Test that reconnect() ends the connection with its reason, and what was unacked returns."""
    link, states = new_link(link_config(broker.port), [("a/#", 1)])
    async with running_link(link):
        await send(broker.port, numbered(2))
        first = await collect(link, 2, ack=False)
        link.reconnect("the consumer failed")
        closed = await states.reach("disconnected")
        await states.reach("connected", 2)
        again = await collect(link, 2)
    assert (closed["reason"], closed["error"]) == ("closed", "the consumer failed")
    assert [(d[1], d[3], d[6]) for d in again] == [(d[1], True, d[6]) for d in first]


async def test_messages_with_properties_go_through_paho_in_order(broker: Broker) -> None:
    """Test that MQTT 5 messages carrying properties (which the PUBLISH fast path leaves to
    paho) and plain ones, interleaved, all arrive intact and in order."""
    import paho.mqtt.client as paho
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    link, _ = new_link(link_config(broker.port, version="5"), [("p/#", 1)])
    async with running_link(link):
        publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        try:
            infos = []
            for n in range(400):
                properties = None
                if n % 3 == 0:
                    properties = Properties(PacketTypes.PUBLISH)
                    properties.UserProperty = ("n", str(n))
                    properties.MessageExpiryInterval = 600
                infos.append(publisher.publish("p/x", b"%d" % n, 1, properties=properties))
            for info in infos:
                await asyncio.to_thread(info.wait_for_publish, WAIT)
        finally:
            publisher.disconnect()
            publisher.loop_stop()
        taken = await collect(link, 400)
    assert payloads(taken) == [b"%d" % n for n in range(400)]
    assert {d[5] for d in taken} == {"p/x"}
