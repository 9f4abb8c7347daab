"""The event `tocsin explain` looks at: a log line, a JSON event, or a trap description, each
turned into an Event by the same code the daemon's sources use."""

from __future__ import annotations

import copy
import datetime
import json
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tocsin.api.silences import parse_time
from tocsin.model import Event
from tocsin.parsers import make_parser
from tocsin.parsers.jsonl import level_of
from tocsin.snmp.ber import SNMP_TRAP_OID, Value
from tocsin.snmp.events import TrapMapper
from tocsin.snmp.mibs import SHIPPED, MibIndex, MibModule

__all__ = ["EVENT_KEYS", "InputError", "Mibs", "copy_event", "from_json", "from_line", "from_trap"]

# What a JSON event may give: the Event's own attributes.
EVENT_KEYS = (
    "time",
    "received",
    "source",
    "origin",
    "message",
    "host",
    "program",
    "level",
    "severity",
    "fields",
)
_TEXT_KEYS = ("source", "origin", "message", "host", "program", "severity")
_OID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+")
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")


class InputError(ValueError):
    """The event given cannot be read; the message says what is wrong (exit 2)."""


def from_line(
    line: str,
    *,
    parser: str,
    received: float,
    year: int | None = None,
    tz: datetime.tzinfo | None = None,
) -> Event:
    """Parse one log line as a file source configured with `parser` would."""
    if "\n" in line.rstrip("\n"):
        raise InputError("give one log line, not several")
    parse = make_parser(parser, origin="explain", year=year, tz=tz, now=lambda: received)
    return parse(line.rstrip("\n"), received)


def from_json(text: str, *, received: float) -> Event:
    """Build an event from a JSON object of Event attributes; `fields` is an object.

    `time` is epoch seconds or ISO 8601 with an offset (default: `received`); `source`
    defaults to log and `origin` to explain.
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError(f"the event is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError('the event must be a JSON object, like {"message": "..."}')
    unknown = sorted(str(key) for key in data if key not in EVENT_KEYS)
    if unknown:
        raise InputError(
            f"unknown event key(s) {', '.join(unknown)}; known: {', '.join(EVENT_KEYS)} "
            '(put anything else under "fields")'
        )
    for key in _TEXT_KEYS:
        if key in data and not isinstance(data[key], str):
            raise InputError(f"event key '{key}' must be text")
    fields = data.get("fields", {})
    if not isinstance(fields, dict):
        raise InputError("event key 'fields' must be an object")
    level = data.get("level", "info")
    if not isinstance(level, str | int) or isinstance(level, bool):
        raise InputError("event key 'level' must be a syslog level name or number")
    at = _moment(data["time"], "time") if "time" in data else received
    return Event(
        time=at,
        received=_moment(data["received"], "received") if "received" in data else at,
        source=data.get("source", "log"),
        origin=data.get("origin", "explain"),
        message=data.get("message", ""),
        host=data.get("host", ""),
        program=data.get("program", ""),
        level=level_of(level),
        severity=data.get("severity"),
        fields=fields,
    )


def _moment(value: Any, what: str) -> float:
    """Read a JSON event's time as the API reads times."""
    try:
        return parse_time(value, f"event key '{what}'")
    except ValueError as exc:
        raise InputError(str(exc)) from None


class Mibs:
    """The MIB modules the trap receiver would load, by name as well as by OID."""

    def __init__(self, folders: Sequence[Path] = ()) -> None:
        modules: list[MibModule] = []
        for folder in (SHIPPED, *folders):
            for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
                try:
                    modules.append(MibModule.loads(path.read_text(encoding="utf-8")))
                except (OSError, ValueError):
                    continue  # the daemon logs these at start; an explanation goes without
        self.index = MibIndex(modules)
        self._oids: dict[str, str] = {}  # "IF-MIB::linkDown" and "linkDown" -> OID
        self._enums: dict[str, dict[str, int]] = {}  # node OID -> label -> value
        for module in modules:
            for oid, node in module.nodes.items():
                self._oids[f"{module.name}::{node.name}"] = oid
                self._oids.setdefault(node.name, oid)
                if node.enums:
                    self._enums[oid] = {label: value for value, label in node.enums.items()}

    def oid(self, name: str) -> str | None:
        """Return the numeric OID of MODULE::name[.instance], name[.instance] or an OID."""
        if _OID.fullmatch(name):
            return name
        head, _, instance = name.partition(".")
        oid = self._oids.get(head)
        if oid is None or (instance and not _OID.fullmatch(f"0.{instance}")):
            return None
        return f"{oid}.{instance}" if instance else oid

    def enum(self, oid: str, label: str) -> int | None:
        """Return the value of an enumeration label of a node, None if it has none."""
        return self._enums.get(oid, {}).get(label)


def from_trap(
    description: str, *, mibs: Mibs, agent: str, community: str, received: float
) -> Event:
    """Build the event of a v2c trap described as `TRAP [VAR=VALUE ...]`.

    TRAP and each VAR are MIB names (IF-MIB::linkDown, ifIndex) or numeric OIDs; a VALUE
    that is an integer (or an enumeration label) is sent as an INTEGER, any other as text.
    """
    try:
        words = shlex.split(description)
    except ValueError as exc:
        raise InputError(f"cannot read the trap description: {exc}") from None
    if not words or "=" in words[0]:
        raise InputError("a trap description starts with the trap, like IF-MIB::linkDown")
    trap_oid = mibs.oid(words[0])
    if trap_oid is None:
        raise InputError(
            f"unknown trap '{words[0]}': give MODULE::name from a loaded MIB, or a numeric OID"
        )
    varbinds: list[tuple[str, Value]] = [(SNMP_TRAP_OID, ("ObjectIdentifier", trap_oid))]
    for word in words[1:]:
        name, sign, text = word.partition("=")
        if not sign or not name:
            raise InputError(f"'{word}' is not VAR=VALUE")
        oid = mibs.oid(name)
        if oid is None:
            raise InputError(f"unknown variable '{name}': give a MIB name or a numeric OID")
        resolved = mibs.index.resolve(oid)
        label = mibs.enum(oid if resolved is None else resolved.node, text)
        if _INTEGER.fullmatch(text):
            varbinds.append((oid, ("Integer", int(text))))
        elif label is not None:
            varbinds.append((oid, ("Integer", label)))
        else:
            varbinds.append((oid, ("OctetString", text.encode())))
    return TrapMapper(mibs.index).event(
        varbinds=varbinds,
        sender=(agent, 162),
        received=received,
        version="2c",
        pdu="trap",
        credential=("community", community),
    )


def copy_event(event: Event) -> Event:
    """A fresh copy: the engine writes captures into an event's fields."""
    return Event(
        time=event.time,
        received=event.received,
        source=event.source,
        origin=event.origin,
        message=event.message,
        host=event.host,
        program=event.program,
        level=event.level,
        severity=event.severity,
        fields=copy.deepcopy(event.fields),
    )
