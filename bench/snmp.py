"""SNMP trap benchmark: tocsin and net-snmp snmptrapd take the same blasts of v2c and v3 traps."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Protocol

import daemon
import run
import yaml

TRAP_OID = "1.3.6.1.6.3.1.1.5.3"  # IF-MIB::linkDown
VARBINDS = (  # ifIndex.3 = 3, ifDescr.3 = eth3, ifAdminStatus.3 = up, ifOperStatus.3 = down
    "1.3.6.1.2.1.2.2.1.1.3", "i", "3", "1.3.6.1.2.1.2.2.1.2.3", "s", "eth3",
    "1.3.6.1.2.1.2.2.1.7.3", "i", "1", "1.3.6.1.2.1.2.2.1.8.3", "i", "2",
)  # fmt: skip
SENDER_ENGINE = "0x8000000001020304"  # the trap sender's engine ID, as configured for alice
OUR_ENGINE = "0x80000000050a0b0c0d0e0f"
ALICE = ("alice", "SHA-256", "alicepass1", "AES", "aliceprivk")
SENDER_ARGS = {
    "v2c": ["-v", "2c", "-c", "public"],
    "v3": [
        "-v", "3", "-e", SENDER_ENGINE, "-u", ALICE[0], "-l", "authPriv",
        "-a", ALICE[1], "-A", ALICE[2], "-x", ALICE[3], "-X", ALICE[4],
    ],
}  # fmt: skip
V2C_RATES = (5_000, 10_000, 12_500, 15_000, 17_500, 20_000, 25_000, 30_000, 40_000, 0)  # 0: max
V3_RATES = (200, 300, 400, 500, 750, 1_000, 2_000, 4_000, 8_000, 16_000, 0)
USM_WINDOW = 150.0  # RFC 3414 3.2.7: an older engine time than this is out of the time window
RECEIVE_BUFFER = 8 << 20  # asked by both receivers; the kernel caps it at net.core.rmem_max
POLL = 0.05  # seconds between reads of the receiver's count
SETTLE = 2.0  # the count has stopped growing when it stayed the same this long
KEEP_PACE = 0.95  # processed/s at least this share of sent/s: the receiver kept up
BUFFER_FULL = "receive buffer full"  # tocsin's drop reason for kernel drops
TRAPD_MARK = b"TRAP "  # every snmptrapd log line of a trap starts with it
MATCHED = 'tocsin_rule_matches_total{rule="snmp-link-down"}'  # every trap of the blast
CATCH_ALL = """\
rules:
  - id: snmp-every-trap
    description: Match every trap (--catch-all); the bundled rules see it too
    match: {source: snmp}
    continue: true
    actions:
      - log: {message: "trap", level: debug}
"""

Metrics = daemon.Metrics


# --- packets and the blaster ---------------------------------------------------------------


def capture(kind: str) -> bytes:
    """Return the bytes of one linkDown trap that net-snmp's snmptrap sends."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5.0)
        port = sock.getsockname()[1]
        command = ["snmptrap", "-M", "/nonexistent", "-m", "", *SENDER_ARGS[kind]]
        command += [f"udp:127.0.0.1:{port}", "", TRAP_OID, *VARBINDS]
        subprocess.run(command, check=True, capture_output=True, timeout=10)
        data: bytes = sock.recv(65535)
        return data


def blast(packet: bytes, port: int, count: int, rate: int, conn: Connection) -> None:
    """Send `packet` `count` times at `rate`/s (0: no pacing); report (start, end, sent)."""
    batch = max(1, rate // 1000) if rate else count  # about 1 ms of packets, then sleep
    sent = errors = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        send = sock.send
        start = time.monotonic()  # CLOCK_MONOTONIC: the parent reads the same clock
        while sent < count:
            n = min(batch, count - sent)
            for _ in range(n):
                try:
                    send(packet)
                except OSError:
                    errors += 1  # ECONNREFUSED: nothing listened (an earlier ICMP)
            sent += n
            if rate:
                delay = start + sent / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        end = time.monotonic()
    conn.send((start, end, sent - errors))
    conn.close()


def start_blast(packet: bytes, port: int, count: int, rate: int) -> Callable[[], Blast | None]:
    """Start the blaster process; return a poll that gives its report once it is done."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=blast, args=(packet, port, count, rate, child), daemon=True)
    process.start()
    child.close()

    def poll() -> Blast | None:
        if not parent.poll():
            if not process.is_alive() and not parent.poll():
                raise RuntimeError(f"the blaster died with exit code {process.exitcode}")
            return None
        start, end, sent = parent.recv()
        process.join()
        return Blast(start=start, end=end, sent=sent)

    return poll


@dataclass(frozen=True, slots=True)
class Blast:
    """What the blaster did: CLOCK_MONOTONIC of its first and last send, packets sent."""

    start: float
    end: float
    sent: int

    @property
    def rate(self) -> float:
        """Return the achieved send rate."""
        return self.sent / max(self.end - self.start, 1e-9)


# --- the two receivers ---------------------------------------------------------------------


def tail(path: Path, lines: int = 15) -> str:
    """Return the last lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return str(error)


def free_udp_port() -> int:
    """Return a UDP port on 127.0.0.1 that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def kernel_udp(port: int) -> tuple[int, int]:
    """Return (rx_queue bytes, drops) of the UDP socket bound to `port` (/proc/net/udp)."""
    wanted = f":{port:04X}"
    with open("/proc/net/udp", encoding="ascii") as rows:
        for row in rows:
            parts = row.split()
            if len(parts) > 12 and parts[1].endswith(wanted):
                return int(parts[4].split(":")[1], 16), int(parts[12])
    return 0, 0


def cpu_seconds(pid: int) -> float:
    """Return the user+system CPU seconds of a process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Receiver(Protocol):
    """A trap receiver under test, started fresh for each series of rates."""

    name: str
    port: int
    pid: int

    def start(self) -> None:
        """Start the process and wait until it receives."""

    def count(self) -> int:
        """Return how many traps it has fully handled so far."""

    def stop(self) -> None:
        """Stop the process."""


class Tocsin:
    """`tocsin run` with sources.snmp; a trap counts once the engine matched it."""

    name = "tocsin"

    def __init__(self, binary: str, tmp: Path, *, catch_all: bool = False) -> None:
        self.binary = binary
        self.tmp = tmp
        self.catch_all = catch_all
        self.port = free_udp_port()
        self.http = daemon.free_port()
        self.pid = 0
        self.child: subprocess.Popen[bytes] | None = None
        self.metrics: Metrics = {}
        self.log = tmp / "tocsin.log"  # the daemon's stdout and stderr

    def write_config(self) -> Path:
        """Write the config and rule folder: the bundled rules/snmp.yaml (+ the catch-all)."""
        rules = self.tmp / "rules"
        rules.mkdir(parents=True, exist_ok=True)
        if self.catch_all:
            (rules / "00-every-trap.yaml").write_text(CATCH_ALL)
        shutil.copy(run.REPO / "rules" / "snmp.yaml", rules / "10-snmp.yaml")
        user = dict(zip(("name", "auth", "auth_key", "priv", "priv_key"), ALICE, strict=True))
        config = {
            "state_dir": str(self.tmp / "state"),
            "rules": [str(rules)],
            "http": {"host": "127.0.0.1", "port": self.http},
            "logging": {"format": "json", "level": "warning"},
            "sources": {
                "snmp": {
                    "listen": [f"127.0.0.1:{self.port}"],
                    "receive_buffer": f"{RECEIVE_BUFFER >> 20}MiB",
                    "engine_id": OUR_ENGINE,
                    "communities": [{"community": "public"}],
                    "users": [{**user, "engine_id": SENDER_ENGINE}],
                }
            },
        }
        path = self.tmp / "tocsin.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def start(self) -> None:
        """Start the daemon and wait for /healthz."""
        config = self.write_config()
        with self.log.open("wb") as log:
            self.child = subprocess.Popen(
                [self.binary, "run", "--config", str(config)], stdout=log, stderr=log
            )
        self.pid = self.child.pid
        deadline = time.monotonic() + 60
        while daemon.http_get(f"http://127.0.0.1:{self.http}/healthz")[0] != 200:
            if self.child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tocsin did not start:\n{tail(self.log)}")
            time.sleep(0.05)

    def scrape(self) -> Metrics:
        """Read /metrics (the previous figures if it does not answer)."""
        status, body = daemon.http_get(f"http://127.0.0.1:{self.http}/metrics")
        if status == 200:
            self.metrics = daemon.parse_metrics(body)
        return self.metrics

    def count(self) -> int:
        """Return the traps the engine matched with the bundled snmp-link-down rule."""
        return int(self.scrape().get(MATCHED, 0))

    def stop(self) -> None:
        """Send SIGTERM and wait for the exit."""
        if self.child is None:
            return
        self.child.send_signal(signal.SIGTERM)
        try:
            self.child.wait(30)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()
        self.child = None


class Trapd:
    """net-snmp snmptrapd logging one line per trap to a file; a trap counts once logged."""

    name = "snmptrapd"

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_udp_port()
        self.pid = 0
        self.child: subprocess.Popen[bytes] | None = None
        self.log = tmp / "traps.log"
        self._read = 0  # bytes of the log counted
        self._rest = b""
        self._count = 0

    def start(self) -> None:
        """Start snmptrapd in the foreground and wait until its socket is bound."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        conf = self.tmp / "snmptrapd.conf"
        conf.write_text(
            "authCommunity log public\n"
            f"createUser -e {SENDER_ENGINE} {' '.join(ALICE)}\n"
            f"authUser log {ALICE[0]} priv\n"
            f"format2 {TRAPD_MARK.decode()}%b %u %#v\\n\n"
            f"[snmp] serverRecvBuf {RECEIVE_BUFFER}\n"
        )
        self.log.unlink(missing_ok=True)
        self._read, self._rest, self._count = 0, b"", 0
        command = [
            "snmptrapd", "-f", "-n", "-Lf", str(self.log), "-C", "-c", str(conf),
            "-p", str(self.tmp / "snmptrapd.pid"), f"--persistentDir={self.tmp / 'persist'}",
            "-M", "/nonexistent", "-m", "", f"udp:127.0.0.1:{self.port}",
        ]  # fmt: skip
        with (self.tmp / "snmptrapd.out").open("wb") as out:
            self.child = subprocess.Popen(command, stdout=out, stderr=out)
        self.pid = self.child.pid
        deadline = time.monotonic() + 30
        while not self._bound():
            if self.child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"snmptrapd did not start:\n{tail(self.tmp / 'snmptrapd.out')}")
            time.sleep(0.05)

    def _bound(self) -> bool:
        with open("/proc/net/udp", encoding="ascii") as rows:
            return any(f":{self.port:04X} " in row for row in rows)

    def count(self) -> int:
        """Return the trap lines in the log so far (read incrementally)."""
        try:
            with self.log.open("rb") as log:
                log.seek(self._read)
                chunk = log.read()
        except FileNotFoundError:
            return 0
        self._read += len(chunk)
        lines = (self._rest + chunk).split(b"\n")
        self._rest = lines.pop()
        self._count += sum(line.startswith(TRAPD_MARK) for line in lines)
        return self._count

    def stop(self) -> None:
        """Send SIGTERM and wait for the exit."""
        if self.child is None:
            return
        self.child.send_signal(signal.SIGTERM)
        try:
            self.child.wait(10)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()
        self.child = None


# --- one run: a blast at one rate ----------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """One blast at one rate into one receiver."""

    receiver: str
    kind: str
    rate: int  # asked; 0: no pacing
    count: int
    sent: int = 0
    send_rate: float = 0.0
    received: int = 0
    kernel_drops: int = 0
    elapsed: float = 0.0  # first send to the last trap counted
    cpu: float = 0.0  # receiver CPU seconds during the run
    failure: str = ""

    @property
    def lost(self) -> int:
        """Return the packets sent but never counted."""
        return self.sent - self.received

    @property
    def processed_rate(self) -> float:
        """Return traps counted per second, first send to last counted."""
        return self.received / self.elapsed if self.elapsed else 0.0

    @property
    def cpu_per_trap(self) -> float:
        """Return the receiver's CPU microseconds per trap counted."""
        return self.cpu / self.received * 1e6 if self.received else 0.0

    @property
    def kept_pace(self) -> bool:
        """Return whether it handled the traps about as fast as they came, with 0 loss."""
        return self.lost == 0 and self.processed_rate >= KEEP_PACE * self.send_rate


def wait_count(receiver: Receiver, target: int, since: float, timeout: float) -> tuple[int, float]:
    """Poll until the count reaches `target` or stops growing; return it and when it got there."""
    last = receiver.count()
    changed = time.monotonic()
    deadline = since + timeout
    while last < target and time.monotonic() - changed < SETTLE and time.monotonic() < deadline:
        time.sleep(POLL)
        now = receiver.count()
        if now != last:
            last, changed = now, time.monotonic()
    return last, changed


def measure(receiver: Receiver, kind: str, packet: bytes, rate: int, count: int) -> Outcome:
    """Blast `count` packets at `rate` and wait until the receiver's count stops growing."""
    outcome = Outcome(receiver.name, kind, rate, count)
    before = receiver.count()
    drops_before = kernel_udp(receiver.port)[1]
    cpu_before = cpu_seconds(receiver.pid)
    expected_seconds = count / rate if rate else count / 50_000
    poll = start_blast(packet, receiver.port, count, rate)
    done: Blast | None = None
    last, changed = before, time.monotonic()
    deadline = time.monotonic() + expected_seconds + 120
    while done is None:  # count while sending, so the last change time is right
        time.sleep(POLL)
        done = poll()
        now = receiver.count()
        if now != last:
            last, changed = now, time.monotonic()
        if time.monotonic() > deadline:
            outcome.failure = "the blaster did not finish"
            return outcome
    target = before + done.sent
    if last < target:
        now, at = wait_count(receiver, target, done.end, expected_seconds + 120)
        if now != last:
            last, changed = now, at
    outcome.sent = done.sent
    outcome.send_rate = done.rate
    outcome.received = last - before
    outcome.elapsed = max(changed - done.start, done.end - done.start)
    outcome.kernel_drops = kernel_udp(receiver.port)[1] - drops_before
    outcome.cpu = cpu_seconds(receiver.pid) - cpu_before
    return outcome


def send_and_count(receiver: Receiver, packet: bytes, n: int) -> int:
    """Send `packet` `n` times, slowly; return how many the receiver counted."""
    before = receiver.count()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(n):
            sock.sendto(packet, ("127.0.0.1", receiver.port))
            time.sleep(0.01)
    return wait_count(receiver, before + n, time.monotonic(), 10)[0] - before


def precheck(receiver: Receiver, packet: bytes, kind: str) -> str:
    """Send the same packet 3 times; return "" when all 3 are counted, else what went wrong."""
    got = send_and_count(receiver, packet, 3)
    return "" if got == 3 else f"{receiver.name} counted {got} of 3 identical {kind} traps"


def tocsin_checks(tocsin: Tocsin, kind: str, total: int, kernel_drops: int) -> list[str]:
    """Check the metrics and the incident after a series; return the problems found."""
    problems = []
    dropped = "tocsin_snmp_packets_dropped_total"
    full_key = f'{dropped}{{reason="{BUFFER_FULL}"}}'
    full = tocsin.scrape().get(full_key, 0)
    if full != kernel_drops:  # tocsin reads the kernel's counter when a later batch comes
        time.sleep(1.1)
        total += send_and_count(tocsin, capture(kind), 1)
        later = tocsin.scrape().get(full_key, 0)
        problems.append(
            f"{full_key} was {full:,.0f} after the blasts and {later:,.0f} once one more trap "
            f"came 1 s later; the kernel dropped {kernel_drops:,}"
        )
    metrics = tocsin.scrape()
    version = "2c" if kind == "v2c" else "3"
    figures = {
        "accepted": metrics.get(f'tocsin_snmp_packets_accepted_total{{version="{version}"}}', 0),
        "events": metrics.get('tocsin_events_received_total{source="snmp"}', 0),
        "snmp-link-down matches": metrics.get(MATCHED, 0),
    }
    if tocsin.catch_all:
        every = metrics.get('tocsin_rule_matches_total{rule="snmp-every-trap"}', 0)
        figures["snmp-every-trap matches"] = every
    odd = ", ".join(f"{k} {v:,.0f}" for k, v in figures.items() if v != total)
    if odd:
        problems.append(f"expected {total:,} each: {odd}")
    refused = ", ".join(
        f"{k} = {v:,.0f}"
        for k, v in metrics.items()
        if k.startswith(dropped) and BUFFER_FULL not in k and v
    )
    if refused:
        problems.append(f"packets refused: {refused}")
    db = tocsin.tmp / "state" / "tocsin.db"
    occurrences = -1
    deadline = time.monotonic() + 15  # the store commits after the engine
    while time.monotonic() < deadline:
        occurrences = daemon.incident_work(db).get("snmp-link-down", 0) if db.exists() else -1
        if occurrences == total:
            break
        time.sleep(0.2)
    if occurrences != total:
        problems.append(f"linkDown incident counts {occurrences:,} occurrences, not {total:,}")
    return problems


# --- series, repeats and the report --------------------------------------------------------


@dataclass(slots=True)
class Series:
    """One receiver started fresh, then every rate of one packet kind."""

    receiver: str
    kind: str
    outcomes: list[Outcome] = field(default_factory=list)
    peak_rss_kib: int = 0
    problems: list[str] = field(default_factory=list)


def run_series(
    receiver: Receiver, kind: str, rates: Sequence[int], count: int | None, seconds: float
) -> Series:
    """Start the receiver, check it, blast every rate at it, stop it."""
    series = Series(receiver.name, kind)
    receiver.start()
    try:
        problem = precheck(receiver, capture(kind), kind)
        if problem:
            series.problems.append(problem)
            return series
        total = 3
        for rate in rates:
            n = count or int((rate or max(rates) or 40_000) * seconds)  # max: as the top rate
            packet = capture(kind)  # fresh: a replayed v3 packet ages out of the USM window
            outcome = measure(receiver, kind, packet, rate, n)
            series.outcomes.append(outcome)
            total += outcome.received
            print(line(outcome), flush=True)
            if outcome.failure:
                series.problems.append(outcome.failure)
                break
        series.peak_rss_kib = daemon.status_kib(receiver.pid, "VmHWM")
        if isinstance(receiver, Tocsin):
            drops = sum(o.kernel_drops for o in series.outcomes)
            series.problems += tocsin_checks(receiver, kind, total, drops)
    finally:
        receiver.stop()
    return series


def rate_label(rate: int) -> str:
    """Return '20,000/s' or 'max'."""
    return f"{rate:,}/s" if rate else "max"


def line(o: Outcome) -> str:
    """Return one run as a line of the live log."""
    text = (
        f"  {o.receiver:<9} {o.kind:<3} {rate_label(o.rate):>9}: sent {o.sent:>7,} at "
        f"{o.send_rate:>8,.0f}/s, counted {o.received:>7,}, lost {o.lost:>7,} (kernel drops "
        f"{o.kernel_drops:>7,}), {o.elapsed:6.2f} s, {o.processed_rate:>7,.0f}/s, "
        f"CPU {o.cpu_per_trap:5.0f} us/trap"
    )
    if o.failure:
        text += f"  [{o.failure}]"
    return text


def span(values: Sequence[float], fmt: str = "{:,.0f}") -> str:
    """Return 'a' or 'a to b'."""
    if not values:
        return "-"
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return low if low == high else f"{low} to {high}"


def best(series: Series, *, pace: bool) -> str:
    """Return the highest rate with 0 loss (max: its achieved rate); with `pace`, also kept up.

    Lower rates that failed are named after it: a busy neighbour can cost a run some traps.
    """
    good = [o.lost == 0 and (o.kept_pace or not pace) for o in series.outcomes]
    passed = [o.rate or o.send_rate for o, ok in zip(series.outcomes, good, strict=True) if ok]
    if not passed:
        return "none"
    top = max(passed)
    below = [
        o.rate for o, ok in zip(series.outcomes, good, strict=True) if not ok and 0 < o.rate < top
    ]
    return f"{top:,.0f}" + (f" (not {', '.join(f'{r:,}' for r in below)})" if below else "")


def report(all_series: list[Series], kinds: Sequence[str], rates: dict[str, Sequence[int]]) -> None:
    """Print the side-by-side tables over all repeats."""
    names = tuple(dict.fromkeys(s.receiver for s in all_series))
    for kind in kinds:
        print(
            f"\n{kind}: sent/s, traps counted/s (first send to last counted), lost, receiver "
            "CPU us per trap; range over repeats"
        )
        columns = ("sent/s", "counted/s", "lost", "CPU us/trap")
        print(f"| rate | {' | '.join(f'{n} {c}' for n in names for c in columns)} |")
        print("| ---: " * (1 + len(columns) * len(names)) + "|")
        for rate in rates[kind]:
            cells = []
            for name in names:
                runs = [
                    o
                    for s in all_series
                    if s.receiver == name and s.kind == kind
                    for o in s.outcomes
                    if o.rate == rate
                ]
                cells += [
                    span([o.send_rate for o in runs]),
                    span([o.processed_rate for o in runs]),
                    span([o.lost for o in runs]),
                    span([o.cpu_per_trap for o in runs]),
                ]
            print(f"| {rate_label(rate)} | {' | '.join(cells)} |")
    print(
        "\nhighest rate with 0 loss (max: its achieved send rate), one figure per repeat; kept "
        f"pace: counted/s >= {KEEP_PACE:.0%} of sent/s, so not just buffered"
    )
    print("| receiver | kind | 0 loss | 0 loss and kept pace | peak RSS MB |")
    print("| --- | --- | ---: | ---: | ---: |")
    for kind in kinds:
        for name in names:
            mine = [s for s in all_series if s.receiver == name and s.kind == kind]
            zero = "; ".join(best(s, pace=False) for s in mine)
            pace = "; ".join(best(s, pace=True) for s in mine)
            rss = span([s.peak_rss_kib / 1024 for s in mine], "{:.1f}")
            print(f"| {name} | {kind} | {zero} | {pace} | {rss} |")
    problems = [f"{s.receiver} {s.kind}: {p}" for s in all_series for p in s.problems]
    print("\nchecks: " + ("; ".join(problems) if problems else "all ok"))


def window_check(binary: str, tmp: Path) -> None:
    """Replay one v3 packet to both receivers now and after the USM window; print what counted."""
    tocsin, trapd = Tocsin(binary, tmp / "tocsin-w"), Trapd(tmp / "trapd-w")
    receivers: list[Receiver] = [tocsin, trapd]
    packet = capture("v3")
    for receiver in receivers:
        receiver.start()
    try:
        wait = USM_WINDOW + 10
        for when in ("at once", f"{wait:.0f} s later"):
            counted = [f"{r.name} {send_and_count(r, packet, 3)} of 3" for r in receivers]
            print(f"the same v3 authPriv packet sent 3 times {when}: {', '.join(counted)}")
            if when == "at once":
                time.sleep(wait)
        figures = {
            k: v
            for k, v in tocsin.scrape().items()
            if k.startswith("tocsin_snmp_packets_") and "_created" not in k
        }
        print(f"tocsin: {figures}")
    finally:
        for receiver in receivers:
            receiver.stop()


def rate_list(text: str) -> list[int]:
    """Parse "5000,10000,0" (0: no pacing)."""
    return [int(item) for item in text.split(",")]


def sysctl(name: str) -> str:
    """Return a sysctl's value as /proc/sys shows it."""
    return Path("/proc/sys", *name.split(".")).read_text().strip()


def main() -> int:
    """Run every receiver, kind and rate, the whole ladder `--repeats` times; print the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, help="traps per blast (default: rate x --seconds)")
    parser.add_argument("--seconds", type=float, default=5.0, help="blast length (5 s)")
    parser.add_argument("--rates", type=rate_list, help="v2c rates per second, 0 = max")
    parser.add_argument("--v3-rates", type=rate_list, help="v3 authPriv rates")
    parser.add_argument("--kinds", default="v2c,v3", help="v2c,v3")
    parser.add_argument("--receivers", default="tocsin,snmptrapd", help="tocsin,snmptrapd")
    parser.add_argument("--repeats", type=int, default=3, help="whole ladders (3)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    parser.add_argument(
        "--catch-all", action="store_true", help="add a rule matching every trap with a log action"
    )
    parser.add_argument(
        "--window", action="store_true", help=f"only: do v3 replays count after {USM_WINDOW:.0f} s?"
    )
    args = parser.parse_args()

    binary = run._tocsin_bin()
    if binary is None or shutil.which("snmptrapd") is None or shutil.which("snmptrap") is None:
        print("needs tocsin in this venv and net-snmp's snmptrap and snmptrapd", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="tocsin-snmp-bench-"))
    try:
        if args.window:
            window_check(binary, tmp)
            return 0
        kinds = args.kinds.split(",")
        rates = {"v2c": args.rates or V2C_RATES, "v3": args.v3_rates or V3_RATES}
        rmem = [sysctl(f"net.core.{name}") for name in ("rmem_default", "rmem_max")]
        per_blast = f"{args.count:,} traps" if args.count else f"rate x {args.seconds:g} s"
        print(
            f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; net.core.rmem_default "
            f"{rmem[0]}, rmem_max {rmem[1]} (not changed): both receivers ask "
            f"{RECEIVE_BUFFER >> 20} MiB and get min(asked, rmem_max) x 2\n"
            f"packets: v2c {len(capture('v2c'))} bytes, v3 authPriv {len(capture('v3'))} bytes; "
            f"per blast {per_blast}; configs and logs in {tmp}{'' if args.keep else ' (removed)'}",
            flush=True,
        )
        all_series: list[Series] = []
        for repeat in range(args.repeats):
            print(f"\nrepeat {repeat + 1} of {args.repeats}", flush=True)
            for kind in kinds:
                for name in args.receivers.split(","):
                    receiver: Receiver = (
                        Tocsin(binary, tmp / f"tocsin-{repeat}-{kind}", catch_all=args.catch_all)
                        if name == "tocsin"
                        else Trapd(tmp / f"trapd-{repeat}-{kind}")
                    )
                    series = run_series(receiver, kind, rates[kind], args.count, args.seconds)
                    all_series.append(series)
                    print(f"  {name} {kind}: peak RSS {series.peak_rss_kib / 1024:.1f} MB")
                    for problem in series.problems:
                        print(f"  {name} {kind}: {problem}", flush=True)
        report(all_series, kinds, rates)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
