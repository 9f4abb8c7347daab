"""Incidents in memory, open and recently resolved: pure bookkeeping that the engine and the
operators' desk drive and the store mirrors. Every mutation returns the change to persist.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from tocsin.model import OPEN_STATES, Event, Incident, IncidentChange, IncidentState
from tocsin.records.priority import RATINGS, PriorityMatrix

__all__ = ["REOPEN_WINDOW", "STORM_KEY", "TARGETS", "IncidentBook", "LifecycleError", "fingerprint"]

# The key of a rule's storm summary incident (see the `storm` rule option).
STORM_KEY = "(storm)"

# By default, a fingerprint recurring this soon after its incident was resolved reopens it.
REOPEN_WINDOW = 3600.0

_NEW, _ACK, _WORK, _HOLD = (
    IncidentState.NEW,
    IncidentState.ACKNOWLEDGED,
    IncidentState.IN_PROGRESS,
    IncidentState.ON_HOLD,
)
_RESOLVED, _CLOSED = IncidentState.RESOLVED, IncidentState.CLOSED

# Operator transitions: target -> (the change's op, the states it may start from).
TARGETS: dict[str, tuple[str, frozenset[str]]] = {
    "acknowledged": ("acknowledge", frozenset({_NEW})),
    "in_progress": ("start", frozenset({_NEW, _ACK, _HOLD})),
    "on_hold": ("hold", frozenset({_ACK, _WORK})),
    "resolved": ("resolve", OPEN_STATES),
    "closed": ("close", frozenset({_RESOLVED})),
    "reopen": ("reopen", frozenset({_RESOLVED})),
}

_SAMPLE_MESSAGE = 1000  # characters of an event's message kept in a sample


class LifecycleError(ValueError):
    """A change the incident's state does not allow (HTTP 409) or a bad value (400)."""

    def __init__(self, message: str, *, conflict: bool = True) -> None:
        super().__init__(message)
        self.conflict = conflict


def fingerprint(rule_id: str, key: str) -> str:
    """Return the identity of an incident: rule id and rendered key (ids never hold ':')."""
    return f"{rule_id}:{key}"


def _end_hold(incident: Incident, time: float) -> None:
    """Close the running hold, if any: the resolution clock runs again."""
    if incident.held_since is not None:
        incident.holds.append([incident.held_since, max(time, incident.held_since)])
        incident.held_since = None


def _sample(event: Event) -> dict[str, object]:
    """What an incident keeps of one event behind it."""
    return {
        "time": event.time,
        "source": event.source,
        "origin": event.origin,
        "host": event.host,
        "program": event.program,
        "level": event.level,
        "message": event.message[:_SAMPLE_MESSAGE],
    }


class IncidentBook:
    """Open incidents by fingerprint, plus those resolved within the reopen window."""

    __slots__ = (
        "_by_id",
        "_counts",
        "_next_id",
        "_open",
        "_resolved",
        "priorities",
        "reopen_window",
        "samples",
    )

    def __init__(
        self,
        *,
        priorities: PriorityMatrix,
        next_id: int = 1,
        open_incidents: Iterable[Incident] = (),
        resolved: Iterable[Incident] = (),
        reopen_window: float = 0.0,
        samples: int = 10,
    ) -> None:
        self.priorities = priorities
        self.reopen_window = reopen_window
        self.samples = samples
        self._next_id = next_id
        self._open: dict[str, Incident] = {i.fingerprint: i for i in open_incidents}
        self._counts = Counter(i.priority for i in self._open.values())  # open, per priority
        # Newest resolution per fingerprint, oldest first, so expiry stops at the first keeper.
        self._resolved: dict[str, Incident] = {}
        for incident in sorted(resolved, key=lambda i: i.resolved_at or 0.0):
            if incident.fingerprint not in self._open:
                self._resolved.pop(incident.fingerprint, None)
                self._resolved[incident.fingerprint] = incident
        self._by_id: dict[int, Incident] = {
            i.id: i for i in (*self._open.values(), *self._resolved.values())
        }

    def get(self, fp: str) -> Incident | None:
        """Return the open incident with this fingerprint, if any."""
        return self._open.get(fp)

    def by_id(self, incident_id: int) -> Incident | None:
        """Return an open or recently resolved incident by id (others live only in the store)."""
        return self._by_id.get(incident_id)

    def open_incidents(self) -> Iterator[Incident]:
        """Iterate over the open incidents, oldest first."""
        return iter(self._open.values())

    def open(
        self,
        *,
        rule: str,
        key: str,
        title: str,
        impact: str,
        urgency: str,
        time: float,
        service: str = "",
        category: str = "",
        description: str = "",
        labels: dict[str, str] | None = None,
        count: int = 1,
        since: float | None = None,
        actor: str,
        event: Event | None = None,
    ) -> IncidentChange:
        """Open a new incident, or reopen the one of this fingerprint resolved within the window.

        The caller checked that none is open for the fingerprint. `count` events since
        `since` stand behind it when a threshold opens it.
        """
        fp = fingerprint(rule, key)
        previous = self._resolved.get(fp)
        if (
            previous is not None
            and previous.resolved_at is not None
            and self.reopen_window > 0
            and time - previous.resolved_at <= self.reopen_window
        ):
            del self._resolved[fp]
            previous.count += count
            previous.last_seen = max(previous.last_seen, time)
            if event is not None:
                self._add_sample(previous, event)
            return self._reopen(previous, time, actor, "the same fingerprint recurred")
        incident = Incident(
            id=self._next_id,
            fingerprint=fp,
            rule=rule,
            key=key,
            title=title,
            state=IncidentState.NEW,
            priority=self.priorities(impact, urgency),
            impact=impact,
            urgency=urgency,
            first_seen=time if since is None else since,
            last_seen=time,
            count=count,
            service=service,
            category=category,
            description=description,
            labels=labels or {},
            opened_at=time,
        )
        if event is not None:
            self._add_sample(incident, event)
        self._next_id += 1
        self._open[fp] = incident
        self._counts[incident.priority] += 1
        self._by_id[incident.id] = incident
        return IncidentChange("open", incident, time, count, actor, state=_NEW)

    def recur(
        self,
        incident: Incident,
        *,
        time: float,
        actor: str,
        count: int = 1,
        event: Event | None = None,
    ) -> IncidentChange:
        """Count more occurrences (one, or what a threshold gathered) on an open incident."""
        incident.count += count
        incident.last_seen = max(incident.last_seen, time)
        if event is not None:
            self._add_sample(incident, event)
        return IncidentChange("update", incident, time, incident.count, actor)

    def _add_sample(self, incident: Incident, event: Event) -> None:
        """Keep the first half of `samples` events for good, and the newest in the rest."""
        samples = incident.samples
        if self.samples < 1:
            return
        if len(samples) >= self.samples:
            del samples[self.samples // 2]
        samples.append(_sample(event))

    def resolve(self, fp: str, *, time: float, actor: str, note: str = "") -> IncidentChange | None:
        """Resolve the open incident with this fingerprint; None when there is none."""
        incident = self._open.get(fp)
        if incident is None:
            return None
        return self._resolve(incident, time, actor, note)

    def _resolve(self, incident: Incident, time: float, actor: str, note: str) -> IncidentChange:
        del self._open[incident.fingerprint]
        self._counts[incident.priority] -= 1
        previous = str(incident.state)
        _end_hold(incident, time)
        incident.state = _RESOLVED
        incident.resolved_at = time
        if incident.escalation is not None:
            incident.escalation.next_at = None
        older = self._resolved.pop(incident.fingerprint, None)
        if older is not None and older is not incident:
            self._by_id.pop(older.id, None)  # replaced: it lives on only in the store
        self._resolved[incident.fingerprint] = incident
        return IncidentChange(
            "resolve", incident, time, incident.count, actor, previous, note, _RESOLVED
        )

    def transition(
        self, incident: Incident, to: str, *, time: float, actor: str, note: str = ""
    ) -> IncidentChange:
        """Move an incident to state `to` (or "reopen") as an operator asked; LifecycleError if
        its state does not allow that. A closed incident given here may come from the store.
        """
        target = TARGETS.get(to)
        if target is None:
            raise LifecycleError(
                f"unknown state {to!r}; use one of {', '.join(TARGETS)}", conflict=False
            )
        op, sources = target
        state = str(incident.state)
        if state not in sources:
            allowed = ", ".join(sorted(sources))
            raise LifecycleError(
                f"incident {incident.id} is {state}; it can move to {to} only from {allowed}"
                if op != "reopen"
                else f"incident {incident.id} is {state}; only a resolved incident can be reopened"
            )
        if op == "resolve":
            return self._resolve(incident, time, actor, note)
        if op == "reopen":
            if incident.fingerprint in self._open:
                raise LifecycleError(
                    f"incident {incident.id} cannot be reopened: incident "
                    f"{self._open[incident.fingerprint].id} is open for the same fingerprint"
                )
            if self._resolved.get(incident.fingerprint) is incident:
                del self._resolved[incident.fingerprint]
            return self._reopen(incident, time, actor, note)
        if op == "close":
            incident.state = _CLOSED
            incident.closed_at = time
            if self._resolved.get(incident.fingerprint) is incident:
                del self._resolved[incident.fingerprint]
            self._by_id.pop(incident.id, None)
            return IncidentChange("close", incident, time, incident.count, actor, state, note, to)
        incident.state = IncidentState(to)
        if incident.acknowledged_at is None:
            incident.acknowledged_at = time  # working on it, or holding it, answers the page
        if to == _HOLD:
            incident.held_since = time  # the resolution clock stops (ITIL: waiting on others)
        else:
            _end_hold(incident, time)
        return IncidentChange(op, incident, time, incident.count, actor, state, note, to)

    def _reopen(self, incident: Incident, time: float, actor: str, note: str) -> IncidentChange:
        """Make a resolved incident open again: a fresh SLA, a fresh escalation."""
        incident.state = _NEW
        incident.resolved_at = None
        incident.acknowledged_at = None
        incident.opened_at = time
        incident.reopened += 1
        incident.sla_fired = []
        incident.escalation = None
        incident.holds = []
        incident.held_since = None
        self._open[incident.fingerprint] = incident
        self._counts[incident.priority] += 1
        self._by_id[incident.id] = incident
        return IncidentChange(
            "reopen", incident, time, incident.count, actor, "resolved", note, _NEW
        )

    @staticmethod
    def assign(
        incident: Incident,
        *,
        assignee: str | None,
        group: str | None,
        time: float,
        actor: str,
        note: str = "",
    ) -> IncidentChange:
        """Set who works on it (None leaves a field as it is, "" clears it)."""
        said = []
        if assignee is not None:
            incident.assignee = assignee
            said.append(f"assignee {assignee or '(none)'}")
        if group is not None:
            incident.group = group
            said.append(f"group {group or '(none)'}")
        text = ", ".join(said) + (f": {note}" if note else "")
        return IncidentChange("assign", incident, time, incident.count, actor, note=text)

    @staticmethod
    def comment(incident: Incident, *, text: str, time: float, actor: str) -> IncidentChange:
        """Add a comment to the timeline."""
        return IncidentChange("comment", incident, time, incident.count, actor, note=text)

    def rate(
        self,
        incident: Incident,
        *,
        impact: str | None,
        urgency: str | None,
        time: float,
        actor: str,
        note: str = "",
    ) -> IncidentChange:
        """Change impact and/or urgency; the priority follows the matrix."""
        for name, value in (("impact", impact), ("urgency", urgency)):
            if value is not None and value not in RATINGS:
                raise LifecycleError(
                    f"{name} must be one of {', '.join(RATINGS)}, not {value!r}", conflict=False
                )
        before = incident.priority
        incident.impact = impact or incident.impact
        incident.urgency = urgency or incident.urgency
        incident.priority = self.priorities(incident.impact, incident.urgency)
        if self._open.get(incident.fingerprint) is incident:
            self._counts[before] -= 1
            self._counts[incident.priority] += 1
        text = (
            f"impact {incident.impact}, urgency {incident.urgency}: priority {before} -> "
            f"{incident.priority}" + (f": {note}" if note else "")
        )
        return IncidentChange("rate", incident, time, incident.count, actor, note=text)

    def forget_resolved(self, before: float) -> None:
        """Drop resolved incidents whose reopen window has passed (they stay in the store)."""
        while self._resolved:
            fp, incident = next(iter(self._resolved.items()))
            if (incident.resolved_at or 0.0) >= before:
                return
            del self._resolved[fp]
            self._by_id.pop(incident.id, None)

    def open_by_priority(self) -> Counter[str]:
        """Count open incidents per priority (for the gauge); kept as they change, not counted."""
        return self._counts

    def __len__(self) -> int:
        return len(self._open)
