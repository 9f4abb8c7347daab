"""What the channel tests share: a fixed notice, receivers from YAML, a recording HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tocsin.model import Incident, IncidentState, Outgoing
from tocsin.notify.notice import Notice
from tocsin.notify.receivers import Receiver, parse_receivers
from tocsin.records.views import incident_json
from tocsin.yamlsrc import load_yaml, value_mark

T = 1_795_564_800.0  # 2026-11-25T00:00:00Z
HANG = -1  # a step of the server's plan: never answer


def incident_view(
    number: int,
    title: str,
    *,
    state: IncidentState = IncidentState.NEW,
    priority: str = "P1",
    service: str = "db",
    labels: dict[str, str] | None = None,
    description: str = "",
    workaround: str = "",
) -> dict[str, Any]:
    """Return the public view of an incident opened ten minutes before T."""
    resolved = state in (IncidentState.RESOLVED, IncidentState.CLOSED)
    return incident_json(
        Incident(
            id=number,
            fingerprint=f"fp{number:04d}",
            rule="disk-full",
            key=f"db{number}",
            title=title,
            state=state,
            priority=priority,
            impact="high",
            urgency="high",
            first_seen=T - 600,
            last_seen=T - 60,
            count=3,
            service=service,
            category="storage",
            description=description,
            labels={"host": f"db{number}"} if labels is None else labels,
            resolved_at=T - 30 if resolved else None,
            opened_at=T - 600,
            workaround=workaround,
        )
    )


def firing_view() -> dict[str, Any]:
    """Return the fixed notice's open incident."""
    return incident_view(
        7, "Disk full on db7", description="/var is at 100%", workaround="rotate logs"
    )


def resolved_view() -> dict[str, Any]:
    """Return the fixed notice's resolved incident."""
    return incident_view(
        9, "Disk full on db9", state=IncidentState.RESOLVED, priority="P2", labels={"host": "db9"}
    )


def make_notice(
    *incidents: dict[str, Any],
    action: str = "trigger",
    user: dict[str, str] | None = None,
    group_key: str = '{}:{service="db"}',
) -> Notice:
    """Return the fixed notice: receiver 'ops', key n-42, at T (two incidents unless given)."""
    return Notice(
        receiver="ops",
        action=action,
        reason="new",
        group_key=group_key,
        key="n-42",
        time=T,
        incidents=incidents or (firing_view(), resolved_view()),
        group_labels={"service": "db"},
        user=user,
    )


def receivers_from(text: str, base: Path, brokers: Iterable[str] = ()) -> dict[str, Receiver]:
    """Parse the `receivers:` section of an incidents.yaml text."""
    data = load_yaml(text, name="incidents.yaml")
    where = value_mark(data, "receivers", data.mark)
    return parse_receivers(data["receivers"], where, base=base, brokers=frozenset(brokers))


@dataclass
class Reports:
    """Collects what senders report: (incident ids, reason, dropped)."""

    got: list[tuple[list[int], str, bool]] = field(default_factory=list)

    def __call__(self, message: Outgoing, reason: str, dropped: bool) -> None:
        self.got.append((message.body["incidents"], reason, dropped))


@dataclass
class Seen:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: Any


class HttpServer:
    """Answers POSTs with the statuses of its plan (then 200), echoing the request body."""

    def __init__(self, plan: Iterable[int]) -> None:
        self.plan = list(plan)
        self.seen: list[Seen] = []
        self.url = ""
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.text()
        self.seen.append(Seen(request.path, dict(request.headers), json.loads(raw)))
        status = self.plan.pop(0) if self.plan else 200
        if status == HANG:
            await self.release.wait()
            status = 200
        return web.Response(status=status, text=f"status {status} {request.path_qs}: {raw}")


@contextlib.asynccontextmanager
async def http_server(*plan: int) -> AsyncIterator[HttpServer]:
    """Run an HttpServer on a free loopback port for the duration of the block."""
    server = HttpServer(plan)
    app = web.Application()
    app.router.add_post("/{tail:.*}", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()
