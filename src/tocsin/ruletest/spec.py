"""Test files for `tocsin test`: what goes in at which time and what must have come out,
read strictly (unknown keys are errors) with every problem at file:line."""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tocsin.api.incidents import ACTIONS
from tocsin.mute.matchers import Matchers, parse_matchers
from tocsin.mute.schedule import parse_time_zone
from tocsin.parsers import PARSER_KINDS
from tocsin.rules.schema import (
    check_keys,
    expect_bool,
    expect_int,
    expect_items,
    expect_list,
    expect_map,
    expect_str,
    parse_duration,
    parse_path,
    plain_errors,
)
from tocsin.ruletest.compare import text_operator
from tocsin.tokens import Role
from tocsin.yamlsrc import (
    Mark,
    MarkedList,
    MarkedMap,
    SourceError,
    did_you_mean,
    key_mark,
    load_yaml_file,
    value_mark,
)

__all__ = [
    "DEFAULT_START",
    "RECORD_KEYS",
    "AskAccess",
    "Call",
    "Case",
    "Check",
    "DecideAccess",
    "ErrorPattern",
    "Expectation",
    "ExpireSilence",
    "FileSpec",
    "IncidentRef",
    "Input",
    "LogLines",
    "MakeSilence",
    "Message",
    "MoveIncident",
    "MoveRequest",
    "Pattern",
    "Stimulus",
    "SubmitRequest",
    "Trap",
    "Varbind",
    "load_test_file",
]

DEFAULT_START = 1_767_571_200.0  # 2026-01-05T00:00:00Z, a Monday
DEFAULT_ACTOR = "tester"  # who an API call is made by unless it says
DEFAULT_FILE = "/var/log/syslog"  # the origin of log lines unless they say
_MAX_REPEAT = 100_000

_TOP = (
    "config",
    "rules",
    "muting",
    "incidents",
    "runbooks",
    "start",
    "tick",
    "parser",
    "timezone",
    "year",
    "cases",
)
_STIMULI = ("log", "syslog", "trap", "mqtt")
_REQUEST_STEPS = ("approve", "reject", "start", "fulfil", "fail", "close")
_CALLS = (
    "silence",
    "expire-silence",
    *ACTIONS,
    "request",
    *(f"{step}-request" for step in _REQUEST_STEPS),
    "access",
    "approve-access",
    "reject-access",
    "revoke-access",
)
_INPUT_KEYS = ("at", "repeat", "every", "file", "response", "error", *_STIMULI, *_CALLS)
_TRAP_TYPES = (
    "Integer",
    "OctetString",
    "ObjectIdentifier",
    "IpAddress",
    "Counter32",
    "Gauge32",
    "TimeTicks",
    "Counter64",
    "Opaque",
    "Null",
)

# The fields each kind of record offers an expectation (tests/test_ruletest_runner.py checks
# them against the views themselves).
RECORD_KEYS: Mapping[str, tuple[str, ...]] = {
    "incidents": (
        "id", "fingerprint", "rule", "key", "title", "state", "priority", "impact", "urgency",
        "service", "category", "description", "labels", "count", "first_seen", "last_seen",
        "opened_at", "acknowledged_at", "resolved_at", "closed_at", "assignee", "group",
        "workaround", "reopened", "muted", "muted_by", "samples", "sla", "escalation",
    ),
    "notifications": (
        "receiver", "channel", "action", "reason", "incidents", "user", "group", "key", "body",
    ),
    "published": ("broker", "rule", "topic", "payload", "qos", "retain"),
    "runs": (
        "id", "runbook", "rule", "key", "target", "incident", "state", "reason", "created_at",
        "started_at", "finished_at", "steps", "result", "dry_run", "expires_at", "decided_by",
        "argv",
    ),
    "problems": (
        "id", "title", "state", "opened_at", "service", "category", "fingerprint", "incidents",
        "incident_count", "root_cause", "workaround", "owner", "known_error", "resolved_at",
        "closed_at",
    ),
    "requests": (
        "id", "item", "input", "state", "requested_by", "source", "opened_at", "due_at",
        "approval", "decided_by", "decided_at", "run_id", "started_at", "finished_at",
        "closed_at", "reason", "sla_breached",
    ),
    "grants": (
        "id", "role", "subject", "requested_by", "requested_at", "request", "duration", "state",
        "rights", "grant_runbook", "revoke_runbook", "source", "approve_by", "granted_by",
        "expires_at", "granted_at", "ending", "ended_by", "ended_at", "why", "revoke_failures",
        "retry_at",
    ),
    "audit": ("time", "action", "role", "subject", "by", "why", "grant", "request"),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class LogLines:
    """Lines read from one log file at once; `stamped` lines get the clock's time put first."""

    lines: tuple[str, ...]
    file: str
    stamped: bool


@dataclass(frozen=True, slots=True)
class Varbind:
    """One variable of a trap: a MIB name (or OID) and its value, typed or to be inferred."""

    name: str
    type: str | None
    value: Any
    mark: Mark


@dataclass(frozen=True, slots=True)
class Trap:
    """A trap as the SNMP source decodes it: its name, sender, credential and variables."""

    name: str
    mark: Mark
    sender: str
    port: int
    version: str
    community: str
    user: str | None
    uptime: int
    varbinds: tuple[Varbind, ...]


@dataclass(frozen=True, slots=True)
class Message:
    """An MQTT message as a broker delivers it."""

    topic: str
    payload: bytes
    broker: str | None
    qos: int
    retain: bool
    mark: Mark


@dataclass(frozen=True, slots=True)
class IncidentRef:
    """An incident by id, or by rule (and key) when one incident fits."""

    id: int | None = None
    rule: str | None = None
    key: str | None = None

    def __str__(self) -> str:
        if self.id is not None:
            return f"incident {self.id}"
        return f"the incident of rule {self.rule}" + (
            f" key {self.key!r}" if self.key is not None else ""
        )


@dataclass(frozen=True, slots=True)
class MakeSilence:
    """POST /silences; `starts` and `ends` count from the case's start, like `at`."""

    matchers: Matchers
    starts: float | None
    ends: float | None
    duration: float | None
    comment: str
    by: str


@dataclass(frozen=True, slots=True)
class ExpireSilence:
    """DELETE /silences/ID of the case's n-th silence (1: the first made)."""

    number: int


@dataclass(frozen=True, slots=True)
class MoveIncident:
    """POST /incidents/ID/ACTION (acknowledge, start, hold, resolve, close, reopen)."""

    action: str
    incident: IncidentRef
    by: str
    note: str


@dataclass(frozen=True, slots=True)
class SubmitRequest:
    """POST /requests."""

    item: str
    data: dict[str, Any]
    by: str


@dataclass(frozen=True, slots=True)
class MoveRequest:
    """A step of a request: approve, reject, start, fulfil, fail or close."""

    step: str
    request: int
    by: str
    role: Role
    note: str


@dataclass(frozen=True, slots=True)
class AskAccess:
    """POST /access/requests (verb grant) or /access/revoke (verb revoke)."""

    verb: str
    role: str
    subject: str
    duration: float | None
    by: str
    why: str


@dataclass(frozen=True, slots=True)
class DecideAccess:
    """Approve or reject a grant that waits for approval."""

    approve: bool
    grant: int
    by: str
    role: Role
    why: str


Stimulus = LogLines | Trap | Message
Call = (
    MakeSilence
    | ExpireSilence
    | MoveIncident
    | SubmitRequest
    | MoveRequest
    | AskAccess
    | DecideAccess
)


@dataclass(frozen=True, slots=True)
class Pattern:
    """An expected value (partial: only the keys given count) and where it is written."""

    value: Any
    mark: Mark


@dataclass(frozen=True, slots=True)
class ErrorPattern:
    """How an API call must be refused: its status and/or a pattern of its message."""

    status: int | None
    message: Pattern | None
    mark: Mark


@dataclass(frozen=True, slots=True)
class Input:
    """Something that happens at `at` seconds after the case's start."""

    at: float
    mark: Mark
    what: Stimulus | Call
    response: Pattern | None = None  # calls: what the desk must answer
    error: ErrorPattern | None = None  # calls: how it must refuse


@dataclass(frozen=True, slots=True)
class Check:
    """The records of one kind a moment must hold: all of them, as a multiset or in order."""

    kind: str
    mark: Mark
    ordered: bool
    records: tuple[Pattern, ...]


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the store must hold `at` seconds after the case's start."""

    at: float
    mark: Mark
    checks: tuple[Check, ...]


@dataclass(frozen=True, slots=True)
class Case:
    """One scenario: a fresh daemon core, its inputs and expectations on a virtual clock."""

    name: str
    mark: Mark
    start: float
    inputs: tuple[Input, ...]
    expects: tuple[Expectation, ...]


@dataclass(frozen=True, slots=True)
class FileSpec:
    """A whole test file: the daemon's settings to use and the cases."""

    path: Path
    config: Path | None
    rules: tuple[Path, ...] | None
    muting: tuple[Path, ...] | None
    incidents: Path | None
    runbooks: Path | None
    tick: float | None
    parser: str
    timezone: datetime.tzinfo
    year: int | None
    cases: tuple[Case, ...]


def load_test_file(path: Path) -> FileSpec:
    """Read and check a test file; SourceError at file:line of the first problem."""
    data = load_yaml_file(path)
    root = expect_map(data, Mark(str(path), 1, 1), "a test file")
    check_keys(root, _TOP, "test file key", required=("cases",))
    base = path.resolve().parent

    def at(key: str) -> Mark:
        return value_mark(root, key, root.mark)

    def paths(key: str) -> tuple[Path, ...] | None:
        if key not in root:
            return None
        items = expect_items(root[key], at(key), f"'{key}'")
        return tuple(parse_path(base, item, at(key), f"a {key} path") for item in items)

    def one_path(key: str) -> Path | None:
        return parse_path(base, root[key], at(key), f"'{key}'") if key in root else None

    config = one_path("config")
    rules = paths("rules")
    if config is None and rules is None:
        raise SourceError(root.mark, "give 'config' (a tocsin.yaml), 'rules' (rule files), or both")
    parser = root.get("parser", "auto")
    if parser not in PARSER_KINDS:
        raise SourceError(
            at("parser"), f"unknown parser {parser!r}; use one of {', '.join(PARSER_KINDS)}"
        )
    year = None
    if "year" in root:
        year = expect_int(root["year"], at("year"), "'year'", minimum=1970)
    start = _moment(root["start"], at("start")) if "start" in root else DEFAULT_START
    tick = None
    if "tick" in root:
        tick = parse_duration(root["tick"], at("tick"), "'tick'")
        if tick < 0.01:
            raise SourceError(at("tick"), "'tick' must be at least 10ms")
    items = expect_list(root["cases"], at("cases"), "'cases'")
    cases: list[Case] = []
    seen: dict[str, Mark] = {}
    for index, item in enumerate(items):
        case = _case(item, value_mark(items, index, at("cases")), start)
        if case.name in seen:
            raise SourceError(
                case.mark, f"duplicate case name '{case.name}' (first at {seen[case.name]})"
            )
        seen[case.name] = case.mark
        cases.append(case)
    if not cases:
        raise SourceError(at("cases"), "'cases' is empty: a test file needs at least one case")
    return FileSpec(
        path=path,
        config=config,
        rules=rules,
        muting=paths("muting"),
        incidents=one_path("incidents"),
        runbooks=one_path("runbooks"),
        tick=tick,
        parser=str(parser),
        timezone=parse_time_zone(root["timezone"], at("timezone"), plain_errors)
        if "timezone" in root
        else datetime.UTC,
        year=year,
        cases=tuple(cases),
    )


def _moment(value: Any, where: Mark) -> float:
    """An ISO 8601 time with a UTC offset as epoch seconds (unquoted, YAML reads no offset
    as UTC)."""
    if isinstance(value, datetime.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)
        return moment.timestamp()
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.timestamp()
    raise SourceError(
        where, "'start' must be an ISO 8601 time with a UTC offset, like 2026-01-05T09:00:00Z"
    )


def _case(spec: Any, where: Mark, start: float) -> Case:
    data = expect_map(spec, where, "a case")
    check_keys(data, ("name", "start", "input", "expect"), "case key", required=("name",))
    name = expect_str(data["name"], value_mark(data, "name", where), "a case's name").strip()
    if not name:
        raise SourceError(value_mark(data, "name", where), "a case's name must not be empty")
    if "start" in data:
        start = _moment(data["start"], value_mark(data, "start", where))
    inputs: list[Input] = []
    if "input" in data:
        items = expect_list(data["input"], value_mark(data, "input", where), "'input'")
        for index, item in enumerate(items):
            inputs.extend(_input(item, value_mark(items, index, items.mark)))
    expects: list[Expectation] = []
    if "expect" in data:
        items = expect_list(data["expect"], value_mark(data, "expect", where), "'expect'")
        expects = [
            _expectation(item, value_mark(items, i, items.mark)) for i, item in enumerate(items)
        ]
    if not expects:
        raise SourceError(where, f"case '{name}' expects nothing: give 'expect'")
    return Case(name, where, start, tuple(inputs), tuple(expects))


def _offset(data: MarkedMap, key: str, where: Mark) -> float:
    """A time after the case's start: a duration like 90s or 5m."""
    return parse_duration(data[key], value_mark(data, key, where), f"'{key}'")


def _input(spec: Any, where: Mark) -> list[Input]:
    data = expect_map(spec, where, "an input")
    check_keys(data, _INPUT_KEYS, "input key", required=("at",))
    kinds = [key for key in (*_STIMULI, *_CALLS) if key in data]
    if len(kinds) != 1:
        got = f"got {' and '.join(kinds)}" if kinds else "got none"
        raise SourceError(
            where, f"an input needs exactly one of {', '.join((*_STIMULI, *_CALLS))} ({got})"
        )
    kind = kinds[0]
    at = _offset(data, "at", where)
    kind_at = value_mark(data, kind, where)
    if kind in _STIMULI:
        for key in ("response", "error"):
            if key in data:
                raise SourceError(
                    key_mark(data, key, where), f"'{key}' is for API calls, not {kind} inputs"
                )
        if "file" in data and kind not in ("log", "syslog"):
            raise SourceError(
                key_mark(data, "file", where), f"'file' is for log lines, not {kind} inputs"
            )
        stimulus = _stimulus(kind, data, kind_at, where)
        repeat = 1
        if "repeat" in data:
            repeat = expect_int(
                data["repeat"], value_mark(data, "repeat", where), "'repeat'", minimum=1
            )
            if repeat > _MAX_REPEAT:
                raise SourceError(
                    value_mark(data, "repeat", where), f"'repeat' must be at most {_MAX_REPEAT}"
                )
        every = _offset(data, "every", where) if "every" in data else 0.0
        if "every" in data and "repeat" not in data:
            raise SourceError(key_mark(data, "every", where), "'every' needs 'repeat'")
        return [Input(at + n * every, where, stimulus) for n in range(repeat)]
    for key in ("repeat", "every", "file"):
        if key in data:
            raise SourceError(key_mark(data, key, where), f"'{key}' is for events, not API calls")
    response = None
    if "response" in data:
        response = Pattern(
            _checked_pattern(data["response"], value_mark(data, "response", where)),
            value_mark(data, "response", where),
        )
    error = _error(data["error"], value_mark(data, "error", where)) if "error" in data else None
    if response is not None and error is not None:
        raise SourceError(where, "give 'response' or 'error', not both")
    return [Input(at, where, _call(kind, data[kind], kind_at), response, error)]


def _lines(value: Any, where: Mark, kind: str) -> tuple[str, ...]:
    items = expect_items(value, where, f"'{kind}'")
    lines = []
    for index, item in enumerate(items):
        line = expect_str(item, value_mark(items, index, where), f"a {kind} line")
        if "\n" in line.rstrip("\n"):
            raise SourceError(
                value_mark(items, index, where), f"a {kind} line must be one line; list several"
            )
        lines.append(line.rstrip("\n"))
    if not lines:
        raise SourceError(where, f"'{kind}' needs at least one line")
    return tuple(lines)


def _stimulus(kind: str, data: MarkedMap, where: Mark, at: Mark) -> Stimulus:
    if kind in ("log", "syslog"):
        file = DEFAULT_FILE
        if "file" in data:
            file = expect_str(data["file"], value_mark(data, "file", at), "'file'")
        return LogLines(_lines(data[kind], where, kind), file, stamped=kind == "syslog")
    if kind == "trap":
        return _trap(data[kind], where)
    return _message(data[kind], where)


def _trap(spec: Any, where: Mark) -> Trap:
    data = expect_map(spec, where, "'trap'")
    keys = ("name", "from", "port", "version", "community", "user", "uptime", "varbinds")
    check_keys(data, keys, "trap option", required=("name",))

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    name = expect_str(data["name"], at("name"), "the trap's name")
    sender = expect_str(data.get("from", "192.0.2.1"), at("from"), "'from'")
    try:
        ipaddress.ip_address(sender)
    except ValueError:
        raise SourceError(at("from"), f"'from' must be an IP address, not {sender!r}") from None
    port = expect_int(data.get("port", 50162), at("port"), "'port'", minimum=1)
    if port > 65535:
        raise SourceError(at("port"), "'port' must be at most 65535")
    if "community" in data and "user" in data:
        raise SourceError(where, "give 'community' (SNMPv1/v2c) or 'user' (SNMPv3), not both")
    user = expect_str(data["user"], at("user"), "'user'") if "user" in data else None
    version = str(data.get("version", "3" if user is not None else "2c"))
    if version not in ("1", "2c", "3") or (version == "3") != (user is not None):
        raise SourceError(
            at("version"), "'version' must be 1 or 2c with a community, 3 with a user"
        )
    varbinds: list[Varbind] = []
    if "varbinds" in data:
        given = expect_map(data["varbinds"], at("varbinds"), "'varbinds'")
        for key, value in given.items():
            mark = value_mark(given, key, given.mark)
            text = expect_str(key, key_mark(given, key, given.mark), "a varbind's name")
            if isinstance(value, MarkedMap):
                check_keys(value, ("type", "value"), "varbind option", required=("type",))
                kind = expect_str(
                    value["type"], value_mark(value, "type", mark), "a varbind's type"
                )
                if kind not in _TRAP_TYPES:
                    raise SourceError(
                        value_mark(value, "type", mark),
                        f"unknown varbind type {kind!r}{did_you_mean(kind, _TRAP_TYPES)}; "
                        f"use one of {', '.join(_TRAP_TYPES)}",
                    )
                varbinds.append(Varbind(text, kind, value.get("value"), mark))
            else:
                varbinds.append(Varbind(text, None, value, mark))
    return Trap(
        name=name,
        mark=at("name"),
        sender=sender,
        port=port,
        version=version,
        community=expect_str(data.get("community", "public"), at("community"), "'community'"),
        user=user,
        uptime=expect_int(data.get("uptime", 0), at("uptime"), "'uptime'"),
        varbinds=tuple(varbinds),
    )


def _message(spec: Any, where: Mark) -> Message:
    data = expect_map(spec, where, "'mqtt'")
    check_keys(
        data, ("topic", "payload", "broker", "qos", "retain"), "mqtt option", required=("topic",)
    )

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    payload = data.get("payload", "")
    if isinstance(payload, str):
        raw = payload.encode()
    else:
        raw = json.dumps(payload, ensure_ascii=False, default=str).encode()  # a mapping: JSON
    qos = expect_int(data.get("qos", 1), at("qos"), "'qos'")
    if qos > 2:
        raise SourceError(at("qos"), "'qos' must be 0, 1 or 2")
    return Message(
        topic=expect_str(data["topic"], at("topic"), "'topic'"),
        payload=raw,
        broker=expect_str(data["broker"], at("broker"), "'broker'") if "broker" in data else None,
        qos=qos,
        retain=expect_bool(data.get("retain", False), at("retain"), "'retain'"),
        mark=where,
    )


class _Fields:
    """One call's options, read with file:line errors."""

    def __init__(
        self, kind: str, spec: Any, where: Mark, allowed: tuple[str, ...], required: tuple[str, ...]
    ) -> None:
        self.where = where
        self.data = expect_map(spec, where, f"'{kind}'")
        check_keys(self.data, allowed, f"{kind} option", required=required)

    def at(self, key: str) -> Mark:
        """Where the option's value is written (the call's place when it is not)."""
        return value_mark(self.data, key, self.where)

    def text(self, key: str, default: str | None = None) -> str:
        """A text option; `default` when it may be left out."""
        if key not in self.data and default is not None:
            return default
        return expect_str(self.data[key], self.at(key), f"'{key}'")

    def number(self, key: str) -> int:
        """A record's id or number: 1 or more."""
        return expect_int(self.data[key], self.at(key), f"'{key}'", minimum=1)

    def span(self, key: str) -> float | None:
        """A duration option, None when left out."""
        return _offset(self.data, key, self.where) if key in self.data else None

    def role(self) -> Role:
        """The caller's API role (`as`), operator unless it says."""
        name = self.text("as", "operator")
        try:
            return Role.named(name)
        except ValueError:
            raise SourceError(
                self.at("as"), f"'as' must be viewer, operator or admin, not {name!r}"
            ) from None


def _call(kind: str, spec: Any, where: Mark) -> Call:
    if kind == "silence":
        f = _Fields(
            kind,
            spec,
            where,
            ("matchers", "starts", "ends", "duration", "comment", "by"),
            ("matchers", "comment"),
        )
        if ("ends" in f.data) == ("duration" in f.data):
            raise SourceError(where, "give exactly one of 'ends' and 'duration'")
        return MakeSilence(
            matchers=parse_matchers(f.data["matchers"], f.at("matchers")),
            starts=f.span("starts"),
            ends=f.span("ends"),
            duration=f.span("duration"),
            comment=f.text("comment"),
            by=f.text("by", DEFAULT_ACTOR),
        )
    if kind == "expire-silence":
        f = _Fields(kind, spec, where, ("silence",), ("silence",))
        return ExpireSilence(f.number("silence"))
    if kind in ACTIONS:
        f = _Fields(kind, spec, where, ("incident", "by", "note"), ("incident",))
        return MoveIncident(
            kind,
            _incident(f.data["incident"], f.at("incident")),
            f.text("by", DEFAULT_ACTOR),
            f.text("note", ""),
        )
    if kind == "request":
        f = _Fields(kind, spec, where, ("item", "input", "by"), ("item",))
        data = expect_map(f.data.get("input"), f.at("input"), "'input'")
        return SubmitRequest(f.text("item"), _plain(data), f.text("by", DEFAULT_ACTOR))
    if kind.endswith("-request"):
        decides = kind in ("approve-request", "reject-request")
        allowed = ("request", "by", "as", "note") if decides else ("request", "by", "note")
        f = _Fields(kind, spec, where, allowed, ("request",))
        return MoveRequest(
            kind.removesuffix("-request"),
            f.number("request"),
            f.text("by", DEFAULT_ACTOR),
            f.role(),
            f.text("note", ""),
        )
    if kind in ("access", "revoke-access"):
        allowed = (
            ("role", "subject", "duration", "by")
            if kind == "access"
            else ("role", "subject", "by", "why")
        )
        f = _Fields(kind, spec, where, allowed, ("role", "subject"))
        return AskAccess(
            verb="grant" if kind == "access" else "revoke",
            role=f.text("role"),
            subject=f.text("subject"),
            duration=f.span("duration"),
            by=f.text("by", DEFAULT_ACTOR),
            why=f.text("why", ""),
        )
    allowed = ("grant", "by", "as", "why") if kind == "reject-access" else ("grant", "by", "as")
    f = _Fields(kind, spec, where, allowed, ("grant",))
    return DecideAccess(
        kind == "approve-access",
        f.number("grant"),
        f.text("by", DEFAULT_ACTOR),
        f.role(),
        f.text("why", ""),
    )


def _incident(value: Any, where: Mark) -> IncidentRef:
    if isinstance(value, int) and not isinstance(value, bool):
        return IncidentRef(id=expect_int(value, where, "'incident'", minimum=1))
    data = expect_map(value, where, "'incident' (an id, or {rule, key})")
    check_keys(data, ("rule", "key"), "incident option", required=("rule",))
    key = data.get("key")
    return IncidentRef(
        rule=expect_str(data["rule"], value_mark(data, "rule", where), "'rule'"),
        key=None if key is None else str(key),
    )


def _error(value: Any, where: Mark) -> ErrorPattern:
    """`error: 409`, `error: "some text"`, or `error: {status: 409, message: ...}`."""
    if isinstance(value, int) and not isinstance(value, bool):
        return ErrorPattern(value, None, where)
    if isinstance(value, str):
        return ErrorPattern(None, Pattern({"contains": value}, where), where)
    data = expect_map(value, where, "'error'")
    check_keys(data, ("status", "message"), "error option")
    status = None
    if "status" in data:
        status = expect_int(
            data["status"], value_mark(data, "status", where), "'status'", minimum=400
        )
    message = None
    if "message" in data:
        at = value_mark(data, "message", where)
        message = Pattern(_checked_pattern(data["message"], at), at)
    return ErrorPattern(status, message, where)


def _expectation(spec: Any, where: Mark) -> Expectation:
    data = expect_map(spec, where, "an expectation")
    check_keys(data, ("at", *RECORD_KEYS), "expectation key", required=("at",))
    checks = []
    for kind in RECORD_KEYS:
        if kind not in data:
            continue
        at = value_mark(data, kind, where)
        value = data[kind]
        ordered = isinstance(value, MarkedMap)
        if ordered:
            check_keys(value, ("in_order",), f"{kind} option", required=("in_order",))
            at = value_mark(value, "in_order", at)
            value = value["in_order"]
        if value is None:
            value = MarkedList()
            value.mark, value.item_marks = at, []
        items = expect_list(value, at, f"'{kind}'")
        records = []
        for index, item in enumerate(items):
            item_at = value_mark(items, index, at)
            record = expect_map(item, item_at, f"an expected {kind} record")
            for key in record:
                if key not in RECORD_KEYS[kind]:
                    raise SourceError(
                        key_mark(record, key, item_at),
                        f"{kind} have no field '{key}'{did_you_mean(str(key), RECORD_KEYS[kind])}",
                    )
            records.append(Pattern(_checked_pattern(record, item_at), item_at))
        checks.append(Check(kind, at, ordered, tuple(records)))
    if not checks:
        raise SourceError(where, f"an expectation needs at least one of {', '.join(RECORD_KEYS)}")
    return Expectation(_offset(data, "at", where), where, tuple(checks))


def _checked_pattern(value: Any, where: Mark) -> Any:
    """Return the pattern as plain data, once its regexes are known to compile."""

    def walk(node: Any, at: Mark) -> Any:
        if isinstance(node, Mapping):
            operator = text_operator(node)
            if operator is not None and operator[0] == "regex":
                try:
                    re.compile(operator[1])
                except re.error as exc:
                    raise SourceError(
                        value_mark(node, "regex", at), f"invalid regex: {exc}"
                    ) from None
            return {key: walk(item, value_mark(node, key, at)) for key, item in node.items()}
        if isinstance(node, list):
            return [walk(item, value_mark(node, index, at)) for index, item in enumerate(node)]
        if isinstance(node, datetime.datetime) and node.tzinfo is None:
            return node.replace(tzinfo=datetime.UTC).isoformat()  # YAML: no offset is UTC
        if isinstance(node, datetime.date):
            return node.isoformat()  # compared as the instant it names
        return node

    return walk(value, where)


def _plain(data: MarkedMap) -> dict[str, Any]:
    return {str(key): value for key, value in data.items()}
