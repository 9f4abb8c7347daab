"""The incident lifecycle: operator transitions, reopen on recurrence, samples, re-rating."""

from __future__ import annotations

from collections import Counter

import pytest

from testkit import make_event
from tocsin.model import Escalation, IncidentState
from tocsin.records.incidents import IncidentBook, LifecycleError
from tocsin.records.priority import PriorityMatrix
from tocsin.store.base import CommitBatch


def _book(**kw: object) -> IncidentBook:
    return IncidentBook(priorities=PriorityMatrix(), **kw)  # type: ignore[arg-type]


def _open(book: IncidentBook, key: str = "k", time: float = 100.0) -> IncidentBook:
    book.open(rule="r", key=key, title="t", impact="high", urgency="low", time=time, actor="rule:r")
    return book


def test_the_happy_path_records_every_transition_on_the_timeline() -> None:
    """Test new -> acknowledged -> in_progress -> on_hold -> in_progress -> resolved -> closed."""
    book = _open(_book())
    incident = book.get("r:k")
    assert incident is not None
    changes = [
        book.transition(incident, "acknowledged", time=110.0, actor="alice"),
        book.transition(incident, "in_progress", time=120.0, actor="alice"),
        book.transition(incident, "on_hold", time=130.0, actor="alice", note="vendor"),
        book.transition(incident, "in_progress", time=140.0, actor="alice"),
        book.transition(incident, "resolved", time=150.0, actor="alice"),
        book.transition(incident, "closed", time=160.0, actor="bob"),
    ]
    history = CommitBatch.of(changes, []).history
    assert [(h.from_state, h.to_state, h.actor, h.kind) for h in history] == [
        ("new", "acknowledged", "alice", "state"),
        ("acknowledged", "in_progress", "alice", "state"),
        ("in_progress", "on_hold", "alice", "state"),
        ("on_hold", "in_progress", "alice", "state"),
        ("in_progress", "resolved", "alice", "state"),
        ("resolved", "closed", "bob", "state"),
    ]
    assert history[2].note == "vendor"
    assert incident.acknowledged_at == 110.0
    assert incident.resolved_at == 150.0
    assert incident.closed_at == 160.0
    assert incident.state is IncidentState.CLOSED
    assert book.by_id(incident.id) is None  # closed: lives only in the store now


@pytest.mark.parametrize(
    ("path", "to", "message"),
    [
        (
            ["acknowledged"],
            "acknowledged",
            "is acknowledged; it can move to acknowledged only from new",
        ),
        ([], "on_hold", "is new; it can move to on_hold only from acknowledged, in_progress"),
        ([], "closed", "is new; it can move to closed only from resolved"),
        ([], "reopen", "is new; only a resolved incident can be reopened"),
        (["resolved", "closed"], "reopen", "is closed; only a resolved incident can be reopened"),
    ],
)
def test_transitions_the_state_does_not_allow_are_conflicts(
    path: list[str], to: str, message: str
) -> None:
    """Test that a refused transition says what the state is and changes nothing."""
    book = _open(_book())
    incident = book.get("r:k")
    assert incident is not None
    for step in path:
        book.transition(incident, step, time=110.0, actor="a")
    before = (incident.state, incident.acknowledged_at, incident.closed_at)
    with pytest.raises(LifecycleError, match=message) as caught:
        book.transition(incident, to, time=120.0, actor="a")
    assert caught.value.conflict
    assert (incident.state, incident.acknowledged_at, incident.closed_at) == before


def test_an_unknown_target_state_is_a_bad_request() -> None:
    """Test that a made-up state is refused as a bad value, not a conflict."""
    book = _open(_book())
    incident = book.get("r:k")
    assert incident is not None
    with pytest.raises(LifecycleError, match="unknown state 'done'") as caught:
        book.transition(incident, "done", time=1.0, actor="a")
    assert not caught.value.conflict


def test_recurrence_within_the_window_reopens_and_after_it_opens_anew() -> None:
    """Test reopen by fingerprint within reopen_window, a new incident after it."""
    book = _open(_book(reopen_window=600.0))
    first = book.get("r:k")
    assert first is not None
    first.sla_fired = ["response:warning"]
    first.escalation = Escalation("p", 1, 999.0)
    book.resolve("r:k", time=200.0, actor="rule:clear")
    assert first.escalation.next_at is None
    change = book.open(
        rule="r", key="k", title="t", impact="high", urgency="low", time=800.0, actor="rule:r"
    )
    assert change.op == "reopen"
    assert change.incident is first
    assert (first.state, first.reopened, first.opened_at, first.resolved_at) == (
        "new",
        1,
        800.0,
        None,
    )
    assert first.sla_fired == []
    assert first.escalation is None
    assert first.count == 2
    (entry,) = CommitBatch.of([change], []).history
    assert (entry.from_state, entry.to_state, entry.kind) == ("resolved", "new", "reopen")
    book.resolve("r:k", time=900.0, actor="rule:clear")
    later = book.open(
        rule="r", key="k", title="t", impact="high", urgency="low", time=1501.0, actor="rule:r"
    )
    assert later.op == "open"
    assert later.incident.id != first.id


def test_no_reopen_window_means_every_recurrence_is_a_new_incident() -> None:
    """Test that the default window of 0 never reopens."""
    book = _open(_book())
    book.resolve("r:k", time=100.0, actor="x")
    assert _open(book, time=100.0).get("r:k") is not None
    assert book.get("r:k").id == 2  # type: ignore[union-attr]


def test_a_resolved_incident_reopens_by_hand_unless_its_fingerprint_is_open_again() -> None:
    """Test the operator's reopen and its conflict with a newer open incident."""
    book = _open(_book())
    first = book.get("r:k")
    assert first is not None
    book.resolve("r:k", time=150.0, actor="x")
    _open(book, time=160.0)  # no window: a second incident for the fingerprint
    with pytest.raises(LifecycleError, match="incident 2 is open for the same fingerprint"):
        book.transition(first, "reopen", time=170.0, actor="alice")
    book.resolve("r:k", time=180.0, actor="x")
    change = book.transition(first, "reopen", time=190.0, actor="alice", note="not fixed")
    assert (change.op, first.state, book.get("r:k")) == ("reopen", "new", first)


def test_forget_resolved_drops_only_what_left_the_window() -> None:
    """Test that resolved incidents leave memory in resolution order."""
    book = _book(reopen_window=100.0)
    for n, key in enumerate("abc"):
        _open(book, key=key)
        book.resolve(f"r:{key}", time=10.0 * n, actor="x")
    book.forget_resolved(before=15.0)
    assert [book.by_id(i) is not None for i in (1, 2, 3)] == [False, False, True]


def test_samples_keep_the_first_half_and_the_newest() -> None:
    """Test the bounded sample: first events kept for good, the rest rolling."""
    book = _book(samples=4)
    first = make_event("m0", time=0.0)
    change = book.open(
        rule="r", key="k", title="t", impact="low", urgency="low", time=0.0, actor="a", event=first
    )
    for n in range(1, 10):
        book.recur(change.incident, time=float(n), actor="a", event=make_event(f"m{n}", time=n))
    assert [s["message"] for s in change.incident.samples] == ["m0", "m1", "m8", "m9"]
    assert change.incident.count == 10


def test_rate_moves_the_priority_with_the_matrix_and_refuses_bad_values() -> None:
    """Test re-rating: priority follows, the timeline says from what to what."""
    book = _open(_book())
    incident = book.get("r:k")
    assert incident is not None
    assert incident.priority == "P3"
    change = book.rate(incident, impact=None, urgency="high", time=1.0, actor="alice")
    assert incident.priority == "P1"
    assert change.note == "impact high, urgency high: priority P3 -> P1"
    with pytest.raises(LifecycleError, match="urgency must be one of high, medium, low"):
        book.rate(incident, impact=None, urgency="urgent", time=1.0, actor="alice")


def test_assign_and_comment_are_timeline_entries_without_a_state_change() -> None:
    """Test that assign and comment keep the state and say what happened."""
    book = _open(_book())
    incident = book.get("r:k")
    assert incident is not None
    changes = [
        book.assign(incident, assignee="bob", group=None, time=1.0, actor="alice"),
        book.assign(incident, assignee="", group="network", time=2.0, actor="alice", note="hw"),
        book.comment(incident, text="looking", time=3.0, actor="bob"),
    ]
    history = CommitBatch.of(changes, []).history
    assert [(h.from_state, h.to_state, h.kind, h.note) for h in history] == [
        ("new", "new", "assign", "assignee bob"),
        ("new", "new", "assign", "assignee (none), group network: hw"),
        ("new", "new", "comment", "looking"),
    ]
    assert (incident.assignee, incident.group) == ("", "network")


def test_open_counts_follow_every_change() -> None:
    """Test the per-priority count against a recount after opens, re-rates, resolves, reopens."""
    book = _book(reopen_window=100.0)
    for key in "abcd":
        _open(book, key=key)  # P3
    a, b = book.get("r:a"), book.get("r:b")
    assert a is not None
    assert b is not None
    book.rate(a, impact=None, urgency="high", time=1.0, actor="x")  # P1
    book.resolve("r:b", time=2.0, actor="x")
    book.rate(b, impact="low", urgency=None, time=3.0, actor="x")  # resolved: not counted
    book.transition(b, "reopen", time=4.0, actor="x")
    book.resolve("r:c", time=5.0, actor="x")
    recount = Counter(i.priority for i in book.open_incidents())
    assert +book.open_by_priority() == recount == Counter({"P3": 1, "P1": 1, "P5": 1})


def test_a_flapping_fingerprint_keeps_one_resolved_incident_in_memory() -> None:
    """Test that each new resolution of a fingerprint replaces the older one, by id too."""
    book = _book()
    for n in range(50):
        _open(book, time=float(n))
        book.resolve("r:k", time=float(n) + 0.5, actor="x")
    assert [book.by_id(i) is not None for i in (1, 49, 50)] == [False, False, True]
    assert len(book._by_id) == 1
