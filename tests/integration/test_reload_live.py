"""Config reload through the real daemon: SIGHUP, the API and the file watch; a bad reload
changes nothing; under load no line is lost or counted twice; unchanged rules keep state."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from daemon import RULES, Daemon, ssh_line, wait_until
from receiverkit import http_receiver

from tocsin.tokens import Role, token_line

pytestmark = pytest.mark.integration

ADMIN = "adam-admin-token-0123456789abcdef"
OPERATOR = "olga-operator-token-0123456789abc"

BURST = r"""
  - id: burst
    match:
      program: sshd
      message: {regex: 'Failed password for \S+ from (?P<ip>10\.9\.[0-9.]+)'}
    key: "{{ ip }}"
    continue: true
    threshold: {count: 3, within: 1h}
    actions:
      - incident: {title: "burst from {{ ip }}", impact: medium, urgency: medium}
"""
NEW_RULE = r"""
  - id: sudo
    match: {program: sudo, message: {regex: 'incorrect password'}}
    actions:
      - incident: {title: "sudo failures", impact: low, urgency: low}
"""


def _daemon(root: Path, *, extra: str = "") -> Daemon:
    root.mkdir(parents=True, exist_ok=True)
    (root / "tokens").write_text(
        f"{token_line('adam', Role.ADMIN, ADMIN)}\n{token_line('olga', Role.OPERATOR, OPERATOR)}\n"
    )
    daemon = Daemon(root, rules=RULES.replace("rules:\n", "rules:" + BURST, 1), extra=extra)
    config = root / "tocsin.yaml"
    config.write_text(config.read_text().replace("port: ", "tokens_file: tokens, port: ", 1))
    return daemon


def _post(daemon: Daemon, path: str, token: str | None) -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{daemon.port}{path}", data=b"{}", method="POST")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _metric(daemon: Daemon, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", daemon.metrics(), re.M)
    assert found is not None, name
    return float(found.group(1))


def _reloads(daemon: Daemon, result: str) -> float:
    text = daemon.metrics()
    found = re.search(rf'^tocsin_config_reloads_total{{result="{result}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def _write(daemon: Daemon, text: str) -> None:
    with (daemon.root / "logs" / "auth.log").open("a") as log:
        log.write(text)


def test_sighup_applies_new_rules_and_keeps_the_state_of_unchanged_ones(tmp_path: Path) -> None:
    """Test a reload by SIGHUP: a rule added to the file matches from then on; a threshold
    rule two events into its window fires on the third after the reload (its state kept);
    the success metrics and the config hash move."""
    daemon = _daemon(tmp_path / "d")
    daemon.start()
    assert _metric(daemon, "tocsin_config_last_reload_successful") == 1
    first_hash = _metric(daemon, "tocsin_config_hash")
    _write(daemon, ssh_line(1, "10.9.0.1") + ssh_line(2, "10.9.0.1"))
    wait_until(lambda: daemon.total_count() == 2, what="two ssh lines")
    assert [i for i in daemon.incidents() if i["rule"] == "burst"] == []
    rules = daemon.root / "rules" / "test.yaml"
    rules.write_text(rules.read_text() + NEW_RULE)
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: _reloads(daemon, "ok") == 1, what="the reload")
    assert _metric(daemon, "tocsin_config_hash") != first_hash
    assert _metric(daemon, "tocsin_rules_loaded") == 5
    _write(daemon, "Nov 25 10:00:09 web1 sudo: alice : 3 incorrect password attempts\n")
    _write(daemon, ssh_line(3, "10.9.0.1"))
    wait_until(
        lambda: {i["rule"] for i in daemon.incidents()} >= {"sudo", "burst"},
        what="the new rule and the kept threshold to fire",
    )
    assert "config_reloaded" in daemon.output()
    assert daemon.stop() == 0


def test_a_bad_reload_changes_nothing_and_names_file_and_line(tmp_path: Path) -> None:
    """Test a rule file with a mistake: the API answers 422 with file:line, the log says it,
    the metric drops to 0, and the old rules keep matching; fixing it reloads fine."""
    daemon = _daemon(tmp_path / "d")
    daemon.start()
    rules = daemon.root / "rules" / "test.yaml"
    good = rules.read_text()
    rules.write_text(good + "  - id: broken\n    match: {message: {regex: '('}}\n    actions: []\n")
    status, body = _post(daemon, "/api/v1/reload", ADMIN)
    assert status == 422, body
    assert body["status"] == "failed"
    assert body["errors"], body
    assert all(str(rules) in e or "test.yaml" in e for e in body["errors"]), body["errors"]
    assert any(re.search(r"test\.yaml:\d+", e) for e in body["errors"]), body["errors"]
    assert _metric(daemon, "tocsin_config_last_reload_successful") == 0
    assert "config_reload_failed" in daemon.output()
    _write(daemon, ssh_line(1, "10.7.0.1"))
    wait_until(lambda: daemon.total_count() == 1, what="the old rules to keep working")
    (daemon.root / "tocsin.yaml").write_text(
        (daemon.root / "tocsin.yaml").read_text() + "correlation: {max_keys: 5000}\n"
    )
    rules.write_text(good)
    status, body = _post(daemon, "/api/v1/reload", ADMIN)
    assert (status, body["status"], body["restart_needed"]) == (200, "ok", ["correlation"])
    assert _metric(daemon, "tocsin_config_last_reload_successful") == 1
    assert "config_change_needs_restart" in daemon.output()
    assert daemon.stop() == 0


def test_only_an_admin_token_may_reload(tmp_path: Path) -> None:
    """Test the endpoint's guard: no token 401, an operator 403, an admin 200."""
    daemon = _daemon(tmp_path / "d")
    daemon.start()
    assert _post(daemon, "/api/v1/reload", None)[0] == 401
    assert _post(daemon, "/api/v1/reload", OPERATOR)[0] == 403
    status, body = _post(daemon, "/api/v1/reload", ADMIN)
    assert (status, body["status"], body["trigger"]) == (200, "ok", "api")
    assert daemon.stop() == 0


def test_reloads_under_load_lose_and_double_nothing(tmp_path: Path) -> None:
    """Test ten reloads while 3,000 lines stream in: every line is counted exactly once."""
    daemon = _daemon(tmp_path / "d")
    daemon.start()
    total = 3000
    done = threading.Event()

    def write() -> None:
        for start in range(0, total, 100):
            _write(
                daemon, "".join(ssh_line(n, f"10.7.{n % 7}.1") for n in range(start, start + 100))
            )
            time.sleep(0.01)
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    assert daemon.proc is not None
    for _ in range(10):
        daemon.proc.send_signal(signal.SIGHUP)
        time.sleep(0.05)
    writer.join()
    wait_until(lambda: _reloads(daemon, "ok") >= 1, what="reloads")
    wait_until(lambda: daemon.total_count() == total, timeout=60, what="every line counted")
    time.sleep(0.5)  # nothing more may arrive: a line counted twice would show now
    assert daemon.total_count() == total
    assert _reloads(daemon, "failed") == 0
    assert daemon.stop() == 0


def test_the_watch_reloads_once_after_a_burst_of_edits(tmp_path: Path) -> None:
    """Test reload.watch: several quick writes to a rule file make one reload after the
    debounce; writes to files that are not config (the state folder) make none."""
    daemon = _daemon(tmp_path / "d", extra="reload: {watch: true, debounce: 300ms}\n")
    daemon.start()
    wait_until(lambda: "config_watch_started" in daemon.output(), what="the watch")
    rules = daemon.root / "rules" / "test.yaml"
    text = rules.read_text()
    for n in range(5):
        rules.write_text(text + f"# edit {n}\n")
        time.sleep(0.05)
    wait_until(lambda: _reloads(daemon, "ok") == 1, what="one reload")
    (daemon.root / "state" / "scratch.yaml").write_text("x: 1\n")
    _write(daemon, ssh_line(1, "10.7.0.1"))  # the store and offsets change too
    wait_until(lambda: daemon.total_count() == 1, what="the line")
    time.sleep(1.0)
    assert _reloads(daemon, "ok") == 1
    rules.write_text(text + NEW_RULE)
    wait_until(lambda: _reloads(daemon, "ok") == 2, what="the second reload")
    assert _metric(daemon, "tocsin_rules_loaded") == 5
    assert daemon.stop() == 0


def test_a_reload_moves_notices_to_the_new_receiver_and_adds_runbooks(tmp_path: Path) -> None:
    """Test the incidents and runbooks files on reload: a webhook URL changed sends the next
    notice to the new address; a runbook added there can be named by a rule loaded in the
    same reload (its dry run recorded)."""
    root = tmp_path / "d"
    with http_receiver() as old, http_receiver() as new:
        root.mkdir(parents=True)
        incidents = root / "incidents.yaml"
        team = "receivers:\n  - {{name: team, webhook: {{url: 'http://127.0.0.1:{port}/team'}}}}\n"
        route = "route: {receiver: team, group_wait: 0s, group_by: ['...']}\n"
        incidents.write_text(team.format(port=old.port) + route)
        (root / "runbooks.yaml").write_text("remediation: {dry_run: true}\nrunbooks: []\n")
        daemon = _daemon(root, extra="incidents: incidents.yaml\nrunbooks: runbooks.yaml\n")
        daemon.start()
        _write(daemon, ssh_line(1, "10.7.0.1"))
        wait_until(lambda: old.bodies("/team"), what="the first notice, to the old URL")
        incidents.write_text(team.format(port=new.port) + route)
        (root / "runbooks.yaml").write_text(
            "remediation: {dry_run: true}\n"
            "runbooks:\n  - name: block\n    steps:\n      - exec: {argv: [/bin/true]}\n"
        )
        rules = daemon.root / "rules" / "test.yaml"
        rules.write_text(
            rules.read_text() + "  - id: sudo\n    match: {program: sudo}\n    actions:\n"
            "      - incident: {title: sudo, impact: low, urgency: low}\n"
            "      - remediate: {runbook: block}\n"
        )
        status, body = _post(daemon, "/api/v1/reload", ADMIN)
        assert (status, body["status"]) == (200, "ok"), body
        _write(daemon, ssh_line(2, "10.7.0.2"))
        _write(daemon, "Nov 25 10:00:09 web1 sudo: alice : 3 incorrect password attempts\n")
        wait_until(lambda: len(new.bodies("/team")) == 2, what="both notices at the new URL")
        assert len(old.bodies("/team")) == 1
        runs = wait_until(lambda: daemon.get("/api/v1/runs")["runs"], what="the dry run")
        assert [(r["runbook"], r["state"]) for r in runs] == [("block", "dry_run")]
        assert daemon.stop() == 0


def test_a_reload_the_swap_would_refuse_changes_nothing(tmp_path: Path) -> None:
    """Test a config known error named like one made through the API: the reload is refused
    before anything is swapped (a new rule in the same edit does not start matching), and
    the answer says which name clashes."""
    root = tmp_path / "d"
    root.mkdir(parents=True)
    (root / "incidents.yaml").write_text("users: []\n")
    daemon = _daemon(root, extra="incidents: incidents.yaml\n")
    daemon.start()
    made = {"name": "disk", "matchers": ["rule=ssh-failed"], "workaround": "wait"}
    req = urllib.request.Request(
        f"http://127.0.0.1:{daemon.port}/api/v1/known-errors",
        data=json.dumps(made).encode(),
        method="POST",
    )
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", f"Bearer {OPERATOR}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status in (200, 201)
    (root / "incidents.yaml").write_text(
        "known_errors:\n  - {name: disk, matchers: [rule=sudo], workaround: reboot}\n"
    )
    rules = daemon.root / "rules" / "test.yaml"
    rules.write_text(rules.read_text() + NEW_RULE)
    status, body = _post(daemon, "/api/v1/reload", ADMIN)
    assert status == 422, body
    assert "known error 'disk' was already made through the API" in body["errors"][0]
    _write(daemon, "Nov 25 10:00:09 web1 sudo: alice : 3 incorrect password attempts\n")
    _write(daemon, ssh_line(1, "10.7.0.1"))
    wait_until(lambda: daemon.total_count() == 1, what="the line after the sudo one")
    assert [i["rule"] for i in daemon.incidents()] == ["ssh-failed"]
    assert _metric(daemon, "tocsin_rules_loaded") == 4
    assert daemon.stop() == 0
