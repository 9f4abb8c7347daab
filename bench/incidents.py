"""Incident bench: event-to-notification latency through the running daemon, and how many
incident updates a second the store commits.

    .venv/bin/python bench/incidents.py [--rate 1000] [--seconds 20] [--updates 200000]

Part 1 starts `tocsin run` on a log file, writes `--rate` lines a second (each opening its own
incident, each notified on its own to a webhook: group_by ['...'], group_wait 0s), and times
each line from its write to the webhook request reaching a local HTTP server. The time
includes the file source's 10 ms poll interval. Part 2 commits incident updates straight into a
SqliteStore in engine-sized batches.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tocsin.model import Incident, IncidentChange, IncidentState
from tocsin.store.base import CommitBatch
from tocsin.store.sqlite import SqliteStore

RULES = r"""
rules:
  - id: bench
    match: {message: {regex: 'bench (?P<n>\d+) (?P<t>[0-9.]+)'}}
    key: "{{ n }}"
    actions:
      - incident: {title: "sent {{ t }}", impact: high, urgency: high}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    """The daemon under test, its log file, and the port the webhook server must take."""

    root: Path
    log: Path
    hook_port: int
    proc: subprocess.Popen[bytes]
    spy: subprocess.Popen[bytes] | None = None


def start_daemon(seconds: float) -> Run:
    """Write the config, start `tocsin run`, wait until it answers (and attach py-spy)."""
    root = Path(tempfile.mkdtemp(prefix="tocsin-bench-incidents-"))
    hook_port, api = _free_port(), _free_port()
    (root / "rules").mkdir()
    (root / "rules" / "bench.yaml").write_text(RULES)
    (root / "incidents.yaml").write_text(
        "receivers:\n"
        f"  - {{name: hook, webhook: {{url: 'http://127.0.0.1:{hook_port}/hook'}}}}\n"
        "route: {receiver: hook, group_by: ['...'], group_wait: 0s}\n"
    )
    log = root / "bench.log"
    log.touch()
    (root / "tocsin.yaml").write_text(
        f"state_dir: state\nrules: [rules]\nhttp: {{port: {api}}}\n"
        "incidents: incidents.yaml\nlogging: {level: warning, format: json}\n"
        "sources:\n  files:\n"
        f"    - {{path: {log}, parser: plain, start_at: end, poll_interval: 10ms}}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tocsin", "run", "--config", str(root / "tocsin.yaml")],
        stdout=(root / "daemon.out").open("wb"),
        stderr=subprocess.STDOUT,
    )
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{api}/healthz", timeout=1):
                break
        except OSError:
            time.sleep(0.05)
    run = Run(root, log, hook_port, proc)
    profile = os.environ.get("BENCH_PROFILE")  # py-spy's raw output, CPU (GIL) samples only
    if profile:
        spy = shutil.which("py-spy") or "py-spy"
        run.spy = subprocess.Popen(
            [spy, "record", "--gil", "-f", "raw", "-o", profile, "-p", str(proc.pid),
             "-d", str(int(seconds))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    return run


def stop_daemon(run: Run) -> None:
    """Stop the daemon; show its output when it notified nothing."""
    if run.spy is not None:
        run.spy.wait()
    run.proc.terminate()
    run.proc.wait(timeout=30)
    shutil.rmtree(run.root, ignore_errors=True)


async def latency(run: Run, rate: int, seconds: float) -> dict[str, float]:
    """Write lines at `rate`; return the write-to-webhook latencies in milliseconds."""
    got: list[float] = []
    arrived = asyncio.Event()
    total = int(rate * seconds)

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        now = time.time()
        for incident in body["incidents"]:
            got.append(now - float(incident["title"].split()[1]))
        if len(got) >= total:
            arrived.set()
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", run.hook_port).start()
    cpu0 = _cpu_seconds(run.proc.pid)
    start = time.monotonic()
    try:
        with run.log.open("a") as out:
            for n in range(total):
                delay = start + n / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                out.write(f"bench {n} {time.time():.6f}\n")
                out.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(arrived.wait(), 60)
        cpu = _cpu_seconds(run.proc.pid) - cpu0
    finally:
        await runner.cleanup()
    if not got:
        raise SystemExit((run.root / "daemon.out").read_text()[-3000:])
    ms = sorted(x * 1000 for x in got)
    return {
        "sent": total,
        "notified": len(ms),
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[int(len(ms) * 0.99) - 1],
        "max_ms": ms[-1],
        "cpu_us_per_event": cpu / total * 1e6,
    }


def store_updates(updates: int, batch: int = 256) -> dict[str, float]:
    """Commit `updates` incident updates (1,000 open incidents, round robin) into SQLite."""
    root = Path(tempfile.mkdtemp(prefix="tocsin-bench-store-"))
    store = SqliteStore(path=root / "s.db")
    store.open()
    incidents = [
        Incident(
            id=i,
            fingerprint=f"r:{i}",
            rule="r",
            key=str(i),
            title="t",
            state=IncidentState.NEW,
            priority="P1",
            impact="high",
            urgency="high",
            first_seen=0.0,
            last_seen=0.0,
            opened_at=0.0,
        )
        for i in range(1, 1001)
    ]
    store.commit(
        CommitBatch.of([IncidentChange("open", i, 0.0, 1, "bench") for i in incidents], [])
    )
    started = time.perf_counter()
    done = 0
    while done < updates:
        changes = []
        for n in range(done, min(updates, done + batch)):
            incident = incidents[n % len(incidents)]
            incident.count += 1
            incident.last_seen = float(n)
            changes.append(IncidentChange("update", incident, float(n), incident.count, "bench"))
        store.commit(CommitBatch.of(changes, []))
        done += len(changes)
    elapsed = time.perf_counter() - started
    # Operator-sized changes: one transition (one incident, one timeline row) per commit.
    started = time.perf_counter()
    for n in range(2000):
        incident = incidents[n % len(incidents)]
        incident.state = IncidentState.ACKNOWLEDGED
        store.commit(
            CommitBatch.of([IncidentChange("acknowledge", incident, 1.0, 1, "bench", "new")], [])
        )
    single = time.perf_counter() - started
    store.close()
    shutil.rmtree(root, ignore_errors=True)
    return {
        "batched_updates_per_s": updates / elapsed,
        "single_changes_per_s": 2000 / single,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000, help="lines (new incidents) a second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--updates", type=int, default=200_000)
    args = parser.parse_args()
    run = start_daemon(args.seconds)
    try:
        figures = asyncio.run(latency(run, args.rate, args.seconds))
    finally:
        stop_daemon(run)
    print(json.dumps({"latency": figures}, indent=None))
    print(
        f"event -> webhook at {args.rate}/s: {figures['notified']}/{figures['sent']} notified, "
        f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms (target <= 50), "
        f"max {figures['max_ms']:.1f} ms, {figures['cpu_us_per_event']:.0f} us CPU per event"
    )
    store = store_updates(args.updates)
    print(
        f"store: {store['batched_updates_per_s']:,.0f} incident updates/s in 256-change "
        f"commits; {store['single_changes_per_s']:,.0f} single operator changes/s"
    )


if __name__ == "__main__":
    main()
