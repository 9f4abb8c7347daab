"""The daemon end to end: real files, real rotation, kill -9, the HTTP API and the SQLite file."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from daemon import Daemon, ssh_line, wait_until

pytestmark = pytest.mark.integration

LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"


def append(path: Path, lines: list[str] | str) -> None:
    """Append lines the way a logging program does: open, write, close."""
    with path.open("a") as handle:
        handle.write(lines if isinstance(lines, str) else "".join(lines))


def logrotate(root: Path, log: Path, directive: str) -> None:
    """Rotate `log` with the real logrotate binary, forced, with `directive` (create/copytruncate)."""
    if not Path(LOGROTATE).exists():
        pytest.skip("logrotate is not installed (scripts/test installs it)")
    conf = root / "logrotate.conf"
    conf.write_text(f"{log} {{\n  rotate 5\n  {directive}\n  nocompress\n  missingok\n}}\n")
    subprocess.run([LOGROTATE, "-f", "-s", str(root / "logrotate.state"), str(conf)], check=True)


@pytest.fixture
def daemon(tmp_path: Path) -> Daemon:
    """Return a daemon, not yet started (conftest stops it if the test does not)."""
    return Daemon(tmp_path)


def test_lines_become_incidents_visible_in_api_and_metrics(daemon: Daemon) -> None:
    """Test that appended lines raise, update and resolve incidents seen via API and /metrics."""
    log = daemon.root / "logs" / "auth.log"
    log.write_text("")
    daemon.start()
    append(log, [ssh_line(i, "10.0.0.1") for i in range(3)] + [ssh_line(9, "10.0.0.2")])
    append(log, "Nov 25 10:00:05 r1 %LINK-3-UPDOWN: Interface Gi0/1, changed state to down\n")
    append(log, "Nov 25 10:00:06 r1 %LINK-3-UPDOWN: Interface Gi0/1, changed state to up\n")
    wait_until(
        lambda: len(daemon.incidents()) == 3 and daemon.incidents("resolved"), what="3 incidents"
    )
    by_fp = {i["fingerprint"]: i for i in daemon.incidents()}
    assert by_fp["ssh-failed:10.0.0.1"]["count"] == 3
    assert by_fp["ssh-failed:10.0.0.2"]["count"] == 1
    assert by_fp["ssh-failed:10.0.0.1"]["priority"] == "P4"
    assert by_fp["link-down:r1:Gi0/1"]["state"] == "resolved"
    assert [i["fingerprint"] for i in daemon.incidents("open")] == [
        "ssh-failed:10.0.0.2",
        "ssh-failed:10.0.0.1",
    ]
    detail = daemon.get(f"/api/v1/incidents/{by_fp['link-down:r1:Gi0/1']['id']}")
    assert [(h["from"], h["to"]) for h in detail["timeline"]] == [
        (None, "new"),
        ("new", "resolved"),
    ]
    metrics = daemon.metrics()
    assert 'tocsin_rule_matches_total{rule="ssh-failed"} 4.0' in metrics
    assert 'tocsin_events_received_total{source="log"} 6.0' in metrics
    assert 'tocsin_incidents_open{priority="P4"} 2.0' in metrics
    assert "tocsin_event_processing_seconds_count" in metrics
    assert 'tocsin_actions_total{kind="log"} 1.0' in metrics
    assert '"event": "link Gi0/1 down on r1"' in daemon.output()
    assert daemon.stop() == 0
    assert '"tocsin_stopped"' in daemon.output()


def test_first_sight_starts_at_the_end(tmp_path: Path) -> None:
    """Test that lines already in a new file are skipped with start_at: end, later ones read."""
    daemon = Daemon(tmp_path, start_at="end")
    log = daemon.root / "logs" / "auth.log"
    append(log, [ssh_line(i, "10.0.0.1") for i in range(5)])
    daemon.start()
    try:
        wait_until(lambda: '"file_opened"' in daemon.output(), what="the file to be opened")
        append(log, [ssh_line(i, "10.0.0.3") for i in range(2)])
        wait_until(lambda: daemon.total_count() == 2, what="2 new lines")
        assert {i["key"] for i in daemon.incidents()} == {"10.0.0.3"}
    finally:
        daemon.stop()


@pytest.mark.parametrize("directive", ["create", "copytruncate"])
def test_logrotate_loses_and_repeats_nothing(daemon: Daemon, directive: str) -> None:
    """Test that lines around a real logrotate rotation are each counted exactly once."""
    log = daemon.root / "logs" / "app.log"
    log.write_text("")
    daemon.start()
    total = 0
    for round_ in range(3):
        append(log, [ssh_line(total + i, "10.1.0.1") for i in range(200)])
        total += 200
        wait_until(
            lambda n=total: daemon.total_count() == n,  # type: ignore[misc]
            what=f"{total} lines before rotation {round_}",
        )
        logrotate(daemon.root, log, directive)
        append(log, [ssh_line(total + i, "10.1.0.1") for i in range(50)])
        total += 50
    wait_until(lambda: daemon.total_count() == total, what=f"{total} lines")
    assert daemon.stop() == 0
    assert sum(count for _, count in daemon.db_rows()) == total


def test_rotation_between_reads_is_followed(daemon: Daemon) -> None:
    """Test that lines written just before a rename+create are read from the old file."""
    log = daemon.root / "logs" / "app.log"
    log.write_text("")
    daemon.start()
    append(log, [ssh_line(i, "10.2.0.1") for i in range(100)])
    os.rename(log, log.with_suffix(".log.1"))
    append(log.with_suffix(".log.1"), [ssh_line(100 + i, "10.2.0.1") for i in range(10)])
    append(log, [ssh_line(200 + i, "10.2.0.1") for i in range(20)])
    wait_until(lambda: daemon.total_count() == 130, what="130 lines")


def test_plain_truncation_is_followed(daemon: Daemon) -> None:
    """Test that a truncated file is read again from its start."""
    log = daemon.root / "logs" / "app.log"
    log.write_text("")
    daemon.start()
    append(log, [ssh_line(i, "10.3.0.1") for i in range(40)])
    wait_until(lambda: daemon.total_count() == 40, what="40 lines")
    os.truncate(log, 0)
    append(log, [ssh_line(i, "10.3.0.1") for i in range(5)])
    wait_until(lambda: daemon.total_count() == 45, what="45 lines")


def test_kill9_mid_stream_skips_and_doubles_nothing(daemon: Daemon) -> None:
    """Test that after kill -9 in the middle of a burst every line is counted exactly once."""
    log = daemon.root / "logs" / "burst.log"
    log.write_text("")
    total = 400_000  # the first half takes the daemon ~2 s: long enough to kill it inside
    ips = [f"10.9.{i // 250}.{i % 250}" for i in range(50)]
    daemon.start()
    append(log, [ssh_line(n, ips[n % len(ips)]) for n in range(total // 2)])
    wait_until(lambda: daemon.total_count() >= 1000, what="the first 1000 lines")
    daemon.kill9()
    committed = sum(count for _, count in daemon.db_rows())
    assert 1000 <= committed < total // 2, "the kill should land in the middle of the burst"
    append(log, [ssh_line(n, ips[n % len(ips)]) for n in range(total // 2, total)])
    daemon.start()
    wait_until(lambda: daemon.total_count() == total, timeout=60, what=f"all {total} lines")
    incidents = daemon.incidents()
    assert len(incidents) == len(ips)
    assert {i["count"] for i in incidents} == {total // len(ips)}
    assert daemon.stop() == 0
    assert sorted(daemon.db_rows()) == sorted((i["fingerprint"], i["count"]) for i in incidents)


def test_rotation_while_down_is_caught_up(daemon: Daemon) -> None:
    """Test that lines written to a file that was rotated while tocsin was down are still read."""
    log = daemon.root / "logs" / "app.log"
    log.write_text("")
    daemon.start()
    append(log, [ssh_line(i, "10.4.0.1") for i in range(100)])
    wait_until(lambda: daemon.total_count() == 100, what="100 lines")
    daemon.kill9()
    append(log, [ssh_line(100 + i, "10.4.0.1") for i in range(30)])
    logrotate(daemon.root, log, "create")
    append(log, [ssh_line(200 + i, "10.4.0.1") for i in range(7)])
    daemon.start()
    wait_until(lambda: daemon.total_count() == 137, what="137 lines")


def test_bad_input_is_counted_and_the_rest_processed(daemon: Daemon) -> None:
    """Test that a huge line and invalid UTF-8 are counted while later lines still raise incidents."""
    log = daemon.root / "logs" / "app.log"
    log.write_text("")
    daemon.start()
    with log.open("ab") as handle:
        handle.write(b"Nov 25 10:00:00 web1 app[1]: " + b"x" * 200_000 + b"\n")
        handle.write(b"Nov 25 10:00:01 web1 app[1]: caf\xe9 \xff\xfe broken\n")
        handle.write(ssh_line(1, "10.5.0.1").encode())
    wait_until(lambda: daemon.total_count() == 1, what="the line after the bad ones")
    metrics = daemon.metrics()
    assert f'tocsin_file_lines_cut_total{{path="{log}"}} 1.0' in metrics
    assert f'tocsin_file_invalid_utf8_lines_total{{path="{log}"}} 1.0' in metrics


def test_invalid_rule_is_reported_and_the_others_run(daemon: Daemon) -> None:
    """Test that a broken rule file is logged with file:line and the valid rules still work."""
    (daemon.root / "rules" / "zz-broken.yaml").write_text(
        "rules:\n  - id: broken\n    match: {message: {regexp: x}}\n    actions: [drop]\n"
    )
    log = daemon.root / "logs" / "app.log"
    log.write_text("")
    daemon.start()
    assert (
        "zz-broken.yaml:3:23: rule 'broken': unknown matcher operator 'regexp'" in daemon.output()
    )
    append(log, ssh_line(1, "10.6.0.1"))
    wait_until(lambda: daemon.total_count() == 1, what="an incident from the valid rules")
    assert "tocsin_rule_errors 1.0" in daemon.metrics()


def test_sigint_also_stops_cleanly(daemon: Daemon) -> None:
    """Test that SIGINT drains and exits 0 like SIGTERM."""
    (daemon.root / "logs" / "a.log").write_text("")
    daemon.start()
    assert daemon.stop(signal.SIGINT) == 0
    assert '"tocsin_stopped"' in daemon.output()


def test_port_in_use_is_a_clear_startup_error(tmp_path: Path) -> None:
    """Test that a taken API port ends the daemon with exit 1 and a sentence, not a traceback."""
    import socket
    import sys

    daemon = Daemon(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", daemon.port))
        taken.listen()
        proc = subprocess.run(
            [sys.executable, "-m", "tocsin", "run", "--config", str(tmp_path / "tocsin.yaml")],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{daemon.port}" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_shutdown_is_bounded_when_the_store_is_stuck(tmp_path: Path) -> None:
    """Test that SIGTERM exits within the deadline while another process holds the DB lock."""
    import sqlite3
    import time

    daemon = Daemon(tmp_path, extra="shutdown_timeout: 1s\n")
    log = daemon.root / "logs" / "app.log"
    log.write_text("")
    daemon.start()
    append(log, ssh_line(1, "10.7.0.1"))
    wait_until(lambda: daemon.total_count() == 1, what="the first line")
    blocker = sqlite3.connect(daemon.db, isolation_level=None, timeout=10)
    blocker.execute("BEGIN IMMEDIATE")  # the daemon's next commit waits for this lock
    try:
        append(log, [ssh_line(n, "10.7.0.1") for n in range(2, 12)])
        wait_until(
            lambda: 'tocsin_events_received_total{source="log"} 11.0' in daemon.metrics(),
            what="the lines to be read (their commit now waits for the lock)",
        )
        started = time.monotonic()
        assert daemon.stop(timeout=30) == 1
        assert time.monotonic() - started < 10
        assert '"shutdown_incomplete"' in daemon.output()
        assert "shutdown_timeout passed" in daemon.output()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    daemon.start()
    try:
        wait_until(lambda: daemon.total_count() == 11, what="the lines the stuck shutdown gave up")
    finally:
        assert daemon.stop() == 0


def test_lines_written_while_down_after_an_idle_run_are_read(tmp_path: Path) -> None:
    """Test that with start_at: end, a restart reads what was written while down, even unseen files."""
    daemon = Daemon(tmp_path, start_at="end")
    log = daemon.root / "logs" / "auth.log"
    append(log, [ssh_line(i, "10.8.0.1") for i in range(3)])  # before the first start: skipped
    daemon.start()
    wait_until(lambda: '"file_opened"' in daemon.output(), what="the file to be opened")
    assert daemon.stop() == 0
    append(log, [ssh_line(i, "10.8.0.2") for i in range(4)])
    daemon.start()
    wait_until(lambda: daemon.total_count() == 4, what="the 4 lines written while down")
    assert {i["key"] for i in daemon.incidents()} == {"10.8.0.2"}


def test_overlapping_sources_read_a_file_once(tmp_path: Path) -> None:
    """Test that a file named by two sources.files entries counts each line once."""
    daemon = Daemon(tmp_path, entries=[["logs/*.log"], ["logs/a.log"]])
    log = daemon.root / "logs" / "a.log"
    log.write_text("")
    daemon.start()
    append(log, [ssh_line(i, "10.9.9.9") for i in range(5)])
    wait_until(lambda: daemon.total_count() >= 5, what="5 lines")
    append(log, ssh_line(5, "10.9.9.9"))  # a second read of the first 5 would land by now
    wait_until(lambda: daemon.total_count() >= 6, what="the 6th line")
    assert daemon.total_count() == 6
