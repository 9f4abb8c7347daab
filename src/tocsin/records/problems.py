"""Problems: the causes behind recurring incidents, from new to closed, and the recurrence
policy that opens them. Pure bookkeeping like records.incidents: every mutation returns the
change to persist, and time is always an argument.

A recurrence rule counts the openings (and reopenings) of incidents per key: the incident's
fingerprint, or the values of some of its labels. When `count` of them fall within `within`,
the key recurs: a problem is opened for it (or the open one gets the incidents linked, or a
resolved one is reopened) and the key's count starts again from zero. An incident without a
value for one of a rule's fields is not counted by that rule, so unlabelled incidents never
pile up into one problem.
"""

from __future__ import annotations

import bisect
import enum
import json
import math
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tocsin.model import Incident
from tocsin.mute.matchers import check_label_name
from tocsin.records.incidents import LifecycleError
from tocsin.records.views import route_labels
from tocsin.rules.schema import (
    check_keys,
    expect_int,
    expect_items,
    expect_list,
    expect_map,
    format_duration,
    parse_duration,
)
from tocsin.yamlsrc import Mark, SourceError, value_mark

__all__ = [
    "MAX_LINKED",
    "OPEN_PROBLEM_STATES",
    "PROBLEM_STATES_KEPT",
    "RECURRENCE_ACTOR",
    "TARGETS",
    "Problem",
    "ProblemBook",
    "ProblemChange",
    "ProblemError",
    "ProblemState",
    "Recurrence",
    "RecurrencePolicy",
    "RecurrenceRule",
    "parse_problems",
    "track_recurrence",
]


class ProblemState(enum.StrEnum):
    """Where a problem is in its ITIL lifecycle; resolved and closed are not open."""

    NEW = "new"
    INVESTIGATING = "investigating"
    KNOWN_ERROR = "known_error"  # root cause and workaround known, the fix still to come
    RESOLVED = "resolved"
    CLOSED = "closed"


_NEW, _INVESTIGATING, _KNOWN = (
    ProblemState.NEW,
    ProblemState.INVESTIGATING,
    ProblemState.KNOWN_ERROR,
)
_RESOLVED, _CLOSED = ProblemState.RESOLVED, ProblemState.CLOSED

# The states of a problem somebody still works on: new incidents of its key are linked to it.
OPEN_PROBLEM_STATES: frozenset[str] = frozenset({_NEW, _INVESTIGATING, _KNOWN})
# What a ProblemBook keeps in memory: every problem not closed.
PROBLEM_STATES_KEPT: tuple[str, ...] = (_NEW, _INVESTIGATING, _KNOWN, _RESOLVED)

# Operator transitions: target -> (the change's op, the states it may start from).
TARGETS: dict[str, tuple[str, frozenset[str]]] = {
    "investigating": ("investigate", frozenset({_NEW})),
    "known_error": ("known_error", frozenset({_NEW, _INVESTIGATING})),
    "resolved": ("resolve", OPEN_PROBLEM_STATES),
    "closed": ("close", frozenset({_RESOLVED})),
    "reopen": ("reopen", frozenset({_RESOLVED})),
}

# Incident ids a problem keeps (the newest); `incident_count` counts every one ever linked.
MAX_LINKED = 100

# Who the recurrence policy is on timelines.
RECURRENCE_ACTOR = "problems:recurrence"

_TITLE_LIMIT = 500
_OWNER_LIMIT = 200
_TEXT_LIMIT = 10_000  # characters of a root cause or a workaround
_LONGEST_WINDOW = 366 * 86400.0


class ProblemError(LifecycleError):
    """A change the problem's state does not allow (`conflict`, HTTP 409) or a bad value (400)."""


@dataclass(slots=True)
class Problem:
    """A problem record; live and mutable like Incident, snapshot it with to_dict."""

    id: int
    title: str
    state: ProblemState
    opened_at: float
    service: str = ""
    category: str = ""
    fingerprint: str = ""  # the recurrence key it was opened for, or ""
    incidents: list[int] = field(default_factory=list)  # linked ids, the newest MAX_LINKED
    incident_count: int = 0  # incidents ever linked
    root_cause: str = ""
    workaround: str = ""
    owner: str = ""
    known_error: str = ""  # the name of its KEDB entry, or ""
    resolved_at: float | None = None
    closed_at: float | None = None

    @property
    def is_open(self) -> bool:
        """Whether somebody still works on it (new incidents of its key are linked to it)."""
        return self.state in OPEN_PROBLEM_STATES

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form the store keeps (a snapshot: later changes do not reach it)."""
        return {
            "id": self.id,
            "title": self.title,
            "state": str(self.state),
            "opened_at": self.opened_at,
            "service": self.service,
            "category": self.category,
            "fingerprint": self.fingerprint,
            "incidents": list(self.incidents),
            "incident_count": self.incident_count,
            "root_cause": self.root_cause,
            "workaround": self.workaround,
            "owner": self.owner,
            "known_error": self.known_error,
            "resolved_at": self.resolved_at,
            "closed_at": self.closed_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Problem:
        """Rebuild a problem saved by to_dict; ProblemError names what is damaged."""
        if not isinstance(data, Mapping):
            raise ProblemError("a problem record must be a mapping", conflict=False)
        missing = [k for k in _FIELDS if k not in data]
        if missing:
            raise ProblemError(f"problem record lacks {', '.join(missing)}", conflict=False)
        texts = ("title", "service", "category", "fingerprint", "root_cause", "workaround")
        for key in (*texts, "owner", "known_error"):
            if not isinstance(data[key], str):
                raise ProblemError(f"problem record field '{key}' must be text", conflict=False)
        if not isinstance(data["state"], str) or data["state"] not in _STATES:
            raise ProblemError(
                f"problem record has unknown state {data['state']!r}", conflict=False
            )
        ids = data["incidents"]
        if not isinstance(ids, list) or not all(_is_id(i) for i in ids):
            raise ProblemError("problem record field 'incidents' must list ids", conflict=False)
        if not _is_id(data["id"]):
            raise ProblemError("problem record field 'id' must be a whole number", conflict=False)
        if not _is_id(data["incident_count"]) and data["incident_count"] != 0:
            raise ProblemError(
                "problem record field 'incident_count' must be a whole number", conflict=False
            )
        return cls(
            id=data["id"],
            title=data["title"],
            state=ProblemState(data["state"]),
            opened_at=_time(data, "opened_at"),
            service=data["service"],
            category=data["category"],
            fingerprint=data["fingerprint"],
            incidents=list(ids),
            incident_count=data["incident_count"],
            root_cause=data["root_cause"],
            workaround=data["workaround"],
            owner=data["owner"],
            known_error=data["known_error"],
            resolved_at=_optional_time(data, "resolved_at"),
            closed_at=_optional_time(data, "closed_at"),
        )


_FIELDS = tuple(Problem.__dataclass_fields__)
_STATES = frozenset(str(s) for s in ProblemState)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _time(data: Mapping[str, Any], key: str) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProblemError(f"problem record field '{key}' must be a finite time", conflict=False)
    return float(value)


def _optional_time(data: Mapping[str, Any], key: str) -> float | None:
    return None if data[key] is None else _time(data, key)


@dataclass(slots=True)
class ProblemChange:
    """What happened to one problem; `problem` is live, `state` is the state right after."""

    # "open" | "investigate" | "known_error" | "resolve" | "close" | "reopen" (state changes),
    # "update" (title, root cause, workaround, owner or KEDB entry set) | "link" (an incident)
    op: str
    problem: Problem
    time: float
    actor: str
    note: str = ""  # for the timeline: what changed, when it is not the state
    previous: str | None = None  # the state before a state change
    state: str | None = None
    incident: int | None = None  # the incident a "link" joined


def _checked(value: str, what: str, limit: int, *, required: bool = False) -> str:
    """Return `value` stripped, or raise a bad-value ProblemError."""
    text = value.strip()
    if required and not text:
        raise ProblemError(f"a problem needs a {what}", conflict=False)
    if len(text) > limit:
        raise ProblemError(f"the {what} is too long (at most {limit} characters)", conflict=False)
    return text


class ProblemBook:
    """Problems not yet closed, by id and by recurrence key; closed ones live in the store."""

    __slots__ = ("_by_id", "_by_key", "_counts", "_next_id", "max_linked")

    def __init__(
        self,
        *,
        next_id: int = 1,
        problems: Iterable[Problem] = (),
        max_linked: int = MAX_LINKED,
    ) -> None:
        self.max_linked = max_linked
        self._next_id = next_id
        self._by_id: dict[int, Problem] = {}
        self._by_key: dict[str, Problem] = {}
        self._counts: Counter[str] = Counter()  # per state, for the gauge
        for problem in sorted(problems, key=lambda p: p.id):
            if problem.state == _CLOSED:
                continue
            self._by_id[problem.id] = problem
            self._counts[problem.state] += 1
            if problem.fingerprint:
                self._by_key[problem.fingerprint] = problem  # the newest wins a (damaged) tie
            self._next_id = max(self._next_id, problem.id + 1)

    def get(self, problem_id: int) -> Problem | None:
        """Return a problem not yet closed by id."""
        return self._by_id.get(problem_id)

    def for_key(self, key: str) -> Problem | None:
        """Return the problem not yet closed that was opened for this recurrence key."""
        return self._by_key.get(key)

    def problems(self) -> Iterator[Problem]:
        """Iterate over the problems not yet closed, oldest first."""
        return iter(self._by_id.values())

    def by_state(self) -> Counter[str]:
        """Count the problems not yet closed per state (for the gauge); kept, not counted."""
        return self._counts

    def __len__(self) -> int:
        return len(self._by_id)

    def open(
        self,
        *,
        title: str,
        time: float,
        actor: str,
        service: str = "",
        category: str = "",
        key: str = "",
        owner: str = "",
        root_cause: str = "",
        workaround: str = "",
        note: str = "",
    ) -> ProblemChange:
        """Open a new problem (for recurrence key `key`, if given: one per key until closed)."""
        taken = self._by_key.get(key) if key else None
        if taken is not None:
            raise ProblemError(
                f"problem {taken.id} ({taken.state}) already has key {key}; a key has one "
                "problem until that is closed"
            )
        problem = Problem(
            id=self._next_id,
            title=_checked(title, "title", _TITLE_LIMIT, required=True),
            state=_NEW,
            opened_at=time,
            service=service,
            category=category,
            fingerprint=key,
            owner=_checked(owner, "owner", _OWNER_LIMIT),
            root_cause=_checked(root_cause, "root cause", _TEXT_LIMIT),
            workaround=_checked(workaround, "workaround", _TEXT_LIMIT),
        )
        self._next_id += 1
        self._by_id[problem.id] = problem
        self._counts[_NEW] += 1
        if key:
            self._by_key[key] = problem
        return ProblemChange("open", problem, time, actor, note, state=_NEW)

    def transition(
        self, problem: Problem, to: str, *, time: float, actor: str, note: str = ""
    ) -> ProblemChange:
        """Move a problem to state `to` (or "reopen") as an operator asked; ProblemError if its
        state does not allow that. A closed problem given here may come from the store.
        """
        target = TARGETS.get(to)
        if target is None:
            raise ProblemError(
                f"unknown state {to!r}; use one of {', '.join(TARGETS)}", conflict=False
            )
        op, sources = target
        state = str(problem.state)
        if state not in sources:
            allowed = ", ".join(sorted(sources))
            raise ProblemError(
                f"problem {problem.id} is {state}; it can move to {to} only from {allowed}"
                if op != "reopen"
                else f"problem {problem.id} is {state}; only a resolved problem can be reopened"
            )
        if op == "known_error" and not (problem.workaround or problem.root_cause):
            raise ProblemError(
                f"problem {problem.id} has no workaround or root cause yet; record them "
                "before calling it a known error"
            )
        if op == "reopen":
            holder = self._by_key.get(problem.fingerprint) if problem.fingerprint else None
            if holder is not None and holder is not problem:
                raise ProblemError(
                    f"problem {problem.id} cannot be reopened: problem {holder.id} is open "
                    f"for the same key"
                )
            return self._reopen(problem, time, actor, note)
        self._move(problem, ProblemState(to))
        if op == "resolve":
            problem.resolved_at = time
        elif op == "close":
            problem.closed_at = time
            self._by_id.pop(problem.id, None)
            if self._by_key.get(problem.fingerprint) is problem:
                del self._by_key[problem.fingerprint]
        return ProblemChange(op, problem, time, actor, note, state, to)

    def _move(self, problem: Problem, to: ProblemState) -> None:
        """Set the state and keep the per-state counts of the book's problems."""
        if self._by_id.get(problem.id) is problem:
            self._counts[problem.state] -= 1
            if to != _CLOSED:
                self._counts[to] += 1
        problem.state = to

    def _reopen(self, problem: Problem, time: float, actor: str, note: str) -> ProblemChange:
        """Make a resolved problem one under investigation again."""
        self._move(problem, _INVESTIGATING)
        problem.resolved_at = None
        if problem.fingerprint:
            self._by_key[problem.fingerprint] = problem
        return ProblemChange("reopen", problem, time, actor, note, _RESOLVED, _INVESTIGATING)

    def update(
        self,
        problem: Problem,
        *,
        time: float,
        actor: str,
        title: str | None = None,
        root_cause: str | None = None,
        workaround: str | None = None,
        owner: str | None = None,
        known_error: str | None = None,
        note: str = "",
    ) -> ProblemChange:
        """Set fields (None leaves one as it is, "" clears it; a title cannot be cleared)."""
        if problem.state == _CLOSED:
            raise ProblemError(f"problem {problem.id} is closed; it cannot change any more")
        given = {
            "title": title,
            "root cause": root_cause,
            "workaround": workaround,
            "owner": owner,
            "known error": known_error,
        }
        if all(value is None for value in given.values()):
            raise ProblemError(
                "nothing to change: give a title, root cause, workaround, owner or known error",
                conflict=False,
            )
        limits = {"title": _TITLE_LIMIT, "owner": _OWNER_LIMIT, "known error": _OWNER_LIMIT}
        checked = {
            what: _checked(value, what, limits.get(what, _TEXT_LIMIT), required=what == "title")
            for what, value in given.items()
            if value is not None
        }
        said: list[str] = []
        for what, value in checked.items():
            setattr(problem, what.replace(" ", "_"), value)
            shown = value if what in limits else ("set" if value else "cleared")
            said.append(f"{what} {shown or '(none)'}")
        text = ", ".join(said) + (f": {note}" if note else "")
        return ProblemChange("update", problem, time, actor, text)

    def link(
        self, problem: Problem, incident_id: int, *, time: float, actor: str, note: str = ""
    ) -> ProblemChange:
        """Link an incident to a problem not yet closed (a conflict if it is linked already)."""
        if problem.state == _CLOSED:
            raise ProblemError(f"problem {problem.id} is closed; link the incident to a new one")
        if incident_id in problem.incidents:
            raise ProblemError(f"incident {incident_id} is already linked to problem {problem.id}")
        problem.incidents.append(incident_id)
        if len(problem.incidents) > self.max_linked:
            del problem.incidents[: len(problem.incidents) - self.max_linked]
        problem.incident_count += 1
        text = f"incident {incident_id} linked" + (f": {note}" if note else "")
        return ProblemChange("link", problem, time, actor, text, incident=incident_id)

    def open_or_link(
        self,
        key: str,
        *,
        title: str,
        incident_ids: Iterable[int],
        time: float,
        actor: str,
        service: str = "",
        category: str = "",
        note: str = "",
    ) -> list[ProblemChange]:
        """Open the problem for `key`, or reopen it if resolved, then link the incidents not
        linked yet: what recurrence (and a rule's `problem` action) does with a key.
        """
        if not key.strip():
            raise ProblemError("a problem key must not be empty", conflict=False)
        changes: list[ProblemChange] = []
        problem = self._by_key.get(key)
        if problem is None:
            changes.append(
                self.open(
                    title=title,
                    time=time,
                    actor=actor,
                    service=service,
                    category=category,
                    key=key,
                    note=note,
                )
            )
            problem = changes[0].problem
        elif problem.state == _RESOLVED:
            changes.append(self._reopen(problem, time, actor, note or "the key recurred"))
        for incident_id in dict.fromkeys(incident_ids):
            if incident_id not in problem.incidents:
                changes.append(self.link(problem, incident_id, time=time, actor=actor, note=note))
        return changes

    def recur(
        self, recurrence: Recurrence, *, time: float, actor: str = RECURRENCE_ACTOR
    ) -> list[ProblemChange]:
        """Open, reopen or add to the problem of a key the recurrence policy saw recur."""
        return self.open_or_link(
            recurrence.key,
            title=recurrence.title,
            incident_ids=recurrence.incident_ids,
            time=time,
            actor=actor,
            service=recurrence.service,
            category=recurrence.category,
            note=recurrence.note,
        )


# ---------------------------------------------------------------------------------------------
# The recurrence policy

FINGERPRINT = "fingerprint"


@dataclass(frozen=True, slots=True)
class RecurrenceRule:
    """`count` openings of incidents with the same values of `by` within `within` seconds."""

    by: tuple[str, ...]  # "fingerprint" and/or label names (route_labels: service, rule, ...)
    count: int
    within: float
    where: Mark | None = field(default=None, compare=False)

    def key(self, incident: Incident, labels: Mapping[str, str]) -> str | None:
        """Return the incident's key under this rule, like `{service="db", category="disk"}`;
        None when one of the fields has no value.
        """
        values = [incident.fingerprint if n == FINGERPRINT else labels.get(n, "") for n in self.by]
        if not all(values):
            return None
        shown = (
            f"{n}={json.dumps(v, ensure_ascii=False)}" for n, v in zip(self.by, values, strict=True)
        )
        return "{" + ", ".join(shown) + "}"

    def title(self, incident: Incident, labels: Mapping[str, str]) -> str:
        """Suggest a title for the problem of the incident's key (cut to fit a title)."""
        if FINGERPRINT in self.by:
            title = f"Recurring: {incident.title}"
        else:
            title = "Recurring incidents: " + ", ".join(f"{n} {labels.get(n, '')}" for n in self.by)
        return title[:_TITLE_LIMIT]

    @property
    def signature(self) -> str:
        """Name the rule's counts in a dump: its fields (rules with the same `by` are refused)."""
        return ",".join(self.by)

    def __str__(self) -> str:
        return (
            f"{self.count} incidents within {format_duration(self.within)} by {', '.join(self.by)}"
        )


@dataclass(frozen=True, slots=True)
class Recurrence:
    """A key that recurred: open (or add to) its problem and link these incidents."""

    key: str
    title: str  # a suggestion, for a problem opened for it
    incident_ids: tuple[int, ...]  # the openings counted, oldest first (each id once)
    service: str
    category: str
    note: str  # for the timeline: "3 incidents within 24h by fingerprint"


# Per key, (opening time, incident id) of the last `count` openings, oldest first.
_Openings = list[tuple[float, int]]


class RecurrencePolicy:
    """Counts incident openings per rule and key; says when a key recurs.

    Per key it keeps only the newest `count` openings, and a key with none left within its
    window is forgotten; at most `max_keys` keys per rule are kept (the least recently seen
    go first, counted in `evicted`).
    """

    __slots__ = ("_rules", "_seen", "evicted", "max_keys")

    def __init__(self, rules: Sequence[RecurrenceRule] = (), *, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self.evicted = 0
        self._rules: tuple[RecurrenceRule, ...] = ()
        self._seen: dict[str, OrderedDict[str, _Openings]] = {}
        self.set_rules(rules)

    @property
    def rules(self) -> tuple[RecurrenceRule, ...]:
        """Return the rules in config order."""
        return self._rules

    def set_rules(self, rules: Sequence[RecurrenceRule]) -> None:
        """Use these rules from now on (a reload); counts of rules whose `by` stays are kept."""
        signatures = [r.signature for r in rules]
        if len(set(signatures)) != len(signatures):
            raise ValueError("two recurrence rules count by the same fields")
        seen: dict[str, OrderedDict[str, _Openings]] = {}
        for rule in rules:
            kept = self._seen.get(rule.signature, OrderedDict())
            for openings in kept.values():
                del openings[: max(len(openings) - rule.count, 0)]
            seen[rule.signature] = kept
        self._rules = tuple(rules)
        self._seen = seen

    def keys(self, incident: Incident) -> list[str]:
        """Return the keys the incident counts under, one per rule that gives it one."""
        labels = route_labels(incident)
        return [k for r in self._rules if (k := r.key(incident, labels)) is not None]

    def observe(self, incident: Incident, now: float) -> list[Recurrence]:
        """Count one opening (or reopening) of `incident` at `now`; return the keys that recur.

        A key recurs when `count` of its openings are at or after `now - within`; its count
        then starts again, so the next recurrence needs `count` new openings.
        """
        labels = route_labels(incident)
        found: list[Recurrence] = []
        for rule in self._rules:
            key = rule.key(incident, labels)
            if key is None:
                continue
            seen = self._seen[rule.signature]
            self._expire(seen, now - rule.within)
            openings = seen.pop(key, [])
            bisect.insort(openings, (now, incident.id))
            del openings[: max(len(openings) - rule.count, 0)]
            if len(openings) == rule.count and openings[0][0] >= now - rule.within:
                found.append(
                    Recurrence(
                        key=key,
                        title=rule.title(incident, labels),
                        incident_ids=tuple(dict.fromkeys(i for _, i in openings)),
                        service=incident.service,
                        category=incident.category,
                        note=str(rule),
                    )
                )
                continue
            seen[key] = openings
            if len(seen) > self.max_keys:
                seen.popitem(last=False)
                self.evicted += 1
        return found

    @staticmethod
    def _expire(seen: OrderedDict[str, _Openings], before: float) -> None:
        """Forget keys, least recently seen first, whose newest opening is before `before`."""
        while seen:
            openings = next(iter(seen.values()))
            if openings and openings[-1][0] >= before:
                return
            seen.popitem(last=False)

    def __len__(self) -> int:
        """Count the keys being counted, over every rule."""
        return sum(len(seen) for seen in self._seen.values())

    def dump(self) -> dict[str, Any]:
        """Return the counts as JSON-able data, so a restart does not lose them."""
        return {
            "version": 1,
            "counts": {
                signature: {key: [[t, i] for t, i in openings] for key, openings in seen.items()}
                for signature, seen in self._seen.items()
            },
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Put back counts from `dump` (of rules still configured); ValueError if damaged."""
        counts = data.get("counts") if isinstance(data, Mapping) else None
        if not isinstance(data, Mapping) or data.get("version") != 1:
            raise ValueError("recurrence counts: not a version 1 dump")
        if not isinstance(counts, Mapping):
            raise ValueError("recurrence counts: 'counts' must be a mapping")
        for rule in self._rules:
            keys = counts.get(rule.signature, {})
            if not isinstance(keys, Mapping):
                raise ValueError(f"recurrence counts of {rule.signature}: not a mapping")
            seen: OrderedDict[str, _Openings] = OrderedDict()
            for key, pairs in keys.items():
                openings = sorted(_opening(rule.signature, pair) for pair in _pairs(pairs))
                del openings[: max(len(openings) - rule.count, 0)]
                if isinstance(key, str) and openings:
                    seen[key] = openings
            self._seen[rule.signature] = seen


def _pairs(pairs: Any) -> list[Any]:
    if not isinstance(pairs, list):
        raise ValueError("recurrence counts: a key's openings must be a list")
    return pairs


def _opening(signature: str, pair: Any) -> tuple[float, int]:
    """Read one [time, incident id] pair of a dump."""
    if (
        isinstance(pair, list)
        and len(pair) == 2
        and isinstance(pair[0], int | float)
        and not isinstance(pair[0], bool)
        and math.isfinite(pair[0])
        and _is_id(pair[1])
    ):
        return float(pair[0]), int(pair[1])
    raise ValueError(f"recurrence counts of {signature}: {pair!r} is not [time, incident id]")


def track_recurrence(
    book: ProblemBook,
    policy: RecurrencePolicy,
    incident: Incident,
    *,
    now: float,
    actor: str = RECURRENCE_ACTOR,
) -> list[ProblemChange]:
    """Count an incident just opened (or reopened) and return what that did to problems.

    A key that recurs opens, reopens or adds to its problem; otherwise an incident whose key
    has an open problem is linked to it at once.
    """
    changes: list[ProblemChange] = []
    recurred = {r.key: r for r in policy.observe(incident, now)}
    for key in policy.keys(incident):
        recurrence = recurred.get(key)
        if recurrence is not None:
            changes.extend(book.recur(recurrence, time=now, actor=actor))
            continue
        problem = book.for_key(key)
        if problem is not None and problem.is_open and incident.id not in problem.incidents:
            changes.append(book.link(problem, incident.id, time=now, actor=actor))
    return changes


# ---------------------------------------------------------------------------------------------
# Parsing from YAML

_PROBLEMS_KEYS = ("recurrence",)
_RULE_KEYS = ("by", "count", "within")


def parse_problems(spec: Any, where: Mark) -> tuple[RecurrenceRule, ...]:
    """Parse the `problems:` section into its recurrence rules; empty: none."""
    if spec is None:
        return ()
    data = expect_map(spec, where, "'problems'")
    check_keys(data, _PROBLEMS_KEYS, "problems option")
    raw = data.get("recurrence")
    if raw is None:
        return ()
    at = value_mark(data, "recurrence", where)
    items = expect_list(raw, at, "'recurrence'")
    rules: list[RecurrenceRule] = []
    first: dict[str, Mark] = {}
    for index, item in enumerate(items):
        item_at = value_mark(items, index, at)
        rule = _rule(item, item_at, index + 1)
        if rule.signature in first:
            raise SourceError(
                item_at,
                f"recurrence rule {index + 1}: another rule counts by {', '.join(rule.by)} "
                f"(at {first[rule.signature]}); keep one",
            )
        first[rule.signature] = item_at
        rules.append(rule)
    return tuple(rules)


def _rule(spec: Any, where: Mark, number: int) -> RecurrenceRule:
    def errors(at: Mark, message: str) -> SourceError:
        return SourceError(at, f"recurrence rule {number}: {message}")

    data = expect_map(spec, where, "a recurrence rule", errors)
    check_keys(data, _RULE_KEYS, "option", errors, required=_RULE_KEYS)

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    fields = expect_items(data["by"], at("by"), "'by'")
    if not fields:
        raise errors(at("by"), "'by' needs a field, like fingerprint or [service, category]")
    by: list[str] = []
    for index, name in enumerate(fields):
        name_at = value_mark(fields, index, at("by"))
        checked = check_label_name(name, name_at, "field", errors)
        if checked in by:
            raise errors(name_at, f"'by' names {checked} twice")
        by.append(checked)
    count = expect_int(data["count"], at("count"), "'count'", errors, minimum=2)
    if count > MAX_LINKED:
        raise errors(at("count"), f"'count' must be at most {MAX_LINKED}")
    within = parse_duration(data["within"], at("within"), "'within'", errors)
    if not 0 < within <= _LONGEST_WINDOW:
        raise errors(at("within"), "'within' must be more than 0s and at most 366d")
    return RecurrenceRule(by=tuple(by), count=count, within=within, where=data.mark)
