"""Notification groups: waits, intervals, repeats, acks, resolves, muting, restore; virtual time."""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tocsin.model import Incident, IncidentState
from tocsin.notify.grouping import Dispatcher, GroupChanges
from tocsin.notify.notice import Notice
from tocsin.notify.routing import Route, parse_route
from tocsin.yamlsrc import load_yaml, value_mark

T0 = 1_795_564_800.0
WAIT, INTERVAL, REPEAT = 30.0, 300.0, 4 * 3600.0

TREE = """\
route:
  receiver: default
  group_by: [service]
  routes:
    - {matchers: [priority=P1], receiver: pager, continue: true, escalation: ops}
    - {matchers: [service=db], receiver: dba, send_resolved: false, escalation: dba-policy}
    - {matchers: [service=solo], receiver: slack, group_by: ['...'], escalation: ops}
    - {matchers: [service=solo], receiver: mail, escalation: dba-policy}
"""


def parse(text: str = TREE) -> Route:
    """Parse an incidents file holding a `route:` section."""
    data = load_yaml(text, name="incidents.yaml")
    return parse_route(
        data["route"],
        value_mark(data, "route", data.mark),
        receivers=("default", "pager", "dba", "slack", "mail"),
        policies=("ops", "dba-policy"),
    )


def incident(number: int, service: str = "web", priority: str = "P3") -> Incident:
    """Return a new incident."""
    return Incident(
        id=number,
        fingerprint=f"fp{number}",
        rule="disk",
        key=f"host{number}",
        title=f"disk full on host{number}",
        state=IncidentState.NEW,
        priority=priority,
        impact="low",
        urgency="low",
        first_seen=T0,
        last_seen=T0,
        service=service,
    )


def brief(notice: Notice) -> tuple[str, str, str, list[int], float]:
    """Show a notice as receiver, action, reason, incident ids and seconds since T0."""
    return (notice.receiver, notice.action, notice.reason, notice.incident_ids, notice.time - T0)


def opened(dispatcher: Dispatcher, at: float, *incidents: Incident) -> None:
    """Observe new incidents at T0 + at."""
    for item in incidents:
        dispatcher.observe(item, T0 + at)


def change(dispatcher: Dispatcher, item: Incident, at: float, **fields: Any) -> None:
    """Change an incident's fields and observe it at T0 + at."""
    for name, value in fields.items():
        setattr(item, name, value)
    dispatcher.observe(item, T0 + at)


def due(dispatcher: Dispatcher) -> float | None:
    """Return when the next notice is due, as seconds since T0."""
    when = dispatcher.next_due()
    return None if when is None else when - T0


def flush(dispatcher: Dispatcher, at: float) -> list[tuple[str, str, str, list[int], float]]:
    """Return the notices due at T0 + at, briefly."""
    return [brief(n) for n in dispatcher.flush(T0 + at)]


Rows = dict[str, tuple[str, dict[int, str]]]


class Table:
    """What a store holds after saving `dirty()` changes: heads by key, members by (key, id).

    Stricter than the store: a member row needs its head, and a head is deleted only after
    its members were (dirty() deletes them explicitly, so no merge of batches can orphan one).
    """

    def __init__(self) -> None:
        self.heads: dict[str, str] = {}
        self.members: dict[tuple[str, int], str] = {}

    def save(self, changes: GroupChanges) -> GroupChanges:
        """Apply changes as one transaction would; return them."""
        for key, head in changes.heads.items():
            if head is not None:
                self.heads[key] = head
        for pair, row in changes.members.items():
            if row is None:
                self.members.pop(pair, None)
            else:
                assert pair[0] in self.heads, f"member {pair} saved without its head"
                self.members[pair] = row
        for key, head in changes.heads.items():
            if head is None:
                self.heads.pop(key, None)
                assert all(k != key for k, _ in self.members), f"members of {key} left behind"
        return changes

    def rows(self) -> Rows:
        """Return what `Store.load_groups` would."""
        rows: Rows = {key: (head, {}) for key, head in self.heads.items()}
        for (key, incident_id), row in self.members.items():
            rows[key][1][incident_id] = row
        return rows


def saved(dispatcher: Dispatcher) -> Rows:
    """Return the rows a store would hold after saving everything dirty (none deleted yet)."""
    changes = dispatcher.dirty()
    assert None not in changes.heads.values()
    assert None not in changes.members.values()
    table = Table()
    table.save(changes)
    return table.rows()


def test_a_burst_waits_group_wait_and_arrives_as_one() -> None:
    """Test that incidents opening within group_wait are sent in one notice, oldest id first."""
    d = Dispatcher(parse())
    opened(d, 0, incident(3))
    opened(d, 5, incident(1))
    opened(d, 20, incident(2))
    assert due(d) == WAIT
    assert flush(d, WAIT - 1) == []
    [notice] = d.flush(T0 + WAIT)
    assert brief(notice) == ("default", "trigger", "new", [1, 2, 3], WAIT)
    assert notice.group_labels == {"service": "web"}
    assert notice.incidents[0]["title"] == "disk full on host1"
    assert notice.group_key.endswith(':default:{service="web"}')


def test_a_change_waits_group_interval_after_the_last_notice() -> None:
    """Test that a member added after the first notice is sent group_interval after it."""
    d = Dispatcher(parse())
    opened(d, 0, incident(1))
    flush(d, WAIT)
    opened(d, 40, incident(2))
    assert due(d) == WAIT + INTERVAL
    assert flush(d, WAIT + INTERVAL - 1) == []
    assert flush(d, WAIT + INTERVAL) == [("default", "trigger", "changed", [1, 2], WAIT + INTERVAL)]
    opened(d, 10_000, incident(3))
    assert flush(d, 10_000) == [("default", "trigger", "changed", [1, 2, 3], 10_000)]


def test_a_firing_group_repeats_only_while_something_is_unacknowledged() -> None:
    """Test that repeats come every repeat_interval and stop once every member is acknowledged."""
    d = Dispatcher(parse())
    first, second = incident(1), incident(2)
    opened(d, 0, first, second)
    flush(d, WAIT)
    assert due(d) == WAIT + REPEAT
    assert flush(d, WAIT + REPEAT) == [("default", "trigger", "repeat", [1, 2], WAIT + REPEAT)]
    change(d, first, WAIT + REPEAT + 10, state=IncidentState.ACKNOWLEDGED)
    assert flush(d, WAIT + REPEAT + INTERVAL) == [
        ("default", "trigger", "changed", [1, 2], WAIT + REPEAT + INTERVAL)
    ]
    assert due(d) == WAIT + 2 * REPEAT + INTERVAL  # the second is still unacknowledged
    change(d, second, WAIT + REPEAT + INTERVAL + 1, state=IncidentState.IN_PROGRESS)
    [notice] = d.flush(T0 + WAIT + REPEAT + 2 * INTERVAL)
    assert (notice.action, notice.reason) == ("acknowledge", "changed")
    assert [i["state"] for i in notice.incidents] == ["acknowledged", "in_progress"]
    assert due(d) is None


def test_a_resolved_group_says_so_once_then_is_gone() -> None:
    """Test that resolving the last member sends one 'resolve' notice, then the group ends."""
    d = Dispatcher(parse())
    item = incident(1)
    opened(d, 0, item)
    [first] = d.flush(T0 + WAIT)
    d.dirty()
    change(d, item, 100, state=IncidentState.RESOLVED, resolved_at=T0 + 100)
    [last] = d.flush(T0 + WAIT + INTERVAL)
    assert brief(last) == ("default", "resolve", "resolved", [1], WAIT + INTERVAL)
    assert last.status == "resolved"
    assert last.group_key == first.group_key
    assert last.key != first.key
    change(d, item, 400, state=IncidentState.CLOSED, closed_at=T0 + 400)
    assert due(d) is None
    assert flush(d, 100_000) == []
    assert len(d) == 0
    gone = d.dirty()
    assert gone.heads == {first.group_key: None}
    assert gone.members == {(first.group_key, 1): None}


def test_send_resolved_false_lets_resolved_members_leave_quietly() -> None:
    """Test that with send_resolved false a resolved member just leaves, and the group ends."""
    d = Dispatcher(parse())
    first, second = incident(1, "db"), incident(2, "db")
    opened(d, 0, first, second)
    assert [n[0] for n in flush(d, WAIT)] == ["dba"]
    change(d, first, 50, state=IncidentState.RESOLVED)
    assert due(d) == WAIT + REPEAT
    assert flush(d, WAIT + REPEAT) == [("dba", "trigger", "repeat", [2], WAIT + REPEAT)]
    change(d, second, WAIT + REPEAT + 1, state=IncidentState.RESOLVED)
    assert due(d) is None
    flush(d, WAIT + REPEAT + 2)
    assert len(d) == 0


def test_a_partly_resolved_group_lists_firing_first_then_resolved() -> None:
    """Test that a change notice lists what still fires, then what resolved since."""
    d = Dispatcher(parse())
    items = [incident(1), incident(2), incident(3)]
    opened(d, 0, *items)
    flush(d, WAIT)
    change(d, items[0], 60, state=IncidentState.RESOLVED)
    [notice] = d.flush(T0 + WAIT + INTERVAL)
    assert brief(notice) == ("default", "trigger", "changed", [2, 3, 1], WAIT + INTERVAL)
    assert [i["state"] for i in notice.incidents] == ["new", "new", "resolved"]
    assert flush(d, WAIT + INTERVAL + REPEAT) == [
        ("default", "trigger", "repeat", [2, 3], WAIT + INTERVAL + REPEAT)
    ]


def test_what_opens_and_resolves_within_group_wait_is_never_sent() -> None:
    """Test that a receiver never hears of an incident that resolved before it was told."""
    d = Dispatcher(parse())
    item = incident(1)
    opened(d, 0, item)
    change(d, item, 10, state=IncidentState.RESOLVED)
    assert due(d) is None
    assert flush(d, 1000) == []
    assert len(d) == 0


def test_a_flap_between_notices_is_no_change() -> None:
    """Test that resolving and reopening between two notices sends nothing new."""
    d = Dispatcher(parse())
    item = incident(1)
    opened(d, 0, item)
    flush(d, WAIT)
    change(d, item, 40, state=IncidentState.RESOLVED)
    assert due(d) == WAIT + INTERVAL
    change(d, item, 50, state=IncidentState.NEW, reopened=1)
    assert due(d) == WAIT + REPEAT


def test_counts_assignments_and_comments_are_not_changes() -> None:
    """Test that updates which leave the notify-state alone do not bring a notice forward."""
    d = Dispatcher(parse())
    item = incident(1)
    opened(d, 0, item)
    flush(d, WAIT)
    change(d, item, 60, count=5, assignee="alice", workaround="reboot", description="x")
    assert due(d) == WAIT + REPEAT
    [notice] = d.flush(T0 + WAIT + REPEAT)
    assert (notice.reason, notice.incidents[0]["count"]) == ("repeat", 5)


def test_muted_members_are_left_out_and_unmuting_adds_them() -> None:
    """Test that a muted incident is not sent, muting sends nothing, and unmuting is an addition."""
    d = Dispatcher(parse())
    first, second = incident(1), incident(2)
    second.muted = "silence 7"
    opened(d, 0, first, second)
    assert flush(d, WAIT) == [("default", "trigger", "new", [1], WAIT)]
    change(d, first, 40, muted="maintenance db")
    assert due(d) is None  # nothing visible fires: no repeats, and muting is no news
    change(d, second, 1000, muted="")
    assert flush(d, 1000) == [("default", "trigger", "changed", [2], 1000)]
    change(d, first, 1100, muted="")
    assert flush(d, 1000 + INTERVAL) == [("default", "trigger", "changed", [1, 2], 1300)]


def test_a_group_of_only_muted_incidents_never_sends() -> None:
    """Test that incidents muted from the start are not sent at all."""
    d = Dispatcher(parse())
    item = incident(1)
    item.muted = "silence 1"
    opened(d, 0, item)
    assert due(d) is None
    change(d, item, 10, state=IncidentState.RESOLVED)
    assert flush(d, 10_000) == []


def test_grouping_by_every_label_makes_one_group_per_incident() -> None:
    """Test that group_by ['...'] sends each incident on its own, with its id as group label."""
    d = Dispatcher(parse())
    opened(d, 0, incident(1, "solo"), incident(2, "solo"))
    notices = d.flush(T0 + WAIT)
    slack = [n for n in notices if n.receiver == "slack"]
    assert [(n.incident_ids, n.group_labels) for n in slack] == [
        ([1], {"incident": "1"}),
        ([2], {"incident": "2"}),
    ]
    assert [n.incident_ids for n in notices if n.receiver == "mail"] == []  # slack matched first


def test_rerating_moves_an_incident_to_the_routes_it_now_matches() -> None:
    """Test that a re-rated incident is reported gone where it was and added where it goes."""
    d = Dispatcher(parse())
    moving, staying = incident(1), incident(2)
    opened(d, 0, moving, staying)
    flush(d, WAIT)
    assert d.escalations(moving) == []
    change(d, moving, 100, priority="P1")
    assert d.escalations(moving) == ["ops"]
    assert sorted(flush(d, WAIT + INTERVAL)) == [
        ("default", "trigger", "changed", [2, 1], WAIT + INTERVAL),
        ("pager", "trigger", "new", [1], WAIT + INTERVAL),
    ]
    assert sorted(flush(d, WAIT + INTERVAL + REPEAT)) == [
        ("default", "trigger", "repeat", [2], WAIT + INTERVAL + REPEAT),
        ("pager", "trigger", "repeat", [1], WAIT + INTERVAL + REPEAT),
    ]


def test_escalations_list_each_matched_policy_once_in_route_order() -> None:
    """Test that the escalation policies come from every matched route, deduplicated."""
    d = Dispatcher(parse())
    item = incident(1, "solo", "P1")
    assert d.escalations(item) == ["ops"]
    d.observe(item, T0)
    assert d.escalations(item) == ["ops"]
    assert d.escalations(incident(2, "db", "P1")) == ["ops", "dba-policy"]
    assert d.escalations(incident(3)) == []


def test_a_long_group_key_is_digested_to_fit_pagerduty() -> None:
    """Test that group keys stay within 255 characters however long the label values are."""
    d = Dispatcher(parse())
    item = incident(1, "x" * 400)
    opened(d, 0, item)
    [notice] = d.flush(T0 + WAIT)
    assert len(notice.group_key) <= 255
    assert notice.group_labels == {"service": "x" * 400}


def test_a_group_ended_and_refilled_at_one_instant_keeps_numbering_its_keys() -> None:
    """Test that idempotency keys never repeat, even when a group ends and restarts at once."""
    route = parse("route: {receiver: default, group_wait: 0s, group_interval: 1s}\n")
    d = Dispatcher(route)
    first = incident(1)
    opened(d, 0, first)
    keys = [n.key for n in d.flush(T0)]
    change(d, first, 0, state=IncidentState.RESOLVED)  # never told resolved: just leaves
    opened(d, 0, incident(2))
    keys += [n.key for n in d.flush(T0 + 1)]
    assert len(keys) == 2
    assert len(set(keys)) == 2


def test_restore_mid_wait_continues_as_if_never_stopped() -> None:
    """Test that a restart during group_wait sends the same first notice at the same time."""
    route = parse()
    d = Dispatcher(route)
    opened(d, 0, incident(1), incident(2, "db"))
    rows = saved(d)
    again = Dispatcher(route)
    assert again.restore(rows).groups == 2
    assert again.next_due() == d.next_due() == T0 + WAIT
    assert again.flush(T0 + WAIT) == d.flush(T0 + WAIT)
    mine, theirs = again.dirty(), d.dirty()
    assert mine.heads.keys() == theirs.heads.keys()  # each sent a notice: numbering moved on
    assert mine.members == theirs.members  # each member told the same


def test_restore_skips_damaged_rows_and_drops_groups_of_removed_routes() -> None:
    """Test that unreadable rows and rows of routes gone from the config are counted and deleted."""
    d = Dispatcher(parse())
    opened(d, 0, incident(1), incident(2, "db"), incident(3))
    rows = saved(d)
    web = next(k for k in rows if ":default:" in k)
    dba = next(k for k in rows if ":dba:" in k)
    rows[web][1][3] = rows[web][1][3].replace('"told":null', '"told":"maybe"')
    rows[web][1][4] = "{not json"
    rows["broken"] = ("{not json", {7: "{}"})
    rows["half"] = (json.dumps({"v": 1, "route": "nope"}), {})
    rows["wrong"] = (rows[web][0].replace('"seq": 0', '"seq": "x"'), {1: rows[web][1][1]})
    smaller = Dispatcher(
        parse(TREE.replace("    - {matchers: [service=db]", "    - {matchers: [service=dbx]"))
    )
    report = smaller.restore(rows)
    assert (report.groups, report.dropped, report.damaged) == (1, 2, 4)
    deleted = smaller.dirty()
    assert deleted.heads == dict.fromkeys(["broken", "half", "wrong", dba])
    assert deleted.members == dict.fromkeys(
        [(web, 3), (web, 4), ("broken", 7), ("wrong", 1), (dba, 2)]
    )
    assert [brief(n)[:4] for n in smaller.flush(T0 + WAIT)] == [("default", "trigger", "new", [1])]


def test_a_reload_that_keeps_a_route_keeps_its_groups() -> None:
    """Test that groups survive a reload which adds a sibling route before theirs."""
    d = Dispatcher(parse())
    item = incident(1, "db")
    opened(d, 0, item)
    flush(d, WAIT)
    rows = saved(d)
    wider = parse(
        TREE.replace("  routes:\n", "  routes:\n    - {matchers: [x=y], receiver: mail}\n")
    )
    again = Dispatcher(wider)
    assert again.restore(rows).groups == 1
    assert due(again) == WAIT + REPEAT
    change(again, item, 60, count=2)
    assert flush(again, WAIT + REPEAT) == [("dba", "trigger", "repeat", [1], WAIT + REPEAT)]


# ---------------------------------------------------------------------------------------------
# Random scenarios: a dispatcher restored from its rows after every step says what one that
# never stopped says, and no idempotency key is ever used twice.

SCENARIO_TREE = """\
route:
  receiver: default
  group_by: [service]
  group_wait: {wait}
  group_interval: 20s
  repeat_interval: 60s
  routes:
    - {{matchers: [priority=P1], receiver: pager, continue: true}}
    - {{matchers: [service=db], receiver: dba, send_resolved: false}}
    - {{matchers: [service=solo], receiver: slack, group_by: ['...']}}
"""

OPS = ("open", "ack", "unack", "resolve", "close", "mute", "unmute", "rerate", "count", "move")
step = st.tuples(
    st.sampled_from(OPS),
    st.integers(0, 4),  # which incident slot
    st.sampled_from([0, 0, 1, 5, 10, 20, 30, 60]),  # seconds to wait before it
)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(step, max_size=40), wait=st.sampled_from(["0s", "10s"]))
# A member re-routed away, then acknowledged: it is reported gone with its latest view.
@example(steps=[("open", 0, 0), ("rerate", 0, 0), ("rerate", 0, 0), ("ack", 0, 0)], wait="0s")
# A group ends, then a new member arrives at the same instant: it continues the old group.
@example(
    steps=[("open", 0, 0), ("count", 0, 10), ("resolve", 0, 0), ("open", 1, 0), ("open", 2, 0),
           ("open", 3, 0)],
    wait="10s",
)  # fmt: skip
def test_restoring_after_every_step_changes_nothing(
    steps: list[tuple[str, int, int]], wait: str
) -> None:
    """Test that restore-at-every-step sends exactly what an uninterrupted dispatcher sends."""
    play(steps, wait)


def play(steps: list[tuple[str, int, int]], wait: str) -> None:
    """Run a scenario on a steady dispatcher and on one restored after every step."""
    route = parse(SCENARIO_TREE.format(wait=wait))
    steady, restored = Dispatcher(route), Dispatcher(route)
    table, steady_table = Table(), Table()
    slots: list[Incident | None] = [None] * 5
    next_id = 1
    now = T0
    sent: list[Notice] = []
    for op, slot, pause in steps:
        now += pause
        item = slots[slot]
        if op == "open" and (item is None or not item.is_open):
            if item is not None and item.state == IncidentState.RESOLVED:
                item.state, item.reopened = IncidentState.NEW, item.reopened + 1
            else:
                item = slots[slot] = incident(next_id, ("web", "db", "solo")[next_id % 3])
                next_id += 1
        elif item is None:
            pass
        elif op == "ack" and item.is_open:
            item.state = IncidentState.ACKNOWLEDGED
        elif op == "unack" and item.is_open:
            item.state = IncidentState.NEW
        elif op == "resolve" and item.is_open:
            item.state = IncidentState.RESOLVED
        elif op == "close" and item.state == IncidentState.RESOLVED:
            item.state = IncidentState.CLOSED
        elif op in ("mute", "unmute"):
            item.muted = "silence" if op == "mute" else ""
        elif op == "rerate" and item.is_open:
            item.priority = "P1" if item.priority == "P3" else "P3"
        elif op == "count":
            item.count += 1
        elif op == "move" and item.is_open:
            item.service = {"web": "db", "db": "solo", "solo": "web"}[item.service]
        if item is not None:
            steady.observe(item, now)
            restored.observe(item, now)
        got = restored.flush(now)
        assert got == steady.flush(now)
        sent += got
        assert restored.next_due() == steady.next_due()
        table.save(restored.dirty())
        steady_table.save(steady.dirty())
        assert table.rows() == steady_table.rows()  # only changes saved, and all of them
        restored = Dispatcher(route)
        assert restored.restore(table.rows()).damaged == 0
        assert not restored.dirty()  # a restore alone changes nothing
    keys = [n.key for n in sent]
    assert len(keys) == len(set(keys))
    for later in (now + 1000, now + 2000):
        assert restored.flush(later) == steady.flush(later)


def test_observe_and_flush_stay_cheap_in_a_storm() -> None:
    """Test (and print) the cost of 10,000 incidents in 100 groups: observe, flush, dirty."""
    d = Dispatcher(parse())
    items = [incident(n, f"svc{n % 100}") for n in range(1, 10_001)]
    start = time.perf_counter()
    for item in items:
        d.observe(item, T0)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for item in items:
        item.count += 1
        d.observe(item, T0 + 1)
    again = time.perf_counter() - start
    start = time.perf_counter()
    for item in items[::2]:
        item.state = IncidentState.ACKNOWLEDGED  # a new state label: routed afresh
        d.observe(item, T0 + 2)
    acked = time.perf_counter() - start
    start = time.perf_counter()
    rows = d.dirty()
    saving = time.perf_counter() - start
    start = time.perf_counter()
    notices = d.flush(T0 + WAIT)
    flushing = time.perf_counter() - start
    start = time.perf_counter()
    table = Table()
    table.save(rows)
    Dispatcher(parse()).restore(table.rows())
    restoring = time.perf_counter() - start
    assert len(notices) == 100
    assert sum(len(n.incidents) for n in notices) == 10_000
    print(
        f"\n10,000 incidents in 100 groups: first observe {first / 10_000 * 1e6:.1f} us, "
        f"repeat observe {again / 10_000 * 1e6:.1f} us, ack observe {acked / 5_000 * 1e6:.1f} us, "
        f"flush {flushing * 1e3:.0f} ms, "
        f"dirty {saving * 1e3:.0f} ms, restore {restoring * 1e3:.0f} ms"
    )
    assert first + again + acked < 5.0


def test_a_big_group_saves_only_the_member_that_changed() -> None:
    """Test that 10,000 members in one group save one small row each, not the group each time."""
    d = Dispatcher(parse())
    items = [incident(n, "web") for n in range(1, 10_001)]
    rows = told = written = 0
    start = time.perf_counter()
    for n, item in enumerate(items):
        now = T0 + n * 0.01  # 100 s in all: the first notice falls due on the way
        d.observe(item, now)
        told += sum(len(notice.incidents) for notice in d.flush(now))
        changes = d.dirty()
        rows += len(changes.members)
        written += sum(
            len(row or "") for row in (*changes.heads.values(), *changes.members.values())
        )
    filling = time.perf_counter() - start
    assert 0 < told < 10_000
    # Each member once when added, once more when told (but the one added as it was sent).
    assert rows == 10_000 + told - 1
    [notice] = d.flush(T0 + 1000)
    assert len(notice.incidents) == 10_000
    assert len(d.dirty().members) == 10_000 - told
    change(d, items[41], 1001, state=IncidentState.ACKNOWLEDGED)
    acked = d.dirty()
    assert (acked.heads, list(acked.members)) == ({}, [(notice.group_key, 42)])
    [again] = d.flush(T0 + 1000 + INTERVAL)
    assert again.reason == "changed"
    after = d.dirty()
    assert (list(after.heads), list(after.members)) == (
        [notice.group_key],
        [(notice.group_key, 42)],
    )
    print(f"\n10,000 members in one group: filled in {filling:.2f} s, {written / 1e6:.1f} MB saved")
    assert filling < 1.5
