"""SqliteStore against real database files: schema, atomic commits, reads, durability."""

from __future__ import annotations

import importlib.resources
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tocsin.model import FileIdentity, FileOffset, Incident, IncidentState
from tocsin.store.base import CommitBatch, HistoryEntry, StoreError
from tocsin.store.sqlite import SqliteStore


def make_incident(incident_id: int, **changes: Any) -> Incident:
    """Build an incident with plausible defaults, overridden by `changes`."""
    fields: dict[str, Any] = {
        "id": incident_id,
        "fingerprint": f"fp-{incident_id}",
        "rule": "disk-full",
        "key": f"host{incident_id}",
        "title": "Disk full",
        "state": IncidentState.NEW,
        "priority": "P2",
        "impact": "medium",
        "urgency": "high",
        "first_seen": 1_700_000_000.25,
        "last_seen": 1_700_000_060.5,
    }
    fields.update(changes)
    return Incident(**fields)


def make_offset(path: str, offset: int, *, dev: int = 2049, ino: int = 1234) -> FileOffset:
    """Build a file offset for `path`."""
    return FileOffset(
        path=path,
        identity=FileIdentity(dev=dev, ino=ino, fp_len=64, fp_hash="ab" * 32),
        offset=offset,
    )


def history(incident_id: int, note: str, *, to_state: str = "new") -> HistoryEntry:
    """Build a history entry whose note identifies it."""
    return HistoryEntry(
        incident_id=incident_id,
        time=1_700_000_000.0,
        from_state=None,
        to_state=to_state,
        actor="engine",
        note=note,
    )


def known_versions() -> list[int]:
    """Return the migration numbers shipped in the package."""
    folder = importlib.resources.files("tocsin.store").joinpath("migrations")
    return sorted(
        int(entry.name.split("_")[0]) for entry in folder.iterdir() if entry.name.endswith(".sql")
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Return where the test database lives."""
    return tmp_path / "tocsin.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    """Return an open read-write store on a fresh file."""
    opened = SqliteStore(path=db_path)
    opened.open()
    yield opened
    opened.close()


def schema_rows(path: Path, sql: str) -> list[Any]:
    """Return the rows of one query on a raw connection, bypassing SqliteStore."""
    with closing(sqlite3.connect(path)) as raw:
        return raw.execute(sql).fetchall()


def test_migrations_are_applied_once_and_recorded(db_path: Path) -> None:
    """Test that a reopen does not re-run migrations and every version is recorded once."""
    recorded = []
    for _ in range(2):
        store = SqliteStore(path=db_path)
        store.open()
        store.close()
        recorded.append(
            schema_rows(db_path, "SELECT version, applied_at FROM schema_migrations ORDER BY 1")
        )
    assert recorded[0] == recorded[1]
    assert [version for version, _ in recorded[0]] == known_versions()
    names = {row[0] for row in schema_rows(db_path, "SELECT name FROM sqlite_master")}
    assert {"incidents", "incident_history", "file_offsets", "schema_migrations"} <= names
    assert {"incidents_state", "incidents_fingerprint"} <= names


def test_writer_connection_is_wal_with_full_sync_and_foreign_keys(store: SqliteStore) -> None:
    """Test the pragmas the durability and concurrency promises rest on."""
    conn = store._conn
    assert conn is not None
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0


def test_reopen_keeps_committed_data(db_path: Path) -> None:
    """Test that incidents, history and offsets survive closing and reopening the file."""
    first = SqliteStore(path=db_path)
    first.open()
    first.commit(
        CommitBatch(
            incidents=[make_incident(7)],
            history=[history(7, "opened")],
            offsets=[make_offset("/var/log/a", 42)],
        )
    )
    first.close()
    first.close()
    second = SqliteStore(path=db_path)
    second.open()
    try:
        assert second.get_incident(7) == make_incident(7)
        assert [entry.note for entry in second.incident_history(7)] == ["opened"]
        assert second.load_offsets() == {"/var/log/a": make_offset("/var/log/a", 42)}
        assert second.next_incident_id() == 8
    finally:
        second.close()


def test_newer_schema_is_refused_with_a_clear_message(db_path: Path) -> None:
    """Test that a database migrated by a newer tocsin is not touched by this one."""
    store = SqliteStore(path=db_path)
    store.open()
    store.close()
    with closing(sqlite3.connect(db_path)) as raw, raw:
        raw.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)")
    newest = known_versions()[-1]
    expected = rf"database schema version 99 is newer than this tocsin \({newest}\); "
    with pytest.raises(StoreError, match=expected):
        SqliteStore(path=db_path).open()
    with pytest.raises(StoreError, match=expected):
        SqliteStore(path=db_path, readonly=True).open()


def test_failed_commit_writes_nothing_of_its_batch(store: SqliteStore) -> None:
    """Test that a commit failing at its last statement leaves incidents and offsets untouched."""
    store.commit(
        CommitBatch(incidents=[make_incident(1, count=1)], offsets=[make_offset("/var/log/a", 10)])
    )
    bad = CommitBatch(
        incidents=[make_incident(1, count=5), make_incident(2)],
        offsets=[make_offset("/var/log/a", 20), make_offset("/var/log/b", 5)],
        history=[history(1, "fine"), history(999, "no such incident")],
    )
    with pytest.raises(StoreError, match="FOREIGN KEY constraint failed"):
        store.commit(bad)
    assert store.get_incident(1) == make_incident(1, count=1)
    assert store.get_incident(2) is None
    assert store.load_offsets() == {"/var/log/a": make_offset("/var/log/a", 10)}
    assert store.incident_history(1) == []
    store.commit(CommitBatch(incidents=[make_incident(2)]))
    assert store.get_incident(2) == make_incident(2)


def test_last_snapshot_of_an_id_or_path_wins(store: SqliteStore) -> None:
    """Test that later snapshots in one batch override earlier ones, in batch order."""
    store.commit(
        CommitBatch(
            incidents=[
                make_incident(1, count=1),
                make_incident(2),
                make_incident(1, count=3, title="later"),
            ],
            offsets=[make_offset("/var/log/a", 30), make_offset("/var/log/a", 10, ino=99)],
        )
    )
    assert store.get_incident(1) == make_incident(1, count=3, title="later")
    assert store.load_offsets() == {"/var/log/a": make_offset("/var/log/a", 10, ino=99)}
    store.commit(CommitBatch(incidents=[make_incident(1, count=4)]))
    assert store.get_incident(1) == make_incident(1, count=4)


def test_every_field_round_trips(store: SqliteStore) -> None:
    """Test that labels, text, times, None and 64-bit unsigned inode numbers come back unchanged."""
    incident = make_incident(
        3,
        state=IncidentState.RESOLVED,
        service="billing",
        category="storage",
        description="sda1 at 100 %",
        labels={"host": "dbü-1", "env": "prod"},
        count=12,
        resolved_at=1_700_000_123.125,
    )
    offset = make_offset("/var/log/ünï code.log", 2**40, dev=2**63 + 5, ino=2**64 - 1)
    store.commit(CommitBatch(incidents=[incident], offsets=[offset]))
    got = store.get_incident(3)
    assert got == incident
    assert got is not None
    assert got.state is IncidentState.RESOLVED
    assert store.load_offsets() == {offset.path: offset}


def test_list_filter_paginate_and_load(store: SqliteStore) -> None:
    """Test listing newest first, filtering by state, paging, and loading the open ones."""
    assert store.next_incident_id() == 1
    resolved = {2, 4}
    store.commit(
        CommitBatch(
            incidents=[
                make_incident(
                    i, state=IncidentState.RESOLVED if i in resolved else IncidentState.NEW
                )
                for i in range(1, 6)
            ]
        )
    )
    assert [i.id for i in store.list_incidents()] == [5, 4, 3, 2, 1]
    assert [i.id for i in store.list_incidents(states=("resolved",))] == [4, 2]
    assert [i.id for i in store.list_incidents(states=("new",), limit=2)] == [5, 3]
    assert [i.id for i in store.list_incidents(states=("new", "resolved"), limit=3)] == [5, 4, 3]
    assert store.list_incidents(states=()) == []
    assert [i.id for i in store.list_incidents(limit=2, offset=1)] == [4, 3]
    assert [i.id for i in store.load_open_incidents()] == [1, 3, 5]
    assert store.next_incident_id() == 6
    assert store.get_incident(99) is None


def test_history_comes_back_per_incident_in_commit_order(store: SqliteStore) -> None:
    """Test that history is kept per incident and returned in the order it was committed."""
    store.commit(
        CommitBatch(
            incidents=[make_incident(1), make_incident(2)],
            history=[history(1, "a"), history(2, "x"), history(1, "b")],
        )
    )
    store.commit(CommitBatch(history=[history(1, "c", to_state="resolved")]))
    assert [(e.note, e.to_state) for e in store.incident_history(1)] == [
        ("a", "new"),
        ("b", "new"),
        ("c", "resolved"),
    ]
    assert store.incident_history(2) == [history(2, "x")]
    assert store.incident_history(3) == []


def test_readonly_store_does_not_migrate_or_write(db_path: Path) -> None:
    """Test that a read-only instance never creates a schema and refuses commits."""
    db_path.touch()
    with pytest.raises(StoreError, match="schema version 0 is older"):
        SqliteStore(path=db_path, readonly=True).open()
    assert schema_rows(db_path, "SELECT name FROM sqlite_master") == []
    writer = SqliteStore(path=db_path)
    writer.open()
    writer.close()
    reader = SqliteStore(path=db_path, readonly=True)
    reader.open()
    try:
        with pytest.raises(StoreError, match="read-only"):
            reader.commit(CommitBatch(incidents=[make_incident(1)]))
    finally:
        reader.close()
    with pytest.raises(StoreError, match="could not open"):
        SqliteStore(path=db_path.with_name("missing.db"), readonly=True).open()


def test_readonly_instance_reads_while_another_thread_commits(db_path: Path) -> None:
    """Test that the API's read instance sees consistent, growing state during writes."""
    rounds = 150
    writer_ready, reader_ready = threading.Event(), threading.Event()

    def write() -> None:
        writer = SqliteStore(path=db_path)
        try:
            writer.open()
            writer_ready.set()
            reader_ready.wait(10)
            for i in range(1, rounds + 1):
                writer.commit(
                    CommitBatch(
                        incidents=[make_incident(i)],
                        history=[history(i, str(i))],
                        offsets=[make_offset("/var/log/a", i)],
                    )
                )
        finally:
            writer_ready.set()
            writer.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        writing = pool.submit(write)
        assert writer_ready.wait(10)
        reader = SqliteStore(path=db_path, readonly=True)
        reader.open()
        seen: list[int] = []
        try:
            reader_ready.set()
            while not writing.done():
                newest = reader.list_incidents(limit=1)
                offset = reader.load_offsets().get("/var/log/a")
                if newest:
                    notes = [e.note for e in reader.incident_history(newest[0].id)]
                    assert notes == [str(newest[0].id)]
                    assert offset is not None
                    assert offset.offset >= newest[0].id
                seen.append(reader.next_incident_id() - 1)
            writing.result()
            assert seen == sorted(seen)
            assert len(set(seen)) > 2  # the reads really overlapped the writes
            assert reader.next_incident_id() == rounds + 1
        finally:
            reader_ready.set()
            reader.close()


def test_committed_batch_survives_sigkill(db_path: Path) -> None:
    """Test that a batch is on disk once commit returns, even if the process dies at once."""
    child = textwrap.dedent("""
        import os, signal, sys
        from tocsin.model import FileIdentity, FileOffset, Incident, IncidentState
        from tocsin.store.base import CommitBatch, HistoryEntry
        from tocsin.store.sqlite import SqliteStore

        store = SqliteStore(path=sys.argv[1])
        store.open()
        store.commit(CommitBatch(
            incidents=[Incident(id=41, fingerprint="fp", rule="r", key="k", title="t",
                                state=IncidentState.NEW, priority="P1", impact="high",
                                urgency="high", first_seen=1.0, last_seen=2.0)],
            history=[HistoryEntry(incident_id=41, time=1.0, from_state=None, to_state="new",
                                  actor="engine")],
            offsets=[FileOffset(path="/var/log/a", identity=FileIdentity(dev=1, ino=2, fp_len=3,
                                fp_hash="h"), offset=4096)],
        ))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run(
        [sys.executable, "-c", child, str(db_path)], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    assert db_path.with_name(db_path.name + "-wal").stat().st_size > 0  # never checkpointed
    store = SqliteStore(path=db_path)
    store.open()
    try:
        incident = store.get_incident(41)
        assert incident is not None
        assert (incident.title, incident.priority, incident.last_seen) == ("t", "P1", 2.0)
        assert [e.to_state for e in store.incident_history(41)] == ["new"]
        assert store.load_offsets()["/var/log/a"].offset == 4096
    finally:
        store.close()
