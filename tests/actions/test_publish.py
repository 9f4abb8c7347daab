"""The `publish` action: compile-time checks, rendering into the outbox, muting, replay."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testkit import make_event
from tocsin.actions.publish import PublishKind
from tocsin.actions.registry import action_kinds
from tocsin.cli import main
from tocsin.engine.clock import ManualClock
from tocsin.engine.muting import Muter
from tocsin.engine.pipeline import BatchResult, Engine
from tocsin.model import Outgoing
from tocsin.mute.matchers import parse_matchers
from tocsin.mute.silences import SilenceBook
from tocsin.rules.loader import load_rules
from tocsin.rules.templates import compile_template
from tocsin.rules.types import CompileContext
from tocsin.yamlsrc import Mark, SourceError, load_yaml

Build = Callable[..., Engine]
T0 = 1_795_564_800.0
TWO = ("local", "remote")

COMPILE_ERRORS = [
    ("payload: x\n", None, "1:1: rule 'r': missing required key 'topic'"),
    ("topic: a\n", None, "1:1: rule 'r': missing required key 'payload'"),
    (
        "topic: a\npayload: x\nretian: true\n",
        None,
        "3:1: rule 'r': unknown publish option 'retian' (did you mean 'retain'?)",
    ),
    ("topic: a\npayload: x\nqos: 2\n", None, "3:6: rule 'r': qos must be 0 or 1, not 2"),
    ("topic: a\npayload: x\nqos: true\n", None, "3:6: rule 'r': qos must be 0 or 1, not True"),
    (
        "topic: a\npayload: x\nretain: 'yes'\n",
        None,
        "3:9: rule 'r': retain must be true or false, not text",
    ),
    ("topic: 5\npayload: x\n", None, "1:8: rule 'r': topic must be text"),
    (
        "topic: 'alerts/#'\npayload: x\n",
        None,
        "1:8: rule 'r': topic 'alerts/#' contains an MQTT wildcard (+ or #)",
    ),
    (
        "topic: a/+/b\npayload: x\n",
        None,
        "1:8: rule 'r': topic 'a/+/b' contains an MQTT wildcard (+ or #)",
    ),
    ("topic: ''\npayload: x\n", None, "1:8: rule 'r': topic '' is empty"),
    ('topic: "a\\0b"\npayload: x\n', None, "1:8: rule 'r': topic 'a\\x00b' contains NUL"),
    (
        "topic: a\npayload: 42\n",
        None,
        "2:10: rule 'r': payload must be a mapping, a list or a text template, not a number",
    ),
    (
        "topic: a\npayload: '{{ x'\n",
        None,
        "2:10: rule 'r': payload is not a valid template: unexpected end of template, "
        "expected 'end of print statement'.",
    ),
    (
        "topic: a\npayload:\n  a: [1, '{{ x']\n",
        None,
        "3:10: rule 'r': payload.a[1] is not a valid template: unexpected end of template, "
        "expected 'end of print statement'.",
    ),
    (
        "topic: a\npayload: {v: .nan}\n",
        None,
        "2:14: rule 'r': payload.v value nan has no JSON form; quote it",
    ),
    (
        "topic: a\npayload: {d: 2026-11-25}\n",
        None,
        "2:14: rule 'r': payload.d value 2026-11-25 has no JSON form; quote it",
    ),
    ("topic: a\npayload: {1: x}\n", None, "2:11: rule 'r': payload keys must be text; quote 1"),
    ("topic: a\npayload: x\nbroker: 5\n", None, "3:9: rule 'r': broker must be text, not a number"),
    ("topic: a\npayload: x\nbroker: ''\n", None, "3:9: rule 'r': broker must not be empty"),
    (
        "topic: a\npayload: x\nbroker: locl\n",
        TWO,
        "3:9: rule 'r': unknown mqtt broker 'locl' (did you mean 'local'?); "
        "configured: local, remote",
    ),
    (
        "topic: a\npayload: x\n",
        TWO,
        "1:1: rule 'r': 'publish' needs a broker when several are configured: local, remote",
    ),
    (
        "topic: a\npayload: x\nbroker: local\n",
        (),
        "1:1: rule 'r': 'publish' needs an mqtt broker, but none is configured",
    ),
    ("- topic: a\n", None, "1:1: rule 'r': 'publish' must be a mapping, not a list"),
]


@pytest.mark.parametrize(("text", "brokers", "expected"), COMPILE_ERRORS)
def test_compile_errors_name_file_and_line(
    text: str, brokers: tuple[str, ...] | None, expected: str
) -> None:
    """Test that each bad `publish` spec fails to compile with its exact file:line message."""
    spec = load_yaml(text, name="rules.yaml")
    with pytest.raises(SourceError) as caught:
        PublishKind(brokers=brokers).compile(spec, Mark("rules.yaml", 1, 1), CompileContext("r"))
    assert str(caught.value) == f"rules.yaml:{expected}"


@pytest.mark.parametrize(
    ("brokers", "written", "channel"),
    [
        (None, "", "mqtt:"),  # not known (no config): the daemon always passes its brokers
        (None, "broker: anything\n", "mqtt:anything"),
        (("local",), "", "mqtt:local"),
        (TWO, "broker: remote\n", "mqtt:remote"),
    ],
)
def test_broker_names_resolve_to_a_channel(
    brokers: tuple[str, ...] | None, written: str, channel: str
) -> None:
    """Test that the one known broker is the default and a named broker must be known."""
    spec = load_yaml(f"topic: a\npayload: x\n{written}", name="rules.yaml")
    action = PublishKind(brokers=brokers).compile(
        spec, Mark("rules.yaml", 1, 1), CompileContext("r")
    )
    assert action.channel == channel
    assert (action.qos, action.retain, action.notifies) == (1, False, True)


def test_the_loader_checks_brokers_through_the_registry(tmp_path: Path) -> None:
    """Test that `action_kinds(brokers=...)` reaches the rule loader with file:line:col."""
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n  - id: p\n    match: {program: x}\n    actions:\n"
        "      - publish: {broker: lcoal, topic: a, payload: b}\n"
    )
    [error] = load_rules([path], kinds=action_kinds(brokers=["local"])).errors
    assert str(error) == (
        f"{path}:5:27: rule 'p': unknown mqtt broker 'lcoal' (did you mean 'local'?); "
        "configured: local"
    )
    assert not load_rules([path], kinds=action_kinds()).errors


RULES = r"""
rules:
  - id: temp
    match: {message: {regex: 'temp (?P<reading>\d+) on (?P<device>\S+)'}}
    key: "{{ device }}"
    actions:
      - incident: {title: "hot {{ device }}"}
      - publish:
          broker: local
          topic: "alerts/{{ fields.site }}/{{ device }}"
          payload:
            host: "{{ event.host }}"
            temp: "{{ fields.payload.temp }}"
            ok: "{{ fields.payload.ok }}"
            whole: "{{ fields.payload }}"
            reading: "{{ reading }}"
            note: "device {{ device }} at {{ fields.payload.temp }}"
            missing: "{{ fields.nothing.here }}"
            odd: "{{ fields.odd }}"
            nan: "{{ fields.nan }}"
            fixed: {n: 3, f: 1.5, yes: true, none: null, list: [1, "{{ fields.site }}"]}
          qos: 0
          retain: true
  - id: raw
    match: {message: {regex: '^raw (?P<word>\S+)'}}
    actions:
      - publish: {broker: local, topic: raw, payload: "{{ word }} {\"not\": json}"}
"""

FIELDS: dict[str, Any] = {
    "site": "lab",
    "payload": {"temp": 41.5, "ok": False, "tags": ["a", "b"]},
    "odd": {1, 2} - {2},  # no JSON form: becomes its str()
    "nan": float("nan"),
}


def run(
    engine: Engine, clock: ManualClock, message: str, offset: float = 0, **kw: Any
) -> BatchResult:
    """Process one event at T0+offset."""
    clock.advance_to(T0 + offset)
    kw.setdefault("fields", dict(FIELDS))
    kw.setdefault("host", "gw1")
    return engine.process([make_event(message, time=T0 + offset, **kw)])


def test_publish_renders_topic_and_json_payload(engine_for: Build, clock: ManualClock) -> None:
    """Test that lone placeholders keep their JSON type, mixed text renders, keys stay literal."""
    result = run(engine_for(RULES), clock, "temp 41 on s7")
    [sent] = result.outbox
    assert (sent.channel, sent.rule) == ("mqtt:local", "temp")
    assert {k: v for k, v in sent.body.items() if k != "payload"} == {
        "topic": "alerts/lab/s7",
        "qos": 0,
        "retain": True,
    }
    assert json.loads(sent.body["payload"]) == {
        "host": "gw1",
        "temp": 41.5,
        "ok": False,
        "whole": {"temp": 41.5, "ok": False, "tags": ["a", "b"]},
        "reading": "41",
        "note": "device s7 at 41.5",
        "missing": None,
        "odd": "{1}",
        "nan": "nan",
        "fixed": {"n": 3, "f": 1.5, "yes": True, "none": None, "list": [1, "lab"]},
    }
    assert result.actions == {"incident": 1, "publish": 1}
    assert [(o.action, o.op, o.key, o.title) for o in result.outputs or []][1] == (
        "publish",
        "publish",
        "s7",
        "alerts/lab/s7",
    )


def test_text_payload_is_sent_as_rendered(engine_for: Build, clock: ManualClock) -> None:
    """Test that a string payload is a template sent as is, not JSON-encoded."""
    result = run(engine_for(RULES), clock, "raw hello")
    assert result.outbox == [
        Outgoing(
            "mqtt:local",
            "raw",
            {"topic": "raw", "payload": 'hello {"not": json}', "qos": 1, "retain": False},
        )
    ]


def test_undecodable_input_becomes_valid_text(engine_for: Build, clock: ManualClock) -> None:
    """Test that a lone surrogate from undecodable input is replaced, so UTF-8 encoding works."""
    fields = {**FIELDS, "site": "caf\udce9"}
    [sent] = run(engine_for(RULES), clock, "temp 41 on s7", fields=fields).outbox
    assert sent.body["topic"] == "alerts/caf\ufffd/s7"
    assert json.loads(sent.body["payload"])["fixed"]["list"] == [1, "caf\ufffd"]
    assert "\ufffd" in sent.body["payload"]  # as text, not a \\u escape
    sent.body["payload"].encode("utf-8")


@pytest.mark.parametrize(
    ("site", "problem"),
    [
        ("a/+", "contains an MQTT wildcard (+ or #)"),
        ("#", "contains an MQTT wildcard (+ or #)"),
        ("a\0", "contains NUL"),
        ("x" * 70_000, "is longer than 65535 bytes"),
    ],
)
def test_a_bad_rendered_topic_fails_the_action(
    engine_for: Build, clock: ManualClock, site: str, problem: str
) -> None:
    """Test that a topic the event data spoils is an action failure, and nothing is queued."""
    result = run(engine_for(RULES), clock, "temp 41 on s7", fields={**FIELDS, "site": site})
    assert result.outbox == []
    [failure] = result.failures
    assert (failure.rule, failure.stage) == ("temp", "publish")
    assert problem in failure.error
    assert len(failure.error) < 300  # a huge topic is cut short in the report
    assert [o.action for o in result.outputs or []] == ["incident"]


def test_an_empty_rendered_topic_fails_the_action(engine_for: Build, clock: ManualClock) -> None:
    """Test that a topic made only of a missing value is refused rather than sent to ''."""
    engine = engine_for(
        "rules:\n  - id: e\n    match: {program: x}\n"
        "    actions: [{publish: {topic: '{{ fields.none }}', payload: p}}]\n"
    )
    result = run(engine, clock, "m", program="x")
    assert result.outbox == []
    assert [(f.stage, "is empty" in f.error) for f in result.failures] == [("publish", True)]


def test_a_silence_holds_publish_but_the_incident_counts(
    engine_for: Build, clock: ManualClock
) -> None:
    """Test that `publish` notifies: while muted it queues nothing, and resumes afterwards."""
    book = SilenceBook()
    book.add(
        matchers=parse_matchers(["key=s7"], Mark("test", 1, 1)),
        starts_at=T0 + 10,
        ends_at=T0 + 100,
        created_by="alice",
        comment="swap",
        now=T0,
    )
    engine = engine_for(RULES, muter=Muter(silences=book))
    assert len(run(engine, clock, "temp 41 on s7").outbox) == 1
    muted = run(engine, clock, "temp 42 on s7", 20)
    assert muted.outbox == []
    assert muted.actions == {"incident": 1}
    assert [o.action for o in muted.outputs or []] == ["incident", "mute"]
    assert len(run(engine, clock, "temp 43 on s8", 30).outbox) == 1
    assert len(run(engine, clock, "temp 44 on s7", 100).outbox) == 1


def test_replay_prints_publish_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Test that `tocsin replay` shows what would be published, with the topic as the title."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - id: hot\n    match: {program: sensor}\n"
        "    key: '{{ event.host }}'\n"
        "    actions: [{publish: {topic: 'alerts/{{ event.host }}', payload: {m: '{{ event.message }}'}}}]\n"
    )
    log = tmp_path / "syslog"
    log.write_text("Dec 31 23:59:58 gw1 sensor[1]: temp 41\nDec 31 23:59:59 gw2 other[1]: x\n")
    argv = ["replay", "--rules", str(rules), "--year", "2025", "--timezone", "UTC"]
    assert main([*argv, "--format", "jsonl", str(log)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["rule"], r["action"], r["op"], r["key"], r["title"]) for r in rows] == [
        ("hot", "publish", "publish", "gw1", "alerts/gw1")
    ]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ fields.n }}", 7),
        ("{{fields.payload.temp}}", 41.5),
        ("{{ fields.payload }}", {"temp": 41.5, "ok": False, "tags": ["a", "b"]}),
        ("{{ fields.payload.nothing }}", None),
        ("{{ nothing.at.all }}", None),
        ("n={{ fields.n }}", "n=7"),
        ("{{ fields.n }}{{ fields.n }}", "77"),
        ("{{ fields.n + 1 }}", "8"),
        ("plain", "plain"),
    ],
)
def test_template_native_keeps_a_lone_value(source: str, expected: object) -> None:
    """Test that `native` returns a lone placeholder's value and renders anything else."""
    variables = {"fields": {"n": 7, "payload": FIELDS["payload"]}}
    assert compile_template(source).native(variables) == expected
