"""Problems: lifecycle and refusals, linking, recurrence counting on virtual time, persistence."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.model import Incident, IncidentState
from tocsin.records.problems import (
    Problem,
    ProblemBook,
    ProblemError,
    ProblemState,
    Recurrence,
    RecurrencePolicy,
    RecurrenceRule,
    parse_problems,
    track_recurrence,
)
from tocsin.yamlsrc import SourceError, load_yaml, value_mark

NOW = 1_795_564_800.0  # 2026-11-25T00:00:00Z
HOUR = 3600.0
DAY = 86400.0


def incident(
    number: int, key: str = "k", *, rule: str = "r", service: str = "", category: str = ""
) -> Incident:
    """Return an open incident as the incident book would hold it."""
    return Incident(
        id=number,
        fingerprint=f"{rule}:{key}",
        rule=rule,
        key=key,
        title=f"{rule} on {key}",
        state=IncidentState.NEW,
        priority="P3",
        impact="medium",
        urgency="medium",
        first_seen=NOW,
        last_seen=NOW,
        service=service,
        category=category,
    )


def opened(book: ProblemBook, **kw: Any) -> Problem:
    """Open a problem with a title, at NOW, by alice."""
    kw.setdefault("title", "database keeps filling its disk")
    return book.open(time=NOW, actor="alice", **kw).problem


# ---------------------------------------------------------------------------------------------
# Lifecycle


def test_the_happy_path_records_every_transition() -> None:
    """Test new -> investigating -> known_error -> resolved -> closed, with times and counts."""
    book = ProblemBook()
    problem = opened(book, service="db")
    assert (problem.id, problem.state, problem.opened_at) == (1, ProblemState.NEW, NOW)
    assert book.by_state() == {"new": 1}
    changes = [
        book.transition(problem, "investigating", time=NOW + 1, actor="alice"),
        book.update(problem, workaround="rotate the logs", time=NOW + 2, actor="alice"),
        book.transition(problem, "known_error", time=NOW + 3, actor="alice", note="found it"),
        book.transition(problem, "resolved", time=NOW + 4, actor="bob"),
        book.transition(problem, "closed", time=NOW + 5, actor="bob"),
    ]
    assert [(c.op, c.previous, c.state, c.actor, c.note) for c in changes] == [
        ("investigate", "new", "investigating", "alice", ""),
        ("update", None, None, "alice", "workaround set"),
        ("known_error", "investigating", "known_error", "alice", "found it"),
        ("resolve", "known_error", "resolved", "bob", ""),
        ("close", "resolved", "closed", "bob", ""),
    ]
    assert (problem.resolved_at, problem.closed_at) == (NOW + 4, NOW + 5)
    assert problem.state is ProblemState.CLOSED
    assert book.get(problem.id) is None  # closed: it lives only in the store now
    assert len(book) == 0
    assert +book.by_state() == {}


@pytest.mark.parametrize(
    ("path", "to", "message"),
    [
        (
            ["investigating"],
            "investigating",
            "is investigating; it can move to investigating only from new",
        ),
        ([], "closed", "is new; it can move to closed only from resolved"),
        ([], "reopen", "is new; only a resolved problem can be reopened"),
        (
            ["resolved"],
            "known_error",
            "is resolved; it can move to known_error only from investigating, new",
        ),
        (["resolved", "closed"], "reopen", "is closed; only a resolved problem can be reopened"),
        (
            ["resolved", "closed"],
            "resolved",
            "is closed; it can move to resolved only from investigating, known_error, new",
        ),
    ],
)
def test_transitions_the_state_does_not_allow_are_conflicts(
    path: list[str], to: str, message: str
) -> None:
    """Test that a refused transition says what the state is and changes nothing."""
    book = ProblemBook()
    problem = opened(book)
    for step in path:
        book.transition(problem, step, time=NOW, actor="a")
    before = (problem.state, problem.resolved_at, problem.closed_at)
    with pytest.raises(ProblemError, match=message) as caught:
        book.transition(problem, to, time=NOW + 1, actor="a")
    assert caught.value.conflict
    assert str(caught.value).startswith("problem 1 ")
    assert (problem.state, problem.resolved_at, problem.closed_at) == before


def test_an_unknown_target_is_a_bad_value() -> None:
    """Test that a misspelt state is a bad value (400) listing the right ones."""
    book = ProblemBook()
    with pytest.raises(ProblemError) as caught:
        book.transition(opened(book), "fixed", time=NOW, actor="a")
    assert not caught.value.conflict
    assert str(caught.value) == (
        "unknown state 'fixed'; use one of investigating, known_error, resolved, closed, reopen"
    )


def test_a_known_error_needs_a_workaround_or_a_root_cause() -> None:
    """Test that known_error is refused until something is known, then allowed by either."""
    book = ProblemBook()
    problem = opened(book)
    with pytest.raises(ProblemError, match="has no workaround or root cause yet") as caught:
        book.transition(problem, "known_error", time=NOW, actor="a")
    assert caught.value.conflict
    assert problem.state is ProblemState.NEW
    book.update(problem, root_cause="log rotation is off", time=NOW, actor="a")
    change = book.transition(problem, "known_error", time=NOW, actor="a")
    assert (change.previous, change.state) == ("new", "known_error")
    assert book.by_state() == {"known_error": 1, "new": 0}


def test_reopen_brings_a_resolved_problem_back_under_investigation() -> None:
    """Test that reopening clears resolved_at and the key points at the problem again."""
    book = ProblemBook()
    problem = opened(book, key='{fingerprint="r:k"}')
    book.transition(problem, "resolved", time=NOW + 1, actor="a")
    change = book.transition(problem, "reopen", time=NOW + 2, actor="a", note="back again")
    assert (change.op, change.previous, change.state, change.note) == (
        "reopen",
        "resolved",
        "investigating",
        "back again",
    )
    assert problem.resolved_at is None
    assert book.for_key('{fingerprint="r:k"}') is problem


def test_a_key_holds_one_problem_until_it_is_closed() -> None:
    """Test that a second problem for a key is refused while the first is not closed."""
    book = ProblemBook()
    first = opened(book, key="disk")
    book.transition(first, "resolved", time=NOW, actor="a")
    with pytest.raises(ProblemError) as caught:
        opened(book, key="disk")
    assert str(caught.value) == (
        "problem 1 (resolved) already has key disk; a key has one problem until that is closed"
    )
    book.transition(first, "closed", time=NOW, actor="a")
    assert book.for_key("disk") is None
    second = opened(book, key="disk")
    assert (second.id, book.for_key("disk")) == (2, second)


def test_reopening_is_refused_when_another_problem_took_the_key() -> None:
    """Test that a closed-over key is not stolen back by an old problem from the store."""
    old = Problem(id=1, title="t", state=ProblemState.RESOLVED, opened_at=NOW, fingerprint="disk")
    book = ProblemBook(next_id=5)
    newer = opened(book, key="disk")
    with pytest.raises(ProblemError) as caught:
        book.transition(old, "reopen", time=NOW, actor="a")
    assert str(caught.value) == ("problem 1 cannot be reopened: problem 5 is open for the same key")
    assert book.for_key("disk") is newer


def test_update_sets_and_clears_fields_and_says_what_changed() -> None:
    """Test None keeps a field, "" clears it, and the note names what changed."""
    book = ProblemBook()
    problem = opened(book, owner="alice", workaround="restart it")
    change = book.update(
        problem,
        owner="bob",
        workaround="",
        root_cause="  a leak  ",
        time=NOW,
        actor="carol",
        note="handover",
    )
    assert change.note == "root cause set, workaround cleared, owner bob: handover"
    assert (problem.owner, problem.workaround, problem.root_cause) == ("bob", "", "a leak")
    assert problem.title == "database keeps filling its disk"
    book.update(problem, title="Disk leak", known_error="disk-leak", time=NOW, actor="carol")
    assert (problem.title, problem.known_error) == ("Disk leak", "disk-leak")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "nothing to change: give a title, root cause, workaround, owner or known error"),
        ({"title": "   "}, "a problem needs a title"),
        ({"workaround": "x" * 10_001}, "the workaround is too long (at most 10000 characters)"),
        ({"owner": "x" * 201}, "the owner is too long (at most 200 characters)"),
    ],
)
def test_bad_updates_are_bad_values(fields: dict[str, str], message: str) -> None:
    """Test that a bad update is refused with a sentence and leaves the problem alone."""
    book = ProblemBook()
    problem = opened(book, workaround="before")
    with pytest.raises(ProblemError) as caught:
        book.update(problem, time=NOW, actor="a", **fields)
    assert (str(caught.value), caught.value.conflict) == (message, False)
    assert (problem.title, problem.workaround) == ("database keeps filling its disk", "before")


def test_a_closed_problem_takes_no_updates_and_no_links() -> None:
    """Test that a closed problem is a record: updates and links are conflicts."""
    book = ProblemBook()
    problem = opened(book)
    book.transition(problem, "resolved", time=NOW, actor="a")
    book.transition(problem, "closed", time=NOW, actor="a")
    with pytest.raises(ProblemError, match="problem 1 is closed; it cannot change any more"):
        book.update(problem, owner="x", time=NOW, actor="a")
    with pytest.raises(ProblemError, match="problem 1 is closed; link the incident to a new one"):
        book.link(problem, 7, time=NOW, actor="a")


def test_opening_needs_a_title() -> None:
    """Test that an empty title is a bad value and uses no id."""
    book = ProblemBook()
    with pytest.raises(ProblemError, match="a problem needs a title"):
        book.open(title=" ", time=NOW, actor="a")
    assert opened(book).id == 1


# ---------------------------------------------------------------------------------------------
# Linking


def test_links_are_bounded_and_counted() -> None:
    """Test that a problem keeps the newest ids, counts every link, and refuses repeats."""
    book = ProblemBook(max_linked=3)
    problem = opened(book)
    changes = [book.link(problem, i, time=NOW + i, actor="a") for i in range(1, 6)]
    assert problem.incidents == [3, 4, 5]
    assert problem.incident_count == 5
    assert [(c.op, c.incident, c.note) for c in changes[:1]] == [("link", 1, "incident 1 linked")]
    with pytest.raises(ProblemError) as caught:
        book.link(problem, 4, time=NOW, actor="a")
    assert (str(caught.value), caught.value.conflict) == (
        "incident 4 is already linked to problem 1",
        True,
    )
    assert problem.incident_count == 5


def test_open_or_link_opens_then_adds_only_new_incidents_then_reopens() -> None:
    """Test the explicit-key entry point: open, link the new, reopen a resolved one."""
    book = ProblemBook()
    first = book.open_or_link(
        "db-disk",
        title="db disk",
        incident_ids=[4, 5, 4],
        time=NOW,
        actor="rule:r",
        service="db",
        category="disk",
    )
    assert [(c.op, c.incident) for c in first] == [("open", None), ("link", 4), ("link", 5)]
    problem = first[0].problem
    assert (problem.fingerprint, problem.service, problem.category) == ("db-disk", "db", "disk")
    again = book.open_or_link("db-disk", title="ignored", incident_ids=[5, 6], time=NOW, actor="x")
    assert [(c.op, c.incident) for c in again] == [("link", 6)]
    assert problem.title == "db disk"
    book.transition(problem, "resolved", time=NOW + 1, actor="a")
    back = book.open_or_link("db-disk", title="t", incident_ids=[7], time=NOW + 2, actor="x")
    assert [(c.op, c.previous, c.state, c.note) for c in back] == [
        ("reopen", "resolved", "investigating", "the key recurred"),
        ("link", None, None, "incident 7 linked"),
    ]
    with pytest.raises(ProblemError, match="a problem key must not be empty"):
        book.open_or_link(" ", title="t", incident_ids=[], time=NOW, actor="x")


# ---------------------------------------------------------------------------------------------
# Persistence of problems


def test_problems_round_trip_through_json() -> None:
    """Test that to_dict/from_dict keeps every field, through JSON text."""
    book = ProblemBook()
    problem = opened(book, service="db", category="disk", key="k", owner="alice")
    book.link(problem, 3, time=NOW, actor="a")
    book.update(
        problem, root_cause="leak", workaround="restart", known_error="leak", time=NOW, actor="a"
    )
    book.transition(problem, "resolved", time=NOW + 9, actor="a")
    back = Problem.from_dict(json.loads(json.dumps(problem.to_dict())))
    assert back == problem
    assert back.state is ProblemState.RESOLVED


def test_a_book_rebuilt_from_the_store_carries_on() -> None:
    """Test that closed problems are left out, ids continue, keys and counts come back."""
    stored = [
        Problem(id=4, title="a", state=ProblemState.INVESTIGATING, opened_at=NOW, fingerprint="x"),
        Problem(id=9, title="b", state=ProblemState.CLOSED, opened_at=NOW, fingerprint="y"),
        Problem(id=2, title="c", state=ProblemState.RESOLVED, opened_at=NOW),
    ]
    book = ProblemBook(next_id=3, problems=stored)
    assert [p.id for p in book.problems()] == [2, 4]
    assert book.for_key("x") is stored[0]
    assert book.for_key("y") is None
    assert book.by_state() == {"investigating": 1, "resolved": 1}
    assert opened(book).id == 5


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ({"title": None}, "problem record field 'title' must be text"),
        ({"state": "fixed"}, "problem record has unknown state 'fixed'"),
        ({"state": ["new"]}, "problem record has unknown state ['new']"),
        ({"incidents": [1, "2"]}, "problem record field 'incidents' must list ids"),
        ({"id": 0}, "problem record field 'id' must be a whole number"),
        ({"incident_count": -1}, "problem record field 'incident_count' must be a whole number"),
        ({"opened_at": float("nan")}, "problem record field 'opened_at' must be a finite time"),
        ({"closed_at": "soon"}, "problem record field 'closed_at' must be a finite time"),
    ],
)
def test_damaged_problem_records_are_named(damage: dict[str, Any], message: str) -> None:
    """Test that a damaged record says which field is wrong."""
    data = Problem(id=1, title="t", state=ProblemState.NEW, opened_at=NOW).to_dict()
    data.update(damage)
    with pytest.raises(ProblemError) as caught:
        Problem.from_dict(data)
    assert str(caught.value) == message
    del data["owner"]
    with pytest.raises(ProblemError, match="problem record lacks owner"):
        Problem.from_dict(data)


# ---------------------------------------------------------------------------------------------
# Recurrence


BY_FINGERPRINT = RecurrenceRule(by=("fingerprint",), count=3, within=DAY)
BY_SERVICE = RecurrenceRule(by=("service", "category"), count=2, within=HOUR)


@pytest.mark.parametrize(
    ("offsets", "recurs"),
    [
        ([0.0, 12 * HOUR, DAY], True),  # the oldest exactly `within` before: it counts
        ([0.0, 12 * HOUR, DAY + 0.001], False),
        ([0.0, 0.0, 0.0], True),
        ([0.0, DAY + 1, DAY + 2], False),  # the first one fell out of the window
    ],
)
def test_the_window_edge_is_inclusive(offsets: list[float], recurs: bool) -> None:
    """Test N openings within T at the exact edges of the window."""
    policy = RecurrencePolicy([BY_FINGERPRINT])
    found: list[Recurrence] = []
    for number, offset in enumerate(offsets, 1):
        found = policy.observe(incident(number), NOW + offset)
    assert bool(found) is recurs


def test_a_recurrence_names_its_key_incidents_and_starts_the_count_again() -> None:
    """Test the Recurrence's contents, and that the next one needs `count` new openings."""
    policy = RecurrencePolicy([BY_FINGERPRINT])
    seen = [policy.observe(incident(i), NOW + i) for i in (1, 2, 3)]
    assert seen[:2] == [[], []]
    assert seen[2] == [
        Recurrence(
            key='{fingerprint="r:k"}',
            title="Recurring: r on k",
            incident_ids=(1, 2, 3),
            service="",
            category="",
            note="3 incidents within 1d by fingerprint",
        )
    ]
    assert len(policy) == 0
    assert [policy.observe(incident(i), NOW + i) for i in (4, 5)] == [[], []]
    assert policy.observe(incident(4), NOW + 6)[0].incident_ids == (4, 5)  # a reopened one


def test_keys_by_fields_skip_incidents_without_a_value() -> None:
    """Test field keys, their quoting, titles, and that empty values are not counted."""
    policy = RecurrencePolicy([BY_FINGERPRINT, BY_SERVICE])
    db = incident(1, service='d"b', category="disk")
    assert policy.keys(db) == ['{fingerprint="r:k"}', '{service="d\\"b", category="disk"}']
    assert policy.keys(incident(2, service="db")) == ['{fingerprint="r:k"}']
    assert policy.observe(db, NOW) == []
    found = policy.observe(incident(3, "other", service='d"b', category="disk"), NOW + 60)
    assert [(r.key, r.title, r.incident_ids, r.service) for r in found] == [
        (
            '{service="d\\"b", category="disk"}',
            'Recurring incidents: service d"b, category disk',
            (1, 3),
            'd"b',
        ),
    ]
    lone = [incident(4 + i, f"k{i}", service="db") for i in range(3)]  # no category: not counted
    assert [policy.observe(each, NOW + 60) for each in lone] == [[], [], []]
    assert len(policy) == 5  # r:k, r:other, r:k0, r:k1, r:k2; the service key restarted


def test_old_keys_are_forgotten_and_a_full_policy_evicts_the_stalest() -> None:
    """Test that keys outside their window go, and max_keys bounds memory with a count."""
    policy = RecurrencePolicy([BY_FINGERPRINT], max_keys=2)
    policy.observe(incident(1, "a"), NOW)
    policy.observe(incident(2, "b"), NOW + 10)
    policy.observe(incident(3, "c"), NOW + 20)
    assert (len(policy), policy.evicted) == (2, 1)
    assert list(policy.dump()["counts"]["fingerprint"]) == [
        '{fingerprint="r:b"}',
        '{fingerprint="r:c"}',
    ]
    policy.observe(incident(4, "d"), NOW + 20 + DAY + 1)  # b and c are a day old now
    assert list(policy.dump()["counts"]["fingerprint"]) == ['{fingerprint="r:d"}']
    assert policy.evicted == 1


def test_counts_survive_a_restart_and_a_reload() -> None:
    """Test dump/restore through JSON, and set_rules keeping the counts of kept fields."""
    policy = RecurrencePolicy([BY_FINGERPRINT, BY_SERVICE])
    policy.observe(incident(1, service="db", category="disk"), NOW)
    policy.observe(incident(2, service="db", category="disk"), NOW + 1)
    saved = json.loads(json.dumps(policy.dump()))
    fresh = RecurrencePolicy([BY_FINGERPRINT])
    fresh.restore(saved)  # the service rule is gone from this config: its counts are dropped
    assert len(fresh) == 1
    assert [r.incident_ids for r in fresh.observe(incident(3), NOW + 2)] == [(1, 2, 3)]
    fresh.observe(incident(4), NOW + 3)
    fresh.observe(incident(5), NOW + 4)
    fresh.set_rules([RecurrenceRule(by=("fingerprint",), count=2, within=DAY), BY_SERVICE])
    assert fresh.dump()["counts"]["fingerprint"] == {
        '{fingerprint="r:k"}': [[NOW + 3, 4], [NOW + 4, 5]]
    }
    fresh.set_rules([RecurrenceRule(by=("fingerprint",), count=2, within=DAY)])
    assert [r.incident_ids for r in fresh.observe(incident(6), NOW + 5)] == [(5, 6)]
    with pytest.raises(ValueError, match="two recurrence rules count by the same fields"):
        fresh.set_rules([BY_FINGERPRINT, BY_FINGERPRINT])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"version": 2, "counts": {}}, "recurrence counts: not a version 1 dump"),
        ({"version": 1, "counts": []}, "recurrence counts: 'counts' must be a mapping"),
        ({"version": 1, "counts": {"fingerprint": []}}, "recurrence counts of fingerprint: not a mapping"),
        ({"version": 1, "counts": {"fingerprint": {"k": [[1.0, 0]]}}},
         "recurrence counts of fingerprint: [1.0, 0] is not [time, incident id]"),
        ({"version": 1, "counts": {"fingerprint": {"k": 3}}},
         "recurrence counts: a key's openings must be a list"),
    ],
)  # fmt: skip
def test_damaged_counts_are_refused(data: dict[str, Any], message: str) -> None:
    """Test that restore names what is wrong with a damaged dump."""
    with pytest.raises(ValueError, match=r"^recurrence counts") as caught:
        RecurrencePolicy([BY_FINGERPRINT]).restore(data)
    assert str(caught.value) == message


def brute_force(
    rule: RecurrenceRule, openings: list[tuple[str, float, int]]
) -> list[tuple[int, str, tuple[int, ...]]]:
    """Keep every opening since the last recurrence; a key recurs when `count` are in window."""
    since: dict[str, list[tuple[float, int]]] = {}
    fired: list[tuple[int, str, tuple[int, ...]]] = []
    for step, (key, now, number) in enumerate(openings):
        kept = since.setdefault(key, [])
        kept.append((now, number))
        inside = [(t, n) for t, n in kept if t >= now - rule.within]
        if len(inside) >= rule.count:
            ids = tuple(dict.fromkeys(n for _, n in sorted(inside)[-rule.count :]))
            fired.append((step, key, ids))
            del since[key]
    return fired


@settings(max_examples=200, deadline=None)
@given(
    count=st.integers(2, 5),
    within=st.sampled_from([10.0, 60.0, 300.0]),
    steps=st.lists(
        st.tuples(st.sampled_from("abc"), st.sampled_from([0.0, 1.0, 5.0, 10.0, 30.0, 120.0])),
        max_size=60,
    ),
    restart_at=st.integers(0, 60),
)
def test_recurrence_matches_brute_force(
    count: int, within: float, steps: list[tuple[str, float]], restart_at: int
) -> None:
    """Test the bounded counting against keeping everything, across a restart midway."""
    rule = RecurrenceRule(by=("fingerprint",), count=count, within=within)
    policy = RecurrencePolicy([rule])
    openings: list[tuple[str, float, int]] = []
    now = NOW
    for number, (key, gap) in enumerate(steps, 1):
        now += gap
        openings.append((key, now, number))
    got: list[tuple[int, str, tuple[int, ...]]] = []
    for step, (key, moment, number) in enumerate(openings):
        if step == restart_at:
            saved = json.loads(json.dumps(policy.dump()))
            policy = RecurrencePolicy([rule])
            policy.restore(saved)
        for found in policy.observe(incident(number, key), moment):
            assert found.key == f'{{fingerprint="r:{key}"}}'
            got.append((step, key, found.incident_ids))
    assert got == brute_force(rule, openings)
    assert all(len(o) <= count for o in policy.dump()["counts"]["fingerprint"].values())


# ---------------------------------------------------------------------------------------------
# Recurrence and the book together


def test_track_recurrence_opens_links_and_reopens() -> None:
    """Test the whole flow: recur, link while open, reopen only on a fresh recurrence."""
    book = ProblemBook()
    policy = RecurrencePolicy([BY_FINGERPRINT])

    def track(number: int, at: float) -> list[tuple[str, int | None]]:
        changes = track_recurrence(book, policy, incident(number), now=at)
        return [(c.op, c.incident) for c in changes]

    assert track(1, NOW) == []
    assert track(2, NOW + 1) == []
    assert track(3, NOW + 2) == [("open", None), ("link", 1), ("link", 2), ("link", 3)]
    problem = book.for_key('{fingerprint="r:k"}')
    assert problem is not None
    assert (problem.title, problem.incidents) == ("Recurring: r on k", [1, 2, 3])
    assert track(4, NOW + 3) == [("link", 4)]  # open problem: linked at once
    book.transition(problem, "resolved", time=NOW + 4, actor="a")
    assert track(5, NOW + 5) == []  # resolved: one more is not a recurrence yet
    assert track(6, NOW + 6) == [("reopen", None), ("link", 5), ("link", 6)]
    assert problem.state is ProblemState.INVESTIGATING
    book.transition(problem, "resolved", time=NOW + 7, actor="a")
    book.transition(problem, "closed", time=NOW + 8, actor="a")
    assert [track(n, NOW + n) for n in (7, 8)] == [[], []]
    assert track(9, NOW + 9) == [("open", None), ("link", 7), ("link", 8), ("link", 9)]
    assert book.for_key('{fingerprint="r:k"}') is not problem


# ---------------------------------------------------------------------------------------------
# Config


def parse(text: str) -> tuple[RecurrenceRule, ...]:
    """Parse a config file holding a `problems:` section."""
    data = load_yaml(text, name="incidents.yaml")
    return parse_problems(data.get("problems"), value_mark(data, "problems", data.mark))


def test_the_documented_config_parses() -> None:
    """Test the example from the docs, and that an absent section means no rules."""
    rules = parse(
        "problems:\n"
        "  recurrence:\n"
        "    - {by: fingerprint, count: 3, within: 24h}\n"
        "    - {by: [service, category], count: 5, within: 7d}\n"
    )
    assert rules == (
        RecurrenceRule(by=("fingerprint",), count=3, within=DAY),
        RecurrenceRule(by=("service", "category"), count=5, within=7 * DAY),
    )
    assert str(rules[1]) == "5 incidents within 7d by service, category"
    assert parse("other: 1\n") == ()
    assert parse("problems: {}\n") == ()


ERRORS = [
    ("problems: [1]\n", "incidents.yaml:1:11: 'problems' must be a mapping, not a list"),
    ("problems: {recurence: []}\n",
     "incidents.yaml:1:12: unknown problems option 'recurence' (did you mean 'recurrence'?)"),
    ("problems:\n  recurrence: {by: fingerprint}\n",
     "incidents.yaml:2:15: 'recurrence' must be a list, not a mapping"),
    ("problems:\n  recurrence:\n    - {by: fingerprint, count: 3}\n",
     "incidents.yaml:3:7: recurrence rule 1: missing required key 'within'"),
    ("problems:\n  recurrence:\n    - {by: fingerprint, count: 3, within: 1h, every: 2}\n",
     "incidents.yaml:3:47: recurrence rule 1: unknown option 'every'"),
    ("problems:\n  recurrence:\n    - {by: [], count: 3, within: 1h}\n",
     "incidents.yaml:3:12: recurrence rule 1: 'by' needs a field, like fingerprint or [service, category]"),
    ("problems:\n  recurrence:\n    - {by: [service, 2x], count: 3, within: 1h}\n",
     "incidents.yaml:3:22: recurrence rule 1: field '2x' is not a valid label name (use letters, digits, '_' and '.', not starting with a digit)"),
    ("problems:\n  recurrence:\n    - {by: [service, service], count: 3, within: 1h}\n",
     "incidents.yaml:3:22: recurrence rule 1: 'by' names service twice"),
    ("problems:\n  recurrence:\n    - {by: fingerprint, count: 1, within: 1h}\n",
     "incidents.yaml:3:32: recurrence rule 1: 'count' must be a whole number >= 2"),
    ("problems:\n  recurrence:\n    - {by: fingerprint, count: 101, within: 1h}\n",
     "incidents.yaml:3:32: recurrence rule 1: 'count' must be at most 100"),
    ("problems:\n  recurrence:\n    - {by: fingerprint, count: 3, within: soon}\n",
     "incidents.yaml:3:43: recurrence rule 1: 'within' must be a duration like 250ms, 10s, 5m, 1h or 2d, not 'soon'"),
    ("problems:\n  recurrence:\n    - {by: fingerprint, count: 3, within: 0s}\n",
     "incidents.yaml:3:43: recurrence rule 1: 'within' must be more than 0s and at most 366d"),
    ("problems:\n  recurrence:\n    - {by: fingerprint, count: 3, within: 1h}\n"
     "    - {by: [fingerprint], count: 9, within: 1d}\n",
     "incidents.yaml:4:7: recurrence rule 2: another rule counts by fingerprint (at incidents.yaml:3:7); keep one"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_config_errors_name_file_line_and_problem(text: str, message: str) -> None:
    """Test that each config mistake is refused with its exact file:line message."""
    with pytest.raises(SourceError) as caught:
        parse(text)
    assert str(caught.value) == message


def test_a_long_incident_title_still_opens_a_problem() -> None:
    """Test that the suggested title is cut to what a problem title may hold."""
    book = ProblemBook()
    policy = RecurrencePolicy([RecurrenceRule(by=("fingerprint",), count=2, within=DAY)])
    long = incident(1)
    long.title = "x" * 600
    track_recurrence(book, policy, long, now=NOW)
    changes = track_recurrence(book, policy, long, now=NOW + 1)
    assert changes[0].op == "open"
    assert changes[0].problem.title == "Recurring: " + "x" * 489
