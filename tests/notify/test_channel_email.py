"""Email receivers against a real aiosmtpd server: STARTTLS or TLS, AUTH, MIME, failures."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import ssl
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from channelkit import Reports, incident_view, make_notice, receivers_from

from mqttkit import Pki, make_pki
from tocsin.notify.channels.base import DeliveryError
from tocsin.notify.receivers import Receiver, make_senders


@dataclass
class Mailbox:
    """What the server saw, and how it answers."""

    port: int = 0
    connections: int = 0
    mechanisms: list[str] = field(default_factory=list)
    mails: list[tuple[str, list[str], EmailMessage, bool]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # recipient -> reply

    @property
    def messages(self) -> list[EmailMessage]:
        """The accepted messages, parsed."""
        return [m for _, _, m, _ in self.mails]


class Handler:
    """Accepts mail into a Mailbox, refusing recipients it lists."""

    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        reply = self.box.refuse.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        assert isinstance(envelope.content, bytes)
        wire = envelope.content.replace(b"\r\n", b"\n")  # SMTP's line ends, as Python writes them
        message = email.message_from_bytes(wire, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        secure = server.transport is not None and (
            server.transport.get_extra_info("ssl_object") is not None
        )
        self.box.mails.append((str(envelope.mail_from), list(envelope.rcpt_tos), message, secure))
        return "250 Message accepted"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Return a test CA and a server certificate for 127.0.0.1."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@contextlib.asynccontextmanager
async def smtp_server(
    pki: Pki, *, implicit_tls: bool = False, exclude: Iterable[str] = ()
) -> AsyncIterator[Mailbox]:
    """Run aiosmtpd on a free port: STARTTLS required (or implicit TLS), AUTH as tocsin/pw."""
    box = Mailbox()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    loop = asyncio.get_running_loop()

    def authenticator(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        box.mechanisms.append(mechanism)
        good = isinstance(data, LoginPassword) and (data.login, data.password) == (b"tocsin", b"pw")
        return AuthResult(success=good, handled=False)

    def protocol() -> SMTP:
        box.connections += 1
        return SMTP(
            Handler(box),
            hostname="mail.test",
            tls_context=None if implicit_tls else context,
            require_starttls=not implicit_tls,
            auth_required=True,
            auth_require_tls=not implicit_tls,
            auth_exclude_mechanism=list(exclude),
            authenticator=authenticator,
            loop=loop,
        )

    server = await loop.create_server(
        protocol, "127.0.0.1", 0, ssl=context if implicit_tls else None
    )
    box.port = server.sockets[0].getsockname()[1]
    try:
        yield box
    finally:
        server.close()
        await server.wait_closed()


def mail_yaml(pki: Pki, port: int, smtp: str = "", options: str = "") -> str:
    """Return receivers YAML with an email receiver 'mail' submitting to 127.0.0.1:port."""
    return f"""
receivers:
  - name: mail
    email:
      from: "tocsin <tocsin@example.com>"
{options}
      smtp:
        host: 127.0.0.1
        port: {port}
        username: tocsin
        password_file: smtp.pw
        ca: {pki.ca}
        timeout: 5s
{smtp}
"""


def receivers(tmp_path: Path, text: str, password: str = "pw") -> dict[str, Receiver]:
    """Write the password file and parse the YAML."""
    (tmp_path / "smtp.pw").write_text(password + "\n")
    return receivers_from(text, tmp_path)


async def send(found: dict[str, Receiver], rows: list[Any], reports: Reports) -> int:
    """Send rows over the receiver's sender and close it."""
    senders = make_senders(found, report=reports)
    try:
        return await senders.sends["email:mail"](rows)
    finally:
        await senders.close()


async def test_mail_over_starttls_and_auth_login(tmp_path: Path, pki: Pki) -> None:
    """Test a batch of two over one STARTTLS connection, AUTH LOGIN, headers and both parts."""
    async with smtp_server(pki, exclude=["PLAIN"]) as box:
        found = receivers(tmp_path, mail_yaml(pki, box.port, options="      to: ops@example.com"))
        rows = [
            found["mail"].render(make_notice(user={"name": "Alice", "email": "alice@example.com"})),
            found["mail"].render(make_notice()),
        ]
        assert await send(found, rows, Reports()) == 2
    assert box.connections == 1
    assert box.mechanisms == ["LOGIN"]
    (sender, to, message, secure), (_, to_team, _, _) = box.mails
    assert (sender, to, to_team, secure) == (
        "tocsin@example.com",
        ["alice@example.com"],
        ["ops@example.com"],
        True,
    )
    assert message["From"] == "tocsin <tocsin@example.com>"
    assert message["To"] == "alice@example.com"
    assert message["Subject"] == "[FIRING:1] P1 db — Disk full on db7 (+1 more)"
    assert message["Message-ID"] == "<n-42@tocsin>"
    assert message["X-Tocsin-Key"] == "n-42"
    assert message["Date"] == "Wed, 25 Nov 2026 00:00:00 +0000"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "multipart/alternative"
    text, html = (part.get_content() for part in message.iter_parts())
    assert text.startswith(
        "[FIRING:1] P1 db — Disk full on db7 (+1 more)\n\nPaging Alice.\n\n#7 Disk full on db7\n"
    )
    assert "  Workaround: rotate logs\n" in text
    assert "<td>7</td><td>P1</td><td>Disk full on db7<br><small>/var is at 100%</small>" in html
    assert rows[0].body["to"] == ["alice@example.com"]
    assert (rows[0].channel, rows[0].rule, rows[0].body["incidents"]) == (
        "email:mail",
        "notify:mail",
        [7, 9],
    )


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_implicit_tls_and_auth_plain(tmp_path: Path, pki: Pki) -> None:
    """Test `tls: true` (SMTPS) with AUTH PLAIN."""
    async with smtp_server(pki, implicit_tls=True) as box:
        found = receivers(
            tmp_path, mail_yaml(pki, box.port, "        tls: true", "      to: [a@example.com]")
        )
        assert await send(found, [found["mail"].render(make_notice())], Reports()) == 1
    assert box.mechanisms == ["PLAIN"]
    [(_, to, _, secure)] = box.mails
    assert (to, secure) == (["a@example.com"], True)


async def test_refused_login_is_transient(tmp_path: Path, pki: Pki) -> None:
    """Test that a wrong password keeps the rows (raise, reported as kept), never showing it."""
    reports = Reports()
    async with smtp_server(pki) as box:
        found = receivers(
            tmp_path, mail_yaml(pki, box.port, options="      to: a@example.com"), "wr0ngpw"
        )
        with pytest.raises(DeliveryError, match="535"):
            await send(found, [found["mail"].render(make_notice())], reports)
    assert box.mails == []
    [(_, reason, dropped)] = reports.got
    assert not dropped
    assert "wr0ngpw" not in reason


async def test_untrusted_certificate_is_transient(tmp_path: Path, pki: Pki) -> None:
    """Test that a server certificate the configured CA did not sign fails the batch."""
    async with smtp_server(pki) as box:
        text = mail_yaml(pki, box.port, options="      to: a@example.com").replace(
            str(pki.ca), str(pki.other_ca)
        )
        found = receivers(tmp_path, text)
        with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
            await send(found, [found["mail"].render(make_notice())], Reports())
    assert box.mails == []


async def test_refused_recipient_is_dropped_and_the_batch_goes_on(tmp_path: Path, pki: Pki) -> None:
    """Test that a 550 for a recipient drops that message only; a 451 keeps it for a retry."""
    reports = Reports()
    async with smtp_server(pki) as box:
        box.refuse = {
            "gone@example.com": "550 No such user",
            "busy@example.com": "451 Try later",
        }
        found = receivers(tmp_path, mail_yaml(pki, box.port))
        rows = [
            found["mail"].render(make_notice(user={"email": who}))
            for who in ("gone@example.com", "ok@example.com", "busy@example.com", "x@example.com")
        ]
        assert await send(found, rows, reports) == 2
        with pytest.raises(DeliveryError, match="451"):
            await send(found, rows[2:], reports)
    assert [to for _, to, _, _ in box.mails] == [["ok@example.com"]]
    assert [dropped for _, _, dropped in reports.got] == [True, False, False]
    assert reports.got[0][1].startswith(
        f"SMTP 550 from 127.0.0.1:{box.port} for gone@example.com: No such user"
    )


async def test_no_recipient_is_dropped(tmp_path: Path, pki: Pki) -> None:
    """Test that a notice with nobody to mail is dropped with a reason, without connecting twice."""
    reports = Reports()
    async with smtp_server(pki) as box:
        found = receivers(tmp_path, mail_yaml(pki, box.port))
        row = found["mail"].render(make_notice(user={"name": "Bob", "email": "not an address"}))
        assert await send(found, [row], reports) == 1
    assert box.mails == []
    assert reports.got == [([7, 9], reports.got[0][1], True)]
    assert reports.got[0][1].startswith("no recipient")


def test_a_header_breaking_user_email_is_not_used(tmp_path: Path, pki: Pki) -> None:
    """Test that a paged person's email with a line break falls back to the configured list."""
    found = receivers(tmp_path, mail_yaml(pki, 25, options="      to: ops@example.com"))
    notice = make_notice(user={"email": "a@example.com\r\nBcc: evil@example.com"})
    assert found["mail"].render(notice).body["to"] == ["ops@example.com"]


async def test_server_down_is_transient(tmp_path: Path, pki: Pki) -> None:
    """Test that nobody listening raises, reported as kept."""
    async with smtp_server(pki) as box:
        port = box.port
    reports = Reports()
    found = receivers(tmp_path, mail_yaml(pki, port, options="      to: a@example.com"))
    with pytest.raises(DeliveryError, match=f"cannot use 127.0.0.1:{port}"):
        await send(found, [found["mail"].render(make_notice())], reports)
    assert [dropped for _, _, dropped in reports.got] == [False]


async def test_hostile_data_cannot_inject_headers_or_markup(tmp_path: Path, pki: Pki) -> None:
    """Test newlines, template syntax, <script> and a 1 MB description in the incident."""
    title = "{{ 7*7 }} <script>x</script>\r\nBcc: evil@example.com\nX-Evil: 1"
    view = incident_view(1, title, description="A" * 1_000_000)
    async with smtp_server(pki) as box:
        found = receivers(
            tmp_path,
            mail_yaml(
                pki,
                box.port,
                options="      to: a@example.com\n"
                '      subject: "{{ incidents[0].title }}"\n'
                '      html: "<h1>{{ incidents[0].title }}</h1>"',
            ),
        )
        row = found["mail"].render(make_notice(view))
        assert await send(found, [row], Reports()) == 1
    [(_, to, message, _)] = box.mails
    assert to == ["a@example.com"]
    assert message["Subject"] == "{{ 7*7 }} <script>x</script> Bcc: evil@example.com X-Evil: 1"
    assert message["Bcc"] is None
    assert message["X-Evil"] is None
    text, html = (part.get_content() for part in message.iter_parts())
    assert "<h1>{{ 7*7 }} &lt;script&gt;x&lt;/script&gt;" in html
    assert "<script>" not in html
    assert 1990 <= text.count("A") <= 2000  # the default text cuts a description
    assert len(message.as_bytes()) < 20_000


async def test_failing_template_falls_back_to_the_defaults(tmp_path: Path) -> None:
    """Test that a subject template failing on the data renders all the default parts."""
    (tmp_path / "smtp.pw").write_text("pw")
    found = receivers_from(
        """
receivers:
  - name: mail
    email:
      from: tocsin@example.com
      to: a@example.com
      smtp: {host: 127.0.0.1}
      subject: "{{ incidents[0].count + incidents[0].title }}"
      text: "custom"
""",
        tmp_path,
    )
    body = found["mail"].render(make_notice()).body
    assert body["subject"] == "[FIRING:1] P1 db — Disk full on db7 (+1 more)"
    assert body["text"].startswith("[FIRING:1]")
    assert body["template_error"]
