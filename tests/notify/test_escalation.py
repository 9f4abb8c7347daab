"""Escalation: climbing on time, stopping on ack, repeats, on-call handoffs, SLA climbs, parsing."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

import pytest

from tocsin.model import Escalation, Incident, IncidentState
from tocsin.notify.escalation import (
    EscalationPolicy,
    Escalator,
    Step,
    parse_escalation_policies,
)
from tocsin.notify.users import parse_users
from tocsin.oncall.schedule import parse_oncall
from tocsin.yamlsrc import Mark, SourceError, load_yaml, value_mark

BERLIN = ZoneInfo("Europe/Berlin")
MINUTE = 60.0
RECEIVERS = ("mail-alice", "sms-alice", "mail-bob", "mail-carol", "mail-boss", "ops-slack")

# primary: alice on Mondays, carol on Tuesdays, alice again on Wednesdays, from 09:00 each day.
# office: bob, on weekdays from 09:00 to 17:00 only.
PEOPLE = """\
users:
  - {name: alice, full_name: Alice A, email: alice@example.com, receivers: [mail-alice, sms-alice]}
  - {name: bob, receivers: [mail-bob]}
  - {name: carol, receivers: [mail-carol]}
  - {name: boss, receivers: [mail-boss]}
  - {name: eve}
oncall:
  - name: primary
    time_zone: Europe/Berlin
    rotations:
      - {name: daily, start: '2026-11-23 09:00', length: 1d, members: [alice, carol]}
  - name: office
    time_zone: Europe/Berlin
    rotations:
      - {name: day, start: '2026-11-23 09:00', length: 1w, members: [bob],
         active: {weekdays: ['mon:fri'], from: '09:00', to: '17:00'}}
  - name: outside
    time_zone: UTC
    rotations:
      - {name: r, start: '2026-11-23 09:00', length: 1w, members: [alice, dave]}
  - name: silent
    time_zone: UTC
    rotations:
      - {name: r, start: '2026-11-23 09:00', length: 1w, members: [bob]}
    overrides:
      - {who: eve, from: '2026-12-01 00:00', to: '2026-12-02 00:00'}
"""

POLICIES = """\
escalation_policies:
  - name: critical
    levels:
      - targets: [{schedule: primary}]
        delay: 10m
      - targets: [{schedule: primary}, {user: boss}, {receiver: ops-slack}]
        delay: 15m
    repeat: 2
    on_sla_warning: climb
  - name: daytime
    levels:
      - targets: [{schedule: office}, {receiver: ops-slack}]
        delay: 5m
      - targets: [{schedule: office}]
  - name: doubled
    levels:
      - targets: [{schedule: primary}, {user: alice}, {user: carol}]
"""


def parse(policies: str = POLICIES) -> Escalator:
    """Parse people and policies from one config file and build an escalator."""
    data = load_yaml(PEOPLE + policies, name="incidents.yaml")

    def at(key: str) -> Mark:
        return value_mark(data, key, data.mark)

    users = parse_users(data["users"], at("users"), receivers=RECEIVERS)
    schedules = parse_oncall(data["oncall"], at("oncall"))
    found = parse_escalation_policies(
        data["escalation_policies"],
        at("escalation_policies"),
        receivers=RECEIVERS,
        schedules=schedules,
        users=users,
    )
    return Escalator(policies=found, schedules=schedules, users=users)


def at(text: str) -> float:
    """Return epoch seconds of a Berlin wall time like '2026-11-25 08:45'."""
    return datetime.datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


def incident() -> Incident:
    """Return a new, unacknowledged incident."""
    return Incident(
        id=7,
        fingerprint="r:k",
        rule="r",
        key="k",
        title="db down",
        state=IncidentState.NEW,
        priority="P1",
        impact="high",
        urgency="high",
        first_seen=0.0,
        last_seen=0.0,
    )


def paged(step: Step) -> list[tuple[str, str | None, int, str]]:
    """Show a step's targets as (receiver, user name, level, via)."""
    return [
        (t.receiver, None if t.user is None else t.user.name, t.level, t.via) for t in step.targets
    ]


def test_climbs_a_level_when_nobody_acknowledges_in_time() -> None:
    """Test that level 2 is paged exactly when level 1's delay runs out, not a second before."""
    escalator, target = parse(), incident()
    opened = at("2026-11-25 08:40")  # a Wednesday; carol is on call until 09:00
    first = escalator.start(target, "critical", opened)
    assert paged(first) == [("mail-carol", "carol", 0, "schedule primary")]
    assert first.reason == "escalation level 1"
    assert target.escalation == Escalation("critical", level=0, next_at=opened + 10 * MINUTE)
    assert escalator.due(target, opened + 10 * MINUTE - 1) == Step()
    second = escalator.due(target, opened + 10 * MINUTE)
    assert paged(second) == [
        ("mail-carol", "carol", 1, "schedule primary"),
        ("mail-boss", "boss", 1, "user boss"),
        ("ops-slack", None, 1, "receiver ops-slack"),
    ]
    assert (second.reason, second.notes) == ("escalation level 2", ())
    assert target.escalation == Escalation("critical", level=1, next_at=opened + 25 * MINUTE)


def test_repeats_the_last_level_then_ends_with_a_note() -> None:
    """Test that `repeat: 2` pages the last level twice more, a delay apart, then stops."""
    escalator, target = parse(), incident()
    opened = at("2026-11-25 10:00")
    escalator.start(target, "critical", opened)
    escalator.due(target, opened + 10 * MINUTE)
    repeat = escalator.due(target, opened + 25 * MINUTE)
    assert repeat.reason == "escalation level 2 (repeat 1)"
    assert repeat.notes == ()
    assert target.escalation == Escalation("critical", 1, opened + 40 * MINUTE, rounds=1)
    last = escalator.due(target, opened + 40 * MINUTE)
    assert last.reason == "escalation level 2 (repeat 2)"
    assert len(last.targets) == 4  # alice twice (mail, sms), boss, slack
    assert last.notes == ("escalation policy 'critical' has no more levels or repeats",)
    assert target.escalation == Escalation("critical", 1, None, rounds=2)
    assert escalator.due(target, opened + 1000 * MINUTE) == Step()


def test_schedule_is_asked_when_each_level_pages() -> None:
    """Test that the 09:00 handoff between two pages sends the next page to the new person."""
    escalator, target = parse(), incident()
    opened = at("2026-11-25 08:50")
    assert paged(escalator.start(target, "critical", opened))[0][1] == "carol"
    after_handoff = escalator.due(target, opened + 10 * MINUTE)  # 09:00
    assert paged(after_handoff)[:2] == [
        ("mail-alice", "alice", 1, "schedule primary"),
        ("sms-alice", "alice", 1, "schedule primary"),
    ]
    assert after_handoff.targets[0].user is not None
    assert after_handoff.targets[0].user.as_dict() == {
        "name": "alice",
        "full_name": "Alice A",
        "email": "alice@example.com",
    }


def test_acknowledged_or_resolved_incidents_stop_escalating() -> None:
    """Test that an ack (or a resolve) stops the climb at the next check, and stop() at once."""
    escalator = parse()
    for state in (IncidentState.ACKNOWLEDGED, IncidentState.RESOLVED, IncidentState.CLOSED):
        target = incident()
        escalator.start(target, "critical", at("2026-11-25 10:00"))
        target.state = state
        assert escalator.due(target, at("2026-11-25 11:00")) == Step()
        assert target.escalation == Escalation("critical", level=0, next_at=None)
    target = incident()
    escalator.start(target, "critical", at("2026-11-25 10:00"))
    escalator.stop(target)
    assert target.escalation is not None
    assert target.escalation.next_at is None
    assert escalator.due(target, at("2026-11-25 11:00")) == Step()
    escalator.stop(incident())  # no escalation: nothing to stop


def test_a_long_pause_climbs_one_level_and_restarts_the_delay() -> None:
    """Test that catching up hours late pages only the next level, then waits a full delay."""
    escalator, target = parse(), incident()
    opened = at("2026-11-25 10:00")
    escalator.start(target, "critical", opened)
    late = opened + 300 * MINUTE
    step = escalator.due(target, late)
    assert step.reason == "escalation level 2"
    assert target.escalation == Escalation("critical", level=1, next_at=late + 15 * MINUTE)


def test_nobody_on_call_is_noted_and_the_rest_still_paged() -> None:
    """Test that a schedule with nobody on call adds a note while the receiver is paged."""
    escalator, target = parse(), incident()
    saturday = at("2026-11-28 12:00")
    step = escalator.start(target, "daytime", saturday)
    assert paged(step) == [("ops-slack", None, 0, "receiver ops-slack")]
    assert step.notes == ("schedule 'office' has nobody on call",)
    quiet = escalator.due(target, saturday + 5 * MINUTE)
    assert quiet.targets == ()
    assert quiet.notes == (
        "schedule 'office' has nobody on call",
        "escalation level 2 of policy 'daytime' paged nobody",
        "escalation policy 'daytime' has no more levels or repeats",
    )
    weekday = incident()
    step = escalator.start(weekday, "daytime", at("2026-11-27 12:00"))
    assert paged(step)[0] == ("mail-bob", "bob", 0, "schedule office")


def test_one_page_per_receiver_and_person_within_a_level() -> None:
    """Test that alice, on call and also named, is paged once per receiver (via the schedule)."""
    escalator, target = parse(), incident()
    step = escalator.start(target, "doubled", at("2026-11-25 12:00"))
    assert paged(step) == [
        ("mail-alice", "alice", 0, "schedule primary"),
        ("sms-alice", "alice", 0, "schedule primary"),
        ("mail-carol", "carol", 0, "user carol"),
    ]
    # A single level without repeats never climbs.
    assert target.escalation == Escalation("doubled", level=0, next_at=None)


def test_sla_warning_climbs_at_once_when_the_policy_says_so() -> None:
    """Test that climb() pages the next level now and restarts its delay; `ignore` does nothing."""
    escalator, target = parse(), incident()
    opened = at("2026-11-25 10:00")
    escalator.start(target, "critical", opened)
    step = escalator.climb(target, opened + 2 * MINUTE)
    assert step.reason == "escalation level 2 (SLA warning)"
    assert [t.level for t in step.targets] == [1, 1, 1, 1]
    assert target.escalation == Escalation("critical", level=1, next_at=opened + 17 * MINUTE)
    # At the last level it pages that level again without using up a repeat.
    again = escalator.climb(target, opened + 3 * MINUTE)
    assert again.reason == "escalation level 2 (SLA warning)"
    assert target.escalation == Escalation("critical", level=1, next_at=opened + 18 * MINUTE)

    ignoring = incident()
    escalator.start(ignoring, "daytime", opened)
    assert escalator.climb(ignoring, opened + MINUTE) == Step()
    assert ignoring.escalation == Escalation("daytime", level=0, next_at=opened + 5 * MINUTE)


def test_sla_climb_after_ack_pages_the_next_level_but_stays_stopped() -> None:
    """Test that a resolution near-breach on an acknowledged incident pages up, without timers."""
    escalator, target = parse(), incident()
    opened = at("2026-11-25 10:00")
    escalator.start(target, "critical", opened)
    target.state = IncidentState.ACKNOWLEDGED
    escalator.stop(target)
    step = escalator.climb(target, opened + 60 * MINUTE)
    assert step.reason == "escalation level 2 (SLA warning)"
    assert target.escalation == Escalation("critical", level=1, next_at=None)
    target.state = IncidentState.RESOLVED
    assert escalator.climb(target, opened + 61 * MINUTE) == Step()
    assert escalator.climb(incident(), opened) == Step()  # never escalated


def test_policy_removed_by_reload_stops_with_a_note() -> None:
    """Test that an incident whose policy vanished on reload stops escalating, with a note."""
    before, target = parse(), incident()
    opened = at("2026-11-25 10:00")
    before.start(target, "critical", opened)
    after = Escalator(policies={}, schedules=before.schedules, users=before.users)
    step = after.due(target, opened + 10 * MINUTE)
    assert step == Step(notes=("escalation policy 'critical' was removed: stopped",))
    assert target.escalation is not None
    assert target.escalation.next_at is None


def test_reload_that_shortens_a_policy_keeps_going_from_the_last_level() -> None:
    """Test that an incident at a level a reload removed repeats the new last level, or stops."""
    before, target = parse(), incident()
    opened = at("2026-11-25 10:00")
    before.start(target, "critical", opened)
    before.due(target, opened + 10 * MINUTE)  # at level 2 now
    single = parse(
        "escalation_policies:\n  - name: critical\n    repeat: 1\n"
        "    levels: [{targets: [{user: bob}], delay: 5m}]\n"
    )
    step = single.due(target, opened + 25 * MINUTE)
    assert paged(step) == [("mail-bob", "bob", 0, "user bob")]
    assert target.escalation == Escalation("critical", level=0, next_at=None, rounds=1)
    target.escalation.next_at = opened + 30 * MINUTE  # as if a repeat were still pending
    assert single.due(target, opened + 30 * MINUTE) == Step()
    assert target.escalation.next_at is None


def test_unknown_policy_at_start_is_a_note() -> None:
    """Test that starting an unknown policy leaves the incident alone and says why."""
    escalator, target = parse(), incident()
    step = escalator.start(target, "nope", at("2026-11-25 10:00"))
    assert step == Step(notes=("escalation policy 'nope' is not configured",))
    assert target.escalation is None


def test_parsed_policy_shape() -> None:
    """Test that levels, delays, repeat and on_sla_warning come through, with defaults."""
    policies = parse().policies
    critical = policies["critical"]
    assert [level.delay for level in critical.levels] == [600.0, 900.0]
    assert [t.via for t in critical.levels[1].targets] == [
        "schedule primary",
        "user boss",
        "receiver ops-slack",
    ]
    assert (critical.repeat, critical.on_sla_warning) == (2, "climb")
    daytime = policies["daytime"]
    assert (daytime.repeat, daytime.on_sla_warning, daytime.levels[1].delay) == (0, "ignore", None)
    with pytest.raises(ValueError, match="needs a delay"):
        EscalationPolicy(name="x", levels=(daytime.levels[1],), repeat=1)


def _policy(body: str) -> str:
    """Wrap the YAML of one policy (indented as a list item) into the section."""
    return "escalation_policies:\n" + body


ERRORS = [
    pytest.param(
        _policy("  - name: p\n    levels: [{targets: [{receiver: ops-slak}]}]\n"),
        "incidents.yaml:29:36: escalation policy 'p': level 1: unknown receiver 'ops-slak' "
        "(did you mean 'ops-slack'?) (receivers are defined under 'receivers')",
        id="receiver",
    ),
    pytest.param(
        _policy("  - name: p\n    levels: [{targets: [{user: bbo}]}]\n"),
        "incidents.yaml:29:32: escalation policy 'p': level 1: unknown user 'bbo' "
        "(did you mean 'bob'?) (users are defined under 'users')",
        id="user",
    ),
    pytest.param(
        _policy("  - name: p\n    levels: [{targets: [{schedule: primay}]}]\n"),
        "incidents.yaml:29:36: escalation policy 'p': level 1: unknown on-call schedule 'primay' "
        "(did you mean 'primary'?) (on-call schedules are defined under 'oncall')",
        id="schedule",
    ),
    pytest.param(
        _policy("  - name: p\n    levels: [{targets: [{schedule: outside}]}]\n"),
        "incidents.yaml:29:36: escalation policy 'p': level 1: schedule 'outside' puts 'dave' "
        "on call, who is not under 'users': escalation could not reach them",
        id="member",
    ),
    pytest.param(
        _policy("  - name: p\n    levels: [{targets: [{schedule: silent}]}]\n"),
        "incidents.yaml:29:36: escalation policy 'p': level 1: schedule 'silent' puts 'eve' "
        "on call, who has no 'receivers', so escalation could not reach them",
        id="override-member",
    ),
    pytest.param(
        _policy("  - name: p\n    levels: [{targets: [{user: eve}]}]\n"),
        "incidents.yaml:29:32: escalation policy 'p': level 1: user 'eve' has no 'receivers', "
        "so escalation could not reach them",
        id="unreachable",
    ),
    pytest.param(
        _policy("  - name: p\n    levels: [{targets: [{user: bob}]}, {targets: [{user: boss}]}]\n"),
        "incidents.yaml:29:14: escalation policy 'p': level 1: missing required key 'delay' "
        "(how long to wait for an acknowledgement before the next level)",
        id="delay",
    ),
    pytest.param(
        _policy("  - name: p\n    repeat: 3\n    levels: [{targets: [{user: bob}]}]\n"),
        "incidents.yaml:30:14: escalation policy 'p': level 1: missing required key 'delay' "
        "(how long before it is paged again, as 'repeat' is 3)",
        id="repeat-delay",
    ),
    pytest.param(
        _policy(
            "  - name: p\n    levels: [{targets: [{user: bob}], delay: 0s}, {targets: [{user: boss}]}]\n"
        ),
        "incidents.yaml:29:46: escalation policy 'p': level 1: 'delay' must be more than 0",
        id="zero-delay",
    ),
    pytest.param(
        _policy("  - name: p\n    levels: [{targets: [{user: bob}], dealy: 5m}]\n"),
        "incidents.yaml:29:39: escalation policy 'p': level 1: unknown level option 'dealy' "
        "(did you mean 'delay'?)",
        id="level-typo",
    ),
    pytest.param(
        _policy("  - name: p\n    levels: []\n"),
        "incidents.yaml:29:13: escalation policy 'p': 'levels' needs at least one level",
        id="no-levels",
    ),
    pytest.param(
        _policy("  - name: p\n    levels: [{targets: []}]\n"),
        "incidents.yaml:29:24: escalation policy 'p': level 1: 'targets' needs at least one target",
        id="no-targets",
    ),
    pytest.param(
        _policy("  - name: p\n    levels: [{targets: [{user: bob, receiver: ops-slack}]}]\n"),
        "incidents.yaml:29:25: escalation policy 'p': level 1: a target names one of receiver, "
        "user or schedule, like {user: bob}",
        id="two-kinds",
    ),
    pytest.param(
        _policy("  - name: p\n    levels: [{targets: [{team: ops}]}]\n"),
        "incidents.yaml:29:26: escalation policy 'p': level 1: unknown target kind 'team'",
        id="kind",
    ),
    pytest.param(
        _policy("  - name: p\n    levels: [{targets: [{user: bob}, {user: bob}]}]\n"),
        "incidents.yaml:29:38: escalation policy 'p': level 1: user bob is listed twice",
        id="twice",
    ),
    pytest.param(
        _policy(
            "  - name: p\n    on_sla_warning: climbs\n    levels: [{targets: [{user: bob}]}]\n"
        ),
        "incidents.yaml:29:21: escalation policy 'p': 'on_sla_warning' must be climb or ignore, "
        "not 'climbs' (did you mean 'climb'?)",
        id="on-sla-warning",
    ),
    pytest.param(
        _policy("  - name: p\n    repeat: -1\n    levels: [{targets: [{user: bob}]}]\n"),
        "incidents.yaml:29:13: escalation policy 'p': 'repeat' must be a whole number >= 0",
        id="repeat",
    ),
    pytest.param(
        _policy(
            "  - name: p\n    levels: [{targets: [{user: bob}]}]\n"
            "  - name: p\n    levels: [{targets: [{user: boss}]}]\n"
        ),
        "incidents.yaml:30:11: duplicate escalation policy name 'p' (first defined at incidents.yaml:28:11)",
        id="duplicate",
    ),
    pytest.param(
        _policy("  - levels: [{targets: [{user: bob}]}]\n"),
        "incidents.yaml:28:5: escalation policy 1: missing required key 'name'",
        id="no-name",
    ),
    pytest.param(
        _policy("  - name: p\n    level: []\n"),
        "incidents.yaml:29:5: escalation policy 'p': unknown option 'level' (did you mean 'levels'?)",
        id="typo",
    ),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_config_errors_name_file_line_and_problem(text: str, message: str) -> None:
    """Test that each policy mistake is refused with its exact file:line message."""
    with pytest.raises(SourceError) as caught:
        parse(text)
    assert str(caught.value) == message
