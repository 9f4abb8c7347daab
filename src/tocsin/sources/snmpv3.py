"""SNMPv3 traps and informs (USM authentication and privacy) through pysnmp, without its I/O.

The trap receiver owns the UDP socket and hands each v3 payload to `V3Receiver.feed`, which
runs pysnmp's message processing synchronously and returns what the packet carried; pysnmp's
own replies (engine ID discovery reports, inform Responses) leave through the `send` callback.
An inform is answered only by `ack`, once its event is in the pipeline, so a sender whose
inform we could not take sends it again. This is the only module that imports pysnmp.

pysnmp does not know which user may send at which level, and it keeps state for engine IDs
named by unauthenticated packets; so the clear-text header is read first, and only listed
(engine ID, user) pairs at or above the user's level reach pysnmp (the rest cost microseconds,
not a millisecond). pysnmp expires its own caches on timer ticks; `feed` runs those that fell due.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pysnmp.carrier.asyncio.dgram.udp import DOMAIN_NAME
from pysnmp.carrier.base import AbstractTransport, AbstractTransportDispatcher
from pysnmp.entity import config
from pysnmp.entity.engine import SnmpEngine
from pysnmp.error import PySnmpError
from pysnmp.proto import errind, rfc3411
from pysnmp.proto.api import v2c
from pysnmp.proto.error import StatusInformation

from tocsin.snmp.ber import TYPE_NAMES, Value
from tocsin.snmp.reasons import (
    AUTHENTICATION_FAILURE,
    DECRYPTION_FAILURE,
    DUPLICATE_INFORM,
    LEVEL_TOO_LOW,
    MALFORMED,
    NOT_A_NOTIFICATION,
    NOT_ANSWERED,
    NOT_IN_TIME_WINDOW,
    UNKNOWN_ENGINE_ID,
    UNKNOWN_USER,
    UNSUPPORTED_LEVEL,
)
from tocsin.snmp.settings import SnmpUser

__all__ = ["AUTH_PROTOCOLS", "LEVELS", "PRIV_PROTOCOLS", "V3Notification", "V3Receiver"]

AUTH_PROTOCOLS = {
    "MD5": config.USM_AUTH_HMAC96_MD5,
    "SHA": config.USM_AUTH_HMAC96_SHA,
    "SHA-224": config.USM_AUTH_HMAC128_SHA224,
    "SHA-256": config.USM_AUTH_HMAC192_SHA256,
    "SHA-384": config.USM_AUTH_HMAC256_SHA384,
    "SHA-512": config.USM_AUTH_HMAC384_SHA512,
}
# AES-192/256 keys are extended as in the Blumenthal draft, which is what net-snmp's
# `-x AES-192` and `-x AES-256` do (the Reeder variant is Cisco's "AES-192-C").
PRIV_PROTOCOLS = {
    "DES": config.USM_PRIV_CBC56_DES,
    "AES": config.USM_PRIV_CFB128_AES,
    "AES-192": config.USM_PRIV_CFB192_AES_BLUMENTHAL,
    "AES-256": config.USM_PRIV_CFB256_AES_BLUMENTHAL,
}
LEVELS = {"noAuthNoPriv": 1, "authNoPriv": 2, "authPriv": 3}
_TIME_WINDOW = 150  # seconds (RFC 3414, section 2.2.3)
_MAX_BOOTS = 2**31 - 1  # an engine that reached it must be reconfigured (RFC 3414, 2.2.2)
_LEVEL_NAMES = {number: name for name, number in LEVELS.items()}

_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (errind.UnknownSecurityName, UNKNOWN_USER),
    (errind.UnknownEngineID, UNKNOWN_ENGINE_ID),
    (errind.EngineIDMismatch, UNKNOWN_ENGINE_ID),  # an inform authenticated for another engine
    (errind.AuthenticationFailure, AUTHENTICATION_FAILURE),
    (errind.AuthenticationError, AUTHENTICATION_FAILURE),  # digest of the wrong length
    (errind.NoAuthentication, AUTHENTICATION_FAILURE),
    (errind.DecryptionError, DECRYPTION_FAILURE),
    (errind.NotInTimeWindow, NOT_IN_TIME_WINDOW),
    (errind.UnsupportedSecurityLevel, UNSUPPORTED_LEVEL),
    (errind.UnsupportedPDUtype, NOT_A_NOTIFICATION),
    (errind.DataMismatch, NOT_A_NOTIFICATION),  # a Response or Report to nothing we sent
)

_TICK = 1.0  # seconds per pysnmp timer tick; its caches live 300 to 600 ticks
_MAX_CATCH_UP = 1000  # more ticks than any cache lives: after a long idle spell all expire
_UNACKED_SECONDS = 60.0  # senders retry for seconds; an inform unacked this long is forgotten
_ACKED_SECONDS = 60.0  # retransmissions of an acknowledged inform are answered this long
_REMEMBERED_INFORMS = 4096  # per table: pending and acknowledged


class _Malformed(Exception):  # noqa: N818 - internal signal, never leaves this module
    """The clear-text SNMPv3 header could not be read."""


InformKey = tuple[tuple[str, int], str, bytes, int]  # sender, user, context engine, request-id


@dataclass(frozen=True, slots=True)
class V3Notification:
    """A trap or inform that passed the USM checks, its values as `tocsin.snmp.ber` gives them."""

    user: str
    level: str  # the security level the packet used
    pdu: str  # "v2-trap" or "inform"
    request_id: int
    varbinds: tuple[tuple[str, Value], ...]
    engine_id: bytes  # authoritative engine: the sender's for traps, ours for informs
    context_engine_id: bytes
    context_name: bytes
    ack_key: InformKey | None = field(default=None, repr=False, compare=False)  # for ack()


@dataclass(frozen=True, slots=True)
class _Header:
    """The clear-text part of an SNMPv3 message that says who sent it and how."""

    engine_id: bytes
    user: bytes
    level: int
    boots: int = 0  # msgAuthoritativeEngineBoots
    time: int = 0  # msgAuthoritativeEngineTime

    @property
    def probe(self) -> bool:
        """Return whether this is an engine ID discovery probe (RFC 3414, section 4)."""
        return not self.engine_id and not self.user and self.level == 1


class _Dispatcher(AbstractTransportDispatcher):  # type: ignore[misc]  # pysnmp is untyped
    """pysnmp's transport dispatcher without an event loop: `V3Receiver` runs its ticks."""


class _Carrier(AbstractTransport):  # type: ignore[misc]
    """The transport pysnmp sends its replies through: our `send`, never a socket of its own."""

    PROTO_TRANSPORT_DISPATCHER = _Dispatcher

    def __init__(self, send: Callable[[bytes, tuple[str, int]], None]) -> None:
        super().__init__()
        self._send = send

    def send_message(self, outgoingMessage: Any, transportAddress: Any) -> None:  # noqa: N803
        """Hand pysnmp's encoded reply to the receiver's socket (pysnmp names the arguments)."""
        self._send(bytes(outgoingMessage), transportAddress)


class V3Receiver:
    """Authenticate, decrypt and decode SNMPv3 notifications fed to it one payload at a time.

    `rejected` counts refused packets by reason: "unknown user", "unknown engine id",
    "authentication failure", "decryption failure", "not in time window", "security level
    too low", "unsupported security level" (an inform whose level differs from its user's
    protocols), "not a trap or inform", "duplicate inform", "inform response failed" and
    "malformed". Engine ID discovery probes are answered, not counted. `boots` is our
    snmpEngineBoots, which the caller keeps and raises at each start (RFC 3414, 2.2.2).
    """

    def __init__(
        self,
        *,
        users: Sequence[SnmpUser],
        engine_id: bytes,
        send: Callable[[bytes, tuple[str, int]], None],
        clock: Callable[[], float] = time.monotonic,
        boots: int = 1,
    ) -> None:
        _check_engine_id(engine_id, "our SNMPv3 engine ID")
        self._users = _by_engine(users, engine_id)
        self._names = {name for _, name in self._users}
        self._clock = clock
        self.rejected: Counter[str] = Counter()
        self._pending: OrderedDict[InformKey, tuple[float, tuple[Any, ...]]] = OrderedDict()
        self._acked: OrderedDict[InformKey, float] = OrderedDict()
        # Given an engine ID, pysnmp would keep its boot count in a predictable /tmp path;
        # so the engine starts with its default ID, and ours and the boot count are set here.
        self._engine = SnmpEngine()
        ours, booted = self._engine.get_mib_builder().import_symbols(
            "__SNMP-FRAMEWORK-MIB", "snmpEngineID", "snmpEngineBoots"
        )
        ours.syntax = ours.syntax.clone(engine_id)
        self._engine.snmpEngineID = ours.syntax
        booted.syntax = booted.syntax.clone(min(max(boots, 1), 2**31 - 1))
        for (engine, _), user in self._users.items():
            config.add_v3_user(
                self._engine,
                user.name,
                AUTH_PROTOCOLS[user.auth] if user.auth else config.USM_AUTH_NONE,
                user.auth_key or None,
                PRIV_PROTOCOLS[user.priv] if user.priv else config.USM_PRIV_NONE,
                user.priv_key or None,
                securityEngineId=v2c.OctetString(engine),
            )
        config.add_transport(self._engine, DOMAIN_NAME, _Carrier(send))
        self._dispatcher = self._engine.transport_dispatcher
        self._dispatcher.set_timer_resolution(_TICK)
        self._mp = self._engine.message_processing_subsystems[3]
        self._usm = self._engine.security_models[3]
        self._started = clock()
        # sender engine ID -> (boots, engine time, our clock then): only configured engines
        self._engine_clocks: dict[bytes, tuple[int, int, float]] = {}
        self._ticks = 0

    def feed(self, data: bytes, addr: tuple[str, int]) -> list[V3Notification]:
        """Decode one UDP payload from `addr`; refusals are counted in `rejected`, never raised."""
        now = self._clock()
        self._forget(now)
        self._run_timers(now)
        try:
            header = _read_header(data)
        except _Malformed:
            self.rejected[MALFORMED] += 1
            return []
        user = self._users.get((header.engine_id, header.user))
        if user is None and not header.probe:
            known = header.user in self._names
            self.rejected[UNKNOWN_ENGINE_ID if known else UNKNOWN_USER] += 1
            return []
        if user is not None and header.level < LEVELS[user.min_level]:
            self.rejected[LEVEL_TOO_LOW] += 1
            return []
        try:
            elements = self._mp.prepare_data_elements(self._engine, DOMAIN_NAME, addr, data)
        except StatusInformation as status:
            indication = status.get("errorIndication")
            if not (header.probe and isinstance(indication, errind.UnknownEngineID)):
                self.rejected[_reason(indication)] += 1
            return []
        except Exception:  # noqa: BLE001 - pysnmp raises many kinds on hostile bytes
            self.rejected[MALFORMED] += 1
            return []
        if user is None:  # a probe that pysnmp took as a message: nobody may send that
            self._drop(elements, UNKNOWN_USER)
            return []
        try:
            return self._notify(user, header, elements, addr, now)
        except Exception:  # noqa: BLE001 - a value pysnmp decoded but we cannot represent
            self._drop(elements, MALFORMED)
            return []

    def ack(self, notification: V3Notification) -> bool:
        """Send the Response to an inform once its event is accepted; True if it was sent.

        An inform left unacknowledged for a minute is forgotten (its sender has given up).
        """
        key = notification.ack_key
        if key is None:
            return False
        entry = self._pending.pop(key, None)
        if entry is None:
            return False
        self._acked[key] = self._clock()
        if len(self._acked) > _REMEMBERED_INFORMS:
            self._acked.popitem(last=False)
        return self._respond(entry[1])

    def _notify(
        self,
        user: SnmpUser,
        header: _Header,
        elements: tuple[Any, ...],
        addr: tuple[str, int],
        now: float,
    ) -> list[V3Notification]:
        level, context_engine, context_name, pdu, pdu_type = (
            int(elements[3]),
            bytes(elements[4]),
            bytes(elements[5]),
            elements[7],
            elements[8],
        )
        if pdu_type not in (v2c.SNMPv2TrapPDU.tagSet, v2c.InformRequestPDU.tagSet):
            self._drop(elements, NOT_A_NOTIFICATION)
            return []
        if pdu_type == v2c.SNMPv2TrapPDU.tagSet and level > 1 and not self._timely(header, now):
            self._drop(elements, NOT_IN_TIME_WINDOW)
            return []
        request_id = int(v2c.apiPDU.get_request_id(pdu))
        varbinds = tuple((str(name), _value(value)) for name, value in v2c.apiPDU.get_varbinds(pdu))
        key = None
        if pdu_type == v2c.InformRequestPDU.tagSet:
            key = (addr, user.name, context_engine, request_id)
            if not self._first_copy(key, elements, now):
                return []
        return [
            V3Notification(
                user=user.name,
                level=_LEVEL_NAMES[level],
                pdu="v2-trap" if key is None else "inform",
                request_id=request_id,
                varbinds=varbinds,
                engine_id=header.engine_id,
                context_engine_id=context_engine,
                context_name=context_name,
                ack_key=key,
            )
        ]

    def _timely(self, header: _Header, now: float) -> bool:
        """Check an authenticated trap's engine clock as RFC 3414, 3.2.7 b has a receiver do.

        pysnmp takes every authenticated trap's clock as the sender's, so a recorded trap could
        be replayed forever; here each sender engine's clock is followed (extrapolated at our
        pace) and a trap more than 150 s behind it, or from an earlier boot, is refused.
        """
        known = self._engine_clocks.get(header.engine_id)
        if header.boots >= _MAX_BOOTS:
            return False
        if known is not None:
            boots, latest, seen = known
            if header.boots < boots:
                return False
            if header.boots == boots and header.time < latest + (now - seen) - _TIME_WINDOW:
                return False
            if header.boots == boots and header.time <= latest:
                return True  # in the window, but older than the newest: nothing to learn
        self._engine_clocks[header.engine_id] = (header.boots, header.time, now)
        return True

    def _first_copy(self, key: InformKey, elements: tuple[Any, ...], now: float) -> bool:
        """Remember a new inform; answer or hold back a retransmission of a known one."""
        if key in self._acked:  # our Response was lost: answer again, deliver nothing
            self._respond(elements)
            self.rejected[DUPLICATE_INFORM] += 1
            return False
        if key in self._pending:  # still waiting for ack(): it answers this latest copy
            since, older = self._pending[key]
            self._release(older)
            self._pending[key] = (since, elements)
            self.rejected[DUPLICATE_INFORM] += 1
            return False
        self._pending[key] = (now, elements)
        if len(self._pending) > _REMEMBERED_INFORMS:
            self._release(self._pending.popitem(last=False)[1][1])
        return True

    def _respond(self, elements: tuple[Any, ...]) -> bool:
        """Send the Response PDU for a received inform (its state is released by pysnmp)."""
        model, security_model, name, level, context_engine, context_name, version, pdu = elements[
            :8
        ]
        response = v2c.apiPDU.get_response(pdu)
        v2c.apiPDU.set_error_status(response, 0)
        v2c.apiPDU.set_error_index(response, 0)
        v2c.apiPDU.set_varbinds(response, v2c.apiPDU.get_varbinds(pdu))
        try:
            self._engine.message_dispatcher.return_response_pdu(
                self._engine,
                model,
                security_model,
                name,
                level,
                context_engine,
                context_name,
                version,
                response,
                elements[10],  # largest response the sender takes
                elements[12],  # pysnmp's state reference for this message
                {},
            )
        except Exception:  # noqa: BLE001 - too big, or `send` failed: the sender will retry
            self.rejected[NOT_ANSWERED] += 1
            return False
        return True

    def _drop(self, elements: tuple[Any, ...], reason: str) -> None:
        """Count a decoded message we will not deliver, freeing what pysnmp keeps for a reply."""
        if elements[8] in rfc3411.CONFIRMED_CLASS_PDUS:
            self._release(elements)
        self.rejected[reason] += 1

    def _release(self, elements: tuple[Any, ...]) -> None:
        """Free pysnmp's state for a request that will get no reply (it has no call for this)."""
        try:
            cached = self._mp._cache.pop_by_state_reference(elements[12])
            self._usm.release_state_information(cached["securityStateReference"])
        except PySnmpError:  # already expired by pysnmp's own timer
            pass

    def _forget(self, now: float) -> None:
        """Drop informs nobody acknowledged in time and acknowledgements too old to matter."""
        while self._pending:
            key, (since, elements) = next(iter(self._pending.items()))
            if now - since < _UNACKED_SECONDS:
                break
            del self._pending[key]
            self._release(elements)
        while self._acked:
            key, since = next(iter(self._acked.items()))
            if now - since < _ACKED_SECONDS:
                break
            del self._acked[key]

    def _run_timers(self, now: float) -> None:
        """Run the pysnmp timer ticks due by `now`: its caches expire by ticks, not by time."""
        due = int((now - self._started) / _TICK)
        for _ in range(min(due - self._ticks, _MAX_CATCH_UP)):
            self._ticks += 1
            self._dispatcher.handle_timer_tick(self._ticks * _TICK)
        self._ticks = max(self._ticks, due)


def _by_engine(users: Sequence[SnmpUser], engine_id: bytes) -> dict[tuple[bytes, bytes], SnmpUser]:
    """Index users by (authoritative engine ID, name): theirs for traps, ours for informs."""
    found: dict[tuple[bytes, bytes], SnmpUser] = {}
    for user in users:
        name = user.name.encode()
        if (engine_id, name) in found:
            raise ValueError(f"SNMPv3 user {user.name!r} is listed twice")
        for engine in (engine_id, *user.engine_ids):
            _check_engine_id(engine, f"SNMPv3 user {user.name!r}")
            found[(engine, name)] = user
    return found


def _check_engine_id(engine_id: bytes, where: str) -> None:
    if not 5 <= len(engine_id) <= 32:
        raise ValueError(f"{where}: an engine ID is 5 to 32 bytes, not {len(engine_id)}")


def _reason(indication: object) -> str:
    for kind, reason in _REASONS:
        if isinstance(indication, kind):
            return reason
    return MALFORMED


def _value(value: Any) -> Value:
    """Convert a pysnmp value to the (type name, python value) pair `ber.py` produces."""
    tag = value.tagSet[-1]
    name = TYPE_NAMES[tag.tagClass | tag.tagFormat | tag.tagId]
    if name in ("OctetString", "Opaque"):
        return name, value.asOctets()
    if name == "ObjectIdentifier":
        return name, str(value)
    if name == "IpAddress":
        return name, ".".join(map(str, value.asOctets()))
    if name in ("Null", "NoSuchObject", "NoSuchInstance", "EndOfMibView"):
        return name, None
    return name, int(value)


def _read_header(data: bytes) -> _Header:
    """Read version, flags, security model, engine ID and user name (RFC 3412 and 3414)."""
    end = len(data)
    tag, pos, stop = _tlv(data, 0, end)
    if tag != 0x30 or stop != end:
        raise _Malformed
    version, pos = _integer(data, pos, stop)
    tag, global_start, pos = _tlv(data, pos, stop)  # msgGlobalData
    if version != 3 or tag != 0x30:
        raise _Malformed
    _, field_pos = _integer(data, global_start, pos)  # msgID
    _, field_pos = _integer(data, field_pos, pos)  # msgMaxSize
    flags, field_pos = _octets(data, field_pos, pos)
    model, _ = _integer(data, field_pos, pos)
    if len(flags) != 1 or (flags[0] & 0x03) == 0x02 or model != 3:
        raise _Malformed
    params_start, params_stop = _octets_span(data, pos, stop)
    tag, pos, params_end = _tlv(data, params_start, params_stop)
    if tag != 0x30:
        raise _Malformed
    engine_id, pos = _octets(data, pos, params_end)
    boots, pos = _integer(data, pos, params_end)  # msgAuthoritativeEngineBoots
    clock, pos = _integer(data, pos, params_end)  # msgAuthoritativeEngineTime
    user, _ = _octets(data, pos, params_end)
    return _Header(
        engine_id=engine_id,
        user=user,
        level=1 + (flags[0] & 0x01) + (flags[0] & 0x02) // 2,
        boots=boots,
        time=clock,
    )


def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Read a tag and a definite length at `pos`; return (tag, content start, content end)."""
    if pos + 2 > end:
        raise _Malformed
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4 or pos + count > end:
            raise _Malformed
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        raise _Malformed
    return tag, pos, pos + length


def _integer(data: bytes, pos: int, end: int) -> tuple[int, int]:
    tag, start, stop = _tlv(data, pos, end)
    if tag != 0x02 or not 1 <= stop - start <= 9:
        raise _Malformed
    return int.from_bytes(data[start:stop], "big", signed=True), stop


def _octets_span(data: bytes, pos: int, end: int) -> tuple[int, int]:
    tag, start, stop = _tlv(data, pos, end)
    if tag != 0x04:
        raise _Malformed
    return start, stop


def _octets(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    start, stop = _octets_span(data, pos, end)
    return data[start:stop], stop
