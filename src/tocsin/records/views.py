"""The JSON form of incidents and timeline entries: one view for the API, CLI and notifications."""

from __future__ import annotations

import datetime
from typing import Any

from tocsin.model import Incident

__all__ = ["incident_json", "incident_labels", "iso_time", "notice_view", "route_labels"]


def iso_time(when: float | None) -> str | None:
    """Return epoch seconds as ISO 8601 UTC, None as None."""
    if when is None:
        return None
    return datetime.datetime.fromtimestamp(when, tz=datetime.UTC).isoformat()


def incident_json(incident: Incident) -> dict[str, Any]:
    """Return the public form of an incident (no timeline; that is fetched separately)."""
    escalation = incident.escalation
    return {
        "id": incident.id,
        "fingerprint": incident.fingerprint,
        "rule": incident.rule,
        "key": incident.key,
        "title": incident.title,
        "state": str(incident.state),
        "priority": incident.priority,
        "impact": incident.impact,
        "urgency": incident.urgency,
        "service": incident.service,
        "category": incident.category,
        "description": incident.description,
        "labels": incident.labels,
        "count": incident.count,
        "first_seen": iso_time(incident.first_seen),
        "last_seen": iso_time(incident.last_seen),
        "opened_at": iso_time(incident.opened_at),
        "acknowledged_at": iso_time(incident.acknowledged_at),
        "resolved_at": iso_time(incident.resolved_at),
        "closed_at": iso_time(incident.closed_at),
        "assignee": incident.assignee,
        "group": incident.group,
        "workaround": incident.workaround,
        "reopened": incident.reopened,
        "muted": incident.muted,
        "samples": incident.samples,
        "sla": list(incident.sla_fired),
        "escalation": None
        if escalation is None
        else {
            "policy": escalation.policy,
            "level": escalation.level + 1,  # people count levels from 1
            "next_at": iso_time(escalation.next_at),
            "rounds": escalation.rounds,
        },
    }


def notice_view(incident: Incident) -> dict[str, Any]:
    """Return the view notifications carry: the public one without the event samples, so a
    group of many incidents stays small (the samples are on the API's view)."""
    view = incident_json(incident)
    del view["samples"]
    return view


def incident_labels(incident: Incident) -> dict[str, str]:
    """What an open incident offers inhibition rules as a source."""
    return {
        "rule": incident.rule,
        "key": incident.key,
        "priority": incident.priority,
        "service": incident.service,
        "category": incident.category,
        **incident.labels,
    }


def route_labels(incident: Incident) -> dict[str, str]:
    """Return what route matchers and group_by see: the incident's labels, impact, urgency.

    Not its state: an acknowledged incident stays in the groups that paged about it (and
    their receivers hear "acknowledged"). impact and urgency come last, so a label of the
    same name cannot pose as them.
    """
    labels = incident_labels(incident)
    labels["impact"] = incident.impact
    labels["urgency"] = incident.urgency
    return labels
