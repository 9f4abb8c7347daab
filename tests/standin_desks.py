"""Stand-in desks for the API and CLI tests until the daemon's own desks serve them: a RunDesk
over plain dicts (until tocsin.desks.Runs), and a RequestDesk and an AccessDesk over the real
pure books. They keep the Protocols' promises (views, refusals as IncidentError) and nothing
more."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tocsin.api.incidents import IncidentError
from tocsin.records.access import (
    AccessBook,
    AccessError,
    AccessOutcome,
    AuditAction,
    AuditEntry,
    AuditQuery,
    Grant,
)
from tocsin.records.access_policy import AccessRequest, parse_access
from tocsin.records.catalog import RequestInputError, parse_catalog
from tocsin.records.requests import (
    RequestBook,
    RequestChange,
    RequestError,
    RequestForbiddenError,
    ServiceRequest,
)
from tocsin.records.views import iso_time
from tocsin.tokens import Role
from tocsin.yamlsrc import Mark, load_yaml

Clock = Callable[[], float]


def _page(found: list[dict[str, Any]], limit: int, offset: int) -> list[dict[str, Any]]:
    return sorted(found, key=lambda r: -int(r["id"]))[offset : offset + limit]


class StandInRuns:
    """A RunDesk stand-in: runs are added by the test with `add`."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.runs: dict[int, dict[str, Any]] = {}
        self.switch: dict[str, Any] = {"engaged": False, "by": None, "at": None, "why": None}

    def add(self, **fields: Any) -> dict[str, Any]:
        """Record a run (a succeeded restart of web1 unless `fields` say otherwise)."""
        run_id = len(self.runs) + 1
        run: dict[str, Any] = {
            "id": run_id,
            "runbook": "restart-unit",
            "rule": "unit-failed",
            "key": "web1",
            "target": "web1",
            "incident": None,
            "state": "succeeded",
            "reason": "",
            "created_at": iso_time(self.clock()),
            "started_at": None,
            "finished_at": None,
            "steps": [{"exec": ["/bin/systemctl", "restart", "nginx"]}],
            "result": None,
            **fields,
        }
        self.runs[run_id] = run
        return run

    async def list(self, *, state: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        found = [r for r in self.runs.values() if state is None or r["state"] == state]
        return _page(found, limit, offset)

    async def get(self, run_id: int) -> dict[str, Any] | None:
        return self.runs.get(run_id)

    def _waiting(self, run_id: int, verb: str) -> dict[str, Any]:
        run = self.runs.get(run_id)
        if run is None:
            raise IncidentError(404, f"no run {run_id}")
        if run["state"] != "awaiting_approval":
            raise IncidentError(
                409, f"run {run_id} is {run['state']}; only a waiting run is {verb}"
            )
        return run

    async def approve(self, run_id: int, *, actor: str, note: str = "") -> dict[str, Any]:
        run = self._waiting(run_id, "approved")
        run.update(state="queued", reason=f"approved by {actor}: {note}".rstrip(": "))
        return run

    async def reject(self, run_id: int, *, actor: str, note: str = "") -> dict[str, Any]:
        run = self._waiting(run_id, "rejected")
        run.update(state="rejected", reason=f"rejected by {actor}: {note}".rstrip(": "))
        return run

    def kill_switch(self) -> dict[str, Any]:
        return dict(self.switch)

    async def engage(self, *, actor: str, why: str) -> dict[str, Any]:
        if self.switch["engaged"]:
            raise IncidentError(409, f"the kill switch is already engaged by {self.switch['by']}")
        self.switch = {"engaged": True, "by": actor, "at": iso_time(self.clock()), "why": why}
        return self.kill_switch()

    async def release(self, *, actor: str) -> dict[str, Any]:
        if not self.switch["engaged"]:
            raise IncidentError(409, "the kill switch is not engaged")
        self.switch = {"engaged": False, "by": actor, "at": iso_time(self.clock()), "why": None}
        return self.kill_switch()


# The stand-ins below keep the RequestDesk and AccessDesk promises with the real pure books
# (records.requests, records.access) and plain dicts for what the store would keep, until the
# daemon's own desks (tocsin.desks) serve the API and CLI tests.

CATALOG = """\
catalog:
  - name: new-vm
    description: A virtual machine
    fields:
      size: {type: integer, required: true, min: 1, max: 64, description: CPUs}
      os: {type: enum, values: [debian, alpine], default: debian}
    approval: {role: admin}
    sla: 1d
  - name: reset-password
    fields:
      user: {type: string, required: true, pattern: '[a-z][a-z0-9_-]{0,31}'}
"""
# The kit's principals: vera (viewer), olga (operator), adam (admin); carol holds no token.
ACCESS = """\
groups:
  ops: [olga, adam]
roles:
  - name: db-admin
    rights: [postgres:superuser]
    holders: [group:ops, user:carol]
    requesters: [group:ops]
    approval: {by: [user:adam], role: admin, ttl: 30m}
    max_duration: 8h
    provision: {grant: grant-db, revoke: revoke-db}
  - name: ssh
    rights: [ssh:login]
    holders: [group:ops, user:carol]
    requesters: [group:ops]
    max_duration: 1h
    provision: {grant: grant-ssh, revoke: revoke-ssh}
"""
_REQUEST_TIMES = ("opened_at", "due_at", "decided_at", "started_at", "finished_at", "closed_at")
_GRANT_TIMES = ("requested_at", "approve_by", "expires_at", "granted_at", "ended_at")


def _iso_times(view: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {**view, **{k: iso_time(view[k]) for k in keys}}


class StandInRequests:
    """A RequestDesk stand-in over the real RequestBook and the catalog above."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        data = load_yaml(CATALOG, name="catalog.yaml")
        self.items = parse_catalog(
            data["catalog"], Mark("catalog.yaml", 1, 1), runbooks=(), policies=()
        )
        self.book = RequestBook()
        self.kept: dict[int, ServiceRequest] = {}  # every request, as the store keeps them
        self.timelines: dict[int, list[dict[str, Any]]] = {}

    def _record(self, changes: list[RequestChange]) -> dict[str, Any]:
        for change in changes:
            self.kept[change.request.id] = change.request
            self.timelines.setdefault(change.request.id, []).append(
                {
                    "time": iso_time(change.time),
                    "kind": "state",
                    "from": change.previous,
                    "to": change.state or "",
                    "actor": change.actor,
                    "note": change.note,
                }
            )
        return _iso_times(changes[-1].request.to_dict(), _REQUEST_TIMES)

    def _find(self, request_id: int) -> ServiceRequest:
        found = self.kept.get(request_id)
        if found is None:
            raise IncidentError(404, f"no request {request_id}")
        return found

    def _apply(self, make: Callable[[], RequestChange]) -> dict[str, Any]:
        try:
            return self._record([make()])
        except RequestForbiddenError as exc:
            raise IncidentError(403, str(exc)) from None
        except RequestError as exc:
            raise IncidentError(409 if exc.conflict else 400, str(exc)) from None

    async def catalog(self) -> list[dict[str, Any]]:
        return [item.to_dict() for item in self.items.values()]

    async def list(self, *, state: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        views = [_iso_times(r.to_dict(), _REQUEST_TIMES) for r in self.kept.values()]
        return _page([v for v in views if state is None or v["state"] == state], limit, offset)

    async def get(self, request_id: int) -> dict[str, Any] | None:
        found = self.kept.get(request_id)
        if found is None:
            return None
        view = _iso_times(found.to_dict(), _REQUEST_TIMES)
        return {**view, "timeline": self.timelines[request_id]}

    async def submit(self, *, item: str, data: dict[str, Any], actor: str) -> dict[str, Any]:
        spec = self.items.get(item)
        if spec is None:
            raise IncidentError(404, f"no catalog item {item}")
        try:
            made = self.book.submit(spec, data, by=actor, source="api", time=self.clock())
        except RequestInputError as exc:
            raise IncidentError(400, str(exc)) from None
        return self._record(made)

    async def approve(
        self, request_id: int, *, actor: str, role: Role, note: str = ""
    ) -> dict[str, Any]:
        found = self._find(request_id)
        now = self.clock()
        return self._apply(
            lambda: self.book.approve(found, by=actor, role=role, time=now, note=note)
        )

    async def reject(
        self, request_id: int, *, actor: str, role: Role, note: str = ""
    ) -> dict[str, Any]:
        found = self._find(request_id)
        now = self.clock()
        return self._apply(
            lambda: self.book.reject(found, by=actor, role=role, time=now, note=note)
        )

    async def close(self, request_id: int, *, actor: str, note: str = "") -> dict[str, Any]:
        found = self._find(request_id)
        now = self.clock()
        return self._apply(lambda: self.book.close(found, time=now, actor=actor, note=note))

    def fulfil(self, request_id: int) -> None:
        """Fulfil an approved request by hand, as a runbook would (for tests)."""
        found = self._find(request_id)
        now = self.clock()
        self._record([self.book.start(found, time=now, actor="tocsin")])
        self._record([self.book.finish(found, ok=True, time=now, actor="tocsin")])


class StandInAccess:
    """An AccessDesk stand-in over the real AccessBook and the policy above; provisioning
    runbooks succeed at once."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        policy = parse_access(
            load_yaml(ACCESS, name="access.yaml"),
            Mark("access.yaml", 1, 1),
            runbooks=("grant-db", "revoke-db", "grant-ssh", "revoke-ssh"),
            users=("olga", "adam", "vera", "carol"),
        )
        self.book = AccessBook(policy)
        self.kept: dict[int, Grant] = {}  # every grant, as the store keeps them
        self.log: list[AuditEntry] = []

    def _keep(self, outcome: AccessOutcome) -> None:
        self.log += outcome.audit
        for grant in outcome.grants:
            self.kept[grant.id] = grant
        for run in outcome.runs:
            now = self.clock()
            if run.action == "grant":
                self._keep(self.book.provisioned(run.grant, True, now=now))
            else:
                self._keep(self.book.revoked(run.grant, True, now=now))

    def _view(self, grant: Grant) -> dict[str, Any]:
        return _iso_times(grant.to_dict(), _GRANT_TIMES)

    async def grants(
        self,
        *,
        state: str | None,
        subject: str | None,
        role: str | None,
        limit: int,
        offset: int,
    ) -> list[dict[str, Any]]:
        views = [self._view(g) for g in self.kept.values()]
        found = [
            v
            for v in views
            if (state is None or v["state"] == state)
            and (subject is None or v["subject"] == subject)
            and (role is None or v["role"] == role)
        ]
        return _page(found, limit, offset)

    async def get(self, grant_id: int) -> dict[str, Any] | None:
        found = self.kept.get(grant_id)
        return None if found is None else self._view(found)

    async def request(
        self, *, role: str, subject: str, duration: float | None, actor: str
    ) -> dict[str, Any]:
        asked = AccessRequest(
            kind="grant",
            role=role,
            subject=subject,
            requested_by=actor,
            duration=duration,
            source="api",
            time=self.clock(),
        )
        outcome = self.book.request(asked)
        self._keep(outcome)
        assert outcome.decision is not None
        grant = outcome.grants[0] if outcome.grants else None
        return {
            "verdict": str(outcome.decision.verdict),
            "reason": outcome.decision.reason,
            "grant": None if grant is None else self._view(grant),
        }

    def _decide(self, make: Callable[[], AccessOutcome], grant_id: int) -> dict[str, Any]:
        try:
            outcome = make()
        except AccessError as exc:
            raise IncidentError(404 if exc.missing else 409, str(exc)) from None
        self._keep(outcome)
        if outcome.refused:
            raise IncidentError(403, outcome.refused)
        return self._view(self.kept[grant_id])

    async def approve(self, grant_id: int, *, actor: str, role: Role) -> dict[str, Any]:
        now = self.clock()
        return self._decide(
            lambda: self.book.approve(grant_id, by=actor, api_role=role, now=now), grant_id
        )

    async def reject(
        self, grant_id: int, *, actor: str, role: Role, why: str = ""
    ) -> dict[str, Any]:
        now = self.clock()
        return self._decide(
            lambda: self.book.reject(grant_id, by=actor, api_role=role, now=now, why=why),
            grant_id,
        )

    async def revoke(self, *, role: str, subject: str, actor: str, why: str) -> dict[str, Any]:
        asked = AccessRequest(
            kind="revoke",
            role=role,
            subject=subject,
            requested_by=actor,
            source=f"api: {why}",
            time=self.clock(),
        )
        outcome = self.book.request(asked)
        self._keep(outcome)
        assert outcome.decision is not None
        return {
            "verdict": str(outcome.decision.verdict),
            "reason": outcome.decision.reason,
            "grants": [self._view(self.kept[g.id]) for g in outcome.grants],
        }

    async def audit(
        self,
        *,
        subject: str | None,
        role: str | None,
        action: str | None,
        since: float | None,
        until: float | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        query = AuditQuery(
            subject=subject,
            role=role,
            action=None if action is None else AuditAction(action),
            since=since,
            until=until,
        )
        found = query.select(reversed(self.log), limit=limit)
        return [{**e.to_dict(), "time": iso_time(e.time)} for e in found]
