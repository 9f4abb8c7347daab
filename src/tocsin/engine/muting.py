"""The muting stage: hold a hit's notifying actions while a silence, maintenance window or
inhibition covers it, and say why on the incident. Pure; time is the hit's event time.

What is active changes only at known moments (a silence or window starting or ending), so
the active silences and windows are worked out once per such span, not per event.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from tocsin.model import Incident, IncidentChange
from tocsin.mute import MuteDecision
from tocsin.mute.inhibit import Inhibitor, InhibitRule
from tocsin.mute.schedule import MaintenanceCalendar, MaintenanceWindow
from tocsin.mute.silences import Silence, SilenceBook
from tocsin.records.views import incident_labels
from tocsin.rules.types import Hit

__all__ = ["Muter", "hit_labels", "mute_change"]

_SCALARS = (str, int, float, bool)


def hit_labels(hit: Hit, incident: Incident | None) -> dict[str, str]:
    """What silences, windows and inhibition match against: the event, the rule, the incident.

    Scalar event fields come first, so the event's own attributes and the incident's labels
    win over a field of the same name.
    """
    event = hit.event
    labels = {k: str(v) for k, v in event.fields.items() if isinstance(v, _SCALARS)}
    labels.update(
        rule=hit.rule.id,
        key=hit.key,
        host=event.host,
        program=event.program,
        source=event.source,
        origin=event.origin,
        level=event.level,
        severity=event.severity,
    )
    if incident is not None:
        labels.update(incident_labels(incident))
    return labels


class Muter:
    """Decides whether a hit is muted and by what; keeps inhibition sources in step."""

    __slots__ = (
        "_active",
        "_from",
        "_until",
        "calendar",
        "inhibitor",
        "silences",
    )

    def __init__(
        self,
        *,
        silences: SilenceBook,
        windows: Sequence[MaintenanceWindow] = (),
        inhibit: Sequence[InhibitRule] = (),
        open_incidents: Iterable[Incident] = (),
    ) -> None:
        self.silences = silences
        self.calendar = MaintenanceCalendar(windows=windows)
        self.inhibitor = Inhibitor(
            rules=inhibit, sources=((i.fingerprint, incident_labels(i)) for i in open_incidents)
        )
        self._active: tuple[list[Silence], list[MaintenanceWindow]] = ([], [])
        self._from = math.inf  # the span [from, until) the active lists hold for
        self._until = -math.inf

    @property
    def engaged(self) -> bool:
        """Whether any muting is configured at all (if not, the engine skips this stage)."""
        return bool(len(self.silences) or self.calendar.windows or self.inhibitor.rules)

    def silences_changed(self) -> None:
        """Forget what was active: a silence was added or expired."""
        self._from, self._until = math.inf, -math.inf

    def set_windows(self, windows: Sequence[MaintenanceWindow]) -> None:
        """Use these maintenance windows from now on (config ones plus API-made ones)."""
        self.calendar = MaintenanceCalendar(windows=windows)
        self.silences_changed()

    def set_inhibit(self, rules: Sequence[InhibitRule], open_incidents: Iterable[Incident]) -> None:
        """Use these inhibit rules from now on (a reload), indexing the open incidents again."""
        self.inhibitor = Inhibitor(
            rules=rules, sources=((i.fingerprint, incident_labels(i)) for i in open_incidents)
        )
        self.silences_changed()

    def _active_at(self, now: float) -> tuple[list[Silence], list[MaintenanceWindow]]:
        if not self._from <= now < self._until:
            silences = [s for s in self.silences.list(now=now) if s.is_active(now)]
            windows = [w for w in self.calendar.windows if w.active(now)]
            changes = [self.silences.next_change(now), self.calendar.next_change(now)]
            self._active = (silences, windows)
            self._from = now
            self._until = min((c for c in changes if c is not None), default=math.inf)
        return self._active

    def decide(
        self, labels: Mapping[str, str], fingerprint: str, now: float
    ) -> MuteDecision | None:
        """Return why a hit with these labels is muted at `now`, or None: silences first."""
        silences, windows = self._active_at(now)
        best: Silence | None = None
        for silence in silences:
            if silence.matches(labels) and (best is None or silence.ends_at > best.ends_at):
                best = silence
        if best is not None:
            return best.mute_decision()
        for window in windows:
            if window.matches(labels):
                return window.mute_decision(now)
        if self.inhibitor.rules:
            hit = self.inhibitor.inhibited_by(labels, fingerprint)
            if hit is not None:
                return self.inhibitor.mute_decision(hit)
        return None

    def observe(self, changes: Sequence[IncidentChange]) -> None:
        """Track which open incidents may inhibit others."""
        if not self.inhibitor.rules:
            return
        for change in changes:
            if change.op in ("open", "reopen"):
                self.inhibitor.add_source(
                    change.incident.fingerprint, incident_labels(change.incident)
                )
            elif change.op == "resolve":
                self.inhibitor.remove_source(change.incident.fingerprint)


def mute_change(
    incident: Incident, decision: MuteDecision | None, time: float
) -> IncidentChange | None:
    """Record a new mute reason (or its end) on the incident; None when nothing changed."""
    reason = decision.reason if decision is not None else ""
    if incident.muted == reason:
        return None
    incident.muted = reason
    actor = f"{decision.kind}:{decision.name}" if decision is not None else "mute:ended"
    note = reason or "no longer muted: notifications resume"
    return IncidentChange("mute", incident, time, incident.count, actor, note=note)
