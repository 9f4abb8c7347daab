"""Incident management through the real daemon: real webhook, Slack, PagerDuty and SMTP
receivers, escalation to whoever is on call, operator changes over the API, and the outbox
surviving kill -9 between the commit and the send."""

from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from daemon import Daemon, free_port, wait_until
from receiverkit import http_receiver, smtp_receiver
from test_mqtt_live import Watcher
from test_silences_live import request

from mqttkit import Broker

pytestmark = pytest.mark.integration

ALICE = "alice-operator-token-0123456789abcdef"
VIEWER = "victor-viewer-token-0123456789abcdef"

INCIDENTS = """
lifecycle: {{reopen_window: 1h}}
users:
  - {{name: alice, email: alice@example.com, receivers: [mail]}}
oncall:
  - name: primary
    time_zone: UTC
    rotations: [{{name: all, start: "2026-01-05 00:00", length: 1w, members: [alice]}}]
receivers:
  - name: team
    webhook: {{url: "http://127.0.0.1:{hook}/team"}}
  - name: am
    webhook: {{url: "http://127.0.0.1:{hook}/am", format: alertmanager}}
  - name: chat
    slack: {{url: "http://127.0.0.1:{hook}/slack"}}
  - name: pd
    pagerduty: {{routing_key: R0UT1NGKEY, url: "http://127.0.0.1:{hook}/pd"}}
  - name: mail
    email: {{from: tocsin@example.com, smtp: {{host: 127.0.0.1, port: {smtp}, starttls: false}}}}
escalation_policies:
  - name: critical
    levels: [{{targets: [{{schedule: primary}}], delay: 1h}}]
route:
  receiver: team
  group_by: [rule]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - {{matchers: [priority=P1], receiver: pd, escalation: critical, continue: true}}
    - {{matchers: [priority=P1], receiver: chat, continue: true}}
    - {{matchers: [priority=P1], receiver: am}}
"""

DOWN = "Nov 25 10:00:00 r1 %LINK-3-UPDOWN: Interface Gi0/1, changed state to down\n"
UP = "Nov 25 10:05:00 r1 %LINK-3-UPDOWN: Interface Gi0/1, changed state to up\n"


def _daemon(root: Path, hook: int, smtp: int) -> Daemon:
    """A daemon with the incidents file above and two tokens (operator alice, a viewer)."""
    digest = {t: hashlib.sha256(t.encode()).hexdigest() for t in (ALICE, VIEWER)}
    (root / "tokens").write_text(
        f"alice operator sha256:{digest[ALICE]}\nvictor viewer sha256:{digest[VIEWER]}\n"
    )
    (root / "incidents.yaml").write_text(INCIDENTS.format(hook=hook, smtp=smtp))
    daemon = Daemon(root, extra="incidents: incidents.yaml\n")
    config = daemon.root / "tocsin.yaml"
    config.write_text(config.read_text().replace("port: ", "tokens_file: tokens, port: ", 1))
    return daemon


def _write(daemon: Daemon, line: str) -> None:
    with (daemon.root / "logs" / "router.log").open("a") as log:
        log.write(line)


def test_an_incident_reaches_every_receiver_and_operators_work_it(tmp_path: Path) -> None:
    """Test trigger, acknowledge and resolve end to end through real receivers."""
    smtp_port = free_port()
    with http_receiver() as hook, smtp_receiver(smtp_port) as mailbox:
        daemon = _daemon(tmp_path, hook.port, smtp_port)
        daemon.start()
        _write(daemon, DOWN)
        wait_until(lambda: hook.bodies("/pd") and hook.bodies("/am") and hook.bodies("/slack"),
                   what="the P1 to reach PagerDuty, Alertmanager and Slack receivers")  # fmt: skip
        (incident,) = daemon.incidents()
        trigger = hook.bodies("/pd")[0]
        assert (trigger["routing_key"], trigger["event_action"]) == ("R0UT1NGKEY", "trigger")
        assert trigger["payload"]["summary"].endswith("Gi0/1 down")
        assert trigger["payload"]["severity"] == "critical"
        am = hook.bodies("/am")[0]
        assert (am["version"], am["status"], am["receiver"]) == ("4", "firing", "am")
        assert am["alerts"][0]["labels"]["rule"] == "link-down"
        assert "Gi0/1 down" in hook.bodies("/slack")[0]["text"]
        assert hook.bodies("/team") == []  # the P1 routes do not continue to the root
        wait_until(lambda: mailbox.messages, what="alice, on call, to be paged by mail")
        recipients, mail = mailbox.messages[0]
        assert recipients == ["alice@example.com"]
        assert "Gi0/1 down" in str(mail["Subject"])

        path = f"/api/v1/incidents/{incident['id']}"
        assert request(daemon, "POST", f"{path}/acknowledge", {}, token=None)[0] == 401
        assert request(daemon, "POST", f"{path}/acknowledge", {}, token=VIEWER)[0] == 403
        status, acked = request(daemon, "POST", f"{path}/acknowledge", {"note": "on it"}, ALICE)
        assert (status, acked["state"]) == (200, "acknowledged")
        wait_until(lambda: len(hook.bodies("/pd")) >= 2, what="PagerDuty to hear the ack")
        ack = hook.bodies("/pd")[1]
        assert (ack["event_action"], ack["dedup_key"]) == ("acknowledge", trigger["dedup_key"])

        _write(daemon, UP)
        wait_until(lambda: len(hook.bodies("/pd")) >= 3, what="PagerDuty to hear the resolve")
        assert hook.bodies("/pd")[2]["event_action"] == "resolve"
        wait_until(lambda: len(hook.bodies("/am")) >= 3, what="the resolved Alertmanager notice")
        assert hook.bodies("/am")[-1]["status"] == "resolved"

        keys = hook.keys()
        assert len(keys) == len(set(keys)), "every notice has its own idempotency key"
        timeline = request(daemon, "GET", f"{path}/timeline", token=VIEWER)[1]["timeline"]
        said = [(e["kind"], e["actor"]) for e in timeline]
        assert ("state", "alice") in said
        assert ("escalate", "tocsin:escalation") in said
        assert ("notify", "notify:pd") in said
        assert [e["to"] for e in timeline if e["kind"] == "state"] == [
            "new", "acknowledged", "resolved",
        ]  # fmt: skip
        assert daemon.stop() == 0


def _outbox(daemon: Daemon) -> list[tuple[str, dict[str, Any]]]:
    with sqlite3.connect(f"file:{daemon.db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT channel, body FROM outbox ORDER BY id").fetchall()
    return [(channel, json.loads(body)) for channel, body in rows]


def _team_only(root: Path, hook: int) -> Daemon:
    """A daemon whose only receiver is the team webhook on `hook` (maybe not listening)."""
    (root / "incidents.yaml").write_text(
        "receivers:\n"
        f"  - {{name: team, webhook: {{url: 'http://127.0.0.1:{hook}/team', timeout: 2s}}}}\n"
        "route: {receiver: team, group_wait: 0s}\n"
    )
    return Daemon(root, extra="incidents: incidents.yaml\n")


def test_kill9_between_commit_and_send_delivers_exactly_once(tmp_path: Path) -> None:
    """Test that a notice committed but never sent is sent once after kill -9 and restart."""
    port = free_port()  # nobody listens here yet: every send fails before it is made
    daemon = _team_only(tmp_path, port)
    daemon.start()
    _write(daemon, DOWN)
    rows = wait_until(lambda: _outbox(daemon), what="the notice to be committed")
    wait_until(lambda: "tocsin_notifications_failed_total{" in daemon.metrics(),
               what="a failed send")  # fmt: skip
    ((channel, body),) = rows
    assert channel == "webhook:team"
    daemon.kill9()
    with http_receiver(port) as hook:
        daemon.start()
        wait_until(lambda: hook.requests, what="the notice to be sent after the restart")
        wait_until(lambda: not _outbox(daemon), what="the sent notice to leave the outbox")
        time.sleep(0.5)  # a second copy would come right behind the first
        assert hook.keys() == [body["key"]]
        assert hook.bodies("/team")[0]["key"] == body["key"]
        assert daemon.stop() == 0


def test_kill9_during_the_send_repeats_it_with_the_same_key(tmp_path: Path) -> None:
    """Test at-least-once: a send cut off by kill -9 is repeated with its idempotency key, so
    a receiver that drops repeats of a key delivers exactly one."""
    with http_receiver() as hook:
        hook.status = None  # take the request, never answer
        daemon = _team_only(tmp_path, hook.port)
        daemon.start()
        _write(daemon, DOWN)
        wait_until(lambda: hook.requests, what="the send to start")
        daemon.kill9()
        hook.status = 200
        daemon.start()
        wait_until(lambda: len(hook.requests) == 2, what="the repeat after the restart")
        wait_until(lambda: not _outbox(daemon), what="the outbox to empty")
        first, second = hook.keys()
        assert first == second
        delivered = {body["key"]: body for body in hook.bodies("/team")}
        assert len(delivered) == 1
        assert daemon.stop() == 0


def test_failed_sends_show_on_the_incident(tmp_path: Path) -> None:
    """Test that a receiver refusing a notice for good is on the incident's timeline."""
    with http_receiver() as hook:
        hook.status = 400
        daemon = _team_only(tmp_path, hook.port)
        daemon.start()
        _write(daemon, DOWN)
        wait_until(lambda: not _outbox(daemon) and hook.requests, what="the refused send")

        def failure() -> list[dict[str, Any]]:
            (incident,) = daemon.incidents()
            timeline = daemon.get(f"/api/v1/incidents/{incident['id']}/timeline")["timeline"]
            return [e for e in timeline if e["note"].startswith("not delivered")]

        (entry,) = wait_until(failure, what="the failure on the timeline")
        assert entry["kind"] == "notify"
        assert "HTTP 400" in entry["note"]
        assert 'tocsin_notifications_failed_total{kind="permanent",receiver="team"} 1.0' in (
            daemon.metrics()
        )
        assert daemon.stop() == 0


def test_resolved_incidents_close_after_auto_close_and_recurrence_reopens(
    tmp_path: Path,
) -> None:
    """Test lifecycle.reopen_window (a recurrence reopens) and auto_close (then it closes)."""
    (tmp_path / "incidents.yaml").write_text("lifecycle: {reopen_window: 1h, auto_close: 2s}\n")
    daemon = Daemon(tmp_path, extra="incidents: incidents.yaml\n")
    daemon.start()
    _write(daemon, DOWN)
    _write(daemon, UP)
    _write(daemon, DOWN.replace("10:00:00", "10:10:00"))  # 5 minutes after it was resolved
    (reopened,) = wait_until(
        lambda: [i for i in daemon.incidents() if i["reopened"] == 1], what="the reopen"
    )
    assert reopened["state"] == "new"
    assert reopened["count"] == 2
    _write(daemon, UP.replace("10:05:00", "10:15:00"))
    (closed,) = wait_until(
        lambda: [i for i in daemon.incidents() if i["state"] == "closed"], what="auto-close"
    )
    assert closed["id"] == reopened["id"]
    timeline = daemon.get(f"/api/v1/incidents/{closed['id']}/timeline")["timeline"]
    assert [(e["kind"], e["to"]) for e in timeline] == [
        ("state", "new"), ("state", "resolved"), ("reopen", "new"), ("state", "resolved"),
        ("state", "closed"),
    ]  # fmt: skip
    assert timeline[-1]["actor"] == "tocsin:auto-close"
    assert daemon.stop() == 0


def test_an_mqtt_receiver_publishes_through_the_daemons_broker_link(tmp_path: Path) -> None:
    """Test the mqtt channel: a notice published on a real mosquitto, as the template says."""
    broker = Broker(tmp_path / "broker")
    broker.start()
    watcher: Watcher | None = None
    try:
        watcher = Watcher(broker.port, "tocsin/#")
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "incidents.yaml").write_text(
            "receivers:\n"
            "  - name: bus\n"
            "    mqtt: {broker: alerts, topic: 'tocsin/{{ receiver }}/{{ action }}', qos: 1}\n"
            "route: {receiver: bus, group_wait: 0s}\n"
        )
        extra = (
            "incidents: incidents.yaml\nmqtt:\n  brokers:\n"
            f"    alerts: {{host: 127.0.0.1, port: {broker.port}, client_id: tocsin-notify}}\n"
        )
        daemon = Daemon(tmp_path / "d", extra=extra)
        daemon.start()
        _write(daemon, DOWN)
        ((topic, payload, qos, _),) = wait_until(lambda: watcher.got, what="the notice")
        body = json.loads(payload)
        assert (topic, qos, body["receiver"], body["action"]) == (
            "tocsin/bus/trigger", 1, "bus", "trigger",
        )  # fmt: skip
        assert [i["title"] for i in body["incidents"]] == ["Gi0/1 down"]
        assert daemon.stop() == 0
    finally:
        if watcher is not None:
            watcher.close()
        broker.stop(signal.SIGKILL)


def test_a_recurrence_after_a_restart_reopens_on_event_time(tmp_path: Path) -> None:
    """Test that the reopen window is judged on event time across a restart: yesterday's log,
    read today, still reopens what it resolved 5 minutes (of its time) before."""
    (tmp_path / "incidents.yaml").write_text("lifecycle: {reopen_window: 1h}\n")
    daemon = Daemon(tmp_path, extra="incidents: incidents.yaml\n")
    daemon.start()
    _write(daemon, DOWN)
    _write(daemon, UP)
    wait_until(lambda: daemon.incidents("resolved"), what="the resolve")
    assert daemon.stop() == 0
    daemon.start()
    _write(daemon, DOWN.replace("10:00:00", "10:10:00"))
    (incident,) = wait_until(lambda: daemon.incidents("open"), what="the recurrence")
    assert (incident["id"], incident["reopened"]) == (1, 1)
    assert daemon.stop() == 0
