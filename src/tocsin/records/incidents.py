"""The open incidents, in memory: pure bookkeeping that the engine drives and the store mirrors."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from tocsin.model import Incident, IncidentChange, IncidentState
from tocsin.records.priority import PriorityMatrix

__all__ = ["STORM_KEY", "IncidentBook", "fingerprint"]

# The key of a rule's storm summary incident (see the `storm` rule option).
STORM_KEY = "(storm)"


def fingerprint(rule_id: str, key: str) -> str:
    """Return the identity of an incident: rule id and rendered key (ids never hold ':')."""
    return f"{rule_id}:{key}"


class IncidentBook:
    """Open incidents by fingerprint; every mutation returns the change to persist."""

    __slots__ = ("_next_id", "_open", "priorities")

    def __init__(
        self,
        *,
        priorities: PriorityMatrix,
        next_id: int = 1,
        open_incidents: Iterable[Incident] = (),
    ) -> None:
        self.priorities = priorities
        self._next_id = next_id
        self._open: dict[str, Incident] = {i.fingerprint: i for i in open_incidents}

    def get(self, fp: str) -> Incident | None:
        """Return the open incident with this fingerprint, if any."""
        return self._open.get(fp)

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
    ) -> IncidentChange:
        """Open a new incident (the caller checked that none is open for the fingerprint).

        `count` events since `since` stand behind it when a threshold opens it.
        """
        incident = Incident(
            id=self._next_id,
            fingerprint=fingerprint(rule, key),
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
        )
        self._next_id += 1
        self._open[incident.fingerprint] = incident
        return IncidentChange("open", incident, time, count, actor)

    def recur(
        self, incident: Incident, *, time: float, actor: str, count: int = 1
    ) -> IncidentChange:
        """Count more occurrences (one, or what a threshold gathered) on an open incident."""
        incident.count += count
        incident.last_seen = max(incident.last_seen, time)
        return IncidentChange("update", incident, time, incident.count, actor)

    def resolve(self, fp: str, *, time: float, actor: str) -> IncidentChange | None:
        """Resolve the open incident with this fingerprint; None when there is none."""
        incident = self._open.pop(fp, None)
        if incident is None:
            return None
        previous = str(incident.state)
        incident.state = IncidentState.RESOLVED
        incident.resolved_at = time
        return IncidentChange("resolve", incident, time, incident.count, actor, previous)

    def open_by_priority(self) -> Counter[str]:
        """Count open incidents per priority (for the gauge)."""
        return Counter(i.priority for i in self._open.values())

    def __len__(self) -> int:
        return len(self._open)
