"""Overload and shutdown tests: a rule slow enough that one test process outruns the daemon ten
to one, a paced sender, and a sampler of the daemon's RSS and backlog metrics during a burst."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from daemon import Daemon, wait_until

# The counting rule sums range(burn) per event: CPU the engine spends, the same on every
# source, so that the sustainable rate is low enough for this process to send ten times it.
SLOW_RULES = """
rules:
  - id: load
    match: {{source: {source}}}
    when: "(range({burn}) | sum) > 0"
    key: "{key}"
    actions:
      - incident: {{title: "load from {{{{ event.source }}}}", impact: low, urgency: low}}
"""
QUEUE_EVENTS = 2048  # pipeline.queue_events of these daemons: 8 batches of 256
BURST_SECONDS = 2.0


def slow_daemon(
    root: Path, *, source: str, burn: int, key: str = "{{ event.source }}", **options: object
) -> Daemon:
    """A daemon whose only rule counts `source` events slowly (one incident per `key`),
    with a 2048-event queue."""
    rules = SLOW_RULES.format(source=source, burn=burn, key=key)
    daemon = Daemon(root, rules=rules, **options)  # type: ignore[arg-type]
    config = daemon.root / "tocsin.yaml"
    text = config.read_text()
    assert "pipeline: {batch_lines: 256}\n" in text
    config.write_text(
        text.replace(
            "pipeline: {batch_lines: 256}\n",
            f"pipeline: {{batch_lines: 256, queue_events: {QUEUE_EVENTS}}}\n",
        )
    )
    return daemon


def processed(daemon: Daemon, key: str | None = None) -> int:
    """Events the counting rule committed (with one key, or all), from the API."""
    return sum(
        incident["count"]
        for incident in daemon.incidents()
        if incident["rule"] == "load" and key in (None, incident["key"])
    )


def measure_rate(daemon: Daemon, count: int, send: Callable[[int, int], None]) -> float:
    """Send `count` events at once and return how many a second the daemon committed."""
    before = processed(daemon)
    started = time.monotonic()
    send(0, count)
    wait_until(lambda: processed(daemon) == before + count, timeout=30, what="the first events")
    return count / (time.monotonic() - started)


def paced(rate: float, seconds: float, first: int, send: Callable[[int, int], None]) -> int:
    """Call send(first, count) every 10 ms so that `rate` events a second go out for
    `seconds`; return how many were sent."""
    started = time.monotonic()
    sent = 0
    while True:
        elapsed = min(time.monotonic() - started, seconds)
        due = int(rate * elapsed) - sent
        if due > 0:
            send(first + sent, due)
            sent += due
        if elapsed >= seconds:
            return sent
        time.sleep(0.01)


def metrics_of(text: str) -> dict[str, float]:
    """Parse the exposition format into {'name{labels}': value} (comments left out)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def metric_sum(values: dict[str, float], name: str, labels: str = "") -> float:
    """Sum the samples of one metric whose labels contain `labels` (0 when absent)."""
    pattern = re.compile(rf"^{re.escape(name)}(\{{.*\}})?$")
    return sum(
        value
        for key, value in values.items()
        if pattern.match(key) and (not labels or labels in key)
    )


def rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    """A figure of /proc/PID/status in MB: VmRSS now, or VmHWM, the highest it has been."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"{field_name} not in /proc/{pid}/status")


@dataclass
class Sampler:
    """Scrapes the daemon's metrics every 250 ms, in a thread."""

    daemon: Daemon
    scrapes: list[dict[str, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="overload-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):  # a scrape timed out: the daemon was busiest
                self.scrapes.append(metrics_of(self.daemon.metrics()))
            self._stop.wait(0.25)

    def most(self, name: str, labels: str = "") -> float:
        """The largest value a metric showed during the sampling."""
        return max((metric_sum(s, name, labels) for s in self.scrapes), default=0.0)


@dataclass
class Figures:
    """What one burst measured, printed for the record (pytest -s shows it)."""

    source: str
    sustainable: float
    burst_rate: float
    sent: int
    peak_rss_growth: float  # VmHWM after the burst less VmRSS before it
    base_rss: float
    catch_up: float
    backlog: dict[str, float] = field(default_factory=dict)  # the most each metric showed

    def show(self) -> None:
        print(
            f"\n[{self.source}] sustainable {self.sustainable:,.0f}/s, burst "
            f"{self.burst_rate:,.0f}/s ({self.burst_rate / self.sustainable:.1f}x) "
            f"for {BURST_SECONDS:g} s, {self.sent:,} events, RSS {self.base_rss:.1f} MB "
            f"+ at most {self.peak_rss_growth:.1f} MB, caught up {self.catch_up:.1f} s "
            f"after the burst; most shown: {self.backlog}"
        )
