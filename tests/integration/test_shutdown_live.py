"""SIGTERM under load: the queue drains within shutdown_timeout, or the daemon says per source
what it could not finish; either way the next start processes every line exactly once."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from daemon import Daemon, wait_until
from overloadkit import QUEUE_EVENTS, metric_sum, metrics_of, processed, slow_daemon

from mqttkit import Broker, Publisher, needs_mosquitto

pytestmark = pytest.mark.integration

LINE = "Nov 25 10:00:00 web1 app[1]: load {:06d} " + "x" * 60 + "\n"
LINE_BYTES = len(LINE.format(0))


def write(path: Path, first: int, count: int) -> None:
    with path.open("a") as handle:
        handle.write("".join(LINE.format(n) for n in range(first, first + count)))


def logged(daemon: Daemon, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of one event, from the latest run."""
    return [
        entry
        for line in daemon.output().splitlines()
        if line.startswith("{") and (entry := json.loads(line))["event"] == event
    ]


def queue_full(daemon: Daemon) -> bool:
    return metric_sum(metrics_of(daemon.metrics()), "tocsin_queue_depth") >= QUEUE_EVENTS * 3 / 4


def test_sigterm_under_load_drains_the_queue_and_says_what_is_left_in_the_file(
    tmp_path: Path,
) -> None:
    """Test a stop in a backlog: it drains the queue within shutdown_timeout and exits 0,
    logs the bytes left unread (exactly those after the last committed line), and the next
    start reads them: every line counted once."""
    daemon = slow_daemon(tmp_path, source="log", burn=3000, extra="shutdown_timeout: 10s\n")
    log = daemon.root / "logs" / "app.log"
    log.write_text("")
    daemon.start()
    total = 40_000
    write(log, 0, total)
    wait_until(lambda: queue_full(daemon) and processed(daemon) > 0, what="a full queue")
    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM, timeout=30) == 0
    took = time.monotonic() - started
    committed = sum(count for _, count in daemon.db_rows())
    assert 0 < committed < total
    assert took < 10
    stopping = logged(daemon, "tocsin_stopping")
    assert stopping[0]["queued_by_source"]["log"] >= QUEUE_EVENTS / 2
    (files,) = [entry for entry in logged(daemon, "source_stopped") if entry["source"] == "files"]
    assert files["unread_bytes"] == {str(log): (total - committed) * LINE_BYTES}
    assert logged(daemon, "tocsin_stopped")
    assert not logged(daemon, "shutdown_incomplete")
    daemon.start()
    wait_until(lambda: processed(daemon) == total, timeout=40, what="the rest of the file")
    assert daemon.stop() == 0
    assert sum(count for _, count in daemon.db_rows()) == total


@needs_mosquitto
def test_a_missed_deadline_says_per_source_what_it_gave_up_and_loses_nothing(
    tmp_path: Path,
) -> None:
    """Test a stop that cannot drain in time: exit 1, the unprocessed events per source and the
    MQTT messages left unacknowledged are logged, and after a restart every line and every
    QoS 1 message is processed once."""
    broker = Broker(tmp_path / "broker")
    broker.start()
    daemon = slow_daemon(
        tmp_path / "d",
        source="[log, mqtt]",
        burn=60000,
        key="{{ event.source }}",
        sources="  mqtt:\n    - {topic: load/#, decoder: text}\n",
        extra=(
            "shutdown_timeout: 300ms\n"
            "mqtt:\n  brokers:\n"
            f"    local: {{host: 127.0.0.1, port: {broker.port}, client_id: tocsin-stop, "
            "reconnect_min: 50ms, reconnect_max: 500ms}\n"
        ),
    )
    log = daemon.root / "logs" / "app.log"
    log.write_text("")
    try:
        daemon.start()
        wait_until(
            lambda: metric_sum(metrics_of(daemon.metrics()), "tocsin_mqtt_connected") == 1,
            what="the broker connection",
        )
        lines, messages = 6_000, 2_000
        write(log, 0, lines)
        with Publisher(broker.port) as publisher:
            Publisher.wait(publisher.send((f"load/{n}", b"m") for n in range(messages)))
        wait_until(lambda: queue_full(daemon), what="a full queue")
        assert daemon.stop(signal.SIGTERM, timeout=30) == 1
        (incomplete,) = logged(daemon, "shutdown_incomplete")
        assert incomplete["reason"] == "shutdown_timeout passed"
        left = incomplete["unprocessed_by_source"]
        assert set(left) <= {"log", "mqtt"}
        assert sum(left.values()) == incomplete["unprocessed_events"] >= QUEUE_EVENTS / 2
        (mqtt,) = [entry for entry in logged(daemon, "source_stopped") if entry["source"] == "mqtt"]
        assert mqtt["unacked"] > 0
        daemon.start()
        wait_until(
            lambda: processed(daemon, "log") == lines and processed(daemon, "mqtt") == messages,
            timeout=50,
            what="every line and message after the restart",
        )
        assert daemon.stop() == 0
        assert dict(daemon.db_rows()) == {"load:log": lines, "load:mqtt": messages}  # once each
    finally:
        broker.stop()
