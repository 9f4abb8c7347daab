"""Service requests and access grants through the real daemon: validated, approved and
fulfilled by a real runbook; a time-bound grant provisioned, kept across a restart and
revoked at expiry; a grant the policy forbids denied and audited."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from daemon import Daemon, wait_until
from receiverkit import http_receiver
from test_incidents_live import ALICE, VIEWER
from test_silences_live import request

pytestmark = pytest.mark.integration

OLGA = "olga-operator-token-0123456789abcdef"

SCRIPTS = Path(__file__).resolve().parents[1] / "runbooks" / "scripts"


def _daemon(root: Path, out: Path) -> Daemon:
    digest = {t: hashlib.sha256(t.encode()).hexdigest() for t in (ALICE, VIEWER, OLGA)}
    root.mkdir(parents=True, exist_ok=True)
    (root / "tokens").write_text(
        f"alice operator sha256:{digest[ALICE]}\nvictor viewer sha256:{digest[VIEWER]}\n"
        f"olga operator sha256:{digest[OLGA]}\n"
    )
    (root / "incidents.yaml").write_text("users:\n  - {name: alice}\n  - {name: bob}\n")
    record = f"[{sys.executable}, {SCRIPTS / 'record_argv.py'}"
    (root / "runbooks.yaml").write_text(
        "runbooks:\n"
        f"  - name: restart-app\n    steps:\n      - exec: {{argv: {record}, {out / 'request.json'}, "
        "'{{ request.app }}']}\n"
        f"  - name: grant-ssh\n    steps:\n      - exec: {{argv: {record}, {out / 'grant.json'}, "
        "'{{ access.subject }}', '{{ access.role }}']}\n"
        f"  - name: revoke-ssh\n    steps:\n      - exec: {{argv: {record}, {out / 'revoke.json'}, "
        "'{{ access.subject }}']}\n"
        "  - name: revoke-vpn\n    steps:\n      - exec: {argv: [/bin/false]}\n"
        "catalog:\n"
        "  - name: restart-app\n"
        "    fields: {app: {type: string, required: true, pattern: '[a-z]+'}}\n"
        "    approval: {role: operator}\n"
        "    runbook: restart-app\n"
        "    sla: 1h\n"
        "access:\n"
        "  roles:\n"
        "    - name: ssh\n"
        "      rights: [ssh:login]\n"
        "      holders: [user:alice]\n"
        "      max_duration: 1h\n"
        "      provision: {grant: grant-ssh, revoke: revoke-ssh}\n"
        "    - name: vpn\n"
        "      rights: [vpn:connect]\n"
        "      holders: [user:alice]\n"
        "      max_duration: 1h\n"
        "      provision: {grant: grant-ssh, revoke: revoke-vpn}\n"
        "  revoke_retry: {attempts: 2, first: 1s, most: 1s}\n"
    )
    daemon = Daemon(root, extra="incidents: incidents.yaml\nrunbooks: runbooks.yaml\n")
    config = daemon.root / "tocsin.yaml"
    config.write_text(config.read_text().replace("port: ", "tokens_file: tokens, port: ", 1))
    return daemon


def _json(path: Path) -> Any:
    return path.exists() and json.loads(path.read_text())


def test_a_request_is_validated_approved_and_fulfilled(tmp_path: Path) -> None:
    """Test the catalog path: a bad input refused with the reason, approval by role, the
    fulfilment runbook really running with the input."""
    daemon = _daemon(tmp_path / "d", tmp_path)
    daemon.start()
    status, body = request(
        daemon, "POST", "/api/v1/requests", {"item": "restart-app", "input": {"app": "Bad!"}}, ALICE
    )
    assert status == 400, body
    assert "app" in body["error"]
    status, made = request(
        daemon, "POST", "/api/v1/requests", {"item": "restart-app", "input": {"app": "web"}}, ALICE
    )
    assert (status in (200, 201), made["state"]) == (True, "submitted"), made
    path = f"/api/v1/requests/{made['id']}"
    assert request(daemon, "POST", f"{path}/approve", {}, VIEWER)[0] == 403
    status, own = request(daemon, "POST", f"{path}/approve", {}, ALICE)
    assert (status, own["error"]) == (
        403, f"request {made['id']} was submitted by alice: somebody else must approve it"
    )  # fmt: skip
    status, approved = request(daemon, "POST", f"{path}/approve", {}, OLGA)
    assert status == 200, approved
    got = wait_until(lambda: _json(tmp_path / "request.json"), what="the fulfilment run")
    assert got["argv"] == ["web"]
    done = wait_until(
        lambda: (
            request(daemon, "GET", path, token=VIEWER)[1]["state"] == "fulfilled"
            and request(daemon, "GET", path, token=VIEWER)[1]
        )
    )
    assert [e["to"] for e in done["timeline"]][-1] == "fulfilled"
    assert daemon.stop() == 0


def test_a_time_bound_grant_survives_a_restart_and_is_revoked_at_expiry(tmp_path: Path) -> None:
    """Test provisioning, restart, expiry with the revoke runbook, and the audit log; and a
    grant the policy forbids, denied with its reason and nothing run."""
    daemon = _daemon(tmp_path / "d", tmp_path)
    daemon.start()
    status, denied = request(
        daemon, "POST", "/api/v1/access/requests", {"role": "ssh", "subject": "bob"}, ALICE
    )
    assert status in (200, 201, 403), denied
    assert (denied["verdict"], denied["grant"]) == ("denied", None)
    assert denied["reason"].startswith("bob may not hold ssh (holders: user alice)")
    status, granted = request(
        daemon, "POST", "/api/v1/access/requests",
        {"role": "ssh", "subject": "alice", "duration": 4}, ALICE,
    )  # fmt: skip
    assert status in (200, 201), granted
    got = wait_until(lambda: _json(tmp_path / "grant.json"), what="the grant runbook")
    assert got["argv"] == ["alice", "ssh"]
    assert granted["verdict"] == "allowed"
    grant_id = granted["grant"]["id"]
    wait_until(
        lambda: (
            request(daemon, "GET", f"/api/v1/access/grants/{grant_id}", token=VIEWER)[1]["state"]
            == "active"
        ),
        what="the grant to be active",
    )
    assert daemon.stop() == 0
    assert not (tmp_path / "revoke.json").exists()
    daemon.start()
    got = wait_until(lambda: _json(tmp_path / "revoke.json"), timeout=20, what="the expiry")
    assert got["argv"] == ["alice"]
    wait_until(
        lambda: (
            request(daemon, "GET", f"/api/v1/access/grants/{grant_id}", token=VIEWER)[1]["state"]
            == "expired"
        ),
        what="the grant to be expired",
    )
    audit = request(daemon, "GET", "/api/v1/access/audit?limit=50", token=VIEWER)[1]["audit"]
    actions = [(e["action"], e["subject"]) for e in reversed(audit)]
    assert ("denied", "bob") in actions
    assert [a for a, s in actions if s == "alice"] == [
        "requested", "approved", "granted", "expired", "revoked",
    ]  # fmt: skip
    assert daemon.stop() == 0


RULES = r"""
rules:
  - id: app-hung
    match: {message: {regex: 'app (?P<app>\S+) hung'}}
    key: "{{ app }}"
    actions:
      - request: {item: restart-app, input: {app: "{{ app }}"}}
  - id: ssh-abuse
    match: {message: {regex: 'abuse by (?P<user>\S+)'}}
    key: "{{ user }}"
    actions:
      - access: {revoke: "*", subject: "{{ user }}"}
"""


def test_rules_raise_requests_and_revoke_access(tmp_path: Path) -> None:
    """Test the request and access actions: a log line raises a request (validated as text),
    another revokes a user's grants; both survive as outbox rows, so nothing is lost."""
    daemon = _daemon(tmp_path / "d", tmp_path)
    (daemon.root / "rules" / "test.yaml").write_text(RULES)
    daemon.start()
    _, granted = request(
        daemon, "POST", "/api/v1/access/requests",
        {"role": "ssh", "subject": "alice", "duration": 3600}, ALICE,
    )  # fmt: skip
    assert granted["verdict"] == "allowed", granted
    wait_until(lambda: _json(tmp_path / "grant.json"), what="the grant runbook")
    with (daemon.root / "logs" / "app.log").open("a") as log:
        log.write("Nov 25 10:00:00 web1 watchdog: app Web hung\n")  # fails the pattern
        log.write("Nov 25 10:00:01 web1 watchdog: app web hung\n")
        log.write("Nov 25 10:00:02 bastion sshd: abuse by alice\n")
    made = wait_until(
        lambda: request(daemon, "GET", "/api/v1/requests", token=VIEWER)[1]["requests"],
        what="the request the rule raised",
    )
    assert [(r["item"], r["input"], r["requested_by"]) for r in made] == [
        ("restart-app", {"app": "web"}, "rule:app-hung")
    ]
    assert "service_ask_refused" in daemon.output()  # "Web" did not fit: logged, not queued
    wait_until(lambda: _json(tmp_path / "revoke.json"), what="the revoke runbook")

    def audit() -> list[dict[str, Any]]:
        path = "/api/v1/access/audit?subject=alice"
        return list(request(daemon, "GET", path, token=VIEWER)[1]["audit"])

    wait_until(lambda: [e for e in audit() if e["action"] == "revoked"], what="the revoke")
    assert "rule:ssh-abuse" in json.dumps(audit())
    assert daemon.stop() == 0


def test_a_request_whose_run_a_kill_cut_off_fails_instead_of_hanging(tmp_path: Path) -> None:
    """Test that after kill -9 mid-fulfilment the request ends failed (its run interrupted),
    not stuck in fulfilling."""
    root = tmp_path / "d"
    daemon = _daemon(root, tmp_path)
    slow = tmp_path / "slow.py"
    slow.write_text("import sys, time\nopen(sys.argv[1], 'w').write('x')\ntime.sleep(60)\n")
    text = (root / "runbooks.yaml").read_text()
    start = text.index("  - name: restart-app")
    end = text.index("  - name: grant-ssh")
    text = (
        text[:start]
        + "  - name: restart-app\n    steps:\n"
        + f"      - exec: {{argv: [{sys.executable}, {slow}, {tmp_path / 'started'}]}}\n"
        + text[end:]
    )
    (root / "runbooks.yaml").write_text(text)
    daemon.start()
    _, made = request(
        daemon, "POST", "/api/v1/requests", {"item": "restart-app", "input": {"app": "web"}}, ALICE
    )
    request(daemon, "POST", f"/api/v1/requests/{made['id']}/approve", {}, OLGA)
    wait_until((tmp_path / "started").exists, what="the fulfilment to start")
    daemon.kill9()
    daemon.start()
    path = f"/api/v1/requests/{made['id']}"
    failed = wait_until(
        lambda: (
            (body := request(daemon, "GET", path, token=VIEWER)[1])["state"] == "failed" and body
        ),
        what="the request to fail",
    )
    assert "interrupted" in failed["reason"]
    assert daemon.stop() == 0


def test_a_slow_fulfilment_breaches_the_sla_and_escalates(tmp_path: Path) -> None:
    """Test the request SLA: a runbook slower than the item's SLA raises an incident paged
    by the item's escalation policy, resolved when the request is fulfilled."""
    root = tmp_path / "d"
    with http_receiver() as hook:
        daemon = _daemon(root, tmp_path)
        (root / "incidents.yaml").write_text(
            "users:\n  - {name: alice, receivers: [page]}\n  - {name: bob}\n"
            "receivers:\n"
            f"  - {{name: page, webhook: {{url: 'http://127.0.0.1:{hook.port}/page'}}}}\n"
            "escalation_policies:\n"
            "  - {name: requests, levels: [{targets: [{user: alice}], delay: 1h}]}\n"
            "route: {receiver: page, group_wait: 1h}\n"
        )
        slow = tmp_path / "slow.py"
        slow.write_text("import time\ntime.sleep(4)\n")
        text = (root / "runbooks.yaml").read_text()
        start = text.index("  - name: restart-app")
        end = text.index("  - name: grant-ssh")
        text = (
            text[:start]
            + "  - name: restart-app\n    steps:\n"
            + f"      - exec: {{argv: [{sys.executable}, {slow}]}}\n"
            + text[end:]
        ).replace("    sla: 1h\n", "    sla: 1s\n    escalation: requests\n")
        (root / "runbooks.yaml").write_text(text)
        daemon.start()
        _, made = request(
            daemon, "POST", "/api/v1/requests", {"item": "restart-app", "input": {"app": "web"}},
            ALICE,
        )  # fmt: skip
        request(daemon, "POST", f"/api/v1/requests/{made['id']}/approve", {}, OLGA)
        (page,) = wait_until(lambda: hook.bodies("/page"), what="the page for the breach")
        assert page["reason"] == "escalation level 1"
        assert page["incidents"][0]["title"] == (
            f"Request {made['id']} (restart-app) not fulfilled within its SLA"
        )
        assert page["user"]["name"] == "alice"
        (incident,) = wait_until(
            lambda: [i for i in daemon.incidents() if i["state"] == "resolved"],
            timeout=20,
            what="the incident to resolve with the fulfilment",
        )
        assert incident["rule"] == "request-sla"
        path = f"/api/v1/requests/{made['id']}"
        assert request(daemon, "GET", path, token=VIEWER)[1]["sla_breached"] is True
        assert daemon.stop() == 0


def test_a_revoke_that_keeps_failing_is_retried_then_raises_an_incident(tmp_path: Path) -> None:
    """Test a revoke runbook that always fails: tried again on the timer (revoke_retry: 2
    attempts, 1s apart), then the grant ends failed and a P1 incident says the subject may
    still hold the role."""
    daemon = _daemon(tmp_path / "d", tmp_path)
    daemon.start()
    status, granted = request(
        daemon, "POST", "/api/v1/access/requests",
        {"role": "vpn", "subject": "alice", "duration": 600}, ALICE,
    )  # fmt: skip
    assert status in (200, 201), granted
    grant = f"/api/v1/access/grants/{granted['grant']['id']}"
    wait_until(lambda: request(daemon, "GET", grant, token=VIEWER)[1]["state"] == "active")
    status, _ = request(
        daemon, "POST", "/api/v1/access/revoke",
        {"role": "vpn", "subject": "alice", "why": "left"}, OLGA,
    )  # fmt: skip
    assert status == 200
    wait_until(
        lambda: request(daemon, "GET", grant, token=VIEWER)[1]["state"] == "failed",
        timeout=20,
        what="the grant to fail after its retries",
    )
    incidents = wait_until(daemon.incidents, what="the access-revoke incident")
    assert [(i["rule"], i["priority"], i["title"]) for i in incidents] == [
        ("access-revoke", "P1",
         "Revoke of vpn from alice failed 2 times; they may still hold it"),
    ]  # fmt: skip
    audit = request(daemon, "GET", "/api/v1/access/audit?limit=50", token=VIEWER)[1]["audit"]
    failed = [e["why"] for e in reversed(audit) if e["action"] == "failed"]
    assert len(failed) == 2
    assert "attempt 1 of 2, trying again at" in failed[0]
    assert failed[1].endswith("alice may still hold vpn: check by hand")
    metrics = daemon.metrics()
    assert 'tocsin_access_audit_total{action="failed"} 2.0' in metrics
    assert daemon.stop() == 0
