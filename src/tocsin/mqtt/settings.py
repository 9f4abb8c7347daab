"""The `mqtt.brokers` and `sources.mqtt` config sections, checked whole at load.

Secrets come from a file or the environment, never from the config text, and a broker
option the chosen protocol version cannot send is an error rather than silently ignored.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tocsin.model import LEVELS
from tocsin.mqtt.topics import TopicFields, filter_error, overlap, split_share
from tocsin.rules.schema import (
    check_keys,
    expect_bool,
    expect_list,
    expect_map,
    expect_str,
    parse_duration,
    parse_path,
    parse_size,
)
from tocsin.rules.templates import Template, TemplateCompileError, compile_template
from tocsin.yamlsrc import Mark, MarkedMap, SourceError, did_you_mean, key_mark, value_mark

__all__ = [
    "DECODERS",
    "ON_ERROR",
    "RESERVED_FIELDS",
    "VERSIONS",
    "BrokerConfig",
    "Subscription",
    "TlsConfig",
    "parse_brokers",
    "parse_subscriptions",
]

VERSIONS = ("5", "3.1.1")
DECODERS = ("json", "text", "raw")
ON_ERROR = ("event", "drop")
# Keys events.py puts in an event's fields itself: a topic field may not take their place.
RESERVED_FIELDS = frozenset(
    {"topic", "payload", "qos", "retain", "payload_size", "decode_error", "payload_head"}
)
_VERSION_NAMES = {"5": "5", "3.1.1": "3.1.1", "311": "3.1.1"}
_BROKER_NAME = re.compile(r"[A-Za-z0-9_-]+")
_BROKER_KEYS = (
    "host",
    "port",
    "version",
    "client_id",
    "keepalive",
    "session_expiry",
    "receive_maximum",
    "username",
    "password_file",
    "password_env",
    "tls",
    "reconnect_min",
    "reconnect_max",
    "outbox_limit",
)
_V5_ONLY = ("session_expiry", "receive_maximum")
_TLS_KEYS = ("ca", "cert", "key", "verify")
_SUBSCRIPTION_KEYS = (
    "broker",
    "topic",
    "topic_fields",
    "qos",
    "decoder",
    "name",
    "host",
    "message",
    "program",
    "level",
    "time_field",
    "max_payload",
    "on_error",
    "dedupe_key",
    "dedupe_window",
)
_MAX_SESSION_EXPIRY = 2**32 - 2  # 2**32 - 1 means "never expires" in MQTT 5


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """How to check the broker's certificate; None paths mean system CAs and no client cert.

    `verify=False` checks neither the certificate nor the host name: for a lab only.
    """

    ca: Path | None
    cert: Path | None
    key: Path | None
    verify: bool


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """One broker connection; durations are seconds.

    `session_expiry` and `receive_maximum` are sent with MQTT 5 only; with 3.1.1 the session
    is kept by connecting with clean session off, for as long as the broker decides.
    """

    name: str
    host: str
    port: int
    version: str  # "5" or "3.1.1"
    client_id: str
    keepalive: int
    session_expiry: int
    receive_maximum: int
    username: str | None
    password: str | None = field(repr=False)
    tls: TlsConfig | None
    reconnect_min: float
    reconnect_max: float
    outbox_limit: int


@dataclass(frozen=True, slots=True)
class Subscription:
    """One topic filter on one broker and how its messages become events.

    `filter` is what is sent to the broker ($share/GROUP/ included); `topic_filter` is what
    received topics are matched against.
    """

    name: str
    broker: str
    filter: str
    topic_filter: str
    qos: int
    decoder: str
    fields: TopicFields | None
    host: Template | None
    message: Template | None
    program: str
    level: str
    time_field: tuple[str, ...] | None
    max_payload: int
    on_error: str
    dedupe_key: Template | None = None  # a message's identity: repeats in the window are dropped
    dedupe_window: float = 600.0


def parse_brokers(spec: Any, where: Mark, base: Path) -> dict[str, BrokerConfig]:
    """Parse the `mqtt:` section; file paths are relative to the config file's folder `base`."""
    data = expect_map(spec, where, "mqtt")
    check_keys(data, ("brokers",), "mqtt option", required=("brokers",))
    brokers_at = value_mark(data, "brokers", where)
    specs = expect_map(data["brokers"], brokers_at, "mqtt.brokers")
    if not specs:
        raise SourceError(brokers_at, "mqtt.brokers needs at least one broker")
    brokers: dict[str, BrokerConfig] = {}
    for name, broker in specs.items():
        if not isinstance(name, str) or _BROKER_NAME.fullmatch(name) is None:
            raise SourceError(
                key_mark(specs, name, brokers_at),
                f"broker name {name!r} may only have letters, digits, '_' and '-'",
            )
        brokers[name] = _broker(name, broker, value_mark(specs, name, brokers_at), base)
    return brokers


def _broker(name: str, spec: Any, where: Mark, base: Path) -> BrokerConfig:
    data = expect_map(spec, where, f"broker '{name}'")
    if "password" in data:
        raise SourceError(
            key_mark(data, "password", where),
            "a password does not belong in the config file: use password_file or password_env",
        )
    check_keys(data, _BROKER_KEYS, "broker option", required=("host",))

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    version = _version(data.get("version", "5"), at("version"))
    for key in _V5_ONLY:
        if key in data and version != "5":
            raise SourceError(key_mark(data, key, where), f"{key} needs MQTT version 5")
    tls = _tls(data["tls"], at("tls"), base) if "tls" in data else None
    client_id = _text(
        data.get("client_id", f"tocsin-{socket.gethostname()}"), at("client_id"), "client_id"
    )
    if len(client_id.encode()) > 65535:
        raise SourceError(at("client_id"), "client_id must be at most 65535 bytes")
    reconnect_min = _seconds(data, "reconnect_min", 0.5, at, least=0.01)
    return BrokerConfig(
        name=name,
        host=_text(data["host"], at("host"), "host"),
        port=_number(data.get("port", 1883 if tls is None else 8883), at("port"), "port", 1, 65535),
        version=version,
        client_id=client_id,
        keepalive=_whole(_seconds(data, "keepalive", 30, at, least=5, most=3600), at("keepalive")),
        session_expiry=_whole(
            _seconds(data, "session_expiry", 86400, at, least=1, most=_MAX_SESSION_EXPIRY),
            at("session_expiry"),
        ),
        receive_maximum=_number(
            data.get("receive_maximum", 1000), at("receive_maximum"), "receive_maximum", 1, 65535
        ),
        username=_username(data, at("username")),
        password=_password(data, where, base),
        tls=tls,
        reconnect_min=reconnect_min,
        reconnect_max=_seconds(data, "reconnect_max", 60, at, least=reconnect_min),
        outbox_limit=_number(
            data.get("outbox_limit", 100_000), at("outbox_limit"), "outbox_limit", 1, None
        ),
    )


def _version(value: Any, where: Mark) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and value in _VERSION_NAMES:
        return _VERSION_NAMES[value]
    raise SourceError(where, 'version must be "5" or "3.1.1"')


def _username(data: MarkedMap, where: Mark) -> str | None:
    return _text(data["username"], where, "username") if "username" in data else None


def _text(value: Any, where: Mark, what: str) -> str:
    """Return non-empty text."""
    text = expect_str(value, where, what)
    if not text:
        raise SourceError(where, f"{what} must not be empty")
    return text


def _number(value: Any, where: Mark, what: str, least: int, most: int | None) -> int:
    """Return a whole number in [least, most] (no upper bound when `most` is None)."""
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and least <= value
        and (most is None or value <= most)
    ):
        return value
    if most is None:
        raise SourceError(where, f"{what} must be a whole number >= {least}")
    raise SourceError(where, f"{what} must be a whole number from {least} to {most}")


def _seconds(
    data: MarkedMap,
    key: str,
    default: float,
    at: Callable[[str], Mark],
    *,
    least: float,
    most: float | None = None,
) -> float:
    """Return a duration option in seconds, within [least, most]."""
    where = at(key)
    seconds = parse_duration(data.get(key, default), where, key)
    if seconds < least:
        raise SourceError(where, f"{key} must be at least {_shown(least)}")
    if most is not None and seconds > most:
        raise SourceError(where, f"{key} must be at most {_shown(most)}")
    return seconds


def _shown(seconds: float) -> str:
    """Render a bound the way the config writes it: 10ms, 5s, 1h."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{seconds:g}s"


def _whole(seconds: float, where: Mark) -> int:
    """Return seconds the protocol sends as an integer; a fraction would be silently lost."""
    if not seconds.is_integer():
        raise SourceError(where, f"{seconds:g}s is not a whole number of seconds")
    return int(seconds)


def _password(data: MarkedMap, where: Mark, base: Path) -> str | None:
    """Read the password named by password_file or password_env, at load so errors show now."""
    given = [key for key in ("password_file", "password_env") if key in data]
    if not given:
        return None
    if len(given) > 1:
        raise SourceError(
            key_mark(data, "password_env", where), "give password_file or password_env, not both"
        )
    key = given[0]
    at = value_mark(data, key, where)
    if "username" not in data:
        raise SourceError(key_mark(data, key, where), f"{key} needs a username")
    if key == "password_file":
        path = parse_path(base, data[key], at, key)
        try:
            password = path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
        except UnicodeDecodeError:
            raise SourceError(at, f"password file {path} is not UTF-8 text") from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise SourceError(at, f"cannot read password file {path}: {reason}") from None
        if not password:
            raise SourceError(at, f"password file {path} is empty")
        return password
    variable = _text(data[key], at, key)
    value = os.environ.get(variable)
    if value is None:
        raise SourceError(at, f"environment variable {variable} is not set")
    if not value:
        raise SourceError(at, f"environment variable {variable} is empty")
    return value


def _tls(value: Any, where: Mark, base: Path) -> TlsConfig | None:
    """Parse `tls: true|false` or its mapping; `true` is system CAs with verification."""
    if isinstance(value, bool):
        return TlsConfig(None, None, None, verify=True) if value else None
    if not isinstance(value, MarkedMap):
        raise SourceError(where, "tls must be true, false or a mapping of ca, cert, key, verify")
    check_keys(value, _TLS_KEYS, "tls option")
    files: dict[str, Path | None] = {}
    for key in ("ca", "cert", "key"):
        files[key] = None
        if key in value:
            at = value_mark(value, key, where)
            path = files[key] = parse_path(base, value[key], at, key)
            if not path.is_file():
                raise SourceError(at, f"tls {key}: no such file {path}")
    if (files["cert"] is None) != (files["key"] is None):
        given = "cert" if files["cert"] is not None else "key"
        raise SourceError(key_mark(value, given, where), "tls cert and key go together")
    verify = expect_bool(value.get("verify", True), value_mark(value, "verify", where), "verify")
    return TlsConfig(files["ca"], files["cert"], files["key"], verify=verify)


def parse_subscriptions(
    spec: Any, where: Mark, brokers: Mapping[str, BrokerConfig]
) -> tuple[Subscription, ...]:
    """Parse the `sources.mqtt` list against the brokers `parse_brokers` returned."""
    items = expect_list(spec, where, "sources.mqtt")
    if items and not brokers:
        raise SourceError(where, "sources.mqtt needs a broker under mqtt.brokers")
    subscriptions: list[Subscription] = []
    topics: dict[tuple[str, str], Mark] = {}
    names: dict[str, Mark] = {}
    for index, item in enumerate(items):
        at = value_mark(items, index, where)
        subscription = _subscription(item, at, brokers)
        first = topics.setdefault((subscription.broker, subscription.filter), at)
        if first is not at:
            raise SourceError(
                at,
                f"topic {subscription.filter!r} on broker '{subscription.broker}' is subscribed "
                f"twice (first at line {first.line})",
            )
        for other in subscriptions:
            if other.broker == subscription.broker and overlap(
                other.topic_filter, subscription.topic_filter
            ):
                raise SourceError(
                    at,
                    f"topic {subscription.filter!r} overlaps {other.filter!r} on broker "
                    f"'{subscription.broker}': an MQTT 5 broker would deliver a message matching "
                    "both twice; narrow one of them",
                )
        first = names.setdefault(subscription.name, at)
        if first is not at:
            raise SourceError(
                at,
                f"two subscriptions are named {subscription.name!r} (first at line "
                f"{first.line}); give one of them another 'name'",
            )
        subscriptions.append(subscription)
    return tuple(subscriptions)


def _subscription(spec: Any, where: Mark, brokers: Mapping[str, BrokerConfig]) -> Subscription:
    data = expect_map(spec, where, "an MQTT subscription")
    check_keys(data, _SUBSCRIPTION_KEYS, "MQTT subscription option", required=("topic",))

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    broker = _broker_of(data, where, brokers)
    topic = _text(data["topic"], at("topic"), "topic")
    problem = filter_error(topic)
    if problem is not None:
        raise SourceError(at("topic"), f"topic filter {topic!r} is not valid: {problem}")
    _, topic_filter = split_share(topic)
    decoder = _choice(data, "decoder", DECODERS, at("decoder"))
    time_field = None
    if "time_field" in data:
        if decoder != "json":
            raise SourceError(at("time_field"), "time_field needs the json decoder")
        path = expect_str(data["time_field"], at("time_field"), "time_field")
        time_field = tuple(path.split("."))
        if not all(time_field):
            raise SourceError(at("time_field"), f"time_field {path!r} is not a dotted path")
    level = data.get("level", "info")
    if level not in LEVELS:
        raise SourceError(at("level"), f"level must be one of {', '.join(LEVELS)}")
    return Subscription(
        name=_text(data.get("name", topic), at("name"), "name"),
        broker=broker,
        filter=topic,
        topic_filter=topic_filter,
        qos=_qos(data.get("qos", 1), at("qos")),
        decoder=decoder,
        fields=_topic_fields(data, at("topic_fields"), topic_filter),
        host=_template(data, "host", at("host")),
        message=_template(data, "message", at("message")),
        program=expect_str(data.get("program", "mqtt"), at("program"), "program"),
        level=str(level),
        time_field=time_field,
        max_payload=parse_size(
            data.get("max_payload", 1 << 20),
            at("max_payload"),
            "max_payload",
            least=1,
            most=256 << 20,
        ),
        on_error=_choice(data, "on_error", ON_ERROR, at("on_error")),
        dedupe_key=_template(data, "dedupe_key", at("dedupe_key")),
        dedupe_window=_seconds(data, "dedupe_window", 600.0, at, least=1.0, most=7 * 86400.0),
    )


def _broker_of(data: MarkedMap, where: Mark, brokers: Mapping[str, BrokerConfig]) -> str:
    """Return the subscription's broker; it may go unnamed when there is only one."""
    if "broker" not in data:
        if len(brokers) == 1:
            return next(iter(brokers))
        raise SourceError(where, f"say which broker: 'broker' is one of {', '.join(brokers)}")
    at = value_mark(data, "broker", where)
    name = expect_str(data["broker"], at, "broker")
    if name not in brokers:
        raise SourceError(at, f"unknown broker '{name}'{did_you_mean(name, brokers)}")
    return name


def _qos(value: Any, where: Mark) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value in (0, 1):
            return value
        if value == 2:
            raise SourceError(
                where,
                "qos 2 is not supported: tocsin acknowledges a QoS 1 message once its event is "
                "safe, which already delivers each message at least once; use qos 1",
            )
    raise SourceError(where, "qos must be 0 or 1")


def _choice(data: MarkedMap, key: str, choices: tuple[str, ...], where: Mark) -> str:
    """Return the option's value, one of `choices`; the first choice is the default."""
    value = data.get(key, choices[0])
    if value not in choices:
        raise SourceError(where, f"{key} must be one of {', '.join(choices)}")
    return str(value)


def _topic_fields(data: MarkedMap, where: Mark, topic_filter: str) -> TopicFields | None:
    if "topic_fields" not in data:
        return None
    pattern = expect_str(data["topic_fields"], where, "topic_fields")
    try:
        fields = TopicFields.compile(pattern, topic_filter)
    except ValueError as exc:
        raise SourceError(where, f"topic_fields: {exc}") from None
    taken = sorted(RESERVED_FIELDS.intersection(fields.names))
    if taken:
        raise SourceError(
            where, f"topic_fields: {taken[0]!r} is a field every MQTT event has; pick another name"
        )
    return fields


def _template(data: MarkedMap, key: str, where: Mark) -> Template | None:
    if key not in data:
        return None
    source = expect_str(data[key], where, key)
    try:
        return compile_template(source)
    except TemplateCompileError as exc:
        raise SourceError(where, f"{key} is not a valid template: {exc}") from None
