"""Notification groups (Alertmanager's dispatcher and dedup stage, adapted to incidents):
which receiver is due to hear what about which incidents, and when. Pure: time is an argument.

Each group remembers what its receiver was last told: which incidents fire, acknowledged or
not. A member's notify-state is firing-unacknowledged ("new"), firing-acknowledged ("ack"),
resolved (resolved and closed alike), hidden (muted while open) or gone (re-routed away).
A new group waits group_wait, so a burst arrives as one notice. A change from what was told
(a member fires that was not told so, an ack state differs, a told member resolved or left)
is sent at the earliest group_interval after the last notice. With no change, a group is
re-sent every repeat_interval while a member it tells of is unacknowledged. Hidden members
are left out as if they were not firing; muting alone sends nothing, unmuting counts as added.
Resolved (or gone) members are reported once if send_resolved and their receiver was told
they fired; otherwise they just leave. A group with no members left ends, and is forgotten
once time moves on (so a group recreated at the same instant continues its numbering).

A group is saved as a small head row (route, receiver, labels, times, numbering) plus one row
per member (notify-state, what was told, its view), so a change to one member of a big group
rewrites one small row, not the group. The caller saves `dirty()` in the transaction that
queues the notices of the same flush, so after `restore()` nothing sent is sent again and
nothing due is lost.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tocsin.model import Incident, IncidentState
from tocsin.notify.notice import Notice
from tocsin.notify.routing import Route
from tocsin.records.views import notice_view, route_labels

__all__ = ["Dispatcher", "GroupChanges", "Restored"]

# Notify-states of a member, as its group sees it.
NEW = "new"
ACK = "ack"
RESOLVED = "resolved"
HIDDEN = "hidden"
GONE = "gone"
_STATES = frozenset({NEW, ACK, RESOLVED, HIDDEN, GONE})
_FIRING = frozenset({NEW, ACK})
_LEFT = frozenset({RESOLVED, GONE})
_ROW_VERSION = 1
_MAX_GROUP_KEY = 255  # PagerDuty's dedup_key limit


@dataclass(frozen=True, slots=True)
class Restored:
    """What `restore` made of the saved rows; dropped and damaged rows are deleted by dirty()."""

    groups: int
    dropped: int  # groups whose route is no longer in the config
    damaged: int  # head or member rows not readable: skipped


@dataclass(slots=True)
class GroupChanges:
    """The rows to save since the last `dirty()`; None deletes (a head's members go with it)."""

    heads: dict[str, str | None] = field(default_factory=dict)  # by group key
    members: dict[tuple[str, int], str | None] = field(default_factory=dict)  # (key, incident)

    def __bool__(self) -> bool:
        return bool(self.heads or self.members)


class _Member:
    """One incident in one group: its notify-state now and what its receiver was last told."""

    __slots__ = ("id", "incident", "row", "state", "told", "view")

    def __init__(self, incident_id: int, incident: Incident | None, view: dict[str, Any]) -> None:
        self.id = incident_id
        self.incident = incident  # live; None after a restore until it is observed again
        self.view = view  # the view saved before a restart (used while `incident` is None)
        self.state = HIDDEN
        self.told: str | None = None  # NEW or ACK when the last notice listed it as firing
        self.row: str | None = None  # as last handed out by dirty(); None: never

    def current_view(self) -> dict[str, Any]:
        return notice_view(self.incident) if self.incident is not None else self.view


class _Group:
    """The incidents one route sends to its receiver together, and when it told them last."""

    __slots__ = (
        "changed",
        "created",
        "due",
        "ended",
        "head",
        "key",
        "labels",
        "last_sent",
        "members",
        "route",
        "seq",
        "unacked",
    )

    def __init__(self, key: str, route: Route, labels: dict[str, str], created: float) -> None:
        self.key = key
        self.route = route
        self.labels = labels
        self.created = float(created)  # float, so its key reads the same after a restore
        self.last_sent: float | None = None
        self.seq = 0  # notices sent so far; numbers the idempotency keys
        self.members: dict[int, _Member] = {}
        self.changed: set[int] = set()  # members whose state differs from what was told
        self.unacked = 0  # members in state NEW
        self.due: float | None = None
        self.ended: float | None = None  # when its last member left
        self.head: str | None = None  # its head row as last handed out by dirty(); None: never

    def next_due(self) -> float | None:
        if self.last_sent is None:
            return self.created + self.route.group_wait if self.changed else None
        if self.changed:
            return self.last_sent + self.route.group_interval
        if self.unacked:
            return self.last_sent + self.route.repeat_interval
        return None


@dataclass(slots=True)
class _Placement:
    """Where an incident is: the labels it was routed with, and its groups."""

    labels: dict[str, str] | None = None  # None: not routed since a restore
    routes: list[Route] = field(default_factory=list)
    current: dict[str, None] = field(default_factory=dict)  # group keys it is routed to
    departed: dict[str, None] = field(default_factory=dict)  # left, still to be reported


def _notify_state(incident: Incident) -> str:
    if not incident.is_open:
        return RESOLVED
    if incident.muted:
        return HIDDEN
    return NEW if incident.state == IncidentState.NEW else ACK


def _group_labels(route: Route, labels: Mapping[str, str], incident_id: int) -> dict[str, str]:
    """Return the values that pick an incident's group on `route` (empty ones are left out)."""
    if route.group_by is None:
        return {"incident": str(incident_id)}
    return {name: labels[name] for name in route.group_by if labels.get(name)}


def _group_key(route: Route, labels: Mapping[str, str]) -> str:
    """Return a group's stable key: route id, receiver and label values, digested if long."""
    # ASCII only: the key goes into HTTP headers (Idempotency-Key), where control characters
    # from event data (DEL is not escaped by json.dumps) would make every send fail.
    shown = ",".join(f"{k}={json.dumps(v)}" for k, v in labels.items()).replace("\x7f", "\\u007f")
    key = f"{route.id}:{route.receiver}:{{{shown}}}"
    if len(key) <= _MAX_GROUP_KEY:
        return key
    return f"{route.id}:{hashlib.blake2b(key.encode(), digest_size=16).hexdigest()}"


class Dispatcher:
    """Route incidents into groups and say which notices are due; see the module docstring."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self._routes = {r.id: r for r in route.walk()}
        self._groups: dict[str, _Group] = {}
        self._placed: dict[int, _Placement] = {}
        self._heap: list[tuple[float, str]] = []  # (due, group key); stale entries are skipped
        self._dirty: dict[str, None] = {}  # group keys whose head may have changed
        self._dirty_members: dict[tuple[str, int], None] = {}  # (key, incident id)
        self._ended: dict[str, None] = {}  # groups without members, forgotten once time moves on
        self._ended_at = float("-inf")

    def __len__(self) -> int:
        """Return how many groups there are (for a gauge)."""
        return len(self._groups)

    # -- incidents in ---------------------------------------------------------------------

    def observe(self, incident: Incident, now: float) -> None:
        """Take in that an incident was opened or changed in any way."""
        self._forget_ended(now)
        state = _notify_state(incident)
        placed = self._placed.get(incident.id)
        if state == RESOLVED:
            if placed is not None:  # a resolved incident is reported where it was, not re-routed
                placed.labels = None  # if it reopens, it is routed afresh
                for key in (*placed.current, *placed.departed):
                    self._update(self._groups[key], incident.id, incident, RESOLVED, now)
            return
        labels = route_labels(incident)
        if placed is None:
            placed = self._placed[incident.id] = _Placement()
        if placed.labels != labels:
            self._reroute(incident, placed, labels, now)
        for key in placed.current:
            self._update(self._groups[key], incident.id, incident, state, now)
        for key in placed.departed:  # still to be reported gone: with its latest view
            self._groups[key].members[incident.id].incident = incident
            self._dirty_members[key, incident.id] = None

    def escalations(self, incident: Incident) -> list[str]:
        """Return the escalation policies of the routes the incident takes, once each, in order."""
        labels = route_labels(incident)
        placed = self._placed.get(incident.id)
        routes = (
            placed.routes
            if placed is not None and placed.labels == labels
            else self.route.match(labels)
        )
        return list(dict.fromkeys(r.escalation for r in routes if r.escalation is not None))

    def _reroute(
        self, incident: Incident, placed: _Placement, labels: dict[str, str], now: float
    ) -> None:
        routes = self.route.match(labels)
        wanted: dict[str, None] = {}
        for route in routes:
            values = _group_labels(route, labels, incident.id)
            key = _group_key(route, values)
            if key not in self._groups:
                self._groups[key] = _Group(key, route, values, now)
                self._dirty[key] = None
            wanted[key] = None
        left = [key for key in placed.current if key not in wanted]
        placed.labels, placed.routes, placed.current = labels, routes, wanted
        for key in wanted:
            placed.departed.pop(key, None)
        for key in left:
            placed.departed[key] = None
            self._update(self._groups[key], incident.id, incident, GONE, now)

    def _update(
        self, group: _Group, incident_id: int, incident: Incident, state: str, now: float
    ) -> None:
        """Set a member's notify-state (adding it if new), then reschedule its group."""
        member = group.members.get(incident_id)
        if member is None:
            if state in _LEFT:
                return
            member = group.members[incident_id] = _Member(incident_id, incident, {})
            if group.ended is not None:
                group.ended = None
                self._ended.pop(group.key, None)
                self._dirty[group.key] = None
        member.incident = incident
        group.unacked += (state == NEW) - (member.state == NEW)
        member.state = state
        self._dirty_members[group.key, incident_id] = None
        if not self._settle(group, member):
            self._remove(group, member, now)
        self._schedule(group)

    @staticmethod
    def _settle(group: _Group, member: _Member) -> bool:
        """Note whether the member's state is news to its receiver; False: it just leaves."""
        if member.state in _LEFT:
            if member.told is None or not group.route.send_resolved:
                return False
            group.changed.add(member.id)
        elif member.state in _FIRING and member.told != member.state:
            group.changed.add(member.id)
        else:
            group.changed.discard(member.id)
        return True

    def _remove(self, group: _Group, member: _Member, now: float) -> None:
        del group.members[member.id]
        self._dirty_members[group.key, member.id] = None
        group.changed.discard(member.id)
        group.unacked -= member.state == NEW
        placed = self._placed.get(member.id)
        if placed is not None:
            placed.current.pop(group.key, None)
            placed.departed.pop(group.key, None)
            if not placed.current and not placed.departed:
                del self._placed[member.id]
        if not group.members:
            group.ended = now
            self._ended[group.key] = None
            self._ended_at = max(self._ended_at, now)
            self._dirty[group.key] = None

    def _schedule(self, group: _Group) -> None:
        due = group.next_due()
        if due != group.due:
            group.due = due
            if due is not None:
                heapq.heappush(self._heap, (due, group.key))
                if len(self._heap) > 2 * len(self._groups) + 64:
                    self._heap = [(g.due, k) for k, g in self._groups.items() if g.due is not None]
                    heapq.heapify(self._heap)

    def _forget_ended(self, now: float) -> None:
        if not self._ended or now <= self._ended_at:
            return
        for key in self._ended:
            del self._groups[key]
            self._dirty[key] = None
        self._ended.clear()

    # -- notices out ----------------------------------------------------------------------

    def next_due(self) -> float | None:
        """Return the earliest time `flush` has something to return, or None."""
        heap = self._heap
        while heap:
            due, key = heap[0]
            group = self._groups.get(key)
            if group is not None and group.due == due:
                return due
            heapq.heappop(heap)
        return None

    def flush(self, now: float) -> list[Notice]:
        """Return the notices due at `now`, in the order they fell due."""
        self._forget_ended(now)
        due: list[_Group] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, key = heapq.heappop(heap)
            group = self._groups.get(key)
            if group is not None and group.due == when:
                group.due = None  # taken; a twin heap entry is now stale
                due.append(group)
        return [self._notice(group, now) for group in due]

    def _notice(self, group: _Group, now: float) -> Notice:
        members = group.members
        firing = sorted((m for m in members.values() if m.state in _FIRING), key=_by_id)
        resolved = sorted(
            (members[i] for i in group.changed if members[i].state in _LEFT), key=_by_id
        )
        if not firing:
            action = "resolve"
        elif all(m.state == ACK for m in firing):
            action = "acknowledge"
        else:
            action = "trigger"
        if group.seq == 0:
            reason = "new"
        elif action == "resolve":
            reason = "resolved"
        else:
            reason = "changed" if group.changed else "repeat"
        group.seq += 1
        notice = Notice(
            receiver=group.route.receiver,
            action=action,
            reason=reason,
            group_key=group.key,
            key=f"{group.key}:{group.created!r}:{group.seq}",
            time=now,
            incidents=tuple(m.current_view() for m in (*firing, *resolved)),
            group_labels=dict(group.labels),
        )
        for member in members.values():
            told = member.state if member.state in _FIRING else None
            if told != member.told:
                member.told = told
                self._dirty_members[group.key, member.id] = None
        group.changed.clear()
        group.last_sent = now
        for member in resolved:
            self._remove(group, member, now)
        self._schedule(group)
        self._dirty[group.key] = None
        return notice

    # -- persistence ----------------------------------------------------------------------

    def dirty(self) -> GroupChanges:
        """Return the head and member rows changed since the last call (None: delete)."""
        changes = GroupChanges()
        for key in self._dirty:
            group = self._groups.get(key)
            if group is None:
                changes.heads[key] = None
                continue
            head = _head_row(group)
            if head != group.head:
                group.head = changes.heads[key] = head
        views: dict[int, str] = {}  # one dump per incident, however many groups it is in
        for key, incident_id in self._dirty_members:
            owner = self._groups.get(key)
            member = None if owner is None else owner.members.get(incident_id)
            if member is None:  # deleted explicitly, so no batch merge can revive it
                changes.members[key, incident_id] = None
                continue
            row = _member_row(member, views)
            if row != member.row:
                member.row = changes.members[key, incident_id] = row
        self._dirty.clear()
        self._dirty_members.clear()
        return changes

    def snapshot(self) -> dict[str, tuple[str, dict[int, str]]]:
        """Every group as the rows `dirty()` saves: a reload restores them into a dispatcher
        for the new route tree, without a trip to the store."""
        views: dict[int, str] = {}
        return {
            key: (_head_row(group), {i: _member_row(m, views) for i, m in group.members.items()})
            for key, group in self._groups.items()
        }

    def restore(self, rows: Mapping[str, tuple[str, Mapping[int, str]]]) -> Restored:
        """Rebuild the groups saved by `dirty()` (into a fresh dispatcher), after a restart or
        a reload, from head rows and their member rows; groups of routes no longer configured
        are dropped, unreadable rows skipped (the next `dirty()` deletes both).
        """
        dropped = damaged = 0
        for key, (text, members) in rows.items():
            try:
                group = self._load(key, json.loads(text))
            except (ValueError, TypeError, KeyError, AttributeError):
                group = None
                damaged += 1
            else:
                dropped += group is None
            if group is None:
                self._dirty[key] = None
                self._dirty_members.update(dict.fromkeys((key, i) for i in members))
                continue
            group.head = text
            self._dirty[key] = None  # saved again only if the checks below change it
            self._groups[key] = group
            for incident_id, row in members.items():
                try:
                    member = _load_member(incident_id, json.loads(row))
                except (ValueError, TypeError, KeyError, AttributeError):
                    member = None
                    damaged += 1
                if member is None or not self._settle(group, member):
                    self._dirty_members[key, incident_id] = None
                    continue
                member.row = row
                group.members[incident_id] = member
                group.unacked += member.state == NEW
                placed = self._placed.setdefault(incident_id, _Placement())
                (placed.departed if member.state == GONE else placed.current)[key] = None
            if group.members:
                group.ended = None
            else:
                group.ended = group.created if group.ended is None else group.ended
                self._ended[key] = None
                self._ended_at = max(self._ended_at, group.ended)
            self._schedule(group)
        return Restored(groups=len(self._groups), dropped=dropped, damaged=damaged)

    def _load(self, key: str, data: Any) -> _Group | None:
        """Rebuild one group's head from its row; raise on anything malformed, None: route gone."""
        if data["v"] != _ROW_VERSION:
            raise ValueError("unknown row version")
        route = self._routes.get(data["route"])
        if route is None or route.receiver != data["receiver"]:
            return None
        labels = {str(k): str(v) for k, v in dict(data["labels"]).items()}
        if _group_key(route, labels) != key:
            raise ValueError("the key does not match the row")
        group = _Group(key, route, labels, _number(data["created"]))
        group.last_sent = None if data["last_sent"] is None else _number(data["last_sent"])
        group.ended = None if data["ended"] is None else _number(data["ended"])
        group.seq = int(data["seq"])
        return group


def _head_row(group: _Group) -> str:
    return json.dumps(
        {
            "v": _ROW_VERSION,
            "route": group.route.id,
            "receiver": group.route.receiver,
            "labels": group.labels,
            "created": group.created,
            "last_sent": group.last_sent,
            "seq": group.seq,
            "ended": group.ended,
        }
    )


def _member_row(member: _Member, views: dict[int, str]) -> str:
    """Return a member's row; the view is pasted in as dumped, not dumped inside a dict again."""
    view = views.get(member.id) if member.incident is not None else None
    if view is None:
        view = json.dumps(member.current_view())
        if member.incident is not None:
            views[member.id] = view
    told = "null" if member.told is None else f'"{member.told}"'
    return f'{{"state":"{member.state}","told":{told},"view":{view}}}'


def _load_member(incident_id: int, data: Any) -> _Member:
    """Rebuild one member from its row; raise on anything malformed."""
    view, state, told = data["view"], data["state"], data["told"]
    if not isinstance(view, dict) or state not in _STATES or told not in (None, NEW, ACK):
        raise ValueError("malformed member")
    member = _Member(incident_id, None, view)
    member.state, member.told = state, told
    return member


def _by_id(member: _Member) -> int:
    return member.id


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("not a number")
    return float(value)
