"""Service requests: lifecycle and refusals, approval roles, SLA breaches, persistence."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tocsin.records.catalog import CatalogItem, FieldType, InputField, RequestInputError
from tocsin.records.requests import (
    TRANSITIONS,
    RequestBook,
    RequestChange,
    RequestError,
    RequestForbiddenError,
    RequestState,
    ServiceRequest,
)
from tocsin.tokens import Role

NOW = 1_795_564_800.0  # 2026-11-25T00:00:00Z
HOUR = 3600.0

RESET = CatalogItem(
    "reset-password",
    fields=(
        InputField("user", FieldType.STRING, required=True),
        InputField("notify", FieldType.BOOLEAN, default=False),
    ),
    approval=Role.OPERATOR,
    runbook="reset-password",
    sla=4 * HOUR,
)
COFFEE = CatalogItem("coffee")  # no approval, no SLA, fulfilled by hand


def submitted(book: RequestBook, item: CatalogItem = RESET, **kw: Any) -> ServiceRequest:
    """Submit a valid request for `item` at NOW by alice through the API."""
    data = kw.pop("data", {"user": "bob"} if item is RESET else {})
    kw.setdefault("time", NOW)
    return book.submit(item, data, by="alice", source="api", **kw)[0].request


def summary(change: RequestChange) -> tuple[Any, ...]:
    """Return what a timeline shows of a change."""
    return (change.op, change.previous, change.state, change.actor, change.note)


def test_the_happy_path_records_every_step() -> None:
    """Test submitted -> approved -> fulfilling -> fulfilled -> closed, with times and counts."""
    book = RequestBook()
    changes = book.submit(RESET, {"user": "bob"}, by=" alice ", source="api", time=NOW)
    request = changes[0].request
    assert [summary(c) for c in changes] == [("submit", None, "submitted", "alice", "via api")]
    assert (request.id, request.item, request.input) == (
        1,
        "reset-password",
        {"user": "bob", "notify": False},
    )
    assert (request.requested_by, request.due_at, request.approval) == (
        "alice",
        NOW + 4 * HOUR,
        "operator",
    )
    assert book.by_state() == {"submitted": 1}
    steps = [
        book.approve(request, by="olga", role=Role.OPERATOR, time=NOW + 1, note="ok"),
        book.start(request, run_id=7, time=NOW + 2, actor="remediator"),
        book.finish(request, ok=True, time=NOW + 3, actor="remediator"),
        book.close(request, time=NOW + 4, actor="olga"),
    ]
    assert [summary(c) for c in steps] == [
        ("approve", "submitted", "approved", "olga", "ok"),
        ("start", "approved", "fulfilling", "remediator", "run 7 started"),
        ("fulfil", "fulfilling", "fulfilled", "remediator", ""),
        ("close", "fulfilled", "closed", "olga", ""),
    ]
    assert (request.decided_by, request.decided_at, request.run_id) == ("olga", NOW + 1, 7)
    assert (request.started_at, request.finished_at, request.closed_at) == (
        NOW + 2,
        NOW + 3,
        NOW + 4,
    )
    assert request.state == RequestState.CLOSED
    assert (len(book), book.get(1), +book.by_state()) == (0, None, {})


def test_an_item_without_approval_is_approved_by_the_catalog() -> None:
    """Test the two changes of an approval-free submission, and fulfilment by hand."""
    book = RequestBook()
    changes = book.submit(COFFEE, {}, by="alice", source="rule:coffee-alarm", time=NOW)
    assert [summary(c) for c in changes] == [
        ("submit", None, "submitted", "alice", "via rule:coffee-alarm"),
        ("approve", "submitted", "approved", "catalog", "no approval needed"),
    ]
    request = changes[0].request
    assert (request.state, request.decided_by, request.decided_at) == ("approved", "catalog", NOW)
    assert (request.due_at, request.approval, request.source) == (None, "", "rule:coffee-alarm")
    assert book.by_state() == {"submitted": 0, "approved": 1}
    change = book.start(request, time=NOW + 1, actor="olga")
    assert (change.note, request.run_id) == ("fulfilment started by hand", None)


def test_rejection_and_failure_keep_their_reason() -> None:
    """Test that the rejecting note and the failure reason become the request's reason."""
    book = RequestBook()
    rejected = submitted(book)
    book.reject(rejected, by="olga", role=Role.ADMIN, time=NOW + 1, note="not your account")
    assert (rejected.state, rejected.reason, rejected.decided_by) == (
        "rejected",
        "not your account",
        "olga",
    )
    failed = submitted(book, COFFEE)
    book.start(failed, run_id=3, time=NOW + 1, actor="remediator")
    change = book.finish(
        failed, ok=False, reason=" exit status 1 ", time=NOW + 2, actor="remediator"
    )
    assert summary(change) == ("fail", "fulfilling", "failed", "remediator", "exit status 1")
    assert (failed.reason, failed.finished_at) == ("exit status 1", NOW + 2)
    book.close(failed, time=NOW + 3, actor="olga", note="user asked again")
    book.close(rejected, time=NOW + 3, actor="olga")
    assert len(book) == 0


def every_state(book: RequestBook) -> dict[str, ServiceRequest]:
    """Return one request of the book in each state (the closed one has left it)."""
    found = {"submitted": submitted(book), "approved": submitted(book, COFFEE)}
    found["rejected"] = submitted(book)
    book.reject(found["rejected"], by="o", role=Role.OPERATOR, time=NOW)
    for state in ("fulfilling", "fulfilled", "failed", "closed"):
        found[state] = submitted(book, COFFEE)
        book.start(found[state], time=NOW, actor="o")
    book.finish(found["fulfilled"], ok=True, time=NOW, actor="o")
    book.finish(found["failed"], ok=False, reason="broke", time=NOW, actor="o")
    book.finish(found["closed"], ok=True, time=NOW, actor="o")
    book.close(found["closed"], time=NOW, actor="o")
    assert {s: r.state for s, r in found.items()} == {s: s for s in found}
    return found


def attempt(book: RequestBook, op: str, request: ServiceRequest) -> RequestChange:
    """Try one op on a request, as an admin where a role counts."""
    if op in ("approve", "reject"):
        return getattr(book, op)(request, by="o", role=Role.ADMIN, time=NOW)  # type: ignore[no-any-return]
    if op == "start":
        return book.start(request, time=NOW, actor="o")
    if op in ("fulfil", "fail"):
        return book.finish(request, ok=op == "fulfil", reason="r", time=NOW, actor="o")
    return book.close(request, time=NOW, actor="o")


@pytest.mark.parametrize("op", list(TRANSITIONS))
def test_every_transition_is_allowed_exactly_from_its_states(op: str) -> None:
    """Test the table against every state: allowed ones move, the others are conflicts."""
    target, sources = TRANSITIONS[op]
    for state, request in every_state(RequestBook()).items():
        book = RequestBook(requests=[request]) if state != "closed" else RequestBook()
        if state in sources:
            assert attempt(book, op, request).state == target
            continue
        with pytest.raises(RequestError) as caught:
            attempt(book, op, request)
        assert caught.value.conflict
        assert request.state == state


REFUSALS = [
    ("approve", "fulfilling", "request 1 is fulfilling; it can be approved only when submitted"),
    ("start", "submitted", "request 1 is submitted; it can be started only when approved"),
    ("fulfil", "approved", "request 1 is approved; it can be fulfilled only when fulfilling"),
    ("close", "submitted", "request 1 is submitted; it can be closed only when failed, fulfilled or rejected"),
    ("reject", "closed", "request 1 is closed; it can be rejected only when submitted"),
]  # fmt: skip


@pytest.mark.parametrize(("op", "state", "message"), REFUSALS)
def test_refusals_say_what_the_state_allows(op: str, state: str, message: str) -> None:
    """Test the exact text of conflicts."""
    request = ServiceRequest(1, "coffee", {}, RequestState(state), "alice", "api", NOW)
    with pytest.raises(RequestError) as caught:
        attempt(RequestBook(requests=[request]), op, request)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("needed", "role", "allowed"),
    [
        (Role.VIEWER, Role.VIEWER, True),
        (Role.OPERATOR, Role.VIEWER, False),
        (Role.OPERATOR, Role.OPERATOR, True),
        (Role.OPERATOR, Role.ADMIN, True),
        (Role.ADMIN, Role.OPERATOR, False),
        (Role.ADMIN, Role.ADMIN, True),
    ],
)
def test_deciding_needs_at_least_the_items_role(needed: Role, role: Role, allowed: bool) -> None:
    """Test viewer < operator < admin for both approving and rejecting."""
    item = CatalogItem("x", approval=needed)
    for op in ("approve", "reject"):
        book = RequestBook()
        request = submitted(book, item)
        decide = book.approve if op == "approve" else book.reject
        if allowed:
            assert decide(request, by="bob", role=role, time=NOW).op == op
            continue
        with pytest.raises(RequestForbiddenError) as caught:
            decide(request, by="bob", role=role, time=NOW)
        verb = "approved" if op == "approve" else "rejected"
        assert str(caught.value) == (
            f"request 1 can be {verb} only by a role of {needed} or above; bob is {role}"
        )
        assert (caught.value.needed, caught.value.conflict) == (needed, False)
        assert (request.state, request.decided_by) == ("submitted", "")


def test_a_damaged_approval_role_needs_an_admin() -> None:
    """Test that a request whose record lost its role asks for the strongest one."""
    request = ServiceRequest(1, "x", {}, RequestState.SUBMITTED, "alice", "api", NOW)
    book = RequestBook(requests=[request])
    with pytest.raises(RequestForbiddenError):
        book.approve(request, by="o", role=Role.OPERATOR, time=NOW)
    assert book.approve(request, by="a", role=Role.ADMIN, time=NOW).state == "approved"


def test_submission_validates_the_input_and_opens_nothing_when_bad() -> None:
    """Test that bad input raises RequestInputError and takes no id."""
    book = RequestBook()
    with pytest.raises(RequestInputError) as caught:
        book.submit(RESET, {"usr": "bob"}, by="alice", source="api", time=NOW)
    assert str(caught.value) == "user: required; unknown field 'usr' (did you mean 'user'?)"
    assert len(book) == 0
    assert submitted(book).id == 1


def test_rule_input_is_read_from_text() -> None:
    """Test that from_text reaches validation: a rule's rendered "true" is a boolean."""
    book = RequestBook()
    request = book.submit(
        RESET,
        {"user": "bob", "notify": "true"},
        by="rule:x",
        source="rule:x",
        time=NOW,
        from_text=True,
    )[0].request
    assert request.input == {"user": "bob", "notify": True}


BAD_VALUES = [
    ({"by": " "}, "a request needs requester"),
    ({"by": "a" * 201}, "the requester is too long (at most 200 characters)"),
    ({"source": "mqtt"}, "a request's source must be 'api' or 'rule:ID', not 'mqtt'"),
    ({"source": "rule:"}, "a request's source must be 'api' or 'rule:ID', not 'rule:'"),
]


@pytest.mark.parametrize(("kw", "message"), BAD_VALUES)
def test_bad_submissions_are_bad_values(kw: dict[str, str], message: str) -> None:
    """Test requester and source checks (HTTP 400, not 409)."""
    args = {"by": "alice", "source": "api", **kw}
    with pytest.raises(RequestError) as caught:
        RequestBook().submit(COFFEE, {}, by=args["by"], source=args["source"], time=NOW)
    assert (str(caught.value), caught.value.conflict) == (message, False)


def test_bad_steps_are_bad_values_and_change_nothing() -> None:
    """Test the checks of deciders, notes, run ids and failure reasons."""
    book = RequestBook()
    request = submitted(book)
    cases: list[tuple[Callable[[], RequestChange], str]] = [
        (lambda: book.approve(request, by="", role=Role.ADMIN, time=NOW), "a request needs decider"),
        (lambda: book.reject(request, by="o", role=Role.ADMIN, time=NOW, note="n" * 2001),
         "the note is too long (at most 2000 characters)"),
    ]  # fmt: skip
    for call, message in cases:
        with pytest.raises(RequestError) as caught:
            call()
        assert str(caught.value) == message
    assert request.state == "submitted"
    book.approve(request, by="o", role=Role.ADMIN, time=NOW)
    for run_id in (0, True):
        with pytest.raises(RequestError, match="run id must be a whole number >= 1"):
            book.start(request, run_id=run_id, time=NOW, actor="o")
    book.start(request, run_id=1, time=NOW, actor="o")
    with pytest.raises(RequestError, match="a request needs failure reason"):
        book.finish(request, ok=False, time=NOW, actor="o")
    assert request.state == "fulfilling"


# ---------------------------------------------------------------------------------------------
# SLA


def test_due_reports_each_overdue_request_once_soonest_first() -> None:
    """Test the SLA: due at opened_at + sla, inclusive, reported once, flag saved."""
    book = RequestBook()
    late = submitted(book, time=NOW + 60)
    early = submitted(book)
    assert book.next_due() == NOW + 4 * HOUR
    assert book.due(NOW + 4 * HOUR - 1) == []
    changes = book.due(NOW + 4 * HOUR + 60)
    assert [(c.op, c.request.id, c.actor, c.state, c.time) for c in changes] == [
        ("breach", early.id, "requests:sla", None, NOW + 4 * HOUR + 60),
        ("breach", late.id, "requests:sla", None, NOW + 4 * HOUR + 60),
    ]
    assert changes[0].note == "SLA breached: not fulfilled within 4h of submission"
    assert (early.sla_breached, late.sla_breached, early.state) == (True, True, "submitted")
    assert book.due(NOW + 10 * HOUR) == []
    assert book.next_due() is None


@pytest.mark.parametrize(
    ("state", "runs"),
    [("submitted", True), ("approved", True), ("fulfilling", True), ("fulfilled", False),
     ("rejected", False), ("failed", False)],
)  # fmt: skip
def test_the_sla_runs_until_somebody_finished_with_the_request(state: str, runs: bool) -> None:
    """Test which states breach: fulfilled, rejected and failed requests never do."""
    request = ServiceRequest(1, "x", {}, RequestState(state), "a", "api", NOW, due_at=NOW + 60)
    book = RequestBook(requests=[request])
    assert request.sla_running is runs
    assert len(book.due(NOW + 60)) == (1 if runs else 0)
    no_sla = ServiceRequest(2, "x", {}, RequestState(state), "a", "api", NOW)
    assert RequestBook(requests=[no_sla]).due(NOW + 10**9) == []


def test_a_breach_note_shows_odd_slas_in_seconds() -> None:
    """Test the span shown for an SLA that is not whole minutes."""
    book = RequestBook()
    submitted(book, CatalogItem("x", sla=90.5))
    assert book.due(NOW + 91)[0].note == "SLA breached: not fulfilled within 90.5s of submission"


# ---------------------------------------------------------------------------------------------
# Persistence


def test_requests_round_trip_through_json_and_the_book_carries_on() -> None:
    """Test to_dict/from_dict, and a book rebuilt from the store keeping ids and counts."""
    book = RequestBook()
    states = every_state(book)
    for request in states.values():
        copy = ServiceRequest.from_dict(json.loads(json.dumps(request.to_dict())))
        assert copy == request
    assert states["closed"].id == 7
    rebuilt = RequestBook(requests=[ServiceRequest.from_dict(r.to_dict()) for r in states.values()])
    assert len(rebuilt) == 6
    assert rebuilt.get(7) is None
    assert rebuilt.by_state() == {s: 1 for s in states if s != "closed"}
    assert submitted(rebuilt).id == 8
    assert (
        RequestBook(next_id=20).submit(COFFEE, {}, by="a", source="api", time=NOW)[0].request.id
        == 20
    )


def record(**damage: Any) -> dict[str, Any]:
    """Return a saved request with some fields replaced (or removed, given as ...)."""
    data = ServiceRequest(3, "x", {"a": 1}, RequestState.APPROVED, "al", "api", NOW).to_dict()
    for key, value in damage.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return data


DAMAGE = [
    ({"item": ..., "reason": ...}, "request record lacks item, reason"),
    ({"item": 3}, "request record field 'item' must be text"),
    ({"state": "done"}, "request record has unknown state 'done'"),
    ({"approval": "root"}, "request record has unknown approval role 'root'"),
    ({"input": [1]}, "request record field 'input' must map field names to values"),
    ({"id": 0}, "request record field 'id' must be a whole number"),
    ({"run_id": "7"}, "request record field 'run_id' must be a whole number"),
    ({"sla_breached": 1}, "request record field 'sla_breached' must be true or false"),
    ({"opened_at": float("nan")}, "request record field 'opened_at' must be a finite time"),
    ({"due_at": "soon"}, "request record field 'due_at' must be a finite time"),
]


@pytest.mark.parametrize(("damage", "message"), DAMAGE)
def test_damaged_request_records_are_named(damage: dict[str, Any], message: str) -> None:
    """Test that each damage gets its own bad-value RequestError."""
    with pytest.raises(RequestError) as caught:
        ServiceRequest.from_dict(record(**damage))
    assert (str(caught.value), caught.value.conflict) == (message, False)


def test_a_record_that_is_not_a_mapping_is_named() -> None:
    """Test the first check of from_dict."""
    with pytest.raises(RequestError, match="a request record must be a mapping"):
        ServiceRequest.from_dict([])  # type: ignore[arg-type]
