"""The notifier on virtual time: grouped notices, escalation pages and SLA marks, rendered into
real receivers' outbox rows, from an incidents file as operators write it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tocsin.model import Incident, IncidentChange
from tocsin.notify.escalation import Escalator
from tocsin.notify.grouping import Dispatcher
from tocsin.notify.notifier import Notifier, Reaction
from tocsin.notify.settings import IncidentSettings, load_incident_settings
from tocsin.records.incidents import IncidentBook
from tocsin.records.priority import PriorityMatrix
from tocsin.yamlsrc import SourceError

T0 = 1_795_600_800.0  # 2026-11-25T10:00:00Z, a Wednesday

FILE = """
lifecycle: {reopen_window: 10m}
sla:
  warn_at: 50%
  priorities:
    P1: {response: 10m, resolution: 1h}
users:
  - {name: alice, email: alice@example.com, receivers: [page]}
  - {name: bob, email: bob@example.com, receivers: [page]}
oncall:
  - name: primary
    time_zone: UTC
    rotations:
      - {name: weekly, start: "2026-11-23 00:00", length: 1w, members: [alice]}
receivers:
  - name: team
    webhook: {url: "http://127.0.0.1:9/team"}
  - name: page
    webhook: {url: "http://127.0.0.1:9/page"}
escalation_policies:
  - name: critical
    levels:
      - {targets: [{schedule: primary}], delay: 5m}
      - {targets: [{user: bob}], delay: 5m}
    repeat: 1
    on_sla_warning: climb
route:
  receiver: team
  group_by: [service]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 1h
  routes:
    - {matchers: [priority=P1], escalation: critical, continue: true}
"""


def _settings(tmp_path: Path, text: str = FILE) -> IncidentSettings:
    path = tmp_path / "incidents.yaml"
    path.write_text(text)
    return load_incident_settings(path, brokers=())


class World:
    """A book and a notifier, moved by hand."""

    def __init__(self, settings: IncidentSettings) -> None:
        assert settings.route is not None
        self.book = IncidentBook(priorities=PriorityMatrix(), reopen_window=settings.reopen_window)
        self.notifier = Notifier(
            receivers=settings.receivers,
            dispatcher=Dispatcher(settings.route),
            escalator=Escalator(
                policies=settings.policies, schedules=settings.schedules, users=settings.users
            ),
            sla=settings.sla,
        )
        self.sent: list[tuple[float, str, dict[str, Any]]] = []  # (time, channel, json body)
        self.timeline: list[tuple[float, int, str, str]] = []  # (time, id, kind, note)

    def _take(self, reaction: Reaction, now: float) -> Reaction:
        for row in reaction.outbox:
            self.sent.append((now, row.channel, row.body["json"]))
        for change in reaction.changes:
            self.timeline.append((now, change.incident.id, change.op, change.note))
        for entry in reaction.history:
            self.timeline.append((now, entry.incident_id, entry.kind, entry.note))
        return reaction

    def change(self, change: IncidentChange | None, now: float) -> Reaction:
        assert change is not None
        return self._take(self.notifier.react([change], now), now)

    def open(self, key: str, now: float, impact: str = "high", service: str = "db") -> Incident:
        change = self.book.open(
            rule="disk", key=key, title=f"disk full on {key}", impact=impact, urgency="high",
            service=service, time=now, actor="rule:disk",
        )  # fmt: skip
        self.change(change, now)
        return change.incident

    def run(self, until: float, step: float = 1.0) -> None:
        """Tick every `step` seconds of virtual time up to `until`."""
        now = self.now
        while now < until:
            now = min(until, now + step)
            self._take(self.notifier.tick(now), now)
        self.now = until

    now = T0


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(_settings(tmp_path))
    w.now = T0
    return w


def _pages(world: World) -> list[tuple[float, str, str, str]]:
    return [
        (t - T0, ch, body["reason"], (body.get("user") or {}).get("name", ""))
        for t, ch, body in world.sent
        if ch == "webhook:page"
    ]


def test_a_p1_pages_on_call_at_once_then_climbs_and_repeats_until_acked(world: World) -> None:
    """Test escalation: level 1 now, level 2 after 5m, one repeat, stop on acknowledge."""
    incident = world.open("db1", T0)
    world.run(T0 + 11 * 60)
    assert _pages(world) == [
        (0.0, "webhook:page", "escalation level 1", "alice"),
        (300.0, "webhook:page", "escalation level 2", "bob"),
        # the SLA response warning (50% of 10m) climbs at once: already at the last level
        (300.0, "webhook:page", "escalation level 2 (SLA warning)", "bob"),
        (600.0, "webhook:page", "escalation level 2 (repeat 1)", "bob"),
    ]
    notes = [n for _, i, kind, n in world.timeline if kind == "escalate" and i == incident.id]
    assert notes[0] == "critical level 1: notified page for alice (schedule primary)"
    assert "escalation policy 'critical' has no more levels or repeats" in notes
    assert incident.escalation is not None
    assert incident.escalation.next_at is None


def test_acknowledging_stops_the_climb_and_tells_the_group(world: World) -> None:
    """Test that an ack stops the timed climb (only the resolution SLA warning still climbs,
    hierarchically) and the team hears 'acknowledge'."""
    incident = world.open("db1", T0)
    world.run(T0 + 60)
    acked = world.book.transition(incident, "acknowledged", time=T0 + 60, actor="alice")
    world.change(acked, T0 + 60)
    world.run(T0 + 3600)
    assert [(t, reason) for t, _, reason, _ in _pages(world)] == [
        (0.0, "escalation level 1"),
        (60.0, "acknowledged"),  # alice, paged, hears it was taken
        (1800.0, "escalation level 2 (SLA warning)"),
    ]
    team = [(t - T0, b["action"], b["reason"]) for t, ch, b in world.sent if ch == "webhook:team"]
    assert team == [(30.0, "trigger", "new"), (330.0, "acknowledge", "changed")]


def test_sla_marks_are_timeline_entries_events_and_metrics(world: World) -> None:
    """Test response warning at 50% and breach at 100%, resolution too, each once."""
    incident = world.open("db1", T0)
    events = []
    now = T0
    while now < T0 + 3700:
        now += 10
        reaction = world.notifier.tick(now)
        events.extend(
            (now - T0, e.fields["sla"], e.fields["mark"], e.level) for e in reaction.events
        )
    assert events == [
        (300.0, "response", "warning", "warning"),
        (600.0, "response", "breach", "err"),
        (1800.0, "resolution", "warning", "warning"),
        (3600.0, "resolution", "breach", "err"),
    ]
    assert incident.sla_fired == [
        "response:warning", "response:breach", "resolution:warning", "resolution:breach",
    ]  # fmt: skip


def test_an_ack_in_time_means_no_response_marks(world: World) -> None:
    """Test that a response met before its warning fires nothing for it."""
    incident = world.open("db1", T0)
    world.book.transition(incident, "acknowledged", time=T0 + 100, actor="alice")
    marks = []
    for step in range(1, 400):
        reaction = world.notifier.tick(T0 + step * 10)
        marks.extend(e.fields["sla"] + ":" + e.fields["mark"] for e in reaction.events)
    assert marks == ["resolution:warning", "resolution:breach"]


def test_a_burst_is_one_grouped_notice_and_resolution_follows(world: World) -> None:
    """Test group_wait batching by service, then the resolved notice after group_interval."""
    first = world.open("db1", T0, impact="low")
    world.open("db2", T0 + 5, impact="low")
    world.open("web1", T0 + 6, impact="low", service="web")
    world.run(T0 + 60)
    team = [
        (t - T0, b["group_labels"], [i["id"] for i in b["incidents"]]) for t, _, b in world.sent
    ]
    assert team == [
        (30.0, {"service": "db"}, [1, 2]),
        (36.0, {"service": "web"}, [3]),
    ]
    world.change(world.book.resolve(first.fingerprint, time=T0 + 100, actor="rule:clear"), T0 + 100)
    world.run(T0 + 400)
    last = world.sent[-1][2]
    assert (world.sent[-1][0] - T0, last["action"], last["reason"]) == (330.0, "trigger", "changed")
    assert [(i["id"], i["state"]) for i in last["incidents"]] == [(2, "new"), (1, "resolved")]
    assert not any(kind == "escalate" for _, _, kind, _ in world.timeline)  # P4: no policy


def test_a_muted_incident_is_neither_grouped_nor_paged_until_unmuted(world: World) -> None:
    """Test that muting holds notices and pages; the end of the mute starts them."""
    change = world.book.open(
        rule="disk", key="db1", title="t", impact="high", urgency="high", service="db",
        time=T0, actor="rule:disk",
    )  # fmt: skip
    change.incident.muted = "silence abc"
    world.change(change, T0)
    world.run(T0 + 120)
    assert world.sent == []
    change.incident.muted = ""
    world.change(IncidentChange("mute", change.incident, T0 + 120, 1, "mute:ended"), T0 + 120)
    world.run(T0 + 200)
    assert [(t - T0, ch) for t, ch, _ in world.sent] == [
        (120.0, "webhook:page"),
        (120.0, "webhook:team"),  # its group's group_wait passed while it was muted
    ]


def test_notices_carry_stable_distinct_idempotency_keys(world: World) -> None:
    """Test that every row has a key and none repeats."""
    world.open("db1", T0)
    world.run(T0 + 3 * 3600, step=30.0)
    keys = [body["key"] for _, _, body in world.sent]
    assert len(keys) == len(set(keys)) >= 5
    assert all(json.dumps(k) for k in keys)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "lifecycle: {reopen_window: soon}\n",
            "incidents.yaml:1:28: 'reopen_window' must be a duration",
        ),
        ("lifecycle: {samples: 5000}\n", "incidents.yaml:1:\\d+: 'samples' must be 0..1000"),
        ("lifecycle: {auto_close: 0s}\n", "'auto_close' must be positive, or off"),
        ("routes: {}\n", "unknown incidents file key 'routes'"),
        (
            "receivers: [{name: a, webhook: {url: 'http://x/'}}]\n"
            "escalation_policies: [{name: p, levels: [{targets: [{receiver: a}]}]}]\n",
            "escalation policies page nobody without a 'route' that names them",
        ),
    ],
)
def test_file_errors_name_the_place(tmp_path: Path, text: str, message: str) -> None:
    """Test the incidents file's own errors (the sections' parsers test theirs)."""
    with pytest.raises(SourceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _settings(tmp_path, text)


def test_whoever_was_paged_hears_the_resolve_once_with_the_same_dedup_key(world: World) -> None:
    """Test that escalation pages are closed at the receiver (PagerDuty's dedup key)."""
    incident = world.open("db1", T0)
    world.run(T0 + 301)
    world.change(world.book.resolve(incident.fingerprint, time=T0 + 400, actor="x"), T0 + 400)
    closed = world.book.transition(incident, "closed", time=T0 + 500, actor="x")
    world.change(closed, T0 + 500)
    pages = [(t - T0, b["action"], b["group_key"], (b.get("user") or {}).get("name"))
             for t, ch, b in world.sent if ch == "webhook:page"]  # fmt: skip
    assert pages[-2:] == [
        (400.0, "resolve", "incident-1", "alice"),
        (400.0, "resolve", "incident-1", "bob"),
    ]
    assert [p[2] for p in pages] == ["incident-1"] * len(pages)


def test_a_mute_pauses_paging_and_its_end_starts_over(world: World) -> None:
    """Test that a silence arriving after the first page stops the climb; its end re-pages."""
    incident = world.open("db1", T0)
    world.run(T0 + 60)
    incident.muted = "silence s1"
    world.change(IncidentChange("mute", incident, T0 + 60, 1, "silence:s1"), T0 + 60)
    world.run(T0 + 1200)
    assert [reason for _, _, reason, _ in _pages(world)] == ["escalation level 1"]
    incident.muted = ""
    world.change(IncidentChange("mute", incident, T0 + 1200, 1, "mute:ended"), T0 + 1200)
    world.run(T0 + 1500)
    assert [(t, reason) for t, _, reason, _ in _pages(world)] == [
        (0.0, "escalation level 1"),
        (1200.0, "escalation level 1"),
        (1500.0, "escalation level 2"),
    ]


def test_sla_marks_fire_without_any_escalation(tmp_path: Path) -> None:
    """Test SLA timers for incidents no policy pages, opened after an idle tick."""
    text = FILE.replace("escalation: critical, ", "")
    world = World(_settings(tmp_path, text.replace(
        "escalation_policies:", "unused_policies:"
    ).split("unused_policies:")[0] + "route:" + text.split("route:")[1]))  # fmt: skip
    world.notifier.tick(T0 - 10)
    incident = world.open("db1", T0)
    world.run(T0 + 700, step=10.0)
    assert incident.sla_fired == ["response:warning", "response:breach"]


def test_a_tick_looks_only_at_incidents_whose_moment_came(tmp_path: Path) -> None:
    """Test that 10,000 open incidents do not make each tick scan them all."""
    world = World(_settings(tmp_path))
    changes = [  # P4: no SLA, no policy; one P1 below
        world.book.open(
            rule="disk",
            key=f"h{n}",
            title="t",
            impact="low",
            urgency="high",
            service="db",
            time=T0,
            actor="rule:disk",
        )
        for n in range(10_000)
    ]
    world.notifier.react(changes, T0)  # one engine batch
    world.open("db0", T0 + 10_000)
    started = time.perf_counter()
    for step in range(600):
        world.notifier.tick(T0 + 10_000 + step)
    assert time.perf_counter() - started < 0.5
    assert len(world.notifier._due_at) == 1
