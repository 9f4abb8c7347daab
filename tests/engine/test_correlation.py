"""Golden tests for each correlation mode on a virtual clock: events in, actions out."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from correlation_kit import T0, Run

from tocsin.engine.clock import ManualClock
from tocsin.engine.pipeline import Engine

Build = Callable[..., Engine]


@pytest.fixture
def run_for(engine_for: Build, clock: ManualClock) -> Callable[..., Run]:
    """Return a function that builds a Run from rule YAML."""

    def build(text: str, **options: object) -> Run:
        clock.advance_to(T0)
        return Run(engine_for(text, **options), clock)

    return build


THRESHOLD = """
rules:
  - id: brute
    match: {message: {regex: 'fail from (?P<ip>\\S+)'}}
    key: "{{ ip }}"
    threshold: {count: 3, within: 60s}
    actions: [{incident: {title: "brute {{ ip }}"}}, {log: "brute {{ ip }}"}]
"""


def test_threshold_acts_on_the_nth_event_in_the_window(run_for: Callable[..., Run]) -> None:
    """Test that a threshold acts on the 3rd event and opens the incident with all three."""
    run = run_for(THRESHOLD)
    assert run.at(0, "fail from a") == []
    assert run.at(10, "fail from a") == []
    assert run.at(11, "fail from b") == []
    assert run.at(20, "fail from a") == [
        (20, "brute", "incident", "open", "a", 3),
        (20, "brute", "log", "info", "a", 0),
    ]
    incident = run.engine.book.get("brute:a")
    assert incident is not None
    assert (incident.first_seen, incident.last_seen, incident.count) == (T0, T0 + 20, 3)


def test_threshold_window_edges_are_inclusive(run_for: Callable[..., Run]) -> None:
    """Test that events exactly `within` apart share a window, and a hair more do not."""
    run = run_for(THRESHOLD)
    run.at(0, "fail from a")
    run.at(30, "fail from a")
    assert run.at(60, "fail from a")[0][:4] == (60, "brute", "incident", "open")
    run = run_for(THRESHOLD.replace("brute", "other"))
    run.at(0, "fail from a")
    run.at(30, "fail from a")
    assert run.at(60.001, "fail from a") == []


def test_threshold_window_slides(run_for: Callable[..., Run]) -> None:
    """Test that events falling out of the window slide it forward."""
    run = run_for(THRESHOLD)
    run.at(0, "fail from a")
    run.at(30, "fail from a")
    assert run.at(61, "fail from a") == []  # 0 fell out: 30, 61
    assert run.at(70, "fail from a")[0] == (70, "brute", "incident", "open", "a", 3)


def test_threshold_absorbs_until_the_window_ends_then_rearms(run_for: Callable[..., Run]) -> None:
    """Test that after acting, repeats count into the incident until start+within, then re-arm."""
    run = run_for(THRESHOLD)
    for offset in (0, 10, 20):
        run.at(offset, "fail from a")
    assert run.at(40, "fail from a") == [(40, "brute", "incident", "update", "a", 4)]
    assert run.at(60, "fail from a") == [(60, "brute", "incident", "update", "a", 5)]
    assert run.at(61, "fail from a") == []  # re-armed: the first of a new window
    assert run.at(62, "fail from a") == []
    out = run.at(63, "fail from a")
    assert out[0] == (63, "brute", "incident", "update", "a", 8)  # still open: counted in
    assert out[1][2] == "log"  # and the actions ran again


def test_threshold_places_late_events_in_their_window(run_for: Callable[..., Run]) -> None:
    """Test that an event within the lateness counts at its own time, a later one as now."""
    run = run_for(THRESHOLD, lateness=30.0)
    run.at(100, "fail from a")
    run.at(75, "fail from a")  # 25 s late: placed at 75
    out = run.at(130, "fail from a")
    assert out[0] == (130, "brute", "incident", "open", "a", 3)
    assert run.engine.book.get("brute:a").first_seen == T0 + 75  # type: ignore[union-attr]
    run = run_for(THRESHOLD.replace("brute", "b2"), lateness=30.0)
    run.at(100, "fail from a")
    assert run.at(10, "fail from a") == []  # 90 s late: processed as now (100)
    assert run.results[-1].late == 1
    assert run.at(100, "fail from a")[0] == (100, "b2", "incident", "open", "a", 3)


SUPPRESS = """
rules:
  - id: disk
    match: {message: {regex: 'disk full on (?P<host>\\S+)'}}
    key: "{{ host }}"
    suppress: 5m
    actions: [{incident: {title: "disk {{ host }}"}}, {log: "disk {{ host }}"}]
"""


def test_suppress_acts_once_and_absorbs_repeats(run_for: Callable[..., Run]) -> None:
    """Test that suppress acts on the first event and counts repeats for the duration."""
    run = run_for(SUPPRESS)
    assert [o[2:4] for o in run.at(0, "disk full on h1")] == [("incident", "open"), ("log", "info")]
    assert run.at(100, "disk full on h1") == [(100, "disk", "incident", "update", "h1", 2)]
    assert run.at(300, "disk full on h1") == [(300, "disk", "incident", "update", "h1", 3)]
    assert [o[2:4] for o in run.at(1, "disk full on h2")] == [("incident", "open"), ("log", "info")]
    out = run.at(300.5, "disk full on h1")
    assert [o[2:4] for o in out] == [("incident", "update"), ("log", "info")]


def test_suppress_keys_expire_when_idle(run_for: Callable[..., Run]) -> None:
    """Test that a key whose suppression ran out is swept from memory."""
    run = run_for(SUPPRESS)
    run.at(0, "disk full on h1")
    assert run.engine.live_keys() == {"disk": 1}
    run.at(301, "disk full on h2")
    assert run.engine.live_keys() == {"disk": 1}
    assert run.results[-1].expired == 1


def test_max_keys_evicts_the_least_recently_used(run_for: Callable[..., Run]) -> None:
    """Test that at the key limit the oldest idle key goes, counted, and the rest stay."""
    run = run_for(THRESHOLD.replace("within: 60s}", "within: 60s}\n    max_keys: 2"))
    run.at(0, "fail from a")
    run.at(1, "fail from b")
    run.at(2, "fail from a")  # a is now the most recent
    run.at(3, "fail from c")  # evicts b
    assert run.results[-1].evicted == {"brute": 1}
    assert sorted(run.engine.correlators["brute"].states) == ["a", "c"]
    assert run.at(4, "fail from a")[0][:4] == (4, "brute", "incident", "open")


HYSTERESIS = """
rules:
  - id: errors
    match: {message: {regex: 'error on (?P<svc>\\S+)'}}
    key: "{{ svc }}"
    hysteresis: {raise: {count: 3, within: 60s}, clear: {max: 1, within: 60s}}
    actions: [{incident: {title: "errors on {{ svc }}"}}]
"""


def test_hysteresis_raises_and_clears_on_the_lower_threshold(run_for: Callable[..., Run]) -> None:
    """Test that hysteresis raises at 3 in 60s and resolves once at most 1 arrives in 60s."""
    run = run_for(HYSTERESIS)
    run.at(0, "error on api")
    run.at(10, "error on api")
    assert run.at(20, "error on api") == [(20, "errors", "incident", "open", "api", 3)]
    assert run.at(30, "error on api") == [(30, "errors", "incident", "update", "api", 4)]
    run.at(40, "error on api")
    assert run.idle(85) == []  # at 80: (20, 80] holds 30 and 40: too many; look again at 90
    assert run.idle(95) == [(90, "errors", "resolve", "resolve", "api", 5)]
    assert run.engine.live_keys() == {"errors": 0}


def test_hysteresis_stays_raised_while_events_keep_coming(run_for: Callable[..., Run]) -> None:
    """Test that a steady stream above the clear threshold keeps the incident open."""
    run = run_for(HYSTERESIS)
    for offset in range(0, 300, 20):
        run.at(offset, "error on api")
    assert run.engine.book.get("errors:api") is not None
    assert run.idle(319) == []  # (259, 319] still holds 260 and 280
    assert run.idle(330) == [(320, "errors", "resolve", "resolve", "api", 15)]


ABSENCE = """
rules:
  - id: heartbeat
    match: {message: {regex: 'heartbeat from (?P<node>\\S+)'}}
    key: "{{ node }}"
    absence: {within: 60s}
    actions: [{incident: {title: "{{ node }} went silent"}}]
"""


def test_absence_acts_after_silence_and_resolves_on_arrival(run_for: Callable[..., Run]) -> None:
    """Test that a heartbeat missing for `within` raises, and the next one resolves it."""
    run = run_for(ABSENCE)
    assert run.at(0, "heartbeat from n1") == []
    assert run.at(30, "heartbeat from n1") == []
    assert run.idle(89) == []
    assert run.idle(91) == [(90, "heartbeat", "incident", "open", "n1", 1)]
    assert run.idle(500) == []  # acts once per silence
    assert run.at(510, "heartbeat from n1") == [(510, "heartbeat", "resolve", "resolve", "n1", 1)]
    assert run.idle(571)[0][:4] == (570, "heartbeat", "incident", "open")


def test_absence_arrival_exactly_at_the_deadline_is_in_time(run_for: Callable[..., Run]) -> None:
    """Test that a heartbeat arriving exactly `within` after the last one does not raise."""
    run = run_for(ABSENCE)
    run.at(0, "heartbeat from n1")
    assert run.at(60, "heartbeat from n1") == []
    assert run.at(120, "heartbeat from n1") == []
    assert run.at(180.5, "heartbeat from n2") == [(180, "heartbeat", "incident", "open", "n1", 1)]


EXPECT = """
rules:
  - id: backup
    match: {message: {regex: 'backup (?P<job>\\S+) started'}}
    key: "{{ job }}"
    expect:
      match: {message: {regex: 'backup (?P<job>\\S+) finished'}}
      within: 1h
      on_timeout: [{incident: {title: "backup {{ job }} did not finish", urgency: high}}]
      on_arrival: [{log: "backup {{ job }} done"}]
    actions: []
"""


def test_expect_runs_on_arrival_when_the_follow_up_comes(run_for: Callable[..., Run]) -> None:
    """Test that a follow-up within the window runs on_arrival, even exactly at the edge."""
    run = run_for(EXPECT)
    assert run.at(0, "backup db started") == []
    assert run.at(3600, "backup db finished") == [(3600, "backup", "log", "info", "db", 0)]
    assert run.idle(10_000) == []
    assert run.at(10_001, "backup db finished") == []  # nothing was waiting


def test_expect_runs_on_timeout_with_the_start_event(run_for: Callable[..., Run]) -> None:
    """Test that no follow-up in time runs on_timeout, rendered from the starting event."""
    run = run_for(EXPECT)
    run.at(0, "backup db started")
    run.at(100, "backup web started")
    run.at(200, "backup web finished")
    assert run.at(3700, "unrelated") == [(3600, "backup", "incident", "open", "db", 1)]
    assert run.engine.book.get("backup:db").title == "backup db did not finish"  # type: ignore[union-attr]
    assert run.at(3800, "backup db finished") == []


CLEAR = """
rules:
  - id: link
    match: {message: {regex: 'link (?P<port>\\S+) down'}}
    key: "{{ port }}"
    clear: {match: {message: {regex: 'link (?P<port>\\S+) up'}}}
    actions: [{incident: {title: "link {{ port }} down"}}]
  - id: everything
    match: {message: {contains: link}}
    actions: [{log: "seen"}]
"""


def test_clear_resolves_the_incident_of_the_same_key(run_for: Callable[..., Run]) -> None:
    """Test that a clear event resolves only its own key and still reaches later rules."""
    run = run_for(CLEAR)
    run.at(0, "link ge0 down")
    run.at(1, "link ge1 down")
    out = run.at(5, "link ge0 up")
    assert out == [
        (5, "link", "resolve", "resolve", "ge0", 1),
        (5, "everything", "log", "info", "", 0),
    ]
    assert run.engine.book.get("link:ge1") is not None
    assert run.at(6, "link ge7 up") == [(6, "everything", "log", "info", "", 0)]


GROUP = """
rules:
  - id: cpu
    match: {message: {regex: 'cpu high on (?P<h>\\S+)'}}
    key: "{{ h }}"
    actions: []
  - id: mem
    match: {message: {regex: 'memory low on (?P<h>\\S+)'}}
    key: "{{ h }}"
    actions: []
  - id: swap
    match: {message: {regex: 'swapping on (?P<h>\\S+)'}}
    key: "{{ h }}"
    actions: []
  - id: overload
    group: {all_of: [cpu, mem], within: 60s}
    actions: [{incident: {title: "{{ h }} overloaded"}}]
  - id: two-of-three
    group: {count_distinct: {rules: [cpu, mem, swap], count: 2}, within: 60s}
    actions: [{log: "2 of 3 on {{ h }}"}]
"""


def test_group_all_of_needs_every_member_in_the_window(run_for: Callable[..., Run]) -> None:
    """Test that all_of acts when each member matched one key within the window."""
    run = run_for(GROUP)
    assert run.at(0, "cpu high on h1") == []
    assert run.at(10, "cpu high on h2") == []
    out = run.at(60, "memory low on h1")
    assert (60, "overload", "incident", "open", "h1", 2) in out
    assert (60, "two-of-three", "log", "info", "h1", 0) in out
    assert run.at(71, "memory low on h2") == []  # h2's cpu was 61 s before


def test_group_count_distinct_counts_rules_not_events(run_for: Callable[..., Run]) -> None:
    """Test that repeats of one member never complete a count_distinct group."""
    run = run_for(GROUP)
    for offset in range(5):
        assert run.at(offset, "swapping on h3") == []
    assert run.at(5, "cpu high on h3") == [(5, "two-of-three", "log", "info", "h3", 0)]


def test_clear_starts_a_suppressed_key_afresh(run_for: Callable[..., Run]) -> None:
    """Test that after a clear, the next event of the key acts again instead of being absorbed."""
    run = run_for(CLEAR.replace("    clear:", "    suppress: 10m\n    clear:"))
    assert run.at(0, "link ge0 down")[0][2:4] == ("incident", "open")
    run.at(60, "link ge0 up")
    assert run.at(120, "link ge0 down")[0][2:4] == ("incident", "open")


def test_timers_wait_for_late_events_within_the_lateness(run_for: Callable[..., Run]) -> None:
    """Test that a heartbeat up to `lateness` late still counts before its absence timer fires."""
    run = run_for(ABSENCE, lateness=10.0)
    run.at(0, "heartbeat from n1")
    assert run.at(65, "heartbeat from n2") == []  # n1 is due at 60, but 58 may still come
    assert run.at(58, "heartbeat from n1") == []  # 7 s late: in time
    assert run.at(80, "heartbeat from n2") == []
    assert run.at(129, "heartbeat from n2") == [(118, "heartbeat", "incident", "open", "n1", 1)]


def test_expect_start_at_the_deadline_times_out_the_old_wait(run_for: Callable[..., Run]) -> None:
    """Test that a new start exactly at the old wait's deadline times it out and is watched."""
    run = run_for(EXPECT)
    run.at(0, "backup db started")
    assert run.at(3600, "backup db started") == [(3600, "backup", "incident", "open", "db", 1)]
    assert run.at(4000, "backup db finished") == [(4000, "backup", "log", "info", "db", 0)]


FLAPPING = """
rules:
  - id: link
    match: {message: {regex: 'link (?P<port>\\S+) down'}}
    key: "{{ port }}"
    clear: {match: {message: {regex: 'link (?P<port>\\S+) up'}}}
    flapping: {changes: 4, within: 10m}
    actions: [{incident: {title: "link {{ port }} down"}}, {log: "link {{ port }} down"}]
"""


def test_flapping_holds_notifications_then_settles_once(run_for: Callable[..., Run]) -> None:
    """Test that a key opening/resolving 4 times in 10m is held, and settles after 10m quiet."""
    run = run_for(FLAPPING)
    for offset in (0, 20):
        assert [o[2] for o in run.at(offset, "link ge0 down")] == ["incident", "log"]
        run.at(offset + 10, "link ge0 up")  # 4 changes by 30: flapping
    out = run.at(40, "link ge0 down")
    assert [o[2:4] for o in out] == [("incident", "open"), ("mute", "flapping")]
    assert run.engine.book.get("link:ge0").muted.startswith(  # type: ignore[union-attr]
        "flapping: 5 opens/resolves since 2026-11-25T00:00:00+00:00"
    )
    assert [o[2] for o in run.at(41, "link ge1 down")] == ["incident", "log"]  # other keys: not
    run.at(50, "link ge0 up")
    assert run.idle(600) == []  # quiet only since 50
    assert run.idle(700) == [(650, "link", "mute", "settled", "ge0", 0)]
    assert "flapping settled: 6 opens/resolves between" in run.results[-1].logs[0].message
    assert [o[2] for o in run.at(800, "link ge0 down")] == ["incident", "log"]


STORM = """
rules:
  - id: port-down
    match: {message: {regex: 'port (?P<p>\\S+) down'}}
    key: "{{ p }}"
    storm: {new_keys: 3, within: 60s}
    actions: [{incident: {title: "port {{ p }} down"}}]
"""


def test_storm_folds_new_incidents_into_one_summary(run_for: Callable[..., Run]) -> None:
    """Test that beyond 3 new keys a minute, new incidents fold into one counted summary."""
    run = run_for(STORM)
    for i in range(3):
        assert run.at(i, f"port p{i} down")[0][2:4] == ("incident", "open")
    assert run.at(3, "port p3 down") == [(3, "port-down", "incident", "open", "(storm)", 1)]
    assert run.at(4, "port p4 down") == [(4, "port-down", "incident", "update", "(storm)", 2)]
    assert run.at(5, "port p0 down") == [(5, "port-down", "incident", "update", "p0", 2)]
    summary = run.engine.book.get("port-down:(storm)")
    assert summary is not None
    assert summary.labels == {"folded_keys": "2", "last_key": "p4"}
    # The rate falls: once a minute holds no more than 3 new keys, the storm ends.
    assert run.idle(60.5) == []  # (0.5, 60.5] still holds 1, 2, 3 and 4: too many
    assert run.idle(63) == [(61, "port-down", "resolve", "resolve", "(storm)", 2)]
    assert run.at(70, "port p9 down")[0][2:5] == ("incident", "open", "p9")


def test_a_resolve_rule_also_starts_the_key_afresh(run_for: Callable[..., Run]) -> None:
    """Test that resolving through another rule resets a suppressed key like `clear` does."""
    run = run_for(
        SUPPRESS + "  - id: disk-ok\n    match: {message: {regex: 'disk ok on (?P<host>\\S+)'}}\n"
        '    key: "{{ host }}"\n    actions: [{resolve: disk}]\n'
    )
    assert run.at(0, "disk full on h1")[0][2:4] == ("incident", "open")
    assert run.at(10, "disk ok on h1")[0][2:4] == ("resolve", "resolve")
    assert [o[2:4] for o in run.at(20, "disk full on h1")] == [
        ("incident", "open"),
        ("log", "info"),
    ]


def test_a_follow_up_after_the_deadline_is_too_late_even_if_read_early(
    run_for: Callable[..., Run],
) -> None:
    """Test that a finish stamped past the deadline times out the wait, whatever the read order."""
    run = run_for(EXPECT, lateness=30.0)
    run.at(0, "backup db started")
    assert run.at(3605, "backup db finished") == []  # 5 s late: read before the timer fired
    assert run.at(3640, "other") == [(3600, "backup", "incident", "open", "db", 1)]


def test_a_heartbeat_read_before_its_overdue_timer_still_reports_the_gap(
    run_for: Callable[..., Run],
) -> None:
    """Test that a beat stamped past the deadline opens and resolves the silence it ends."""
    run = run_for(ABSENCE, lateness=30.0)
    run.at(0, "heartbeat from n1")
    assert run.at(70, "heartbeat from n1") == [
        (60, "heartbeat", "incident", "open", "n1", 1),
        (70, "heartbeat", "resolve", "resolve", "n1", 1),
    ]


def test_flapping_in_one_batch_sees_every_change(run_for: Callable[..., Run]) -> None:
    """Test that a settle timer firing inside a batch counts the changes made earlier in it."""
    run = run_for(FLAPPING)
    items: list[tuple[float, str, dict[str, object]]] = []
    for offset in (0, 20, 40):
        items += [(offset, "link ge0 down", {}), (offset + 10, "link ge0 up", {})]
    out = run.batch([*items, (700, "link ge1 down", {})])
    assert (650, "link", "mute", "settled", "ge0", 0) in out


def test_storm_holds_the_notifications_of_folded_keys(run_for: Callable[..., Run]) -> None:
    """Test that a folded key's `log` is held with it, counted as muted by the storm."""
    run = run_for(STORM.replace('actions: [{incident: {title: "port {{ p }} down"}}]',
                                'actions: [{incident: {title: "p"}}, {log: "port {{ p }} down"}]'))  # fmt: skip
    for i in range(3):
        assert [o[2] for o in run.at(i, f"port p{i} down")] == ["incident", "log"]
    assert [o[2:5] for o in run.at(3, "port p3 down")] == [("incident", "open", "(storm)")]
    assert run.results[-1].muted == {("storm", "port-down"): 1}
    assert run.results[-1].actions == {"incident": 1}


def test_a_state_that_cannot_be_saved_is_dropped_not_fatal(run_for: Callable[..., Run]) -> None:
    """Test that an event nested too deep to save fails its key only; the batch goes on."""
    run = run_for(ABSENCE, track_state=True)
    deep: object = "x"
    for _ in range(2000):
        deep = [deep]
    out = run.batch(
        [(0, "heartbeat from n1", {"fields": {"deep": deep}}), (1, "heartbeat from n2", {})]
    )
    assert out == []
    result = run.results[-1]
    assert [(f.rule, f.stage) for f in result.failures] == [("heartbeat", "state")]
    assert {(r[1], r[2] is None) for r in result.state} == {("n1", True), ("n2", False)}
    assert sorted(run.engine.correlators["heartbeat"].states) == ["n2"]


def test_a_damaged_saved_row_starts_its_rule_fresh(run_for: Callable[..., Run]) -> None:
    """Test that restoring an unreadable state row forgets that rule instead of failing."""
    run = run_for(THRESHOLD + ABSENCE.replace("rules:\n", ""))
    digests = run.engine.digests()
    dropped = run.engine.restore(
        digests=digests,
        rows={"brute": [("a", "[0.0, 1.0]"), ("b", '{"not": "a list"}')],
              "heartbeat": [("n1", "not json")]},
        watermark=T0,
        wall=T0,
    )  # fmt: skip
    assert dropped == ["brute", "heartbeat"]
    assert run.engine.live_keys() == {"brute": 0, "heartbeat": 0}
    assert run.engine.pending_timers() == 0


def test_saved_state_of_another_format_starts_fresh(run_for: Callable[..., Run]) -> None:
    """Test that the digest carries the state format, so an old layout is not misread."""
    run = run_for(THRESHOLD)
    (digest,) = run.engine.digests().values()
    old = digest.rsplit(".", 1)[0] + ".1"
    assert run.engine.restore(digests={"brute": old}, rows={}, watermark=T0, wall=T0) == ["brute"]
