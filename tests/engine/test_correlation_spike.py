"""Golden tests for the spike and new_value correlation modes, their options and saved state."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from correlation_kit import T0, Out, Run

from tocsin.engine.clock import ManualClock
from tocsin.engine.correlators import NewValue, Spike
from tocsin.engine.pipeline import Engine
from tocsin.records.incidents import IncidentBook
from tocsin.records.priority import PriorityMatrix
from tocsin.rules.correlation import NewValueSpec, SpikeSpec
from tocsin.rules.loader import RuleSet

Build = Callable[..., Engine]
Load = Callable[..., RuleSet]


@pytest.fixture
def run_for(engine_for: Build, clock: ManualClock) -> Callable[..., Run]:
    """Return a function that builds a Run from rule YAML."""

    def build(text: str, **options: object) -> Run:
        clock.advance_to(T0)
        return Run(engine_for(text, **options), clock)

    return build


def quiet(run: Run, offsets: list[float], message: str) -> None:
    """Feed one event per offset, each of which must do nothing."""
    for offset in offsets:
        assert run.at(offset, message) == [], offset


# within 100s: buckets of 10s; reference 400s: 40 buckets. T0 is a multiple of 10, so the
# bucket of offset x starts at the multiple of 10 at or below x.
SPIKE = """
rules:
  - id: surge
    match: {message: {regex: 'error on (?P<svc>\\S+)'}}
    key: "{{ svc }}"
    spike: {ratio: 3, within: 100s, reference: 400s, min_count: 12}
    actions: [{incident: {title: "errors surge on {{ svc }}"}}, {log: "surge {{ svc }}"}]
"""


def test_spike_acts_at_ratio_times_the_reference_rate(run_for: Callable[..., Run]) -> None:
    """Test that a steady rate never acts, and a burst acts once it is 3x the reference rate."""
    run = run_for(SPIKE)
    quiet(run, [5 + 10 * k for k in range(60)], "error on api")  # one per bucket: 10 a window
    # At 600-609: the reference (110, 510] holds 40 (10 a window), so a spike needs 30 in
    # (510, 600+]: 9 from the steady rate (515..595) and 21 more.
    quiet(run, [600 + 0.4 * i for i in range(20)], "error on api")
    assert run.at(608, "error on api") == [
        (608, "surge", "incident", "open", "api", 30),
        (608, "surge", "log", "info", "api", 0),
    ]
    incident = run.engine.book.get("surge:api")
    assert incident is not None
    assert incident.first_seen == T0 + 510  # the start of the window's oldest bucket


def test_spike_window_edges_are_bucket_granular(run_for: Callable[..., Run]) -> None:
    """Test that an event exactly `within` old is out, and so is its whole bucket."""
    rule = SPIKE.replace("min_count: 12", "min_count: 3")
    run = run_for(rule)
    run.at(0, "error on a")  # exactly 100 s before the third: out
    run.at(50, "error on a")
    assert run.at(100, "error on a") == []
    run = run_for(rule.replace("surge", "s2"))
    run.at(5, "error on a")  # 95 s old, but in bucket [0, 10), which the window at 100 leaves
    run.at(50, "error on a")
    assert run.at(100, "error on a") == []
    run = run_for(rule.replace("surge", "s3"))
    run.at(10, "error on a")  # bucket [10, 20): the oldest in the window at 100
    run.at(50, "error on a")
    assert run.at(100, "error on a")[0] == (100, "s3", "incident", "open", "a", 3)


def test_spike_with_an_empty_reference_needs_only_min_count(run_for: Callable[..., Run]) -> None:
    """Test that a key with no history spikes on min_count events, not before, per key."""
    run = run_for(SPIKE.replace("min_count: 12", "min_count: 3"))
    assert run.at(0, "error on a") == []
    assert run.at(1, "error on a") == []
    assert run.at(1.5, "error on b") == []
    assert run.at(2, "error on a")[0] == (2, "surge", "incident", "open", "a", 3)


def test_spike_burst_below_min_count_does_not_act(run_for: Callable[..., Run]) -> None:
    """Test that a burst far above the reference rate does not act until min_count is met."""
    run = run_for(SPIKE)
    run.at(0, "error on a")  # the whole reference at 500: 1 event, 0.25 a window
    quiet(run, [500 + i for i in range(11)], "error on a")  # 11 is 44x, but < min_count 12
    assert run.at(511, "error on a")[0] == (511, "surge", "incident", "open", "a", 12)


def test_spike_absorbs_for_within_then_rearms(run_for: Callable[..., Run]) -> None:
    """Test that after acting, events count into the incident up to act+within, then re-arm."""
    run = run_for(SPIKE.replace("min_count: 12", "min_count: 3"))
    run.at(0, "error on a")
    run.at(1, "error on a")
    assert run.at(2, "error on a")[0] == (2, "surge", "incident", "open", "a", 3)
    assert run.at(50, "error on a") == [(50, "surge", "incident", "update", "a", 4)]
    assert run.at(102, "error on a") == [(102, "surge", "incident", "update", "a", 5)]
    # Re-armed at 103: (100, 103] holds 50, 102, 103 (3). The key's only known history is its
    # first bucket (3 events in 10 s: 30 a window), so 3 is no spike; on the full 400 s
    # reference it would have been (0.75 a window), which is why young keys use their own.
    assert run.at(103, "error on a") == []


def test_spike_keys_expire_when_out_of_every_reference(run_for: Callable[..., Run]) -> None:
    """Test that a key is dropped once its newest bucket is more than within + reference old."""
    run = run_for(SPIKE)
    run.at(0, "error on a")  # bucket [0, 10): in reference windows until 500
    run.at(500, "error on b")
    assert run.engine.live_keys() == {"surge": 2}
    run.at(500.5, "error on b")
    assert run.engine.live_keys() == {"surge": 1}
    assert run.results[-1].expired == 1


def test_spike_state_is_bounded_by_buckets_not_events(run_for: Callable[..., Run]) -> None:
    """Test that thousands of events keep at most 10 + 40 buckets for the key."""
    run = run_for(SPIKE)
    run.batch([(i * 0.25, "error on a", {}) for i in range(8000)])  # 2000 s at 4 a second
    correlator = run.engine.correlators["surge"]
    assert isinstance(correlator, Spike)
    buckets = correlator.states["a"].buckets
    assert len(buckets) == 50
    assert sum(count for _, count in buckets) == 50 * 40


NEW_VALUE = """
rules:
  - id: first-login
    match: {message: {regex: '(?P<user>\\S+) logged in to (?P<host>\\S+)'}}
    key: "{{ host }}"
    new_value: {value: "{{ user }}", forget_after: 100s, max_values: 2}
    actions: [{incident: {title: "new logins on {{ host }}"}}, {log: "{{ user }} on {{ host }}"}]
"""


def test_new_value_acts_on_first_sightings_only(run_for: Callable[..., Run]) -> None:
    """Test that a new value acts, per key, and a known one does nothing, not even absorb."""
    run = run_for(NEW_VALUE)
    assert run.at(0, "alice logged in to h1") == [
        (0, "first-login", "incident", "open", "h1", 1),
        (0, "first-login", "log", "info", "h1", 0),
    ]
    assert run.at(1, "alice logged in to h1") == []
    assert run.at(2, "bob logged in to h1")[0] == (2, "first-login", "incident", "update", "h1", 2)
    assert run.at(3, "alice logged in to h2")[0] == (3, "first-login", "incident", "open", "h2", 1)
    assert run.at(4, "bob logged in to h1") == []


def test_new_value_forgets_after_forget_after(run_for: Callable[..., Run]) -> None:
    """Test that a value seen exactly forget_after ago is known, and a hair more is new."""
    run = run_for(NEW_VALUE)
    run.at(0, "alice logged in to h1")
    assert run.at(100, "alice logged in to h1") == []  # and now last seen at 100
    assert run.at(200, "alice logged in to h1") == []
    assert run.at(300.5, "alice logged in to h1")[0][:4] == (
        300.5,
        "first-login",
        "incident",
        "update",
    )


def test_new_value_max_values_forgets_the_least_recently_seen(
    run_for: Callable[..., Run],
) -> None:
    """Test that past max_values the least recently seen value goes, and is new again."""
    run = run_for(NEW_VALUE)
    run.at(0, "alice logged in to h1")
    run.at(1, "bob logged in to h1")
    assert run.at(2, "alice logged in to h1") == []  # alice is now the most recent
    assert run.at(3, "carol logged in to h1")[1][2] == "log"  # bob goes
    assert run.at(4, "alice logged in to h1") == []
    assert run.at(5, "bob logged in to h1")[1] == (5, "first-login", "log", "info", "h1", 0)
    correlator = run.engine.correlators["first-login"]
    assert isinstance(correlator, NewValue)
    assert list(correlator.states["h1"].seen) == ["alice", "bob"]


def test_new_value_keys_expire_once_every_value_is_forgotten(
    run_for: Callable[..., Run],
) -> None:
    """Test that a key idle for longer than forget_after is dropped."""
    run = run_for(NEW_VALUE)
    run.at(0, "alice logged in to h1")
    run.at(50, "bob logged in to h1")
    run.at(150, "carol logged in to h2")
    assert run.engine.live_keys() == {"first-login": 2}
    run.at(150.5, "carol logged in to h2")
    assert run.engine.live_keys() == {"first-login": 1}


def test_new_value_render_error_is_a_failure(run_for: Callable[..., Run]) -> None:
    """Test that a value that fails to render is reported, acts on nothing, and the batch goes on."""
    run = run_for(NEW_VALUE.replace('value: "{{ user }}"', 'value: "{{ 100 // (user | int) }}"'))
    out = run.batch([(0, "0 logged in to h1", {}), (1, "5 logged in to h1", {})])
    assert out[0] == (1, "first-login", "incident", "open", "h1", 1)
    [failure] = run.results[-1].failures
    assert (failure.rule, failure.stage, failure.event.message) == (
        "first-login",
        "correlate",
        "0 logged in to h1",
    )
    assert failure.error.startswith("TemplateRenderError(")
    assert run.at(2, "05 logged in to h1") == []  # renders "20" too: already seen


BOTH = SPIKE.replace("min_count: 12", "min_count: 3") + NEW_VALUE.replace("rules:\n", "")


def _engine(ruleset: RuleSet, clock: ManualClock, book: IncidentBook | None = None) -> Engine:
    return Engine(
        rules=ruleset.rules,
        lists=ruleset.lists,
        book=book or IncidentBook(priorities=PriorityMatrix()),
        clock=clock,
        record_outputs=True,
    )


def test_restored_state_continues_identically(load_text: Load) -> None:
    """Test that a fresh engine restored from dumped state carries on like one that never stopped."""
    ruleset = load_text(BOTH)
    assert not ruleset.errors, [str(e) for e in ruleset.errors]
    first: list[tuple[float, str, dict[str, object]]] = [
        (0, "error on a", {}),
        (1, "error on a", {}),
        (2, "error on a", {}),  # spike: absorbing until 102
        (10, "error on b", {}),
        (20, "alice logged in to h1", {}),
        (30, "bob logged in to h1", {}),
        (40, "alice logged in to h2", {}),
    ]
    second: list[list[tuple[float, str, dict[str, object]]]] = [
        [(50, "error on a", {})],  # absorbed
        [(60, "error on b", {}), (61, "error on b", {})],  # b's third: a spike
        [(102, "error on a", {})],  # absorbed: exactly `within` after the act
        [(103, "error on a", {})],  # re-armed: no spike against the key's own first bucket
        [(70, "carol logged in to h1", {})],  # late, placed at 103: new, pushes alice out
        [(110, "alice logged in to h1", {})],  # new again, pushes bob out
        [(120, "carol logged in to h1", {})],  # known
        [(145, "alice logged in to h2", {})],  # 105 s after: forgotten, new again
        [(150, "bob logged in to h1", {})],  # new again
    ]
    clock = ManualClock(T0)
    whole = Run(_engine(ruleset, clock), clock)
    clock = ManualClock(T0)
    stopped = Run(_engine(ruleset, clock), clock)
    whole.batch(first)
    stopped.batch(first)

    rows = {
        rule_id: [(key, json.dumps(c.dump(state))) for key, state in c.states.items()]
        for rule_id, c in stopped.engine.correlators.items()
    }
    assert sorted(rows) == ["first-login", "surge"]
    clock = ManualClock(stopped.clock.now())
    resumed = Run(_engine(ruleset, clock, stopped.engine.book), clock)
    dropped = resumed.engine.restore(
        digests=stopped.engine.digests(),
        rows=rows,
        watermark=stopped.engine.time.watermark,
        wall=clock.now(),
    )
    assert dropped == []

    expected: list[Out] = []
    got: list[Out] = []
    for items in second:
        expected += whole.batch(items)
        got += resumed.batch(items)
    assert got == expected
    assert [o[:4] for o in expected] == [
        (50, "surge", "incident", "update"),
        (61, "surge", "incident", "open"),
        (61, "surge", "log", "info"),
        (102, "surge", "incident", "update"),
        (103, "first-login", "incident", "update"),
        (103, "first-login", "log", "info"),
        (110, "first-login", "incident", "update"),
        (110, "first-login", "log", "info"),
        (145, "first-login", "incident", "update"),
        (145, "first-login", "log", "info"),
        (150, "first-login", "incident", "update"),
        (150, "first-login", "log", "info"),
    ]
    for rule_id, correlator in whole.engine.correlators.items():
        again = resumed.engine.correlators[rule_id]
        assert [(k, correlator.dump(s)) for k, s in correlator.states.items()] == [
            (k, again.dump(s)) for k, s in again.states.items()
        ]


def test_spike_and_new_value_compile_to_their_specs(load_text: Load) -> None:
    """Test that the options become specs, with the documented defaults."""
    ruleset = load_text(
        """
rules:
  - {id: s, match: {message: {contains: a}}, spike: {ratio: 3, within: 5m}, actions: [drop]}
  - id: s2
    match: {message: {contains: b}}
    spike: {ratio: 2.5, within: 1m, reference: 1h, min_count: 10}
    actions: [drop]
  - {id: n, match: {message: {contains: c}}, new_value: {value: "{{ user }}"}, actions: [drop]}
  - id: n2
    match: {message: {contains: d}}
    new_value: {value: "{{ user }}", forget_after: 30d, max_values: 50}
    actions: [drop]
"""
    )
    assert not ruleset.errors, [str(e) for e in ruleset.errors]
    modes = {r.id: r.correlation.mode if r.correlation else None for r in ruleset.rules}
    assert modes["s"] == SpikeSpec(3.0, 300.0, 1200.0, 10)
    assert modes["s2"] == SpikeSpec(2.5, 60.0, 3600.0, 10)
    n, n2 = modes["n"], modes["n2"]
    assert isinstance(n, NewValueSpec)
    assert isinstance(n2, NewValueSpec)
    assert (n.value.source, n.forget_after, n.max_values) == ("{{ user }}", None, 10_000)
    assert (n2.forget_after, n2.max_values) == (30 * 86400.0, 50)


HEAD = "rules:\n  - id: r\n    match: {message: {contains: x}}\n"


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (
            "    spike: {ratio: 1, within: 5m}\n",
            "rules.yaml:4:20: rule 'r': ratio must be a number greater than 1, not 1",
        ),
        (
            "    spike: {ratio: '3', within: 5m}\n",
            "rules.yaml:4:20: rule 'r': ratio must be a number greater than 1, not '3'",
        ),
        (
            "    spike: {ratio: 3}\n",
            "rules.yaml:4:12: rule 'r': missing required key 'within'",
        ),
        (
            "    spike: {ratio: 3, within: 0s}\n",
            "rules.yaml:4:31: rule 'r': within must be longer than 0s",
        ),
        (
            "    spike: {ratio: 3, within: 5m, reference: 1m}\n",
            "rules.yaml:4:46: rule 'r': reference must be from 1 to 100 times within "
            "(300s to 30000s)",
        ),
        (
            "    spike: {ratio: 3, within: 5m, min_count: 0}\n",
            "rules.yaml:4:46: rule 'r': min_count must be a whole number >= 1",
        ),
        (
            "    spike: {ratio: 3, within: 5m, window: 1h}\n",
            "rules.yaml:4:35: rule 'r': unknown spike option 'window'",
        ),
        (
            "    spike: 5m\n",
            "rules.yaml:4:12: rule 'r': 'spike' must be a mapping, not text",
        ),
        (
            "    suppress: 1m\n    spike: {ratio: 3, within: 5m}\n",
            "rules.yaml:5:12: rule 'r': 'spike' cannot be combined with 'suppress'; a rule "
            "takes one of suppress, threshold, hysteresis, absence, expect, group, spike, "
            "new_value",
        ),
        (
            "    new_value: {}\n",
            "rules.yaml:4:16: rule 'r': missing required key 'value'",
        ),
        (
            "    new_value: {value: 5}\n",
            "rules.yaml:4:24: rule 'r': value must be text",
        ),
        (
            "    new_value: {value: '{{ user'}\n",
            "rules.yaml:4:24: rule 'r': value is not a valid template: unexpected end of "
            "template, expected 'end of print statement'.",
        ),
        (
            "    new_value: {value: x, forget_after: 0s}\n",
            "rules.yaml:4:41: rule 'r': forget_after must be longer than 0s",
        ),
        (
            "    new_value: {value: x, max_values: 0}\n",
            "rules.yaml:4:39: rule 'r': max_values must be a whole number >= 1",
        ),
        (
            "    new_value: {value: x, forget: 1d}\n",
            "rules.yaml:4:27: rule 'r': unknown new_value option 'forget' (did you mean "
            "'forget_after'?)",
        ),
        (
            "    spike: {ratio: 3, within: 5m}\n    new_value: {value: x}\n",
            "rules.yaml:5:16: rule 'r': 'new_value' cannot be combined with 'spike'; a rule "
            "takes one of suppress, threshold, hysteresis, absence, expect, group, spike, "
            "new_value",
        ),
    ],
)
def test_bad_spike_and_new_value_options_are_reported(
    load_text: Load, options: str, error: str
) -> None:
    """Test that a bad spike or new_value option is reported at its line, precisely."""
    ruleset = load_text(HEAD + options + "    actions: [drop]\n")
    assert len(ruleset.errors) == 1, [str(e) for e in ruleset.errors]
    assert str(ruleset.errors[0]).rsplit("/", 1)[-1] == error
