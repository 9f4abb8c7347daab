"""Ten times the sustainable rate into a tailed file: the lines wait in the file, memory stays
bounded, the backlog shows, every line is processed once, and the daemon catches up."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from daemon import wait_until
from overloadkit import (
    BURST_SECONDS,
    QUEUE_EVENTS,
    Figures,
    Sampler,
    measure_rate,
    metric_sum,
    metrics_of,
    paced,
    processed,
    rss_mb,
    slow_daemon,
)

pytestmark = pytest.mark.integration

PAD = "x" * 400  # lines of about 460 bytes: the burst is more text than the RSS bound
RSS_BOUND_MB = 32.0  # what the burst may add to the daemon's RSS (VmRSS) from before it


def lines(first: int, count: int) -> str:
    return "".join(
        f"Nov 25 10:{n // 60 % 60:02d}:{n % 60:02d} web1 app[{n}]: load {n} {PAD}\n"
        for n in range(first, first + count)
    )


def test_a_10x_burst_of_lines_waits_in_the_file_and_is_caught_up(tmp_path: Path) -> None:
    """Test the file policy under a 10x burst: bounded RSS, file backlog and a full queue in
    the metrics while it lasts, every line counted exactly once, all caught up after."""
    daemon = slow_daemon(tmp_path, source="log", burn=3000)
    log = daemon.root / "logs" / "burst.log"
    log.write_text("")

    def write(first: int, count: int) -> None:
        with log.open("a") as handle:
            handle.write(lines(first, count))

    daemon.start()
    assert daemon.proc is not None
    warm = 4000
    rate = measure_rate(daemon, warm, write)
    base = rss_mb(daemon.proc.pid)
    with Sampler(daemon) as sampler:
        started = time.monotonic()
        sent = warm + paced(10 * rate, BURST_SECONDS, warm, write)
        burst_end = time.monotonic()
        wait_until(lambda: processed(daemon) == sent, timeout=50, what="all lines processed")
        caught_up = time.monotonic() - burst_end
    shown = {
        name: sampler.most(name)
        for name in (
            "tocsin_file_backlog_bytes",
            "tocsin_queue_depth",
            "tocsin_queue_oldest_event_age_seconds",
        )
    }
    figures = Figures(
        "files", rate, (sent - warm) / (burst_end - started), sent - warm,
        rss_mb(daemon.proc.pid, "VmHWM") - base, base, caught_up, shown,
    )  # fmt: skip
    figures.show()
    assert figures.burst_rate >= 8 * rate  # this process kept up its side
    assert figures.peak_rss_growth <= RSS_BOUND_MB
    burst_mb = (sent - warm) * len(lines(0, 1)) / 2**20
    assert burst_mb > RSS_BOUND_MB  # holding the burst would take more than the bound
    # The backlog showed while it lasted: most of the burst waited in the file, the queue
    # was full, and its oldest event waited.
    assert shown["tocsin_file_backlog_bytes"] > burst_mb / 2 * 2**20
    assert shown["tocsin_queue_depth"] >= QUEUE_EVENTS / 2  # sampled between engine turns
    assert sampler.most("tocsin_queue_source_depth", 'source="log"') >= QUEUE_EVENTS / 2
    assert shown["tocsin_queue_oldest_event_age_seconds"] >= 0.1
    after = metrics_of(daemon.metrics())
    assert metric_sum(after, "tocsin_file_backlog_bytes") == 0
    assert metric_sum(after, "tocsin_queue_depth") == 0
    assert metric_sum(after, "tocsin_queue_oldest_event_age_seconds") == 0
    assert metric_sum(after, "tocsin_file_lines_read_total") == sent
    assert daemon.stop() == 0
