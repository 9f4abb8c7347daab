"""MQTT messages to events: decoders, topic fields, templates, time fields and bad payloads."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.model import Event
from tocsin.mqtt.events import (
    HOST_TEMPLATE,
    INVALID_JSON,
    INVALID_UTF8,
    MESSAGE_TEMPLATE,
    TIME_FIELD,
    TOO_LARGE,
    MessageMapper,
)
from tocsin.mqtt.settings import RESERVED_FIELDS, parse_brokers, parse_subscriptions
from tocsin.yamlsrc import load_yaml

RECEIVED = 1_795_564_800.0  # 2026-11-25T00:00:00Z
TOPIC = "sensors/berlin/dev7/temp"


def mapper_for(
    options: str = "", topic: str = "sensors/+/+/temp", stamps_tz: tzinfo | None = None
) -> MessageMapper:
    """Return the mapper of one subscription to `topic` with extra YAML `options` (flow style)."""
    text = (
        "mqtt:\n  brokers: {b: {host: h}}\nsources:\n  mqtt:\n"
        f"    - {{topic: '{topic}', {options}}}\n"
    )
    doc = load_yaml(text, name="t.yaml")
    brokers = parse_brokers(doc["mqtt"], doc.mark, Path())
    (subscription,) = parse_subscriptions(doc["sources"]["mqtt"], doc.mark, brokers)
    return MessageMapper(subscription, stamps_tz=stamps_tz)


def run(
    mapper: MessageMapper, payload: bytes, topic: str = TOPIC, *, qos: int = 1, retain: bool = False
) -> Event | None:
    return mapper.map(topic, topic.split("/"), payload, qos, retain, RECEIVED)


def test_a_json_object_with_topic_fields_and_host() -> None:
    """Test the whole event of a good JSON message: fields, host from a topic level, the text."""
    mapper = mapper_for("topic_fields: 'sensors/{site}/{device}/temp', host: '{{ device }}'")
    payload = b'{"temp": 21.5, "unit": "C"}'
    event = run(mapper, payload, retain=True)
    assert event is not None
    assert (event.source, event.origin, event.host, event.program, event.level) == (
        "mqtt",
        TOPIC,
        "dev7",
        "mqtt",
        "info",
    )
    assert (event.message, event.time, event.received) == (payload.decode(), RECEIVED, RECEIVED)
    assert event.fields == {
        "topic": TOPIC,
        "payload": {"temp": 21.5, "unit": "C"},
        "qos": 1,
        "retain": True,
        "site": "berlin",
        "device": "dev7",
    }
    assert not mapper.errors


@pytest.mark.parametrize(
    ("payload", "value"),
    [(b"21.5", 21.5), (b"[1, 2]", [1, 2]), (b'"on"', "on"), (b"null", None), (b"true", True)],
)
def test_any_json_value_is_a_payload(payload: bytes, value: object) -> None:
    """Test that JSON other than an object is still decoded, not an error."""
    event = run(mapper_for(), payload)
    assert event is not None
    assert event.fields["payload"] == value
    assert event.message == payload.decode()


def test_lone_surrogates_are_replaced() -> None:
    """Test that a \\ud800 escape becomes U+FFFD, so the event can be stored as UTF-8."""
    event = run(mapper_for(), b'{"m\\uDC00": ["\\ud800 x"]}')
    assert event is not None
    assert event.fields["payload"] == {"m\ufffd": ["\ufffd x"]}


def test_host_and_message_from_the_payload() -> None:
    """Test templates reading payload fields, and a static program and level."""
    mapper = mapper_for(
        "host: '{{ payload.device }}', message: '{{ payload.msg }} ({{ topic }})', "
        "program: sensor, level: err"
    )
    event = run(mapper, b'{"device": "gw1", "msg": "overheat"}')
    assert event is not None
    assert (event.host, event.message, event.program, event.level) == (
        "gw1",
        f"overheat ({TOPIC})",
        "sensor",
        "err",
    )
    assert event.severity == "exception"


def test_a_failing_template_gives_empty_text_and_is_counted() -> None:
    """Test that a template breaking on this message's data does not fail the event."""
    mapper = mapper_for("host: \"{{ payload.n + 'x' }}\", message: '{{ payload.n }}'")
    event = run(mapper, b'{"n": 1}')
    assert event is not None
    assert event.host == ""
    assert event.message == "1"
    assert mapper.errors == {HOST_TEMPLATE: 1}
    mapper = mapper_for("message: \"{{ payload.n + 'x' }}\"")
    event = run(mapper, b'{"n": 1}')
    assert event is not None
    assert (event.message, event.fields["payload"]) == ("", {"n": 1})
    assert mapper.errors == {MESSAGE_TEMPLATE: 1}


def test_text_decoder() -> None:
    """Test that text payloads stay text, in the fields and as the message."""
    event = run(mapper_for("decoder: text"), "Grüße\n".encode())
    assert event is not None
    assert (event.message, event.fields["payload"]) == ("Grüße\n", "Grüße\n")


def test_raw_decoder() -> None:
    """Test that raw payloads become base64 with their size, and no message by default."""
    payload = bytes(range(256))
    event = run(mapper_for("decoder: raw"), payload)
    assert event is not None
    assert event.message == ""
    assert event.fields["payload"] == base64.b64encode(payload).decode()
    assert event.fields["payload_size"] == 256


@pytest.mark.parametrize(
    ("options", "payload", "reason", "detail"),
    [
        ("", b'{"a": 1', INVALID_JSON, "Expecting ',' delimiter at character 7"),
        ("", b"", INVALID_JSON, "Expecting value at character 0"),
        ("", b"[" * 100_000, INVALID_JSON, "nested too deeply"),
        (
            "",
            b"1" * 5000,
            INVALID_JSON,
            "Exceeds the limit (4300 digits) for integer string conversion: value has 5000 "
            "digits; use sys.set_int_max_str_digits() to increase the limit",
        ),
        ("", b'{"a": "\xff"}', INVALID_UTF8, "invalid start byte at byte 7"),
        ("decoder: text", b"ok \xc3", INVALID_UTF8, "unexpected end of data at byte 3"),
        ("max_payload: 10", b'{"a": 1234}', TOO_LARGE, "11 bytes, limit 10"),
        ("max_payload: 4, decoder: raw", b"12345", TOO_LARGE, "5 bytes, limit 4"),
    ],
)
def test_bad_payloads_become_warning_events(
    options: str, payload: bytes, reason: str, detail: str
) -> None:
    """Test the event of each kind of bad payload, with the topic fields kept and counted."""
    mapper = mapper_for(
        f"topic_fields: 'sensors/{{site}}/{{device}}/temp', host: '{{{{ device }}}}', {options}"
    )
    event = run(mapper, payload, qos=0)
    assert event is not None
    assert (event.level, event.host, event.time, event.origin) == (
        "warning",
        "dev7",
        RECEIVED,
        TOPIC,
    )
    assert event.message == f"mqtt payload not decoded: {reason}: {detail}"
    assert event.fields == {
        "topic": TOPIC,
        "qos": 0,
        "retain": False,
        "site": "berlin",
        "device": "dev7",
        "decode_error": reason,
        "payload_size": len(payload),
        "payload_head": payload[:200].decode(errors="replace"),
    }
    assert mapper.errors == {reason: 1}


def test_dropped_bad_payloads_are_counted() -> None:
    """Test that on_error: drop returns no event but still counts the reason."""
    mapper = mapper_for("on_error: drop, max_payload: 8")
    assert run(mapper, b"nope") is None
    assert run(mapper, b"123456789") is None
    assert run(mapper, b"[1]") is not None
    assert mapper.errors == {INVALID_JSON: 1, TOO_LARGE: 1}


def test_the_size_limit_is_checked_before_decoding() -> None:
    """Test that an oversized payload is refused as too large even when it is also bad JSON."""
    mapper = mapper_for("max_payload: 3")
    event = run(mapper, b"{{{{")
    assert event is not None
    assert event.fields["decode_error"] == TOO_LARGE
    assert run(mapper, b"{{{") is not None
    assert mapper.errors == {TOO_LARGE: 1, INVALID_JSON: 1}


_STAMP = datetime(2026, 11, 25, 18, 30, 21, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("payload", "time", "counted"),
    [
        (b'{"meta": {"ts": "2026-11-25T18:30:21.5Z"}}', _STAMP + 0.5, 0),
        (b'{"meta": {"ts": "2026-11-25 19:30:21+01:00"}}', _STAMP, 0),
        (b'{"meta": {"ts": %d}}' % _STAMP, _STAMP, 0),
        (b'{"meta": {"ts": %d}}' % (_STAMP * 1000 + 250), _STAMP + 0.25, 0),
        (b'{"meta": {"ts": null}}', RECEIVED, 0),
        (b'{"meta": {}}', RECEIVED, 0),
        (b'{"meta": 5}', RECEIVED, 0),
        (b"[1]", RECEIVED, 0),
        (b'{"meta": {"ts": "yesterday"}}', RECEIVED, 1),
        (b'{"meta": {"ts": true}}', RECEIVED, 1),
        (b'{"meta": {"ts": [1]}}', RECEIVED, 1),
        (b'{"meta": {"ts": 1e400}}', RECEIVED, 1),
    ],
)
def test_time_field(payload: bytes, time: float, counted: int) -> None:
    """Test event time from a payload field: ISO 8601, epoch s/ms, else the receive time."""
    mapper = mapper_for("time_field: meta.ts")
    event = run(mapper, payload)
    assert event is not None
    assert event.time == pytest.approx(time)
    assert event.received == RECEIVED
    assert mapper.errors[TIME_FIELD] == counted


def test_time_field_without_zone_uses_the_configured_one() -> None:
    """Test that a stamp without an offset is read in stamps_tz."""
    mapper = mapper_for("time_field: ts", stamps_tz=ZoneInfo("Europe/Berlin"))
    event = run(mapper, b'{"ts": "2026-11-25T19:30:21"}')
    assert event is not None
    assert event.time == _STAMP


def test_topic_fields_never_shadow_the_event_fields() -> None:
    """Test that every field a mapper writes itself is a name topic_fields may not take."""
    written: set[str] = set()
    for options, payload in [("decoder: raw", b"x"), ("", b"{"), ("", b"1")]:
        event = run(mapper_for(options), payload)
        assert event is not None
        written.update(event.fields)
    assert written == RESERVED_FIELDS


_DECODERS = st.sampled_from(
    [
        "",
        "decoder: text",
        "decoder: raw",
        "on_error: drop",
        "max_payload: 16",
        "time_field: a.b",
        "host: '{{ payload.a.b }}{{ x }}', message: '{{ payload | length }}'",
        "host: '{{ payload.a + 1 }}', message: '{{ payload[0] }}'",
    ]
)
_TOPIC_LEVELS = st.lists(st.text(max_size=5), min_size=1, max_size=6)
_JSONISH = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b'{"a": {"b": ', b'[{"a": 1}', b'{"a": "\\ud83d', b"1e999", b'"x']).flatmap(
        lambda head: st.binary(max_size=32).map(lambda tail: head + tail)
    ),
)


@settings(max_examples=300)
@given(_DECODERS, _TOPIC_LEVELS, _JSONISH, st.integers(0, 1), st.booleans())
def test_map_never_raises(
    options: str, levels: list[str], payload: bytes, qos: int, retain: bool
) -> None:
    """Test arbitrary bytes on arbitrary topics: an event or None, never an exception."""
    mapper = mapper_for(f"topic_fields: '{{x}}/+/{{y}}', {options}".rstrip(", "), topic="+/+/+")
    topic = "/".join(levels)
    event = mapper.map(topic, levels, payload, qos, retain, RECEIVED)
    assert event is None or event.origin == topic
