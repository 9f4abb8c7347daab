"""The queue ledger: events waiting per source and the age of the oldest, read at scrape time."""

from __future__ import annotations

from prometheus_client import REGISTRY

from tocsin.engine.clock import ManualClock
from tocsin.obs import QueueLedger


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_depth_per_source_and_the_oldest_age_follow_adds_and_settles() -> None:
    """Test that batches count per source until settled, and the age is the oldest's."""
    clock = ManualClock(1000.0)
    ledger = QueueLedger(clock=clock.now)
    ledger.export()
    assert gauge("tocsin_queue_oldest_event_age_seconds") == 0.0
    ledger.add("log", 256, 990.0)
    ledger.add("mqtt", 10, 995.0)
    ledger.add("log", 100, 998.0)
    ledger.add("snmp", 0, 900.0)  # an empty batch (a file's start position) waits for nothing
    assert ledger.by_source() == {"log": 356, "mqtt": 10}
    assert gauge("tocsin_queue_source_depth", source="log") == 356
    assert gauge("tocsin_queue_oldest_event_age_seconds") == 10.0
    clock.advance_to(1005.0)
    assert gauge("tocsin_queue_oldest_event_age_seconds") == 15.0  # grows while stuck
    ledger.settle("log", 256, 990.0)
    assert gauge("tocsin_queue_oldest_event_age_seconds") == 10.0  # now the mqtt batch
    ledger.settle("mqtt", 10, 995.0)
    ledger.settle("log", 100, 998.0)
    assert ledger.by_source() == {}
    assert gauge("tocsin_queue_source_depth", source="log") == 0
    assert gauge("tocsin_queue_oldest_event_age_seconds") == 0.0


def test_batches_read_in_the_same_instant_are_settled_one_by_one() -> None:
    """Test that two batches with one read time keep the age until both are taken."""
    clock = ManualClock(50.0)
    ledger = QueueLedger(clock=clock.now)
    ledger.add("log", 5, 40.0)
    ledger.add("log", 5, 40.0)
    ledger.settle("log", 5, 40.0)
    assert ledger.oldest_age() == 10.0
    ledger.settle("log", 5, 40.0)
    assert ledger.oldest_age() == 0.0
