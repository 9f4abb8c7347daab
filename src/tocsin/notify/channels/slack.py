"""Slack incoming webhooks: one text message per notice; the URL is the secret.

Event data reaches templates with Slack's control characters (&, <, >) escaped, so a title
like `<!channel>` shows as text instead of paging a whole channel; the operator's own
template text may still use Slack's `<url|label>` links.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tocsin.model import Outgoing
from tocsin.notify.channels.base import Options, Report, Sender
from tocsin.notify.channels.http import HttpSender
from tocsin.notify.channels.options import (
    parse_secret,
    parse_template,
    parse_text,
    parse_timeout,
    parse_url,
)
from tocsin.notify.notice import Notice
from tocsin.notify.render import TextTemplate, capped, outgoing, render_texts, variables
from tocsin.rules.schema import check_keys, expect_map
from tocsin.rules.templates import compile_template
from tocsin.yamlsrc import Mark, MarkedMap, value_mark

__all__ = ["DEFAULT_TEXT", "SlackReceiver", "parse_slack", "slack_escape"]

_KEYS = ("url", "url_file", "channel", "username", "icon_emoji", "text", "timeout")
_MAX_TEXT = 40_000  # Slack cuts a message's text here

DEFAULT_TEXT = compile_template(
    """{{ summary }}
{%- for i in incidents[:20] %}
• #{{ i.id }} {{ i.priority }} {{ i.title | replace("\\n", " ") | truncate(200) }}
{%- if i.service %} — {{ i.service }}{% endif %}
{%- if i.labels.host %} on {{ i.labels.host }}{% endif %} ({{ i.state }})
{%- endfor %}
{%- if incidents | length > 20 %}
… and {{ incidents | length - 20 }} more
{%- endif %}"""
)


def slack_escape(value: Any) -> Any:
    """Return `value` with &, < and > escaped in all its text, as Slack's message format needs."""
    if isinstance(value, str):
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if isinstance(value, Mapping):
        return {k: slack_escape(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [slack_escape(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class SlackReceiver:
    """Posts to a Slack incoming webhook."""

    name: str
    url: str = field(repr=False)
    text: TextTemplate = DEFAULT_TEXT
    slack_channel: str = ""  # overrides the webhook's channel where Slack allows it
    username: str = ""
    icon_emoji: str = ""
    timeout: float = 10.0

    @property
    def channel(self) -> str:
        """Each Slack receiver has its own outbox channel."""
        return f"slack:{self.name}"

    def render(self, notice: Notice) -> Outgoing:
        """Build the message; a template failing on this data falls back to the default."""
        values = slack_escape(variables(notice))
        texts, error = render_texts({"text": self.text}, {"text": DEFAULT_TEXT}, values)
        document: dict[str, Any] = {"text": capped(texts["text"], _MAX_TEXT)}
        for key, value in (
            ("channel", self.slack_channel),
            ("username", self.username),
            ("icon_emoji", self.icon_emoji),
        ):
            if value:
                document[key] = value
        body: dict[str, Any] = {"json": document}
        if error is not None:
            body["template_error"] = error
        return outgoing(self.channel, self.name, notice, body)

    def sender(self, report: Report) -> Sender:
        """POST to the webhook; reasons name the receiver, never the URL (it is the secret)."""
        path = urllib.parse.urlsplit(self.url).path
        return HttpSender(
            url=self.url,
            shown=f"Slack webhook of receiver '{self.name}'",
            headers={},
            timeout=self.timeout,
            report=report,
            secrets=[self.url, path] if len(path) > 1 else [self.url],
        )


def _optional(data: MarkedMap, key: str, where: Mark, options: Options) -> str:
    return parse_text(data, key, where, options) if key in data else ""


def parse_slack(name: str, spec: Any, where: Mark, options: Options) -> SlackReceiver:
    """Parse a receiver's `slack:` section."""
    data = expect_map(spec, where, "slack", options.errors)
    check_keys(data, _KEYS, "slack option", options.errors)
    url = parse_secret(data, "url", where, options)
    if url is None:
        raise options.errors(where, "slack needs url or url_file (the incoming webhook's URL)")
    at = value_mark(data, "url_file" if "url_file" in data else "url", where)
    return SlackReceiver(
        name=name,
        url=parse_url(url, at, "the Slack webhook URL", options),
        text=parse_template(data, "text", where, options, DEFAULT_TEXT),
        slack_channel=_optional(data, "channel", where, options),
        username=_optional(data, "username", where, options),
        icon_emoji=_optional(data, "icon_emoji", where, options),
        timeout=parse_timeout(data, where, options),
    )
