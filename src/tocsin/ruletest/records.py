"""The records a case made, read back from its store as the API shows them, for
expectations to compare; notifications are the outbox rows that would be sent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tocsin.app import Core
from tocsin.desks import run_view
from tocsin.model import Incident, Outgoing, RemediationRun
from tocsin.mqttd import MQTT_CHANNEL
from tocsin.notify.channels.base import Report, Sender
from tocsin.notify.notice import Notice
from tocsin.notify.receivers import Receiver
from tocsin.records.views import incident_json
from tocsin.runbooks.render import RenderedExec, RenderedRun
from tocsin.store.base import HistoryEntry, Store
from tocsin.store.writer import StoreWriter

__all__ = ["Heard", "read_records"]

_ALL = 1_000_000  # "every record": a case makes far fewer
_NOTIFY = "notify:"  # the outbox rule of a receiver's rows


class Heard:
    """A receiver that remembers each notice it renders (by its key), so the outbox row can
    say what it was about; it renders exactly as the receiver does."""

    def __init__(self, receiver: Receiver, notices: dict[str, Notice]) -> None:
        self._receiver = receiver
        self._notices = notices

    @property
    def name(self) -> str:
        """The receiver's name."""
        return self._receiver.name

    @property
    def channel(self) -> str:
        """The receiver's outbox channel."""
        return self._receiver.channel

    def render(self, notice: Notice) -> Outgoing:
        """Remember the notice, then render it."""
        self._notices[notice.key] = notice
        return self._receiver.render(notice)

    def sender(self, report: Report) -> Sender | None:
        """The receiver's sender (the core starts none)."""
        return self._receiver.sender(report)


async def read_records(
    kind: str, core: Core, writer: StoreWriter, notices: Mapping[str, Notice]
) -> list[dict[str, Any]]:
    """Every record of `kind` in the store, oldest first."""
    if kind == "incidents":
        return [_incident(*row) for row in await writer.call(_incidents)]
    if kind in ("notifications", "published"):
        rows = await writer.call(_outbox)
        if kind == "notifications":
            return [_notification(m, notices) for m in rows if m.rule.startswith(_NOTIFY)]
        return [_published(m) for m in rows if m.channel.startswith(MQTT_CHANNEL)
                and not m.rule.startswith(_NOTIFY)]  # fmt: skip
    if kind == "runs":
        runs = await writer.call(lambda s: s.list_runs(limit=_ALL))
        return [_run(run) for run in reversed(runs)]
    if kind == "problems":
        found = await core.problems.list(state=None, limit=_ALL, offset=0)
    elif kind == "requests":
        found = await core.requests.list(state=None, limit=_ALL, offset=0)
    elif kind == "grants":
        found = await core.access.grants(state=None, subject=None, role=None, limit=_ALL, offset=0)
    else:
        found = await core.access.audit(
            subject=None, role=None, action=None, since=None, until=None, limit=_ALL
        )
    return list(reversed(found))  # the desks list newest first


def _incidents(store: Store) -> list[tuple[Incident, list[HistoryEntry]]]:
    """Every incident with its timeline, by id (in the writer's thread)."""
    found = reversed(store.list_incidents(limit=_ALL))
    return [(incident, store.incident_history(incident.id)) for incident in found]


def _incident(incident: Incident, history: list[HistoryEntry]) -> dict[str, Any]:
    """The API's view, plus what mutes it: silence, maintenance, inhibit, flapping, storm."""
    view = incident_json(incident)
    mutes = [entry.actor for entry in history if entry.kind == "mute"]
    view["muted_by"] = mutes[-1].partition(":")[0] if incident.muted and mutes else ""
    return view


def _outbox(store: Store) -> list[Outgoing]:
    """Every row waiting in the outbox, in the order they were committed."""
    rows = [row for channel in store.count_outbox() for row in store.load_outbox(channel, 0, _ALL)]
    return [message for _, message in sorted(rows, key=lambda row: row[0])]


def _notification(message: Outgoing, notices: Mapping[str, Notice]) -> dict[str, Any]:
    body = message.body
    notice = notices.get(str(body.get("key")))
    user = notice.user if notice is not None else None
    return {
        "receiver": message.rule.removeprefix(_NOTIFY),
        "channel": message.channel,
        "action": notice.action if notice is not None else None,
        "reason": notice.reason if notice is not None else None,
        "incidents": list(body.get("incidents", ())),
        "user": user.get("name") if user is not None else None,
        "group": dict(notice.group_labels) if notice is not None else {},
        "key": body.get("key"),
        "body": {key: value for key, value in body.items() if key not in ("key", "incidents")},
    }


def _published(message: Outgoing) -> dict[str, Any]:
    body = message.body
    return {
        "broker": message.channel.removeprefix(MQTT_CHANNEL),
        "rule": message.rule,
        "topic": body.get("topic"),
        "payload": body.get("payload"),
        "qos": body.get("qos"),
        "retain": body.get("retain"),
    }


def _run(run: RemediationRun) -> dict[str, Any]:
    """The API's view of a run, plus the argv of each of its exec steps."""
    view = run_view(run)
    try:
        steps = RenderedRun.from_dict(run.spec).steps
    except ValueError:
        steps = ()
    view["argv"] = [list(step.argv) for step in steps if isinstance(step, RenderedExec)]
    return view
