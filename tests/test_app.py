"""Daemon pieces that run without the daemon: result reporting."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from testkit import make_event
from tocsin.app import ResultReporter, _new_brokers
from tocsin.config import load_config
from tocsin.engine.pipeline import BatchResult, Failure


def test_failures_are_all_counted_but_logged_at_most_once_a_minute() -> None:
    """Test that a rule failing on every event counts each failure and logs one line a minute."""
    now = [1000.0]
    reporter = ResultReporter(every=60.0, clock=lambda: now[0])
    labels = {"rule": "flaky", "stage": "when"}
    before = REGISTRY.get_sample_value("tocsin_rule_failures_total", labels) or 0.0
    event = make_event("x")
    with capture_logs() as logs:
        for _ in range(5):
            now[0] += 20.0
            result = BatchResult(failures=[Failure("flaky", "when", "TypeError()", event)] * 3)
            reporter.report(result)
    after = REGISTRY.get_sample_value("tocsin_rule_failures_total", labels) or 0.0
    assert after - before == 15
    logged = [entry for entry in logs if entry["event"] == "rule_failed"]
    assert [entry["not_logged_since_last"] for entry in logged] == [0, 8]


def test_a_reload_may_not_publish_to_a_broker_that_is_not_running(tmp_path: Path) -> None:
    """Test the reload's broker check: a receiver and a runbook step naming a broker that the
    new file adds (but the running daemon has not connected) are each refused by name."""
    (tmp_path / "incidents.yaml").write_text(
        "receivers:\n  - {name: ops, mqtt: {broker: site, topic: alerts}}\n"
    )
    (tmp_path / "runbooks.yaml").write_text(
        "runbooks:\n  - name: tell\n    steps:\n"
        "      - publish: {broker: site, topic: ops/x, payload: hi}\n"
    )
    (tmp_path / "tocsin.yaml").write_text(
        "mqtt:\n  brokers:\n    site: {host: 127.0.0.1}\n"
        "incidents: incidents.yaml\nrunbooks: runbooks.yaml\n"
    )
    config = load_config(tmp_path / "tocsin.yaml")
    assert _new_brokers(config) == []
    assert _new_brokers(dataclasses.replace(config, mqtt_brokers={})) == [
        "receiver ops publishes to MQTT broker 'site', which is not running; brokers are added "
        "with a restart",
        "runbook tell publishes to MQTT broker 'site', which is not running; brokers are added "
        "with a restart",
    ]
