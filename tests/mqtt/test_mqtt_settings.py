"""The mqtt.brokers and sources.mqtt sections: good configs parse, bad ones name file:line and why."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from tocsin.mqtt.settings import (
    BrokerConfig,
    Subscription,
    TlsConfig,
    parse_brokers,
    parse_subscriptions,
)
from tocsin.mqtt.topics import TopicFields
from tocsin.yamlsrc import SourceError, load_yaml, value_mark

ONE_BROKER = "mqtt:\n  brokers:\n    local:\n      host: 127.0.0.1\n"
# Lines 1-3 define one broker; the subscription starts on line 6, its options follow.
ONE_SUBSCRIPTION = "mqtt:\n  brokers:\n    local: {host: h}\nsources:\n  mqtt:\n    - topic: a/b\n"


def brokers_of(text: str, base: Path) -> dict[str, BrokerConfig]:
    doc = load_yaml(text, name="tocsin.yaml")
    return parse_brokers(doc["mqtt"], value_mark(doc, "mqtt", doc.mark), base)


def subscriptions_of(text: str, base: Path) -> tuple[Subscription, ...]:
    doc = load_yaml(text, name="tocsin.yaml")
    brokers = parse_brokers(doc["mqtt"], value_mark(doc, "mqtt", doc.mark), base)
    sources = doc["sources"]
    return parse_subscriptions(sources["mqtt"], value_mark(sources, "mqtt", sources.mark), brokers)


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """Return a config folder holding TLS files and a password file."""
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("-----BEGIN-----\n")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "mqtt.pass").write_text("s3cret word \n")
    return tmp_path


def test_a_full_broker_parses(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Test every broker option, paths relative to the config folder, the password read."""
    monkeypatch.setenv("TOCSIN_TEST_MQTT_PASSWORD", "from-env")
    brokers = brokers_of(
        """\
mqtt:
  brokers:
    local:
      host: broker.example.net
      port: 18883
      version: "5"
      client_id: tocsin-ops1
      keepalive: 1m
      session_expiry: 2h
      receive_maximum: 50
      username: tocsin
      password_file: secrets/mqtt.pass
      tls: {ca: ca.pem, cert: client.pem, key: client.key, verify: false}
      reconnect_min: 250ms
      reconnect_max: 2m
      outbox_limit: 500
    old_one:
      host: 10.0.0.1
      version: 3.1.1
      username: ops
      password_env: TOCSIN_TEST_MQTT_PASSWORD
""",
        base,
    )
    assert brokers == {
        "local": BrokerConfig(
            name="local",
            host="broker.example.net",
            port=18883,
            version="5",
            client_id="tocsin-ops1",
            keepalive=60,
            session_expiry=7200,
            receive_maximum=50,
            username="tocsin",
            password="s3cret word ",  # only the newline goes; spaces may be part of it
            tls=TlsConfig(
                ca=base / "ca.pem", cert=base / "client.pem", key=base / "client.key", verify=False
            ),
            reconnect_min=0.25,
            reconnect_max=120.0,
            outbox_limit=500,
        ),
        "old_one": BrokerConfig(
            name="old_one",
            host="10.0.0.1",
            port=1883,
            version="3.1.1",
            client_id=f"tocsin-{socket.gethostname()}",
            keepalive=30,
            session_expiry=86400,
            receive_maximum=1000,
            username="ops",
            password="from-env",
            tls=None,
            reconnect_min=0.5,
            reconnect_max=60.0,
            outbox_limit=100_000,
        ),
    }


def test_defaults(base: Path) -> None:
    """Test a broker with a host only: MQTT 5, plain port 1883, a client id from the host name."""
    broker = brokers_of(ONE_BROKER, base)["local"]
    assert broker == BrokerConfig(
        name="local",
        host="127.0.0.1",
        port=1883,
        version="5",
        client_id=f"tocsin-{socket.gethostname()}",
        keepalive=30,
        session_expiry=86400,
        receive_maximum=1000,
        username=None,
        password=None,
        tls=None,
        reconnect_min=0.5,
        reconnect_max=60.0,
        outbox_limit=100_000,
    )


@pytest.mark.parametrize(
    ("tls", "expected", "port"),
    [
        ("true", TlsConfig(None, None, None, verify=True), 8883),
        ("{}", TlsConfig(None, None, None, verify=True), 8883),
        ("false", None, 1883),
    ],
)
def test_tls_switch(base: Path, tls: str, expected: TlsConfig | None, port: int) -> None:
    """Test that `tls: true` means system CAs with checks, and that TLS moves the port to 8883."""
    broker = brokers_of(ONE_BROKER + f"      tls: {tls}\n", base)["local"]
    assert (broker.tls, broker.port) == (expected, port)


@pytest.mark.parametrize(
    ("written", "version"),
    [("5", "5"), ('"5"', "5"), ("3.1.1", "3.1.1"), ('"3.1.1"', "3.1.1"), ("311", "3.1.1")],
)
def test_version_spellings(base: Path, written: str, version: str) -> None:
    """Test that the protocol version may be written as YAML reads it, quoted or not."""
    assert brokers_of(ONE_BROKER + f"      version: {written}\n", base)["local"].version == version


@pytest.mark.parametrize(
    ("content", "password"), [("pw\r\n", "pw"), ("pw", "pw"), ("a\n\n", "a\n")]
)
def test_password_file_loses_one_line_end(base: Path, content: str, password: str) -> None:
    """Test that exactly one trailing line end is taken off a password file."""
    (base / "p").write_bytes(content.encode())
    text = ONE_BROKER + "      username: u\n      password_file: p\n"
    assert brokers_of(text, base)["local"].password == password


def test_password_is_not_in_repr(base: Path) -> None:
    """Test that logging a broker config does not log its password."""
    text = ONE_BROKER + "      username: u\n      password_file: secrets/mqtt.pass\n"
    broker = brokers_of(text, base)["local"]
    assert broker.password == "s3cret word "
    assert "s3cret" not in repr(broker)
    assert "username='u'" in repr(broker)


_BROKER_ERRORS = [
    (
        ONE_BROKER + "      password: hunter2\n",
        5,
        "a password does not belong in the config file: use password_file or password_env",
    ),
    (ONE_BROKER + "      prot: 1883\n", 5, "unknown broker option 'prot' (did you mean 'port'?)"),
    (ONE_BROKER + "      port: 0\n", 5, "port must be a whole number from 1 to 65535"),
    (ONE_BROKER + "      port: 65536\n", 5, "port must be a whole number from 1 to 65535"),
    (ONE_BROKER + "      port: '1883'\n", 5, "port must be a whole number from 1 to 65535"),
    (ONE_BROKER + "      version: 4\n", 5, 'version must be "5" or "3.1.1"'),
    (ONE_BROKER + "      version: 3.1\n", 5, 'version must be "5" or "3.1.1"'),
    (ONE_BROKER + "      client_id: ''\n", 5, "client_id must not be empty"),
    (ONE_BROKER + "      client_id: 12\n", 5, "client_id must be text, not a number"),
    (ONE_BROKER + "      keepalive: 2s\n", 5, "keepalive must be at least 5s"),
    (ONE_BROKER + "      keepalive: 2h\n", 5, "keepalive must be at most 1h"),
    (ONE_BROKER + "      keepalive: 10.5s\n", 5, "10.5s is not a whole number of seconds"),
    (
        ONE_BROKER + "      keepalive: soon\n",
        5,
        "keepalive must be a duration like 250ms, 10s, 5m, 1h or 2d, not 'soon'",
    ),
    (ONE_BROKER + "      session_expiry: 0s\n", 5, "session_expiry must be at least 1s"),
    (
        ONE_BROKER + "      session_expiry: 5000000000\n",
        5,
        "session_expiry must be at most 4294967294s",
    ),
    (
        ONE_BROKER + "      version: 3.1.1\n      session_expiry: 1h\n",
        6,
        "session_expiry needs MQTT version 5",
    ),
    (
        ONE_BROKER + "      receive_maximum: 10\n      version: 311\n",
        5,
        "receive_maximum needs MQTT version 5",
    ),
    (
        ONE_BROKER + "      receive_maximum: 0\n",
        5,
        "receive_maximum must be a whole number from 1 to 65535",
    ),
    (ONE_BROKER + "      outbox_limit: 0\n", 5, "outbox_limit must be a whole number >= 1"),
    (ONE_BROKER + "      reconnect_min: 5ms\n", 5, "reconnect_min must be at least 10ms"),
    (
        ONE_BROKER + "      reconnect_min: 2.5s\n      reconnect_max: 1s\n",
        6,
        "reconnect_max must be at least 2.5s",
    ),
    (ONE_BROKER + "      username: 7\n", 5, "username must be text, not a number"),
    (ONE_BROKER + "      password_file: p\n", 5, "password_file needs a username"),
    (
        ONE_BROKER + "      username: u\n      password_env: TOCSIN_TEST_UNSET\n",
        6,
        "environment variable TOCSIN_TEST_UNSET is not set",
    ),
    (
        ONE_BROKER + "      username: u\n      password_env: TOCSIN_TEST_EMPTY\n",
        6,
        "environment variable TOCSIN_TEST_EMPTY is empty",
    ),
    (
        ONE_BROKER + "      username: u\n      password_file: missing.pass\n",
        6,
        "cannot read password file {base}/missing.pass: No such file or directory",
    ),
    (
        ONE_BROKER + "      username: u\n      password_file: secrets\n",
        6,
        "cannot read password file {base}/secrets: Is a directory",
    ),
    (
        ONE_BROKER + "      username: u\n      password_file: empty.pass\n",
        6,
        "password file {base}/empty.pass is empty",
    ),
    (
        ONE_BROKER + "      username: u\n      password_file: latin1.pass\n",
        6,
        "password file {base}/latin1.pass is not UTF-8 text",
    ),
    (
        ONE_BROKER + "      username: u\n      password_file: p\n      password_env: P\n",
        7,
        "give password_file or password_env, not both",
    ),
    (
        ONE_BROKER + "      tls: yes\n",
        5,
        "tls must be true, false or a mapping of ca, cert, key, verify",
    ),
    (ONE_BROKER + "      tls: {ca: nope.pem}\n", 5, "tls ca: no such file {base}/nope.pem"),
    (ONE_BROKER + "      tls:\n        cert: client.pem\n", 6, "tls cert and key go together"),
    (ONE_BROKER + "      tls:\n        key: client.key\n", 6, "tls cert and key go together"),
    (ONE_BROKER + "      tls: {verify: maybe}\n", 5, "verify must be true or false, not text"),
    (
        ONE_BROKER + "      tls:\n        vrfy: false\n",
        6,
        "unknown tls option 'vrfy' (did you mean 'verify'?)",
    ),
    ("mqtt:\n  brokers:\n    local:\n      port: 1883\n", 4, "missing required key 'host'"),
    ("mqtt:\n  brokers:\n    local:\n      host: ''\n", 4, "host must not be empty"),
    (
        "mqtt:\n  brokers:\n    'lo cal': {host: h}\n",
        3,
        "broker name 'lo cal' may only have letters, digits, '_' and '-'",
    ),
    ("mqtt:\n  brokers: {}\n", 2, "mqtt.brokers needs at least one broker"),
    ("mqtt:\n  brokers: [a]\n", 2, "mqtt.brokers must be a mapping, not a list"),
    ("mqtt:\n  broker: {}\n", 2, "unknown mqtt option 'broker' (did you mean 'brokers'?)"),
    ("mqtt:\n  brokers:\n    local: 1\n", 3, "broker 'local' must be a mapping, not a number"),
]


@pytest.mark.parametrize(("text", "line", "message"), _BROKER_ERRORS)
def test_broker_errors(
    base: Path, monkeypatch: pytest.MonkeyPatch, text: str, line: int, message: str
) -> None:
    """Test that each rejected broker option names its file:line and what is wrong."""
    monkeypatch.delenv("TOCSIN_TEST_UNSET", raising=False)
    monkeypatch.setenv("TOCSIN_TEST_EMPTY", "")
    (base / "empty.pass").write_text("\n")
    (base / "latin1.pass").write_bytes("pässword".encode("latin-1"))
    with pytest.raises(SourceError) as caught:
        brokers_of(text, base)
    assert (caught.value.mark.file, caught.value.mark.line) == ("tocsin.yaml", line)
    assert caught.value.message == message.format(base=base)


def test_a_full_subscription_parses(base: Path) -> None:
    """Test every subscription option, on the broker it names."""
    (subscription,) = subscriptions_of(
        """\
mqtt:
  brokers:
    local: {host: h}
    remote: {host: r}
sources:
  mqtt:
    - broker: remote
      topic: $share/ops/sensors/+/+/temp
      topic_fields: sensors/{site}/{device}/temp
      qos: 0
      decoder: json
      name: temps
      host: "{{ device }}"
      message: "{{ payload.msg }}"
      program: sensor
      level: warning
      time_field: meta.ts
      max_payload: 256KiB
      on_error: drop
""",
        base,
    )
    assert subscription.host is not None
    assert subscription.message is not None
    assert (subscription.host.source, subscription.message.source) == (
        "{{ device }}",
        "{{ payload.msg }}",
    )
    assert subscription == Subscription(
        name="temps",
        broker="remote",
        filter="$share/ops/sensors/+/+/temp",
        topic_filter="sensors/+/+/temp",
        qos=0,
        decoder="json",
        fields=TopicFields("sensors/{site}/{device}/temp", ((1, "site"), (2, "device"))),
        host=subscription.host,
        message=subscription.message,
        program="sensor",
        level="warning",
        time_field=("meta", "ts"),
        max_payload=256 << 10,
        on_error="drop",
    )


def test_subscription_defaults(base: Path) -> None:
    """Test a topic alone: the only broker, QoS 1, JSON, named after its filter, 1 MiB."""
    assert subscriptions_of(ONE_SUBSCRIPTION, base) == (
        Subscription(
            name="a/b",
            broker="local",
            filter="a/b",
            topic_filter="a/b",
            qos=1,
            decoder="json",
            fields=None,
            host=None,
            message=None,
            program="mqtt",
            level="info",
            time_field=None,
            max_payload=1 << 20,
            on_error="event",
        ),
    )


@pytest.mark.parametrize(
    ("written", "size"),
    [("512", 512), ("100B", 100), ("64 KiB", 64 << 10), ("2mib", 2 << 20), ("256MiB", 256 << 20)],
)
def test_max_payload_units(base: Path, written: str, size: int) -> None:
    """Test that max_payload takes bytes or B, KiB and MiB, in any case."""
    text = ONE_SUBSCRIPTION + f"      max_payload: {written}\n"
    assert subscriptions_of(text, base)[0].max_payload == size


def test_the_same_topic_on_two_brokers(base: Path) -> None:
    """Test that one filter may be subscribed on two brokers when the names differ."""
    text = (
        "mqtt:\n  brokers:\n    a: {host: h}\n    b: {host: h}\nsources:\n  mqtt:\n"
        "    - {broker: a, topic: x/#}\n    - {broker: b, topic: x/#, name: x-on-b}\n"
    )
    assert [(s.broker, s.name) for s in subscriptions_of(text, base)] == [
        ("a", "x/#"),
        ("b", "x-on-b"),
    ]


_QOS2 = (
    "qos 2 is not supported: tocsin acknowledges a QoS 1 message once its event is safe, "
    "which already delivers each message at least once; use qos 1"
)
_TWO_BROKERS = "mqtt:\n  brokers:\n    local: {host: h}\n    remote: {host: r}\nsources:\n  mqtt:\n"
_SUBSCRIPTION_ERRORS = [
    (ONE_SUBSCRIPTION + "      qos: 2\n", 7, _QOS2),
    (ONE_SUBSCRIPTION + "      qos: 3\n", 7, "qos must be 0 or 1"),
    (ONE_SUBSCRIPTION + "      qos: true\n", 7, "qos must be 0 or 1"),
    (ONE_SUBSCRIPTION + "      decoder: xml\n", 7, "decoder must be one of json, text, raw"),
    (ONE_SUBSCRIPTION + "      on_error: ignore\n", 7, "on_error must be one of event, drop"),
    (
        ONE_SUBSCRIPTION + "      level: warn\n",
        7,
        "level must be one of emerg, alert, crit, err, warning, notice, info, debug",
    ),
    (
        ONE_SUBSCRIPTION + "      host: '{{ x'\n",
        7,
        "host is not a valid template: unexpected end of template, expected 'end of print "
        "statement'.",
    ),
    (
        ONE_SUBSCRIPTION + "      message: '{% if %}'\n",
        7,
        "message is not a valid template: Expected an expression, got 'end of statement block'",
    ),
    (ONE_SUBSCRIPTION + "      host: [a]\n", 7, "host must be text, not a list"),
    (
        ONE_SUBSCRIPTION + "      decoder: text\n      time_field: ts\n",
        8,
        "time_field needs the json decoder",
    ),
    (ONE_SUBSCRIPTION + "      time_field: a..b\n", 7, "time_field 'a..b' is not a dotted path"),
    (ONE_SUBSCRIPTION + "      max_payload: 0\n", 7, "max_payload must be between 1B and 256MiB"),
    (
        ONE_SUBSCRIPTION + "      max_payload: 257MiB\n",
        7,
        "max_payload must be between 1B and 256MiB",
    ),
    (
        ONE_SUBSCRIPTION + "      max_payload: 1TiB\n",
        7,
        "max_payload must be bytes, or a size like 512KiB or 8MiB",
    ),
    (ONE_SUBSCRIPTION + "      broker: locl\n", 7, "unknown broker 'locl' (did you mean 'local'?)"),
    (
        ONE_SUBSCRIPTION + "      topic_fields: a/{x}/c\n",
        7,
        "topic_fields: 'a/{x}/c' has 3 levels but the topic filter 'a/b' has 2",
    ),
    (
        ONE_SUBSCRIPTION + "      topic_fields: a/{b}\n",
        7,
        "topic_fields: level 2 '{b}' names a level the filter does not leave open: the filter "
        "has 'b' there, not '+'",
    ),
    (
        ONE_SUBSCRIPTION.replace("a/b", "a/+") + "      topic_fields: a/{payload}\n",
        7,
        "topic_fields: 'payload' is a field every MQTT event has; pick another name",
    ),
    (ONE_SUBSCRIPTION + "      program: 5\n", 7, "program must be text, not a number"),
    (ONE_SUBSCRIPTION + "      name: ''\n", 7, "name must not be empty"),
    (
        ONE_SUBSCRIPTION + "      colour: red\n",
        7,
        "unknown MQTT subscription option 'colour'",
    ),
    (
        ONE_SUBSCRIPTION.replace("a/b", "a/#/b"),
        6,
        "topic filter 'a/#/b' is not valid: '#' must be a whole level and the last one",
    ),
    (
        ONE_SUBSCRIPTION.replace("a/b", "$share//a"),
        6,
        "topic filter '$share//a' is not valid: a shared subscription needs a group: "
        "$share/GROUP/filter",
    ),
    (ONE_SUBSCRIPTION.replace("a/b", "''"), 6, "topic must not be empty"),
    (ONE_SUBSCRIPTION.replace("topic: a/b", "qos: 1"), 6, "missing required key 'topic'"),
    (
        ONE_SUBSCRIPTION + "    - topic: a/b\n",
        7,
        "topic 'a/b' on broker 'local' is subscribed twice (first at line 6)",
    ),
    (
        ONE_SUBSCRIPTION + "      name: x\n    - {topic: c, name: x}\n",
        8,
        "two subscriptions are named 'x' (first at line 6); give one of them another 'name'",
    ),
    (
        _TWO_BROKERS + "    - topic: a/b\n",
        7,
        "say which broker: 'broker' is one of local, remote",
    ),
    (
        "mqtt:\n  brokers: {a: {host: h}}\nsources:\n  mqtt: {topic: a}\n",
        4,
        "sources.mqtt must be a list, not a mapping",
    ),
    (
        "mqtt:\n  brokers: {a: {host: h}}\nsources:\n  mqtt:\n    - a/b\n",
        5,
        "an MQTT subscription must be a mapping, not text",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), _SUBSCRIPTION_ERRORS)
def test_subscription_errors(base: Path, text: str, line: int, message: str) -> None:
    """Test that each rejected subscription option names its file:line and what is wrong."""
    with pytest.raises(SourceError) as caught:
        subscriptions_of(text, base)
    assert (caught.value.mark.file, caught.value.mark.line) == ("tocsin.yaml", line)
    assert caught.value.message == message


def test_subscriptions_need_a_broker() -> None:
    """Test that subscriptions without any broker defined are refused at the list."""
    doc: Any = load_yaml("sources:\n  mqtt:\n    - topic: a\n", name="tocsin.yaml")
    sources = doc["sources"]
    with pytest.raises(SourceError) as caught:
        parse_subscriptions(sources["mqtt"], value_mark(sources, "mqtt", sources.mark), {})
    assert str(caught.value) == "tocsin.yaml:3:5: sources.mqtt needs a broker under mqtt.brokers"


def test_client_id_fits_an_mqtt_string(base: Path) -> None:
    """Test that a client id over 65535 UTF-8 bytes is refused at load, not at connect."""
    text = ONE_BROKER + "      client_id: " + "é" * 32768 + "\n"
    with pytest.raises(SourceError) as caught:
        brokers_of(text, base)
    assert str(caught.value) == "tocsin.yaml:5:18: client_id must be at most 65535 bytes"
    assert brokers_of(text.replace("é", "e"), base)["local"].client_id == "e" * 32768
