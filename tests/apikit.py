"""A real ApiServer on an event loop of its own thread, over a real SQLite file, with the
daemon's own desks (incidents, silences, maintenance, problems; stand-ins for runs, service
requests and access) and a tokens file: what the API tests, the CLI tests and the fuzzer talk
to over loopback."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from standin_desks import StandInAccess, StandInRequests, StandInRuns
from tocsin.api.http import ApiServer
from tocsin.desks import Incidents, Maintenance, Problems, Silences
from tocsin.engine.muting import Muter
from tocsin.model import IncidentChange
from tocsin.mute.silences import SilenceBook
from tocsin.oncall.schedule import parse_oncall
from tocsin.records.incidents import IncidentBook
from tocsin.records.known_errors import KnownErrorBook, parse_known_errors
from tocsin.records.priority import PriorityMatrix
from tocsin.records.problem_keeper import ProblemKeeper
from tocsin.records.problems import ProblemBook, RecurrencePolicy
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
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="apikit", daemon=True)
        self.server: ApiServer | None = None
        self._writer: StoreWriter | None = None
        self.desk: Incidents | None = None
        # A stand-in until tocsin.desks has the daemon's own run desk.
        self.runs = StandInRuns(clock=lambda: self.now)
        # Likewise until it has the request and access desks.
        self.requests = StandInRequests(clock=lambda: self.now)
        self.access = StandInAccess(clock=lambda: self.now)
        self.problems: Problems | None = None
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
        self._writer = writer
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
        server = ApiServer(
            host="127.0.0.1",
            port=0,
            store_path=self.db,
            health=lambda: {"status": "ok", "queued_events": 0},
            silences=Silences(book=muter.silences, muter=muter, writer=writer),
            maintenance=Maintenance(configured=(), made=[], muter=muter, writer=writer),
            incidents=self.desk,
            runs=self.runs,
            problems=self.problems,
            requests=self.requests,
            access=self.access,
            config=lambda: {"config": str(self.root / "tocsin.yaml"), "rules": []},
            tokens=read_tokens(self.tokens_file),
            open_reads=self.open_reads,
        )
        await server.start()
        self.server = server
        self.url = f"http://{server.address}"

    async def _stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        if self._writer is not None:
            await self._writer.__aexit__(None, None, None)

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


def _reply(status: int, data: bytes, headers: dict[str, str]) -> Reply:
    try:
        body: Any = json.loads(data)
    except ValueError:
        body = data.decode(errors="replace")
    return Reply(status, body, headers)
