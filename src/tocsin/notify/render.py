"""What every channel renders from: a notice's template variables, its headline, the tocsin JSON.

Event data only ever fills template variables. A template that fails on odd data is replaced
by the channel's default, and the row says so in `template_error`: nothing is lost.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from jinja2 import ChainableUndefined, TemplateError

from tocsin.model import OPEN_STATES, Outgoing
from tocsin.notify.notice import Notice
from tocsin.records.views import iso_time
from tocsin.rules.templates import Sandbox, TemplateCompileError, TemplateRenderError

__all__ = [
    "HtmlTemplate",
    "TextTemplate",
    "capped",
    "firing",
    "headline",
    "is_firing",
    "one_line",
    "outgoing",
    "render_texts",
    "tocsin_json",
    "top_priority",
    "variables",
]

_SURROGATE = re.compile("[\ud800-\udfff]")  # what undecodable input bytes decode to
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WORDS = {"trigger": "FIRING", "acknowledge": "ACKNOWLEDGED", "resolve": "RESOLVED"}


class TextTemplate(Protocol):
    """A compiled template (rules.templates.Template or HtmlTemplate)."""

    source: str

    def render(self, variables: Mapping[str, Any]) -> str:
        """Render; a failure on the data raises TemplateRenderError."""
        ...


# The rules' sandbox with autoescape: `a.b` reads a mapping's item first, like the rules.
_HTML = Sandbox(autoescape=True, undefined=ChainableUndefined)


class HtmlTemplate:
    """A sandboxed template whose variables are HTML-escaped (email bodies)."""

    __slots__ = ("_jinja", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._jinja = _HTML.from_string(source)
        except TemplateError as exc:
            raise TemplateCompileError(str(exc)) from None

    def render(self, variables: Mapping[str, Any]) -> str:
        """Render; a failure on the data raises TemplateRenderError."""
        try:
            return str(self._jinja.render(variables))
        except Exception as exc:  # noqa: BLE001 - sandbox violation or bad data: caller falls back
            raise TemplateRenderError(f"template {self.source[:80]!r}: {exc}") from None


def is_firing(incident: Mapping[str, Any]) -> bool:
    """Whether an incident view is still open (not resolved or closed)."""
    return str(incident.get("state", "")) in OPEN_STATES


def firing(notice: Notice) -> list[dict[str, Any]]:
    """Return the notice's incidents that are still open."""
    return [i for i in notice.incidents if is_firing(i)]


def top_priority(incidents: Sequence[Mapping[str, Any]]) -> str:
    """Return the most urgent priority among them ("P1" before "P2"), or ""."""
    found = [str(i.get("priority") or "") for i in incidents]
    return min((p for p in found if p), default="")


def one_line(text: str, limit: int) -> str:
    """Return `text` as one line (whitespace runs become a space, controls go), cut to `limit`."""
    text = _CONTROL.sub("", " ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def capped(text: str, limit: int) -> str:
    """Return `text` cut to `limit` characters, marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def headline(notice: Notice) -> str:
    """Say what it is about in one line: "[FIRING:2] P1 db — Disk full on db1 (+1 more)"."""
    open_ones = firing(notice)
    shown = open_ones or list(notice.incidents)
    count = len(notice.incidents) if notice.action == "resolve" else len(open_ones)
    first: Mapping[str, Any] = shown[0] if shown else {}
    word = _WORDS.get(notice.action, notice.action.upper())
    parts = [f"[{word}:{count}]", top_priority(shown), str(first.get("service") or "")]
    text = " ".join(p for p in parts if p)
    title = str(first.get("title") or "")
    if title:
        text += f" — {title}"
    if len(notice.incidents) > 1:
        text += f" (+{len(notice.incidents) - 1} more)"
    return one_line(text, 250)


def variables(notice: Notice) -> dict[str, Any]:
    """Return what templates see: the notice's fields, its incidents and a ready headline."""
    incidents = list(notice.incidents)
    return {
        "receiver": notice.receiver,
        "action": notice.action,
        "status": notice.status,
        "reason": notice.reason,
        "group_key": notice.group_key,
        "key": notice.key,
        "time": iso_time(notice.time),
        "group_labels": notice.group_labels,
        "user": notice.user or {},
        "incidents": incidents,
        "firing": [i for i in incidents if is_firing(i)],
        "resolved": [i for i in incidents if not is_firing(i)],
        "summary": headline(notice),
    }


def render_texts(
    chosen: Mapping[str, TextTemplate],
    defaults: Mapping[str, TextTemplate],
    values: Mapping[str, Any],
) -> tuple[dict[str, str], str | None]:
    """Render the chosen templates, or all defaults when one fails (with the failure's text)."""
    try:
        return {name: t.render(values) for name, t in chosen.items()}, None
    except TemplateRenderError as exc:
        return {name: t.render(values) for name, t in defaults.items()}, str(exc)


def tocsin_json(notice: Notice, *, max_incidents: int = 0) -> dict[str, Any]:
    """Return tocsin's own JSON for a notice; past `max_incidents` (0: no limit) they are cut."""
    incidents = list(notice.incidents)
    shown = incidents[:max_incidents] if max_incidents else incidents
    return {
        "version": "1",
        "status": notice.status,
        "action": notice.action,
        "reason": notice.reason,
        "receiver": notice.receiver,
        "group_key": notice.group_key,
        "group_labels": notice.group_labels,
        "key": notice.key,
        "time": iso_time(notice.time),
        "user": notice.user,
        "truncated": len(incidents) - len(shown),
        "incidents": shown,
    }


def _valid(value: Any) -> Any:
    """Return `value` with every lone surrogate in its text replaced, so it encodes as UTF-8."""
    if isinstance(value, str):
        return value if value.isascii() else _SURROGATE.sub("\ufffd", value)
    if isinstance(value, Mapping):
        return {_valid(k): _valid(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_valid(v) for v in value]
    return value


def outgoing(channel: str, receiver: str, notice: Notice, body: Mapping[str, Any]) -> Outgoing:
    """Build the outbox row: every body carries the idempotency key and the incident ids."""
    row = {"key": notice.key, "incidents": notice.incident_ids, **body}
    return Outgoing(channel, f"notify:{receiver}", _valid(row))
