"""SLA timers: warnings and breaches, met stages, business hours, reopen, next_check, parsing."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

import pytest

from tocsin.model import Incident, IncidentState
from tocsin.records.calendar import ALWAYS, BusinessHours
from tocsin.records.incidents import IncidentBook
from tocsin.records.priority import PriorityMatrix
from tocsin.records.sla import SlaPolicy, SlaTarget, parse_sla
from tocsin.yamlsrc import SourceError, load_yaml, value_mark

BERLIN = ZoneInfo("Europe/Berlin")
MINUTE = 60.0
HOUR = 3600.0
T0 = 1_795_564_800.0  # 2026-11-25T00:00:00Z, a Wednesday

POLICY = """\
sla:
  warn_at: 75%
  business_hours: {time_zone: Europe/Berlin, from: '08:00', to: '18:00'}
  priorities:
    P1: {response: 15m, resolution: 4h, business_hours: false}
    P2: {response: 4h, resolution: 4h, business_hours: false}
    P3: {response: 4h, resolution: 3d}
    P4: {resolution: 5d, business_hours: {time_zone: UTC, from: '00:00', to: '24:00'}}
"""


def parse(text: str = POLICY) -> SlaPolicy:
    """Parse a config file holding an `sla:` section."""
    data = load_yaml(text, name="incidents.yaml")
    return parse_sla(data["sla"], value_mark(data, "sla", data.mark))


def incident(priority: str = "P1", opened_at: float = T0) -> Incident:
    """Return a new open incident of `priority` opened at `opened_at`."""
    return Incident(
        id=1,
        fingerprint="r:k",
        rule="r",
        key="k",
        title="disk full",
        state=IncidentState.NEW,
        priority=priority,
        impact="high",
        urgency="high",
        first_seen=opened_at,
        last_seen=opened_at,
        opened_at=opened_at,
    )


def run(policy: SlaPolicy, target: Incident, until: float) -> list[tuple[float, list[str]]]:
    """Play the caller: check at each next_check up to `until`, recording what fired when."""
    fired: list[tuple[float, list[str]]] = []
    while (moment := policy.next_check(target)) is not None and moment <= until:
        marks = policy.check(target, moment)
        assert marks, "next_check promised something"
        assert policy.check(target, moment - 0.001) == []  # not a moment earlier
        target.sla_fired.extend(marks)
        fired.append((moment - target.opened_at, marks))
    return fired


def local(moment: float) -> str:
    """Show an instant as Berlin wall time."""
    return datetime.datetime.fromtimestamp(moment, BERLIN).strftime("%a %Y-%m-%d %H:%M%z")


def test_unanswered_incident_warns_and_breaches_both_stages_on_time() -> None:
    """Test that all four marks fire at 75% and 100% of 15m and 4h, exactly, then nothing."""
    policy, target = parse(), incident()
    assert run(policy, target, T0 + 10 * HOUR) == [
        (11.25 * MINUTE, ["response:warning"]),
        (15 * MINUTE, ["response:breach"]),
        (3 * HOUR, ["resolution:warning"]),
        (4 * HOUR, ["resolution:breach"]),
    ]
    assert policy.next_check(target) is None
    assert policy.check(target, T0 + 100 * HOUR) == []


def test_a_late_check_returns_every_crossed_mark_in_time_order() -> None:
    """Test that checking once, late, returns the missed marks soonest first, without mutating."""
    policy, target = parse(), incident()
    assert policy.check(target, T0 + 5 * HOUR) == [
        "response:warning",
        "response:breach",
        "resolution:warning",
        "resolution:breach",
    ]
    assert target.sla_fired == []
    target.sla_fired.append("response:warning")
    assert policy.check(target, T0 + 20 * MINUTE) == ["response:breach"]


def test_equal_instants_keep_response_before_resolution() -> None:
    """Test that marks due at the same instant come in stage order."""
    policy, target = parse(), incident("P2")
    assert policy.check(target, T0 + 4 * HOUR) == MARKS_IN_ORDER
    assert policy.next_check(target) == T0 + 3 * HOUR


MARKS_IN_ORDER = ["response:warning", "resolution:warning", "response:breach", "resolution:breach"]


def test_acknowledgement_in_time_means_no_response_marks() -> None:
    """Test that an ack before the warning leaves only the resolution timer running."""
    policy, target = parse(), incident()
    target.state, target.acknowledged_at = IncidentState.ACKNOWLEDGED, T0 + 10 * MINUTE
    assert policy.next_check(target) == T0 + 3 * HOUR
    assert run(policy, target, T0 + 10 * HOUR) == [
        (3 * HOUR, ["resolution:warning"]),
        (4 * HOUR, ["resolution:breach"]),
    ]


def test_acknowledgement_after_the_warning_prevents_the_breach() -> None:
    """Test that acking between warning and breach stops the response stage there."""
    policy, target = parse(), incident()
    assert run(policy, target, T0 + 12 * MINUTE) == [(11.25 * MINUTE, ["response:warning"])]
    target.state, target.acknowledged_at = IncidentState.ACKNOWLEDGED, T0 + 14 * MINUTE
    assert policy.check(target, T0 + 16 * MINUTE) == []
    assert policy.next_check(target) == T0 + 3 * HOUR


def test_a_met_stage_fires_nothing_even_when_its_mark_passed_unchecked() -> None:
    """Test that an ack after the breach instant, before any check, emits no response marks."""
    policy, target = parse(), incident()
    target.state, target.acknowledged_at = IncidentState.ACKNOWLEDGED, T0 + 20 * MINUTE
    assert policy.check(target, T0 + 21 * MINUTE) == []


def test_resolving_without_ack_counts_as_the_response() -> None:
    """Test that a resolved incident fires nothing more, and its response was the resolve."""
    policy, target = parse(), incident()
    target.state, target.resolved_at = IncidentState.RESOLVED, T0 + 5 * MINUTE
    assert policy.check(target, T0 + 10 * HOUR) == []
    assert policy.next_check(target) is None
    # Still open (a state the lifecycle allows only with an ack), a resolve time meets it too.
    target.state = IncidentState.NEW
    assert policy.check(target, T0 + 10 * HOUR) == []


def test_taking_an_incident_without_ack_time_meets_the_response() -> None:
    """Test that an incident in progress is responded to even without acknowledged_at."""
    policy, target = parse(), incident()
    target.state = IncidentState.IN_PROGRESS
    assert policy.check(target, T0 + 20 * MINUTE) == []
    assert policy.next_check(target) == T0 + 3 * HOUR


def test_business_hours_stop_the_clock_overnight_and_at_weekends() -> None:
    """Test that P3 counts office hours (Friday 16:00 + 4h is Monday 10:00) and P1 does not."""
    policy = parse()
    friday = datetime.datetime(2026, 11, 27, 16, 0, tzinfo=BERLIN).timestamp()
    p3 = policy.deadlines(incident("P3", friday))
    assert local(p3["response_due"]) == "Mon 2026-11-30 10:00+0100"
    assert local(p3["response_warning"]) == "Mon 2026-11-30 09:00+0100"
    # 3d is 72 hours of office time: 2 on Friday, 50 next week, 20 the week after.
    assert local(p3["resolution_due"]) == "Tue 2026-12-08 18:00+0100"
    assert local(p3["resolution_warning"]) == "Mon 2026-12-07 10:00+0100"
    p1 = policy.deadlines(incident("P1", friday))
    assert p1 == {
        "response_due": friday + 15 * MINUTE,
        "response_warning": friday + 11.25 * MINUTE,
        "resolution_due": friday + 4 * HOUR,
        "resolution_warning": friday + 3 * HOUR,
    }
    target = incident("P3", friday)
    assert policy.check(target, friday + 60 * HOUR) == []  # Sunday 04:00: no office time yet
    assert policy.next_check(target) == p3["response_warning"]


def test_priority_calendar_of_its_own_and_no_response_goal() -> None:
    """Test that P4 uses its own round-the-clock weekday hours and has only a resolution goal."""
    policy = parse()
    # From Wednesday 00:00 UTC, 120 hours: Wednesday to Friday, then Monday and Tuesday.
    assert policy.deadlines(incident("P4")) == {
        "resolution_due": T0 + 7 * 24 * HOUR,
        "resolution_warning": T0 + (5 * 24 + 18) * HOUR,
    }
    assert policy.check(incident("P4"), T0 + 5 * 24 * HOUR) == []
    assert policy.check(incident("P4"), T0 + 7 * 24 * HOUR) == [
        "resolution:warning",
        "resolution:breach",
    ]


def test_a_priority_without_an_entry_has_no_sla() -> None:
    """Test that P5 (not configured) fires nothing and has no deadlines."""
    policy, target = parse(), incident("P5")
    assert policy.check(target, T0 + 1000 * HOUR) == []
    assert policy.next_check(target) is None
    assert policy.deadlines(target) == {}
    assert parse_sla(None, value_mark({}, "sla", T0_MARK)).check(incident(), T0 + HOUR) == []


T0_MARK = load_yaml("sla:\n", name="incidents.yaml").mark


def test_reopened_incident_runs_fresh_timers() -> None:
    """Test that after a reopen (marks cleared, new opened_at) the old ack does not count."""
    policy, target = parse(), incident()
    target.state, target.acknowledged_at = IncidentState.ACKNOWLEDGED, T0 + 5 * MINUTE
    target.state, target.resolved_at = IncidentState.RESOLVED, T0 + HOUR
    target.sla_fired = ["resolution:warning"]
    # The caller reopens: clears the marks and starts the clocks again (stale times left set).
    again = T0 + 2 * HOUR
    target.state, target.opened_at, target.sla_fired = IncidentState.NEW, again, []
    assert policy.next_check(target) == again + 11.25 * MINUTE
    assert policy.check(target, again + 15 * MINUTE) == ["response:warning", "response:breach"]


def test_defaults_warn_at_three_quarters() -> None:
    """Test that warn_at defaults to 75% and also reads as a fraction."""
    policy = parse("sla:\n  priorities:\n    P1: {response: 100s}\n")
    assert policy.warn_at == 0.75
    assert policy.priorities["P1"].calendar is ALWAYS
    assert policy.deadlines(incident()) == {"response_due": T0 + 100, "response_warning": T0 + 75}
    assert parse("sla:\n  warn_at: 0.5\n  priorities:\n    P1: {response: 1h}\n").warn_at == 0.5


def test_business_hours_true_takes_the_default() -> None:
    """Test that `business_hours: true` uses the section's default calendar."""
    policy = parse(
        "sla:\n  business_hours: {time_zone: Europe/Berlin, from: '09:00', to: '17:00'}\n"
        "  priorities:\n    P2: {response: 1h, business_hours: true}\n"
    )
    calendar = policy.priorities["P2"].calendar
    assert isinstance(calendar, BusinessHours)
    assert (calendar.opens, calendar.closes) == (540, 1020)


ERRORS = [
    pytest.param(
        "sla:\n  warn_at: 120%\n  priorities: {P1: {response: 1h}}\n",
        "incidents.yaml:2:12: sla: 'warn_at' must be like 75% or 0.75 (below 100%), not '120%'",
        id="warn-high",
    ),
    pytest.param(
        "sla:\n  warn_at: 75\n  priorities: {P1: {response: 1h}}\n",
        "incidents.yaml:2:12: sla: 'warn_at' must be like 75% or 0.75 (below 100%), not 75",
        id="warn-number",
    ),
    pytest.param(
        "sla:\n  warn_at: lots%\n  priorities: {P1: {response: 1h}}\n",
        "incidents.yaml:2:12: sla: 'warn_at' must be like 75% or 0.75 (below 100%), not 'lots%'",
        id="warn-text",
    ),
    pytest.param(
        "sla:\n  warn_at: 75%\n",
        "incidents.yaml:2:3: sla: missing required key 'priorities'",
        id="no-priorities",
    ),
    pytest.param(
        "sla:\n  priorities: {}\n",
        "incidents.yaml:2:15: sla: 'priorities' must give at least one priority",
        id="empty-priorities",
    ),
    pytest.param(
        "sla:\n  priority: {}\n",
        "incidents.yaml:2:3: sla: unknown option 'priority' (did you mean 'priorities'?)",
        id="typo",
    ),
    pytest.param(
        "sla:\n  priorities:\n    P6: {response: 1h}\n",
        "incidents.yaml:3:5: sla: unknown priority 'P6' (use P1, P2, P3, P4, P5)",
        id="priority",
    ),
    pytest.param(
        "sla:\n  priorities:\n    p1: {response: 1h}\n",
        "incidents.yaml:3:5: sla: unknown priority 'p1' (did you mean 'P1'?) (use P1, P2, P3, P4, P5)",
        id="priority-case",
    ),
    pytest.param(
        "sla:\n  priorities:\n    P1: {business_hours: false}\n",
        "incidents.yaml:3:9: sla: priority P1: give 'response', 'resolution' or both",
        id="no-goal",
    ),
    pytest.param(
        "sla:\n  priorities:\n    P1: {response: 0s}\n",
        "incidents.yaml:3:20: sla: priority P1: 'response' must be more than 0 and at most 365d",
        id="zero",
    ),
    pytest.param(
        "sla:\n  priorities:\n    P1: {response: 400d}\n",
        "incidents.yaml:3:20: sla: priority P1: 'response' must be more than 0 and at most 365d",
        id="huge",
    ),
    pytest.param(
        "sla:\n  priorities:\n    P1: {resolution: soon}\n",
        "incidents.yaml:3:22: sla: priority P1: 'resolution' must be a duration like 250ms, 10s, 5m, 1h or 2d, not 'soon'",
        id="duration",
    ),
    pytest.param(
        "sla:\n  priorities:\n    P1: {respond: 1h}\n",
        "incidents.yaml:3:10: sla: priority P1: unknown option 'respond' (did you mean 'response'?)",
        id="goal-typo",
    ),
    pytest.param(
        "sla:\n  priorities:\n    P1: {response: 1h, business_hours: true}\n",
        "incidents.yaml:3:40: sla: priority P1: 'business_hours: true' needs 'business_hours' under 'sla' to say which hours",
        id="true-without-default",
    ),
    pytest.param(
        "sla:\n  priorities:\n    P1: {response: 1h, business_hours: {time_zone: Mars/Base, from: '08:00', to: '18:00'}}\n",
        "incidents.yaml:3:52: sla: priority P1: 'business_hours': unknown time zone 'Mars/Base' (use an IANA name like Europe/Berlin or UTC)",
        id="priority-hours",
    ),
    pytest.param(
        "sla:\n  business_hours: {time_zone: UTC, from: '08:00'}\n  priorities: {P1: {response: 1h}}\n",
        "incidents.yaml:2:19: sla: 'business_hours': missing required key 'to'",
        id="default-hours",
    ),
    pytest.param(
        "sla: [P1]\n",
        "incidents.yaml:1:6: 'sla' must be a mapping, not a list",
        id="not-map",
    ),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_config_errors_name_file_line_and_problem(text: str, message: str) -> None:
    """Test that each SLA mistake is refused with its exact file:line message."""
    with pytest.raises(SourceError) as caught:
        parse(text)
    assert str(caught.value) == message


def test_the_resolution_clock_stops_while_on_hold() -> None:
    """Test ITIL's pause: no resolution mark on hold; afterwards the deadlines move by the hold."""
    policy = SlaPolicy(priorities={"P1": SlaTarget(response=None, resolution=3600.0)}, warn_at=0.5)
    book = IncidentBook(priorities=PriorityMatrix())
    change = book.open(
        rule="r", key="k", title="t", impact="high", urgency="high", time=0.0, actor="rule:r"
    )
    incident = change.incident
    assert policy.next_check(incident) == 1800.0
    book.transition(incident, "acknowledged", time=600.0, actor="a")
    book.transition(incident, "on_hold", time=600.0, actor="a")
    assert policy.check(incident, 10_000.0) == []
    assert policy.next_check(incident) is None
    book.transition(incident, "in_progress", time=2400.0, actor="a")  # held 30 minutes
    assert incident.holds == [[600.0, 2400.0]]
    assert policy.next_check(incident) == 1800.0 + 1800.0
    assert policy.deadlines(incident)["resolution_due"] == 3600.0 + 1800.0
    assert policy.check(incident, 3599.0) == []
    assert policy.check(incident, 5400.0) == ["resolution:warning", "resolution:breach"]
    book.resolve(incident.fingerprint, time=5500.0, actor="x")
    book.transition(incident, "reopen", time=6000.0, actor="x")
    assert (incident.holds, incident.held_since) == ([], None)
