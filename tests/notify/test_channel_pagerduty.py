"""PagerDuty receivers against a real aiohttp server: Events API v2 bodies and failures."""

from __future__ import annotations

from pathlib import Path

import pytest
from channelkit import Reports, http_server, incident_view, make_notice, receivers_from

from tocsin.notify.channels.base import DeliveryError
from tocsin.notify.receivers import make_senders

KEY = "R0UT1NGKEY0123456789abcdefabcdef"


def pagerduty(url: str, options: str = "") -> str:
    """Return receivers YAML with one PagerDuty receiver 'pd', its key in the file 'pd.key'."""
    return f"""
receivers:
  - name: pd
    pagerduty:
      routing_key_file: pd.key
      url: "{url}"
{options}
"""


async def test_trigger_is_posted_exactly(tmp_path: Path) -> None:
    """Test the trigger event: routing key added when sending, payload from the open incident."""
    (tmp_path / "pd.key").write_text(KEY + "\n")
    async with http_server(202) as server:
        receivers = receivers_from(pagerduty(f"{server.url}/v2/enqueue"), tmp_path)
        row = receivers["pd"].render(make_notice())
        senders = make_senders(receivers, report=Reports())
        try:
            assert await senders.sends["pagerduty:pd"]([row]) == 1
        finally:
            await senders.close()
    assert KEY not in str(row.body)  # the store never holds the routing key
    assert (row.channel, row.rule, row.body["key"], row.body["incidents"]) == (
        "pagerduty:pd",
        "notify:pd",
        "n-42",
        [7, 9],
    )
    [seen] = server.seen
    assert seen.headers["Idempotency-Key"] == "n-42"
    assert seen.body == {
        "routing_key": KEY,
        "event_action": "trigger",
        "dedup_key": '{}:{service="db"}',
        "payload": {
            "summary": "[FIRING:1] P1 db — Disk full on db7 (+1 more)",
            "source": "db7",
            "severity": "critical",
            "timestamp": "2026-11-25T00:00:00+00:00",
            "component": "db",
            "class": "storage",
            "custom_details": {
                "reason": "new",
                "group_labels": {"service": "db"},
                "incidents": [
                    {
                        "id": 7,
                        "title": "Disk full on db7",
                        "state": "new",
                        "priority": "P1",
                        "service": "db",
                        "labels": {"host": "db7"},
                        "count": 3,
                        "first_seen": "2026-11-24T23:50:00+00:00",
                        "description": "/var is at 100%",
                    },
                    {
                        "id": 9,
                        "title": "Disk full on db9",
                        "state": "resolved",
                        "priority": "P2",
                        "service": "db",
                        "labels": {"host": "db9"},
                        "count": 3,
                        "first_seen": "2026-11-24T23:50:00+00:00",
                        "description": "",
                    },
                ],
                "more_incidents": 0,
            },
        },
    }


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
async def test_acknowledge_and_resolve_carry_no_payload(tmp_path: Path, action: str) -> None:
    """Test that acknowledge and resolve send only the key, the action and the dedup key."""
    (tmp_path / "pd.key").write_text(KEY)
    async with http_server(202) as server:
        receivers = receivers_from(pagerduty(server.url), tmp_path)
        senders = make_senders(receivers, report=Reports())
        try:
            await senders.sends["pagerduty:pd"](
                [receivers["pd"].render(make_notice(action=action))]
            )
        finally:
            await senders.close()
    assert server.seen[0].body == {
        "routing_key": KEY,
        "event_action": action,
        "dedup_key": '{}:{service="db"}',
    }


def test_severity_mapping_and_limits(tmp_path: Path) -> None:
    """Test a configured severity, a long dedup key digested, and a summary cut to 1024."""
    (tmp_path / "pd.key").write_text(KEY)
    receivers = receivers_from(
        pagerduty(
            "https://events.example/v2/enqueue",
            '      severity: {P3: critical}\n      summary: "{{ incidents[0].description }}"',
        ),
        tmp_path,
    )
    view = incident_view(1, "t", priority="P3", description="line\n" * 300_000)
    body = receivers["pd"].render(make_notice(view, group_key="g" * 300)).body["json"]
    assert body["payload"]["severity"] == "critical"
    assert len(body["dedup_key"]) <= 255
    assert body["dedup_key"].startswith("tocsin-")
    summary = body["payload"]["summary"]
    assert len(summary) == 1024
    assert "\n" not in summary
    details = body["payload"]["custom_details"]["incidents"][0]
    assert len(details["description"]) == 1000


async def test_rate_limit_is_kept_and_bad_event_dropped_without_showing_the_key(
    tmp_path: Path,
) -> None:
    """Test 429 (kept, retried) and 400 (dropped); the echoed routing key is redacted."""
    (tmp_path / "pd.key").write_text(KEY)
    reports = Reports()
    async with http_server(429, 400) as server:
        receivers = receivers_from(pagerduty(server.url), tmp_path)
        senders = make_senders(receivers, report=reports)
        row = receivers["pd"].render(make_notice())
        try:
            with pytest.raises(DeliveryError) as failed:
                await senders.sends["pagerduty:pd"]([row])
            assert await senders.sends["pagerduty:pd"]([row]) == 1
        finally:
            await senders.close()
    assert [dropped for _, _, dropped in reports.got] == [False, True]
    assert KEY not in failed.value.reason
    for _, reason, _ in reports.got:
        assert KEY not in reason
        assert '"routing_key": "***"' in reason
