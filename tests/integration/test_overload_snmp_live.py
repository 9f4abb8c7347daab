"""Ten times the sustainable rate of traps: the socket buffer fills, what does not fit is
dropped by the kernel and counted, memory stays bounded, and the daemon catches up."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from daemon import wait_until
from overloadkit import (
    BURST_SECONDS,
    Figures,
    Sampler,
    metric_sum,
    metrics_of,
    paced,
    processed,
    rss_mb,
    slow_daemon,
)

from snmpkit import link_trap, net_snmp

pytestmark = pytest.mark.integration

# What a burst may add to the daemon's RSS (VmRSS): at most the hand-over, 16384 traps read
# and as many more turned into events (traps wait in the kernel's buffer instead, mostly).
RSS_BOUND_MB = 64.0
PACKETS = [link_trap(b"public", index) for index in range(1, 9)]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_10x_trap_storm_is_dropped_by_the_kernel_counted_and_caught_up(
    tmp_path: Path,
) -> None:
    """Test the SNMP policy under a 10x burst: bounded RSS, a full socket buffer and drops in
    the metrics while it lasts, sent = accepted + counted drops, every accepted trap processed
    once, and real snmptrap traps processed after it."""
    port = free_udp_port()
    daemon = slow_daemon(
        tmp_path,
        source="snmp",
        burn=3000,
        entries=[],
        sources=f"""\
  snmp:
    listen: ["127.0.0.1:{port}"]
    communities: [{{community: public}}]
""",
    )
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def send(first: int, count: int) -> None:
        for n in range(first, first + count):
            sender.sendto(PACKETS[n % len(PACKETS)], ("127.0.0.1", port))

    try:
        daemon.start()
        assert daemon.proc is not None
        warm = 3000
        started = time.monotonic()
        send(0, warm)
        wait_until(lambda: processed(daemon) == warm, timeout=30, what="the first traps")
        rate = warm / (time.monotonic() - started)
        base = rss_mb(daemon.proc.pid)
        with Sampler(daemon) as sampler:
            started = time.monotonic()
            burst = paced(10 * rate, BURST_SECONDS, warm, send)
            burst_end = time.monotonic()

            def settled() -> bool:
                values = metrics_of(daemon.metrics())
                accepted = metric_sum(values, "tocsin_snmp_packets_accepted_total")
                dropped = metric_sum(values, "tocsin_snmp_packets_dropped_total")
                return accepted + dropped == warm + burst and processed(daemon) == accepted

            wait_until(settled, timeout=50, what="every trap processed or counted as dropped")
            caught_up = time.monotonic() - burst_end
        after = metrics_of(daemon.metrics())
        shown = {
            name: sampler.most(name)
            for name in (
                "tocsin_snmp_pending_traps",
                "tocsin_snmp_receive_queue_bytes",
                "tocsin_queue_depth",
                "tocsin_queue_oldest_event_age_seconds",
            )
        }
        dropped = metric_sum(after, "tocsin_snmp_packets_dropped_total")
        shown["dropped"] = dropped
        figures = Figures(
            "snmp", rate, burst / (burst_end - started), burst,
            rss_mb(daemon.proc.pid, "VmHWM") - base, base, caught_up, shown,
        )  # fmt: skip
        figures.show()
        assert figures.burst_rate >= 8 * rate
        assert figures.peak_rss_growth <= RSS_BOUND_MB
        # Losses happened, all of them counted as the receive buffer overflowing, and they
        # showed while the storm lasted, with the socket buffer full.
        assert dropped > 0
        assert metric_sum(after, "tocsin_snmp_packets_dropped_total", "receive buffer full") == (
            dropped
        )
        assert sampler.most("tocsin_snmp_packets_dropped_total") > 0
        granted = metric_sum(after, "tocsin_snmp_receive_buffer_bytes")
        assert shown["tocsin_snmp_receive_queue_bytes"] >= granted / 2
        assert metric_sum(after, "tocsin_snmp_pending_traps") == 0
        assert metric_sum(after, "tocsin_queue_depth") == 0
        # The receiver is still there for a real sender.
        for index in range(3):
            answer = net_snmp(
                "snmptrap", "-v", "2c", "-c", "public", f"127.0.0.1:{port}", "",
                "1.3.6.1.6.3.1.1.5.3", f"1.3.6.1.2.1.2.2.1.1.{index}", "i", str(index),
            )  # fmt: skip
            assert answer.returncode == 0, answer.stderr
        accepted = metric_sum(after, "tocsin_snmp_packets_accepted_total")
        wait_until(lambda: processed(daemon) == accepted + 3, what="the snmptrap traps")
        assert daemon.stop() == 0
    finally:
        sender.close()
