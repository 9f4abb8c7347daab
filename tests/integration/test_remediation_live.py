"""Remediation through the real daemon: a log line runs a real script with the event's
hostile data as separate argv elements, and the incident resolves; failures raise the
priority; the kill switch and approvals work over the API; a run cut off by kill -9 is marked
interrupted, never run twice."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from daemon import Daemon, wait_until
from test_incidents_live import ALICE, VIEWER, _write
from test_silences_live import request

pytestmark = pytest.mark.integration

SCRIPTS = Path(__file__).resolve().parents[1] / "runbooks" / "scripts"

RULES = r"""
rules:
  - id: disk-full
    match: {message: {regex: 'disk full on (?P<mount>.+)$'}}
    key: "{{ event.host }}"
    actions:
      - incident: {title: "disk full on {{ event.host }}", impact: medium, urgency: medium}
      - remediate: {runbook: RUNBOOK, on_success: resolve, on_failure: {raise_priority: {impact: high, urgency: high}}}
"""

HOSTILE = "/var; touch /tmp/pwned-$(id -u) && echo `whoami` | sh --force\n"


def _daemon(root: Path, runbooks: str, runbook: str = "clean") -> Daemon:
    import hashlib

    digest = {t: hashlib.sha256(t.encode()).hexdigest() for t in (ALICE, VIEWER)}
    root.mkdir(parents=True, exist_ok=True)
    (root / "tokens").write_text(
        f"alice operator sha256:{digest[ALICE]}\nvictor viewer sha256:{digest[VIEWER]}\n"
    )
    (root / "runbooks.yaml").write_text(runbooks)
    daemon = Daemon(
        root, extra="runbooks: runbooks.yaml\n", rules=RULES.replace("RUNBOOK", runbook)
    )
    config = daemon.root / "tocsin.yaml"
    config.write_text(config.read_text().replace("port: ", "tokens_file: tokens, port: ", 1))
    return daemon


def _runs(daemon: Daemon) -> list[dict[str, Any]]:
    with sqlite3.connect(f"file:{daemon.db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT id, state, reason, data FROM runs ORDER BY id").fetchall()
    return [{"id": i, "state": s, "reason": r, **json.loads(d)} for i, s, r, d in rows]


def _timeline(daemon: Daemon, incident_id: int) -> list[dict[str, Any]]:
    return list(daemon.get(f"/api/v1/incidents/{incident_id}/timeline")["timeline"])


def test_a_log_line_runs_the_script_with_hostile_data_as_plain_arguments(tmp_path: Path) -> None:
    """Test the argv the child really got, the resolve on success, the timeline."""
    out = tmp_path / "argv.json"
    daemon = _daemon(
        tmp_path / "d",
        "runbooks:\n  - name: clean\n    steps:\n"
        f"      - exec: {{argv: [{sys.executable}, {SCRIPTS / 'record_argv.py'}, {out}, "
        "'{{ mount }}', '{{ event.host }}', '--dry-run={{ mount }}'], timeout: 10s}\n",
    )
    daemon.start()
    _write(daemon, "Nov 25 10:00:00 web1 df: disk full on " + HOSTILE)
    got = wait_until(lambda: out.exists() and json.loads(out.read_text()), what="the script")
    mount = HOSTILE.strip()
    assert got["argv"] == [mount, "web1", f"--dry-run={mount}"]
    assert not list(Path("/tmp").glob("pwned-*"))
    (incident,) = wait_until(
        lambda: [i for i in daemon.incidents() if i["state"] == "resolved"], what="the resolve"
    )
    timeline = _timeline(daemon, incident["id"])
    notes = [e["note"] for e in timeline if e["kind"] == "remediation"]
    assert notes[0].startswith("run 1 of clean running: started: exec ")
    assert notes[-1].startswith("run 1 of clean succeeded: exit 0 in ")
    assert timeline[-1]["actor"] == "runbook:clean"
    assert [r["state"] for r in _runs(daemon)] == ["succeeded"]
    assert daemon.stop() == 0


def test_a_failing_run_raises_the_priority_and_the_breaker_pages(tmp_path: Path) -> None:
    """Test on_failure and the circuit breaker opening after 2 failures for one target."""
    daemon = _daemon(
        tmp_path / "d",
        "runbooks:\n  - name: clean\n    breaker: {failures: 2, reset: 1h}\n    steps:\n"
        "      - exec: {argv: [/bin/false]}\n",
    )
    daemon.start()
    _write(daemon, "Nov 25 10:00:00 web1 df: disk full on /var\n")
    wait_until(lambda: [i for i in daemon.incidents() if i["priority"] == "P1"], what="P1")
    request(daemon, "POST", "/api/v1/incidents/1/resolve", {}, ALICE)
    _write(daemon, "Nov 25 12:00:00 web1 df: disk full on /var\n")  # a new incident, same host
    page = wait_until(
        lambda: [i for i in daemon.incidents() if i["rule"] == "remediation"], what="the page"
    )
    assert page[0]["title"].startswith("Runbook clean stopped for web1")
    _write(daemon, "Nov 25 14:00:00 web1 df: disk full on /var\n")
    wait_until(lambda: len(_runs(daemon)) == 3, what="the third run")
    runs = wait_until(lambda: _runs(daemon)[2]["state"] == "refused" and _runs(daemon))
    assert [r["state"] for r in runs] == ["failed", "failed", "refused"]
    assert "breaker" in runs[2]["reason"] or "open" in runs[2]["reason"]
    assert daemon.stop() == 0


def test_kill_switch_and_approvals_over_the_api(tmp_path: Path) -> None:
    """Test approval (viewer refused, operator approves), then the kill switch refusing runs."""
    out = tmp_path / "argv.json"
    daemon = _daemon(
        tmp_path / "d",
        "runbooks:\n  - name: clean\n    approval: {ttl: 10m}\n    steps:\n"
        f"      - exec: {{argv: [{sys.executable}, {SCRIPTS / 'record_argv.py'}, {out}, ok]}}\n",
    )
    daemon.start()
    _write(daemon, "Nov 25 10:00:00 web1 df: disk full on /var\n")
    wait_until(lambda: [r for r in _runs(daemon) if r["state"] == "awaiting_approval"],
               what="the run to wait for approval")  # fmt: skip
    time.sleep(0.3)
    assert not out.exists()
    assert request(daemon, "POST", "/api/v1/runs/1/approve", {}, VIEWER)[0] == 403
    status, body = request(daemon, "POST", "/api/v1/runs/1/approve", {"note": "go"}, ALICE)
    assert status == 200, body
    wait_until(out.exists, what="the approved run")
    status, switch = request(
        daemon, "POST", "/api/v1/remediation/kill-switch", {"why": "storm"}, ALICE
    )
    assert (status, switch["engaged"]) == (200, True)
    _write(daemon, "Nov 25 10:05:00 web2 df: disk full on /var\n")
    refused = wait_until(lambda: [r for r in _runs(daemon) if r["state"] == "refused"])
    assert "storm" in refused[0]["reason"]
    assert daemon.stop() == 0
    daemon.start()  # the kill switch survives a restart
    assert request(daemon, "GET", "/api/v1/remediation/kill-switch", token=VIEWER)[1]["engaged"]
    assert daemon.stop() == 0


def test_a_run_cut_off_by_kill9_is_interrupted_not_repeated(tmp_path: Path) -> None:
    """Test that a run in progress at kill -9 is never started again."""
    marker = tmp_path / "ran"
    script = tmp_path / "slow.py"
    script.write_text("import sys, time\nopen(sys.argv[1], 'a').write('x')\ntime.sleep(30)\n")
    daemon = _daemon(
        tmp_path / "d",
        "runbooks:\n  - name: clean\n    steps:\n"
        f"      - exec: {{argv: [{sys.executable}, {script}, {marker}], timeout: 60s}}\n",
    )
    daemon.start()
    _write(daemon, "Nov 25 10:00:00 web1 df: disk full on /var\n")
    wait_until(marker.exists, what="the run to start")
    daemon.kill9()
    daemon.start()
    (run,) = wait_until(lambda: [r for r in _runs(daemon) if r["state"] == "interrupted"])
    assert "not run again" in run["reason"]
    time.sleep(0.5)
    assert marker.read_text() == "x"
    assert daemon.stop() == 0


def test_repeats_while_a_run_is_active_ask_for_nothing_and_the_kill_switch_stops_it(
    tmp_path: Path,
) -> None:
    """Test that 20 repeats of the event make one run, and engaging the kill switch kills the
    running one (its process group) and records why."""
    marker = tmp_path / "ran"
    script = tmp_path / "slow.py"
    script.write_text("import sys, time\nopen(sys.argv[1], 'a').write('x')\ntime.sleep(60)\n")
    daemon = _daemon(
        tmp_path / "d",
        "runbooks:\n  - name: clean\n    steps:\n"
        f"      - exec: {{argv: [{sys.executable}, {script}, {marker}], timeout: 120s}}\n",
    )
    daemon.start()
    for n in range(20):
        _write(daemon, f"Nov 25 10:00:{n:02d} web1 df: disk full on /var\n")
    wait_until(marker.exists, what="the run to start")
    wait_until(lambda: daemon.incidents() and daemon.incidents()[0]["count"] == 20)
    assert [r["state"] for r in _runs(daemon)] == ["running"]
    status, switch = request(
        daemon, "POST", "/api/v1/remediation/kill-switch", {"why": "runaway"}, ALICE
    )
    assert (status, switch["engaged"]) == (200, True)
    (run,) = _runs(daemon)
    assert (run["state"], run["reason"]) == ("interrupted", "stopped by the kill switch: runaway")
    assert marker.read_text() == "x"
    assert daemon.stop() == 0


def test_wait_clear_fails_the_run_when_the_clear_does_not_come(tmp_path: Path) -> None:
    """Test on_success: {wait_clear}: no clear event in time -> failed, priority raised."""
    rules = RULES.replace("on_success: resolve", "on_success: {wait_clear: 1s}")
    root = tmp_path / "d"
    daemon = _daemon(
        root, "runbooks:\n  - name: clean\n    steps:\n      - exec: {argv: [/bin/true]}\n"
    )
    (root / "rules" / "test.yaml").write_text(rules.replace("RUNBOOK", "clean"))
    daemon.start()
    _write(daemon, "Nov 25 10:00:00 web1 df: disk full on /var\n")
    (run,) = wait_until(lambda: [r for r in _runs(daemon) if r["state"] == "failed"],
                        what="the run to fail for want of the clear")  # fmt: skip
    assert run["reason"] == "succeeded, but the clear event did not come in time"
    assert daemon.incidents()[0]["priority"] == "P1"
    assert daemon.stop() == 0
