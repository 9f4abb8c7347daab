"""A test's log lines, traps and MQTT messages made into events by the daemon's own parsers,
trap mapper and MQTT normaliser, as its sources would make them."""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from tocsin.model import Event
from tocsin.mqtt.events import MessageMapper
from tocsin.mqtt.settings import Subscription
from tocsin.mqtt.topics import Router
from tocsin.parsers import Parser, make_parser
from tocsin.ruletest.spec import LogLines, Message, Trap, Varbind
from tocsin.snmp.access import CommunityAccess
from tocsin.snmp.ber import SNMP_TRAP_OID, SYS_UPTIME, Value
from tocsin.snmp.events import TrapMapper
from tocsin.snmp.mibs import SHIPPED, MibIndex, MibModule
from tocsin.snmp.settings import SnmpConfig
from tocsin.yamlsrc import SourceError, did_you_mean

__all__ = ["LogReader", "MqttIntake", "TrapNames", "TrapSource"]

_PRI = re.compile(r"<[0-9]{1,3}>")
_OID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+")
_INSTANCE = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")
_UNSIGNED = {"Counter32": 32, "Gauge32": 32, "TimeTicks": 32, "Counter64": 64}


class LogReader:
    """One parser per log file, as a file source keeps them, reading at the clock's time;
    `choose` says which parser, year and time zone the daemon would use for a file."""

    def __init__(
        self,
        *,
        choose: Callable[[str], tuple[str, int | None, datetime.tzinfo]],
        now: Callable[[], float],
    ) -> None:
        self._choose = choose
        self._now = now
        self._parsers: dict[str, Parser] = {}

    def events(self, lines: LogLines) -> list[Event]:
        """Parse the lines as read now; `syslog` lines are stamped with now first."""
        parser = self._parsers.get(lines.file)
        if parser is None:
            kind, year, tz = self._choose(lines.file)
            parser = make_parser(kind, origin=lines.file, year=year, tz=tz, now=self._now)
            self._parsers[lines.file] = parser
        now = self._now()
        return [parser(_stamped(line, now) if lines.stamped else line, now) for line in lines.lines]


def _stamped(line: str, now: float) -> str:
    """Put an RFC 3339 stamp of `now` before the host (after a leading <PRI>, if any)."""
    moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        stamp += f".{moment.microsecond:06d}"
    pri = _PRI.match(line)
    head, rest = (pri.group(0), line[pri.end() :]) if pri else ("", line)
    return f"{head}{stamp}Z {rest}"


class TrapNames:
    """The names of the MIBs the SNMP source knows, both ways: OIDs to names for the mapper,
    names (and enumeration labels) to OIDs and values for test traps."""

    def __init__(self, folders: Sequence[Path] = ()) -> None:
        modules = []
        for folder in (SHIPPED, *folders):
            for path in sorted(folder.glob("*.json")):
                try:
                    modules.append(MibModule.loads(path.read_text(encoding="utf-8")))
                except (OSError, ValueError):
                    continue  # the SNMP source leaves it out too (and says so when it starts)
        self.index = MibIndex(modules)
        self._oids: dict[str, dict[str, str]] = {}  # name -> module -> OID
        self._labels: dict[str, dict[str, int]] = {}  # node OID -> label -> value
        for module in modules:
            for oid, node in module.nodes.items():
                self._oids.setdefault(node.name, {})[module.name] = oid
                if node.enums:
                    self._labels[oid] = {label: value for value, label in node.enums.items()}

    def oid(self, text: str) -> str:
        """The OID of `MODULE::name[.instance]`, `name[.instance]` or a numeric OID."""
        if _OID.fullmatch(text):
            return text
        module, _, rest = text.rpartition("::")
        name, _, instance = rest.partition(".")
        found = self._oids.get(name, {})
        if module:
            found = {m: oid for m, oid in found.items() if m == module}
        if not found:
            known = [f"{m}::{n}" for n, where in self._oids.items() for m in where]
            raise ValueError(
                f"no MIB the SNMP source knows defines {text!r}{did_you_mean(text, known)}"
            )
        if len(set(found.values())) > 1:
            raise ValueError(
                f"{name} is defined by {', '.join(sorted(found))}: write MODULE::{name}"
            )
        oid = next(iter(found.values()))
        if instance and not _INSTANCE.fullmatch(instance):
            raise ValueError(f"the instance of {text!r} must be numbers and dots")
        return f"{oid}.{instance}" if instance else oid

    def varbinds(self, trap: Trap) -> list[tuple[str, Value]]:
        """The trap's varbinds in SNMPv2 form: uptime, trap OID, then its own; SourceError at
        the name or varbind that is wrong."""
        try:
            trap_oid = self.oid(trap.name)
        except ValueError as exc:
            raise SourceError(trap.mark, str(exc)) from None
        found: list[tuple[str, Value]] = [
            (SYS_UPTIME, ("TimeTicks", trap.uptime)),
            (SNMP_TRAP_OID, ("ObjectIdentifier", trap_oid)),
        ]
        for varbind in trap.varbinds:
            try:
                oid = self.oid(varbind.name)
                found.append((oid, self._value(oid, varbind)))
            except ValueError as exc:
                raise SourceError(varbind.mark, f"varbind {varbind.name}: {exc}") from None
        return found

    def _value(self, oid: str, varbind: Varbind) -> Value:
        """A value as the decoder gives it; an enumeration label of the variable is its number."""
        kind, value = varbind.type, varbind.value
        resolved = self.index.resolve(oid)
        labels = self._labels.get(resolved.node, {}) if resolved is not None else {}
        if kind is None:
            if isinstance(value, int) and not isinstance(value, bool):
                kind = "Integer"
            elif isinstance(value, str):
                kind = "Integer" if value in labels else "OctetString"
            else:
                raise ValueError(
                    "give {type: ..., value: ...} for a value that is not text or a number"
                )
        if kind == "Null":
            return ("Null", None)
        if kind == "Integer":
            number = labels.get(value, value) if isinstance(value, str) else value
            if (
                not isinstance(number, int)
                or isinstance(number, bool)
                or not -(2**31) <= number < 2**31
            ):
                choices = f" (labels: {', '.join(labels)})" if labels else ""
                raise ValueError(f"an Integer must be a 32-bit number{choices}, not {value!r}")
            return ("Integer", number)
        if kind in _UNSIGNED:
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not 0 <= value < 2 ** _UNSIGNED[kind]
            ):
                raise ValueError(f"a {kind} must be a number from 0 below 2^{_UNSIGNED[kind]}")
            return (kind, value)
        if not isinstance(value, str):
            raise ValueError(f"a {kind} value must be text, not {value!r}")
        if kind == "OctetString":
            return ("OctetString", value.encode())
        if kind == "ObjectIdentifier":
            return ("ObjectIdentifier", self.oid(value))
        if kind == "IpAddress":
            try:
                return ("IpAddress", str(ipaddress.IPv4Address(value)))
            except ValueError:
                raise ValueError(f"an IpAddress must be IPv4, not {value!r}") from None
        try:  # Opaque: its bytes in hex
            return ("Opaque", bytes.fromhex(value.replace(":", "")))
        except ValueError:
            raise ValueError(f"an Opaque value must be hex, not {value!r}") from None


class TrapSource:
    """Traps as the SNMP source takes them: its community check (when the config has an SNMP
    source), then its mapper."""

    def __init__(self, names: TrapNames, snmp: SnmpConfig | None) -> None:
        self._names = names
        self._mapper = TrapMapper(names.index)
        self._access = CommunityAccess(snmp.communities) if snmp is not None else None
        self._users = frozenset(u.name for u in snmp.users) if snmp is not None else None

    def event(self, trap: Trap, now: float) -> Event | str:
        """The trap's event, or why the source refuses it."""
        if trap.user is not None:
            if self._users is not None and trap.user not in self._users:
                return f"SNMPv3 user {trap.user!r} is not in sources.snmp.users"
            credential = ("user", trap.user)
        else:
            if self._access is not None:
                refused = self._access.check(trap.community.encode(), trap.sender)
                if refused is not None:
                    return f"community {trap.community!r} from {trap.sender}: {refused}"
            credential = ("community", trap.community)
        return self._mapper.event(
            varbinds=self._names.varbinds(trap),
            sender=(trap.sender, trap.port),
            received=now,
            version=trap.version,
            pdu="trap",
            credential=credential,
        )


class MqttIntake:
    """MQTT messages as a broker's consumer takes them: routed to a subscription, then
    normalised by its mapper."""

    def __init__(self, subscriptions: Sequence[Subscription]) -> None:
        by_broker: dict[str, list[Subscription]] = {}
        for subscription in subscriptions:
            by_broker.setdefault(subscription.broker, []).append(subscription)
        self._routers = {broker: Router(subs) for broker, subs in by_broker.items()}
        self._mappers = {s.name: MessageMapper(s) for s in subscriptions}

    def broker(self, message: Message) -> str:
        """The broker the message comes from; SourceError when that is unclear."""
        known = ", ".join(sorted(self._routers)) or "none"
        if message.broker is not None:
            if message.broker not in self._routers:
                raise SourceError(
                    message.mark,
                    f"broker {message.broker!r} has no subscriptions in sources.mqtt "
                    f"(brokers with some: {known})",
                )
            return message.broker
        if len(self._routers) != 1:
            raise SourceError(
                message.mark,
                f"name the 'broker' of this message (brokers with subscriptions: {known})",
            )
        return next(iter(self._routers))

    def event(self, message: Message, now: float) -> Event | str:
        """The message's event, or why it made none."""
        broker = self.broker(message)
        subscription = self._routers[broker].route(message.topic)
        if subscription is None:
            return f"no subscription of broker {broker} matches topic {message.topic!r}"
        event = self._mappers[subscription.name].map(
            message.topic,
            message.topic.split("/"),
            message.payload,
            message.qos,
            message.retain,
            now,
        )
        if event is None:
            return f"subscription {subscription.name} dropped the payload (on_error: drop)"
        return event
