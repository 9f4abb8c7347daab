"""Service requests: something from the catalog asked for, from submission to closed. Pure
bookkeeping like records.problems: every mutation returns the change to persist (and to put
on the request's timeline), and time is always an argument.

Lifecycle: submitted -> approved | rejected; approved -> fulfilling -> fulfilled | failed;
rejected, fulfilled and failed -> closed. An item that needs no approval is approved by
"catalog" as it is submitted. The SLA runs from submission while a request waits for a
decision or its fulfilment; `due` reports each request that overran it, once.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tocsin.records.catalog import CatalogItem
from tocsin.records.incidents import LifecycleError
from tocsin.tokens import Role

__all__ = [
    "CATALOG_ACTOR",
    "SLA_ACTOR",
    "SLA_RUNNING",
    "TRANSITIONS",
    "RequestBook",
    "RequestChange",
    "RequestError",
    "RequestForbiddenError",
    "RequestState",
    "ServiceRequest",
]


class RequestState(enum.StrEnum):
    """Where a service request is; closed requests live only in the store."""

    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    FULFILLING = "fulfilling"
    FULFILLED = "fulfilled"
    FAILED = "failed"
    CLOSED = "closed"


_SUBMITTED, _APPROVED, _REJECTED = (
    RequestState.SUBMITTED,
    RequestState.APPROVED,
    RequestState.REJECTED,
)
_FULFILLING, _FULFILLED, _FAILED, _CLOSED = (
    RequestState.FULFILLING,
    RequestState.FULFILLED,
    RequestState.FAILED,
    RequestState.CLOSED,
)

# Each change's op -> (the state it leads to, the states it may start from).
TRANSITIONS: dict[str, tuple[RequestState, frozenset[RequestState]]] = {
    "approve": (_APPROVED, frozenset({_SUBMITTED})),
    "reject": (_REJECTED, frozenset({_SUBMITTED})),
    "start": (_FULFILLING, frozenset({_APPROVED})),
    "fulfil": (_FULFILLED, frozenset({_FULFILLING})),
    "fail": (_FAILED, frozenset({_FULFILLING})),
    "close": (_CLOSED, frozenset({_REJECTED, _FULFILLED, _FAILED})),
}
# How refusals say what an op does: "it can be started only when approved".
_DONE = {
    "approve": "approved",
    "reject": "rejected",
    "start": "started",
    "fulfil": "fulfilled",
    "fail": "failed",
    "close": "closed",
}

# The states in which the SLA clock runs: nobody has finished with the request yet.
SLA_RUNNING: frozenset[str] = frozenset({_SUBMITTED, _APPROVED, _FULFILLING})

CATALOG_ACTOR = "catalog"  # who approves what needs no approval
SLA_ACTOR = "requests:sla"  # who breaches are on timelines

_WHO_LIMIT = 200
_TEXT_LIMIT = 2_000  # characters of a reason or note
_SOURCE_API = "api"
_SOURCE_RULE = "rule:"


class RequestError(LifecycleError):
    """A change the request's state does not allow (`conflict`, HTTP 409) or a bad value (400)."""


class RequestForbiddenError(RequestError):
    """The caller's role is below what the item's approval needs (HTTP 403)."""

    def __init__(self, message: str, *, needed: Role) -> None:
        super().__init__(message, conflict=False)
        self.needed = needed


@dataclass(slots=True)
class ServiceRequest:
    """A request record; live and mutable like Problem, snapshot it with to_dict."""

    id: int
    item: str  # the catalog item's name
    input: dict[str, Any]  # validated against the item's schema at submission
    state: RequestState
    requested_by: str
    source: str  # "api", or "rule:ID" for one a rule raised
    opened_at: float
    due_at: float | None = None  # the SLA: fulfilled by then; None: no SLA
    approval: str = ""  # the least role that may approve, from the item; "": none needed
    decided_by: str = ""  # who approved or rejected it ("catalog": no approval needed)
    decided_at: float | None = None
    run_id: int | None = None  # the fulfilment run, once started by a runbook
    started_at: float | None = None
    finished_at: float | None = None  # fulfilled or failed
    closed_at: float | None = None
    reason: str = ""  # why it was rejected or failed
    sla_breached: bool = False  # `due` reported it

    @property
    def sla_running(self) -> bool:
        """Tell whether its SLA clock runs (it has a due time and nobody finished with it)."""
        return self.due_at is not None and self.state in SLA_RUNNING

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form the store keeps (a snapshot: later changes do not reach it)."""
        return {
            "id": self.id,
            "item": self.item,
            "input": dict(self.input),
            "state": str(self.state),
            "requested_by": self.requested_by,
            "source": self.source,
            "opened_at": self.opened_at,
            "due_at": self.due_at,
            "approval": self.approval,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "closed_at": self.closed_at,
            "reason": self.reason,
            "sla_breached": self.sla_breached,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServiceRequest:
        """Rebuild a request saved by to_dict; RequestError names what is damaged."""
        if not isinstance(data, Mapping):
            raise RequestError("a request record must be a mapping", conflict=False)
        missing = [k for k in _FIELDS if k not in data]
        if missing:
            raise RequestError(f"request record lacks {', '.join(missing)}", conflict=False)
        for key in ("item", "requested_by", "source", "approval", "decided_by", "reason"):
            if not isinstance(data[key], str):
                raise RequestError(f"request record field '{key}' must be text", conflict=False)
        if not isinstance(data["state"], str) or data["state"] not in _STATES:
            raise RequestError(
                f"request record has unknown state {data['state']!r}", conflict=False
            )
        if data["approval"] and data["approval"] not in _ROLES:
            raise RequestError(
                f"request record has unknown approval role {data['approval']!r}", conflict=False
            )
        if not isinstance(data["input"], Mapping) or not all(
            isinstance(k, str) for k in data["input"]
        ):
            raise RequestError(
                "request record field 'input' must map field names to values", conflict=False
            )
        for key in ("id", "run_id"):
            if not _is_id(data[key]) and not (key == "run_id" and data[key] is None):
                raise RequestError(
                    f"request record field '{key}' must be a whole number", conflict=False
                )
        if not isinstance(data["sla_breached"], bool):
            raise RequestError(
                "request record field 'sla_breached' must be true or false", conflict=False
            )
        return cls(
            id=data["id"],
            item=data["item"],
            input=dict(data["input"]),
            state=RequestState(data["state"]),
            requested_by=data["requested_by"],
            source=data["source"],
            opened_at=_time(data, "opened_at"),
            due_at=_optional_time(data, "due_at"),
            approval=data["approval"],
            decided_by=data["decided_by"],
            decided_at=_optional_time(data, "decided_at"),
            run_id=data["run_id"],
            started_at=_optional_time(data, "started_at"),
            finished_at=_optional_time(data, "finished_at"),
            closed_at=_optional_time(data, "closed_at"),
            reason=data["reason"],
            sla_breached=data["sla_breached"],
        )


_FIELDS = tuple(ServiceRequest.__dataclass_fields__)
_STATES = frozenset(str(s) for s in RequestState)
_ROLES = frozenset(str(r) for r in Role)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _time(data: Mapping[str, Any], key: str) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RequestError(f"request record field '{key}' must be a finite time", conflict=False)
    return float(value)


def _optional_time(data: Mapping[str, Any], key: str) -> float | None:
    return None if data[key] is None else _time(data, key)


@dataclass(slots=True)
class RequestChange:
    """What happened to one request; `request` is live, `state` is the state right after."""

    # "submit" | "approve" | "reject" | "start" | "fulfil" | "fail" | "close" (state changes),
    # "breach" (the SLA ran out; the state stays)
    op: str
    request: ServiceRequest
    time: float
    actor: str
    note: str = ""  # for the timeline
    previous: str | None = None  # the state before a state change
    state: str | None = None


def _checked(value: str, what: str, limit: int, *, required: bool = False) -> str:
    """Return `value` stripped, or raise a bad-value RequestError."""
    text = value.strip()
    if required and not text:
        raise RequestError(f"a request needs {what}", conflict=False)
    if len(text) > limit:
        raise RequestError(f"the {what} is too long (at most {limit} characters)", conflict=False)
    return text


class RequestBook:
    """Requests not yet closed, by id; closed ones live in the store."""

    __slots__ = ("_by_id", "_counts", "_next_id")

    def __init__(self, *, next_id: int = 1, requests: Iterable[ServiceRequest] = ()) -> None:
        self._next_id = next_id
        self._by_id: dict[int, ServiceRequest] = {}
        self._counts: Counter[str] = Counter()  # per state, for the gauge
        for request in sorted(requests, key=lambda r: r.id):
            self._next_id = max(self._next_id, request.id + 1)  # closed ones' ids stay taken
            if request.state == _CLOSED:
                continue
            self._by_id[request.id] = request
            self._counts[request.state] += 1

    def get(self, request_id: int) -> ServiceRequest | None:
        """Return a request not yet closed by id."""
        return self._by_id.get(request_id)

    def requests(self) -> Iterator[ServiceRequest]:
        """Iterate over the requests not yet closed, oldest first."""
        return iter(self._by_id.values())

    def by_state(self) -> Counter[str]:
        """Count the requests not yet closed per state (for the gauge); kept, not counted."""
        return self._counts

    def __len__(self) -> int:
        return len(self._by_id)

    def submit(
        self,
        item: CatalogItem,
        data: Any,
        *,
        by: str,
        source: str,
        time: float,
        from_text: bool = False,
    ) -> list[RequestChange]:
        """Validate `data` against the item and open a request: the "submit" change, then an
        "approve" by "catalog" when the item needs no approval.

        RequestInputError (from CatalogItem.validate) lists what is wrong with the input.
        """
        who = _checked(by, "requester", _WHO_LIMIT, required=True)
        if source != _SOURCE_API and not (
            source.startswith(_SOURCE_RULE) and len(source) > len(_SOURCE_RULE)
        ):
            raise RequestError(
                f"a request's source must be 'api' or 'rule:ID', not {source!r}", conflict=False
            )
        clean = item.validate(data, from_text=from_text)
        request = ServiceRequest(
            id=self._next_id,
            item=item.name,
            input=clean,
            state=_SUBMITTED,
            requested_by=who,
            source=source,
            opened_at=time,
            due_at=None if item.sla is None else time + item.sla,
            approval="" if item.approval is None else str(item.approval),
        )
        self._next_id += 1
        self._by_id[request.id] = request
        self._counts[_SUBMITTED] += 1
        changes = [RequestChange("submit", request, time, who, f"via {source}", state=_SUBMITTED)]
        if item.approval is None:
            changes.append(
                self._move(request, "approve", time, CATALOG_ACTOR, "no approval needed")
            )
            request.decided_by, request.decided_at = CATALOG_ACTOR, time
        return changes

    def approve(
        self, request: ServiceRequest, *, by: str, role: Role, time: float, note: str = ""
    ) -> RequestChange:
        """Approve a submitted request as `by`, whose role must be at least the item's."""
        return self._decide(request, "approve", by=by, role=role, time=time, note=note)

    def reject(
        self, request: ServiceRequest, *, by: str, role: Role, time: float, note: str = ""
    ) -> RequestChange:
        """Reject a submitted request as `by`, whose role must be at least the item's; the
        note is kept as the reason.
        """
        return self._decide(request, "reject", by=by, role=role, time=time, note=note)

    def _decide(
        self, request: ServiceRequest, op: str, *, by: str, role: Role, time: float, note: str
    ) -> RequestChange:
        who = _checked(by, "decider", _WHO_LIMIT, required=True)
        text = _checked(note, "note", _TEXT_LIMIT)
        self._allowed(request, op)
        needed = Role.named(request.approval) if request.approval else Role.ADMIN
        if role < needed:
            raise RequestForbiddenError(
                f"request {request.id} can be {_DONE[op]} only by a role of {needed} or above; "
                f"{who} is {role}",
                needed=needed,
            )
        if op == "approve" and who == request.requested_by:
            raise RequestForbiddenError(
                f"request {request.id} was submitted by {who}: somebody else must approve it",
                needed=needed,
            )
        change = self._move(request, op, time, who, text)
        request.decided_by, request.decided_at = who, time
        if op == "reject":
            request.reason = text
        return change

    def start(
        self, request: ServiceRequest, *, time: float, actor: str, run_id: int | None = None
    ) -> RequestChange:
        """Begin fulfilling an approved request: by the run `run_id`, or by hand (None)."""
        if run_id is not None and not _is_id(run_id):
            raise RequestError(
                f"run id must be a whole number >= 1, not {run_id!r}", conflict=False
            )
        self._allowed(request, "start")
        note = f"run {run_id} started" if run_id is not None else "fulfilment started by hand"
        change = self._move(request, "start", time, actor, note)
        request.run_id, request.started_at = run_id, time
        return change

    def finish(
        self, request: ServiceRequest, *, ok: bool, time: float, actor: str, reason: str = ""
    ) -> RequestChange:
        """End the fulfilment: fulfilled when `ok`, else failed for `reason` (then required)."""
        op = "fulfil" if ok else "fail"
        text = _checked(
            reason, "failure reason" if not ok else "note", _TEXT_LIMIT, required=not ok
        )
        self._allowed(request, op)
        change = self._move(request, op, time, actor, text)
        request.finished_at = time
        if not ok:
            request.reason = text
        return change

    def by_hand(
        self, request: ServiceRequest, op: str, *, time: float, actor: str, note: str = ""
    ) -> list[RequestChange]:
        """Start, fulfil or fail (`op`) a request a person fulfils: from approved, fulfil and
        fail start it too. Everything is checked before anything changes."""
        if op not in ("start", "fulfil", "fail"):
            raise RequestError(f"unknown step {op!r}; use start, fulfil or fail", conflict=False)
        if request.run_id is not None and request.state == _FULFILLING:
            raise RequestError(
                f"request {request.id} is being fulfilled by run {request.run_id}; "
                "it ends with the run"
            )
        ok = op == "fulfil"
        if op != "start":
            _checked(note, "failure reason" if not ok else "note", _TEXT_LIMIT, required=not ok)
        changes = []
        if op == "start" or request.state == _APPROVED:
            changes.append(self.start(request, time=time, actor=actor))
        if op != "start":
            changes.append(self.finish(request, ok=ok, time=time, actor=actor, reason=note))
        return changes

    def close(
        self, request: ServiceRequest, *, time: float, actor: str, note: str = ""
    ) -> RequestChange:
        """Close a rejected, fulfilled or failed request; it leaves the book (not the store).
        A request given here may come from the store.
        """
        text = _checked(note, "note", _TEXT_LIMIT)
        self._allowed(request, "close")
        change = self._move(request, "close", time, actor, text)
        request.closed_at = time
        self._by_id.pop(request.id, None)
        return change

    def due(self, now: float) -> list[RequestChange]:
        """Return a "breach" change for each request whose SLA ran out by `now` unfulfilled,
        soonest due first; each is reported once (the flag is saved with the request).
        """
        breached = sorted(
            (r for r in self._by_id.values() if self._overdue(r, now)),
            key=lambda r: (r.due_at or 0.0, r.id),
        )
        changes: list[RequestChange] = []
        for request in breached:
            request.sla_breached = True
            note = f"SLA breached: not fulfilled within {_span(request)} of submission"
            changes.append(RequestChange("breach", request, now, SLA_ACTOR, note))
        return changes

    def next_due(self) -> float | None:
        """Return when `due` next has something to report (maybe past: check at once)."""
        times = [
            r.due_at
            for r in self._by_id.values()
            if r.due_at is not None and r.sla_running and not r.sla_breached
        ]
        return min(times, default=None)

    @staticmethod
    def _overdue(request: ServiceRequest, now: float) -> bool:
        return (
            request.sla_running
            and not request.sla_breached
            and request.due_at is not None
            and request.due_at <= now
        )

    def _allowed(self, request: ServiceRequest, op: str) -> None:
        """Raise a conflict unless the request's state allows `op`."""
        _, sources = TRANSITIONS[op]
        if request.state not in sources:
            *first, last = sorted(sources)
            allowed = f"{', '.join(first)} or {last}" if first else last
            raise RequestError(
                f"request {request.id} is {request.state}; it can be {_DONE[op]} only when "
                f"{allowed}"
            )

    def _move(
        self, request: ServiceRequest, op: str, time: float, actor: str, note: str
    ) -> RequestChange:
        """Set the state `op` leads to, keep the per-state counts, and return the change."""
        to, _ = TRANSITIONS[op]
        previous = str(request.state)
        if self._by_id.get(request.id) is request:
            self._counts[request.state] -= 1
            if to != _CLOSED:
                self._counts[to] += 1
        request.state = to
        return RequestChange(op, request, time, actor, note, previous, str(to))


def _span(request: ServiceRequest) -> str:
    """Write the SLA the way a config would: 2d, 4h, 90m, 45s."""
    seconds = (request.due_at or request.opened_at) - request.opened_at
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
