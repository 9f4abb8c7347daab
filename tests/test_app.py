"""Daemon pieces that run without the daemon: result reporting."""

from __future__ import annotations

from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from testkit import make_event
from tocsin.app import ResultReporter
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
