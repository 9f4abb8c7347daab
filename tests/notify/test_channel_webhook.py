"""Webhook receivers against a real aiohttp server: exact bodies, headers, failures."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from channelkit import (
    HANG,
    Reports,
    firing_view,
    http_server,
    incident_view,
    make_notice,
    receivers_from,
    resolved_view,
)

from tocsin.notify.channels.base import DeliveryError
from tocsin.notify.channels.webhook import alertmanager_json
from tocsin.notify.receivers import make_senders
from tocsin.outbox import OutboxSender
from tocsin.store.base import CommitBatch
from tocsin.store.sqlite import SqliteStore
from tocsin.store.writer import StoreWriter


def hook(tmp_path: Path, url: str, options: str = "") -> str:
    """Return receivers YAML with one webhook receiver 'hook'."""
    return f"""
receivers:
  - name: hook
    webhook:
      url: "{url}"
{options}
"""


async def test_tocsin_body_is_posted_exactly_with_idempotency_key(tmp_path: Path) -> None:
    """Test that the tocsin format posts the notice's JSON, its key in a header and the body."""
    (tmp_path / "token").write_text("s3cret\n")
    async with http_server() as server:
        receivers = receivers_from(
            hook(
                tmp_path,
                f"{server.url}/hook",
                "      headers: {X-Team: ops}\n      bearer_token_file: token",
            ),
            tmp_path,
        )
        row = receivers["hook"].render(make_notice(user={"name": "Alice"}))
        senders = make_senders(receivers, report=Reports())
        try:
            assert await senders.sends["webhook:hook"]([row]) == 1
        finally:
            await senders.close()
    assert (row.channel, row.rule) == ("webhook:hook", "notify:hook")
    assert row.body["key"] == "n-42"
    assert row.body["incidents"] == [7, 9]
    [seen] = server.seen
    assert seen.path == "/hook"
    assert seen.headers["Idempotency-Key"] == "n-42"
    assert seen.headers["Authorization"] == "Bearer s3cret"
    assert seen.headers["X-Team"] == "ops"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.body == {
        "version": "1",
        "status": "firing",
        "action": "trigger",
        "reason": "new",
        "receiver": "ops",
        "group_key": '{}:{service="db"}',
        "group_labels": {"service": "db"},
        "key": "n-42",
        "time": "2026-11-25T00:00:00+00:00",
        "user": {"name": "Alice"},
        "truncated": 0,
        "incidents": [firing_view(), resolved_view()],
    }


async def test_alertmanager_body_is_the_v4_payload(tmp_path: Path) -> None:
    """Test that the alertmanager format posts exactly Alertmanager's webhook v4 document."""
    async with http_server() as server:
        receivers = receivers_from(
            hook(
                tmp_path,
                f"{server.url}/am",
                "      format: alertmanager\n      external_url: https://tocsin.example",
            ),
            tmp_path,
        )
        row = receivers["hook"].render(make_notice())
        senders = make_senders(receivers, report=Reports())
        try:
            assert await senders.sends["webhook:hook"]([row]) == 1
        finally:
            await senders.close()
    assert server.seen[0].body == {
        "version": "4",
        "groupKey": '{}:{service="db"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "ops",
        "groupLabels": {"service": "db"},
        "commonLabels": {
            "alertname": "disk-full",
            "rule": "disk-full",
            "service": "db",
            "category": "storage",
        },
        "commonAnnotations": {},
        "externalURL": "https://tocsin.example",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "disk-full",
                    "rule": "disk-full",
                    "key": "db7",
                    "priority": "P1",
                    "service": "db",
                    "category": "storage",
                    "host": "db7",
                },
                "annotations": {
                    "summary": "Disk full on db7",
                    "description": "/var is at 100%",
                    "workaround": "rotate logs",
                    "incident": "7",
                },
                "startsAt": "2026-11-24T23:50:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": "fp0007",
            },
            {
                "status": "resolved",
                "labels": {
                    "alertname": "disk-full",
                    "rule": "disk-full",
                    "key": "db9",
                    "priority": "P2",
                    "service": "db",
                    "category": "storage",
                    "host": "db9",
                },
                "annotations": {"summary": "Disk full on db9", "incident": "9"},
                "startsAt": "2026-11-24T23:50:00Z",
                "endsAt": "2026-11-24T23:59:30Z",
                "generatorURL": "",
                "fingerprint": "fp0009",
            },
        ],
    }


def test_max_alerts_truncates_but_common_parts_use_all() -> None:
    """Test that max_alerts cuts the list, counts the cut, and common labels still see all."""
    views = [incident_view(n, f"Disk full on db{n}", labels={"dc": "x"}) for n in (1, 2, 3)]
    document = alertmanager_json(make_notice(*views), max_alerts=2)
    assert [a["labels"]["key"] for a in document["alerts"]] == ["db1", "db2"]
    assert document["truncatedAlerts"] == 1
    assert document["commonLabels"]["dc"] == "x"
    assert "key" not in document["commonLabels"]


async def test_server_error_is_transient_then_delivered(tmp_path: Path) -> None:
    """Test that a 500 raises (the outbox retries), is reported as kept, and a retry delivers."""
    reports = Reports()
    async with http_server(500) as server:
        receivers = receivers_from(hook(tmp_path, f"{server.url}/x?token=abc"), tmp_path)
        row = receivers["hook"].render(make_notice())
        senders = make_senders(receivers, report=reports)
        send = senders.sends["webhook:hook"]
        try:
            with pytest.raises(DeliveryError) as failed:
                await send([row])
            assert await send([row]) == 1
        finally:
            await senders.close()
    assert len(server.seen) == 2
    assert server.seen[0].body == server.seen[1].body
    assert server.seen[0].headers["Idempotency-Key"] == server.seen[1].headers["Idempotency-Key"]
    [(ids, reason, dropped)] = reports.got
    assert (ids, dropped) == ([7, 9], False)
    assert reason.startswith(f"HTTP 500 from {server.url}/x: status 500 /x?***: {{")
    assert "token" not in reason
    assert failed.value.reason == reason


async def test_transient_failure_after_the_first_returns_the_prefix(tmp_path: Path) -> None:
    """Test that a 503 on the second row returns 1, so only the first row is deleted."""
    async with http_server(200, 503) as server:
        receivers = receivers_from(hook(tmp_path, server.url), tmp_path)
        rows = [receivers["hook"].render(make_notice()) for _ in range(3)]
        senders = make_senders(receivers, report=Reports())
        try:
            assert await senders.sends["webhook:hook"](rows) == 1
        finally:
            await senders.close()
    assert len(server.seen) == 2


async def test_client_error_is_permanent_and_dropped(tmp_path: Path) -> None:
    """Test that a 400 is reported as dropped and counted as done, and the batch goes on."""
    reports = Reports()
    async with http_server(400, 200) as server:
        receivers = receivers_from(hook(tmp_path, server.url), tmp_path)
        rows = [receivers["hook"].render(make_notice()) for _ in range(2)]
        senders = make_senders(receivers, report=reports)
        try:
            assert await senders.sends["webhook:hook"](rows) == 2
        finally:
            await senders.close()
    assert len(server.seen) == 2
    [(_, reason, dropped)] = reports.got
    assert dropped
    assert reason.startswith(f"HTTP 400 from {server.url}: status 400 /: {{")


async def test_rate_limit_is_transient(tmp_path: Path) -> None:
    """Test that a 429 is kept for a retry."""
    reports = Reports()
    async with http_server(429) as server:
        receivers = receivers_from(hook(tmp_path, server.url), tmp_path)
        senders = make_senders(receivers, report=reports)
        try:
            with pytest.raises(DeliveryError):
                await senders.sends["webhook:hook"]([receivers["hook"].render(make_notice())])
        finally:
            await senders.close()
    assert [dropped for _, _, dropped in reports.got] == [False]


async def test_hanging_server_times_out_as_transient(tmp_path: Path) -> None:
    """Test that a server that never answers fails the send after `timeout`, kept for a retry."""
    reports = Reports()
    async with http_server(HANG) as server:
        receivers = receivers_from(hook(tmp_path, server.url, "      timeout: 200ms"), tmp_path)
        senders = make_senders(receivers, report=reports)
        try:
            async with asyncio.timeout(5):
                with pytest.raises(DeliveryError, match=r"no answer from .* within 0.2s"):
                    await senders.sends["webhook:hook"]([receivers["hook"].render(make_notice())])
        finally:
            await senders.close()
    assert [dropped for _, _, dropped in reports.got] == [False]


async def test_unreachable_server_is_transient(tmp_path: Path) -> None:
    """Test that a refused connection raises and is reported as kept."""
    async with http_server() as server:
        url = server.url
    reports = Reports()
    receivers = receivers_from(hook(tmp_path, url), tmp_path)
    senders = make_senders(receivers, report=reports)
    try:
        with pytest.raises(DeliveryError, match=r"cannot reach http://127\.0\.0\.1"):
            await senders.sends["webhook:hook"]([receivers["hook"].render(make_notice())])
    finally:
        await senders.close()
    assert [dropped for _, _, dropped in reports.got] == [False]


def test_hostile_data_stays_data(tmp_path: Path) -> None:
    """Test that template syntax, markup and undecodable bytes in a title reach JSON as text."""
    title = "{{ 7*7 }} <script>alert(1)</script> \udcff"
    receivers = receivers_from(hook(tmp_path, "http://127.0.0.1:9/"), tmp_path)
    row = receivers["hook"].render(make_notice(incident_view(1, title)))
    assert row.body["json"]["incidents"][0]["title"] == (
        "{{ 7*7 }} <script>alert(1)</script> \ufffd"
    )


async def test_outbox_row_survives_the_store_and_is_retried(tmp_path: Path) -> None:
    """Test the whole path: row committed to SQLite, OutboxSender retries a 500, then deletes it."""
    reports = Reports()
    async with http_server(500) as server:
        receivers = receivers_from(hook(tmp_path, f"{server.url}/hook"), tmp_path)
        row = receivers["hook"].render(make_notice())
        senders = make_senders(receivers, report=reports)
        async with StoreWriter(store=SqliteStore(path=tmp_path / "t.db")) as writer:
            await (await writer.submit(CommitBatch(outbox=[row])))
            outbox = OutboxSender(
                channel="webhook:hook",
                writer=writer,
                send=senders.sends["webhook:hook"],
                sleep=lambda _: asyncio.sleep(0),
            )
            task = asyncio.create_task(outbox.run())
            try:
                async with asyncio.timeout(5):
                    while outbox.sent < 1:  # noqa: ASYNC110 - the store's thread changes it
                        await asyncio.sleep(0.01)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await senders.close()
            left = await writer.call(lambda store: store.count_outbox())
    assert left.get("webhook:hook", 0) == 0
    assert [seen.body for seen in server.seen] == [row.body["json"]] * 2
    assert [dropped for _, _, dropped in reports.got] == [False]
