"""Email over SMTP: a text and an HTML part, one connection per batch of rows.

The row keeps the rendered parts and headers; the message is assembled from them when sent,
with a Message-ID derived from the idempotency key so that a resend is recognisable.
Connection, TLS and login failures (including a refused login) are transient: the rows wait
until the server or the config is fixed. A 5xx answer to one message drops that message.
"""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from functools import partial
from pathlib import Path
from typing import Any

import aiosmtplib

from tocsin.model import Outgoing
from tocsin.notify.channels.base import (
    DeliveryError,
    Options,
    Report,
    Sender,
    redact,
    send_in_order,
)
from tocsin.notify.channels.options import (
    parse_html_template,
    parse_template,
    parse_text,
    parse_timeout,
    read_secret,
)
from tocsin.notify.notice import Notice
from tocsin.notify.render import (
    HtmlTemplate,
    TextTemplate,
    one_line,
    outgoing,
    render_texts,
    variables,
)
from tocsin.rules.schema import (
    check_keys,
    expect_bool,
    expect_items,
    expect_map,
    expect_str,
    parse_path,
)
from tocsin.rules.templates import compile_template
from tocsin.yamlsrc import Mark, MarkedMap, SourceError, key_mark, value_mark

__all__ = [
    "DEFAULT_HTML",
    "DEFAULT_SUBJECT",
    "DEFAULT_TEXT",
    "EmailReceiver",
    "SmtpConfig",
    "SmtpSender",
    "build_message",
    "message_id",
    "parse_email",
]

_KEYS = ("to", "from", "smtp", "subject", "text", "html")
_SMTP_KEYS = ("host", "port", "starttls", "tls", "username", "password_file", "timeout", "ca")
_MAX_SUBJECT = 250
_MSG_ID = re.compile(r"[A-Za-z0-9._+=-]{1,200}")  # safe as a Message-ID's left part as it is
_EXCERPT = 200

DEFAULT_SUBJECT = compile_template("{{ summary }}")
DEFAULT_TEXT = compile_template(
    """{{ summary }}
{%- if user.name %}

Paging {{ user.name }}.
{%- endif %}
{%- for i in incidents[:50] %}

#{{ i.id }} {{ i.title }}
  State: {{ i.state }}, priority {{ i.priority }}
{%- if i.service %}, service {{ i.service }}{% endif %}
  Seen {{ i.count }} times, first {{ i.first_seen }}, last {{ i.last_seen }}
{%- for name, value in (i.labels or {}) | dictsort %}
  {{ name }}: {{ value }}
{%- endfor %}
{%- if i.description %}

  {{ i.description | truncate(2000) | indent(2) }}
{%- endif %}
{%- if i.workaround %}

  Workaround: {{ i.workaround | truncate(2000) | indent(2) }}
{%- endif %}
{%- endfor %}
{%- if incidents | length > 50 %}

... and {{ incidents | length - 50 }} more
{%- endif %}

--
tocsin ({{ reason }}, {{ time }})
"""
)
DEFAULT_HTML = HtmlTemplate(
    """<!DOCTYPE html>
<html><body style="font-family: sans-serif">
<p><strong>{{ summary }}</strong></p>
{%- if user.name %}
<p>Paging {{ user.name }}.</p>
{%- endif %}
<table cellpadding="4" style="border-collapse: collapse">
<tr><th align="left">#</th><th align="left">Priority</th><th align="left">Incident</th>\
<th align="left">Service</th><th align="left">State</th><th align="left">Count</th></tr>
{%- for i in incidents[:50] %}
<tr><td>{{ i.id }}</td><td>{{ i.priority }}</td><td>{{ i.title }}
{%- if i.description %}<br><small>{{ i.description | truncate(500) }}</small>{% endif %}</td>\
<td>{{ i.service }}</td><td>{{ i.state }}</td><td>{{ i.count }}</td></tr>
{%- endfor %}
</table>
{%- if incidents | length > 50 %}
<p>... and {{ incidents | length - 50 }} more</p>
{%- endif %}
<p style="color: #888">tocsin ({{ reason }}, {{ time }})</p>
</body></html>
"""
)
_DEFAULTS: Mapping[str, TextTemplate] = {
    "subject": DEFAULT_SUBJECT,
    "text": DEFAULT_TEXT,
    "html": DEFAULT_HTML,
}


def _address(text: str) -> str | None:
    """Return the mailbox of an address ("a@b" or "Name <a@b>"), None if it is not one."""
    if not text.isascii() or any(c in text for c in "\r\n\0"):
        return None
    _, mailbox = email.utils.parseaddr(text)
    local, at, domain = mailbox.rpartition("@")
    if not (local and at and domain) or any(c.isspace() for c in mailbox):
        return None
    return mailbox


def message_id(key: str) -> str:
    """Return the Message-ID for an idempotency key: the key itself where that is safe."""
    left = key if _MSG_ID.fullmatch(key) else hashlib.sha256(key.encode()).hexdigest()[:40]
    return f"<{left}@tocsin>"


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where and how to submit mail; `tls` is implicit TLS (465), else STARTTLS if `starttls`."""

    host: str
    port: int = 587
    starttls: bool = True
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 10.0
    ca: Path | None = None  # trust this CA file instead of the system's


@dataclass(frozen=True, slots=True)
class EmailReceiver:
    """Mails notices to fixed addresses, or to the person paged when the notice names one."""

    name: str
    sender_address: str  # the From header ("a@b" or "Name <a@b>")
    smtp: SmtpConfig
    to: tuple[str, ...] = ()
    subject: TextTemplate = DEFAULT_SUBJECT
    text: TextTemplate = DEFAULT_TEXT
    html: TextTemplate = DEFAULT_HTML

    @property
    def channel(self) -> str:
        """Each email receiver has its own outbox channel."""
        return f"email:{self.name}"

    def recipients(self, notice: Notice) -> list[str]:
        """Return the person paged when they have a usable email, else the configured list."""
        wanted = (notice.user or {}).get("email")
        if isinstance(wanted, str) and _address(wanted) is not None:
            return [wanted]
        return list(self.to)

    def render(self, notice: Notice) -> Outgoing:
        """Render subject and both parts; a template failing on this data uses the defaults."""
        chosen = {"subject": self.subject, "text": self.text, "html": self.html}
        texts, error = render_texts(chosen, _DEFAULTS, variables(notice))
        body: dict[str, Any] = {
            "from": self.sender_address,
            "to": self.recipients(notice),
            "subject": one_line(texts["subject"], _MAX_SUBJECT),
            "date": email.utils.format_datetime(
                datetime.datetime.fromtimestamp(notice.time, datetime.UTC)
            ),
            "message_id": message_id(notice.key),
            "text": texts["text"],
            "html": texts["html"],
        }
        if error is not None:
            body["template_error"] = error
        return outgoing(self.channel, self.name, notice, body)

    def sender(self, report: Report) -> Sender:
        """Send over SMTP, one connection per batch."""
        return SmtpSender(self.smtp, self.sender_address, report)


def build_message(body: Mapping[str, Any]) -> EmailMessage:
    """Assemble the MIME message a row describes (multipart/alternative: text, then HTML)."""
    message = EmailMessage()
    message["From"] = str(body["from"])
    message["To"] = ", ".join(str(a) for a in body["to"])
    message["Subject"] = one_line(str(body["subject"]), _MAX_SUBJECT)
    message["Date"] = str(body["date"])
    message["Message-ID"] = str(body["message_id"])
    message["X-Tocsin-Key"] = one_line(str(body["key"]), 200)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: autoresponders stay quiet
    message.set_content(str(body["text"]))
    if body.get("html"):
        message.add_alternative(str(body["html"]), subtype="html")
    return message


class SmtpSender:
    """Submit one channel's rows over a connection opened for each batch."""

    def __init__(self, config: SmtpConfig, from_address: str, report: Report) -> None:
        self._config = config
        self._from = _address(from_address) or from_address
        self._report = report
        self._shown = f"{config.host}:{config.port}"
        self._secrets = [config.password] if config.password else []
        self._context: ssl.SSLContext | None = None

    async def send(self, messages: Sequence[Outgoing]) -> int:
        """Send them in order over one connection; stop at the first transient failure."""
        if not messages:
            return 0
        client = self._client()
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            reason = redact(f"cannot use {self._shown}: {_said(exc)}", self._secrets)
            self._report(messages[0], reason, False)
            raise DeliveryError(reason) from None
        try:
            delivered = await send_in_order(
                messages, partial(self._send_one, client), self._report, self._secrets
            )
        except BaseException:
            client.close()  # no polite QUIT when cancelled or failing: it could wait a timeout
            raise
        await self._quit(client)
        return delivered

    async def close(self) -> None:
        """Nothing stays open between batches."""

    def _client(self) -> aiosmtplib.SMTP:
        config = self._config
        if self._context is None:
            ca = str(config.ca) if config.ca is not None else None
            self._context = ssl.create_default_context(cafile=ca)
        return aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            username=config.username,
            password=config.password,
            use_tls=config.tls,
            start_tls=False if config.tls else config.starttls,
            timeout=config.timeout,
            tls_context=self._context,
        )

    async def _send_one(
        self, client: aiosmtplib.SMTP, message: Outgoing
    ) -> tuple[str, bool] | None:
        """Send one row; None when the server took it, else (reason, transient)."""
        body = message.body
        recipients = [str(a) for a in body.get("to") or []]
        if not recipients:
            return "no recipient: the receiver has no 'to' and the notice names nobody", False
        try:
            mail = build_message(body)
            refused, _ = await client.send_message(mail, sender=self._from, recipients=recipients)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            first = exc.recipients[0]
            reason = f"SMTP {first.code} from {self._shown} for {first.recipient}: {first.message}"
            return _cut(reason), any(400 <= c < 500 for c in codes)
        except aiosmtplib.SMTPResponseException as exc:
            reason = f"SMTP {exc.code} from {self._shown}: {exc.message}"
            return _cut(reason), not 500 <= exc.code < 600
        except (aiosmtplib.SMTPException, OSError) as exc:
            return f"lost {self._shown}: {_said(exc)}", True
        except (ValueError, TypeError, KeyError) as exc:
            return f"cannot build the message: {exc}", False
        if refused:
            who = ", ".join(f"{a} ({r.code})" for a, r in refused.items())
            reason = _cut(f"{self._shown} refused some recipients: {who}")
            self._report(message, redact(reason, self._secrets), True)
        return None

    async def _quit(self, client: aiosmtplib.SMTP) -> None:
        """Say goodbye politely if the connection still works, then close it."""
        try:
            if client.is_connected:
                await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            client.close()


def _said(exc: BaseException) -> str:
    """Return an exception's message, or its type when it has none."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"
    return str(exc) or type(exc).__name__


def _cut(reason: str) -> str:
    """Keep a reason to one line of reasonable length."""
    return one_line(reason, _EXCERPT + 60)


def _addresses(value: Any, where: Mark, what: str, options: Options) -> tuple[str, ...]:
    """Parse one address or a list of them."""
    found: list[str] = []
    try:
        items = expect_items(value, where, what)
    except SourceError as exc:
        raise options.errors(exc.mark, exc.message) from None
    for index, item in enumerate(items):
        at = value_mark(items, index, where)
        text = expect_str(item, at, what, options.errors).strip()
        if _address(text) is None:
            raise options.errors(
                at, f"{what}: {text!r} is not an email address (ASCII, like ops@example.com)"
            )
        found.append(text)
    return tuple(found)


def _smtp(spec: Any, where: Mark, options: Options) -> SmtpConfig:
    """Parse the `smtp:` mapping."""
    data = expect_map(spec, where, "smtp", options.errors)
    check_keys(data, _SMTP_KEYS, "smtp option", options.errors, required=("host",))

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    tls = expect_bool(data.get("tls", False), at("tls"), "tls", options.errors)
    if tls and "starttls" in data:
        raise options.errors(
            key_mark(data, "starttls", where),
            "give tls (implicit TLS, port 465) or starttls, not both",
        )
    starttls = expect_bool(data.get("starttls", True), at("starttls"), "starttls", options.errors)
    port = data.get("port", 465 if tls else 587)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise options.errors(at("port"), "port must be a whole number from 1 to 65535")
    username = parse_text(data, "username", where, options) if "username" in data else None
    password = None
    if "password_file" in data:
        if username is None:
            raise options.errors(
                key_mark(data, "password_file", where), "password_file needs a username"
            )
        password = read_secret(data, "password_file", where, options)
    ca = None
    if "ca" in data:
        ca = parse_path(options.base, data["ca"], at("ca"), "ca")
        if not ca.is_file():
            raise options.errors(at("ca"), f"ca: no such file {ca}")
    return SmtpConfig(
        host=parse_text(data, "host", where, options),
        port=port,
        starttls=starttls and not tls,
        tls=tls,
        username=username,
        password=password,
        timeout=parse_timeout(data, where, options),
        ca=ca,
    )


def parse_email(name: str, spec: Any, where: Mark, options: Options) -> EmailReceiver:
    """Parse a receiver's `email:` section."""
    data: MarkedMap = expect_map(spec, where, "email", options.errors)
    check_keys(data, _KEYS, "email option", options.errors, required=("from", "smtp"))
    from_at = value_mark(data, "from", where)
    sender_address = _addresses(data["from"], from_at, "from", options)
    if len(sender_address) != 1:
        raise options.errors(from_at, "from must be one address")
    return EmailReceiver(
        name=name,
        sender_address=sender_address[0],
        smtp=_smtp(data["smtp"], value_mark(data, "smtp", where), options),
        to=_addresses(data.get("to"), value_mark(data, "to", where), "to", options),
        subject=parse_template(data, "subject", where, options, DEFAULT_SUBJECT),
        text=parse_template(data, "text", where, options, DEFAULT_TEXT),
        html=parse_html_template(data, "html", where, options, DEFAULT_HTML),
    )
