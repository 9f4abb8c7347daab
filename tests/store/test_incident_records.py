"""The store keeps the whole incident record: lifecycle fields, timeline kinds, groups."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from test_sqlite import make_incident

from tocsin.model import Escalation, IncidentState
from tocsin.store.base import CommitBatch, HistoryEntry
from tocsin.store.sqlite import SqliteStore


def _store(path: Path) -> SqliteStore:
    store = SqliteStore(path=path)
    store.open()
    return store


def _members(path: Path) -> list[tuple[str, int]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT group_id, incident_id FROM notify_members").fetchall()
    finally:
        conn.close()


def test_every_lifecycle_field_round_trips(tmp_path: Path) -> None:
    """Test that what the engine and desk set comes back from a fresh connection."""
    incident = make_incident(
        7,
        state=IncidentState.ON_HOLD,
        opened_at=1.5,
        acknowledged_at=2.5,
        assignee="bob",
        group="network",
        workaround="restart it",
        reopened=2,
        samples=[{"message": "m\udcff", "time": 1.0}],
        sla_fired=["response:warning"],
        escalation=Escalation("critical", 1, 99.0, 3),
    )
    store = _store(tmp_path / "s.db")
    store.commit(
        CommitBatch(
            incidents=[incident],
            history=[HistoryEntry(7, 3.0, "new", "new", "alice", "hi", "comment")],
        )
    )
    store.close()
    again = _store(tmp_path / "s.db")
    got = again.get_incident(7)
    assert got is not None
    incident.samples = [{"message": "m\udcff", "time": 1.0}]
    assert got == incident
    assert [(h.kind, h.note, h.actor) for h in again.incident_history(7)] == [
        ("comment", "hi", "alice")
    ]
    assert [i.id for i in again.load_open_incidents()] == [7]


def test_open_resolved_and_closed_are_loaded_where_they_belong(tmp_path: Path) -> None:
    """Test load_open_incidents, load_resolved_since and resolved_before."""
    store = _store(tmp_path / "s.db")
    rows = [
        make_incident(1, state=IncidentState.ACKNOWLEDGED),
        make_incident(2, state=IncidentState.RESOLVED, resolved_at=10.0),
        make_incident(3, state=IncidentState.RESOLVED, resolved_at=20.0),
        make_incident(4, state=IncidentState.CLOSED, resolved_at=5.0, closed_at=6.0),
        make_incident(5, state=IncidentState.IN_PROGRESS),
    ]
    store.commit(CommitBatch(incidents=rows))
    assert [i.id for i in store.load_open_incidents()] == [1, 5]
    assert [i.id for i in store.load_resolved_since(15.0)] == [3]
    assert [i.id for i in store.resolved_before(25.0, 1)] == [2]
    assert [i.id for i in store.resolved_before(25.0, 10)] == [2, 3]


def test_list_filters_combine(tmp_path: Path) -> None:
    """Test the API's filters: state, priority, service, assignee, group, together."""
    store = _store(tmp_path / "s.db")
    store.commit(
        CommitBatch(
            incidents=[
                make_incident(1, priority="P1", service="web", assignee="bob"),
                make_incident(2, priority="P1", service="db", assignee="bob", group="dba"),
                make_incident(3, priority="P2", service="web"),
                make_incident(4, priority="P1", service="web", state=IncidentState.RESOLVED),
            ]
        )
    )

    def ids(**kw: object) -> list[int]:
        return [i.id for i in store.list_incidents(**kw)]  # type: ignore[arg-type]

    assert ids() == [4, 3, 2, 1]
    assert ids(priorities=["P1"]) == [4, 2, 1]
    assert ids(priorities=["P1"], states=["new"]) == [2, 1]
    assert ids(service="web", priorities=["P1", "P2"]) == [4, 3, 1]
    assert ids(assignee="bob", group="dba") == [2]
    assert ids(states=[]) == []
    assert ids(limit=1, offset=1) == [3]


def test_group_heads_and_members_are_upserted_and_deleted(tmp_path: Path) -> None:
    """Test the notification group tables: heads, members, and a head taking its members."""
    store = _store(tmp_path / "s.db")
    store.commit(
        CommitBatch(
            groups={"a": "A1", "b": "B1"},
            members={("a", 1): "a1", ("a", 2): "a2", ("b", 1): "b1", ("b", 3): "b3"},
        )
    )
    assert store.load_groups() == {"a": ("A1", {1: "a1", 2: "a2"}), "b": ("B1", {1: "b1", 3: "b3"})}
    store.commit(CommitBatch(members={("a", 2): "a2'", ("a", 1): None}))  # no head change
    assert store.load_groups()["a"] == ("A1", {2: "a2'"})
    store.commit(CommitBatch(groups={"a": "A2", "b": None}))
    store.close()
    again = _store(tmp_path / "s.db")
    assert again.load_groups() == {"a": ("A2", {2: "a2'"})}
    assert _members(tmp_path / "s.db") == [("a", 2)]  # b's went with it


def test_a_merged_batch_cannot_leave_a_member_without_its_head(tmp_path: Path) -> None:
    """Test that a member written earlier in a merged batch goes when a later part deletes the head."""
    store = _store(tmp_path / "s.db")
    batch = CommitBatch(groups={"a": "A1"}, members={("a", 1): "a1"})
    later = CommitBatch(groups={"a": None})
    batch.extend(later)
    assert batch.members == {("a", 1): "a1"}
    store.commit(batch)
    assert store.load_groups() == {}
    assert _members(tmp_path / "s.db") == []
    assert CommitBatch(members={("a", 1): None})  # a member alone is something to commit


def test_an_older_database_gets_opened_at_from_first_seen(tmp_path: Path) -> None:
    """Test migration 0005 on a database made by 0001-0004."""
    path = tmp_path / "old.db"
    store = _store(path)
    store.commit(CommitBatch(incidents=[make_incident(1, opened_at=0.0)]))
    store.close()
    with sqlite3.connect(path) as conn:  # undo 0005's effect as an old daemon left it
        conn.execute("UPDATE incidents SET opened_at = 0")
        conn.execute("DELETE FROM schema_migrations WHERE version >= 5")
        for table in (
            "runs",
            "problem_history",
            "problems",
            "known_errors",
            "documents",
            "request_history",
            "service_requests",
            "access_grants",
            "access_audit",
        ):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("DROP TABLE notify_groups")
        conn.execute("DROP TABLE notify_members")
        conn.execute("DROP INDEX incidents_resolved")
        conn.execute("DROP INDEX incidents_assignee")
        for column in ("opened_at", "acknowledged_at", "closed_at", "assignee",
                       "assignment_group", "workaround", "reopened", "data"):  # fmt: skip
            conn.execute(f"ALTER TABLE incidents DROP COLUMN {column}")
        conn.execute("ALTER TABLE incident_history DROP COLUMN kind")
    again = _store(path)
    got = again.get_incident(1)
    assert got is not None
    assert got.opened_at == got.first_seen
