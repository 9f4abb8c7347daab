"""Correlation in the real daemon: state across kill -9 and restarts, timers on the wall clock,
and live processing agreeing with `tocsin replay` of the same lines."""

from __future__ import annotations

import datetime
import json
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from daemon import Daemon, wait_until

pytestmark = pytest.mark.integration

SSH_RULES = r"""
rules:
  - id: ssh-bruteforce
    match:
      program: sshd
      message: {regex: 'Failed password for (?:invalid user )?\S+ from (?P<ip>[0-9.]+)'}
    key: "{{ ip }}"
    threshold: {count: 5, within: 60s}
    actions:
      - incident: {title: "SSH brute force from {{ ip }}", impact: medium, urgency: high}
  - id: ssh-invalid-user
    match: {program: sshd, message: {regex: 'Invalid user (?P<user>\S+) from (?P<ip>[0-9.]+)'}}
    key: "{{ ip }}"
    suppress: 5m
    actions:
      - incident: {title: "Invalid users from {{ ip }}", impact: low, urgency: low}
"""


# BSD stamps carry no year: months back, the year every reader infers is the same.
MONTHS_AGO = (datetime.datetime.now() - datetime.timedelta(days=150)).replace(microsecond=0)


def labsz_log(lines: int, seed: int = 7) -> list[str]:
    """Return sshd lines shaped like the LabSZ log: bursts of failures from a few hundred IPs."""
    rng = random.Random(seed)
    ips = [
        f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        for _ in range(300)
    ]
    users = ["root", "admin", "webmaster", "test", "oracle", "pi", "git"]
    when = MONTHS_AGO
    out: list[str] = []
    while len(out) < lines:
        ip = rng.choice(ips)
        for _ in range(rng.choice([1, 1, 2, 3, 4, 5, 6, 8, 12])):
            when += datetime.timedelta(seconds=rng.choice([0, 0, 1, 2, 5, 11, 30, 61]))
            stamp = f"{when:%b} {when.day:2d} {when:%H:%M:%S}"
            pid = rng.randint(1000, 30000)
            user = rng.choice(users)
            if rng.random() < 0.3:
                out.append(f"{stamp} LabSZ sshd[{pid}]: Invalid user {user} from {ip}\n")
            out.append(
                f"{stamp} LabSZ sshd[{pid}]: Failed password for invalid user {user} "
                f"from {ip} port {rng.randint(1024, 65535)} ssh2\n"
            )
    return out[:lines]


def replay_counts(root: Path, log: Path) -> dict[str, int]:
    """Run `tocsin replay` over the log; return each incident's final count by fingerprint."""
    done = subprocess.run(
        [sys.executable, "-m", "tocsin", "replay", "--rules", str(root / "rules"),
         "--format", "jsonl", str(log)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    counts: dict[str, int] = {}
    for line in done.stdout.splitlines():
        out = json.loads(line)
        counts[out["fingerprint"]] = out["count"]
    return counts


def committed_offset(daemon: Daemon) -> int:
    """The byte offset committed for the one log file, 0 before any."""
    try:
        with sqlite3.connect(f"file:{daemon.db}?mode=ro", uri=True) as conn:
            row = conn.execute("SELECT MAX(byte_offset) FROM file_offsets").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0] or 0)


def test_kill9_mid_stream_keeps_windows_and_matches_replay(tmp_path: Path) -> None:
    """Test that after kill -9 mid-burst, live incidents equal a replay of the same sshd log."""
    daemon = Daemon(tmp_path, extra="correlation: {lateness: 0s}\n")
    (daemon.root / "rules" / "test.yaml").write_text(SSH_RULES)
    log = daemon.root / "logs" / "auth.log"
    lines = labsz_log(160_000)
    log.write_text("")
    daemon.start()
    with log.open("a") as handle:
        handle.writelines(lines[:80_000])
    wait_until(lambda: committed_offset(daemon) > 0, what="a first commit")
    daemon.kill9()
    first = committed_offset(daemon)
    assert 0 < first < sum(len(x) for x in lines[:80_000]), "kill should land mid-stream"
    with log.open("a") as handle:
        handle.writelines(lines[80_000:])
    daemon.start()
    size = log.stat().st_size
    wait_until(lambda: committed_offset(daemon) == size, timeout=90, what="every line committed")
    assert daemon.stop() == 0
    live = dict(daemon.db_rows())
    expected = replay_counts(daemon.root, log)
    assert len(expected) > 100  # the log really exercises both rules
    assert live == expected


def test_restart_mid_window_keeps_the_window_unless_the_rule_changed(tmp_path: Path) -> None:
    """Test that a window survives a clean restart, and a changed rule starts fresh."""
    daemon = Daemon(tmp_path)
    (daemon.root / "rules" / "test.yaml").write_text(SSH_RULES)
    log = daemon.root / "logs" / "auth.log"
    failed = (
        f"{MONTHS_AGO:%b} {MONTHS_AGO.day:2d} 07:00:{{:02d}} LabSZ sshd[1]: "
        "Failed password for root from 10.0.0.{} port 1 ssh2\n"
    )
    log.write_text("".join(failed.format(s, 1) for s in range(4)))
    daemon.start()
    wait_until(lambda: committed_offset(daemon) == log.stat().st_size, what="4 lines committed")
    assert daemon.stop() == 0
    daemon.start()  # same rules: the 4 events are still in the window
    with log.open("a") as handle:
        handle.write(failed.format(10, 1))
    wait_until(lambda: dict(daemon.db_rows()).get("ssh-bruteforce:10.0.0.1") == 5, what="5th event")
    with log.open("a") as handle:
        handle.writelines(failed.format(20 + s, 2) for s in range(4))
    wait_until(lambda: committed_offset(daemon) == log.stat().st_size, what="4 more lines")
    assert daemon.stop() == 0
    rules = daemon.root / "rules" / "test.yaml"
    rules.write_text(SSH_RULES.replace("count: 5", "count: 6"))
    daemon.start()
    assert "changed_rules_started_fresh" in daemon.output()
    with log.open("a") as handle:
        handle.writelines(failed.format(30 + s, 2) for s in range(2))
    wait_until(lambda: committed_offset(daemon) == log.stat().st_size, what="2 more lines")
    assert "ssh-bruteforce:10.0.0.2" not in dict(daemon.db_rows())  # only 2 in the new window


def test_absence_fires_on_the_wall_clock_and_resolves_on_arrival(tmp_path: Path) -> None:
    """Test that a silent heartbeat raises an incident with no new input, and its return resolves."""
    daemon = Daemon(tmp_path, extra="correlation: {lateness: 0s, tick: 50ms}\n")
    (daemon.root / "rules" / "test.yaml").write_text(
        "rules:\n  - id: beat\n    match: {message: {regex: 'beat from (?P<n>\\S+)'}}\n"
        '    key: "{{ n }}"\n    absence: {within: 1s}\n'
        '    actions: [{incident: {title: "{{ n }} silent"}}]\n'
    )
    log = daemon.root / "logs" / "beat.log"

    def beat(node: str) -> str:
        now = datetime.datetime.now(datetime.UTC).isoformat()
        return f"{now} host app: beat from {node}\n"

    log.write_text(beat("n1"))
    daemon.start()
    opened = wait_until(
        lambda: [i for i in daemon.incidents("open") if i["key"] == "n1"], what="absence incident"
    )
    assert opened[0]["title"] == "n1 silent"
    with log.open("a") as handle:
        handle.write(beat("n1"))
    wait_until(lambda: daemon.incidents("resolved"), what="the heartbeat to resolve it")
    assert "tocsin_timers_fired_total" in daemon.metrics()
