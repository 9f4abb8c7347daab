"""The daemon's desks behind the API: durable changes to silences and maintenance windows.

Every change is written to the store (its own fsync'd transaction) before the engine uses
it and before the API answers, so what an operator was told took effect survives kill -9.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import copy
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar, cast

import structlog

from tocsin import obs
from tocsin.api.incidents import IncidentError, timeline_json
from tocsin.engine.muting import Muter
from tocsin.model import Incident, IncidentChange, RemediationRun
from tocsin.mute.matchers import Matchers, parse_matchers
from tocsin.mute.oneoff import OneOffWindow, WindowError
from tocsin.mute.schedule import MaintenanceWindow
from tocsin.mute.silences import Silence, SilenceBook, SilenceError, SilenceState
from tocsin.oncall.schedule import OnCallSchedule
from tocsin.records.incidents import IncidentBook, LifecycleError
from tocsin.records.known_errors import KnownError, KnownErrorError
from tocsin.records.problem_keeper import ProblemKeeper, problem_rows
from tocsin.records.problems import Problem, ProblemChange, ProblemError
from tocsin.records.views import iso_time
from tocsin.remediator import RemediationError, Remediator
from tocsin.runbooks.render import RenderedRun
from tocsin.store.base import CommitBatch, Store, StoreError
from tocsin.store.writer import StoreWriter
from tocsin.yamlsrc import Mark, SourceError

__all__ = [
    "Incidents",
    "Maintenance",
    "Problems",
    "Runs",
    "Silences",
    "api_read",
    "load_silences",
    "load_windows",
    "problem_view",
    "run_view",
    "unsaved",
]

T = TypeVar("T")

log = structlog.get_logger("tocsin")

_ONCALL_HORIZON = 90 * 86400.0  # how far ahead "until" looks for the next handoff


async def load_silences(writer: StoreWriter) -> SilenceBook:
    """Every saved silence; a damaged record is reported and skipped, never fatal."""
    loaded: list[Silence] = []
    for data in await writer.call(lambda s: s.load_silences()):
        try:
            loaded.append(Silence.from_dict(json.loads(data)))
        except (SilenceError, ValueError) as exc:
            log.error("silence_unreadable", problem=str(exc), record=data[:200])
    return SilenceBook(silences=loaded)


async def load_windows(writer: StoreWriter) -> list[OneOffWindow]:
    """Every saved API-made window; a damaged record is reported and skipped."""
    loaded: list[OneOffWindow] = []
    for data in await writer.call(lambda s: s.load_windows()):
        try:
            loaded.append(OneOffWindow.from_dict(json.loads(data)))
        except (WindowError, ValueError) as exc:
            log.error("maintenance_window_unreadable", problem=str(exc), record=data[:200])
    return loaded


class Silences:
    """The daemon's SilenceDesk: a change is saved durably before the engine sees it."""

    def __init__(
        self,
        *,
        book: SilenceBook,
        muter: Muter,
        writer: StoreWriter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.book = book
        self.muter = muter
        self.writer = writer
        self.now = clock  # the daemon's clock: `tocsin test` and replays run on a virtual one
        self._lock = asyncio.Lock()  # one change at a time: validate, save, then apply

    def list(self, state: str | None) -> list[Silence]:
        """Return silences, oldest first."""
        now = self.now()
        if state is None:
            return self.book.list(now=now)
        return self.book.list(state=cast(SilenceState, state), now=now)

    def get(self, silence_id: str) -> Silence | None:
        """Return one silence."""
        return self.book.get(silence_id)

    async def add(
        self, *, matchers: Matchers, starts_at: float, ends_at: float, created_by: str, comment: str
    ) -> Silence:
        """Validate, save (one fsync'd transaction), then let the engine use it."""
        async with self._lock:
            scratch = SilenceBook(silences=self.book.list(now=self.now()))
            silence = scratch.add(
                matchers=matchers,
                starts_at=starts_at,
                ends_at=ends_at,
                created_by=created_by,
                comment=comment,
                now=self.now(),
            )
            await self._save(silence)
            self.book.restore(silence)
            self.muter.silences_changed()
        obs.SILENCES.labels("created").inc()
        log.info("silence_created", **silence.to_dict())
        return silence

    async def expire(self, silence_id: str) -> Silence:
        """End a silence now, saved before it takes effect."""
        async with self._lock:
            scratch = SilenceBook(silences=self.book.list(now=self.now()))
            silence = scratch.expire(silence_id, now=self.now())
            await self._save(silence)
            self.book.restore(silence)
            self.muter.silences_changed()
        obs.SILENCES.labels("expired").inc()
        log.info("silence_expired", id=silence_id)
        return silence

    async def _save(self, silence: Silence) -> None:
        data = json.dumps(silence.to_dict())
        await self.writer.call(lambda s: s.save_silence(silence.id, silence.ends_at, data))


class Maintenance:
    """The daemon's MaintenanceDesk: config windows, plus one-off ones made through the API."""

    def __init__(
        self,
        *,
        configured: Sequence[MaintenanceWindow],
        made: Sequence[OneOffWindow],
        muter: Muter,
        writer: StoreWriter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.now = clock  # the daemon's clock, as for silences
        self.configured = tuple(configured)
        self.made = {w.name: w for w in made}
        self.muter = muter
        self.writer = writer
        # One change at a time: each reads, awaits the store, then writes back.
        self._lock = asyncio.Lock()
        self._apply()

    def _apply(self) -> None:
        made = [w.window for w in self.made.values()]
        self.muter.set_windows([*self.configured, *(w for w in made if w is not None)])

    def configure(self, windows: Sequence[MaintenanceWindow]) -> None:
        """Use these config windows from now on (a reload); API-made ones stay."""
        self.configured = tuple(windows)
        self._apply()

    def list(self) -> tuple[tuple[MaintenanceWindow, ...], list[OneOffWindow]]:
        """The configured windows and the API-made ones, oldest first."""
        return self.configured, sorted(self.made.values(), key=lambda w: (w.created_at, w.name))

    async def add(
        self,
        *,
        name: str,
        matchers: Matchers,
        start: float,
        end: float,
        created_by: str,
        comment: str,
        remind_before: float | None,
    ) -> OneOffWindow:
        """Create a one-off window, saved before it takes effect; names are never reused."""
        async with self._lock:
            if name.strip() in self.made or any(w.name == name.strip() for w in self.configured):
                raise WindowError(f"a maintenance window named {name.strip()} already exists")
            window = OneOffWindow.create(
                name=name,
                matchers=matchers,
                start=start,
                end=end,
                created_by=created_by,
                comment=comment,
                now=self.now(),
                remind_before=remind_before,
            )
            await self._save(window)
        log.info("maintenance_window_created", **window.to_dict())
        return window

    async def end(self, name: str) -> OneOffWindow:
        """End an API-made window now (config windows change in the config)."""
        async with self._lock:
            window = self.made.get(name)
            if window is None:
                raise WindowError(f"no API-made maintenance window named {name}")
            ended = window.end_now(self.now())
            await self._save(ended)
        log.info("maintenance_window_ended", name=name)
        return ended

    async def remind(self) -> None:
        """Log, once, each window whose end is within its remind_before.

        A store that fails is not fatal here: the reminder is logged again at a later tick.
        """
        now = self.now()
        for name in [w.name for w in self.made.values() if w.reminder_due(now)]:
            async with self._lock:
                window = self.made[name]
                if not window.reminder_due(now):
                    continue
                log.warning(
                    "maintenance_window_ending",
                    name=window.name,
                    ends_in_seconds=round(window.end - now),
                    created_by=window.created_by,
                    comment=window.comment,
                )
                obs.MAINTENANCE_REMINDERS.inc()
                try:
                    await self._save(replace(window, reminded=True))
                except StoreError as exc:
                    log.error("maintenance_reminder_not_saved", name=name, reason=exc.reason)

    async def _save(self, window: OneOffWindow) -> None:
        data = json.dumps(window.to_dict())
        await self.writer.call(lambda s: s.save_window(window.name, data))
        self.made[window.name] = window
        self._apply()


class Incidents:
    """The daemon's IncidentDesk: an operator's change is committed before the API answers.

    Changes run on the live incident book in the event loop, between engine batches, and go
    to the store through the same writer and reactions (notifications, escalation) as the
    engine's, so the store sees them in the order they happened.
    """

    def __init__(
        self,
        *,
        book: IncidentBook,
        writer: StoreWriter,
        commit: Callable[[list[IncidentChange]], Awaitable[asyncio.Future[None]]],
        clock: Callable[[], float],
        schedules: Mapping[str, OnCallSchedule],
        users: Mapping[str, Mapping[str, str]],
        muter: Muter | None = None,
    ) -> None:
        self.book = book
        self.writer = writer
        self._commit = commit
        self._clock = clock
        self._schedules = schedules
        self._users = users
        self._muter = muter

    def configure(
        self,
        *,
        schedules: Mapping[str, OnCallSchedule],
        users: Mapping[str, Mapping[str, str]],
    ) -> None:
        """Use these on-call schedules and users from now on (a reload)."""
        self._schedules = schedules
        self._users = users

    async def transition(
        self, incident_id: int, to: str, *, actor: str, note: str = ""
    ) -> Incident:
        """Move an incident through its lifecycle (or reopen it), saved before return."""
        incident = await self._find(incident_id)
        return await self._apply(
            incident,
            lambda: self.book.transition(incident, to, time=self._clock(), actor=actor, note=note),
        )

    async def assign(
        self,
        incident_id: int,
        *,
        assignee: str | None,
        group: str | None,
        actor: str,
        note: str = "",
    ) -> Incident:
        """Set the assignee and/or assignment group."""
        incident = await self._find(incident_id)
        return await self._apply(
            incident,
            lambda: self.book.assign(
                incident, assignee=assignee, group=group, time=self._clock(), actor=actor, note=note
            ),
        )

    async def comment(self, incident_id: int, *, text: str, actor: str) -> Incident:
        """Add a comment to the incident's timeline."""
        incident = await self._find(incident_id)
        return await self._apply(
            incident,
            lambda: self.book.comment(incident, text=text, time=self._clock(), actor=actor),
        )

    async def rate(
        self,
        incident_id: int,
        *,
        impact: str | None,
        urgency: str | None,
        actor: str,
        note: str = "",
    ) -> Incident:
        """Change impact and/or urgency; the priority follows."""
        incident = await self._find(incident_id)
        return await self._apply(
            incident,
            lambda: self.book.rate(
                incident, impact=impact, urgency=urgency, time=self._clock(), actor=actor, note=note
            ),
        )

    def oncall(self, at: float) -> list[dict[str, Any]]:
        """Who is on call at `at` on every schedule, and until when."""
        found: list[dict[str, Any]] = []
        for name, schedule in self._schedules.items():
            who = schedule.who(at)
            horizon = at + _ONCALL_HORIZON
            current = schedule.shifts(at, horizon)[:1] if who is not None else []
            until = current[0][1] if current and current[0][1] < horizon else None
            user = self._users.get(who) if who is not None else None
            found.append(
                {
                    "schedule": name,
                    "on_call": who,
                    "user": dict(user) if user is not None else None,
                    "until": until,
                }
            )
        return found

    async def _find(self, incident_id: int) -> Incident:
        """The live incident, or the stored one when it left memory (closed, resolved long ago)."""
        incident = self.book.by_id(incident_id)
        if incident is not None:
            return incident
        try:
            stored = await self.writer.call(lambda s: s.get_incident(incident_id))
        except StoreError as exc:
            raise IncidentError(503, exc.reason) from None
        if stored is None:
            raise IncidentError(404, f"no incident {incident_id}")
        return self.book.by_id(incident_id) or stored  # it may have come back meanwhile

    async def _apply(self, incident: Incident, change: Callable[[], IncidentChange]) -> Incident:
        """Make the change on the live record, commit it and its reactions, then answer."""
        try:
            made = change()
        except LifecycleError as exc:
            raise IncidentError(409 if exc.conflict else 400, str(exc)) from None
        if self._muter is not None:
            self._muter.observe([made])
        obs.INCIDENT_CHANGES.labels(made.op).inc()
        snapshot = copy.copy(incident)
        try:
            committed = await self._commit([made])
            await committed
        except (StoreError, RuntimeError) as exc:  # the writer failed or is stopping
            raise unsaved(exc) from None
        return snapshot


def run_view(run: RemediationRun) -> dict[str, Any]:
    """The API's view of a remediation run: what it does (no header values, no URL queries)
    and how it went."""
    try:
        steps = RenderedRun.from_dict(run.spec).describe()
    except ValueError as exc:
        steps = [f"(unreadable run: {exc})"]
    return {
        "id": run.id,
        "runbook": run.runbook,
        "rule": run.rule,
        "key": run.key,
        "target": run.target,
        "incident": run.incident_id,
        "state": run.state,
        "reason": run.reason,
        "created_at": iso_time(run.created_at),
        "started_at": iso_time(run.started_at),
        "finished_at": iso_time(run.finished_at),
        "steps": steps,
        "result": run.result,
        "dry_run": run.dry_run,
        "expires_at": iso_time(run.approval_expires),
        "decided_by": run.decided_by,
    }


class Runs:
    """The daemon's RunDesk: runs from the store, decisions through the remediator."""

    def __init__(self, *, remediator: Remediator, writer: StoreWriter) -> None:
        self.remediator = remediator
        self.writer = writer

    async def list(
        self, *, state: str | None, limit: int, offset: int
    ) -> builtins.list[dict[str, Any]]:
        """Runs, newest first."""
        states = None if state is None else [state]
        found = await api_read(
            self.writer, lambda s: s.list_runs(states=states, limit=limit, offset=offset)
        )
        return [run_view(run) for run in found]

    async def get(self, run_id: int) -> dict[str, Any] | None:
        """One run."""
        run = await api_read(self.writer, lambda s: s.get_run(run_id))
        return None if run is None else run_view(run)

    async def approve(self, run_id: int, *, actor: str, note: str = "") -> dict[str, Any]:
        """Let a run awaiting approval go ahead (the other safety checks still apply)."""
        try:
            return run_view(await self.remediator.approve(run_id, actor=actor, note=note))
        except RemediationError as exc:
            raise await self._refusal(run_id, exc) from None
        except (StoreError, RuntimeError) as exc:
            raise unsaved(exc) from None

    async def reject(self, run_id: int, *, actor: str, note: str = "") -> dict[str, Any]:
        """Refuse a run awaiting approval."""
        try:
            return run_view(await self.remediator.reject(run_id, actor=actor, note=note))
        except RemediationError as exc:
            raise await self._refusal(run_id, exc) from None
        except (StoreError, RuntimeError) as exc:
            raise unsaved(exc) from None

    async def _refusal(self, run_id: int, exc: RemediationError) -> IncidentError:
        """The remediator knows only runs not finished: a 404 there is a 409 for a run the
        store has (it is past deciding), and a 404 only for a run never made."""
        if exc.status != 404:
            return IncidentError(exc.status, exc.message)
        if await api_read(self.writer, lambda s: s.get_run(run_id)) is None:
            return IncidentError(404, f"no run {run_id}")
        return IncidentError(409, exc.message)

    def kill_switch(self) -> dict[str, Any]:
        """Whether remediation is stopped, by whom, since when and why."""
        return _switch_view(self.remediator.kill_switch())

    async def engage(self, *, actor: str, why: str) -> dict[str, Any]:
        """Stop all remediation."""
        if self.remediator.gate.kill_switch.engaged:
            raise IncidentError(409, "the kill switch is engaged already")
        try:
            return _switch_view(await self.remediator.engage(actor=actor, why=why))
        except (StoreError, RuntimeError) as exc:
            raise unsaved(exc) from None

    async def release(self, *, actor: str) -> dict[str, Any]:
        """Let remediation run again."""
        if not self.remediator.gate.kill_switch.engaged:
            raise IncidentError(409, "the kill switch is not engaged")
        try:
            return _switch_view(await self.remediator.release(actor=actor))
        except (StoreError, RuntimeError) as exc:
            raise unsaved(exc) from None


def unsaved(exc: StoreError | RuntimeError) -> IncidentError:
    """A change the store did not take (it failed, or the writer is stopping): 503."""
    reason = exc.reason if isinstance(exc, StoreError) else str(exc)
    return IncidentError(503, f"the change was not saved: {reason}")


def _switch_view(data: Mapping[str, Any]) -> dict[str, Any]:
    view = dict(data)
    if isinstance(view.get("at"), int | float):
        view["at"] = iso_time(float(view["at"]))
    return view


async def api_read(writer: StoreWriter, fn: Callable[[Store], T]) -> T:
    """A store read for the API; a failing store is a 503."""
    try:
        return await writer.call(fn)
    except StoreError as exc:
        raise IncidentError(503, exc.reason) from None


def problem_view(problem: Problem) -> dict[str, Any]:
    """The API's view of a problem: its record with times in ISO 8601."""
    view = problem.to_dict()
    for key in ("opened_at", "resolved_at", "closed_at"):
        view[key] = iso_time(view[key])
    return view


def _problem_or_none(data: str) -> dict[str, Any] | None:
    """A stored problem's view; a damaged record is logged and left out, never a 500."""
    try:
        return problem_view(Problem.from_dict(json.loads(data)))
    except (ProblemError, ValueError) as exc:
        log.error("problem_unreadable", problem=str(exc), record=data[:200])
        return None


def known_error_view(entry: KnownError) -> dict[str, Any]:
    """The API's view of a known error, saying whether the config or the API made it."""
    view = entry.to_dict()
    view["source"] = "config" if entry.from_config else "api"
    view["created_at"] = iso_time(entry.created_at)
    return view


class Problems:
    """The daemon's ProblemDesk: changes go to the live problem book, saved before answering."""

    def __init__(
        self, *, keeper: ProblemKeeper, writer: StoreWriter, clock: Callable[[], float]
    ) -> None:
        self.keeper = keeper
        self.writer = writer
        self._clock = clock
        self._lock = asyncio.Lock()

    async def list(
        self, *, state: str | None, limit: int, offset: int
    ) -> builtins.list[dict[str, Any]]:
        """Problems, newest first."""
        states = None if state is None else [state]
        found = await api_read(
            self.writer,
            lambda s: s.list_records("problems", states=states, limit=limit, offset=offset),
        )
        return [view for data in found if (view := _problem_or_none(data)) is not None]

    async def get(self, problem_id: int) -> dict[str, Any] | None:
        """One problem with its timeline."""
        data = await api_read(self.writer, lambda s: s.get_record("problems", problem_id))
        if data is None:
            return None
        history = await api_read(self.writer, lambda s: s.problem_history(problem_id))
        view = _problem_or_none(data)
        if view is None:
            raise IncidentError(503, f"problem {problem_id} is stored damaged; see the log")
        view["timeline"] = [timeline_json(h) for h in history]
        return view

    async def create(
        self, *, title: str, service: str, category: str, actor: str, incidents: builtins.list[int]
    ) -> dict[str, Any]:
        """Open a problem by hand, linking the given incidents."""

        def make() -> builtins.list[ProblemChange]:
            now = self._clock()
            opened = self.keeper.book.open(
                title=title, service=service, category=category, time=now, actor=actor
            )
            links = [
                self.keeper.book.link(opened.problem, i, time=now, actor=actor)
                for i in dict.fromkeys(incidents)
            ]
            return [opened, *links]

        return await self._apply(make)

    async def transition(
        self, problem_id: int, to: str, *, actor: str, note: str = ""
    ) -> dict[str, Any]:
        """Move a problem through its lifecycle."""
        problem = await self._find(problem_id)
        return await self._apply(
            lambda: [
                self.keeper.book.transition(problem, to, time=self._clock(), actor=actor, note=note)
            ]
        )

    async def update(
        self,
        problem_id: int,
        *,
        actor: str,
        root_cause: str | None,
        workaround: str | None,
        owner: str | None,
        title: str | None,
    ) -> dict[str, Any]:
        """Set the root cause, workaround, owner or title."""
        problem = await self._find(problem_id)
        return await self._apply(
            lambda: [
                self.keeper.book.update(
                    problem, time=self._clock(), actor=actor, title=title,
                    root_cause=root_cause, workaround=workaround, owner=owner,
                )
            ]
        )  # fmt: skip

    async def link(self, problem_id: int, incident_id: int, *, actor: str) -> dict[str, Any]:
        """Link an incident to a problem."""
        problem = await self._find(problem_id)
        return await self._apply(
            lambda: [self.keeper.book.link(problem, incident_id, time=self._clock(), actor=actor)]
        )

    async def known_errors(self) -> builtins.list[dict[str, Any]]:
        """Every known error: the config's first, then the API's."""
        return [known_error_view(entry) for entry in self.keeper.known.list()]

    async def add_known_error(
        self,
        *,
        name: str,
        matchers: builtins.list[str],
        workaround: str,
        root_cause: str,
        problem: int | None,
        actor: str,
    ) -> dict[str, Any]:
        """Record a known error; new incidents that match get its workaround."""
        async with self._lock:
            documented = None
            if problem is not None:
                documented = await self._find(problem)  # it must exist (404)
            try:
                parsed = parse_matchers(matchers, Mark("request", 1, 1))
                entry = self.keeper.known.add(
                    name=name, matchers=parsed, workaround=workaround, created_by=actor,
                    now=self._clock(), root_cause=root_cause, problem=problem,
                )  # fmt: skip
            except (KnownErrorError, SourceError) as exc:
                taken = self.keeper.known.get(name) is not None  # a name in use: a conflict
                status = 409 if taken and isinstance(exc, KnownErrorError) else 400
                raise IncidentError(status, str(exc)) from None
            batch = CommitBatch(known_errors={name: json.dumps(entry.to_dict())})
            if documented is not None and documented.state != "closed":
                # The problem names its known error (the KEDB entry), on its timeline too.
                with contextlib.suppress(ProblemError):
                    change = self.keeper.book.update(
                        documented, time=self._clock(), actor=actor, known_error=name
                    )
                    rows, history = problem_rows([change])
                    batch.problems.update(rows)
                    batch.problem_history.extend(history)
            await self._save(batch)
        return known_error_view(entry)

    async def remove_known_error(self, name: str, *, actor: str) -> dict[str, Any]:
        """Remove an API-made known error."""
        async with self._lock:
            try:
                entry = self.keeper.known.remove(name)
            except KnownErrorError as exc:
                status = 404 if self.keeper.known.get(name) is None else 409  # 409: the config's
                raise IncidentError(status, str(exc)) from None
            await self._save(CommitBatch(known_errors={name: None}))
        log.info("known_error_removed", name=name, by=actor)
        return known_error_view(entry)

    async def _find(self, problem_id: int) -> Problem:
        problem = self.keeper.book.get(problem_id)
        if problem is not None:
            return problem
        data = await api_read(self.writer, lambda s: s.get_record("problems", problem_id))
        if data is None:
            raise IncidentError(404, f"no problem {problem_id}")
        return Problem.from_dict(json.loads(data))  # closed: only in the store

    async def _apply(self, make: Callable[[], builtins.list[ProblemChange]]) -> dict[str, Any]:
        async with self._lock:
            try:
                changes = make()
            except ProblemError as exc:
                raise IncidentError(409 if exc.conflict else 400, str(exc)) from None
            rows, history = problem_rows(changes)
            await self._save(CommitBatch(problems=rows, problem_history=history))
        return problem_view(changes[0].problem)

    async def _save(self, batch: CommitBatch) -> None:
        try:
            committed = await self.writer.submit(batch)
            await committed
        except (StoreError, RuntimeError) as exc:
            raise unsaved(exc) from None
