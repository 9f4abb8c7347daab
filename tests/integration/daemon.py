"""Start the real daemon as a subprocess on a temp config and talk to it over loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RULES = r"""
rules:
  - id: ssh-failed
    match:
      program: sshd
      message: {regex: 'Failed password for (?P<user>\S+) from (?P<ip>[0-9.]+)'}
    key: "{{ ip }}"
    actions:
      - incident: {title: "SSH failures from {{ ip }}", impact: low, urgency: medium}
  - id: link-down
    match: {message: {regex: 'Interface (?P<ifname>\S+), changed state to down'}}
    key: "{{ event.host }}:{{ ifname }}"
    actions:
      - incident: {title: "{{ ifname }} down", impact: high, urgency: high}
      - log: {message: "link {{ ifname }} down on {{ event.host }}", level: warning}
  - id: link-up
    match: {message: {regex: 'Interface (?P<ifname>\S+), changed state to up'}}
    key: "{{ event.host }}:{{ ifname }}"
    actions: [{resolve: {rule: link-down}}]
"""


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], Any], *, timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def ssh_line(n: int, ip: str) -> str:
    """Return one sshd failure line (numbered, so lost or doubled lines are visible)."""
    return f"Nov 25 10:{n // 60 % 60:02d}:{n % 60:02d} web1 sshd[{n}]: Failed password for u{n} from {ip} port 22 ssh2\n"


RUNNING: list[Daemon] = []  # every Daemon made, so a fixture can stop what a test left running


@dataclass
class Daemon:
    """One tocsin process on a temp state dir, with helpers to query it."""

    root: Path
    entries: list[list[str]] = field(default_factory=lambda: [["logs/*.log"]])  # sources.files
    start_at: str = "beginning"
    port: int = field(default_factory=free_port)
    extra: str = ""  # more top-level config YAML
    sources: str = ""  # more YAML under `sources:` (indented by four spaces), e.g. snmp
    rules: str = RULES
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0

    def __post_init__(self) -> None:
        RUNNING.append(self)
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        (self.root / "rules").mkdir(exist_ok=True)
        (self.root / "rules" / "test.yaml").write_text(self.rules)
        (self.root / "tocsin.yaml").write_text(
            f"state_dir: state\nrules: [rules]\nhttp: {{host: 127.0.0.1, port: {self.port}}}\n"
            f"pipeline: {{batch_lines: 256}}\n"
            f"logging: {{format: json, level: debug}}\n"
            "sources:\n  files:\n"
            + "".join(
                f"    - path: {json.dumps(paths)}\n      start_at: {self.start_at}\n"
                "      poll_interval: 20ms\n      rescan_interval: 100ms\n"
                for paths in self.entries
            )
            + self.sources
            + self.extra
        )

    @property
    def db(self) -> Path:
        return self.root / "state" / "tocsin.db"

    def start(self) -> None:
        """Start the daemon and wait until its API answers."""
        self.runs += 1
        log = (self.root / f"daemon-{self.runs}.log").open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tocsin", "run", "--config", str(self.root / "tocsin.yaml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        wait_until(self._healthy, what="the daemon to become healthy")

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}: {self.output()}")
        try:
            return bool(self.get("/healthz")["status"] == "ok")
        except OSError:
            return False

    def output(self) -> str:
        """Return everything the latest run printed."""
        return (self.root / f"daemon-{self.runs}.log").read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send `sig` and wait for the exit code."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill9(self) -> None:
        """Kill the daemon the hard way."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def get(self, path: str) -> Any:
        """GET a JSON document from the API."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
            return json.loads(resp.read())

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def incidents(self, state: str = "all") -> list[dict[str, Any]]:
        return list(self.get(f"/api/v1/incidents?state={state}&limit=1000")["incidents"])

    def total_count(self, rule: str = "ssh-failed") -> int:
        """Sum of occurrence counts of a rule's incidents, as the API reports them."""
        return sum(i["count"] for i in self.incidents() if i["rule"] == rule)

    def db_rows(self) -> list[tuple[str, int]]:
        """Read (fingerprint, count) straight from the SQLite file."""
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            return list(conn.execute("SELECT fingerprint, count FROM incidents ORDER BY id"))
