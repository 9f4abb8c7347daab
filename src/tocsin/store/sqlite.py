"""The SQLite store: one WAL-mode file, written by one thread, readable by others at once."""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tocsin.model import (
    OPEN_STATES,
    Escalation,
    FileIdentity,
    FileOffset,
    Incident,
    IncidentState,
    Outgoing,
    RemediationRun,
)
from tocsin.obs import STORE_COMMIT_SECONDS, STORE_COMMITS
from tocsin.store.base import CommitBatch, CorrelationSnapshot, HistoryEntry, StoreError

__all__ = ["SqliteStore"]

_MEMORY = ":memory:"
_BUSY_TIMEOUT_MS = 5000
_MIGRATION_FILE = re.compile(r"(\d+)_\w+\.sql")
_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1

_UPSERT_INCIDENT = """
INSERT INTO incidents (
    id, fingerprint, rule, key, title, state, priority, impact, urgency,
    first_seen, last_seen, count, service, category, description, labels, resolved_at, muted,
    opened_at, acknowledged_at, closed_at, assignee, assignment_group, workaround, reopened, data
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    fingerprint = excluded.fingerprint,
    rule = excluded.rule,
    key = excluded.key,
    title = excluded.title,
    state = excluded.state,
    priority = excluded.priority,
    impact = excluded.impact,
    urgency = excluded.urgency,
    first_seen = excluded.first_seen,
    last_seen = excluded.last_seen,
    count = excluded.count,
    service = excluded.service,
    category = excluded.category,
    description = excluded.description,
    labels = excluded.labels,
    resolved_at = excluded.resolved_at,
    muted = excluded.muted,
    opened_at = excluded.opened_at,
    acknowledged_at = excluded.acknowledged_at,
    closed_at = excluded.closed_at,
    assignee = excluded.assignee,
    assignment_group = excluded.assignment_group,
    workaround = excluded.workaround,
    reopened = excluded.reopened,
    data = excluded.data
"""
_UPSERT_OFFSET = """
INSERT INTO file_offsets (path, dev, ino, fp_len, fp_hash, byte_offset)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (path) DO UPDATE SET
    dev = excluded.dev,
    ino = excluded.ino,
    fp_len = excluded.fp_len,
    fp_hash = excluded.fp_hash,
    byte_offset = excluded.byte_offset
"""
_INSERT_TIMELINE = (
    "INSERT INTO {table} ({column}, time, from_state, to_state, actor, note, kind) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_RUN = """
INSERT INTO runs (id, runbook, rule, key, target, incident_id, state, reason, created_at,
                  started_at, finished_at, data)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    state = excluded.state,
    reason = excluded.reason,
    started_at = excluded.started_at,
    finished_at = excluded.finished_at,
    data = excluded.data
"""
_SELECT_TIMELINE = (
    "SELECT {column}, time, from_state, to_state, actor, note, kind "
    "FROM {table} WHERE {column} = ? ORDER BY seq"
)
# The record tables the generic record reads serve (the names are ours, never a request's).
_RECORD_TABLES = {
    "problems": "problems",
    "service_requests": "service_requests",
    "access_grants": "access_grants",
}
_SELECT_DATA = "SELECT data FROM {} "
_MAX_ID = "SELECT COALESCE(MAX(id), 0) FROM {}"
_SELECT_AUDIT = "SELECT data FROM access_audit "
# Run states that passed the rate limit (it counts a run when it starts or queues).
_ADMITTED = frozenset({"queued", "running", "succeeded", "failed", "interrupted"})
_CLOCK_SLACK = 3600.0
_SELECT_RUNS = """
SELECT id, runbook, rule, key, target, incident_id, state, reason, created_at, started_at,
       finished_at, data
FROM runs
"""
_INSERT_OUTBOX = "INSERT INTO outbox (channel, rule, body, created) VALUES (?, ?, ?, ?)"
_SELECT_INCIDENTS = """
SELECT id, fingerprint, rule, key, title, state, priority, impact, urgency,
       first_seen, last_seen, count, service, category, description, labels, resolved_at,
       muted, opened_at, acknowledged_at, closed_at, assignee, assignment_group, workaround,
       reopened, data
FROM incidents
"""
_GET_INCIDENT = _SELECT_INCIDENTS + "WHERE id = ?"
_OPEN_INCIDENTS = _SELECT_INCIDENTS + "WHERE state IN ({}) ORDER BY id".format(
    ", ".join(f"'{s}'" for s in sorted(OPEN_STATES))
)
_RESOLVED_SINCE = _SELECT_INCIDENTS + "WHERE state = 'resolved' AND resolved_at >= ? ORDER BY id"


@functools.cache
def _migrations() -> tuple[tuple[int, str], ...]:
    """Return the packaged migrations as (version, SQL), oldest first; read once per process."""
    folder = importlib.resources.files("tocsin.store").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.fullmatch(entry.name)
        if match:
            found.append((int(match[1]), entry.read_text(encoding="utf-8")))
    return tuple(sorted(found))


def _statements(script: str) -> Iterator[str]:
    """Split a migration so its statements run in our transaction (executescript commits)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip():
        yield pending


def _to_i64(value: int) -> int:
    """Map an unsigned 64-bit dev/ino to the signed integer SQLite can hold."""
    return value - _U64 if value > _I64_MAX else value


def _from_i64(value: int) -> int:
    """Undo `_to_i64`."""
    return value + _U64 if value < 0 else value


def _text(value: str) -> str:
    """Return text SQLite can store: a lone surrogate (invalid in UTF-8) becomes U+FFFD."""
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _incident_row(incident: Incident) -> tuple[object, ...]:
    """Flatten an incident into the column order of `_UPSERT_INCIDENT`."""
    return (
        incident.id,
        _text(incident.fingerprint),
        incident.rule,
        _text(incident.key),
        _text(incident.title),
        str(incident.state),
        incident.priority,
        incident.impact,
        incident.urgency,
        incident.first_seen,
        incident.last_seen,
        incident.count,
        _text(incident.service),
        _text(incident.category),
        _text(incident.description),
        json.dumps(incident.labels),  # ASCII escapes round-trip any text, surrogates too
        incident.resolved_at,
        _text(incident.muted),
        incident.opened_at,
        incident.acknowledged_at,
        incident.closed_at,
        _text(incident.assignee),
        _text(incident.group),
        _text(incident.workaround),
        incident.reopened,
        json.dumps(
            {
                "samples": incident.samples,
                "sla_fired": incident.sla_fired,
                "escalation": None
                if incident.escalation is None
                else incident.escalation.to_dict(),
                "holds": incident.holds,
                "held_since": incident.held_since,
            }
        ),
    )


def _write_timeline(
    conn: sqlite3.Connection, table: str, column: str, entries: Sequence[HistoryEntry]
) -> None:
    """Append timeline entries to one of our timeline tables (`incident_id` is the record's)."""
    conn.executemany(
        _INSERT_TIMELINE.format(table=table, column=column),
        (
            (h.incident_id, h.time, h.from_state, h.to_state, _text(h.actor), _text(h.note),
             h.kind)
            for h in entries
        ),
    )  # fmt: skip


def _run_row(run: RemediationRun) -> tuple[object, ...]:
    """Flatten a run into the column order of `_UPSERT_RUN`."""
    return (
        run.id,
        run.runbook,
        run.rule,
        _text(run.key),
        _text(run.target),
        run.incident_id,
        run.state,
        _text(run.reason),
        run.created_at,
        run.started_at,
        run.finished_at,
        json.dumps(run.data()),
    )


def _run(row: sqlite3.Row) -> RemediationRun:
    """Build a run from a row of `_SELECT_RUNS`."""
    data = json.loads(row["data"])
    return RemediationRun(
        id=row["id"],
        runbook=row["runbook"],
        rule=row["rule"],
        key=row["key"],
        target=row["target"],
        incident_id=row["incident_id"],
        state=row["state"],
        reason=row["reason"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        spec=dict(data["spec"]),
        dry_run=bool(data.get("dry_run", False)),
        on_success=str(data.get("on_success", "")),
        on_failure=str(data.get("on_failure", "")),
        result=data.get("result"),
        approval_expires=data.get("approval_expires"),
        decided_by=str(data.get("decided_by", "")),
    )


def _incident(row: sqlite3.Row) -> Incident:
    """Build an incident from a row of `_SELECT_INCIDENTS`."""
    data = json.loads(row["data"])
    escalation = data.get("escalation")
    return Incident(
        id=row["id"],
        fingerprint=row["fingerprint"],
        rule=row["rule"],
        key=row["key"],
        title=row["title"],
        state=IncidentState(row["state"]),
        priority=row["priority"],
        impact=row["impact"],
        urgency=row["urgency"],
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        count=row["count"],
        service=row["service"],
        category=row["category"],
        description=row["description"],
        labels=json.loads(row["labels"]),
        resolved_at=row["resolved_at"],
        muted=row["muted"],
        opened_at=row["opened_at"],
        acknowledged_at=row["acknowledged_at"],
        closed_at=row["closed_at"],
        assignee=row["assignee"],
        group=row["assignment_group"],
        workaround=row["workaround"],
        reopened=row["reopened"],
        samples=list(data.get("samples") or []),
        sla_fired=[str(mark) for mark in data.get("sla_fired") or []],
        escalation=Escalation.from_dict(escalation) if escalation else None,
        holds=[[float(start), float(end)] for start, end in data.get("holds") or []],
        held_since=data.get("held_since"),
    )


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """Run the block in one write transaction, rolled back on any error."""
    # IMMEDIATE takes the write lock up front, so a busy database waits for busy_timeout
    # instead of failing when a deferred transaction tries to upgrade its read lock.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise


class SqliteStore:
    """Incidents, their history and file offsets in one SQLite file (see `Store`)."""

    def __init__(self, *, path: str | os.PathLike[str], readonly: bool = False) -> None:
        self._path = os.fspath(path)
        if readonly and self._path == _MEMORY:
            raise ValueError("a read-only store needs a database file, not :memory:")
        self._readonly = readonly
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        """Connect, set the pragmas, and migrate (read-only: only check the schema version)."""
        try:
            if self._readonly:
                uri = Path(self._path).resolve().as_uri() + "?mode=ro"
                conn = sqlite3.connect(uri, uri=True, isolation_level=None)
            else:
                conn = sqlite3.connect(self._path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"could not open the database {self._path}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        try:
            self._prepare(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Configure a fresh connection and bring (or check) the schema up to date."""
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            if self._readonly:
                self._check_version(self._schema_version(conn), readonly=True)
                return
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal" and self._path != _MEMORY:
                raise StoreError(
                    f"the database {self._path} cannot use WAL mode (got {mode}); "
                    "put it on a local filesystem"
                )
            # In WAL mode NORMAL only syncs at checkpoints, so a power cut or kernel crash
            # can lose transactions that commit() already reported; FULL fsyncs the WAL on
            # every commit, which is what lets the tailers advance their offsets safely.
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            current = self._schema_version(conn)
            self._check_version(current, readonly=False)
            self._migrate(conn, current=current)
        except sqlite3.Error as exc:
            raise StoreError(f"could not prepare the database {self._path}: {exc}") from exc

    @staticmethod
    def _schema_version(conn: sqlite3.Connection) -> int:
        """Return the newest applied migration, 0 for a database without any."""
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()
        if exists is None:
            return 0
        version: int = conn.execute(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"
        ).fetchone()[0]
        return version

    def _check_version(self, current: int, *, readonly: bool) -> None:
        """Refuse a schema this code cannot read."""
        known = _migrations()[-1][0]
        if current > known:
            raise StoreError(
                f"database schema version {current} is newer than this tocsin ({known}); "
                "upgrade tocsin or restore a backup taken before the upgrade"
            )
        if readonly and current < known:
            raise StoreError(
                f"database schema version {current} is older than this tocsin ({known}); "
                "open it read-write once (start the daemon) to migrate it"
            )

    def _migrate(self, conn: sqlite3.Connection, *, current: int) -> None:
        """Apply every migration newer than `current` in order, each in its own transaction."""
        for version, script in _migrations():
            if version <= current:
                continue
            with _transaction(conn):
                # Checked inside the write lock, so two processes never apply one twice.
                if self._schema_version(conn) >= version:
                    continue
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (version, time.time()),
                )

    @property
    def _db(self) -> sqlite3.Connection:
        """Return the open connection, or say that there is none."""
        if self._conn is None:
            raise StoreError(f"the store {self._path} is not open")
        return self._conn

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        """Run one read, so callers see StoreError and never sqlite3's own exceptions."""
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"could not read from the database {self._path}: {exc}") from exc

    def close(self) -> None:
        """Close the connection; a second call does nothing."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def commit(self, batch: CommitBatch) -> None:
        """Write the batch in one transaction; the last snapshot of an id or path wins."""
        if not batch:
            return
        if self._readonly:
            raise StoreError(f"the store {self._path} was opened read-only")
        conn = self._db
        incidents = {incident.id: incident for incident in batch.incidents}
        offsets = {offset.path: offset for offset in batch.offsets}
        state = {(rule, key): (blob, seq) for rule, key, blob, seq in batch.state}
        started = time.perf_counter()
        try:
            with _transaction(conn):
                conn.executemany(_UPSERT_INCIDENT, map(_incident_row, incidents.values()))
                conn.executemany(
                    _UPSERT_OFFSET,
                    (
                        (
                            o.path,
                            _to_i64(o.identity.dev),
                            _to_i64(o.identity.ino),
                            o.identity.fp_len,
                            o.identity.fp_hash,
                            o.offset,
                        )
                        for o in offsets.values()
                    ),
                )
                _write_timeline(conn, "incident_history", "incident_id", batch.history)
                self._commit_correlation(conn, batch, state)
                self._commit_records(conn, batch)
                self._commit_groups(conn, batch)
                conn.executemany("DELETE FROM outbox WHERE id = ?", ((i,) for i in batch.delivered))
                now = time.time()
                conn.executemany(
                    _INSERT_OUTBOX,
                    ((o.channel, o.rule, json.dumps(o.body), now) for o in batch.outbox),
                )
        except (sqlite3.Error, ValueError, OverflowError) as exc:
            # ValueError covers text SQLite cannot encode (a path with undecodable bytes);
            # as a StoreError it is retried and reported instead of stopping the writer.
            raise StoreError(
                f"could not commit {len(incidents)} incidents, {len(batch.history)} history "
                f"entries, {len(offsets)} offsets and {len(batch.outbox)} outbox messages "
                f"to {self._path}: {exc}"
            ) from exc
        STORE_COMMIT_SECONDS.observe(time.perf_counter() - started)
        STORE_COMMITS.inc()

    @staticmethod
    def _commit_groups(conn: sqlite3.Connection, batch: CommitBatch) -> None:
        """Write notification group heads, then members; a head deleted takes its members."""
        heads = batch.groups
        conn.executemany(
            "INSERT INTO notify_groups (id, data) VALUES (?, ?) "
            "ON CONFLICT (id) DO UPDATE SET data = excluded.data",
            ((k, v) for k, v in heads.items() if v is not None),
        )
        gone = [(k,) for k, v in heads.items() if v is None]
        conn.executemany("DELETE FROM notify_groups WHERE id = ?", gone)
        conn.executemany("DELETE FROM notify_members WHERE group_id = ?", gone)
        conn.executemany(
            "INSERT INTO notify_members (group_id, incident_id, data) VALUES (?, ?, ?) "
            "ON CONFLICT (group_id, incident_id) DO UPDATE SET data = excluded.data",
            (
                (k, i, v)
                for (k, i), v in batch.members.items()
                if v is not None and heads.get(k, "") is not None  # not of a head deleted
            ),
        )
        conn.executemany(
            "DELETE FROM notify_members WHERE group_id = ? AND incident_id = ?",
            (pair for pair, v in batch.members.items() if v is None),
        )

    @staticmethod
    def _commit_records(conn: sqlite3.Connection, batch: CommitBatch) -> None:
        """Remediation runs, problems with their timelines, known errors, state documents."""
        runs = {run.id: run for run in batch.runs}  # the last snapshot of a run wins
        conn.executemany(_UPSERT_RUN, (_run_row(run) for run in runs.values()))
        conn.executemany(
            "INSERT INTO problems (id, state, data) VALUES (?, ?, ?) ON CONFLICT (id) "
            "DO UPDATE SET state = excluded.state, data = excluded.data",
            ((pid, state, data) for pid, (state, data) in batch.problems.items()),
        )
        _write_timeline(conn, "problem_history", "problem_id", batch.problem_history)
        conn.executemany(
            "INSERT INTO known_errors (name, data) VALUES (?, ?) ON CONFLICT (name) "
            "DO UPDATE SET data = excluded.data",
            ((k, v) for k, v in batch.known_errors.items() if v is not None),
        )
        conn.executemany(
            "DELETE FROM known_errors WHERE name = ?",
            ((k,) for k, v in batch.known_errors.items() if v is None),
        )
        conn.executemany(
            "INSERT INTO documents (name, data) VALUES (?, ?) ON CONFLICT (name) "
            "DO UPDATE SET data = excluded.data",
            batch.documents.items(),
        )
        conn.executemany(
            "INSERT INTO service_requests (id, state, data) VALUES (?, ?, ?) ON CONFLICT (id) "
            "DO UPDATE SET state = excluded.state, data = excluded.data",
            ((rid, state, data) for rid, (state, data) in batch.requests.items()),
        )
        _write_timeline(conn, "request_history", "request_id", batch.request_history)
        conn.executemany(
            "INSERT INTO access_grants (id, state, role, subject, data) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET state = excluded.state, data = excluded.data",
            ((gid, *row) for gid, row in batch.grants.items()),
        )
        conn.executemany(
            "INSERT INTO access_audit (time, action, role, subject, data) VALUES (?, ?, ?, ?, ?)",
            batch.audit,
        )

    @staticmethod
    def _commit_correlation(
        conn: sqlite3.Connection,
        batch: CommitBatch,
        state: dict[tuple[str, str], tuple[str | None, int]],
    ) -> None:
        """Forget stale rules' state, then apply digests, key states and the watermark."""
        conn.executemany(
            "DELETE FROM correlation_state WHERE rule = ?", ((r,) for r in batch.forget)
        )
        if batch.digests is not None:
            conn.execute("DELETE FROM correlation_rules")
            conn.executemany(
                "INSERT INTO correlation_rules (rule, digest) VALUES (?, ?)",
                batch.digests.items(),
            )
        conn.executemany(
            "INSERT INTO correlation_state (rule, key, state, seq) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (rule, key) DO UPDATE SET state = excluded.state, seq = excluded.seq",
            ((r, k, blob, seq) for (r, k), (blob, seq) in state.items() if blob is not None),
        )
        conn.executemany(
            "DELETE FROM correlation_state WHERE rule = ? AND key = ?",
            (key for key, (blob, _) in state.items() if blob is None),
        )
        if batch.watermark is not None and batch.watermark > -math.inf:
            conn.execute(
                "INSERT INTO engine_meta (name, value) VALUES ('watermark', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (batch.watermark,),
            )

    def load_correlation(self) -> CorrelationSnapshot:
        """Return the saved digests, key states by rule, and watermark."""
        snapshot = CorrelationSnapshot()
        for row in self._query("SELECT rule, digest FROM correlation_rules"):
            snapshot.digests[row["rule"]] = row["digest"]
        for row in self._query("SELECT rule, key, state, seq FROM correlation_state ORDER BY seq"):
            snapshot.rows.setdefault(row["rule"], []).append((row["key"], row["state"]))
            snapshot.seq = row["seq"]
        found = self._query("SELECT value FROM engine_meta WHERE name = 'watermark'")
        if found:
            snapshot.watermark = float(found[0]["value"])
        return snapshot

    def save_silence(self, silence_id: str, ends_at: float, data: str) -> None:
        """Write a silence now, durably: the API acknowledges it only after this returns."""
        self._save_record(
            f"silence {silence_id}",
            "INSERT INTO silences (id, ends_at, data) VALUES (?, ?, ?) ON CONFLICT (id) "
            "DO UPDATE SET ends_at = excluded.ends_at, data = excluded.data",
            (silence_id, ends_at, data),
        )

    def save_window(self, name: str, data: str) -> None:
        """Write a one-off maintenance window now, durably, like a silence."""
        self._save_record(
            f"window {name}",
            "INSERT INTO maintenance_windows (name, data) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET data = excluded.data",
            (name, data),
        )

    def load_outbox(self, channel: str, after: int, limit: int) -> list[tuple[int, Outgoing]]:
        """Return up to `limit` unsent messages of `channel` with id > `after`, oldest first."""
        rows = self._query(
            "SELECT id, rule, body FROM outbox WHERE channel = ? AND id > ? ORDER BY id LIMIT ?",
            (channel, after, limit),
        )
        return [
            (row["id"], Outgoing(channel, row["rule"], json.loads(row["body"]))) for row in rows
        ]

    def delete_outbox(self, ids: Sequence[int]) -> None:
        """Delete delivered messages now, durably, so a restart does not send them again."""
        if not ids:
            return
        if self._readonly:
            raise StoreError(f"the store {self._path} was opened read-only")
        conn = self._db
        try:
            with _transaction(conn):
                conn.executemany("DELETE FROM outbox WHERE id = ?", ((i,) for i in ids))
        except sqlite3.Error as exc:
            raise StoreError(
                f"could not delete {len(ids)} sent outbox messages from {self._path}: {exc}"
            ) from exc

    def count_outbox(self) -> dict[str, int]:
        """Return how many messages wait to be sent, per channel."""
        rows = self._query("SELECT channel, COUNT(*) FROM outbox GROUP BY channel")
        return {row[0]: row[1] for row in rows}

    def _save_record(self, what: str, sql: str, params: tuple[object, ...]) -> None:
        """Run one upsert in its own fsync'd transaction, as a StoreError if it fails."""
        if self._readonly:
            raise StoreError(f"the store {self._path} was opened read-only")
        conn = self._db
        try:
            with _transaction(conn):
                conn.execute(sql, params)
        except (sqlite3.Error, ValueError) as exc:
            raise StoreError(f"could not save {what} to {self._path}: {exc}") from exc

    def load_windows(self) -> list[str]:
        """Return every API-made maintenance window as JSON."""
        return [row["data"] for row in self._query("SELECT data FROM maintenance_windows")]

    def load_silences(self) -> list[str]:
        """Return every silence as JSON, the audit trail included."""
        return [row["data"] for row in self._query("SELECT data FROM silences")]

    def load_open_incidents(self) -> list[Incident]:
        """Return every open incident (not resolved or closed), oldest first, to resume."""
        return [_incident(row) for row in self._query(_OPEN_INCIDENTS)]

    def load_watermark(self) -> float | None:
        """Return the saved event-time watermark, or None before the first commit of one."""
        found = self._query("SELECT value FROM engine_meta WHERE name = 'watermark'")
        return float(found[0]["value"]) if found else None

    def load_resolved_since(self, since: float) -> list[Incident]:
        """Return the incidents resolved (not closed) at or after `since`, oldest first."""
        return [_incident(row) for row in self._query(_RESOLVED_SINCE, (since,))]

    def resolved_before(self, before: float, limit: int) -> list[Incident]:
        """Return up to `limit` incidents resolved before `before` and not closed yet."""
        rows = self._query(
            _SELECT_INCIDENTS + "WHERE state = 'resolved' AND resolved_at < ? ORDER BY id LIMIT ?",
            (before, limit),
        )
        return [_incident(row) for row in rows]

    def load_runs(self, states: Sequence[str]) -> list[RemediationRun]:
        """Return the runs in any of `states`, oldest first."""
        if not states:
            return []
        marks = ", ".join("?" * len(states))
        rows = self._query(_SELECT_RUNS + f"WHERE state IN ({marks}) ORDER BY id", tuple(states))
        return [_run(row) for row in rows]

    def recent_admissions(self, since: float) -> list[tuple[str, str, str, float]]:
        """Return (runbook, rule, key, time) of the runs admitted past the rate limit at or
        after `since`, oldest first. Read newest first, stopping an hour before `since` (ids
        follow time, give or take a clock step), so a long history is not scanned."""
        sql = "SELECT runbook, rule, key, state, created_at, started_at FROM runs ORDER BY id DESC"
        found = []
        try:
            for row in self._db.execute(sql):
                if row["created_at"] < since - _CLOCK_SLACK:
                    break
                at = row["started_at"] if row["started_at"] is not None else row["created_at"]
                if row["state"] in _ADMITTED and at >= since:
                    found.append((row["runbook"], row["rule"], row["key"], float(at)))
        except sqlite3.Error as exc:
            raise StoreError(f"could not read from the database {self._path}: {exc}") from exc
        return sorted(found, key=lambda admitted: admitted[3])

    def last_run(self, rule: str, key: str) -> RemediationRun | None:
        """Return the newest run a rule asked for with this key, or None."""
        rows = self._query(
            _SELECT_RUNS + "WHERE rule = ? AND key = ? ORDER BY id DESC LIMIT 1", (rule, key)
        )
        return _run(rows[0]) if rows else None

    def next_run_id(self) -> int:
        """Return one more than the largest stored run id."""
        largest: int = self._query("SELECT COALESCE(MAX(id), 0) FROM runs")[0][0]
        return largest + 1

    def list_runs(
        self, *, states: Sequence[str] | None = None, limit: int = 100, offset: int = 0
    ) -> list[RemediationRun]:
        """Return runs, newest first, optionally only those in `states`."""
        if states is not None and not states:
            return []
        where = f"WHERE state IN ({', '.join('?' * len(states))}) " if states else ""
        rows = self._query(
            _SELECT_RUNS + where + "ORDER BY id DESC LIMIT ? OFFSET ?",
            (*(states or ()), limit, offset),
        )
        return [_run(row) for row in rows]

    def get_run(self, run_id: int) -> RemediationRun | None:
        """Return one run, or None."""
        rows = self._query(_SELECT_RUNS + "WHERE id = ?", (run_id,))
        return _run(rows[0]) if rows else None

    def _timeline(self, table: str, column: str, record_id: int) -> list[HistoryEntry]:
        """Read one record's timeline from `table` (a timeline table of ours), oldest first."""
        rows = self._query(_SELECT_TIMELINE.format(column=column, table=table), (record_id,))
        return [
            HistoryEntry(
                incident_id=row[column],
                time=row["time"],
                from_state=row["from_state"],
                to_state=row["to_state"],
                actor=row["actor"],
                note=row["note"],
                kind=row["kind"],
            )
            for row in rows
        ]

    def problem_history(self, problem_id: int) -> list[HistoryEntry]:
        """Return a problem's timeline, oldest first."""
        return self._timeline("problem_history", "problem_id", problem_id)

    def load_records(self, table: str, states: Sequence[str] | None = None) -> list[str]:
        """Return the JSON of every row of `table`, oldest first, optionally in `states`."""
        name = _RECORD_TABLES[table]
        if states is not None and not states:
            return []
        where = f"WHERE state IN ({', '.join('?' * len(states))}) " if states else ""
        rows = self._query(_SELECT_DATA.format(name) + where + "ORDER BY id", tuple(states or ()))
        return [row["data"] for row in rows]

    def list_records(
        self,
        table: str,
        *,
        states: Sequence[str] | None = None,
        subject: str | None = None,
        role: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[str]:
        """Return rows of `table` (JSON), newest first; subject/role only for access_grants."""
        name = _RECORD_TABLES[table]
        where: list[str] = []
        params: list[object] = []
        if states is not None:
            if not states:
                return []
            where.append(f"state IN ({', '.join('?' * len(states))})")
            params.extend(states)
        for column, value in (("subject", subject), ("role", role)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        clause = ("WHERE " + " AND ".join(where) + " ") if where else ""
        rows = self._query(
            _SELECT_DATA.format(name) + clause + "ORDER BY id DESC LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [row["data"] for row in rows]

    def get_record(self, table: str, record_id: int) -> str | None:
        """Return one row of `table` (JSON), or None."""
        rows = self._query(
            _SELECT_DATA.format(_RECORD_TABLES[table]) + "WHERE id = ?", (record_id,)
        )
        return str(rows[0]["data"]) if rows else None

    def next_record_id(self, table: str) -> int:
        """Return one more than the largest id of `table`."""
        query = _MAX_ID.format(_RECORD_TABLES[table])
        largest: int = self._query(query)[0][0]
        return largest + 1

    def request_history(self, request_id: int) -> list[HistoryEntry]:
        """Return a service request's timeline, oldest first."""
        return self._timeline("request_history", "request_id", request_id)

    def list_audit(
        self,
        *,
        subject: str | None = None,
        role: str | None = None,
        action: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[str]:
        """Return access audit entries (JSON), newest first, filtered."""
        where: list[str] = []
        params: list[object] = []
        for column, value in (("subject", subject), ("role", role), ("action", action)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("time >= ?")
            params.append(since)
        if until is not None:
            where.append("time < ?")
            params.append(until)
        clause = ("WHERE " + " AND ".join(where) + " ") if where else ""
        rows = self._query(_SELECT_AUDIT + clause + "ORDER BY seq DESC LIMIT ?", (*params, limit))
        return [row["data"] for row in rows]

    def load_known_errors(self) -> list[str]:
        """Return every API-made known error (JSON), by name."""
        return [row["data"] for row in self._query("SELECT data FROM known_errors ORDER BY name")]

    def load_documents(self) -> dict[str, str]:
        """Return every named state document (JSON) by name."""
        return {row["name"]: row["data"] for row in self._query("SELECT name, data FROM documents")}

    def load_groups(self) -> dict[str, tuple[str, dict[int, str]]]:
        """Return every saved notification group by id: its head and its members by incident."""
        groups: dict[str, tuple[str, dict[int, str]]] = {
            row["id"]: (row["data"], {})
            for row in self._query("SELECT id, data FROM notify_groups")
        }
        members = self._query("SELECT group_id, incident_id, data FROM notify_members")
        for row in members:
            group = groups.get(row["group_id"])
            if group is not None:  # without its head a member cannot be restored
                group[1][row["incident_id"]] = row["data"]
        return groups

    def next_incident_id(self) -> int:
        """Return one more than the largest stored id (ids are never deleted or reused)."""
        largest: int = self._query("SELECT COALESCE(MAX(id), 0) FROM incidents")[0][0]
        return largest + 1

    def load_offsets(self) -> dict[str, FileOffset]:
        """Return the committed read position of every tailed path, by path."""
        rows = self._query("SELECT path, dev, ino, fp_len, fp_hash, byte_offset FROM file_offsets")
        return {
            row["path"]: FileOffset(
                path=row["path"],
                identity=FileIdentity(
                    dev=_from_i64(row["dev"]),
                    ino=_from_i64(row["ino"]),
                    fp_len=row["fp_len"],
                    fp_hash=row["fp_hash"],
                ),
                offset=row["byte_offset"],
            )
            for row in rows
        }

    def list_incidents(
        self,
        *,
        states: Sequence[str] | None = None,
        priorities: Sequence[str] | None = None,
        service: str | None = None,
        assignee: str | None = None,
        group: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Incident]:
        """Return incidents, newest (highest id) first, filtered by whichever filters are given."""
        where: list[str] = []
        params: list[object] = []
        for column, values in (("state", states), ("priority", priorities)):
            if values is None:
                continue
            if not values:
                return []
            where.append(f"{column} IN ({', '.join('?' * len(values))})")
            params.extend(values)
        for column, value in (
            ("service", service),
            ("assignee", assignee),
            ("assignment_group", group),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = _SELECT_INCIDENTS
        if where:
            sql += "WHERE " + " AND ".join(where) + " "
        rows = self._query(sql + "ORDER BY id DESC LIMIT ? OFFSET ?", (*params, limit, offset))
        return [_incident(row) for row in rows]

    def get_incident(self, incident_id: int) -> Incident | None:
        """Return one incident, or None when the id was never stored."""
        rows = self._query(_GET_INCIDENT, (incident_id,))
        return _incident(rows[0]) if rows else None

    def incident_history(self, incident_id: int) -> list[HistoryEntry]:
        """Return an incident's state changes in the order they were committed."""
        return self._timeline("incident_history", "incident_id", incident_id)
