"""The ServiceDesk and its API desks on their own: real SQLite store, a real remediator running
real scripts, a virtual clock driving SLA and expiry timers through `tick`."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from testkit import eventually
from tocsin.api.incidents import IncidentError
from tocsin.engine.clock import ManualClock
from tocsin.model import IncidentChange
from tocsin.records.incidents import IncidentBook
from tocsin.records.priority import PriorityMatrix
from tocsin.records.requests import ServiceRequest
from tocsin.remediator import Remediator
from tocsin.runbooks.settings import RunbookSettings, load_runbook_file
from tocsin.servicedesk import AccessDeskImpl, RequestDeskImpl, ServiceDesk
from tocsin.store.base import CommitBatch
from tocsin.store.sqlite import SqliteStore
from tocsin.store.writer import StoreWriter
from tocsin.tokens import Role

T = TypeVar("T")

ATTEMPTS = 8  # the default revoke_retry
SCRIPTS = Path(__file__).resolve().parent / "runbooks" / "scripts"

RUNBOOKS = """\
runbooks:
  - name: slow-restart
    steps:
      - exec: {argv: [/bin/sh, SCRIPTS/wait_for_file.sh, TMP/go], timeout: 30s}
  - name: restart-app
    steps:
      - exec: {argv: [/bin/sh, SCRIPTS/append_args.sh, TMP/restarts, "{{ request.app }}",
                      "{{ input.env }}"]}
  - name: grant-access
    steps:
      - exec: {argv: [/bin/sh, SCRIPTS/append_args.sh, TMP/grants, "{{ access.role }}",
                      "{{ access.subject }}"]}
  - name: revoke-access
    steps:
      - exec: {argv: [/bin/sh, SCRIPTS/append_args.sh, TMP/revokes, "{{ access.role }}",
                      "{{ access.subject }}"]}
  - name: revoke-flaky
    steps:
      - exec: {argv: [/bin/sh, SCRIPTS/succeed_if_exists.sh, TMP/revoke-works]}
  - name: grant-slow
    steps:
      - exec: {argv: [/bin/sh, SCRIPTS/wait_for_file.sh, TMP/grant-go]}
catalog:
  - name: desk-move
    fields:
      desk: {type: string, required: true}
  - name: slow-restart
    runbook: slow-restart
    sla: 1h
    escalation: requests
  - name: restart-app
    fields:
      app: {type: string, required: true, pattern: '[a-z][a-z0-9-]*', max_length: 40}
      env: {type: enum, values: [prod, staging], default: staging}
    approval: {role: operator}
    runbook: restart-app
    sla: 4h
access:
  groups:
    dba: [alice, bob]
  roles:
    - name: ssh
      rights: [ssh:login]
      holders: [user:alice]
      max_duration: 8h
      provision: {grant: grant-access, revoke: revoke-access}
    - name: db-admin
      rights: [postgres:superuser]
      holders: [group:dba]
      approval: {by: [user:carol, user:bob], role: operator, ttl: 1h}
      max_duration: 1h
      provision: {grant: grant-access, revoke: revoke-access}
    - name: vpn
      rights: [vpn:connect]
      holders: [user:alice]
      max_duration: 8h
      provision: {grant: grant-access, revoke: revoke-flaky}
    - name: console
      rights: [ipmi:console]
      holders: [user:alice]
      max_duration: 8h
      provision: {grant: grant-slow, revoke: revoke-access}
"""


def settings_of(tmp_path: Path) -> RunbookSettings:
    """Load the runbooks file the way the daemon does, its users and policies known."""
    path = tmp_path / "runbooks.yaml"
    path.write_text(RUNBOOKS.replace("SCRIPTS", str(SCRIPTS)).replace("TMP", str(tmp_path)))
    return load_runbook_file(
        path, brokers=(), policies=("requests",), users=("alice", "bob", "carol")
    )


def lines(path: Path) -> list[str]:
    """Return what a recording script appended, one line per run (none: no run)."""
    return path.read_text().splitlines() if path.exists() else []


class Life:
    """One life of the daemon's service desk on a SQLite file, wired as app.py wires it;
    escalate stands for the daemon's request-SLA incidents and records what it was told."""

    def __init__(self, writer: StoreWriter, desk: ServiceDesk) -> None:
        self.writer = writer
        self.desk = desk
        self.requests = RequestDeskImpl(desk)
        self.access = AccessDeskImpl(desk)
        self.escalations: list[tuple[int, str | None, bool]] = []
        desk.escalate = self._escalate

    async def _escalate(self, request: ServiceRequest, policy: str | None, breached: bool) -> None:
        """Note what the daemon would raise (True) or resolve (False) an incident for."""
        self.escalations.append((request.id, policy, breached))

    async def request(self, request_id: int) -> dict[str, Any]:
        """Return the request's view (with its timeline) once everything submitted is saved."""
        await self.writer.flush()
        view = await self.requests.get(request_id)
        assert view is not None, f"request {request_id} is not in the store"
        return view

    async def request_in(self, request_id: int, state: str) -> dict[str, Any]:
        """Wait for the stored request to reach `state`."""

        async def reached() -> dict[str, Any] | None:
            view = await self.request(request_id)
            return view if view["state"] == state else None

        return await eventually(reached, f"request {request_id} to be {state}")

    async def grant_in(self, grant_id: int, state: str) -> dict[str, Any]:
        """Wait for the stored grant to reach `state`."""

        async def reached() -> dict[str, Any] | None:
            await self.writer.flush()
            view = await self.access.get(grant_id)
            return view if view is not None and view["state"] == state else None

        return await eventually(reached, f"grant {grant_id} to be {state}")

    async def audit(self, subject: str) -> list[tuple[str, str, str]]:
        """Return the subject's audit rows in the store, oldest first: (action, by, why)."""
        await self.writer.flush()
        rows = await self.access.audit(
            subject=subject, role=None, action=None, since=None, until=None, limit=100
        )
        return [(r["action"], r["by"], r["why"]) for r in reversed(rows)]

    async def run_in(self, run_id: int, state: str) -> None:
        """Wait for the stored run to reach `state`."""

        async def reached() -> bool:
            await self.writer.flush()
            run = await self.writer.call(lambda s: s.get_run(run_id))
            return run is not None and run.state == state

        await eventually(reached, f"run {run_id} to be {state}")

    async def runs(self) -> list[tuple[str, str, str]]:
        """Return every run row in the store, oldest first: (rule, key, state)."""
        await self.writer.flush()
        runs = await self.writer.call(lambda s: s.list_runs())
        return [(r.rule, r.key, r.state) for r in reversed(runs)]


@contextlib.asynccontextmanager
async def life(db: Path, settings: RunbookSettings, clock: ManualClock) -> AsyncIterator[Life]:
    """Start a life on `db` in app.py's order (desk loaded, remediator resumed, its loop, desk
    resumed); on exit stop it as the daemon does."""
    async with StoreWriter(store=SqliteStore(path=db)) as writer:

        async def commit_changes(changes: list[IncidentChange]) -> asyncio.Future[None]:
            """Commit incident changes as the daemon does (desk runs open no incidents)."""
            return await writer.submit(CommitBatch.of(changes, []))

        remediator = Remediator(
            settings=settings,
            writer=writer,
            book=IncidentBook(priorities=PriorityMatrix()),
            clock=clock,
            commit_changes=commit_changes,
            next_id=await writer.call(lambda s: s.next_run_id()),
        )
        desk = await ServiceDesk.load(
            settings=settings, writer=writer, remediator=remediator, clock=clock.now
        )
        parts = Life(writer, desk)
        await remediator.resume()
        loop = asyncio.create_task(remediator.run(), name="test.remediation")
        await desk.resume()
        try:
            yield parts
        finally:
            await remediator.stop()
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)


async def test_a_slow_fulfilment_breaches_the_sla_once_then_is_fulfilled(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Test the request SLA on the virtual clock: past the item's SLA while its runbook runs,
    tick marks it breached and escalates by the item's policy (once); the run's end fulfils
    it and tells the escalation it is over; the timeline has every step."""
    async with life(tmp_path / "tocsin.db", settings_of(tmp_path), clock) as parts:
        opened = clock.now()
        made = await parts.requests.submit(item="slow-restart", data={}, actor="alice")
        assert (made["state"], made["decided_by"], made["run_id"]) == ("fulfilling", "catalog", 1)
        clock.advance_to(opened + 3599)
        await parts.desk.tick(clock.now())
        assert parts.escalations == []
        clock.advance_to(opened + 3600)
        await parts.desk.tick(clock.now())
        assert parts.escalations == [(made["id"], "requests", True)]
        breached = await parts.request(made["id"])
        assert (breached["state"], breached["sla_breached"]) == ("fulfilling", True)
        clock.advance_to(opened + 7200)
        await parts.desk.tick(clock.now())
        assert parts.escalations == [(made["id"], "requests", True)]
        (tmp_path / "go").touch()
        done = await parts.request_in(made["id"], "fulfilled")
        assert parts.escalations == [
            (made["id"], "requests", True),
            (made["id"], "requests", False),
        ]
        assert done["finished_at"] == "2026-11-25T02:00:00+00:00"
        assert [(e["kind"], e["from"], e["to"], e["actor"], e["note"]) for e in done["timeline"]] == [
            ("state", None, "submitted", "alice", "via api"),
            ("state", "submitted", "approved", "catalog", "no approval needed"),
            ("state", "approved", "fulfilling", "runbook:slow-restart", "run 1 started"),
            ("breach", "fulfilling", "fulfilling", "requests:sla",
             "SLA breached: not fulfilled within 1h of submission"),
            ("state", "fulfilling", "fulfilled", "runbook:slow-restart", ""),
        ]  # fmt: skip
        assert [e["time"] for e in done["timeline"]][-2:] == [
            "2026-11-25T01:00:00+00:00", "2026-11-25T02:00:00+00:00"
        ]  # fmt: skip
        assert await parts.runs() == [("request:slow-restart", str(made["id"]), "succeeded")]


async def test_a_request_needing_approval_runs_only_once_an_allowed_role_approves(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Test approval: bad input is a 400 naming each field; a viewer and the requester are
    refused (403); an operator's approval runs the runbook with the input; a rejected request
    ends without a run."""
    async with life(tmp_path / "tocsin.db", settings_of(tmp_path), clock) as parts:
        with pytest.raises(IncidentError) as bad:
            await parts.requests.submit(
                item="restart-app", data={"app": "Web!", "env": "qa", "ap": "x"}, actor="alice"
            )
        assert (bad.value.status, bad.value.message) == (
            400,
            "restart-app: app: must match the pattern [a-z][a-z0-9-]*; env: must be one of "
            "prod, staging; unknown field 'ap' (did you mean 'app'?)",
        )
        with pytest.raises(IncidentError) as unknown:
            await parts.requests.submit(item="reboot", data={}, actor="alice")
        assert unknown.value.status == 404
        made = await parts.requests.submit(item="restart-app", data={"app": "web"}, actor="alice")
        assert (made["state"], made["input"]) == ("submitted", {"app": "web", "env": "staging"})
        for actor, role, refusal in (
            ("victor", Role.VIEWER,
             "request 1 can be approved only by a role of operator or above; victor is viewer"),
            ("alice", Role.OPERATOR,
             "request 1 was submitted by alice: somebody else must approve it"),
        ):  # fmt: skip
            with pytest.raises(IncidentError) as refused:
                await parts.requests.approve(made["id"], actor=actor, role=role)
            assert (refused.value.status, refused.value.message) == (403, refusal)
        assert (await parts.request(made["id"]))["state"] == "submitted"
        assert await parts.runs() == []
        approved = await parts.requests.approve(made["id"], actor="olga", role=Role.OPERATOR)
        assert (approved["state"], approved["decided_by"]) == ("fulfilling", "olga")
        await parts.request_in(made["id"], "fulfilled")
        assert lines(tmp_path / "restarts") == ["web staging"]
        other = await parts.requests.submit(
            item="restart-app", data={"app": "db", "env": "prod"}, actor="alice"
        )
        rejected = await parts.requests.reject(
            other["id"], actor="olga", role=Role.OPERATOR, note="not during the freeze"
        )
        assert (rejected["state"], rejected["reason"]) == ("rejected", "not during the freeze")
        with pytest.raises(IncidentError) as twice:
            await parts.requests.approve(other["id"], actor="olga", role=Role.OPERATOR)
        assert (twice.value.status, twice.value.message) == (
            409, "request 2 is rejected; it can be approved only when submitted"
        )  # fmt: skip
        closed = await parts.requests.close(other["id"], actor="olga")
        assert closed["state"] == "closed"
        assert await parts.runs() == [("request:restart-app", "1", "succeeded")]
        assert lines(tmp_path / "restarts") == ["web staging"]


async def test_a_request_whose_run_a_stop_cut_off_fails_after_the_restart(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Test resume: the fulfilment run running at the stop is interrupted (not run again),
    and the request ends failed with that reason instead of hanging in fulfilling."""
    db, settings = tmp_path / "tocsin.db", settings_of(tmp_path)
    async with life(db, settings, clock) as parts:
        made = await parts.requests.submit(item="slow-restart", data={}, actor="alice")
        await parts.run_in(made["run_id"], "running")
    async with life(db, settings, clock) as parts:
        failed = await parts.request_in(made["id"], "failed")
        assert failed["reason"] == (
            f"run {made['run_id']} interrupted: the daemon stopped while it ran; not run again"
        )
        assert await parts.runs() == [("request:slow-restart", str(made["id"]), "interrupted")]
        assert parts.escalations == []


async def test_a_time_bound_grant_is_kept_across_a_restart_and_revoked_at_expiry(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Test an access grant: allowed by the policy, provisioned by its runbook, still active
    after a restart (not provisioned again), then ended by tick at its expiry through the
    revoke runbook, with every decision in the audit rows."""
    db, settings = tmp_path / "tocsin.db", settings_of(tmp_path)
    granted_at = clock.now()
    async with life(db, settings, clock) as parts:
        asked = await parts.access.request(role="ssh", subject="alice", duration=600, actor="alice")
        assert (asked["verdict"], asked["reason"]) == (
            "allowed", "alice may request ssh for alice for 10m; no approval needed"
        )  # fmt: skip
        grant = asked["grant"]
        assert (grant["state"], grant["expires_at"]) == (
            "provisioning",
            "2026-11-25T00:10:00+00:00",
        )
        await parts.grant_in(grant["id"], "active")
        assert lines(tmp_path / "grants") == ["ssh alice"]
        clock.advance_to(granted_at + 599)
        await parts.desk.tick(clock.now())
        assert (await parts.grant_in(grant["id"], "active"))["ended_at"] is None
    async with life(db, settings, clock) as parts:
        kept = parts.desk.access.get(grant["id"])
        assert kept is not None
        assert str(kept.state) == "active"
        clock.advance_to(granted_at + 600)
        await parts.desk.tick(clock.now())
        ended = await parts.grant_in(grant["id"], "expired")
        assert (ended["ended_by"], ended["ended_at"]) == ("expiry", "2026-11-25T00:10:00+00:00")
        assert parts.desk.access.get(grant["id"]) is None
        assert lines(tmp_path / "grants") == ["ssh alice"]
        assert lines(tmp_path / "revokes") == ["ssh alice"]
        assert await parts.runs() == [
            ("access:grant", str(grant["id"]), "succeeded"),
            ("access:revoke", str(grant["id"]), "succeeded"),
        ]
        assert await parts.audit("alice") == [
            ("requested", "alice", "grant ssh for 10m (api)"),
            ("approved", "policy", "alice may request ssh for alice for 10m; no approval needed"),
            ("granted", "policy", "grant-access applied ssh:login until 2026-11-25T00:10:00Z"),
            ("expired", "expiry", "ended at 2026-11-25T00:10:00Z, 10m after approval"),
            ("revoked", "expiry",
             "ended at 2026-11-25T00:10:00Z, 10m after approval; revoke-access removed it"),
        ]  # fmt: skip


async def test_a_grant_the_policy_forbids_is_denied_audited_and_runs_nothing(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Test policy denials (not a holder, not a requester, too long): the reason is the
    answer and in the audit rows, and no grant or run is made."""
    async with life(tmp_path / "tocsin.db", settings_of(tmp_path), clock) as parts:
        for subject, duration, actor, reason in (
            ("bob", None, "alice", "bob may not hold ssh (holders: user alice)"),
            ("alice", None, "bob", "bob may not request ssh (requesters: user alice)"),
            ("alice", 9 * 3600.0, "alice", "duration 9h is over ssh's max_duration 8h"),
        ):
            denied = await parts.access.request(
                role="ssh", subject=subject, duration=duration, actor=actor
            )
            assert denied == {"verdict": "denied", "reason": reason, "grant": None}
        clock.advance_to(clock.now() + 86400)
        await parts.desk.tick(clock.now())
        assert await parts.runs() == []
        grants = await parts.access.grants(state=None, subject=None, role=None, limit=10, offset=0)
        assert grants == []
        assert lines(tmp_path / "grants") == []
        assert await parts.audit("bob") == [
            ("requested", "alice", "grant ssh (api)"),
            ("denied", "policy", "bob may not hold ssh (holders: user alice)"),
        ]
        assert [a for a in await parts.audit("alice") if a[0] == "denied"] == [
            ("denied", "policy", "bob may not request ssh (requesters: user alice)"),
            ("denied", "policy", "duration 9h is over ssh's max_duration 8h"),
        ]


async def test_a_grant_needing_approval_waits_for_an_allowed_approver(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Test grant approval: the requester and a too-low API role are refused (403, audited,
    still pending); an allowed approver's approval provisions it; a rejection ends one
    without a run; an approval that does not come in time expires on tick."""
    async with life(tmp_path / "tocsin.db", settings_of(tmp_path), clock) as parts:
        asked = await parts.access.request(
            role="db-admin", subject="alice", duration=1800, actor="alice"
        )
        assert asked["verdict"] == "needs_approval"
        grant_id = asked["grant"]["id"]
        for actor, role, refusal in (
            ("alice", Role.ADMIN, "alice may not approve their own request"),
            ("bob", Role.VIEWER,
             "bob may not approve db-admin: it needs API role operator or above, not viewer"),
            ("olga", Role.ADMIN, "olga may not approve db-admin (approvers: user carol, user bob)"),
        ):  # fmt: skip
            with pytest.raises(IncidentError) as refused:
                await parts.access.approve(grant_id, actor=actor, role=role)
            assert (refused.value.status, refused.value.message) == (403, refusal)
        assert lines(tmp_path / "grants") == []
        approved = await parts.access.approve(grant_id, actor="carol", role=Role.OPERATOR)
        assert (approved["state"], approved["granted_by"]) == ("provisioning", "carol")
        await parts.grant_in(grant_id, "active")
        assert lines(tmp_path / "grants") == ["db-admin alice"]
        rejected_id = (
            await parts.access.request(role="db-admin", subject="bob", duration=None, actor="alice")
        )["grant"]["id"]
        rejected = await parts.access.reject(
            rejected_id, actor="carol", role=Role.OPERATOR, why="no ticket"
        )
        assert (rejected["state"], rejected["why"]) == ("denied", "rejected by carol: no ticket")
        late_id = (
            await parts.access.request(role="db-admin", subject="bob", duration=None, actor="bob")
        )["grant"]["id"]
        clock.advance_to(clock.now() + 3600)
        await parts.desk.tick(clock.now())
        late = await parts.grant_in(late_id, "expired")
        assert late["why"] == "not approved by 2026-11-25T01:00:00Z"
        await parts.grant_in(grant_id, "expired")
        assert lines(tmp_path / "grants") == ["db-admin alice"]
        assert lines(tmp_path / "revokes") == ["db-admin alice"]
        assert [(a, by) for a, by, _ in await parts.audit("alice")] == [
            ("requested", "alice"), ("denied", "alice"), ("denied", "bob"), ("denied", "olga"),
            ("approved", "carol"), ("granted", "carol"), ("expired", "expiry"),
            ("revoked", "expiry"),
        ]  # fmt: skip
        assert [(a, by) for a, by, _ in await parts.audit("bob")] == [
            ("requested", "alice"), ("denied", "carol"), ("requested", "bob"),
            ("expired", "expiry"),
        ]  # fmt: skip


async def test_an_item_without_a_runbook_is_fulfilled_or_failed_by_hand(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Test fulfilment by hand: start then fulfil, or fail (which needs a reason) straight from
    approved, each step on the timeline with its actor; a request a run fulfils is refused."""
    async with life(tmp_path / "tocsin.db", settings_of(tmp_path), clock) as parts:
        made = await parts.requests.submit(item="desk-move", data={"desk": "4.12"}, actor="alice")
        assert (made["state"], made["run_id"]) == ("approved", None)
        started = await parts.requests.by_hand(made["id"], "start", actor="bob")
        assert started["state"] == "fulfilling"
        with pytest.raises(IncidentError) as again:
            await parts.requests.by_hand(made["id"], "start", actor="bob")
        assert again.value.status == 409
        done = await parts.requests.by_hand(made["id"], "fulfil", actor="bob", note="moved")
        assert (done["state"], done["finished_at"]) == ("fulfilled", "2026-11-25T00:00:00+00:00")
        view = await parts.request(made["id"])
        assert [(e["from"], e["to"], e["actor"], e["note"]) for e in view["timeline"]][-2:] == [
            ("approved", "fulfilling", "bob", "fulfilment started by hand"),
            ("fulfilling", "fulfilled", "bob", "moved"),
        ]
        other = await parts.requests.submit(item="desk-move", data={"desk": "1.1"}, actor="alice")
        with pytest.raises(IncidentError) as blank:
            await parts.requests.by_hand(other["id"], "fail", actor="bob", note=" ")
        assert blank.value.status == 400
        failed = await parts.requests.by_hand(other["id"], "fail", actor="bob", note="no desk")
        assert (failed["state"], failed["reason"]) == ("failed", "no desk")
        slow = await parts.requests.submit(item="slow-restart", data={}, actor="alice")
        with pytest.raises(IncidentError) as busy:
            await parts.requests.by_hand(slow["id"], "fulfil", actor="bob")
        assert (busy.value.status, str(busy.value)) == (
            409,
            f"request {slow['id']} is being fulfilled by run {slow['run_id']}; "
            "it ends with the run",
        )
        (tmp_path / "go").touch()
        await parts.request_in(slow["id"], "fulfilled")
        assert await parts.runs() == [("request:slow-restart", str(slow["id"]), "succeeded")]


async def test_a_failed_revoke_runs_again_on_the_timer_until_it_works(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Test a revoke runbook that fails: the grant stays revoking, each failure is audited
    with the next try, tick runs it again when due (not before), and once it works the grant
    is revoked; no incident is raised for a revoke that got through."""
    alarms: list[str] = []
    async with life(tmp_path / "tocsin.db", settings_of(tmp_path), clock) as parts:

        async def alarm(grant: Any) -> None:
            alarms.append(grant.subject)

        parts.desk.revoke_failed = alarm
        asked = await parts.access.request(
            role="vpn", subject="alice", duration=3600, actor="alice"
        )
        grant_id = asked["grant"]["id"]
        await parts.grant_in(grant_id, "active")
        start = clock.now()
        await parts.access.revoke(role="vpn", subject="alice", actor="bob", why="left")
        await parts.run_in(2, "failed")
        waiting = await parts.grant_in(grant_id, "revoking")
        assert parts.desk.access.next_expiry() == start + 60
        clock.advance_to(start + 59)
        await parts.desk.tick(clock.now())
        assert len(await parts.runs()) == 2
        clock.advance_to(start + 60)
        await parts.desk.tick(clock.now())
        await parts.run_in(3, "failed")
        await eventually(lambda: parts.desk.access.next_expiry() == start + 60 + 120, "retry 2")
        (tmp_path / "revoke-works").touch()
        clock.advance_to(start + 180)
        await parts.desk.tick(clock.now())
        ended = await parts.grant_in(grant_id, "revoked")
        assert (waiting["ended_at"], ended["ended_by"]) == (None, "bob")
        failures = [
            re.sub(r"exit 1 in [0-9.]+m?s", "exit 1 in T", why)
            for action, _, why in await parts.audit("alice")
            if action == "failed"
        ]
        assert failures == [
            "revoke-flaky failed: run 2 failed: exit 1 in T; attempt 1 of 8, trying again "
            "at 2026-11-25T00:01:00Z",
            "revoke-flaky failed: run 3 failed: exit 1 in T; attempt 2 of 8, trying again "
            "at 2026-11-25T00:03:00Z",
        ]
        assert [state for rule, _, state in await parts.runs() if rule == "access:revoke"] == [
            "failed", "failed", "succeeded"
        ]  # fmt: skip
        assert alarms == []


async def test_a_revoke_that_never_works_ends_failed_and_raises_the_alarm(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Test the last attempt: after the default 8 failures the grant ends failed, the audit
    says the subject may still hold the role, and the daemon is told to raise an incident."""
    alarms: list[tuple[int, str, str, int]] = []
    async with life(tmp_path / "tocsin.db", settings_of(tmp_path), clock) as parts:

        async def alarm(grant: Any) -> None:
            alarms.append((grant.id, grant.role, str(grant.state), grant.revoke_failures))

        parts.desk.revoke_failed = alarm
        asked = await parts.access.request(
            role="vpn", subject="alice", duration=3600, actor="alice"
        )
        grant_id = asked["grant"]["id"]
        await parts.grant_in(grant_id, "active")
        await parts.access.revoke(role="vpn", subject="alice", actor="bob", why="")
        for attempt in range(1, ATTEMPTS):
            await parts.run_in(1 + attempt, "failed")
            due = await eventually(parts.desk.access.next_expiry, f"retry {attempt}")
            clock.advance_to(due)
            await parts.desk.tick(clock.now())
        await parts.grant_in(grant_id, "failed")
        assert alarms == [(grant_id, "vpn", "failed", ATTEMPTS)]
        last = (await parts.audit("alice"))[-1]
        assert last[0] == "failed"
        assert last[2].endswith(
            f"(attempt {ATTEMPTS} of {ATTEMPTS}); alice may still hold vpn: check by hand"
        )


async def test_provisioning_a_stop_cut_off_runs_again_after_the_restart(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Test resume for grants: the grant run cut off by the stop is interrupted, and the
    grant runbook runs again (provisioners are idempotent), not judged failed and undone."""
    db, settings = tmp_path / "tocsin.db", settings_of(tmp_path)
    async with life(db, settings, clock) as parts:
        asked = await parts.access.request(
            role="console", subject="alice", duration=3600, actor="alice"
        )
        await parts.run_in(1, "running")
    async with life(db, settings, clock) as parts:
        await parts.run_in(2, "running")
        (tmp_path / "grant-go").touch()
        await parts.grant_in(asked["grant"]["id"], "active")
        assert await parts.runs() == [
            ("access:grant", "1", "interrupted"),
            ("access:grant", "1", "succeeded"),
        ]
        assert [a for a, _, _ in await parts.audit("alice")] == [
            "requested", "approved", "granted"
        ]  # fmt: skip
        assert lines(tmp_path / "revokes") == []


async def test_a_dry_run_walks_requests_and_grants_through_saying_nothing_ran(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Test global dry run: a request's fulfilment and a grant's provisioning and revoke are
    recorded as done with "dry run: nothing ran", no script runs, and no revoke is retried."""
    path = tmp_path / "runbooks.yaml"
    settings_of(tmp_path)
    path.write_text("remediation: {dry_run: true}\n" + path.read_text())
    settings = load_runbook_file(
        path, brokers=(), policies=("requests",), users=("alice", "bob", "carol")
    )
    async with life(tmp_path / "tocsin.db", settings, clock) as parts:
        made = await parts.requests.submit(item="slow-restart", data={}, actor="alice")
        done = await parts.request_in(made["id"], "fulfilled")
        assert done["timeline"][-1]["note"] == "dry run: nothing ran"
        asked = await parts.access.request(role="ssh", subject="alice", duration=60, actor="alice")
        grant_id = asked["grant"]["id"]
        await parts.grant_in(grant_id, "active")
        clock.advance_to(clock.now() + 60)
        await parts.desk.tick(clock.now())
        await parts.grant_in(grant_id, "expired")
        audit = await parts.audit("alice")
        assert [a for a, _, _ in audit] == [
            "requested", "approved", "granted", "expired", "revoked"
        ]  # fmt: skip
        assert audit[2][2].endswith("(dry run: nothing ran)")
        assert audit[4][2].endswith("(dry run: nothing ran)")
        assert lines(tmp_path / "grants") == []
        assert lines(tmp_path / "revokes") == []
        assert not (tmp_path / "go").exists()
