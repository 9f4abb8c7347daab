"""The outbox table: rows commit with their batch, page per channel in order, delete durably."""

from __future__ import annotations

import importlib.resources
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tocsin.model import Incident, IncidentState, Outgoing
from tocsin.store.base import CommitBatch, HistoryEntry, StoreError
from tocsin.store.sqlite import SqliteStore


def message(n: int, channel: str = "mqtt:local") -> Outgoing:
    """Build the n-th message of a channel; the payload says which it is."""
    return Outgoing(
        channel, "temp", {"topic": "alerts/lab", "payload": f"m{n}", "qos": 1, "retain": False}
    )


def payloads(rows: list[tuple[int, Outgoing]]) -> list[str]:
    """Return the payloads of loaded rows, in the order they came."""
    return [outgoing.body["payload"] for _, outgoing in rows]


def make_incident(incident_id: int) -> Incident:
    """Build a minimal incident."""
    return Incident(
        id=incident_id,
        fingerprint=f"temp:{incident_id}",
        rule="temp",
        key=str(incident_id),
        title="hot",
        state=IncidentState.NEW,
        priority="P3",
        impact="low",
        urgency="low",
        first_seen=1.0,
        last_seen=1.0,
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


def test_rows_page_per_channel_in_commit_order(store: SqliteStore) -> None:
    """Test that each channel reads its own rows, oldest first, `limit` at a time after a cursor."""
    store.commit(CommitBatch(outbox=[message(1), message(1, "mqtt:remote"), message(2)]))
    store.commit(CommitBatch(outbox=[message(3), message(4)]))
    first = store.load_outbox("mqtt:local", 0, 3)
    assert payloads(first) == ["m1", "m2", "m3"]
    assert [row_id for row_id, _ in first] == sorted(row_id for row_id, _ in first)
    assert payloads(store.load_outbox("mqtt:local", first[-1][0], 3)) == ["m4"]
    assert store.load_outbox("mqtt:remote", 0, 10) == [(first[0][0] + 1, message(1, "mqtt:remote"))]
    assert store.load_outbox("mqtt:other", 0, 10) == []
    assert store.count_outbox() == {"mqtt:local": 4, "mqtt:remote": 1}


def test_deleted_rows_are_gone_and_ids_are_never_reused(db_path: Path) -> None:
    """Test that deletes are durable and a new row gets a higher id even after the newest went."""
    store = SqliteStore(path=db_path)
    store.open()
    store.commit(CommitBatch(outbox=[message(1), message(2), message(3)]))
    ids = [row_id for row_id, _ in store.load_outbox("mqtt:local", 0, 10)]
    store.delete_outbox(ids[1:])
    store.delete_outbox([])
    store.close()
    reopened = SqliteStore(path=db_path)
    reopened.open()
    try:
        assert payloads(reopened.load_outbox("mqtt:local", 0, 10)) == ["m1"]
        reopened.commit(CommitBatch(outbox=[message(4)]))
        [(newest, _)] = reopened.load_outbox("mqtt:local", ids[0], 10)
        assert newest > ids[-1]
        assert reopened.count_outbox() == {"mqtt:local": 2}
    finally:
        reopened.close()


def test_outbox_rows_commit_atomically_with_their_batch(store: SqliteStore) -> None:
    """Test that a batch that fails leaves no outbox rows, and one that succeeds leaves all."""
    bad = CommitBatch(
        incidents=[make_incident(1)],
        history=[HistoryEntry(999, 1.0, None, "new", "engine")],  # no such incident
        outbox=[message(1)],
    )
    with pytest.raises(StoreError, match=r"1 outbox messages .*FOREIGN KEY constraint failed"):
        store.commit(bad)
    assert store.count_outbox() == {}
    store.commit(CommitBatch(incidents=[make_incident(1)], outbox=[message(1)]))
    assert store.get_incident(1) is not None
    assert payloads(store.load_outbox("mqtt:local", 0, 10)) == ["m1"]


def test_body_round_trips_as_json(store: SqliteStore) -> None:
    """Test that nested, non-ASCII and numeric body values come back equal."""
    body = {"topic": "caf\u00e9/\u2603", "payload": '{"t":41.5}', "qos": 0, "retain": True}
    store.commit(CommitBatch(outbox=[Outgoing("mqtt:local", "r", body)]))
    [(_, loaded)] = store.load_outbox("mqtt:local", 0, 1)
    assert loaded == Outgoing("mqtt:local", "r", body)


def test_batches_with_only_outbox_rows_are_not_empty() -> None:
    """Test that a batch of only messages is committed, and merging keeps their order."""
    first, second = CommitBatch(outbox=[message(1)]), CommitBatch(outbox=[message(2)])
    assert first
    assert not CommitBatch()
    merged = CommitBatch()
    merged.extend(first)
    merged.extend(second)
    assert merged.outbox == [message(1), message(2)]
    assert CommitBatch.of([], [], outbox=[message(3)]).outbox == [message(3)]


def test_readonly_store_reads_but_does_not_delete(db_path: Path) -> None:
    """Test that the API's read-only instance may count rows but never deletes them."""
    writer = SqliteStore(path=db_path)
    writer.open()
    writer.commit(CommitBatch(outbox=[message(1)]))
    writer.close()
    reader = SqliteStore(path=db_path, readonly=True)
    reader.open()
    try:
        assert reader.count_outbox() == {"mqtt:local": 1}
        with pytest.raises(StoreError, match="read-only"):
            reader.delete_outbox([1])
    finally:
        reader.close()


def test_a_version_3_database_gains_the_outbox(db_path: Path) -> None:
    """Test that a database made before the outbox is migrated and can queue messages."""
    folder = importlib.resources.files("tocsin.store").joinpath("migrations")
    with closing(sqlite3.connect(db_path)) as raw:
        raw.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)")
        for version in (1, 2, 3):
            [script] = [f for f in folder.iterdir() if f.name.startswith(f"000{version}_")]
            raw.executescript(script.read_text(encoding="utf-8"))
            raw.execute("INSERT INTO schema_migrations VALUES (?, 0)", (version,))
        raw.commit()
    upgraded = SqliteStore(path=db_path)
    upgraded.open()
    try:
        upgraded.commit(CommitBatch(incidents=[make_incident(1)], outbox=[message(1)]))
        assert upgraded.count_outbox() == {"mqtt:local": 1}
    finally:
        upgraded.close()
    with closing(sqlite3.connect(db_path)) as raw:
        assert raw.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] >= 4
