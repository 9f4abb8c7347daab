"""The daemon's remediation side: committed run requests go through the safety kit, run,
and leave their record on the run and on the incident's timeline.

A run is committed (state `queued`) with the batch whose rule asked for it, and only then
started, so a crash never loses one and never starts one twice: a run found `running` at
start-up is marked `interrupted`, not run again (its steps may have acted already).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import replace
from typing import Any

import structlog

from tocsin import obs
from tocsin.engine.clock import Clock
from tocsin.engine.muting import Muter
from tocsin.model import (
    RUN_FINISHED,
    Incident,
    IncidentChange,
    RemediationRun,
    RunRequest,
)
from tocsin.records.incidents import IncidentBook, LifecycleError
from tocsin.records.priority import RATINGS
from tocsin.runbooks.execute import Publish, RunResult, execute
from tocsin.runbooks.render import RenderedRun, RenderError, render_run
from tocsin.runbooks.safety import Gate, Limits, Run, SafetyError, Transition, Verdict
from tocsin.runbooks.settings import Runbook, RunbookSettings
from tocsin.store.base import CommitBatch, HistoryEntry
from tocsin.store.writer import StoreWriter

__all__ = ["RemediationError", "Remediator", "limits_of"]

log = structlog.get_logger("tocsin")

_DOCUMENT = "remediation"  # the store document with the kill switch, breakers, approvals
_PAGE_RULE = "remediation"  # the rule id of the incidents an open breaker raises
_EXCERPT = 2000  # characters of a step's output put on the incident timeline
_ACTIVE = ("queued", "awaiting_approval", "running")

# Commit incident changes with what they set off (notifications, escalation).
CommitChanges = Callable[[list[IncidentChange]], Awaitable[asyncio.Future[None]]]
# Climb the incident's escalation one level now (a remediation's on_failure: escalate).
Escalate = Callable[[Incident], Awaitable[None]]


class RemediationError(Exception):
    """An operator's request the remediator cannot do; `status` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def limits_of(runbooks: Mapping[str, Runbook]) -> list[Limits]:
    """The safety kit's view of each configured runbook."""
    return [
        Limits(
            runbook=rb.name,
            concurrency=rb.concurrency,
            rate_runs=rb.rate_limit.runs if rb.rate_limit else None,
            rate_per=rb.rate_limit.per if rb.rate_limit else 0.0,
            breaker_failures=rb.breaker.failures if rb.breaker else None,
            breaker_reset=rb.breaker.reset if rb.breaker else None,
            dry_run=rb.dry_run,
            approval_ttl=rb.approval_ttl,
        )
        for rb in runbooks.values()
    ]


class Remediator:
    """Admits, runs and records remediation runs; one for the daemon's life."""

    def __init__(
        self,
        *,
        settings: RunbookSettings,
        writer: StoreWriter,
        book: IncidentBook,
        clock: Clock,
        commit_changes: CommitChanges,
        escalate: Escalate | None = None,
        publish: Publish | None = None,
        muter: Muter | None = None,
        next_id: int = 1,
    ) -> None:
        self.settings = settings
        self.gate = Gate(limits_of(settings.runbooks), dry_run=settings.remediation.dry_run)
        self._writer = writer
        self._book = book
        self._clock = clock
        self._commit_changes = commit_changes
        self._escalate = escalate
        self._publish = publish
        self._muter = muter
        self._next_id = next_id
        self._active: dict[int, RemediationRun] = {}  # not finished: queued, awaiting, running
        self._fresh: list[RemediationRun] = []  # committed, not yet admitted
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._clear_checks: dict[int, float] = {}  # run id -> when the clear must have come
        self._saved_clears: dict[int, float] = {}
        self._lock = asyncio.Lock()  # one decision at a time: admit, approve, kill switch
        # Told when a run ends (the service desk: fulfilment and provisioning runs).
        self.on_finish: Callable[[RemediationRun], Coroutine[Any, Any, None]] | None = None
        self._followers: set[asyncio.Task[None]] = set()
        self._woken = asyncio.Event()

    # -- from the engine's commit path (synchronous) ----------------------------------------

    def number(self, requests: Iterable[RunRequest]) -> list[RemediationRun]:
        """Turn a batch's requests into queued runs with ids, to commit with the batch."""
        runs: list[RemediationRun] = []
        now = self._clock.now()
        busy = {(r.runbook, r.rule, r.key) for r in (*self._active.values(), *self._fresh)}
        for request in requests:
            what = (request.runbook, request.rule, request.key)
            if what in busy:
                obs.REMEDIATION_VERDICTS.labels(request.runbook, "already_active").inc()
                continue  # a run for this rule and key is queued, waiting or running already
            busy.add(what)
            incident = self._book.get(request.fingerprint)
            runs.append(
                RemediationRun(
                    id=self._next_id,
                    runbook=request.runbook,
                    rule=request.rule,
                    key=request.key,
                    target=request.target,
                    incident_id=incident.id if incident is not None else None,
                    state="queued",
                    created_at=now,
                    spec=request.spec,
                    dry_run=request.dry_run,
                    on_success=request.on_success,
                    on_failure=request.on_failure,
                    reason="asked for by rule " + request.rule,
                )
            )
            self._next_id += 1
        return runs

    async def ask(
        self, runbook: str, variables: Mapping[str, Any], *, rule: str, key: str, target: str
    ) -> RemediationRun:
        """Run a runbook for the service desk (a request's fulfilment, an access grant):
        rendered now, committed, then admitted like a rule's. RenderError if it cannot be."""
        found = self.settings.runbooks.get(runbook)
        if found is None:
            raise RenderError(f"runbook {runbook} is not configured")
        spec = render_run(found, variables).to_dict()
        run = RemediationRun(
            id=self._next_id,
            runbook=runbook,
            rule=rule,
            key=key,
            target=target,
            incident_id=None,
            state="queued",
            created_at=self._clock.now(),
            spec=spec,
            reason=f"asked for by {rule}",
        )
        self._next_id += 1
        committed = await self._writer.submit(CommitBatch(runs=[copy.copy(run)]))
        await committed
        self.committed([run])
        return run

    def committed(self, runs: list[RemediationRun]) -> None:
        """The runs are in the store: admit them (a done-callback; cheap)."""
        self._fresh.extend(runs)
        self._woken.set()

    # -- the loop -----------------------------------------------------------------------------

    async def resume(self) -> None:
        """Load the safety state and the unfinished runs of the last life."""
        documents = await self._writer.call(lambda s: s.load_documents())
        if _DOCUMENT in documents:
            try:
                saved = json.loads(documents[_DOCUMENT])
                self._saved_clears = {
                    int(k): float(v) for k, v in dict(saved.pop("clear_checks", {})).items()
                }
                self.gate.restore(saved)
            except (SafetyError, ValueError, TypeError, AttributeError) as exc:
                log.error("remediation_state_unreadable", problem=str(exc))
        now = self._clock.now()
        window = self.gate.rate_window()
        if window > 0:
            since = now - window
            admitted = await self._writer.call(lambda s: s.recent_admissions(since))
            self.gate.replay_starts(admitted)
        runs = await self._writer.call(lambda s: s.load_runs(_ACTIVE))
        pending = {p.run_id for _, p in self.gate.pending()}
        for run in runs:
            if run.state == "running":
                await self._finish_state(
                    run, "interrupted", "the daemon stopped while it ran; not run again", now
                )
            elif run.state == "awaiting_approval" and str(run.id) in pending:
                self._active[run.id] = run  # the gate remembers its approval request
            else:
                self._fresh.append(replace(run, state="queued"))
        for run_id, due in self._saved_clears.items():
            self._clear_checks[run_id] = due
        self._woken.set()

    async def run(self) -> None:
        """Admit new runs, expire approvals, check clears; forever (cancel to stop)."""
        while True:
            self._woken.clear()
            await self._admit_fresh()
            await self._expire(self._clock.now())
            await self._check_clears(self._clock.now())
            wake = min(
                (t for t in (self.gate.next_expiry(), *self._clear_checks.values()) if t),
                default=math.inf,
            )
            timeout = None if wake == math.inf else max(0.05, min(1.0, wake - self._clock.now()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), timeout)

    async def stop(self) -> None:
        """Cancel running runs (their process groups are killed); they stay `running` in the
        store, so the next start marks them interrupted."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _admit_fresh(self) -> None:
        while self._fresh:
            run = self._fresh.pop(0)
            async with self._lock:
                await self._admit(run, run.decided_by or None)  # an approval stands

    async def _admit(self, run: RemediationRun, approved_by: str | None) -> None:
        """Ask the safety kit what to do with a run, and do it."""
        now = self._clock.now()
        if run.runbook not in self.settings.runbooks:
            await self._finish_state(
                run, "refused", f"runbook {run.runbook} is not configured", now
            )
            return
        verdict = self.gate.admit(_gate_run(run, approved_by), now)
        await self._apply(run, verdict, now)

    async def _apply(self, run: RemediationRun, verdict: Verdict, now: float) -> None:
        kind = verdict.kind
        obs.REMEDIATION_VERDICTS.labels(run.runbook, kind).inc()
        if kind == "run":
            run.state, run.reason, run.started_at = "running", verdict.reason or "started", now
            self._active[run.id] = run
            # Saved before the program starts: after a crash it is `interrupted`, never rerun.
            why = f" ({verdict.reason})" if verdict.reason not in ("", "started") else ""
            await self._save(run, now, f"started{why}: {'; '.join(_describe(run))}", wait=True)
            self._tasks[run.id] = asyncio.create_task(
                self._execute(run), name=f"tocsin.remediation.{run.id}"
            )
        elif kind == "queued":
            run.state, run.reason = "queued", verdict.reason
            self._active[run.id] = run
            await self._save(run, now, verdict.reason)
        elif kind == "await_approval":
            run.state, run.reason = "awaiting_approval", verdict.reason
            expires = [p.expires_at for _, p in self.gate.pending() if p.run_id == str(run.id)]
            run.approval_expires = expires[0] if expires else None
            self._active[run.id] = run
            await self._save(run, now, verdict.reason, document=True)
        elif kind == "dry_run":
            run.dry_run = True
            await self._finish_state(
                run, "dry_run", f"dry run, nothing ran: would run {'; '.join(_describe(run))}", now
            )
        else:
            await self._finish_state(run, "refused", verdict.reason, now)

    async def _execute(self, run: RemediationRun) -> None:
        """Run it, record how it went, and follow its on_success / on_failure."""
        try:
            result = await execute(
                RenderedRun.from_dict(run.spec),
                max_output=self.settings.remediation.max_output,
                publish=self._publish,
                session=None,
                clock=self._clock,
            )
        except asyncio.CancelledError:
            self.gate.finish(str(run.id), None, self._clock.now())
            raise
        except Exception as exc:  # noqa: BLE001 - a run that cannot run is a failed run
            result = None
            reason = f"cannot run: {exc or type(exc).__name__}"
        now = self._clock.now()
        self._tasks.pop(run.id, None)
        async with self._lock:
            ok = result is not None and result.ok
            transition = self.gate.finish(str(run.id), ok, now)
            run.result = result.to_dict() if result is not None else None
            run.finished_at = now
            summary = result.summary if result is not None else reason
            obs.REMEDIATION_RUNS.labels(run.runbook, "succeeded" if ok else "failed").inc()
            await self._finish_state(
                run, "succeeded" if ok else "failed", summary, now, output=_output(result)
            )
            if transition is not None:
                await self._breaker_moved(run, transition, now)
            for waiting, verdict in self.gate.start_waiting(now):
                queued = self._active.get(int(waiting.id))
                if queued is not None:
                    await self._apply(queued, verdict, now)
            await self._outcome(run, ok, now)

    async def _outcome(self, run: RemediationRun, ok: bool, now: float) -> None:
        """on_success: resolve, or wait for the clear; on_failure: escalate or raise priority."""
        incident = self._book.by_id(run.incident_id) if run.incident_id is not None else None
        if incident is None or not incident.is_open:
            return
        actor = f"runbook:{run.runbook}"
        if ok and run.on_success == "resolve":
            await self._change(
                lambda: self._book.transition(
                    incident, "resolved", time=now, actor=actor, note=f"run {run.id} succeeded"
                )
            )
        elif ok and run.on_success.startswith("wait_clear:"):
            self._clear_checks[run.id] = now + float(run.on_success.split(":", 1)[1])
            await self._save_document()
            self._woken.set()
        elif not ok:
            await self._failed(run, incident, now)

    async def _failed(self, run: RemediationRun, incident: Incident, now: float) -> None:
        actor = f"runbook:{run.runbook}"
        if run.on_failure == "escalate" and self._escalate is not None:
            await self._escalate(incident)
        elif run.on_failure.startswith("priority:"):
            wanted = run.on_failure.split(":", 1)[1].split("/")
            impact, urgency = (
                _higher(incident.impact, wanted[0]),
                _higher(incident.urgency, wanted[1]),
            )
            await self._change(
                lambda: self._book.rate(
                    incident, impact=impact, urgency=urgency, time=now, actor=actor,
                    note=f"run {run.id} did not fix it",
                )
            )  # fmt: skip

    async def _check_clears(self, now: float) -> None:
        """A run whose on_success waits for the clear event: failed if it did not come."""
        for run_id, due in list(self._clear_checks.items()):
            if due > now:
                continue
            del self._clear_checks[run_id]
            stored = await self._writer.call(lambda s, i=run_id: s.get_run(i))  # type: ignore[misc]
            if stored is None or stored.incident_id is None:
                continue
            incident = self._book.by_id(stored.incident_id)
            if incident is not None and incident.is_open:
                stored.state = "failed"
                stored.reason = "succeeded, but the clear event did not come in time"
                await self._save(stored, now, stored.reason)
                obs.REMEDIATION_RUNS.labels(stored.runbook, "failed").inc()
                await self._failed(stored, incident, now)
            await self._save_document()

    async def _breaker_moved(self, run: RemediationRun, moved: Transition, now: float) -> None:
        """Page a person when a breaker opens (an incident of its own); resolve it on close."""
        key = f"{run.runbook}:{moved.target}"
        if moved.after == "open":
            obs.REMEDIATION_BREAKERS_OPENED.labels(run.runbook).inc()
            if self._book.get(f"{_PAGE_RULE}:{key}") is None:
                await self._change(
                    lambda: self._book.open(
                        rule=_PAGE_RULE,
                        key=key,
                        title=f"Runbook {run.runbook} stopped for {moved.target}: {moved.reason}",
                        impact="high",
                        urgency="high",
                        category="remediation",
                        labels={"runbook": run.runbook, "target": moved.target},
                        time=now,
                        actor=f"runbook:{run.runbook}",
                    )
                )
        elif moved.after == "closed":
            opened = self._book.get(f"{_PAGE_RULE}:{key}")
            if opened is not None:
                await self._change(
                    lambda: self._book.transition(
                        opened, "resolved", time=now, actor=f"runbook:{run.runbook}",
                        note=moved.reason,
                    )
                )  # fmt: skip
        await self._save_document()

    async def _expire(self, now: float) -> None:
        expired = self.gate.expired(now)
        if not expired:
            return
        async with self._lock:
            for run_id in expired:
                run = self._active.get(int(run_id))
                if run is not None:
                    await self._finish_state(run, "expired", "nobody approved it in time", now)
            await self._save_document()

    # -- operators (the API's RunDesk) -------------------------------------------------------

    def apply(self, settings: RunbookSettings) -> list[str]:
        """Use new runbooks from now on (a reload's swap; no await): the safety kit keeps
        what it remembers. Return the runs that can no longer start, for `settle`."""
        self.settings = settings
        return self.gate.reconfigure(
            limits_of(settings.runbooks), dry_run=settings.remediation.dry_run
        )

    async def settle(self, dropped: Iterable[str]) -> None:
        """After `apply`: end refused the runs of runbooks no longer configured (or no longer
        asking for approval), and start the waiting runs a raised limit lets go."""
        async with self._lock:
            now = self._clock.now()
            for run_id in dropped:
                run = self._active.get(int(run_id))
                if run is not None:
                    reason = f"refused: a reload changed runbook {run.runbook}; ask again"
                    await self._finish_state(run, "refused", reason, now)
            for waiting, verdict in self.gate.start_waiting(now):
                queued = self._active.get(int(waiting.id))
                if queued is not None:
                    await self._apply(queued, verdict, now)
            await self._save_document()

    async def approve(self, run_id: int, *, actor: str, note: str = "") -> RemediationRun:
        """Approve a run awaiting approval; it is admitted again (the other checks still apply)."""
        async with self._lock:
            run = self._awaiting(run_id)
            now = self._clock.now()
            if not self.gate.approve(str(run_id), actor, now):
                raise RemediationError(409, f"run {run_id} can no longer be approved (expired)")
            run.decided_by = actor
            await self._note(run, now, f"approved by {actor}" + (f": {note}" if note else ""))
            await self._admit(run, actor)
            await self._save_document(wait=True)  # the approval is used up: saved so
            return copy.copy(run)

    async def reject(self, run_id: int, *, actor: str, note: str = "") -> RemediationRun:
        """Reject a run awaiting approval: it never runs."""
        async with self._lock:
            run = self._awaiting(run_id)
            now = self._clock.now()
            if not self.gate.reject(str(run_id), actor, now):
                raise RemediationError(409, f"run {run_id} can no longer be rejected (expired)")
            run.decided_by = actor
            reason = f"rejected by {actor}" + (f": {note}" if note else "")
            await self._finish_state(run, "rejected", reason, now)
            await self._save_document(wait=True)
            return copy.copy(run)

    async def engage(self, *, actor: str, why: str) -> dict[str, Any]:
        """Engage the kill switch: nothing starts until it is released; waiting runs end."""
        async with self._lock:
            now = self._clock.now()
            for waiting, verdict in self.gate.engage(actor, why, now):
                run = self._active.get(int(waiting.id))
                if run is not None:
                    await self._finish_state(run, "refused", verdict.reason, now)
            running = [(run_id, task) for run_id, task in self._tasks.items()]
            for _, task in running:
                task.cancel()  # the process groups are killed
            await asyncio.gather(*(task for _, task in running), return_exceptions=True)
            for run_id, _ in running:
                self._tasks.pop(run_id, None)
                stopped = self._active.get(run_id)
                if stopped is not None:
                    await self._finish_state(
                        stopped, "interrupted", f"stopped by the kill switch: {why}", now
                    )
            await self._save_document(wait=True)
        log.warning("remediation_stopped", by=actor, why=why)
        obs.REMEDIATION_KILL_SWITCH.set(1)
        return self.kill_switch()

    async def release(self, *, actor: str) -> dict[str, Any]:
        """Release the kill switch."""
        async with self._lock:
            self.gate.release(actor, self._clock.now())
            await self._save_document(wait=True)
        log.warning("remediation_resumed", by=actor)
        obs.REMEDIATION_KILL_SWITCH.set(0)
        return self.kill_switch()

    def kill_switch(self) -> dict[str, Any]:
        """The kill switch's state, for the API."""
        return dict(self.gate.kill_switch.to_dict())

    def _awaiting(self, run_id: int) -> RemediationRun:
        run = self._active.get(run_id)
        if run is None or run.state != "awaiting_approval":
            raise RemediationError(
                404 if run is None else 409, f"run {run_id} is not awaiting approval"
            )
        return run

    # -- records ---------------------------------------------------------------------------

    async def _finish_state(
        self, run: RemediationRun, state: str, reason: str, now: float, *, output: str = ""
    ) -> None:
        """Move a run to a final state, on the run and on its incident's timeline."""
        assert state in RUN_FINISHED
        run.state, run.reason = state, reason
        run.finished_at = run.finished_at or now
        with contextlib.suppress(ValueError):  # an unreadable spec is kept as it was
            run.spec = RenderedRun.from_dict(run.spec).redacted().to_dict()
        self._active.pop(run.id, None)
        if state not in ("succeeded", "failed"):
            obs.REMEDIATION_RUNS.labels(run.runbook, state).inc()
        await self._save(run, now, reason + (f"\n{output}" if output else ""), document=True)
        if self.on_finish is not None:
            follow = asyncio.create_task(self.on_finish(copy.copy(run)))
            self._followers.add(follow)
            follow.add_done_callback(self._followers.discard)

    async def _save(
        self,
        run: RemediationRun,
        now: float,
        note: str,
        *,
        document: bool = False,
        wait: bool = False,
    ) -> None:
        """Commit the run's new state and a timeline entry on its incident (if any); `wait`
        for the commit when what follows must not happen unless it is saved."""
        batch = CommitBatch(runs=[copy.copy(run)], history=self._history(run, now, note))
        if document:
            batch.documents[_DOCUMENT] = self._document()
        committed = await self._writer.submit(batch)
        if wait:
            await committed

    async def _note(self, run: RemediationRun, now: float, note: str) -> None:
        await self._writer.submit(CommitBatch(history=self._history(run, now, note)))

    def _history(self, run: RemediationRun, now: float, note: str) -> list[HistoryEntry]:
        if run.incident_id is None:
            return []
        incident = self._book.by_id(run.incident_id)
        state = str(incident.state) if incident is not None else ""
        text = f"run {run.id} of {run.runbook} {run.state}: {note}"
        return [
            HistoryEntry(run.incident_id, now, state or None, state, f"runbook:{run.runbook}",
                         text, "remediation")
        ]  # fmt: skip

    async def _save_document(self, *, wait: bool = False) -> None:
        committed = await self._writer.submit(CommitBatch(documents={_DOCUMENT: self._document()}))
        if wait:
            await committed

    def _document(self) -> str:
        """The safety kit's state plus the pending clear checks, as JSON."""
        state = self.gate.dump()
        state["clear_checks"] = {str(k): v for k, v in self._clear_checks.items()}
        return json.dumps(state)

    async def _change(self, make: Callable[[], IncidentChange]) -> None:
        """Make an incident change and commit it with what it sets off."""
        try:
            change = make()
        except LifecycleError as exc:
            log.info("remediation_outcome_skipped", reason=str(exc))
            return
        if self._muter is not None:
            self._muter.observe([change])  # a resolved incident inhibits no more
        await self._commit_changes([change])


def _higher(current: str, wanted: str) -> str:
    """The more severe of two ratings: raising a priority never lowers it."""
    return min(current, wanted, key=RATINGS.index)


def _gate_run(run: RemediationRun, approved_by: str | None) -> Run:
    return Run(
        id=str(run.id),
        runbook=run.runbook,
        rule=run.rule,
        key=run.key,
        target=run.target,
        rule_dry_run=run.dry_run,
        approved_by=approved_by,
    )


def _describe(run: RemediationRun) -> list[str]:
    """What the run does, for people: no header values, no URL queries."""
    try:
        return RenderedRun.from_dict(run.spec).describe()
    except ValueError as exc:
        return [f"(unreadable run: {exc})"]


def _output(result: RunResult | None) -> str:
    """The last step's output, cut, for the incident's timeline."""
    if result is None or not result.steps:
        return ""
    last = result.steps[-1]
    parts = [p for p in (last.stdout, last.stderr, last.response) if p]
    text = "\n".join(parts)
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + " [...]"
