"""What incident changes and the clock set off: grouped notifications, escalation pages and
SLA marks. Pure: the daemon feeds it changes and the time, and commits what it returns.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tocsin import obs
from tocsin.model import Event, Incident, IncidentChange, IncidentState, Outgoing
from tocsin.notify.escalation import Escalator, Step
from tocsin.notify.grouping import Dispatcher
from tocsin.notify.notice import Notice
from tocsin.notify.receivers import Receiver
from tocsin.records.sla import SlaPolicy
from tocsin.records.views import notice_view
from tocsin.store.base import HistoryEntry

__all__ = ["Notifier", "Reaction"]

_STOPS = frozenset({"acknowledge", "start", "hold", "resolve", "close"})  # end of paging
_SKIP = frozenset({"update", "comment"})  # nothing the routing tree or a page cares about


@dataclass(slots=True)
class Reaction:
    """What to commit along with the changes that caused it."""

    changes: list[IncidentChange] = field(default_factory=list)  # escalation and SLA entries
    history: list[HistoryEntry] = field(default_factory=list)  # who was notified
    outbox: list[Outgoing] = field(default_factory=list)
    groups: dict[str, str | None] = field(default_factory=dict)  # group heads to save
    members: dict[tuple[str, int], str | None] = field(default_factory=dict)  # and members
    events: list[Event] = field(default_factory=list)  # SLA marks, for rules to act on

    def __bool__(self) -> bool:
        return bool(
            self.changes
            or self.history
            or self.outbox
            or self.groups
            or self.members
            or self.events
        )


class Notifier:
    """Routes incident changes to receivers and pages people, on the injected time.

    Escalation and SLA moments sit in a heap by due time, so a tick looks only at the
    incidents whose moment came, however many are open.
    """

    def __init__(
        self,
        *,
        receivers: Mapping[str, Receiver],
        dispatcher: Dispatcher | None = None,
        escalator: Escalator | None = None,
        sla: SlaPolicy | None = None,
    ) -> None:
        self.receivers = receivers
        self.dispatcher = dispatcher
        self.escalator = escalator
        self.sla = sla
        self._timers: list[tuple[float, int, Incident]] = []  # (due, tie-break, incident)
        self._due_at: dict[int, float] = {}  # incident id -> the due of its live heap entry
        self._order = itertools.count()

    def track(self, incidents: Iterable[Incident]) -> None:
        """Schedule the timers of incidents that were open before (at start-up)."""
        for incident in incidents:
            self._schedule(incident)

    def react(self, changes: Sequence[IncidentChange], now: float) -> Reaction:
        """Route what changed; start, pause or stop paging; send what is due now."""
        reaction = Reaction()
        for change in changes:
            op = change.op
            if op in _SKIP:
                continue
            incident = change.incident
            if self.dispatcher is not None:
                self.dispatcher.observe(incident, now)
            if self.escalator is not None:
                if op in _STOPS:
                    self._stop_paging(incident, change, now, reaction)
                elif op == "mute" and incident.muted:
                    self.escalator.stop(incident)  # muted: page nobody until the mute ends
                elif self._should_page(incident, op):
                    incident.escalation = None  # unmuted: start over from the first level
                    self._start(incident, now, reaction)
            self._schedule(incident)
        self._flush(now, reaction)
        return reaction

    def tick(self, now: float) -> Reaction:
        """Climb escalations and fire SLA marks that came due; send grouped notices due now."""
        reaction = Reaction()
        timers = self._timers
        while timers and timers[0][0] <= now:
            due, _, incident = heapq.heappop(timers)
            if self._due_at.get(incident.id) != due:
                continue  # rescheduled since: a stale entry
            del self._due_at[incident.id]
            self._due(incident, now, reaction)
            self._schedule(incident)
        if len(timers) > 2 * len(self._due_at) + 1024:  # drop stale entries now and then
            self._timers = [t for t in timers if self._due_at.get(t[2].id) == t[0]]
            heapq.heapify(self._timers)
        self._flush(now, reaction)
        return reaction

    def escalate(self, incident: Incident, why: str, now: float) -> Reaction:
        """Page the incident's next escalation level at once (a failed remediation); a note
        on its timeline when no policy pages it."""
        reaction = Reaction()
        if self.escalator is None or incident.escalation is None:
            reaction.changes.append(
                IncidentChange("escalate", incident, now, incident.count, "tocsin:escalation",
                               note=f"{why}: no escalation policy pages this incident")
            )  # fmt: skip
            return reaction
        self._page(incident, self.escalator.climb(incident, now, why=why), now, reaction)
        self._schedule(incident)
        return reaction

    def page_with(self, incident: Incident, policy: str, now: float) -> Reaction:
        """Start a named escalation policy for an incident (a request past its SLA)."""
        reaction = Reaction()
        if self.escalator is not None and incident.escalation is None:
            self._page(incident, self.escalator.start(incident, policy, now), now, reaction)
            self._schedule(incident)
        return reaction

    def _schedule(self, incident: Incident) -> None:
        """Put the incident's next escalation or SLA moment in the heap (or take it out)."""
        due = self._next(incident)
        if due == math.inf:
            self._due_at.pop(incident.id, None)
        elif self._due_at.get(incident.id) != due:
            self._due_at[incident.id] = due
            heapq.heappush(self._timers, (due, next(self._order), incident))

    @staticmethod
    def _should_page(incident: Incident, op: str) -> bool:
        """Open, unacknowledged and unmuted, and either no policy pages it yet or a mute that
        stopped its paging just ended."""
        if incident.state != IncidentState.NEW or incident.muted:
            return False
        escalation = incident.escalation
        return escalation is None or (op == "mute" and escalation.next_at is None)

    def _start(self, incident: Incident, now: float, reaction: Reaction) -> None:
        """Start the first escalation policy the routing tree gives the incident."""
        policies = self.dispatcher.escalations(incident) if self.dispatcher is not None else []
        if not policies or self.escalator is None:
            return
        self._page(incident, self.escalator.start(incident, policies[0], now), now, reaction)

    def _stop_paging(
        self, incident: Incident, change: IncidentChange, now: float, reaction: Reaction
    ) -> None:
        """Stop climbing; tell whoever was paged that it is acknowledged, or resolved."""
        escalation = incident.escalation
        if escalation is None or self.escalator is None:
            return
        self.escalator.stop(incident)
        resolved = change.op in ("resolve", "close")
        if not escalation.paged or not (resolved or change.previous == IncidentState.NEW):
            return
        action = "resolve" if resolved else "acknowledge"
        view = notice_view(incident)
        for receiver, who in escalation.paged:
            user = self.escalator.users.get(who) if who else None
            self._send(
                Notice(
                    receiver=receiver,
                    action=action,
                    reason="resolved" if resolved else "acknowledged",
                    group_key=f"incident-{incident.id}",
                    key=f"incident-{incident.id}:{escalation.policy}:{action}:{now:.3f}:"
                    f"{receiver}:{who}",
                    time=now,
                    incidents=(view,),
                    user=user.as_dict() if user is not None else None,
                ),
                reaction,
            )
        if resolved:
            escalation.paged = []  # told: a close after the resolve says nothing more

    def _due(self, incident: Incident, now: float, reaction: Reaction) -> None:
        """Handle one incident's due timers."""
        escalation = incident.escalation
        if (
            self.escalator is not None
            and escalation is not None
            and escalation.next_at is not None
            and escalation.next_at <= now
            and not incident.muted
        ):
            self._page(incident, self.escalator.due(incident, now), now, reaction)
        if self.sla is not None:
            marks = self.sla.check(incident, now)
            if marks:
                self._mark(incident, marks, now, reaction)

    def _next(self, incident: Incident) -> float:
        """When this incident's escalation or SLA next needs a look (inf: never)."""
        moments = [math.inf]
        if incident.escalation is not None and incident.escalation.next_at is not None:
            moments.append(incident.escalation.next_at)
        if self.sla is not None:
            due = self.sla.next_check(incident)
            if due is not None:
                moments.append(due)
        return min(moments)

    def _mark(self, incident: Incident, marks: list[str], now: float, reaction: Reaction) -> None:
        """Record SLA marks on the incident, count them, and hand them to rules as events."""
        incident.sla_fired.extend(marks)
        for mark in marks:
            stage, kind = mark.split(":")
            counter = obs.SLA_BREACHES if kind == "breach" else obs.SLA_WARNINGS
            counter.labels(incident.priority, stage).inc()
            note = f"SLA {stage} {'breached' if kind == 'breach' else 'near breach'}"
            reaction.changes.append(
                IncidentChange("sla", incident, now, incident.count, "tocsin:sla", note=note)
            )
            reaction.events.append(_sla_event(incident, stage, kind, now))
            if (
                kind == "warning"
                and self.escalator is not None
                and incident.escalation
                and not incident.muted
            ):
                self._page(incident, self.escalator.climb(incident, now), now, reaction)

    def _page(self, incident: Incident, step: Step, now: float, reaction: Reaction) -> None:
        """Send one notice per target about this one incident; note it on the timeline."""
        escalation = incident.escalation
        policy = escalation.policy if escalation is not None else ""
        targets = step.targets
        for note in step.notes:
            reaction.changes.append(
                IncidentChange("escalate", incident, now, incident.count, "tocsin:escalation",
                               note=note)
            )  # fmt: skip
        if not targets:
            return
        view = notice_view(incident)
        level = targets[0].level
        said: list[str] = []
        for target in targets:
            user = target.user
            who = user.name if user is not None else ""
            if escalation is not None and [target.receiver, who] not in escalation.paged:
                escalation.paged.append([target.receiver, who])
            notice = Notice(
                receiver=target.receiver,
                action="trigger",
                reason=step.reason,
                group_key=f"incident-{incident.id}",
                # Unique per page: a climb on an SLA warning may repeat a level in one round.
                key=f"incident-{incident.id}:{policy}:{step.reason}:{now:.3f}:{target.receiver}:{who}",
                time=now,
                incidents=(view,),
                user=user.as_dict() if user is not None else None,
            )
            self._send(notice, reaction)
            said.append(f"{target.receiver}" + (f" for {who}" if who else "") + f" ({target.via})")
        obs.ESCALATIONS.labels(policy, str(level + 1)).inc()
        reaction.changes.append(
            IncidentChange(
                "escalate",
                incident,
                now,
                incident.count,
                "tocsin:escalation",
                note=f"{policy} level {level + 1}: notified {', '.join(said)}",
            )
        )

    def _flush(self, now: float, reaction: Reaction) -> None:
        """Send the grouped notices that are due, and keep the groups' new state."""
        dispatcher = self.dispatcher
        if dispatcher is None:
            return
        due = dispatcher.next_due()
        if due is not None and due <= now:
            for notice in dispatcher.flush(now):
                self._send(notice, reaction)
                for view in notice.incidents:
                    state = str(view["state"])
                    reaction.history.append(
                        HistoryEntry(
                            int(view["id"]),
                            now,
                            state,
                            state,
                            f"notify:{notice.receiver}",
                            f"{notice.reason} ({notice.action})",
                            "notify",
                        )
                    )
        changed = dispatcher.dirty()
        reaction.groups.update(changed.heads)
        reaction.members.update(changed.members)

    def _send(self, notice: Notice, reaction: Reaction) -> None:
        """Render a notice into its receiver's outbox row."""
        receiver = self.receivers[notice.receiver]
        reaction.outbox.append(receiver.render(notice))
        obs.NOTIFICATIONS.labels(notice.receiver, notice.reason.split(" ")[0]).inc()


def _sla_event(incident: Incident, stage: str, kind: str, now: float) -> Event:
    """The event rules see for an SLA mark (source "tocsin", program "sla")."""
    what = "breached" if kind == "breach" else "near breach"
    return Event(
        time=now,
        received=now,
        source="tocsin",
        origin="tocsin://sla",
        program="sla",
        level="err" if kind == "breach" else "warning",
        message=f"SLA {stage} {what} on incident {incident.id} ({incident.priority}): "
        f"{incident.title}",
        fields={
            "incident": incident.id,
            "fingerprint": incident.fingerprint,
            "priority": incident.priority,
            "service": incident.service,
            "rule": incident.rule,
            "sla": stage,
            "mark": kind,
        },
    )
