"""Broker connections; the only module that imports aiomqtt and paho.

aiomqtt connects, subscribes, publishes and disconnects. Three things it does not do are
done here, on the paho client it wraps (checked at import, so an incompatible release fails
at start, not under load):

- Deliveries skip aiomqtt's per-message queue and future: paho's callback appends to a list
  and the consumer takes them in batches.
- QoS 1 messages are acknowledged only when the consumer says so (paho's manual acks),
  after their events are committed; acks of one batch leave in one write. That is the
  overload policy too: unacknowledged, they count against the broker's flow control
  (`receive_maximum` in MQTT 5, the broker's in-flight limit in 3.1.1), so a consumer that
  falls behind makes the broker hold the rest. QoS 0 messages have no flow control: while
  tocsin is behind they are dropped and counted (aiomqtt 2's own queue drops them silently).
- paho reads every packet with two or three recv() calls; a read-ahead wrapper serves them
  from one large read, and the reader callback hands the loop back every few thousand
  packets instead of draining a fast broker forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import structlog
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from tocsin.mqtt.settings import BrokerConfig
from tocsin.mqtt.wire import Publish, split_publish

__all__ = ["BrokerDownError", "BrokerLink", "Delivery", "SubscribeResult"]

log = structlog.get_logger("tocsin.mqtt")

_READ_SIZE = 256 * 1024  # bytes per recv() of the read-ahead
_PACKETS_PER_WAKE = 2048  # packets one reader callback handles before the loop runs others
_STABLE = 10.0  # seconds a connection must last for the backoff to start again from the floor
_PUBACK = 0x40
_PUBLISH_TIMEOUT = 30.0  # seconds for the broker to acknowledge one published message

# (connection generation, mid, qos, dup, retain, topic or None if not UTF-8, payload).
# A plain tuple of atoms: paho's message object (with its v5 properties) is garbage at once
# instead of thousands of tracked objects the cyclic GC walks again and again. A message is
# acknowledged only on the connection that delivered it; after a reconnect the broker sends
# it again instead.
Delivery = tuple[int, int, int, bool, bool, str | None, bytes]


class BrokerDownError(Exception):
    """The broker is not connected (or went away during the call); try again later."""


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    """What the broker granted for one filter: a QoS, or the reason it refused."""

    filter: str
    granted: int | None  # None: refused
    reason: str = ""


def _check_paho() -> None:
    """Refuse to run on a paho whose internals differ from what this module uses."""
    client = paho.Client(CallbackAPIVersion.VERSION2)
    message = paho.MQTTMessage(1, b"t")
    missing = [
        name
        for name in (
            "_create_socket",
            "_packet_queue",
            "_sock_close",
            "_sock",
            "_in_packet",
            "_last_bytes_received",
        )
        if not hasattr(client, name)
    ] + [name for name in ("_topic",) if not hasattr(message, name)]
    if missing or not isinstance(client._in_packet, dict):
        raise ImportError(f"unsupported paho-mqtt version: it lacks {', '.join(missing)}")


_check_paho()


def _stop_if_cancelled() -> None:
    """Raise the cancellation that Python 3.11's asyncio.wait_for (which aiomqtt awaits
    with) can swallow when its future completes as the task is cancelled: else a stopping
    link would go on to wait on its connection forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class _ReadAhead:
    """A socket whose recv() is served from one large read: paho asks for 1-5 bytes at a time."""

    __slots__ = ("_buf", "_pos", "_sock", "failure")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0
        self.failure: OSError | None = None  # why reading failed: paho only logs it

    def recv(self, size: int) -> bytes:
        """Return up to `size` buffered bytes, reading more only when the buffer is empty."""
        pos = self._pos
        buf = self._buf
        if pos >= len(buf):
            try:
                buf = bytes(self._sock.recv(_READ_SIZE))
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                raise  # nothing to read yet
            except OSError as exc:
                self.failure = exc
                raise
            if not buf:
                return buf
            self._buf = buf
            pos = 0
        chunk = buf[pos : pos + size]
        self._pos = pos + len(chunk)
        return chunk

    def take_publish(self, v5: bool) -> Publish | None:
        """Take the plain PUBLISH packet at the read position, if a whole one is buffered."""
        found = split_publish(self._buf, self._pos, v5=v5)
        if found is not None:
            self._pos = found[0]
        return found

    def pending(self) -> int:
        """Bytes readable without a syscall: ours plus what TLS decrypted and holds."""
        inner = getattr(self._sock, "pending", None)
        return len(self._buf) - self._pos + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _tls_context(broker: BrokerConfig) -> ssl.SSLContext | None:
    tls = broker.tls
    if tls is None:
        return None
    context = ssl.create_default_context(cafile=str(tls.ca) if tls.ca else None)
    if tls.cert is not None:
        context.load_cert_chain(str(tls.cert), str(tls.key) if tls.key else None)
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _reason(error: BaseException) -> str:
    """A short, stable reason for metrics: what kind of failure, not its details."""
    if isinstance(error, MqttConnectError):
        return "refused"
    if isinstance(error, aiomqtt.MqttCodeError):
        return "connection lost"
    if isinstance(error, ConnectionResetError):
        return "closed"
    text = str(error).lower()
    if "timed out" in text:
        return "timeout"
    if "refused" in text:
        return "connection refused"
    if "certificate" in text or "ssl" in text or "tls" in text:
        return "tls"
    return "error"


class BrokerLink:
    """One broker: connect and reconnect forever, subscribe, buffer deliveries, ack, publish.

    Counters (`connects`, `disconnects`, ...) are plain numbers the daemon turns into metrics.
    """

    def __init__(
        self,
        broker: BrokerConfig,
        filters: Sequence[tuple[str, int]],
        *,
        high_water: int = 16384,
        on_state: Callable[[str, dict[str, Any]], None] | None = None,
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:
        self.broker = broker
        self.filters = list(filters)
        self._high_water = high_water  # waiting deliveries from which QoS 0 ones are dropped
        # ... and from which reading stops: never with a broker that keeps receive_maximum
        # (QoS 1 waiting stays below it); with 3.1.1 the broker's in-flight limit is not known.
        v5 = broker.version == "5"
        self._pause_at = high_water + (broker.receive_maximum if v5 else high_water)
        self._on_dropped = on_dropped or (lambda _count: None)
        self._dropped = 0  # QoS 0 messages dropped since the last report
        self.unacked = 0  # QoS 1 messages of this connection delivered and not acknowledged
        self._on_state = on_state or (lambda _what, _about: None)
        self._deliveries: list[Delivery] = []
        self._ready = asyncio.Event()
        self._connected = asyncio.Event()
        self.generation = 0
        self._client: aiomqtt.Client | None = None
        self._paho: paho.Client | None = None
        self._sock: _ReadAhead | None = None
        self._paused = False
        self._v5 = broker.version == "5"
        self._closing = ""  # why we end the connection ourselves
        self._session_seen = False
        self.session_present: bool | None = None
        self.stale: list[str] = []  # filters an earlier config subscribed in the session
        self.refused: list[str] = []  # reasons the broker gave for refusing our publishes
        self.unsubscribed: list[str] = []  # stale filters dropped at the last connect
        self.subscribed: list[SubscribeResult] = []

    # ---------------------------------------------------------------- receiving

    @property
    def waiting(self) -> int:
        """Deliveries received and not yet taken."""
        return len(self._deliveries)

    async def wait(self) -> None:
        """Return once deliveries are waiting."""
        while not self._deliveries:
            self._ready.clear()
            await self._ready.wait()

    def take(self, limit: int) -> list[Delivery]:
        """Take up to `limit` deliveries in arrival order; reading resumes when there is room."""
        deliveries = self._deliveries
        if len(deliveries) <= limit:
            taken, self._deliveries = deliveries, []
        else:
            taken, self._deliveries = deliveries[:limit], deliveries[limit:]
        if self._paused and len(self._deliveries) < self._pause_at // 2:
            self._resume()
        return taken

    def stop_reading(self) -> None:
        """Take no more messages (the daemon is stopping): the broker keeps what is not read."""
        if not self._paused:
            self._pause()

    def discard(self) -> int:
        """Drop the deliveries not taken; return how many were QoS 0, lost for good (the
        broker sends the QoS 1 ones again, as they were never acknowledged)."""
        lost = sum(1 for delivery in self._deliveries if not delivery[2])
        self._deliveries = []
        return lost

    def ack(self, mids: Sequence[tuple[int, int]]) -> int:
        """Acknowledge (generation, mid) pairs of QoS 1 messages, in one write; returns how many.

        Messages of an earlier connection are not acknowledged: the broker sends them again
        (flagged as a duplicate) on the new one.
        """
        client = self._paho
        generation = self.generation
        if client is None:
            return 0
        data = b"".join(
            struct.pack("!BBH", _PUBACK, 2, mid) for gen, mid in mids if gen == generation
        )
        if data:
            client._packet_queue(_PUBACK, data, 0, 0)
        acked = len(data) // 4
        self.unacked = max(0, self.unacked - acked)
        return acked

    def _on_message(self, _client: Any, _userdata: Any, message: paho.MQTTMessage) -> None:
        """Take a message paho decoded (a packet the fast path left to it)."""
        self._deliver(
            message.mid, message.qos, message.dup, message.retain, message._topic, message.payload
        )

    def _deliver(  # noqa: PLR0917 - the fields of one message, as the packet carries them
        self, mid: int, qos: int, dup: bool, retain: bool, topic: bytes, payload: bytes | bytearray
    ) -> None:
        try:
            text: str | None = topic.decode()
        except UnicodeDecodeError:
            text = None
        deliveries = self._deliveries
        if qos:
            self.unacked += 1
        elif len(deliveries) >= self._high_water:
            self._dropped += 1  # counted once this wake is over
            return
        deliveries.append((self.generation, mid, qos, dup, retain, text, bytes(payload)))
        if len(deliveries) == 1:
            self._ready.set()
        if len(deliveries) >= self._pause_at and not self._paused:
            self._pause()

    def _pause(self) -> None:
        """Stop reading, the last resort: the broker sends QoS 1 messages beyond any limit
        (3.1.1 without an in-flight limit, or one overshooting receive_maximum as mosquitto
        2.0 does). TCP then holds everything, pings included."""
        self._paused = True
        if self._sock is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())

    def _resume(self) -> None:
        self._paused = False
        sock = self._sock
        if sock is not None and sock.fileno() >= 0:
            loop = asyncio.get_running_loop()
            loop.add_reader(sock.fileno(), self._readable, sock)
            loop.call_soon(self._readable, sock)  # bytes may already be buffered

    def _readable(self, sock: _ReadAhead) -> None:
        """Read packets until the buffer is empty or this wake's share is used.

        Between packets (paho holds none half-read), a whole plain PUBLISH in the buffer is
        decoded here; everything else goes through paho's loop_read.
        """
        client = self._paho
        if client is None or sock is not self._sock or self._paused:
            return
        v5 = self._v5
        taken = 0
        try:
            for _ in range(_PACKETS_PER_WAKE):
                if client._in_packet["command"] == 0:
                    found = sock.take_publish(v5)
                    if found is not None:
                        taken += 1
                        _, header, topic, mid, payload = found
                        qos = (header >> 1) & 3
                        self._deliver(mid, qos, bool(header & 8), bool(header & 1), topic, payload)
                        if self._paused:
                            return
                        continue
                if client.loop_read() != paho.MQTT_ERR_SUCCESS or self._paused:
                    return
                if not sock.pending():
                    return
            asyncio.get_running_loop().call_soon(self._readable, sock)
        except Exception as exc:  # noqa: BLE001 - a broken connection: end it, the loop reconnects
            self._lost(exc)
        finally:
            if taken:
                client._last_bytes_received = time.monotonic()  # paho's keepalive clock
            if self._dropped:
                dropped, self._dropped = self._dropped, 0
                self._on_dropped(dropped)

    def reconnect(self, why: str) -> None:
        """End the connection (the run loop makes a new one): the broker resends what is
        not acknowledged."""
        if self._paho is not None and self._connected.is_set():
            self._closing = why
            self._paho.disconnect()

    def _close_socket(self) -> None:
        """Close a socket paho left open (a failure it did not see) the way paho does, so
        aiomqtt stops watching it and ends its keepalive task."""
        client = self._paho
        if client is not None and client._sock is not None:
            with contextlib.suppress(OSError, ValueError):
                client._sock_close()

    def _watch(self, sock: _ReadAhead) -> None:
        """Read the new socket with ours, unless paho closed it already (the peer hung up)."""
        if sock.fileno() >= 0:
            asyncio.get_running_loop().add_reader(sock.fileno(), self._readable, sock)

    def _lost(self, exc: BaseException) -> None:
        client = self._client
        if client is not None and not client._disconnected.done():
            client._disconnected.set_exception(exc)

    # ---------------------------------------------------------------- publishing

    async def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """Send one message; returns once the broker has it (QoS 1) or it was written (QoS 0)."""
        client = self._client
        if client is None or not self._connected.is_set():
            raise BrokerDownError(f"broker {self.broker.name} is not connected")
        # aiomqtt waits out its timeout for a PUBACK that a lost connection will never bring.
        lost = client._disconnected
        sending = asyncio.ensure_future(
            client.publish(topic, payload, qos, retain, timeout=_PUBLISH_TIMEOUT)
        )
        try:
            await asyncio.wait((sending, lost), return_when=asyncio.FIRST_COMPLETED)
        finally:
            unsent = not sending.done()
            if unsent:
                sending.cancel()
        if unsent:
            raise BrokerDownError(f"the connection to {self.broker.name} was lost")
        try:
            sending.result()
        except aiomqtt.MqttError as exc:
            raise BrokerDownError(f"publish to {self.broker.name} failed: {exc}") from None

    async def connected(self) -> None:
        """Return once the broker is connected."""
        await self._connected.wait()

    @property
    def is_connected(self) -> bool:
        """Whether a session is up right now."""
        return self._connected.is_set()

    # ---------------------------------------------------------------- connection

    def _make_client(self) -> aiomqtt.Client:
        broker = self.broker
        v5 = broker.version == "5"
        properties = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = broker.session_expiry
            properties.ReceiveMaximum = broker.receive_maximum
        context = _tls_context(broker)
        client = aiomqtt.Client(
            broker.host,
            broker.port,
            username=broker.username,
            password=broker.password,
            identifier=broker.client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if v5 else False,
            # v5: resume the session (aiomqtt's default wipes it once); 3.1.1: clean_session
            clean_start=False if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            keepalive=broker.keepalive,
            properties=properties,
            tls_context=context,
            tls_insecure=None if broker.tls is None else not broker.tls.verify,
            max_inflight_messages=256,
            timeout=10,
        )
        client.pending_calls_threshold = 1 << 30  # publishes in flight are normal, not a warning
        inner = client._client
        inner.manual_ack_set(True)
        inner.on_message = self._on_message
        aiomqtt_open = inner.on_socket_open
        aiomqtt_connect = inner.on_connect
        aiomqtt_published: Any = inner.on_publish
        make_socket = inner._create_socket
        loop = asyncio.get_running_loop()

        def create_socket() -> _ReadAhead:
            sock = _ReadAhead(make_socket())
            self._sock = sock
            return sock

        def on_socket_open(c: paho.Client, userdata: Any, sock: Any) -> None:
            assert aiomqtt_open is not None
            aiomqtt_open(c, userdata, sock)
            # Runs after aiomqtt's add_reader (same thread hop), so ours replaces it.
            loop.call_soon_threadsafe(self._watch, sock)

        def on_connect(c: paho.Client, userdata: Any, flags: Any, *rest: Any) -> None:
            self.session_present = bool(getattr(flags, "session_present", False))
            assert aiomqtt_connect is not None
            aiomqtt_connect(c, userdata, flags, *rest)

        def on_disconnect(
            c: paho.Client, userdata: Any, flags: Any, reason: Any, *rest: Any
        ) -> None:
            connecting = client._connected
            if not connecting.done():  # aiomqtt ignores this and waits out its connect timeout
                failure = self._sock.failure if self._sock is not None else None
                connecting.set_exception(
                    aiomqtt.MqttCodeError(reason, "connection lost before CONNACK")
                    if failure is None
                    else aiomqtt.MqttError(str(failure))
                )
            client._on_disconnect(c, userdata, flags, reason, *rest)

        inner._create_socket = create_socket  # type: ignore[method-assign]
        inner.on_socket_open = on_socket_open

        def on_publish(c: paho.Client, userdata: Any, mid: int, code: Any, *rest: Any) -> None:
            if getattr(code, "is_failure", False):  # MQTT 5: the broker refused the message
                self.refused.append(str(code))
            aiomqtt_published(c, userdata, mid, code, *rest)

        inner.on_connect = on_connect
        inner.on_disconnect = on_disconnect
        inner.on_publish = on_publish
        return client

    async def run(self) -> None:
        """Stay connected until cancelled, reconnecting with jittered exponential backoff."""
        broker = self.broker
        delay = broker.reconnect_min
        while True:
            client = self._make_client()
            self._client = client
            self._paho = client._client
            self.generation += 1
            self.unacked = 0  # the broker sends those again on this connection
            started = time.monotonic()
            try:
                async with client:
                    await self._subscribe(client)
                    _stop_if_cancelled()
                    self._connected.set()
                    self._announce_session()
                    about: dict[str, Any] = {"session_present": self.session_present}
                    if self.unsubscribed:
                        about["unsubscribed"] = self.unsubscribed
                    self._on_state("connected", about)
                    await client._disconnected  # aiomqtt's; set when the connection ends
                    raise ConnectionResetError(self._closing or "closed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: log, count, retry
                _stop_if_cancelled()  # stopping: a failed disconnect must not hide that
                up = self._connected.is_set()
                self._on_state(
                    "disconnected" if up else "connect_failed",
                    {"reason": _reason(exc), "error": str(exc) or type(exc).__name__},
                )
            finally:
                self._connected.clear()
                self._close_socket()
                self._client = None
                self._paho = None
                self._sock = None
                self._paused = False
                self._closing = ""
            if time.monotonic() - started > _STABLE:
                delay = broker.reconnect_min
            wait = delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not crypto
            self._on_state("reconnecting", {"retry_in": round(wait, 3)})
            await asyncio.sleep(wait)
            delay = min(delay * 2, broker.reconnect_max)

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        """Drop filters the config no longer has, then subscribe to every filter in one
        request; a refused filter is logged, not fatal."""
        self.unsubscribed = []
        if self.stale:
            if self.session_present:
                await client.unsubscribe(self.stale)
                self.unsubscribed = self.stale
            self.stale = []
        v5 = self.broker.version == "5"
        topics: list[tuple[str, Any]] = [
            (
                f,
                SubscribeOptions(
                    qos=qos,
                    noLocal=not f.startswith("$share/"),  # not our own publishes (no loops)
                    retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB,  # not at every connect
                )
                if v5
                else qos,
            )
            for f, qos in self.filters
        ]
        if not topics:
            return
        codes: Sequence[Any] = await client.subscribe(topics)
        results = []
        for (f, _qos), code in zip(self.filters, codes, strict=True):
            value = int(getattr(code, "value", code))  # a ReasonCode, or an int on 3.1.1
            if value >= 0x80:
                results.append(SubscribeResult(f, None, str(code) if value != 0x80 else "refused"))
            else:
                results.append(SubscribeResult(f, value))
        self.subscribed = results

    def _announce_session(self) -> None:
        """A resumed session keeps what was queued while away; a new one after an old lost it."""
        if self.session_present is False and self._session_seen:
            self._on_state("session_lost", {})
        self._session_seen = True
