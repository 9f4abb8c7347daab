"""A notification to send: the one type between deciding who hears (routing, escalation)
and saying it (channels). Rendered into an outbox row when the change behind it commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ACTIONS", "Notice"]

# What happened to the group (or incident), in PagerDuty's words: still firing and somebody
# must act; every firing incident in it is acknowledged; nothing in it is firing any more.
ACTIONS = ("trigger", "acknowledge", "resolve")


@dataclass(frozen=True, slots=True)
class Notice:
    """Tell one receiver about a group of incidents (or one incident, when escalating)."""

    receiver: str  # a receiver name from the config
    action: str  # one of ACTIONS
    reason: str  # why now, for people: "new", "changed", "repeat", "resolved", "escalation level 2"
    group_key: str  # stable id of the group or incident: receivers' dedup key (PagerDuty)
    key: str  # idempotency key: unique per notice, the same across retries and restarts
    time: float  # epoch seconds when it was decided
    incidents: tuple[dict[str, Any], ...]  # records.views.notice_view of each, firing first
    group_labels: dict[str, str] = field(default_factory=dict)  # the group_by labels' values
    user: dict[str, str] | None = None  # the person paged (escalation to a user or schedule)

    @property
    def status(self) -> str:
        """Alertmanager's word: "resolved" once nothing in it fires, else "firing"."""
        return "resolved" if self.action == "resolve" else "firing"

    @property
    def incident_ids(self) -> list[int]:
        """The ids of the incidents it is about (to note a failed send on their timelines)."""
        return [int(i["id"]) for i in self.incidents]
