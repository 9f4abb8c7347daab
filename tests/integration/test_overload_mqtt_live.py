"""Ten times the sustainable rate through a real mosquitto: unacknowledged QoS 1 messages wait
at the broker (every one is processed), QoS 0 ones beyond the buffer are dropped and counted,
memory stays bounded, and the daemon catches up."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from daemon import wait_until
from overloadkit import (
    BURST_SECONDS,
    QUEUE_EVENTS,
    Figures,
    Sampler,
    metric_sum,
    metrics_of,
    paced,
    processed,
    rss_mb,
    slow_daemon,
)

from mqttkit import Broker, needs_mosquitto

pytestmark = [pytest.mark.integration, needs_mosquitto]

RSS_BOUND_MB = 32.0  # what the burst may add to the daemon's RSS (VmRSS) from before it
RECEIVE_MAXIMUM = 1000  # the default
HIGH_WATER = 1024  # the link's: max(4 * batch_lines, 1024)
# The most tocsin holds unacknowledged: the QoS 1 messages waiting to be taken (reading stops at
# HIGH_WATER + RECEIVE_MAXIMUM: mosquitto 2.0 sends more than receive_maximum while messages
# keep arriving), the queue, the batch in hand and 16 batches at the store.
UNACKED_BOUND = HIGH_WATER + RECEIVE_MAXIMUM + QUEUE_EVENTS + 17 * 256
SUBSCRIPTIONS = """  mqtt:
    - {topic: load/#, decoder: text}
    - {topic: fast/#, decoder: text, qos: 0}
"""
PAYLOAD = b"x" * 200
MOSQUITTO_PUB = shutil.which("mosquitto_pub")


class Sender:
    """Two mosquitto_pub processes fed line by line: every tenth message at QoS 0 on
    fast/burst (unless `mixed` is off), the rest at QoS 1 on load/burst (C publishers: this
    process only paces)."""

    def __init__(self, port: int, *, mixed: bool = True) -> None:
        if MOSQUITTO_PUB is None:
            pytest.skip("mosquitto_pub is not installed (Debian package mosquitto-clients)")
        self.procs = {
            qos: subprocess.Popen(
                [MOSQUITTO_PUB, "-p", str(port), "-q", str(qos), "-M", "1000", "-l", "-t", topic],
                stdin=subprocess.PIPE,
            )
            for qos, topic in ((0, "fast/burst"), (1, "load/burst"))
        }
        self.every = 10 if mixed else 0
        self.qos0 = 0
        self.qos1 = 0

    def __call__(self, first: int, count: int) -> None:
        numbers = range(first, first + count)
        fast = [n for n in numbers if self.every and n % self.every == 0]
        self._write(0, fast)
        self._write(1, [n for n in numbers if not self.every or n % self.every])
        self.qos0 += len(fast)
        self.qos1 += count - len(fast)

    def _write(self, qos: int, numbers: list[int]) -> None:
        stdin = self.procs[qos].stdin
        assert stdin is not None
        stdin.write(b"".join(b"%d %s\n" % (n, PAYLOAD) for n in numbers))
        stdin.flush()

    def close(self) -> None:
        """End the input; return once both have sent everything (the broker has it all)."""
        for proc in self.procs.values():
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self.procs.values():
            assert proc.wait(timeout=60) == 0


def test_a_10x_burst_waits_at_the_broker_and_qos0_overflow_is_counted(tmp_path: Path) -> None:
    """Test the MQTT policy under a 10x burst: the broker holds what is not acknowledged,
    bounded RSS, every QoS 1 message processed once, every QoS 0 message processed or counted
    as dropped, all caught up after."""
    broker = Broker(tmp_path / "broker")
    broker.start()
    daemon = slow_daemon(
        tmp_path / "d",
        source="mqtt",
        burn=45000,
        key="qos{{ fields.qos }}",
        entries=[],
        sources=SUBSCRIPTIONS,
        extra=(
            "mqtt:\n  brokers:\n"
            f"    local: {{host: 127.0.0.1, port: {broker.port}, client_id: tocsin-overload, "
            "reconnect_min: 50ms, reconnect_max: 500ms}\n"
        ),
    )
    try:
        daemon.start()
        assert daemon.proc is not None
        wait_until(
            lambda: metric_sum(metrics_of(daemon.metrics()), "tocsin_mqtt_connected") == 1,
            what="the broker connection",
        )
        warm = Sender(broker.port, mixed=False)
        started = time.monotonic()
        warm(1, 1500)
        warm.close()
        wait_until(lambda: processed(daemon) == 1500, timeout=30, what="the warm-up messages")
        rate = 1500 / (time.monotonic() - started)
        base = rss_mb(daemon.proc.pid)
        send = Sender(broker.port)
        with Sampler(daemon) as sampler:
            started = time.monotonic()
            burst = paced(10 * rate, BURST_SECONDS, 0, send)
            send.close()  # the broker has them all: the burst is over
            burst_end = time.monotonic()
            wait_until(
                lambda: processed(daemon, "qos1") == send.qos1 + warm.qos1,
                timeout=50,
                what="every QoS 1 message processed",
            )
            caught_up = time.monotonic() - burst_end
        after = metrics_of(daemon.metrics())
        shown = {
            name: sampler.most(name)
            for name in (
                "tocsin_mqtt_unacked_messages",
                "tocsin_queue_depth",
                "tocsin_queue_oldest_event_age_seconds",
            )
        }
        shown["qos0 dropped"] = metric_sum(
            after, "tocsin_mqtt_messages_dropped_total", "queue full"
        )
        figures = Figures(
            "mqtt", rate, burst / (burst_end - started), burst,
            rss_mb(daemon.proc.pid, "VmHWM") - base, base, caught_up, shown,
        )  # fmt: skip
        figures.show()
        assert figures.burst_rate >= 8 * rate
        assert figures.peak_rss_growth <= RSS_BOUND_MB
        # The broker held what tocsin did not acknowledge, not tocsin.
        assert RECEIVE_MAXIMUM * 0.9 <= shown["tocsin_mqtt_unacked_messages"] <= UNACKED_BOUND
        assert shown["tocsin_queue_oldest_event_age_seconds"] >= 0.1
        # Nothing lost silently: QoS 0 processed + dropped (counted) = sent.
        dropped = shown["qos0 dropped"]
        assert dropped > 0
        assert processed(daemon, "qos0") + dropped == send.qos0
        assert metric_sum(after, "tocsin_mqtt_messages_dropped_total") == dropped
        assert metric_sum(after, "tocsin_mqtt_unacked_messages") == 0
        assert metric_sum(after, "tocsin_queue_depth") == 0
        assert daemon.stop() == 0
    finally:
        broker.stop()
