"""A real ApiServer on an event loop of its own thread, over a real SQLite file, with the
daemon's own desks (incidents, silences, maintenance, problems, remediation runs, service
requests and access, wired as app.py wires them) and a tokens file: what the API tests, the CLI
tests and the fuzzer talk to over loopback. Runbooks run real tiny programs; the remediator
and the service desk read the kit's virtual `now`."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tocsin.actions.registry import ACTION_KINDS
from tocsin.api.http import ApiServer
from tocsin.desks import Incidents, Maintenance, Problems, Runs, Silences
from tocsin.engine.muting import Muter
from tocsin.engine.pipeline import Engine
from tocsin.model import RUN_FINISHED, IncidentChange, RunRequest
from tocsin.mute.silences import SilenceBook
from tocsin.oncall.schedule import parse_oncall
from tocsin.records.incidents import IncidentBook
from tocsin.records.known_errors import KnownErrorBook, parse_known_errors
from tocsin.records.priority import PriorityMatrix
from tocsin.records.problem_keeper import ProblemKeeper
from tocsin.records.problems import ProblemBook, RecurrencePolicy
from tocsin.reloading import ReloadOutcome
from tocsin.remediator import Remediator
from tocsin.rules.loader import load_rules
from tocsin.runbooks.render import render_run
from tocsin.runbooks.settings import load_runbook_file
from tocsin.servicedesk import AccessDeskImpl, RequestDeskImpl, ServiceDesk
from tocsin.store.base import CommitBatch
from tocsin.store.sqlite import SqliteStore
from tocsin.store.writer import StoreWriter
from tocsin.tokens import Role, read_tokens, token_line
from tocsin.yamlsrc import Mark, load_yaml

T = TypeVar("T")

T0 = 1_795_564_800.0  # 2026-11-25T00:00:00Z

# One token per role; the tokens file holds their hashes (and one bare, deprecated token).
TOKENS = {
    "viewer": "viewer-token-0123456789abcdef",
    "operator": "operator-token-0123456789abcdef",
    "admin": "admin-token-0123456789abcdef",
}
LEGACY = "legacy-bare-token-0123456789"
PRINCIPALS = {"viewer": "vera", "operator": "olga", "admin": "adam"}

ONCALL = """\
oncall:
  - name: ops
    time_zone: UTC
    rotations:
      - {name: daily, start: "2026-11-01 09:00", length: 1d, members: [alice, bob]}
  - name: nobody
    time_zone: UTC
    rotations:
      - name: weekends
        start: "2026-11-01 00:00"
        length: 1w
        members: [carol]
        active: {weekdays: [sat, sun]}
"""
# The config's one known error (the API cannot remove it).
KNOWN_ERRORS = """\
known_errors:
  - name: disk-full-tmp
    matchers: [rule=disk-full, mount=/tmp]
    workaround: clear /tmp/cache
    root_cause: the cache is never pruned
"""
USERS = {"alice": {"email": "alice@example.com"}, "bob": {"email": "bob@example.com"}}

SCRIPTS = Path(__file__).resolve().parent / "runbooks" / "scripts"
RULES = Path(__file__).resolve().parents[1] / "rules"  # the bundled rules, for /api/v1/rules
# The runbooks file (SCRIPTS and OUT are filled in): real tiny programs. restart-unit runs
# /bin/true with the unit, then prints `said` and exits with `status`; broken fails; gated
# waits for an operator; rehearse is a dry run; the others note what they did in OUT/notes.
RUNBOOKS = """\
runbooks:
  - name: restart-unit
    steps:
      - exec: {argv: [/bin/true, restart, "{{ unit }}"]}
      - exec: {argv: [/bin/sh, SCRIPTS/apikit_echo.sh, "{{ said }}", "{{ status }}"]}
  - name: broken
    steps: [{exec: {argv: [/bin/false]}}]
  - name: gated
    steps: [{exec: {argv: [/bin/true]}}]
    approval: {ttl: 30m}
  - name: rehearse
    steps: [{exec: {argv: [/bin/true]}}]
    dry_run: true
  - name: reset-password
    steps:
      - exec: {argv: [/bin/sh, SCRIPTS/apikit_note.sh, OUT/notes, reset, "{{ request.user }}"]}
  - name: grant-db
    steps: &provision
      - exec:
          argv: [/bin/sh, SCRIPTS/apikit_note.sh, OUT/notes,
                 "{{ access.action }}", "{{ access.role }}", "{{ access.subject }}"]
  - {name: revoke-db, steps: *provision}
  - {name: grant-ssh, steps: *provision}
  - {name: revoke-ssh, steps: *provision}

# new-vm needs an admin's approval and has no runbook (people fulfil it by hand);
# reset-password needs no approval and its runbook fulfils it; restart-app's runbook waits
# for an operator's approval while it fulfils the request.
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
    runbook: reset-password
  - name: restart-app
    fields:
      app: {type: string, required: true}
    runbook: gated

# The kit's principals: vera (viewer), olga (operator), adam (admin); carol holds no token.
# vera may hold neither role; db-admin needs adam's approval, ssh none.
access:
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
PATIENCE = 10.0  # seconds to wait for real runs to finish before a test fails


def tokens_text() -> str:
    """The tokens file the kit uses: three hashed lines and one bare token."""
    lines = [f"# tocsin API tokens\n{LEGACY}\n"]
    lines += [
        token_line(PRINCIPALS[role], Role.named(role), token) + "\n"
        for role, token in TOKENS.items()
    ]
    return "".join(lines)


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, decoded JSON body (or text), headers."""

    status: int
    body: Any
    headers: dict[str, str]


class ApiKit:
    """The API of a daemon without sources: start with `with ApiKit(tmp_path) as api:`."""

    def __init__(self, root: Path, *, tokens: str | None = None, open_reads: bool = True) -> None:
        self.root = root
        self.db = root / "tocsin.db"
        self.tokens_file = root / "tokens"
        self.tokens_file.write_text(tokens_text() if tokens is None else tokens)
        self.open_reads = open_reads
        self.now = T0
        self.url = ""
        self.reloads: list[str] = []  # triggers of the reloads asked for
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="apikit", daemon=True)
        self.server: ApiServer | None = None
        self.writer: StoreWriter | None = None
        self.desk: Incidents | None = None
        self.problems: Problems | None = None
        self.remediator: Remediator | None = None
        self.service: ServiceDesk | None = None
        self.engine: Engine | None = None  # its rules and figures: /api/v1/rules
        self.notes = root / "notes"  # what the runbooks noted, a line each
        self._remediating: asyncio.Task[None] | None = None
        self._commit: Any = None

    def __enter__(self) -> ApiKit:
        self._thread.start()
        self.run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the kit's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=20)

    async def _start(self) -> None:
        writer = StoreWriter(store=SqliteStore(path=self.db))
        await writer.__aenter__()
        self.writer = writer
        book = IncidentBook(priorities=PriorityMatrix())
        muter = Muter(silences=SilenceBook())

        async def commit(changes: list[IncidentChange]) -> asyncio.Future[None]:
            return await writer.submit(CommitBatch.of(changes, []))

        self._commit = commit
        known = parse_known_errors(
            load_yaml(KNOWN_ERRORS, name="known_errors.yaml")["known_errors"],
            Mark("known_errors.yaml", 1, 1),
        )
        self.problems = Problems(
            keeper=ProblemKeeper(
                book=ProblemBook(),
                policy=RecurrencePolicy(()),
                known=KnownErrorBook(config=known),
            ),
            writer=writer,
            clock=lambda: self.now,
        )

        self.desk = Incidents(
            book=book,
            writer=writer,
            commit=commit,
            clock=lambda: self.now,
            schedules=parse_oncall(
                load_yaml(ONCALL, name="oncall.yaml")["oncall"], Mark("x", 1, 1)
            ),
            users=USERS,
            muter=muter,
        )
        # As app.py builds them: the remediator, the service desk over it, then resume both.
        runbooks = self.root / "runbooks.yaml"
        runbooks.write_text(
            RUNBOOKS.replace("SCRIPTS", str(SCRIPTS)).replace("OUT", str(self.root))
        )
        settings = load_runbook_file(runbooks, brokers=(), users=(*PRINCIPALS.values(), "carol"))
        remediator = Remediator(
            settings=settings,
            writer=writer,
            book=book,
            clock=_KitClock(self),
            commit_changes=commit,
            muter=muter,
            next_id=await writer.call(lambda s: s.next_run_id()),
        )
        service = await ServiceDesk.load(
            settings=settings, writer=writer, remediator=remediator, clock=lambda: self.now
        )
        await remediator.resume()
        self._remediating = asyncio.create_task(remediator.run(), name="apikit.remediation")
        await service.resume()
        self.remediator, self.service = remediator, service
        ruleset = load_rules([RULES], kinds=ACTION_KINDS)
        self.engine = Engine(
            rules=ruleset.rules,
            lists=ruleset.lists,
            book=IncidentBook(priorities=PriorityMatrix()),
            clock=_KitClock(self),
        )
        server = ApiServer(
            host="127.0.0.1",
            port=0,
            store_path=self.db,
            health=lambda: {"status": "ok", "queued_events": 0},
            silences=Silences(book=muter.silences, muter=muter, writer=writer),
            maintenance=Maintenance(configured=(), made=[], muter=muter, writer=writer),
            incidents=self.desk,
            runs=Runs(remediator=remediator, writer=writer),
            problems=self.problems,
            requests=RequestDeskImpl(service),
            access=AccessDeskImpl(service),
            rules=self.engine,
            config=lambda: {"config": str(self.root / "tocsin.yaml"), "rules": []},
            reload=self._reload,
            tokens=read_tokens(self.tokens_file),
            open_reads=self.open_reads,
        )
        await server.start()
        self.server = server
        self.url = f"http://{server.address}"

    async def _stop(self) -> None:
        """Stop as the daemon does: the API, then the remediation (running runs are killed),
        then the writer (what is pending is committed first)."""
        if self.server is not None:
            await self.server.stop()
        if self._remediating is not None:
            self._remediating.cancel()
            await asyncio.gather(self._remediating, return_exceptions=True)
        if self.remediator is not None:
            await self.remediator.stop()
        if self.writer is not None:
            await self.writer.__aexit__(None, None, None)

    async def _reload(self, trigger: str) -> dict[str, Any]:
        """The kit has no config files to read again: every reload finds nothing to change
        (the daemon's reload is tested on a real daemon: tests/integration/test_reload_live.py)."""
        self.reloads.append(trigger)
        return ReloadOutcome(True, trigger).to_dict()

    def open_incident(self, title: str = "disk full", **fields: Any) -> int:
        """Open an incident through the book and commit it, as the engine would; its id."""

        async def make() -> int:
            assert self.desk is not None
            fields.setdefault("rule", "disk")
            fields.setdefault("key", title)
            fields.setdefault("impact", "medium")
            fields.setdefault("urgency", "medium")
            change = self.desk.book.open(title=title, time=self.now, actor="tocsin", **fields)
            await (await self._commit([change]))
            return change.incident.id

        return self.run(make())

    def remediate(
        self, runbook: str, *, rule: str = "unit-failed", key: str = "web1", **variables: Any
    ) -> int:
        """Ask for a run as a rule's remediate action does (rendered, numbered, committed,
        then admitted), on the open incident of `rule` and `key` if there is one; its id."""

        async def ask() -> int:
            assert self.remediator is not None
            assert self.writer is not None
            found = self.remediator.settings.runbooks[runbook]
            request = RunRequest(
                runbook=runbook,
                rule=rule,
                key=key,
                target=key,
                fingerprint=f"{rule}:{key}",
                spec=render_run(found, variables).to_dict(),
                time=self.now,
            )
            (made,) = self.remediator.number([request])
            await (await self.writer.submit(CommitBatch(runs=[copy.copy(made)])))
            self.remediator.committed([made])
            return made.id

        return self.run(ask())

    def until(self, path: str, done: Callable[[Any], bool], what: str) -> Any:
        """GET `path` until `done(body)` (real runs take real time); the body, or fail
        saying `what` did not happen within PATIENCE."""
        deadline = time.monotonic() + PATIENCE
        while True:
            answer = self.request("GET", path)
            if answer.status == 200 and done(answer.body):
                return answer.body
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last answer {answer}")
            time.sleep(0.01)

    def finished(self, run_id: int) -> dict[str, Any]:
        """The run's view once it has finished."""
        found: dict[str, Any] = self.until(
            f"/api/v1/runs/{run_id}",
            lambda run: run["state"] in RUN_FINISHED,
            f"run {run_id} to finish",
        )
        return found

    def noted(self) -> list[str]:
        """The lines the runbooks noted so far, oldest first."""
        return self.notes.read_text().splitlines() if self.notes.exists() else []

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Send one request (JSON `body`, or `raw` bytes) with a bearer token if given."""
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return _reply(resp.status, resp.read(), dict(resp.headers))
        except urllib.error.HTTPError as exc:
            return _reply(exc.code, exc.read(), dict(exc.headers))


class _KitClock:
    """The remediator's clock: the kit's virtual `now`."""

    def __init__(self, kit: ApiKit) -> None:
        self._kit = kit

    def now(self) -> float:
        """Return the kit's time."""
        return self._kit.now


def _reply(status: int, data: bytes, headers: dict[str, str]) -> Reply:
    try:
        body: Any = json.loads(data)
    except ValueError:
        body = data.decode(errors="replace")
    return Reply(status, body, headers)
