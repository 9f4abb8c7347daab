"""The Remediator on its own: real SQLite store, real incident book, real child processes, a
virtual clock. What the safety kit decides shows in the run rows and the incident timeline."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

from testkit import eventually
from tocsin.engine.clock import ManualClock
from tocsin.model import Incident, IncidentChange, RemediationRun, RunRequest
from tocsin.records.incidents import IncidentBook
from tocsin.records.priority import PriorityMatrix
from tocsin.remediator import RemediationError, Remediator
from tocsin.runbooks.render import render_run
from tocsin.runbooks.settings import RunbookSettings, load_runbook_file
from tocsin.store.base import CommitBatch
from tocsin.store.sqlite import SqliteStore
from tocsin.store.writer import StoreWriter

T = TypeVar("T")

SCRIPTS = Path(__file__).resolve().parent / "runbooks" / "scripts"
RULE = "disk-full"


def settings_of(tmp_path: Path, text: str) -> RunbookSettings:
    """Load a runbooks file the way the daemon does (file:line errors and all)."""
    path = tmp_path / "runbooks.yaml"
    path.write_text(text.replace("SCRIPTS", str(SCRIPTS)).replace("TMP", str(tmp_path)))
    return load_runbook_file(path, brokers=())


class Life:
    """One life of the daemon's remediation side on a SQLite file, wired as app.py wires it;
    commit_changes and escalate stand for the daemon and record what they were given."""

    def __init__(
        self,
        *,
        writer: StoreWriter,
        book: IncidentBook,
        settings: RunbookSettings,
        clock: ManualClock,
        next_run: int,
    ) -> None:
        self.writer = writer
        self.book = book
        self.clock = clock
        self.changes: list[IncidentChange] = []
        self.escalated: list[int] = []
        self.remediator = Remediator(
            settings=settings,
            writer=writer,
            book=book,
            clock=clock,
            commit_changes=self._commit_changes,
            escalate=self._escalate,
            next_id=next_run,
        )

    async def _commit_changes(self, changes: list[IncidentChange]) -> asyncio.Future[None]:
        """Commit incident changes as the daemon does, and keep them to look at."""
        self.changes.extend(changes)
        return await self.writer.submit(CommitBatch.of(changes, []))

    async def _escalate(self, incident: Incident) -> None:
        """Note the page the daemon would send."""
        self.escalated.append(incident.id)

    async def open_incident(self, key: str) -> Incident:
        """Open (and commit) the incident a rule's run works on."""
        change = self.book.open(
            rule=RULE, key=key, title=f"disk full on {key}", impact="medium", urgency="medium",
            time=self.clock.now(), actor=f"rule:{RULE}",
        )  # fmt: skip
        await (await self._commit_changes([change]))
        return change.incident

    async def ask(
        self,
        runbook: str,
        key: str,
        *,
        target: str = "",
        on_success: str = "",
        on_failure: str = "",
    ) -> RemediationRun:
        """Ask for a run as a rule's remediate action does: number, commit, then admit."""
        request = RunRequest(
            runbook=runbook, rule=RULE, key=key, target=target or key,
            fingerprint=f"{RULE}:{key}",
            spec=render_run(self.remediator.settings.runbooks[runbook], {}).to_dict(),
            time=self.clock.now(), on_success=on_success, on_failure=on_failure,
        )  # fmt: skip
        (run,) = self.remediator.number([request])
        await (await self.writer.submit(CommitBatch(runs=[copy.copy(run)])))
        self.remediator.committed([run])
        return run

    async def stored(self, run_id: int) -> RemediationRun:
        """Return the run's row as the store has it once everything submitted is committed."""
        await self.writer.flush()
        run = await self.writer.call(lambda s: s.get_run(run_id))
        assert run is not None, f"run {run_id} is not in the store"
        return run

    async def until(self, run_id: int, state: str) -> RemediationRun:
        """Wait for the stored run to reach `state`."""

        async def reached() -> RemediationRun | None:
            run = await self.stored(run_id)
            return run if run.state == state else None

        return await eventually(reached, f"run {run_id} to be {state}")

    async def notes(self, incident_id: int) -> list[str]:
        """Return the remediation entries of the incident's timeline in the store."""
        await self.writer.flush()
        history = await self.writer.call(lambda s: s.incident_history(incident_id))
        return [h.note for h in history if h.kind == "remediation"]

    async def incident(self, incident_id: int) -> Incident:
        """Return the incident's row as the store has it once everything submitted is saved."""
        await self.writer.flush()
        incident = await self.writer.call(lambda s: s.get_incident(incident_id))
        assert incident is not None, f"incident {incident_id} is not in the store"
        return incident

    def nudge(self) -> None:
        """Wake the remediator's loop after a clock jump (the wall clock needs no nudge)."""
        self.remediator.committed([])


async def _with_reason(stored: Awaitable[RemediationRun], prefix: str) -> RemediationRun | None:
    """Return the run once its reason starts with `prefix` (the state alone may not move)."""
    run = await stored
    return run if run.reason.startswith(prefix) else None


@contextlib.asynccontextmanager
async def life(db: Path, settings: RunbookSettings, clock: ManualClock) -> AsyncIterator[Life]:
    """Start a life on `db` (resume, then the loop); on exit stop it as the daemon does."""
    async with StoreWriter(store=SqliteStore(path=db)) as writer:
        book = IncidentBook(
            priorities=PriorityMatrix(),
            next_id=await writer.call(lambda s: s.next_incident_id()),
            open_incidents=await writer.call(lambda s: s.load_open_incidents()),
        )
        parts = Life(
            writer=writer, book=book, settings=settings, clock=clock,
            next_run=await writer.call(lambda s: s.next_run_id()),
        )  # fmt: skip
        await parts.remediator.resume()
        loop = asyncio.create_task(parts.remediator.run(), name="test.remediation")
        try:
            yield parts
        finally:
            await parts.remediator.stop()
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)


RECORDING = """\
runbooks:
  - name: clean
    steps:
      - exec: {argv: [/bin/sh, SCRIPTS/append_args.sh, TMP/ran, cleaned]}
  - name: guarded
    approval: {ttl: 10m}
    steps:
      - exec: {argv: [/bin/sh, SCRIPTS/append_args.sh, TMP/ran, guarded]}
"""


async def test_a_run_starts_resolves_its_incident_and_leaves_a_timeline(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Test the plain path: the script runs, the run succeeds, on_success resolves the incident
    through commit_changes, and each step is on the incident's timeline."""
    settings = settings_of(tmp_path, RECORDING)
    async with life(tmp_path / "tocsin.db", settings, clock) as parts:
        incident = await parts.open_incident("web1")
        run = await parts.ask("clean", "web1", on_success="resolve")
        done = await parts.until(run.id, "succeeded")
        assert (tmp_path / "ran").read_text() == "cleaned\n"
        assert done.incident_id == incident.id
        assert done.result is not None
        assert done.result["ok"] is True
        assert done.reason.startswith("exit 0 in ")
        resolved = await eventually(
            lambda: [c for c in parts.changes if c.op == "resolve"], "the resolve"
        )
        assert [(c.incident.id, c.actor, c.note) for c in resolved] == [
            (incident.id, "runbook:clean", f"run {run.id} succeeded")
        ]
        stored = await parts.incident(incident.id)
        assert (stored.state, stored.resolved_at) == ("resolved", clock.now())
        notes = await parts.notes(incident.id)
        assert notes[0] == (
            f"run {run.id} of clean running: started: exec /bin/sh {SCRIPTS}/append_args.sh "
            f"{tmp_path}/ran cleaned in / (timeout 30s)"
        )
        assert notes[1].startswith(f"run {run.id} of clean succeeded: exit 0 in ")


async def test_a_run_needing_approval_waits_and_runs_once_approved(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Test the approval gate: awaiting_approval with its expiry, nothing runs; approve runs
    it and says who approved it."""
    settings = settings_of(tmp_path, RECORDING)
    async with life(tmp_path / "tocsin.db", settings, clock) as parts:
        incident = await parts.open_incident("web1")
        run = await parts.ask("guarded", "web1")
        waiting = await parts.until(run.id, "awaiting_approval")
        assert waiting.approval_expires == clock.now() + 600
        assert waiting.reason == (
            "awaiting approval to run guarded until 2026-11-25T00:10:00Z (10m); "
            "it is dropped unless approved"
        )
        assert not (tmp_path / "ran").exists()
        with pytest.raises(RemediationError) as unknown:
            await parts.remediator.approve(run.id + 1, actor="alice")
        assert unknown.value.status == 404
        clock.advance_to(clock.now() + 300)
        approved = await parts.remediator.approve(run.id, actor="alice", note="go")
        assert approved.decided_by == "alice"
        done = await parts.until(run.id, "succeeded")
        assert (tmp_path / "ran").read_text() == "guarded\n"
        assert done.started_at == clock.now()
        notes = await parts.notes(incident.id)
        assert notes[1:3] == [
            f"run {run.id} of guarded awaiting_approval: approved by alice: go",
            f"run {run.id} of guarded running: started (approved by alice): exec /bin/sh {SCRIPTS}/append_args.sh "
            f"{tmp_path}/ran guarded in / (timeout 30s)",
        ]
        with pytest.raises(RemediationError) as again:
            await parts.remediator.approve(run.id, actor="bob")
        assert again.value.status == 404


async def test_an_approval_expires_on_the_virtual_clock_and_a_rejected_run_never_runs(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Test the approval TTL (expired, then too late to approve) and reject."""
    settings = settings_of(tmp_path, RECORDING)
    async with life(tmp_path / "tocsin.db", settings, clock) as parts:
        late = await parts.ask("guarded", "web1")
        refused = await parts.ask("guarded", "web2")
        await parts.until(late.id, "awaiting_approval")
        await parts.until(refused.id, "awaiting_approval")
        rejected = await parts.remediator.reject(refused.id, actor="bob", note="not now")
        assert (rejected.state, rejected.reason) == ("rejected", "rejected by bob: not now")
        clock.advance_to(clock.now() + 599)
        parts.nudge()
        await asyncio.sleep(0.05)  # the loop had its chance: 1s before the TTL, nothing expires
        assert (await parts.stored(late.id)).state == "awaiting_approval"
        clock.advance_to(clock.now() + 1)
        parts.nudge()
        expired = await parts.until(late.id, "expired")
        assert (expired.reason, expired.finished_at) == ("nobody approved it in time", clock.now())
        with pytest.raises(RemediationError) as too_late:
            await parts.remediator.approve(late.id, actor="alice")
        assert too_late.value.status == 404
        assert (await parts.stored(refused.id)).state == "rejected"
        assert not (tmp_path / "ran").exists()


async def test_the_kill_switch_refuses_new_runs_stops_running_ones_and_survives_a_restart(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Test engage: a running run is interrupted (its process killed), a new one refused with
    the reason; the switch is saved, and runs go again once released."""
    settings = settings_of(
        tmp_path,
        RECORDING + "  - name: slow\n    steps:\n"
        "      - exec: {argv: [/bin/sh, SCRIPTS/wait_for_file.sh, TMP/never], timeout: 30s}\n",
    )
    db = tmp_path / "tocsin.db"
    async with life(db, settings, clock) as parts:
        slow = await parts.ask("slow", "web1")
        await parts.until(slow.id, "running")
        switch = await parts.remediator.engage(actor="alice", why="runaway")
        assert (switch["engaged"], switch["by"], switch["why"]) == (True, "alice", "runaway")
        stopped = await parts.stored(slow.id)
        assert (stopped.state, stopped.reason) == (
            "interrupted", "stopped by the kill switch: runaway"
        )  # fmt: skip
        refused = await parts.until((await parts.ask("clean", "web2")).id, "refused")
        assert refused.reason == (
            "refused: kill switch engaged by alice at 2026-11-25T00:00:00Z: runaway"
        )
    assert not (tmp_path / "ran").exists()
    async with life(db, settings, clock) as parts:
        assert parts.remediator.kill_switch()["engaged"] is True
        released = await parts.remediator.release(actor="admin")
        assert released["engaged"] is False
        await parts.until((await parts.ask("clean", "web2")).id, "succeeded")
    assert (tmp_path / "ran").read_text() == "cleaned\n"


async def test_a_dry_run_records_what_would_have_run(tmp_path: Path, clock: ManualClock) -> None:
    """Test the runbook's dry_run: the run ends dry_run with its steps described, and the
    program never starts."""
    settings = settings_of(
        tmp_path, RECORDING.replace("  - name: clean\n", "  - name: clean\n    dry_run: true\n")
    )
    async with life(tmp_path / "tocsin.db", settings, clock) as parts:
        run = await parts.until((await parts.ask("clean", "web1")).id, "dry_run")
        assert run.reason.startswith("dry run, nothing ran: would run exec /bin/sh ")
        assert run.result is None
    assert not (tmp_path / "ran").exists()


LIMITED = """\
runbooks:
  - name: limited
    rate_limit: {runs: 1, per: 1h}
    steps:
      - exec: {argv: [/bin/true]}
"""


async def test_the_rate_limit_refuses_per_rule_and_key_until_the_window_passes(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Test the rate limit on the virtual clock: a second run of the key within the hour is
    refused saying when the next is allowed, another key runs, and after the hour it runs;
    the window survives a restart."""
    settings = settings_of(tmp_path, LIMITED)
    db = tmp_path / "tocsin.db"
    async with life(db, settings, clock) as parts:
        first = await parts.until((await parts.ask("limited", "web1")).id, "succeeded")
        clock.advance_to(clock.now() + 1800)
        second = await parts.until((await parts.ask("limited", "web1")).id, "refused")
        assert second.reason == (
            "rate limited: 1 run of limited for rule disk-full key web1 within 1h; "
            "next allowed in 30m"
        )
        await parts.until((await parts.ask("limited", "web2")).id, "succeeded")
    async with life(db, settings, clock) as parts:
        clock.advance_to(clock.now() + 1799)
        third = await parts.until((await parts.ask("limited", "web1")).id, "refused")
        assert third.reason.endswith("next allowed in 1s")
        clock.advance_to(clock.now() + 1)
        fourth = await parts.until((await parts.ask("limited", "web1")).id, "succeeded")
        assert fourth.started_at == first.started_at + 3600  # type: ignore[operator]


FLAKY = """\
runbooks:
  - name: flaky
    breaker: {failures: 2, reset: 1h}
    steps:
      - exec: {argv: [/bin/sh, SCRIPTS/succeed_if_exists.sh, TMP/healthy]}
"""


async def test_the_breaker_opens_after_failures_pages_refuses_and_closes_on_a_good_trial(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Test the breaker on the virtual clock: two failures open it (an incident pages a
    person; on_failure escalates), the next run is refused, and after the reset a
    successful trial run closes it and resolves that incident."""
    settings = settings_of(tmp_path, FLAKY)
    page_fp = "remediation:flaky:db1"
    async with life(tmp_path / "tocsin.db", settings, clock) as parts:
        incident = await parts.open_incident("web1")
        for _ in range(2):
            failed = await parts.until(
                (await parts.ask("flaky", "web1", target="db1", on_failure="escalate")).id,
                "failed",
            )
            assert failed.reason.startswith("exit 1 in ")
        page = await eventually(lambda: parts.book.get(page_fp), "the breaker's page")
        assert page.title == (
            "Runbook flaky stopped for db1: circuit breaker for target db1 opened after "
            "2 consecutive failures; a trial run is allowed from 2026-11-25T01:00:00Z"
        )
        assert (page.priority, page.labels) == ("P1", {"runbook": "flaky", "target": "db1"})
        await eventually(lambda: parts.escalated == [incident.id] * 2, "on_failure: escalate")
        clock.advance_to(clock.now() + 1200)
        refused = await parts.until((await parts.ask("flaky", "web1", target="db1")).id, "refused")
        assert refused.reason == (
            "refused: the circuit breaker of flaky for target db1 is open after "
            "2 consecutive failures; a trial run is allowed in 40m"
        )
        other = await parts.until((await parts.ask("flaky", "web2", target="db2")).id, "failed")
        assert other.target == "db2"  # another target's breaker is its own
        clock.advance_to(clock.now() + 2400)
        (tmp_path / "healthy").touch()
        await parts.until((await parts.ask("flaky", "web1", target="db1")).id, "succeeded")
        await eventually(lambda: parts.book.get(page_fp) is None, "the page to resolve")
        assert (await parts.incident(page.id)).state == "resolved"
        closed = [c for c in parts.changes if c.incident.id == page.id and c.op == "resolve"]
        assert [c.note for c in closed] == [
            "circuit breaker for target db1 closed: the trial run succeeded"
        ]


SLOW = """\
runbooks:
  - name: slow
    steps:
      - exec: {argv: [/bin/sh, SCRIPTS/wait_for_file.sh, TMP/go], timeout: 30s}
"""


async def test_a_run_cut_off_by_a_stop_is_interrupted_after_the_restart_and_a_queued_one_runs(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Test resume: the run that was running is marked interrupted, not run again; the run
    that waited for a slot is admitted again and runs."""
    settings = settings_of(tmp_path, SLOW)
    db = tmp_path / "tocsin.db"
    async with life(db, settings, clock) as parts:
        incident = await parts.open_incident("web1")
        cut = await parts.ask("slow", "web1")
        await parts.until(cut.id, "running")
        queued = await parts.ask("slow", "web2")
        waiting = await eventually(
            lambda: _with_reason(parts.stored(queued.id), "queued: "), "the run to queue"
        )
        assert (waiting.state, waiting.reason) == (
            "queued", "queued: 1 run of slow running (limit 1), 0 waiting ahead"
        )  # fmt: skip
    async with StoreWriter(store=SqliteStore(path=db)) as writer:
        runs = await writer.call(lambda s: s.load_runs(("running", "queued")))
        assert [(r.id, r.state) for r in runs] == [(cut.id, "running"), (queued.id, "queued")]
    (tmp_path / "go").touch()
    clock.advance_to(clock.now() + 60)
    async with life(db, settings, clock) as parts:
        interrupted = await parts.stored(cut.id)
        assert (interrupted.state, interrupted.reason, interrupted.finished_at) == (
            "interrupted", "the daemon stopped while it ran; not run again", clock.now()
        )  # fmt: skip
        await parts.until(queued.id, "succeeded")
        notes = await parts.notes(incident.id)
        assert notes[-1] == (
            f"run {cut.id} of slow interrupted: the daemon stopped while it ran; not run again"
        )
        assert (await parts.stored(cut.id)).state == "interrupted"


async def test_a_pending_approval_survives_a_restart(tmp_path: Path, clock: ManualClock) -> None:
    """Test that a run awaiting approval when the daemon stopped can still be approved after
    it, within its original TTL, and then runs."""
    settings = settings_of(tmp_path, RECORDING)
    db = tmp_path / "tocsin.db"
    async with life(db, settings, clock) as parts:
        run = await parts.until((await parts.ask("guarded", "web1")).id, "awaiting_approval")
    clock.advance_to(clock.now() + 60)
    async with life(db, settings, clock) as parts:
        assert (await parts.stored(run.id)).state == "awaiting_approval"
        await parts.remediator.approve(run.id, actor="alice")
        await parts.until(run.id, "succeeded")
    assert (tmp_path / "ran").read_text() == "guarded\n"
