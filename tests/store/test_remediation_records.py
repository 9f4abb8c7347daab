"""The store keeps remediation runs, problems, known errors and named state documents."""

from __future__ import annotations

from pathlib import Path

from tocsin.model import RemediationRun
from tocsin.store.base import CommitBatch, HistoryEntry
from tocsin.store.sqlite import SqliteStore


def _store(path: Path) -> SqliteStore:
    store = SqliteStore(path=path)
    store.open()
    return store


def _run(run_id: int, state: str = "queued", **kw: object) -> RemediationRun:
    fields: dict[str, object] = {
        "id": run_id,
        "runbook": "restart",
        "rule": "r",
        "key": "web1",
        "target": "web1",
        "incident_id": 3,
        "state": state,
        "created_at": 10.0,
        "spec": {"steps": [{"exec": {"argv": ["/bin/true", "; rm -rf /"]}}]},
    }
    fields.update(kw)
    return RemediationRun(**fields)  # type: ignore[arg-type]


def test_runs_round_trip_and_the_last_snapshot_wins(tmp_path: Path) -> None:
    """Test run upserts, listing by state and the id counter, across a reopen."""
    store = _store(tmp_path / "s.db")
    first = _run(1)
    done = _run(1, "succeeded", started_at=11.0, finished_at=12.0, result={"ok": True},
                on_success="resolve", dry_run=True, decided_by="alice")  # fmt: skip
    store.commit(
        CommitBatch(runs=[first, done, _run(2, "awaiting_approval", approval_expires=99.0)])
    )
    store.close()
    again = _store(tmp_path / "s.db")
    assert again.get_run(1) == done
    assert [r.id for r in again.load_runs(["queued", "awaiting_approval"])] == [2]
    assert [r.id for r in again.list_runs()] == [2, 1]
    assert [r.id for r in again.list_runs(states=["succeeded"])] == [1]
    assert again.list_runs(states=[]) == []
    assert again.next_run_id() == 3
    assert again.get_run(9) is None


def test_recent_admissions_are_the_runs_the_rate_limit_counted(tmp_path: Path) -> None:
    """Test the rebuild source: runs that started or queued at or after `since`, oldest
    first, by start time (creation time for queued ones); not refused, dry or expired runs;
    the read stops an hour before `since` (ids follow time)."""
    store = _store(tmp_path / "s.db")
    store.commit(
        CommitBatch(
            runs=[
                _run(1, "succeeded", created_at=5000.0, started_at=5600.0),  # behind run 2: unread
                _run(2, "succeeded", created_at=100.0, started_at=101.0),  # an hour earlier
                _run(3, "failed", created_at=6000.0, started_at=6003.0, key="db1"),
                _run(4, "refused", created_at=6100.0),
                _run(5, "dry_run", created_at=6200.0),
                _run(6, "queued", created_at=6300.0, rule="other"),
                _run(7, "interrupted", created_at=6400.0, started_at=6401.0),
                _run(8, "running", created_at=6500.0, started_at=6500.5),
                _run(9, "expired", created_at=6600.0),
                _run(10, "succeeded", created_at=5400.0, started_at=5500.0),
            ]
        )
    )
    assert store.recent_admissions(5500.0) == [
        ("restart", "r", "web1", 5500.0),
        ("restart", "r", "db1", 6003.0),
        ("restart", "other", "web1", 6300.0),
        ("restart", "r", "web1", 6401.0),
        ("restart", "r", "web1", 6500.5),
    ]
    assert store.recent_admissions(7000.0) == []


def test_problems_known_errors_and_documents(tmp_path: Path) -> None:
    """Test problems with their timeline, known error upsert and delete, documents."""
    store = _store(tmp_path / "s.db")
    store.commit(
        CommitBatch(
            problems={1: ("new", '{"id": 1}'), 2: ("resolved", '{"id": 2}')},
            problem_history=[HistoryEntry(1, 5.0, None, "new", "tocsin:recurrence", "3 in 1h")],
            known_errors={"disk": '{"name": "disk"}', "old": '{"name": "old"}'},
            documents={"kill_switch": '{"engaged": false}'},
        )
    )
    store.commit(
        CommitBatch(
            problems={1: ("investigating", '{"id": 1, "x": 1}')},
            known_errors={"old": None},
            documents={"kill_switch": '{"engaged": true}'},
        )
    )
    assert store.load_records("problems", ["investigating", "new"]) == ['{"id": 1, "x": 1}']
    assert store.list_records("problems") == ['{"id": 2}', '{"id": 1, "x": 1}']
    assert store.get_record("problems", 2) == '{"id": 2}'
    assert [(h.to_state, h.actor) for h in store.problem_history(1)] == [
        ("new", "tocsin:recurrence")
    ]
    assert store.next_record_id("problems") == 3
    assert store.load_known_errors() == ['{"name": "disk"}']
    assert store.load_documents() == {"kill_switch": '{"engaged": true}'}
