"""The daemon's MQTT side: broker links, turning deliveries into queued batches, publishing."""

from __future__ import annotations

import asyncio
import functools
import json
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import structlog

from tocsin import obs
from tocsin.engine.clock import Clock
from tocsin.files import replace_text
from tocsin.model import Event, Outgoing, Put
from tocsin.mqtt.events import MessageMapper
from tocsin.mqtt.redelivery import RecentKeys, Redeliveries
from tocsin.mqtt.settings import BrokerConfig, Subscription
from tocsin.mqtt.topics import Router
from tocsin.rules.templates import Template
from tocsin.sources.mqtt import BrokerLink, Delivery

__all__ = ["MQTT_CHANNEL", "AckQueue", "MqttService"]

log = structlog.get_logger("tocsin.mqtt")

MQTT_CHANNEL = "mqtt:"  # outbox channel prefix; the broker's name follows
DEDUPE_FILE = "mqtt-dedupe.json"  # the identities `dedupe_key` saw lately, kept over a restart
FILTERS_FILE = "mqtt-subscriptions.json"  # what each broker's session may be subscribed to
_LOG_EVERY = 60.0  # seconds between log lines about one kind of dropped message
_DISCONNECT_WAIT = 5.0  # seconds for the links to disconnect cleanly at shutdown


# What one batch taught the duplicate checks: its QoS 1 messages (topic, mid, payload), and
# the (subscription, identity) pairs `dedupe_key` made.
Learned = tuple[list[tuple[str, int, bytes]], list[tuple[str, str]]]

# Reasons a message made no event (besides payloads a subscription drops).
DUPLICATE = "duplicate"
NO_SUBSCRIPTION = "no subscription"
INVALID_TOPIC = "invalid topic"
QUEUE_FULL = "queue full"  # a QoS 0 message while tocsin was behind: no broker keeps it
SHUTDOWN = "shutdown"  # a QoS 0 message received but not queued when the daemon stopped


class AckQueue:
    """Acknowledge batches in the order they were received, each once it is committed.

    MQTT wants acknowledgements in receive order; commits finish in order too, but a batch
    that made no events is done at once and must still wait for those before it.
    """

    __slots__ = ("_ack", "_slots")

    def __init__(self, ack: Callable[[Sequence[tuple[int, int]]], int]) -> None:
        self._ack = ack
        self._slots: deque[list[Any]] = deque()  # [acks, done]

    def __len__(self) -> int:
        return len(self._slots)

    def add(self, acks: list[tuple[int, int]]) -> Callable[[], None]:
        """Queue one batch's (generation, mid) pairs; call the result once it is committed."""
        slot: list[Any] = [acks, False]
        self._slots.append(slot)

        def done() -> None:
            slot[1] = True
            self._flush()

        return done

    def _flush(self) -> None:
        slots = self._slots
        ready: list[tuple[int, int]] = []
        while slots and slots[0][1]:
            ready.extend(slots.popleft()[0])
        if ready:
            self._ack(ready)


class _BrokerIntake:
    """One broker's subscriptions: route, skip resends, map, count."""

    def __init__(self, broker: BrokerConfig, subscriptions: Sequence[Subscription]) -> None:
        self.broker = broker.name
        self.router = Router(subscriptions)
        self.mappers = {s.name: MessageMapper(s) for s in subscriptions}
        self.identities = {
            s.name: (s.dedupe_key, RecentKeys(s.dedupe_window))
            for s in subscriptions
            if s.dedupe_key is not None
        }
        self.redeliveries = Redeliveries()
        self.dropped: dict[str, int] = {}
        self.redelivered = 0
        self.received: dict[str, int] = {}

    def take(
        self, deliveries: list[Delivery], received: float
    ) -> tuple[list[Event], list[tuple[int, int]], Learned]:
        """Return the events of a batch, the (generation, mid) of its QoS 1 messages, and
        what the duplicate checks learned from it (to `forget` if its events are lost)."""
        learned: Learned = ([], [])
        try:
            events, acks = self._take(deliveries, received, learned)
        except BaseException:
            self.forget(learned)
            raise
        return events, acks, learned

    def forget(self, learned: Learned) -> None:
        """Unlearn a batch whose events never reached the queue: its resends are new."""
        self.redeliveries.forget(learned[0])
        for name, key in learned[1]:
            self.identities[name][1].forget(key)

    def _take(
        self, deliveries: list[Delivery], received: float, learned: Learned
    ) -> tuple[list[Event], list[tuple[int, int]]]:
        events: list[Event] = []
        acks: list[tuple[int, int]] = []
        messages, keys = learned
        route = self.router.route
        repeated = self.redeliveries.repeated
        mappers = self.mappers
        counts = self.received
        identities = self.identities
        for generation, mid, qos, dup, retain, topic, payload in deliveries:
            if qos:
                acks.append((generation, mid))
            if dup:
                self.redelivered += 1
            if topic is None:
                self._drop(INVALID_TOPIC)
                continue
            subscription = route(topic)
            if subscription is None:
                self._drop(NO_SUBSCRIPTION)
                continue
            if qos:
                if repeated(topic, mid, payload, dup):
                    self._drop(DUPLICATE)
                    continue
                messages.append((topic, mid, payload))
            name = subscription.name
            counts[name] = counts.get(name, 0) + 1
            event = mappers[name].map(topic, topic.split("/"), payload, qos, retain, received)
            if event is None:
                continue
            if identities and name in identities:
                key = self._identity(identities[name][0], event)
                if key:
                    if identities[name][1].repeated(key, event.received):
                        self._drop(DUPLICATE)
                        continue
                    keys.append((name, key))
            events.append(event)
        return events, acks

    @staticmethod
    def _identity(template: Template, event: Event) -> str:
        """The event's configured identity; "" (no duplicate check) when it cannot be made."""
        try:
            return template.render(event.fields)
        except (ValueError, RecursionError):  # TemplateRenderError is a ValueError
            return ""

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


class MqttService:
    """Every configured broker: connections, the subscription consumers, the publishers."""

    def __init__(
        self,
        *,
        brokers: Mapping[str, BrokerConfig],
        subscriptions: Sequence[Subscription],
        clock: Clock,
        state_dir: Path | None = None,
        batch_events: int = 2048,
    ) -> None:
        self._clock = clock
        self._dedupe_path = state_dir / DEDUPE_FILE if state_dir is not None else None
        self._filters_path = state_dir / FILTERS_FILE if state_dir is not None else None
        self._batch = batch_events
        self._throttle = obs.Throttle(every=_LOG_EVERY)
        self.links: dict[str, BrokerLink] = {}
        self._intakes: dict[str, _BrokerIntake] = {}
        for name, broker in brokers.items():
            mine = [s for s in subscriptions if s.broker == name]
            self.links[name] = BrokerLink(
                broker,
                [(s.filter, s.qos) for s in mine],
                high_water=max(4 * batch_events, 1024),
                on_state=self._state_reporter(name),
                on_dropped=self._drop_reporter(name),
            )
            if mine:
                self._intakes[name] = _BrokerIntake(broker, mine)
        self._tasks: list[asyncio.Task[None]] = []
        # False when the stop gave up batches uncommitted: their identities must not be
        # kept, or the broker's resends of those messages would count as duplicates.
        self.keep_identities = True

    @property
    def channels(self) -> dict[str, Callable[[Sequence[Outgoing]], Awaitable[int]]]:
        """Outbox channel -> its send function, one per broker."""
        return {MQTT_CHANNEL + name: self._sender(link) for name, link in self.links.items()}

    def outbox_limit(self, channel: str) -> int:
        """How many messages may wait for this channel's broker."""
        return self.links[channel.removeprefix(MQTT_CHANNEL)].broker.outbox_limit

    async def __aenter__(self) -> Self:
        """Start connecting to every broker; returns at once (connections come up on their own)."""
        self._load_identities()
        self._find_stale_filters()
        for name, link in self.links.items():
            obs.MQTT_CONNECTED.labels(name).set(0)
            obs.MQTT_UNACKED.labels(name).set_function(functools.partial(_unacked, link))
            self._tasks.append(asyncio.create_task(link.run(), name=f"tocsin.mqtt.{name}"))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Disconnect cleanly: acknowledgements queued by the last commits go out first."""
        await asyncio.sleep(0)  # let commit callbacks that are due queue their acks
        self._report_left()
        for task in self._tasks:
            task.cancel()
        # aiomqtt waits up to 10 s for a clean disconnect; a dead link must not hold the stop.
        _done, stuck = await asyncio.wait(self._tasks, timeout=_DISCONNECT_WAIT)
        for task in stuck:
            log.warning("mqtt_disconnect_timeout", task=task.get_name())
        self._tasks.clear()
        for name in self.links:
            obs.MQTT_CONNECTED.labels(name).set(0)
        if self.keep_identities:
            self._save_identities()

    def _report_left(self) -> None:
        """Say what each broker is left with: unacknowledged QoS 1 messages (sent again at the
        next connection) and QoS 0 messages received but never queued (lost, counted)."""
        for name, link in self.links.items():
            lost = link.discard()
            if lost:
                obs.MQTT_DROPPED.labels(name, SHUTDOWN).inc(lost)
            if lost or link.unacked:
                log.info(
                    "source_stopped",
                    source="mqtt",
                    broker=name,
                    unacked=link.unacked,
                    qos0_dropped=lost,
                    note="the broker sends the unacknowledged messages again",
                )

    def _find_stale_filters(self) -> None:
        """Note the filters an earlier config subscribed to: a persistent session keeps them
        (messages would still come) until they are unsubscribed at the next connect."""
        if self._filters_path is None:
            return
        try:
            saved = json.loads(self._filters_path.read_text(encoding="utf-8"))
            for name, link in self.links.items():
                current = {f for f, _qos in link.filters}
                link.stale = [str(f) for f in saved.get(name, []) if f not in current]
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, AttributeError) as error:
            log.warning(
                "mqtt_filters_file_unreadable", path=str(self._filters_path), error=str(error)
            )
        self._save_filters()

    def _save_filters(self) -> None:
        if self._filters_path is None:
            return
        data = {
            name: [f for f, _qos in link.filters] + link.stale for name, link in self.links.items()
        }
        try:
            replace_text(self._filters_path, json.dumps(data, separators=(",", ":")))
        except OSError as error:
            log.warning(
                "mqtt_filters_file_not_saved", path=str(self._filters_path), error=str(error)
            )

    def _load_identities(self) -> None:
        """Take back the identities `dedupe_key` saw before a restart: a broker resends what
        was processed but not acknowledged when the connection or the daemon went down."""
        if self._dedupe_path is None:
            return
        try:
            saved = json.loads(self._dedupe_path.read_text(encoding="utf-8"))
            for intake in self._intakes.values():
                for name, (_template, recent) in intake.identities.items():
                    recent.restore([(str(k), float(t)) for k, t in saved.get(name, [])])
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, AttributeError) as error:
            log.warning(
                "mqtt_dedupe_file_unreadable", path=str(self._dedupe_path), error=str(error)
            )

    def _save_identities(self) -> None:
        data = {
            name: recent.entries()
            for intake in self._intakes.values()
            for name, (_template, recent) in intake.identities.items()
        }
        if not data or self._dedupe_path is None:
            return
        try:
            replace_text(self._dedupe_path, json.dumps(data, separators=(",", ":")))
        except OSError as error:
            log.warning("mqtt_dedupe_file_not_saved", path=str(self._dedupe_path), error=str(error))

    def consumers(self) -> dict[str, Callable[[Put], Awaitable[None]]]:
        """Broker name -> a source task body, for each broker with subscriptions."""
        return {
            name: (lambda put, name=name: self._consume(name, put))  # type: ignore[misc]
            for name in self._intakes
        }

    async def _consume(self, name: str, put: Put) -> None:
        """Take deliveries in batches, queue their events, acknowledge once committed."""
        link = self.links[name]
        intake = self._intakes[name]
        acks = AckQueue(link.ack)
        try:
            while True:
                await link.wait()
                deliveries = link.take(self._batch)
                received = self._clock.now()
                events, pending, learned = intake.take(deliveries, received)
                self._count(intake)
                done = acks.add(pending)
                if not events:
                    done()
                    continue
                try:
                    await put(events, received, "mqtt", done)
                except BaseException:
                    intake.forget(learned)  # never queued: the broker's resends must count
                    lost = sum(1 for event in events if not event.fields.get("qos"))
                    if lost:
                        obs.MQTT_DROPPED.labels(name, SHUTDOWN).inc(lost)
                    raise
        except asyncio.CancelledError:
            link.stop_reading()  # stopping: what is not read waits at the broker
            raise
        except Exception:
            # Deliveries taken and never acknowledged are resent only on a new connection;
            # without one the broker stops at its in-flight limit. Start afresh.
            link.reconnect("the consumer failed")
            raise

    def _count(self, intake: _BrokerIntake) -> None:
        """Move one batch's counts into the metrics; log dropped kinds at most once a minute."""
        broker = intake.broker
        for subscription, count in intake.received.items():
            obs.MQTT_MESSAGES.labels(subscription).inc(count)
        intake.received.clear()
        if intake.redelivered:
            obs.MQTT_REDELIVERED.labels(broker).inc(intake.redelivered)
            intake.redelivered = 0
        for reason, count in intake.dropped.items():
            obs.MQTT_DROPPED.labels(broker, reason).inc(count)
            if reason != DUPLICATE:
                self._log_dropped(broker, reason, count)
        intake.dropped.clear()
        for mapper in intake.mappers.values():
            if not mapper.errors:
                continue
            name = mapper.subscription.name
            for reason, count in mapper.errors.items():
                obs.MQTT_PAYLOAD_ERRORS.labels(name, reason).inc(count)
                self._log_dropped(broker, reason, count, subscription=name)
            mapper.errors.clear()

    def _drop_reporter(self, name: str) -> Callable[[int], None]:
        """Count and log (once a minute) the QoS 0 messages a broker's link dropped."""

        def report(count: int) -> None:
            obs.MQTT_DROPPED.labels(name, QUEUE_FULL).inc(count)
            self._log_dropped(name, QUEUE_FULL, count)

        return report

    def _log_dropped(self, broker: str, reason: str, count: int, subscription: str = "") -> None:
        held = self._throttle.allow((broker, subscription, reason), count)
        if held is None:
            return
        about = {"subscription": subscription} if subscription else {}
        log.warning(
            "mqtt_message_problem", broker=broker, reason=reason, count=held + count, **about
        )

    def _sender(self, link: BrokerLink) -> Callable[[Sequence[Outgoing]], Awaitable[int]]:
        async def send(messages: Sequence[Outgoing]) -> int:
            """Publish in order; wait for the broker rather than fail while it is away."""
            await link.connected()
            results = await asyncio.gather(
                *(
                    link.publish(
                        str(m.body["topic"]),
                        str(m.body["payload"]).encode(),
                        int(m.body["qos"]),
                        bool(m.body["retain"]),
                    )
                    for m in messages
                ),
                return_exceptions=True,
            )
            delivered = 0
            for result in results:
                if isinstance(result, BaseException):
                    if delivered == 0:
                        raise result
                    break
                delivered += 1
            obs.MQTT_PUBLISHED.labels(link.broker.name).inc(delivered)
            self._report_refused(link)
            return delivered

        return send

    def _report_refused(self, link: BrokerLink) -> None:
        """Count and log publishes the broker refused: done with, as retrying cannot help."""
        refused, link.refused = link.refused, []
        name = link.broker.name
        for reason in refused:
            obs.MQTT_PUBLISH_REFUSED.labels(name, reason).inc()
            held = self._throttle.allow((name, "publish refused", reason))
            if held is not None:
                log.error(
                    "mqtt_publish_refused",
                    broker=name,
                    reason=reason,
                    count=held + 1,
                    note="the broker refused the message; it is not sent again",
                )

    def _state_reporter(self, name: str) -> Callable[[str, dict[str, Any]], None]:
        """Log and count one broker's connection changes."""

        def report(what: str, about: dict[str, Any]) -> None:
            link = self.links.get(name)
            broker = link.broker if link is not None else None
            where = f"{broker.host}:{broker.port}" if broker is not None else ""
            if what == "connected":
                if "unsubscribed" in about:
                    self._save_filters()
                obs.MQTT_CONNECTED.labels(name).set(1)
                obs.MQTT_CONNECTS.labels(name).inc()
                log.info("mqtt_connected", broker=name, address=where, **about)
                if link is not None:
                    for result in link.subscribed:
                        if result.granted is None:
                            log.error(
                                "mqtt_subscription_refused",
                                broker=name,
                                filter=result.filter,
                                reason=result.reason,
                            )
                        obs.MQTT_SUBSCRIBED.labels(name, result.filter).set(
                            0 if result.granted is None else 1
                        )
            elif what == "disconnected":
                obs.MQTT_CONNECTED.labels(name).set(0)
                obs.MQTT_DISCONNECTS.labels(name, about["reason"]).inc()
                log.warning("mqtt_disconnected", broker=name, address=where, **about)
            elif what == "connect_failed":
                obs.MQTT_CONNECT_FAILURES.labels(name, about["reason"]).inc()
                held = self._throttle.allow((name, "connect"))
                if held is not None:
                    log.warning(
                        "mqtt_connect_failed", broker=name, address=where, **about, unlogged=held
                    )
            elif what == "session_lost":
                obs.MQTT_SESSIONS_LOST.labels(name).inc()
                log.warning(
                    "mqtt_session_lost",
                    broker=name,
                    note="the broker kept no session: messages sent while away are lost",
                )
            else:
                log.debug("mqtt_" + what, broker=name, **about)

        return report


def _unacked(link: BrokerLink) -> int:
    """The gauge's reading: a link's QoS 1 messages not acknowledged yet."""
    return link.unacked
