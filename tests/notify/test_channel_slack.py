"""Slack receivers against a real aiohttp server: the message, escaping, fallbacks, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from channelkit import Reports, http_server, incident_view, make_notice, receivers_from

from tocsin.model import IncidentState
from tocsin.notify.channels.base import DeliveryError
from tocsin.notify.receivers import make_senders

SECRET_PATH = "/services/T000/B000/XXXXSECRET"


def slack(url_file: str, options: str = "") -> str:
    """Return receivers YAML with one Slack receiver 'chat' whose URL is in a file."""
    return f"""
receivers:
  - name: chat
    slack:
      url_file: {url_file}
{options}
"""


async def test_default_message_is_posted_exactly(tmp_path: Path) -> None:
    """Test that the default text, channel, username and icon are what Slack receives."""
    async with http_server() as server:
        (tmp_path / "slack.url").write_text(f"{server.url}{SECRET_PATH}\n")
        receivers = receivers_from(
            slack(
                "slack.url",
                '      channel: "#ops"\n      username: tocsin\n      icon_emoji: ":fire:"',
            ),
            tmp_path,
        )
        row = receivers["chat"].render(make_notice())
        senders = make_senders(receivers, report=Reports())
        try:
            assert await senders.sends["slack:chat"]([row]) == 1
        finally:
            await senders.close()
    assert (row.channel, row.rule, row.body["key"], row.body["incidents"]) == (
        "slack:chat",
        "notify:chat",
        "n-42",
        [7, 9],
    )
    [seen] = server.seen
    assert seen.path == SECRET_PATH
    assert seen.headers["Idempotency-Key"] == "n-42"
    assert seen.body == {
        "text": "[FIRING:1] P1 db — Disk full on db7 (+1 more)\n"
        "• #7 P1 Disk full on db7 — db on db7 (new)\n"
        "• #9 P2 Disk full on db9 — db on db9 (resolved)",
        "channel": "#ops",
        "username": "tocsin",
        "icon_emoji": ":fire:",
    }


def test_resolve_headline_counts_all(tmp_path: Path) -> None:
    """Test that a resolve notice says RESOLVED with the number of incidents in it."""
    (tmp_path / "u").write_text("https://hooks.slack.example/x")
    receivers = receivers_from(slack("u"), tmp_path)
    views = [incident_view(n, f"t{n}", state=IncidentState.RESOLVED, priority="P3") for n in (1, 2)]
    row = receivers["chat"].render(make_notice(*views, action="resolve"))
    assert row.body["json"]["text"].startswith("[RESOLVED:2] P3 db — t1 (+1 more)\n")


def test_event_data_cannot_mention_or_template(tmp_path: Path) -> None:
    """Test that <!channel>, & and template syntax in data are escaped text, not Slack markup."""
    (tmp_path / "u").write_text("https://hooks.slack.example/x")
    receivers = receivers_from(
        slack("u", '      text: "<https://runbook.example|runbook> {{ incidents[0].title }}"'),
        tmp_path,
    )
    row = receivers["chat"].render(make_notice(incident_view(1, "<!channel> a&b {{ 7*7 }}")))
    assert row.body["json"]["text"] == (
        "<https://runbook.example|runbook> &lt;!channel&gt; a&amp;b {{ 7*7 }}"
    )


def test_failing_template_falls_back_to_the_default(tmp_path: Path) -> None:
    """Test that a template failing on this data renders the default text and says why."""
    (tmp_path / "u").write_text("https://hooks.slack.example/x")
    receivers = receivers_from(
        slack("u", '      text: "{{ incidents[0].count + incidents[0].title }}"'), tmp_path
    )
    row = receivers["chat"].render(make_notice())
    assert row.body["json"]["text"].startswith("[FIRING:1] P1 db — Disk full on db7")
    assert "unsupported operand" in row.body["template_error"]


def test_huge_and_many_incidents_stay_within_slack_limits(tmp_path: Path) -> None:
    """Test that a 1 MB title and 30 incidents give a short text that lists 20 and counts the rest."""
    (tmp_path / "u").write_text("https://hooks.slack.example/x")
    receivers = receivers_from(slack("u"), tmp_path)
    views = [incident_view(n, "x" * 1_000_000 if n == 1 else f"t{n}") for n in range(1, 31)]
    text = receivers["chat"].render(make_notice(*views)).body["json"]["text"]
    lines = text.split("\n")
    assert len(lines) == 22
    assert lines[-1] == "… and 10 more"
    assert len(text) < 5000


async def test_failure_reasons_never_show_the_url(tmp_path: Path) -> None:
    """Test that a 404 is dropped and its reason names the receiver, not the secret URL."""
    reports = Reports()
    async with http_server(404, 500, 500) as server:
        (tmp_path / "u").write_text(f"{server.url}{SECRET_PATH}")
        receivers = receivers_from(slack("u"), tmp_path)
        senders = make_senders(receivers, report=reports)
        rows = [receivers["chat"].render(make_notice()) for _ in range(2)]
        try:
            assert await senders.sends["slack:chat"](rows) == 1  # the 404 is done with
            with pytest.raises(DeliveryError):
                await senders.sends["slack:chat"](rows[1:])  # the 500 again, now first
        finally:
            await senders.close()
    assert [dropped for _, _, dropped in reports.got] == [True, False, False]
    for _, reason, _ in reports.got:
        assert "SECRET" not in reason
        assert ": status 4" in reason or ": status 5" in reason
        assert "***" in reason  # the server echoed the path
        assert reason.startswith("HTTP 4") or reason.startswith("HTTP 5")
        assert "Slack webhook of receiver 'chat'" in reason
