"""MQTT benchmark: a bare aiomqtt loop and `tocsin run` drain the same messages from mosquitto."""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import itertools
import json
import multiprocessing
import os
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import daemon
import run
import yaml

import snmp

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
FILTER = "sensors/+/+/temp"
SITES = 20
DEVICES = 25  # per site: 500 topics
HOT_EVERY = 50  # every 50th message (and the last) is over the threshold: 2 %
HOT_TEMP = 93.5
PAD = "x" * 110  # brings a payload to 197-200 bytes
POLL = 0.05  # seconds between /metrics scrapes of the daemon while it drains
QUIET = 10.0  # the daemon got nothing new for this long: done, short of the count
DEADLINE = 600.0  # seconds the bare receiver waits for all messages
KEEPALIVE = 300  # seconds; longer than a receiver stays stopped while its backlog is published
RULE = "sensor-overheat"
RECEIVED = 'tocsin_events_received_total{source="mqtt"}'
MATCHES = f'tocsin_rule_matches_total{{rule="{RULE}"}}'
RULES = f"""\
# The bench's rules: one incident rule on a threshold that 2 % of the messages cross, and four
# that every message is checked against and none matches.
rules:
  - id: {RULE}
    description: A sensor reads over 90 degrees
    match:
      source: mqtt
      fields.payload.temp: {{gt: 90}}
    key: "{{{{ fields.site }}}}/{{{{ fields.device }}}}"
    actions:
      - incident:
          title: "{{{{ fields.device }}}} at {{{{ fields.site }}}}: {{{{ fields.payload.temp }}}}"
          service: facilities
          impact: medium
          urgency: high

  - id: sensor-freezing
    description: A sensor reads below -20 degrees
    match:
      source: mqtt
      fields.payload.temp: {{lt: -20}}
    key: "{{{{ fields.site }}}}/{{{{ fields.device }}}}"
    actions:
      - incident: {{title: "{{{{ event.host }}}} is freezing", service: facilities}}

  - id: sensor-battery-low
    description: A sensor's battery is nearly empty
    match:
      source: mqtt
      fields.payload.battery: {{lt: 5}}
    key: "{{{{ event.host }}}}"
    actions:
      - incident: {{title: "Battery low on {{{{ event.host }}}}", service: facilities, impact: low}}

  - id: sensor-fault
    description: A sensor reports a fault
    match:
      source: mqtt
      message: {{contains: '"status":"fault"'}}
    key: "{{{{ event.host }}}}"
    actions:
      - incident: {{title: "{{{{ event.host }}}} reports a fault", service: facilities}}

  - id: sensor-old-firmware
    description: A sensor runs firmware with a known bug
    match:
      source: mqtt
      fields.site: {{startswith: site-}}
      fields.payload.fw: {{in: ["1.0.0", "1.1.0"]}}
    key: "{{{{ event.host }}}}"
    actions:
      - incident: {{title: "Old firmware on {{{{ event.host }}}}", service: facilities}}
"""


# --- the messages ---------------------------------------------------------------------------


def is_hot(seq: int, count: int) -> bool:
    """Whether message `seq` crosses the threshold; the last one does, so its match ends a run."""
    return seq % HOT_EVERY == HOT_EVERY - 1 or seq == count - 1


def message(seq: int, count: int) -> tuple[str, bytes]:
    """Return the topic and JSON payload of message `seq` (deterministic)."""
    site, device = seq % SITES, (seq // SITES) % DEVICES
    temp = HOT_TEMP if is_hot(seq, count) else 15 + (seq * 7919 % 6000) / 100
    payload = (
        f'{{"seq":{seq},"temp":{temp:.2f},"humidity":{30 + seq % 500 / 10:.1f},'
        f'"battery":{20 + seq % 80},"fw":"2.4.1","status":"ok","pad":"{PAD}"}}'
    )
    return f"sensors/site-{site:02d}/dev-{device:02d}/temp", payload.encode()


def hot_count(count: int) -> int:
    """Return how many of `count` messages cross the threshold."""
    return sum(1 for seq in range(count) if is_hot(seq, count))


# --- the broker -----------------------------------------------------------------------------


class Broker:
    """A private mosquitto on a free port, with the queue limits a benchmark needs lifted."""

    def __init__(self, root: Path, max_inflight: int = 0) -> None:
        self.root = root
        self.max_inflight = max_inflight
        self.port = daemon.free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Write the config, start mosquitto and wait until it accepts connections."""
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        lines = [
            "per_listener_settings false",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {data}/",
            f"max_inflight_messages {self.max_inflight}",  # defaults: 20 in flight and 1,000
            "max_queued_messages 0",  # queued per client; 0: no limit
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            f"listener {self.port} 127.0.0.1",
        ]
        if os.geteuid() == 0:
            lines.insert(0, "user root")  # else it drops to `mosquitto`, who cannot write data/
        config = self.root / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        with (self.root / "mosquitto.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(config)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + 10
        while not port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"mosquitto did not start:\n{snmp.tail(self.root / 'mosquitto.log')}"
                )
            time.sleep(0.02)

    @property
    def pid(self) -> int:
        """The broker's process id."""
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        """Kill it: nothing it holds is needed afterwards."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --- publishers (separate processes) ---------------------------------------------------------


def remaining(length: int) -> bytes:
    """Encode an MQTT remaining length (a variable-length integer)."""
    out = bytearray()
    while True:
        length, digit = length >> 7, length & 0x7F
        out.append(digit | (0x80 if length else 0))
        if not length:
            return bytes(out)


def packet(kind: int, body: bytes) -> bytes:
    """Return an MQTT packet: the fixed header byte, the remaining length, the body."""
    return bytes((kind,)) + remaining(len(body)) + body


def text(value: str) -> bytes:
    """Encode an MQTT UTF-8 string: a 2-byte length, then the bytes."""
    data = value.encode()
    return len(data).to_bytes(2, "big") + data


def publish_packet(seq: int, count: int, qos: int) -> bytes:
    """Return message `seq` as an MQTT 3.1.1 PUBLISH packet.

    QoS 1 packet ids repeat every 65,535 messages, which the broker allows: it acknowledges an
    incoming QoS 1 message at once and keeps nothing under its id.
    """
    topic, payload = message(seq, count)
    if not qos:
        return packet(0x30, text(topic) + payload)
    return packet(0x32, text(topic) + (seq % 65535 + 1).to_bytes(2, "big") + payload)


def publish(port: int, seqs: range, count: int, qos: int, conn: Connection) -> None:
    """Write messages `seqs` as fast as the broker reads them; report (start, end, sent).

    Pre-encoded packets written in large chunks: a client library's cost per message would
    make the publisher the bottleneck on 2 cores. QoS 1 ends when every PUBACK is in, QoS 0
    when the last byte is written.
    """
    connect = text("MQTT") + bytes((4, 0x02, 0, 0)) + text("")  # 3.1.1, clean, no keepalive
    packets = [publish_packet(seq, count, qos) for seq in seqs]  # made before the clock starts
    chunks = [b"".join(packets[i : i + 256]) for i in range(0, len(packets), 256)]
    acked = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(packet(0x10, connect))
        if sock.recv(4, socket.MSG_WAITALL) != b"\x20\x02\x00\x00":
            raise RuntimeError("the broker refused the publisher")

        def count_acks() -> None:
            nonlocal acked
            data = b""
            while acked < len(packets):
                chunk = sock.recv(1 << 16)
                if not chunk:
                    return
                data += chunk
                whole = len(data) // 4 * 4
                if data[:whole:4].strip(b"\x40"):
                    raise RuntimeError("a packet other than PUBACK came back")
                acked += whole // 4
                data = data[whole:]

        reader = threading.Thread(target=count_acks, daemon=True)
        if qos:
            reader.start()
        start = time.monotonic()
        for chunk in chunks:
            sock.sendall(chunk)
        if qos:
            reader.join(DEADLINE)
        end = time.monotonic()
        sock.sendall(packet(0xE0, b""))
    if qos and acked != len(packets):
        raise RuntimeError(f"{acked:,} of {len(packets):,} publishes acknowledged")
    conn.send((start, end, len(packets)))
    conn.close()


@dataclass(frozen=True, slots=True)
class Published:
    """What the publishers did together: first send, last acknowledgement, messages."""

    start: float
    end: float
    sent: int

    @property
    def rate(self) -> float:
        """Return messages per second over all publishers."""
        return self.sent / max(self.end - self.start, 1e-9)


def start_publishers(port: int, count: int, qos: int, n: int) -> Callable[[], Published]:
    """Start `n` publisher processes splitting `count` messages; return a wait for them."""
    context = multiprocessing.get_context("spawn")
    waits = []
    step = -(-count // n)
    for first in range(0, count, step):
        parent, child = context.Pipe(duplex=False)
        seqs = range(first, min(first + step, count))
        process = context.Process(target=publish, args=(port, seqs, count, qos, child), daemon=True)
        process.start()
        child.close()
        waits.append((process, parent))

    def wait() -> Published:
        reports = []
        for process, parent in waits:
            if not parent.poll(600):
                raise RuntimeError("a publisher did not finish within 600 s")
            reports.append(parent.recv())
            process.join()
        return Published(
            min(r[0] for r in reports), max(r[1] for r in reports), sum(r[2] for r in reports)
        )

    return wait


# --- the bare aiomqtt receiver (a separate process) ------------------------------------------


def bare(*, port: int, v5: bool, qos: int, count: int, conn: Connection) -> None:
    """Receive with a plain `async for message in client.messages` loop; report to `conn`.

    Connects, subscribes, says "ready" and counts until `count` (or `DEADLINE` passed);
    reports (monotonic time of the last message, messages) and waits for "bye".
    """
    asyncio.run(_bare(port=port, v5=v5, qos=qos, count=count, conn=conn))


async def _bare(*, port: int, v5: bool, qos: int, count: int, conn: Connection) -> None:
    import aiomqtt  # noqa: PLC0415 - the child imports only what it needs

    received = 0
    client = aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=f"bare-{qos}-{os.getpid()}",
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        keepalive=KEEPALIVE,
    )
    async with client:
        await client.subscribe(FILTER, qos)
        conn.send("ready")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DEADLINE):
                async for _message in client.messages:
                    received += 1
                    if received == count:
                        break
        last = time.monotonic()
    conn.send((last, received))
    conn.recv()  # "bye", once the parent has read this process's figures
    conn.close()


# --- one measurement ------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """One receiver draining one batch of messages at one QoS."""

    receiver: str
    version: str  # MQTT version
    method: str  # backlog or live
    qos: int
    count: int
    received: int = 0
    seconds: float = 0.0  # backlog: SIGCONT to the last message; live: first publish to it
    cpu: float = 0.0  # receiver CPU seconds over that span
    broker_cpu: float = 0.0
    peak_kib: int = 0
    publish_rate: float = 0.0  # live: the publishers' rate
    startup: float = 0.0  # tocsin: process start to connected
    checks: list[str] = field(default_factory=list)  # failures of the work check
    notes: list[str] = field(default_factory=list)

    @property
    def case(self) -> tuple[str, str, int]:
        """Return what was measured: MQTT version, method, QoS."""
        return self.version, self.method, self.qos

    @property
    def rate(self) -> float:
        """Return messages per second."""
        return self.received / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_message(self) -> float:
        """Return the receiver's CPU microseconds per message."""
        return self.cpu / self.received * 1e6 if self.received else 0.0


@dataclass(frozen=True, slots=True)
class Setup:
    """What every measurement of a run shares."""

    binary: str
    tmp: Path
    count: int
    mqtt_version: str
    publishers: int
    receive_maximum: int | None
    max_inflight: int
    profile: Path | None


@dataclass(slots=True)
class Feed:
    """Messages on their way to a receiver: when its clock started and the CPU figures then."""

    start: float  # backlog: SIGCONT; live: the first publish, known once `wait` returns
    cpu: tuple[float, float]  # receiver, broker
    wait: Callable[[], Published] | None = None  # live: the publishers


def feed(setup: Setup, broker: Broker, pid: int, qos: int, method: str) -> Feed:
    """Send the messages to a subscribed receiver: held back while it is stopped, or live."""
    if method == "live":
        cpu = snmp.cpu_seconds(pid), snmp.cpu_seconds(broker.pid)
        return Feed(0.0, cpu, start_publishers(broker.port, setup.count, qos, setup.publishers))
    os.kill(pid, signal.SIGSTOP)
    try:
        start_publishers(broker.port, setup.count, 1, 1)()  # QoS 1: all in the broker at the end
    finally:
        cpu = snmp.cpu_seconds(pid), snmp.cpu_seconds(broker.pid)
        start = time.monotonic()
        os.kill(pid, signal.SIGCONT)
    return Feed(start, cpu)


def finish(outcome: Outcome, fed: Feed, done: float, cpu: tuple[float, float]) -> None:
    """Fill in the timed span and the CPU used since the messages were fed."""
    outcome.seconds = done - fed.start
    if fed.wait is not None:
        published = fed.wait()
        outcome.publish_rate = published.rate
        outcome.seconds = done - published.start
    outcome.cpu, outcome.broker_cpu = cpu[0] - fed.cpu[0], cpu[1] - fed.cpu[1]


def measure_bare(setup: Setup, qos: int, method: str) -> Outcome:
    """Run the bare aiomqtt loop on a fresh broker."""
    outcome = Outcome(f"aiomqtt {version('aiomqtt')}", setup.mqtt_version, method, qos, setup.count)
    root = Path(tempfile.mkdtemp(prefix="broker-bare-", dir=setup.tmp))
    broker = Broker(root, setup.max_inflight)
    broker.start()
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    about: dict[str, Any] = {"port": broker.port, "v5": setup.mqtt_version == "5", "qos": qos}
    about |= {"count": setup.count, "conn": child}
    process = context.Process(target=bare, kwargs=about, daemon=True)
    try:
        process.start()
        child.close()
        pid = process.pid
        assert pid is not None
        if not parent.poll(30):
            raise RuntimeError("the aiomqtt receiver did not get ready")
        parent.recv()
        fed = feed(setup, broker, pid, qos, method)
        if not parent.poll(DEADLINE + 10):
            raise RuntimeError("the aiomqtt receiver did not finish")
        last, outcome.received = parent.recv()
        outcome.peak_kib = daemon.status_kib(pid, "VmHWM")  # it waits for "bye"
        finish(outcome, fed, last, (snmp.cpu_seconds(pid), snmp.cpu_seconds(broker.pid)))
        parent.send("bye")
        if outcome.received != setup.count:
            outcome.checks.append(f"received {outcome.received:,} of {setup.count:,}")
        process.join(10)
    finally:
        if process.is_alive():
            process.kill()
        broker.stop()
    return outcome


class Tocsin:
    """`tocsin run` with one broker, one subscription and the bench's rules."""

    def __init__(self, setup: Setup, qos: int, root: Path, broker_port: int) -> None:
        self.setup = setup
        self.qos = qos
        self.root = root
        self.http = daemon.free_port()
        self.child: subprocess.Popen[bytes] | None = None
        self.log = root / "tocsin.log"
        self.config = self._write_config(broker_port)

    def _write_config(self, broker_port: int) -> Path:
        rules = self.root / "rules"
        rules.mkdir(parents=True, exist_ok=True)
        (rules / "sensors.yaml").write_text(RULES)
        broker: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": broker_port,
            "version": self.setup.mqtt_version,
            "client_id": f"tocsin-bench-{self.qos}",
            "keepalive": KEEPALIVE,
        }
        if self.setup.mqtt_version == "5" and self.setup.receive_maximum is not None:
            broker["receive_maximum"] = self.setup.receive_maximum
        config = {
            "state_dir": str(self.root / "state"),
            "rules": [str(rules)],
            "http": {"host": "127.0.0.1", "port": self.http},
            "logging": {"format": "json", "level": "warning"},
            "mqtt": {"brokers": {"bench": broker}},
            "sources": {
                "mqtt": [
                    {
                        "topic": FILTER,
                        "topic_fields": "sensors/{site}/{device}/temp",
                        "qos": self.qos,
                        "decoder": "json",
                        "host": "{{ device }}.{{ site }}",
                    }
                ]
            },
        }
        path = self.root / "tocsin.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    @property
    def pid(self) -> int:
        """The daemon's process id."""
        assert self.child is not None
        return self.child.pid

    def start(self, name: str) -> float:
        """Start the daemon; return once it is subscribed (healthz "ok"), with the seconds taken."""
        command = [self.setup.binary, "run", "--config", str(self.config)]
        profile = self.setup.profile
        if profile is not None and shutil.which("py-spy") is None:
            out = profile / f"{name}.prof"
            command = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "tocsin"]
            command += ["run", "--config", str(self.config)]
        started = time.monotonic()
        with self.log.open("ab") as log:
            self.child = subprocess.Popen(command, stdout=log, stderr=log)
        deadline = started + 60
        while True:
            status, body = daemon.http_get(f"http://127.0.0.1:{self.http}/healthz")
            if status == 200 and json.loads(body).get("status") == "ok":
                return time.monotonic() - started
            if self.child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tocsin did not come up:\n{snmp.tail(self.log)}")
            time.sleep(0.005)

    def scrape(self) -> daemon.Metrics:
        """Read /metrics."""
        status, body = daemon.http_get(f"http://127.0.0.1:{self.http}/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}: {body}")
        return daemon.parse_metrics(body)

    def stop(self) -> int | None:
        """SIGTERM and wait; return the exit code (None: it had to be killed)."""
        if self.child is None:
            return None
        self.child.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.child.wait(30)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()
            code = None
        self.child = None
        return code


def profile_name(setup: Setup, method: str, qos: int) -> str:
    """Return the file name (without suffix) of one measurement's profile."""
    return f"tocsin-v{setup.mqtt_version}-{method}-qos{qos}"


def profiler(setup: Setup, pid: int, name: str) -> subprocess.Popen[bytes] | None:
    """Attach py-spy to the daemon while it drains, if asked and installed."""
    spy = shutil.which("py-spy")
    if setup.profile is None or spy is None:
        return None
    out = setup.profile / f"{name}.txt"
    command = [spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw"]
    command += ["--threads", "--nonblocking", "--output", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure_tocsin(setup: Setup, qos: int, method: str) -> Outcome:
    """Run the daemon on a fresh broker until every message is an event through the rules."""
    outcome = Outcome("tocsin run", setup.mqtt_version, method, qos, setup.count)
    root = Path(tempfile.mkdtemp(prefix="tocsin-", dir=setup.tmp))
    broker = Broker(root / "broker", setup.max_inflight)
    broker.start()
    tocsin = Tocsin(setup, qos, root, broker.port)
    hot = hot_count(setup.count)
    spy = None
    try:
        outcome.startup = tocsin.start(profile_name(setup, method, qos))
        fed = feed(setup, broker, tocsin.pid, qos, method)
        spy = profiler(setup, tocsin.pid, profile_name(setup, method, qos))
        metrics, done = _drain(tocsin, setup.count, hot)
        outcome.peak_kib = daemon.status_kib(tocsin.pid, "VmHWM")
        outcome.received = int(metrics.get(RECEIVED, 0.0))
        finish(outcome, fed, done, (snmp.cpu_seconds(tocsin.pid), snmp.cpu_seconds(broker.pid)))
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
            spy = None
        time.sleep(0.5)  # the last batch's commit, then its acknowledgements
        final = tocsin.scrape()
        code = tocsin.stop()
        outcome.checks += tocsin_checks(final, root, setup.count, hot, code)
        outcome.notes.append(f"{final.get('tocsin_store_commits_total', 0):,.0f} commits")
        redelivered = final.get(labelled("tocsin_mqtt_redelivered_total", broker="bench"), 0)
        if redelivered:
            outcome.notes.append(f"{redelivered:,.0f} redelivered")
    finally:
        if spy is not None:
            spy.kill()
        tocsin.stop()
        broker.stop()
    return outcome


def _drain(tocsin: Tocsin, count: int, hot: int) -> tuple[daemon.Metrics, float]:
    """Scrape until every message is an event and the last one matched; return when it was.

    The last message crosses the threshold, and the engine takes batches in order, so the
    threshold rule's count reaching `hot` means every event went through the rules.
    """
    metrics = tocsin.scrape()
    seen = (metrics.get(RECEIVED, 0.0), metrics.get(MATCHES, 0.0))
    changed = time.monotonic()
    while seen[0] < count or seen[1] < hot:
        time.sleep(POLL)
        metrics = tocsin.scrape()
        now = time.monotonic()
        figures = (metrics.get(RECEIVED, 0.0), metrics.get(MATCHES, 0.0))
        if figures != seen:
            seen, changed = figures, now
        elif now - changed > QUIET:
            return metrics, changed
    return metrics, time.monotonic()


def labelled(name: str, **labels: str) -> str:
    """Return a sample name as /metrics writes it."""
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def tocsin_checks(
    metrics: daemon.Metrics, root: Path, count: int, hot: int, code: int | None
) -> list[str]:
    """Return what disagrees with "every message became exactly one event through the rules"."""
    problems = []
    expected = {
        labelled("tocsin_mqtt_messages_total", subscription=FILTER): count,
        RECEIVED: count,
        MATCHES: hot,
    }
    for name, want in expected.items():
        got = metrics.get(name, 0.0)
        if got != want:
            problems.append(f"{name} = {got:,.0f}, not {want:,}")
    for name, value in metrics.items():
        bad = name.startswith(("tocsin_mqtt_dropped_total", "tocsin_mqtt_payload_errors_total"))
        bad |= name.startswith(("tocsin_rule_failures_total", "tocsin_actions_failed_total"))
        bad |= name.startswith("tocsin_rule_matches_total") and RULE not in name
        if bad and not name.endswith("_created") and value:
            problems.append(f"{name} = {value:,.0f}")
    occurrences = daemon.incident_work(root / "state" / "tocsin.db").get(RULE, 0)
    if occurrences != hot:
        problems.append(f"{RULE} incidents count {occurrences:,} occurrences, not {hot:,}")
    if code != 0:
        problems.append(f"exit code {code}")
    return problems


# --- profiles, the report and main -----------------------------------------------------------


def summarize(path: Path, top: int = 25) -> None:
    """Print the functions with the most samples in a py-spy raw profile, inclusive and own."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for row in path.read_text().splitlines():
        stack, _, n = row.rpartition(" ")
        samples = int(n)
        total += samples
        frames = [frame.rsplit(":", 1)[0] + ")" for frame in stack.split(";")[1:]]  # no thread
        for frame in set(frames):
            inclusive[frame] += samples
        if frames:
            own[frames[-1]] += samples
    print(f"\n{path.name}: {total:,} samples")
    for title, counts in (("inclusive", inclusive), ("own", own)):
        print(f"  {title}:")
        for frame, samples in counts.most_common(top):
            print(f"    {samples / total:6.1%}  {frame}")


def line(o: Outcome) -> str:
    """Return one measurement as a line of the live log."""
    text = (
        f"  v{o.version:<5} {o.method:<7} QoS {o.qos}  {o.receiver:<14} {o.received:>8,} msgs "
        f"in {o.seconds:6.2f} s = {o.rate:>7,.0f}/s; CPU {o.cpu:5.2f} s "
        f"({o.cpu_per_message:4.0f} us/msg), broker CPU {o.broker_cpu:5.2f} s, "
        f"peak RSS {o.peak_kib / 1024:5.1f} MB"
    )
    if o.publish_rate:
        text += f"; published at {o.publish_rate:,.0f}/s"
    if o.startup:
        text += f"; start-up {o.startup:.2f} s"
    for note in o.notes:
        text += f"; {note}"
    text += "; check " + ("ok" if not o.checks else "FAILED: " + "; ".join(o.checks))
    return text


def report(pairs: Sequence[tuple[Outcome, Outcome]], count: int) -> bool:
    """Print the side-by-side table over the repeats; return whether every check passed."""
    print(f"\n{count:,} messages per measurement; ranges over the repeats")
    print(
        "| MQTT | method | QoS | aiomqtt msgs/s | tocsin msgs/s | tocsin / aiomqtt "
        "| CPU us/msg aiomqtt | CPU us/msg tocsin | broker CPU s (aiomqtt; tocsin) "
        "| tocsin peak RSS MB | checks |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    cases = list(dict.fromkeys(b.case for b, _ in pairs))
    ok = True
    for case in cases:
        mine = [(b, t) for b, t in pairs if b.case == case]
        bare_rates = [b.rate for b, _ in mine]
        tocsin_rates = [t.rate for _, t in mine]
        ratios = [t.rate / b.rate for b, t in mine if b.rate]
        failed = [f"{o.receiver}: {c}" for pair in mine for o in pair for c in o.checks]
        ok &= not failed
        broker = f"{snmp.span([b.broker_cpu for b, _ in mine], '{:.1f}')}; "
        broker += snmp.span([t.broker_cpu for _, t in mine], "{:.1f}")
        cells = [
            case[0],
            case[1],
            str(case[2]),
            snmp.span(bare_rates),
            snmp.span(tocsin_rates),
            snmp.span(ratios, "{:.2f}"),
            snmp.span([b.cpu_per_message for b, _ in mine]),
            snmp.span([t.cpu_per_message for _, t in mine]),
            broker,
            snmp.span([t.peak_kib / 1024 for _, t in mine], "{:.1f}"),
            "ok" if not failed else "; ".join(failed),
        ]
        print("| " + " | ".join(cells) + " |")
    print(
        "\ntargets (issue 5): tocsin >= aiomqtt at QoS 0, >= 90 % of it at QoS 1; stretch 40,000/s"
    )
    for case in cases:
        mine = [(b, t) for b, t in pairs if b.case == case]
        need = 1.0 if case[2] == 0 else 0.9
        met = sum(t.rate >= need * b.rate for b, t in mine)
        text = f"  v{case[0]} {case[1]} QoS {case[2]}: >= {need:.0%} of aiomqtt in {met}"
        text += f" of {len(mine)}"
        if case[2] == 0:
            stretch = sum(t.rate >= 40_000 for _, t in mine)
            text += f"; >= 40,000/s in {stretch} of {len(mine)}"
        live = [o for pair in mine for o in pair if o.publish_rate]
        kept = [o for o in live if o.rate >= 0.95 * o.publish_rate]
        if kept:
            text += (
                f"; publisher-bound (received >= 95 % of published/s): {len(kept)} of {len(live)}"
            )
        print(text)
    print("\nchecks: " + ("all ok" if ok else "FAILED (see the table)"))
    return ok


def mosquitto_version() -> str:
    """Return mosquitto's version line."""
    done = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).splitlines()[0]


def main() -> int:
    """Measure each method and QoS: the bare aiomqtt loop, then the daemon; print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000, help="per measurement (200000)")
    parser.add_argument("--qos", default="0,1", help="subscription QoS levels (0,1)")
    parser.add_argument("--methods", default="backlog,live", help="backlog,live")
    parser.add_argument("--versions", default="5,3.1.1", help="MQTT versions (5,3.1.1)")
    parser.add_argument("--publishers", type=int, default=2, help="live: publisher processes (2)")
    parser.add_argument(
        "--receive-maximum", type=int, help="tocsin's receive_maximum (v5; default: tocsin's own)"
    )
    parser.add_argument(
        "--max-inflight", type=int, default=0, help="mosquitto's max_inflight_messages (0: none)"
    )
    parser.add_argument("--repeats", type=int, default=1, help="whole runs (1)")
    parser.add_argument(
        "--profile", type=Path, help="profile tocsin into DIR: py-spy, else cProfile"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    args = parser.parse_args()

    binary = run._tocsin_bin()
    if binary is None or not Path(MOSQUITTO).exists():
        print(
            "needs tocsin in this venv and mosquitto (apt-get install mosquitto)", file=sys.stderr
        )
        return 1
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tocsin-mqtt-bench-"))
    setup = Setup(
        binary=binary,
        tmp=tmp,
        count=args.messages,
        mqtt_version="5",
        publishers=args.publishers,
        receive_maximum=args.receive_maximum,
        max_inflight=args.max_inflight,
        profile=args.profile,
    )
    sizes = [len(message(seq, args.messages)[1]) for seq in range(min(args.messages, 10_000))]
    print(
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; {mosquitto_version()}; "
        f"aiomqtt {version('aiomqtt')}, paho-mqtt {version('paho-mqtt')}, Python "
        f"{sys.version.split()[0]}\n"
        f"{args.messages:,} JSON messages of {min(sizes)} to {max(sizes)} bytes on "
        f"{SITES * DEVICES} topics, {hot_count(args.messages):,} over the threshold; "
        f"temp dir {tmp}{'' if args.keep else ' (removed)'}",
        flush=True,
    )
    pairs: list[tuple[Outcome, Outcome]] = []
    try:
        for repeat in range(args.repeats):
            print(f"\nrepeat {repeat + 1} of {args.repeats}", flush=True)
            for case in itertools.product(
                args.versions.split(","), args.methods.split(","), args.qos.split(",")
            ):
                mqtt_version, method, qos = case
                each = dataclasses.replace(setup, mqtt_version=mqtt_version)
                bare_outcome = measure_bare(each, int(qos), method)
                print(line(bare_outcome), flush=True)
                tocsin_outcome = measure_tocsin(each, int(qos), method)
                print(line(tocsin_outcome), flush=True)
                pairs.append((bare_outcome, tocsin_outcome))
        ok = report(pairs, args.messages)
        if args.profile is not None:
            for path in sorted(args.profile.glob("*.txt")):
                summarize(path)
            for path in sorted(args.profile.glob("*.prof")):  # cProfile, without py-spy
                print(f"\n{path.name}:")
                pstats.Stats(str(path)).sort_stats("tottime").print_stats(25)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
