"""PagerDuty Events API v2: trigger, acknowledge and resolve one alert per group (its dedup key).

The routing key is added when sending, so the outbox never stores it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tocsin.model import Outgoing
from tocsin.notify.channels.base import Options, Report, Sender
from tocsin.notify.channels.http import HttpSender
from tocsin.notify.channels.options import (
    parse_secret,
    parse_string_map,
    parse_template,
    parse_timeout,
    parse_url,
    shown_url,
)
from tocsin.notify.notice import Notice
from tocsin.notify.render import (
    TextTemplate,
    capped,
    firing,
    one_line,
    outgoing,
    render_texts,
    top_priority,
    variables,
)
from tocsin.records.views import iso_time
from tocsin.rules.schema import check_keys, expect_map
from tocsin.rules.templates import compile_template
from tocsin.yamlsrc import Mark, value_mark

__all__ = [
    "DEFAULT_SEVERITY",
    "DEFAULT_SUMMARY",
    "EVENTS_URL",
    "SEVERITIES",
    "PagerDutyReceiver",
    "dedup_key",
    "parse_pagerduty",
]

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITIES = ("critical", "error", "warning", "info")
DEFAULT_SEVERITY: Mapping[str, str] = {
    "P1": "critical",
    "P2": "error",
    "P3": "warning",
    "P4": "info",
    "P5": "info",
}
DEFAULT_SUMMARY = compile_template("{{ summary }}")
_KEYS = ("routing_key", "routing_key_file", "url", "severity", "summary", "timeout")
_MAX_SUMMARY = 1024  # PagerDuty's limit
_MAX_DEDUP_KEY = 255  # PagerDuty's limit
_MAX_DETAILS = 50  # incidents listed in custom_details
_MAX_DESCRIPTION = 1000


def dedup_key(group_key: str) -> str:
    """Return the group key, or a digest of it when it is too long for PagerDuty."""
    if len(group_key) <= _MAX_DEDUP_KEY:
        return group_key
    return "tocsin-" + hashlib.sha256(group_key.encode("utf-8", "replace")).hexdigest()


def _brief(incident: Mapping[str, Any]) -> dict[str, Any]:
    """Return what custom_details shows of an incident (long text cut: events are bounded)."""
    return {
        "id": incident.get("id"),
        "title": str(incident.get("title") or ""),
        "state": incident.get("state"),
        "priority": incident.get("priority"),
        "service": incident.get("service"),
        "labels": incident.get("labels") or {},
        "count": incident.get("count"),
        "first_seen": incident.get("first_seen"),
        "description": capped(str(incident.get("description") or ""), _MAX_DESCRIPTION),
    }


@dataclass(frozen=True, slots=True)
class PagerDutyReceiver:
    """Sends Events API v2 events to one PagerDuty service (its integration's routing key)."""

    name: str
    routing_key: str = field(repr=False)
    url: str = EVENTS_URL
    severity: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SEVERITY))
    summary: TextTemplate = DEFAULT_SUMMARY
    timeout: float = 10.0

    @property
    def channel(self) -> str:
        """Each PagerDuty receiver has its own outbox channel."""
        return f"pagerduty:{self.name}"

    def render(self, notice: Notice) -> Outgoing:
        """Build the event; only a trigger carries a payload."""
        document: dict[str, Any] = {
            "event_action": notice.action,
            "dedup_key": dedup_key(notice.group_key),
        }
        body: dict[str, Any] = {"json": document}
        if notice.action == "trigger":
            texts, error = render_texts(
                {"summary": self.summary}, {"summary": DEFAULT_SUMMARY}, variables(notice)
            )
            document["payload"] = self._payload(notice, one_line(texts["summary"], _MAX_SUMMARY))
            if error is not None:
                body["template_error"] = error
        return outgoing(self.channel, self.name, notice, body)

    def _payload(self, notice: Notice, summary: str) -> dict[str, Any]:
        """Return a trigger's payload, described by its first (most urgent) open incident."""
        shown = firing(notice) or list(notice.incidents)
        first: Mapping[str, Any] = shown[0] if shown else {}
        labels = first.get("labels")
        host = labels.get("host") if isinstance(labels, Mapping) else None
        priority = top_priority(shown)
        payload: dict[str, Any] = {
            "summary": summary or "tocsin notification",
            "source": str(host or first.get("service") or "tocsin"),
            "severity": self.severity.get(priority, "error"),
            "timestamp": iso_time(notice.time),
        }
        for key, value in (
            ("component", first.get("service")),
            ("group", first.get("group")),
            ("class", first.get("category")),
        ):
            if value:
                payload[key] = str(value)
        payload["custom_details"] = {
            "reason": notice.reason,
            "group_labels": dict(notice.group_labels),
            "incidents": [_brief(i) for i in notice.incidents[:_MAX_DETAILS]],
            "more_incidents": max(0, len(notice.incidents) - _MAX_DETAILS),
        }
        return payload

    def sender(self, report: Report) -> Sender:
        """POST events, adding the routing key; it never shows in reasons."""
        key = self.routing_key
        return HttpSender(
            url=self.url,
            shown=shown_url(self.url),
            headers={},
            timeout=self.timeout,
            report=report,
            secrets=[key],
            prepare=lambda document: {"routing_key": key, **document},
        )


def parse_pagerduty(name: str, spec: Any, where: Mark, options: Options) -> PagerDutyReceiver:
    """Parse a receiver's `pagerduty:` section."""
    data = expect_map(spec, where, "pagerduty", options.errors)
    check_keys(data, _KEYS, "pagerduty option", options.errors)
    routing_key = parse_secret(data, "routing_key", where, options)
    if routing_key is None:
        raise options.errors(
            where, "pagerduty needs routing_key_file (or routing_key): the integration key"
        )
    severity = dict(DEFAULT_SEVERITY)
    if "severity" in data:
        at = value_mark(data, "severity", where)
        given = parse_string_map(data["severity"], at, "severity", options)
        for priority, level in given.items():
            if level not in SEVERITIES:
                raise options.errors(
                    value_mark(data["severity"], priority, at),
                    f"severity of {priority} must be one of {', '.join(SEVERITIES)}",
                )
        severity.update(given)
    url = EVENTS_URL
    if "url" in data:
        url = parse_url(data["url"], value_mark(data, "url", where), "url", options)
    return PagerDutyReceiver(
        name=name,
        routing_key=routing_key,
        url=url,
        severity=severity,
        summary=parse_template(data, "summary", where, options, DEFAULT_SUMMARY),
        timeout=parse_timeout(data, where, options),
    )
