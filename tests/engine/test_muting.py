"""The muting stage: silences, maintenance windows and inhibition hold notifying actions."""

from __future__ import annotations

from collections.abc import Callable

from correlation_kit import T0, Run

from tocsin.engine.clock import ManualClock
from tocsin.engine.muting import Muter
from tocsin.engine.pipeline import Engine
from tocsin.mute.inhibit import parse_inhibit_rules
from tocsin.mute.matchers import parse_matchers
from tocsin.mute.schedule import parse_windows
from tocsin.mute.silences import SilenceBook
from tocsin.yamlsrc import Mark, load_yaml

Build = Callable[..., Engine]
HERE = Mark("test", 1, 1)

RULES = r"""
rules:
  - id: disk
    match: {message: {regex: 'disk full on (?P<host>\S+)'}}
    key: "{{ host }}"
    actions:
      - incident: {title: "disk full on {{ host }}", labels: {host: "{{ host }}"}}
      - log: "disk full on {{ host }}"
  - id: switch-down
    match: {message: {regex: 'switch (?P<sw>\S+) down'}}
    key: "{{ sw }}"
    actions:
      - incident: {title: "switch {{ sw }} down", labels: {switch: "{{ sw }}"}}
      - log: "switch {{ sw }} down"
  - id: switch-up
    match: {message: {regex: 'switch (?P<sw>\S+) up'}}
    key: "{{ sw }}"
    actions: [{resolve: {rule: switch-down}}]
  - id: unreachable
    match: {message: {regex: 'host (?P<h>\S+) unreachable via (?P<sw>\S+)'}}
    key: "{{ h }}"
    actions:
      - incident: {title: "{{ h }} unreachable", labels: {switch: "{{ sw }}"}}
      - log: "{{ h }} unreachable"
"""


def run_with(engine_for: Build, clock: ManualClock, muter: Muter) -> Run:
    """A Run of RULES whose engine consults `muter`."""
    clock.advance_to(T0)
    return Run(engine_for(RULES, muter=muter), clock)


def silenced(book: SilenceBook, matchers: list[str], start: float, end: float) -> str:
    """Add a silence over [T0+start, T0+end); return its id."""
    return book.add(
        matchers=parse_matchers(matchers, HERE),
        starts_at=T0 + start,
        ends_at=T0 + end,
        created_by="alice",
        comment="disk swap",
        now=T0,
    ).id


def test_a_silence_holds_notifications_but_the_incident_counts(
    engine_for: Build, clock: ManualClock
) -> None:
    """Test that a silenced hit updates its incident, skips `log`, and says why on the incident."""
    book = SilenceBook()
    sid = silenced(book, ["host=web1"], 10, 100)
    run = run_with(engine_for, clock, Muter(silences=book))
    assert [o[2:4] for o in run.at(0, "disk full on web1")] == [
        ("incident", "open"),
        ("log", "info"),
    ]
    out = run.at(20, "disk full on web1")
    assert [o[2:4] for o in out] == [("incident", "update"), ("mute", "silence")]
    incident = run.engine.book.get("disk:web1")
    assert incident is not None
    assert incident.count == 2
    assert incident.muted.startswith(f"muted by silence {sid[:8]} (disk swap, by alice) until ")
    assert run.results[-1].muted == {("silence", sid): 1}
    assert [o[2:4] for o in run.at(30, "disk full on web1")] == [("incident", "update")]
    assert [o[2:4] for o in run.at(31, "disk full on web2")] == [
        ("incident", "open"),
        ("log", "info"),
    ]
    # Once the silence has ended, notifications resume and the incident says so.
    out = run.at(100, "disk full on web1")
    assert [o[2:4] for o in out] == [("incident", "update"), ("mute", "mute"), ("log", "info")]
    assert incident.muted == ""
    change = next(c for c in run.results[-1].changes if c.op == "mute")
    assert (change.actor, change.note) == ("mute:ended", "no longer muted: notifications resume")


def test_a_pending_silence_mutes_nothing_yet(engine_for: Build, clock: ManualClock) -> None:
    """Test that a silence starting later leaves earlier hits alone."""
    book = SilenceBook()
    silenced(book, ["rule=disk"], 50, 60)
    run = run_with(engine_for, clock, Muter(silences=book))
    assert [o[2] for o in run.at(10, "disk full on web1")] == ["incident", "log"]
    assert [o[2] for o in run.at(50, "disk full on web1")] == ["incident", "mute"]


def test_a_maintenance_window_mutes_on_event_time(engine_for: Build, clock: ManualClock) -> None:
    """Test that a recurring window mutes hits whose event time falls inside it."""
    windows = parse_windows(
        load_yaml(
            "- name: nightly\n  matchers: ['host=~web.*']\n"
            "  intervals: [{times: [{start: '00:00', end: '00:10'}]}]\n",
            name="muting.yaml",
        ),
        HERE,
    )
    run = run_with(engine_for, clock, Muter(silences=SilenceBook(), windows=windows))
    out = run.at(60, "disk full on web1")  # 00:01 UTC on T0's day
    assert [o[2] for o in out] == ["incident", "mute"]
    assert run.engine.book.get("disk:web1").muted == (  # type: ignore[union-attr]
        "muted by maintenance window nightly until 2026-11-25T00:10:00Z"
    )
    assert run.results[-1].muted == {("maintenance", "nightly"): 1}
    assert [o[2] for o in run.at(600, "disk full on db1")] == ["incident", "log"]


def test_inhibition_follows_the_source_incident(engine_for: Build, clock: ManualClock) -> None:
    """Test that an open 'switch down' mutes hosts behind it, and not once it resolves."""
    inhibit = parse_inhibit_rules(
        load_yaml(
            "- source: [rule=switch-down]\n  target: [rule=unreachable]\n  equal: [switch]\n",
            name="muting.yaml",
        ),
        HERE,
    )
    run = run_with(engine_for, clock, Muter(silences=SilenceBook(), inhibit=inhibit))
    run.at(0, "switch sw1 down")
    out = run.at(1, "host h1 unreachable via sw1")
    assert [o[2] for o in out] == ["incident", "mute"]
    assert run.engine.book.get("unreachable:h1").muted.startswith(  # type: ignore[union-attr]
        "inhibited by open incident switch-down:sw1 (inhibit rule 1"
    )
    assert run.results[-1].muted == {("inhibit", "rule 1"): 1}
    assert [o[2] for o in run.at(2, "host h2 unreachable via sw2")] == ["incident", "log"]
    run.at(3, "switch sw1 up")
    assert [o[2] for o in run.at(4, "host h1 unreachable via sw1")] == ["incident", "mute", "log"]


def test_a_source_is_never_inhibited_by_itself(engine_for: Build, clock: ManualClock) -> None:
    """Test that an inhibition whose source also matches the target does not mute itself."""
    inhibit = parse_inhibit_rules(
        load_yaml("- source: [rule=switch-down]\n  target: []\n", name="m.yaml"), HERE
    )
    run = run_with(engine_for, clock, Muter(silences=SilenceBook(), inhibit=inhibit))
    assert [o[2] for o in run.at(0, "switch sw1 down")] == ["incident", "log"]
    assert [o[2] for o in run.at(1, "switch sw1 down")] == ["incident", "log"]
    assert [o[2] for o in run.at(2, "disk full on web1")] == ["incident", "mute"]


def test_no_muting_configured_skips_the_stage(engine_for: Build, clock: ManualClock) -> None:
    """Test that an empty muter changes nothing, actions keep their order."""
    run = run_with(engine_for, clock, Muter(silences=SilenceBook()))
    assert [o[2] for o in run.at(0, "disk full on web1")] == ["incident", "log"]
    assert run.results[-1].muted == {}


def test_held_actions_are_not_counted_as_run(engine_for: Build, clock: ManualClock) -> None:
    """Test that tocsin_actions_total counts what ran: a held `log` is not among them."""
    book = SilenceBook()
    silenced(book, ["host=web1"], 0, 100)
    run = run_with(engine_for, clock, Muter(silences=book))
    run.batch([(1, "disk full on web1", {}), (2, "disk full on web2", {})])
    assert run.results[-1].actions == {"incident": 2, "log": 1}


def test_flapping_settling_keeps_a_silence_reason(engine_for: Build, clock: ManualClock) -> None:
    """Test that a settle note does not clear the reason of a silence still covering the key."""
    text = RULES.replace(
        '    key: "{{ sw }}"\n    actions:\n      - incident: {title: "switch {{ sw }} down"',
        '    key: "{{ sw }}"\n    flapping: {changes: 2, within: 60s}\n    actions:\n'
        '      - incident: {title: "switch {{ sw }} down"',
    )
    assert "flapping:" in text
    book = SilenceBook()
    silenced(book, ["rule=switch-down"], 0, 10_000)
    clock.advance_to(T0)
    run = Run(engine_for(text, muter=Muter(silences=book)), clock)
    run.at(0, "switch sw1 down")
    run.at(1, "switch sw1 up")
    run.at(2, "switch sw1 down")
    incident = run.engine.book.get("switch-down:sw1")
    assert incident is not None
    assert incident.muted.startswith("muted by silence")
    run.idle(200)
    assert incident.muted.startswith("muted by silence")
