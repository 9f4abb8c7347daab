"""The daemon against a real mosquitto it does not own: sensors in, incidents and alerts out."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from daemon import Daemon, wait_until

from mqttkit import Broker, Publisher, needs_mosquitto

pytestmark = [pytest.mark.integration, needs_mosquitto]

SENSOR_RULES = r"""
rules:
  - id: hot
    match: {source: mqtt, program: sensors}
    when: "fields.payload.temp > 30"
    key: "{{ fields.site }}/{{ fields.device }}"
    actions:
      - incident: {title: "{{ fields.device }} at {{ fields.site }} is hot", impact: medium, urgency: high}
      - publish:
          topic: "alerts/{{ fields.site }}"
          payload: {device: "{{ fields.device }}", temp: "{{ fields.payload.temp }}", note: hot}
  - id: undecodable
    match: {source: mqtt}
    when: "fields.decode_error"
    key: "{{ fields.topic }}"
    actions:
      - incident: {title: "bad payload on {{ fields.topic }}: {{ fields.decode_error }}", impact: low, urgency: low}
"""


class Watcher:
    """A subscriber that records what the daemon publishes."""

    def __init__(self, port: int, topic: str) -> None:
        self.got: list[tuple[str, bytes, int, bool]] = []
        self._lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="")
        self.client.on_message = self._record
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, 1)
        self.client.loop_start()

    def _record(self, _c: object, _u: object, m: paho.MQTTMessage) -> None:
        with self._lock:
            self.got.append((m.topic, m.payload, m.qos, m.retain))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _broker_config(broker: Broker, **options: object) -> str:
    extra = "".join(f", {k}: {v}" for k, v in options.items())
    return (
        "mqtt:\n  brokers:\n"
        f"    local: {{host: 127.0.0.1, port: {broker.port}, client_id: tocsin-test, "
        f"reconnect_min: 50ms, reconnect_max: 500ms{extra}}}\n"
    )


SENSORS = """  mqtt:
    - topic: sensors/+/+/temp
      topic_fields: sensors/{site}/{device}/temp
      host: "{{ device }}"
      program: sensors
    - topic: plain/#
      decoder: text
      name: plain
"""


def _metric(daemon: Daemon, name: str) -> float:
    """Sum a metric over its labels (0 when absent)."""
    total = 0.0
    for line in daemon.metrics().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_sensor_threshold_opens_incident_and_publishes_alert(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker")
    broker.start()
    watcher = Watcher(broker.port, "alerts/#")
    daemon = Daemon(
        tmp_path / "d", sources=SENSORS, extra=_broker_config(broker), rules=SENSOR_RULES
    )
    try:
        daemon.start()
        wait_until(lambda: _metric(daemon, "tocsin_mqtt_connected") == 1, what="connected")
        with Publisher(broker.port) as pub:
            Publisher.wait(
                pub.send(
                    [
                        ("sensors/berlin/d1/temp", json.dumps({"temp": 35.5})),
                        ("sensors/berlin/d2/temp", json.dumps({"temp": 20})),
                        ("sensors/paris/d1/temp", json.dumps({"temp": 31})),
                        ("sensors/paris/d9/temp", b"{not json"),
                        ("plain/a/b", b"\xff\xfe not utf-8"),
                        ("plain/c", "hello"),
                    ]
                )
            )
        incidents = wait_until(
            lambda: len(daemon.incidents()) == 4 and daemon.incidents(), what="four incidents"
        )
        titles = sorted(i["title"] for i in incidents)
        assert titles == [
            "bad payload on plain/a/b: invalid utf-8",
            "bad payload on sensors/paris/d9/temp: invalid json",
            "d1 at berlin is hot",
            "d1 at paris is hot",
        ]
        alerts = wait_until(lambda: len(watcher.got) == 2 and watcher.got, what="two alerts")
        assert sorted((t, json.loads(p), q) for t, p, q, _ in alerts) == [
            ("alerts/berlin", {"device": "d1", "temp": 35.5, "note": "hot"}, 1),
            ("alerts/paris", {"device": "d1", "temp": 31, "note": "hot"}, 1),
        ]
        assert _metric(daemon, "tocsin_mqtt_messages_total") == 6
        assert _metric(daemon, "tocsin_mqtt_payload_errors_total") == 2
        assert _metric(daemon, "tocsin_outbox_pending") == 0
        assert daemon.stop() == 0
    finally:
        watcher.close()
        broker.stop(signal.SIGKILL)


def test_messages_sent_while_daemon_is_down_arrive_after_it_returns(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker")
    broker.start()
    daemon = Daemon(
        tmp_path / "d", sources=SENSORS, extra=_broker_config(broker), rules=SENSOR_RULES
    )
    try:
        daemon.start()  # the first connect makes the persistent session and subscription
        wait_until(lambda: _metric(daemon, "tocsin_mqtt_connected") == 1, what="connected")
        assert daemon.stop() == 0
        with Publisher(broker.port) as pub:
            Publisher.wait(pub.send([("sensors/rome/d4/temp", json.dumps({"temp": 40}))]))
        daemon.start()
        wait_until(
            lambda: [i["title"] for i in daemon.incidents()] == ["d4 at rome is hot"],
            what="the incident from the message sent while down",
        )
        assert daemon.stop() == 0
    finally:
        broker.stop(signal.SIGKILL)


def test_alerts_wait_in_the_outbox_while_the_broker_is_away(tmp_path: Path) -> None:
    """A publish made while the broker is down survives a daemon restart and is sent later."""
    inbound = Broker(tmp_path / "in")
    outbound = Broker(tmp_path / "out")
    inbound.start()
    outbound.start()
    extra = (
        "mqtt:\n  brokers:\n"
        f"    sensors: {{host: 127.0.0.1, port: {inbound.port}, client_id: tocsin-in, "
        "reconnect_min: 50ms, reconnect_max: 300ms}\n"
        f"    alerts: {{host: 127.0.0.1, port: {outbound.port}, client_id: tocsin-out, "
        "reconnect_min: 50ms, reconnect_max: 300ms}\n"
    )
    rules = SENSOR_RULES.replace(
        'topic: "alerts/{{ fields.site }}"',
        'broker: alerts\n          topic: "alerts/{{ fields.site }}"',
    )
    sources = SENSORS.replace("    - topic: sensors", "    - broker: sensors\n      topic: sensors")
    sources = sources.replace("    - topic: plain/#", "    - broker: sensors\n      topic: plain/#")
    daemon = Daemon(tmp_path / "d", sources=sources, extra=extra, rules=rules)
    watcher: Watcher | None = None
    try:
        daemon.start()
        wait_until(lambda: _metric(daemon, "tocsin_mqtt_connected") == 2, what="both connected")
        outbound.stop()
        wait_until(lambda: _metric(daemon, "tocsin_mqtt_connected") == 1, what="alerts down")
        with Publisher(inbound.port) as pub:
            Publisher.wait(pub.send([("sensors/oslo/d7/temp", json.dumps({"temp": 50}))]))
        wait_until(lambda: _metric(daemon, "tocsin_outbox_pending") == 1, what="one waiting")
        assert daemon.stop() == 0
        with sqlite3.connect(daemon.db) as conn:
            assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (1,)
        outbound.start()
        watcher = Watcher(outbound.port, "alerts/#")
        daemon.start()
        got = wait_until(lambda: watcher.got, what="the alert after the restart")
        assert [(t, json.loads(p)) for t, p, _, _ in got] == [
            ("alerts/oslo", {"device": "d7", "temp": 50, "note": "hot"})
        ]
        wait_until(lambda: _metric(daemon, "tocsin_outbox_pending") == 0, what="outbox empty")
        assert daemon.stop() == 0
        with sqlite3.connect(daemon.db) as conn:
            assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
    finally:
        if watcher is not None:
            watcher.close()
        inbound.stop(signal.SIGKILL)
        outbound.stop(signal.SIGKILL)


COUNT_RULES = r"""
rules:
  - id: each
    match: {source: mqtt}
    key: "{{ fields.payload.seq }}"
    actions:
      - incident: {title: "message {{ fields.payload.seq }}", impact: low, urgency: low}
"""

LOAD = """  mqtt:
    - topic: load/#
      dedupe_key: "{{ payload.seq }}"
"""


@pytest.mark.parametrize("version", ["5", "3.1.1"])
def test_broker_and_daemon_restarts_under_load_lose_nothing_and_double_nothing(
    tmp_path: Path, version: str
) -> None:
    """10,000 QoS 1 messages; the broker restarts three times and the daemon once.

    Every message becomes exactly one event: resends by the broker (flagged, same packet id)
    and by the publisher (whose acknowledgement a restart lost) are both recognized.
    """
    broker = Broker(tmp_path / "broker")
    broker.start()
    daemon = Daemon(
        tmp_path / "d",
        sources=LOAD,
        extra=_broker_config(broker, version=f'"{version}"'),
        rules=COUNT_RULES,
    )
    total = 10_000
    try:
        daemon.start()
        wait_until(lambda: _metric(daemon, "tocsin_mqtt_connected") == 1, what="connected")
        infos = []
        with Publisher(broker.port, client_id="load-publisher") as pub:
            for chunk in range(10):
                infos += pub.send(
                    (f"load/{seq % 7}", json.dumps({"seq": seq, "pad": "x" * 100}))
                    for seq in range(chunk * 1000, (chunk + 1) * 1000)
                )
                if chunk in (2, 5, 8):
                    broker.restart()
                if chunk == 6:
                    assert daemon.stop() == 0
                    daemon.start()
            Publisher.wait(infos, timeout=60)

        def counts() -> dict[int, int]:
            with sqlite3.connect(f"file:{daemon.db}?mode=ro", uri=True) as conn:
                return {
                    int(key): count
                    for key, count in conn.execute(
                        "SELECT key, count FROM incidents WHERE rule = 'each'"
                    )
                }

        seen = wait_until(
            lambda: (c := counts()) and len(c) == total and c, timeout=60, what="every message"
        )
        time.sleep(0.5)  # anything doubled would show up now
        seen = counts()
        assert sorted(seen) == list(range(total))
        assert {seq: n for seq, n in seen.items() if n != 1} == {}
        assert daemon.stop() == 0
    finally:
        broker.stop(signal.SIGKILL)


def test_removed_filters_are_unsubscribed_and_retained_messages_come_once(
    tmp_path: Path,
) -> None:
    """A filter dropped from the config stops delivering; a retained message is not
    delivered again at each connect of the persistent session (MQTT 5 retain handling)."""
    broker = Broker(tmp_path / "broker")
    broker.start()
    daemon = Daemon(
        tmp_path / "d", sources=SENSORS, extra=_broker_config(broker), rules=SENSOR_RULES
    )
    try:
        with Publisher(broker.port) as pub:
            Publisher.wait(
                pub.send([("sensors/lima/d1/temp", json.dumps({"temp": 45}))], retain=True)
            )
        daemon.start()
        wait_until(lambda: _metric(daemon, "tocsin_mqtt_messages_total") == 1, what="retained")
        assert daemon.stop() == 0
        daemon.sources = SENSORS.split("    - topic: plain/#", maxsplit=1)[0]  # plain/# is gone
        daemon.__post_init__()  # rewrite the config
        daemon.start()
        wait_until(lambda: "unsubscribed" in daemon.output(), what="the stale filter dropped")
        with Publisher(broker.port) as pub:
            Publisher.wait(
                pub.send([("plain/x", "gone"), ("sensors/lima/d2/temp", json.dumps({"temp": 1}))])
            )
        wait_until(lambda: _metric(daemon, "tocsin_mqtt_messages_total") == 1, what="one message")
        time.sleep(0.3)  # a plain/x delivery or a second retained copy would be counted now
        assert _metric(daemon, "tocsin_mqtt_messages_total") == 1
        assert _metric(daemon, "tocsin_mqtt_messages_dropped_total") == 0
        saved = json.loads((daemon.root / "state" / "mqtt-subscriptions.json").read_text())
        assert saved == {"local": ["sensors/+/+/temp"]}
        assert daemon.stop() == 0
    finally:
        broker.stop(signal.SIGKILL)
