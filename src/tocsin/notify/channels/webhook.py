"""Generic webhooks: tocsin's own JSON, or exactly what Alertmanager's webhook receiver posts."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tocsin.model import Outgoing
from tocsin.notify.channels.base import Options, Report, Sender
from tocsin.notify.channels.http import HttpSender
from tocsin.notify.channels.options import (
    parse_string_map,
    parse_timeout,
    parse_url,
    read_secret,
    shown_url,
)
from tocsin.notify.notice import Notice
from tocsin.notify.render import is_firing, outgoing, tocsin_json
from tocsin.rules.schema import check_keys, expect_int, expect_map
from tocsin.yamlsrc import Mark, key_mark, value_mark

__all__ = ["FORMATS", "WebhookReceiver", "alertmanager_json", "parse_webhook"]

FORMATS = ("tocsin", "alertmanager")
_KEYS = ("url", "format", "headers", "bearer_token_file", "timeout", "max_alerts", "external_url")
_OURS = frozenset({"content-type", "content-length", "idempotency-key", "host"})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110)
_NEVER = "0001-01-01T00:00:00Z"  # Go's zero time: what Alertmanager sends as a firing alert's end


@dataclass(frozen=True, slots=True)
class WebhookReceiver:
    """POSTs JSON to a URL, with static headers and an optional bearer token."""

    name: str
    url: str = field(repr=False)  # may hold a token in its path or query
    format: str = "tocsin"
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout: float = 10.0
    max_alerts: int = 0  # 0: no limit
    external_url: str = ""

    @property
    def channel(self) -> str:
        """Each webhook receiver has its own outbox channel."""
        return f"webhook:{self.name}"

    def render(self, notice: Notice) -> Outgoing:
        """Build the document to POST."""
        if self.format == "alertmanager":
            document = alertmanager_json(
                notice, max_alerts=self.max_alerts, external_url=self.external_url
            )
        else:
            document = tocsin_json(notice, max_incidents=self.max_alerts)
        return outgoing(self.channel, self.name, notice, {"json": document})

    def sender(self, report: Report) -> Sender:
        """POST with the configured headers; the token and URL never show in reasons."""
        shown = shown_url(self.url)
        secrets = [v for k, v in self.headers.items() if k.lower() == "authorization"]
        parts = urllib.parse.urlsplit(self.url)
        secrets += [self.url, parts.query, parts.password or ""] if self.url != shown else []
        return HttpSender(
            url=self.url,
            shown=shown,
            headers=self.headers,
            timeout=self.timeout,
            report=report,
            secrets=secrets,
        )


def _rfc3339(value: Any) -> str:
    """Return a view's ISO time as Alertmanager writes it (Z for UTC); empty when missing."""
    text = str(value or "")
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def _alert_labels(incident: Mapping[str, Any]) -> dict[str, str]:
    """Return an incident's labels as Alertmanager's: its own, plus rule, priority and the rest."""
    rule = str(incident.get("rule") or "")
    labels = {"alertname": rule, "rule": rule}
    for name in ("key", "priority", "service", "category"):
        labels[name] = str(incident.get(name) or "")
    own = incident.get("labels")
    if isinstance(own, Mapping):
        labels.update({str(k): str(v) for k, v in own.items()})
    return {k: v for k, v in labels.items() if v}  # Alertmanager drops empty labels too


def _alert_annotations(incident: Mapping[str, Any]) -> dict[str, str]:
    """Return the texts people read: title (as `summary`), description, workaround, id."""
    annotations = {
        "summary": str(incident.get("title") or ""),
        "description": str(incident.get("description") or ""),
        "workaround": str(incident.get("workaround") or ""),
        "incident": str(incident.get("id", "")),
    }
    return {k: v for k, v in annotations.items() if v}


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    """Return the pairs every mapping has."""
    if not maps:
        return {}
    shared = dict(maps[0])
    for other in maps[1:]:
        shared = {k: v for k, v in shared.items() if other.get(k) == v}
    return shared


def _alert(
    incident: Mapping[str, Any], labels: dict[str, str], notes: dict[str, str]
) -> dict[str, Any]:
    """Return one entry of `alerts`."""
    firing = is_firing(incident)
    ended = incident.get("resolved_at") or incident.get("closed_at")
    return {
        "status": "firing" if firing else "resolved",
        "labels": labels,
        "annotations": notes,
        "startsAt": _rfc3339(incident.get("opened_at") or incident.get("first_seen")),
        "endsAt": _NEVER if firing or not ended else _rfc3339(ended),
        "generatorURL": "",
        "fingerprint": str(incident.get("fingerprint") or ""),
    }


def alertmanager_json(
    notice: Notice, *, max_alerts: int = 0, external_url: str = ""
) -> dict[str, Any]:
    """Return the Alertmanager webhook (version 4) payload for a notice; common parts use all."""
    labels = [_alert_labels(i) for i in notice.incidents]
    notes = [_alert_annotations(i) for i in notice.incidents]
    alerts = [_alert(i, lab, n) for i, lab, n in zip(notice.incidents, labels, notes, strict=True)]
    shown = alerts[:max_alerts] if max_alerts else alerts
    return {
        "version": "4",
        "groupKey": notice.group_key,
        "truncatedAlerts": len(alerts) - len(shown),
        "status": notice.status,
        "receiver": notice.receiver,
        "groupLabels": dict(notice.group_labels),
        "commonLabels": _common(labels),
        "commonAnnotations": _common(notes),
        "externalURL": external_url,
        "alerts": shown,
    }


def parse_webhook(name: str, spec: Any, where: Mark, options: Options) -> WebhookReceiver:
    """Parse a receiver's `webhook:` section."""
    data = expect_map(spec, where, "webhook", options.errors)
    check_keys(data, _KEYS, "webhook option", options.errors, required=("url",))

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    fmt = data.get("format", "tocsin")
    if fmt not in FORMATS:
        raise options.errors(at("format"), f"format must be one of {', '.join(FORMATS)}")
    headers = parse_string_map(data.get("headers"), at("headers"), "headers", options)
    for header, value in headers.items():
        shown = key_mark(data["headers"], header, at("headers"))
        if not _TOKEN.fullmatch(header):
            raise options.errors(shown, f"header name {header!r} is not a valid HTTP header name")
        if header.lower() in _OURS:
            raise options.errors(shown, f"header {header} is set by tocsin")
        if any(c in value for c in "\r\n\0"):
            raise options.errors(shown, f"header {header} must be one line")
    if "bearer_token_file" in data:
        if any(h.lower() == "authorization" for h in headers):
            raise options.errors(
                key_mark(data, "bearer_token_file", where),
                "give an Authorization header or bearer_token_file, not both",
            )
        headers["Authorization"] = (
            f"Bearer {read_secret(data, 'bearer_token_file', where, options)}"
        )
    external_url = ""
    if "external_url" in data:
        if fmt != "alertmanager":
            raise options.errors(
                key_mark(data, "external_url", where), "external_url needs format: alertmanager"
            )
        external_url = parse_url(data["external_url"], at("external_url"), "external_url", options)
    return WebhookReceiver(
        name=name,
        url=parse_url(data["url"], at("url"), "url", options),
        format=str(fmt),
        headers=headers,
        timeout=parse_timeout(data, where, options),
        max_alerts=expect_int(
            data.get("max_alerts", 0), at("max_alerts"), "max_alerts", options.errors
        ),
        external_url=external_url,
    )
