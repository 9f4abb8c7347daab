"""The daemon's service desk: service requests from the catalog and access grants under the
policy, fulfilled and provisioned by runbooks through the remediator (and its safety kit).

Every change is committed before the API answers; timers (request SLAs, grant expiry) run on
the daemon's tick, from what the store holds, so they survive restarts.
"""

from __future__ import annotations

import asyncio
import builtins
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

import structlog

from tocsin import obs
from tocsin.api.incidents import IncidentError, timeline_json
from tocsin.desks import api_read, unsaved
from tocsin.model import RUN_FINISHED, Outgoing, RemediationRun
from tocsin.records.access import (
    FINAL_STATES,
    AccessBook,
    AccessError,
    AccessOutcome,
    AuditEntry,
    Grant,
    GrantState,
)
from tocsin.records.access_policy import AccessRequest
from tocsin.records.catalog import RequestInputError
from tocsin.records.requests import (
    RequestBook,
    RequestChange,
    RequestError,
    RequestForbiddenError,
    ServiceRequest,
)
from tocsin.records.views import iso_time
from tocsin.remediator import Remediator
from tocsin.runbooks.render import RenderError
from tocsin.runbooks.settings import RunbookSettings
from tocsin.store.base import CommitBatch, HistoryEntry, StoreError
from tocsin.store.writer import StoreWriter
from tocsin.tokens import Role

__all__ = ["AccessDeskImpl", "RequestDeskImpl", "ServiceDesk"]

log = structlog.get_logger("tocsin")

_ACCESS_DOCUMENT = "access"  # the access book (grants not ended, counters), as JSON
_REQUESTS = "service_requests"
_GRANTS = "access_grants"
_KEPT = ("submitted", "approved", "fulfilling")  # requests a book keeps in memory
# A dry run counts as done: a rehearsal walks requests and grants through their whole life,
# saying at each step that nothing ran.
_DONE = frozenset({"succeeded", "dry_run"})
_DRY = "dry run: nothing ran"
_CURRENT_GRANT_STATES = tuple(str(s) for s in GrantState if s not in FINAL_STATES)
_STATE_OPS = frozenset({"submit", "approve", "reject", "start", "fulfil", "fail", "close"})


class ServiceDesk:
    """Both books, their commits, their runbook runs and their timers."""

    def __init__(
        self,
        *,
        settings: RunbookSettings,
        writer: StoreWriter,
        remediator: Remediator,
        clock: Callable[[], float],
        requests: RequestBook,
        access: AccessBook,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.remediator = remediator
        self.clock = clock
        self.requests = requests
        self.access = access
        self.lock = asyncio.Lock()  # one change at a time: decide, save, then run
        # Opens or adds to a problem for a rule's `problem` action (the daemon's problem book).
        self.problems: Callable[[str, str, str, str], Awaitable[None]] | None = None
        # A request past its SLA (True) or one that ended after that (False): the daemon
        # raises, and later resolves, an incident for it, which escalates like any other.
        self.escalate: Callable[[ServiceRequest, str | None, bool], Awaitable[None]] | None = None
        # A revoke that failed its last attempt: the daemon raises an incident for a person.
        self.revoke_failed: Callable[[Grant], Awaitable[None]] | None = None
        remediator.on_finish = self._run_finished

    @classmethod
    async def load(
        cls,
        *,
        settings: RunbookSettings,
        writer: StoreWriter,
        remediator: Remediator,
        clock: Callable[[], float],
    ) -> ServiceDesk:
        """Resume both books from the store."""
        kept = []
        for data in await writer.call(lambda s: s.load_records(_REQUESTS, _KEPT)):
            try:
                kept.append(ServiceRequest.from_dict(json.loads(data)))
            except (RequestError, ValueError) as exc:
                log.error("service_request_unreadable", problem=str(exc), record=data[:200])
        next_id = await writer.call(lambda s: s.next_record_id(_REQUESTS))
        documents = await writer.call(lambda s: s.load_documents())
        access = AccessBook(settings.access)
        if _ACCESS_DOCUMENT in documents:
            try:
                access = AccessBook.from_dict(
                    json.loads(documents[_ACCESS_DOCUMENT]), settings.access
                )
            except (AccessError, ValueError, TypeError, KeyError) as exc:
                log.error("access_book_unreadable", problem=str(exc))
        return cls(
            settings=settings,
            writer=writer,
            remediator=remediator,
            clock=clock,
            requests=RequestBook(next_id=next_id, requests=kept),
            access=access,
        )

    async def resume(self) -> None:
        """Pick up where the last life stopped, from the store: runs that ended meanwhile
        settle their request or grant; a grant whose run still waits is left to it; policy
        changes revoke what may no longer be held; approved requests start their runbook."""
        async with self.lock:
            await self._access_done(self.access.set_policy(self.settings.access, now=self.clock()))
            outcome = self.access.resume()
            todo = []
            for provision in outcome.runs:
                rule, key = f"access:{provision.action}", str(provision.grant)
                last = await self._last_run(rule, key)
                if last is None:
                    todo.append(provision)
                elif last.state in RUN_FINISHED:
                    await self._settle_access(last)
                # else its run still waits (queued, awaiting approval): the remediator runs it
            await self._access_done(replace(outcome, runs=tuple(todo)))
            for request in list(self.requests.requests()):
                if request.state == "fulfilling" and request.run_id is not None:
                    run = await self._run(request.run_id)
                    if run is not None and run.state in RUN_FINISHED:
                        await self._settle_request(run)
                elif request.state == "approved":
                    await self._fulfil(request)
            self._count_grants()

    async def reconfigure(self, settings: RunbookSettings) -> None:
        """Use a new catalog and access policy (a reload): grants the policy no longer
        allows are revoked, pending ones denied; open requests keep their item's old terms."""
        async with self.lock:
            self.settings = settings
            await self._access_done(self.access.set_policy(settings.access, now=self.clock()))

    async def tick(self, now: float) -> None:
        """Request SLA breaches and grant expiries that came due."""
        due = self.requests.next_due()
        expiry = self.access.next_expiry()
        if (due is None or due > now) and (expiry is None or expiry > now):
            return
        async with self.lock:
            breached = self.requests.due(now)
            if breached:
                for change in breached:
                    log.warning(
                        "service_request_sla_breached",
                        request=change.request.id,
                        item=change.request.item,
                    )
                await self._save_requests(breached)
                for change in breached:
                    await self._escalate(change.request, breached=True)
            await self._access_done(self.access.expiring(now))

    # -- requests --------------------------------------------------------------------------

    async def submit(
        self, *, item: str, data: dict[str, Any], actor: str, source: str
    ) -> ServiceRequest:
        """Validate and record a request; fulfil it at once when it needs no approval."""
        entry = self.settings.catalog.get(item)
        if entry is None:
            known = ", ".join(sorted(self.settings.catalog)) or "none"
            raise IncidentError(404, f"no catalog item {item}; the catalog has: {known}")
        async with self.lock:
            try:
                changes = self.requests.submit(
                    entry,
                    data,
                    by=actor,
                    source=source,
                    time=self.clock(),
                    from_text=source != "api",
                )
            except RequestInputError as exc:
                raise IncidentError(400, f"{item}: {exc}") from None
            except RequestError as exc:
                raise _refusal(exc) from None
            await self._save_requests(changes)
            request = changes[0].request
            await self._fulfil(request)
            return request

    async def decide(
        self, request_id: int, *, approve: bool, actor: str, role: Role, note: str
    ) -> ServiceRequest:
        """Approve (then fulfil) or reject a submitted request."""
        async with self.lock:
            request = self._request(request_id)
            try:
                decide = self.requests.approve if approve else self.requests.reject
                change = decide(request, by=actor, role=role, time=self.clock(), note=note)
            except RequestError as exc:
                raise _refusal(exc) from None
            await self._save_requests([change])
            if approve:
                await self._fulfil(request)
            return request

    async def by_hand(self, request_id: int, op: str, *, actor: str, note: str) -> ServiceRequest:
        """Start, fulfil or fail a request by hand (`op`): for items with no runbook, or one
        whose runbook did what it could and a person finishes; never while a run is at it."""
        async with self.lock:
            request = self._request(request_id)
            try:
                changes = self.requests.by_hand(
                    request, op, time=self.clock(), actor=actor, note=note
                )
            except RequestError as exc:
                raise _refusal(exc) from None
            await self._save_requests(changes)
            if op != "start" and request.sla_breached:
                await self._escalate(request, breached=False)
            return request

    async def close(self, request_id: int, *, actor: str, note: str) -> ServiceRequest:
        """Close a decided or finished request."""
        async with self.lock:
            request = self._request(request_id)
            try:
                change = self.requests.close(request, time=self.clock(), actor=actor, note=note)
            except RequestError as exc:
                raise _refusal(exc) from None
            await self._save_requests([change])
            return request

    def _request(self, request_id: int) -> ServiceRequest:
        request = self.requests.get(request_id)
        if request is None:
            raise IncidentError(404, f"no open request {request_id}")
        return request

    async def _fulfil(self, request: ServiceRequest) -> None:
        """Start an approved request's fulfilment runbook (none: an operator fulfils it)."""
        entry = self.settings.catalog.get(request.item)
        if request.state != "approved" or entry is None or entry.runbook is None:
            return
        variables = {"request": {**request.input, "id": request.id, "item": request.item},
                     "input": request.input}  # fmt: skip
        try:
            run = await self.remediator.ask(
                entry.runbook, variables, rule=f"request:{request.item}", key=str(request.id),
                target=request.item,
            )  # fmt: skip
        except (StoreError, RuntimeError) as exc:
            raise IncidentError(503, f"the fulfilment run was not saved: {exc}") from None
        except RenderError as exc:
            change = self.requests.start(request, time=self.clock(), actor="catalog")
            failed = self.requests.finish(
                request, ok=False, time=self.clock(), actor="catalog", reason=str(exc)
            )
            await self._save_requests([change, failed])
            return
        change = self.requests.start(
            request, time=self.clock(), actor=f"runbook:{entry.runbook}", run_id=run.id
        )
        await self._save_requests([change])

    async def _save_requests(self, changes: Sequence[RequestChange]) -> None:
        batch = CommitBatch()
        for change in changes:
            request = change.request
            obs.SERVICE_REQUEST_CHANGES.labels(request.item, change.op).inc()
            batch.requests[request.id] = (str(request.state), json.dumps(request.to_dict()))
            after = change.state or str(request.state)
            batch.request_history.append(
                HistoryEntry(
                    request.id,
                    change.time,
                    None if change.op == "submit" else (change.previous or after),
                    after,
                    change.actor,
                    change.note,
                    "state" if change.op in _STATE_OPS else change.op,
                )
            )
        await _commit(self.writer, batch)

    # -- access ----------------------------------------------------------------------------

    async def ask_access(
        self, *, kind: str, role: str, subject: str, duration: float | None, actor: str, source: str
    ) -> AccessOutcome:
        """Check a grant or revoke against the policy, record it, and run its provisioner."""
        async with self.lock:
            outcome = self.access.request(
                AccessRequest(
                    kind=kind,  # type: ignore[arg-type]
                    role=role,
                    subject=subject,
                    requested_by=actor,
                    duration=duration,
                    source=source,
                    time=self.clock(),
                )
            )
            await self._access_done(outcome)
            return outcome

    async def decide_access(
        self, grant_id: int, *, approve: bool, actor: str, role: Role, why: str
    ) -> AccessOutcome:
        """Approve or reject a grant awaiting approval (the policy says who may)."""
        async with self.lock:
            try:
                if approve:
                    outcome = self.access.approve(
                        grant_id, by=actor, api_role=role, now=self.clock()
                    )
                else:
                    outcome = self.access.reject(
                        grant_id, by=actor, api_role=role, now=self.clock(), why=why
                    )
            except AccessError as exc:
                raise IncidentError(404 if exc.missing else 409, str(exc)) from None
            await self._access_done(outcome)  # a refusal is audited too
            if outcome.refused:
                raise IncidentError(403, outcome.refused)
            return outcome

    async def _access_done(self, outcome: AccessOutcome) -> None:
        """Save what a call changed (grants, audit, the book), then start its runbooks."""
        if not (outcome.grants or outcome.audit or outcome.runs):
            return
        batch = CommitBatch(documents={_ACCESS_DOCUMENT: json.dumps(self.access.to_dict())})
        for grant in outcome.grants:
            batch.grants[grant.id] = _grant_row(grant)
        batch.audit.extend(_audit_row(entry) for entry in outcome.audit)
        await _commit(self.writer, batch)
        for entry in outcome.audit:
            obs.ACCESS_AUDIT.labels(str(entry.action)).inc()
        self._count_grants()
        for run in outcome.runs:
            try:
                await self.remediator.ask(
                    run.runbook, run.variables(), rule=f"access:{run.action}",
                    key=str(run.grant), target=run.subject,
                )  # fmt: skip
            except (StoreError, RuntimeError) as exc:
                raise IncidentError(503, f"the provisioning run was not saved: {exc}") from None
            except RenderError as exc:
                log.error("access_provisioner_not_run", grant=run.grant, problem=str(exc))
                settle = self.access.provisioned if run.action == "grant" else self.access.revoked
                await self._access_done(settle(run.grant, False, now=self.clock(), detail=str(exc)))

    def _count_grants(self) -> None:
        held = Counter(str(g.state) for g in self.access.grants())
        for state in _CURRENT_GRANT_STATES:
            obs.ACCESS_GRANTS.labels(state).set(held[state])

    async def deliver(self, messages: Sequence[Outgoing]) -> int:
        """Handle what rules asked for (the `servicedesk` outbox channel), in order.

        A refusal (bad input, a policy denial) is final: it is logged (and, for access,
        audited) and the row is done; only a store failure is retried.
        """
        for index, message in enumerate(messages):
            body = message.body
            actor = f"rule:{message.rule}"
            try:
                if body.get("kind") == "request" and self._open_from(actor, body):
                    log.info("service_ask_repeated", rule=message.rule, item=body.get("item"))
                elif body.get("kind") == "request":
                    await self.submit(
                        item=str(body["item"]), data=dict(body.get("input") or {}), actor=actor,
                        source=actor,
                    )  # fmt: skip
                elif body.get("kind") == "access":
                    outcome = await self.ask_access(
                        kind=str(body["verb"]), role=str(body["role"]),
                        subject=str(body["subject"]), duration=body.get("duration"),
                        actor=actor, source=f"{actor} key {body.get('key', '')}",
                    )  # fmt: skip
                    decision = outcome.decision
                    if decision is not None and not decision.allowed:
                        log.warning("access_refused", rule=message.rule, reason=decision.reason)
                elif body.get("kind") == "problem" and self.problems is not None:
                    await self.problems(
                        str(body["key"]), str(body["title"]), str(body["fingerprint"]), actor
                    )
            except IncidentError as exc:
                if exc.status == 503:
                    if index:
                        return index  # handled so far; the outbox retries from this row
                    raise
                log.warning(
                    "service_ask_refused", rule=message.rule, kind=body.get("kind"),
                    reason=exc.message,
                )  # fmt: skip
            except (KeyError, TypeError, ValueError) as exc:
                log.error("service_ask_unreadable", rule=message.rule, problem=str(exc))
        return len(messages)

    async def _last_run(self, rule: str, key: str) -> RemediationRun | None:
        found: RemediationRun | None = await api_read(self.writer, lambda s: s.last_run(rule, key))
        return found

    async def _run(self, run_id: int) -> RemediationRun | None:
        found: RemediationRun | None = await api_read(self.writer, lambda s: s.get_run(run_id))
        return found

    def _open_from(self, actor: str, body: dict[str, Any]) -> bool:
        """Whether the rule's request for the same item and input is open still (a repeat)."""
        item, data = body.get("item"), body.get("input")
        return any(
            r.source == actor and r.item == item and r.state in _KEPT
            and {k: str(v) for k, v in r.input.items()} == data
            for r in self.requests.requests()
        )  # fmt: skip

    async def _run_finished(self, run: RemediationRun) -> None:
        """A fulfilment or provisioning run ended: move its request or grant on."""
        async with self.lock:
            if run.rule.startswith("request:"):
                await self._settle_request(run)
            elif run.rule in ("access:grant", "access:revoke"):
                await self._settle_access(run)

    async def _settle_request(self, run: RemediationRun) -> None:
        request = self.requests.get(int(run.key))
        if request is None or request.state != "fulfilling" or request.run_id != run.id:
            return
        ok = run.state in _DONE
        reason = (
            _DRY
            if run.state == "dry_run"
            else ""
            if ok
            else f"run {run.id} {run.state}: {run.reason}"
        )
        change = self.requests.finish(
            request, ok=ok, time=self.clock(), actor=f"runbook:{run.runbook}", reason=reason
        )
        await self._save_requests([change])
        if request.sla_breached:
            await self._escalate(request, breached=False)

    async def _escalate(self, request: ServiceRequest, *, breached: bool) -> None:
        """Tell the daemon: a request breached its SLA, or a breached one has ended."""
        if self.escalate is None:
            return
        item = self.settings.catalog.get(request.item)
        await self.escalate(request, item.escalation if item is not None else None, breached)

    async def _settle_access(self, run: RemediationRun) -> None:
        grant = self.access.get(int(run.key))
        wanted = "provisioning" if run.rule == "access:grant" else "revoking"
        if grant is None or str(grant.state) != wanted:
            if run.rule == "access:grant" and run.state == "succeeded":
                log.warning(
                    "access_stale_grant_run",
                    run=run.id,
                    grant=run.key,
                    note="a grant run finished for a grant no longer provisioning; check by hand",
                )
            return
        settle = self.access.provisioned if run.rule == "access:grant" else self.access.revoked
        detail = {"dry_run": _DRY, "succeeded": ""}.get(
            run.state, f"run {run.id} {run.state}: {run.reason}"
        )
        try:
            if run.state == "interrupted":  # a stop cut it off: run it again, do not judge it
                log.warning("access_run_again", grant=grant.id, run=run.id, why=run.reason)
                await self._access_done(self.access.rerun(grant.id))
                return
            outcome = settle(int(run.key), run.state in _DONE, now=self.clock(), detail=detail)
        except AccessError as exc:
            log.warning("access_run_for_unknown_grant", run=run.id, problem=str(exc))
            return
        await self._access_done(outcome)
        grant = next((g for g in outcome.grants if g.id == int(run.key)), None)
        if run.rule == "access:revoke" and run.state not in _DONE and grant is not None:
            log.error(
                "access_revoke_failed",
                grant=grant.id,
                role=grant.role,
                subject=grant.subject,
                run=run.id,
                attempt=grant.revoke_failures,
                retry_at=grant.retry_at,
            )
            if grant.state == GrantState.FAILED and self.revoke_failed is not None:
                await self.revoke_failed(grant)


class RequestDeskImpl:
    """The API's RequestDesk over the service desk."""

    def __init__(self, desk: ServiceDesk) -> None:
        self.desk = desk

    async def catalog(self) -> builtins.list[dict[str, Any]]:
        """Every catalog item."""
        return [item.to_dict() for item in self.desk.settings.catalog.values()]

    async def list(
        self, *, state: str | None, limit: int, offset: int
    ) -> builtins.list[dict[str, Any]]:
        """Requests, newest first."""
        states = None if state is None else [state]
        found = await api_read(
            self.desk.writer,
            lambda s: s.list_records(_REQUESTS, states=states, limit=limit, offset=offset),
        )
        return [request_view(ServiceRequest.from_dict(json.loads(data))) for data in found]

    async def get(self, request_id: int) -> dict[str, Any] | None:
        """One request with its timeline."""
        data = await api_read(self.desk.writer, lambda s: s.get_record(_REQUESTS, request_id))
        if data is None:
            return None
        history = await api_read(self.desk.writer, lambda s: s.request_history(request_id))
        view = request_view(ServiceRequest.from_dict(json.loads(data)))
        view["timeline"] = [timeline_json(h) for h in history]
        return view

    async def submit(self, *, item: str, data: dict[str, Any], actor: str) -> dict[str, Any]:
        """Submit a request from the API."""
        return request_view(await self.desk.submit(item=item, data=data, actor=actor, source="api"))

    async def approve(
        self, request_id: int, *, actor: str, role: Role, note: str = ""
    ) -> dict[str, Any]:
        """Approve a submitted request."""
        return request_view(
            await self.desk.decide(request_id, approve=True, actor=actor, role=role, note=note)
        )

    async def reject(
        self, request_id: int, *, actor: str, role: Role, note: str = ""
    ) -> dict[str, Any]:
        """Reject a submitted request."""
        return request_view(
            await self.desk.decide(request_id, approve=False, actor=actor, role=role, note=note)
        )

    async def by_hand(
        self, request_id: int, op: str, *, actor: str, note: str = ""
    ) -> dict[str, Any]:
        """Start, fulfil or fail a request by hand."""
        return request_view(await self.desk.by_hand(request_id, op, actor=actor, note=note))

    async def close(self, request_id: int, *, actor: str, note: str = "") -> dict[str, Any]:
        """Close a finished request."""
        return request_view(await self.desk.close(request_id, actor=actor, note=note))


class AccessDeskImpl:
    """The API's AccessDesk over the service desk."""

    def __init__(self, desk: ServiceDesk) -> None:
        self.desk = desk

    async def grants(
        self,
        *,
        state: str | None,
        subject: str | None,
        role: str | None,
        limit: int,
        offset: int,
    ) -> builtins.list[dict[str, Any]]:
        """Grants, newest first."""
        states = None if state is None else [state]
        found = await api_read(
            self.desk.writer,
            lambda s: s.list_records(
                _GRANTS, states=states, subject=subject, role=role, limit=limit, offset=offset
            ),
        )
        return [grant_view(Grant.from_dict(json.loads(data))) for data in found]

    async def get(self, grant_id: int) -> dict[str, Any] | None:
        """One grant."""
        data = await api_read(self.desk.writer, lambda s: s.get_record(_GRANTS, grant_id))
        return None if data is None else grant_view(Grant.from_dict(json.loads(data)))

    async def request(
        self, *, role: str, subject: str, duration: float | None, actor: str
    ) -> dict[str, Any]:
        """Ask for a grant: the policy's decision, and the grant when there is one."""
        outcome = await self.desk.ask_access(
            kind="grant", role=role, subject=subject, duration=duration, actor=actor, source="api"
        )
        view = _decision_view(outcome)
        view["grant"] = grant_view(outcome.grants[0]) if outcome.grants else None
        return view

    async def approve(self, grant_id: int, *, actor: str, role: Role) -> dict[str, Any]:
        """Approve a grant awaiting approval."""
        outcome = await self.desk.decide_access(
            grant_id, approve=True, actor=actor, role=role, why=""
        )
        return _grant_of(outcome, grant_id)

    async def reject(
        self, grant_id: int, *, actor: str, role: Role, why: str = ""
    ) -> dict[str, Any]:
        """Reject a grant awaiting approval."""
        outcome = await self.desk.decide_access(
            grant_id, approve=False, actor=actor, role=role, why=why
        )
        return _grant_of(outcome, grant_id)

    async def revoke(self, *, role: str, subject: str, actor: str, why: str) -> dict[str, Any]:
        """Revoke a subject's grant of a role (or every grant: role "*")."""
        outcome = await self.desk.ask_access(
            kind="revoke", role=role, subject=subject, duration=None, actor=actor,
            source=f"api: {why}" if why else "api",
        )  # fmt: skip
        view = _decision_view(outcome)
        view["grants"] = [grant_view(g) for g in outcome.grants]
        return view

    async def audit(
        self,
        *,
        subject: str | None,
        role: str | None,
        action: str | None,
        since: float | None,
        until: float | None,
        limit: int,
    ) -> builtins.list[dict[str, Any]]:
        """Audit entries, newest first."""
        found = await api_read(
            self.desk.writer,
            lambda s: s.list_audit(
                subject=subject, role=role, action=action, since=since, until=until, limit=limit
            ),
        )
        return [audit_view(AuditEntry.from_dict(json.loads(data))) for data in found]


def request_view(request: ServiceRequest) -> dict[str, Any]:
    """A request as the API shows it: its record, times in ISO 8601."""
    view = request.to_dict()
    for key, value in list(view.items()):
        if key.endswith(("_at", "_by")) and isinstance(value, int | float):
            view[key] = iso_time(float(value))
    return view


def grant_view(grant: Grant) -> dict[str, Any]:
    """A grant as the API shows it."""
    view = grant.to_dict()
    for key, value in list(view.items()):
        if key.endswith(("_at", "_by")) and isinstance(value, int | float):
            view[key] = iso_time(float(value))
    return view


def audit_view(entry: AuditEntry) -> dict[str, Any]:
    """An audit entry as the API shows it."""
    view = entry.to_dict()
    view["time"] = iso_time(entry.time)
    return view


def _decision_view(outcome: AccessOutcome) -> dict[str, Any]:
    """The policy's word on a request: verdict (allowed, denied, needs_approval) and why."""
    decision = outcome.decision
    if decision is None:
        return {"verdict": "denied", "reason": "no decision was made"}
    return {"verdict": str(decision.verdict), "reason": decision.reason}


def _grant_of(outcome: AccessOutcome, grant_id: int) -> dict[str, Any]:
    """The decided grant's view (approve and reject answer with the grant)."""
    for grant in outcome.grants:
        if grant.id == grant_id:
            return grant_view(grant)
    raise IncidentError(404, f"no grant {grant_id}")


def _grant_row(grant: Grant) -> tuple[str, str, str, str]:
    return (str(grant.state), grant.role, grant.subject, json.dumps(grant.to_dict()))


def _audit_row(entry: AuditEntry) -> tuple[float, str, str, str, str]:
    return (entry.time, str(entry.action), entry.role, entry.subject, json.dumps(entry.to_dict()))


def _refusal(exc: RequestError) -> IncidentError:
    if isinstance(exc, RequestForbiddenError):
        return IncidentError(403, str(exc))
    return IncidentError(409 if exc.conflict else 400, str(exc))


async def _commit(writer: StoreWriter, batch: CommitBatch) -> None:
    try:
        await (await writer.submit(batch))
    except (StoreError, RuntimeError) as exc:
        raise unsaved(exc) from None
