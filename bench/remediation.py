"""Remediation bench: event-to-runbook latency through the running daemon, service requests
through its API, and access policy decisions in-process.

    .venv/bin/python bench/remediation.py [--rate 100] [--seconds 20] [--no-rate-limit]
        [--concurrency 16] [--requests 2000] [--clients 4] [--decisions 50000] [--part 1,2,3]

Part 1 starts `tocsin run` on a log file with one rule whose `remediate` action runs a bash
script (each line its own key, so no run is skipped as already active), writes `--rate` lines
a second, and times each line from its write to the script's first instruction (bash's
$EPOCHREALTIME, appended to a file). Then the same script is spawned as many times, at the same
rate, from a bare asyncio loop: the floor. Part 2 submits catalog requests that need no
approval over the API from `--clients` concurrent clients and waits until each is fulfilled
by its runbook (/bin/true). Part 3 times AccessBook.request in this process: denied, granted
at once, and waiting for approval.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import resource
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tocsin.records.access import AccessBook
from tocsin.records.access_policy import AccessPolicy, AccessRequest, Verdict, parse_access
from tocsin.tokens import Role, new_token, token_line
from tocsin.yamlsrc import Mark, load_yaml

RULES = r"""
rules:
  - id: bench
    match: {message: {regex: '^bench (?P<n>\d+)$'}}
    key: "{{ n }}"
    actions:
      - remediate: {runbook: stamp}
"""

# The runbook's program: one builtin, so its start time is all the script costs.
STAMP = 'printf \'%s %s\\n\' "$1" "$EPOCHREALTIME" >>"$2"\n'
BASH = "/bin/bash"
COMMITS = "tocsin_store_commits_total"
COMMIT_SECONDS = "tocsin_store_commit_seconds"
FINAL = ("succeeded", "failed", "dry_run", "refused", "rejected", "expired", "interrupted")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _proc_cpu(pid: int) -> tuple[float, float]:
    """Return (own, reaped children's) user+system CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def _own_cpu() -> tuple[float, float]:
    """Return (own, reaped children's) user+system CPU seconds of this process."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def _spread(ms: Sequence[float]) -> dict[str, float]:
    """Return the median, 99th percentile and maximum of some milliseconds."""
    ordered = sorted(ms)
    return {
        "p50": statistics.median(ordered),
        "p99": ordered[max(0, int(len(ordered) * 0.99) - 1)],
        "max": ordered[-1],
    }


def _table(rows: Sequence[Sequence[str]]) -> str:
    """Align rows into columns: the first left, the rest right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
    return "\n".join(lines)


@dataclass
class Daemon:
    """One `tocsin run` on a temp config, its API, and a token for it."""

    root: Path
    api: str
    token: str
    proc: subprocess.Popen[bytes]

    @property
    def db(self) -> Path:
        """The daemon's SQLite file."""
        return self.root / "state" / "tocsin.db"

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Read the store through a read-only connection."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def metric(self, name: str) -> float:
        """Sum the samples of one metric on /metrics."""
        with urllib.request.urlopen(f"{self.api}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith((name + " ", name + "{"))
        )

    def commits(self) -> tuple[float, float]:
        """Return (commits, seconds spent committing) so far."""
        return self.metric(COMMITS), self.metric(COMMIT_SECONDS + "_sum")

    def tail(self) -> str:
        """The end of the daemon's output, for a failure message."""
        return (self.root / "daemon.out").read_text(errors="replace")[-3000:]


@contextlib.contextmanager
def running(runbooks: str, *, log: Path | None, label: str) -> Iterator[Daemon]:
    """Write a config, start `tocsin run`, wait for /healthz (then attach py-spy when
    BENCH_PROFILE names a path prefix); always stop them and clean up."""
    root = Path(tempfile.mkdtemp(prefix="tocsin-bench-remediation-"))
    port, token = _free_port(), new_token()
    (root / "rules").mkdir()
    (root / "rules" / "bench.yaml").write_text(RULES)
    (root / "runbooks.yaml").write_text(runbooks)
    (root / "tokens").write_text(token_line("bench", Role.OPERATOR, token) + "\n")
    sources = "sources: {}\n"
    if log is not None:
        sources = (
            "sources:\n  files:\n"
            f"    - {{path: {log}, parser: plain, start_at: end, poll_interval: 10ms}}\n"
        )
    (root / "tocsin.yaml").write_text(
        f"state_dir: state\nrules: [rules]\nhttp: {{port: {port}, tokens_file: tokens}}\n"
        f"runbooks: runbooks.yaml\nlogging: {{level: warning, format: json}}\n{sources}"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tocsin", "run", "--config", str(root / "tocsin.yaml")],
        stdout=(root / "daemon.out").open("wb"),
        stderr=subprocess.STDOUT,
    )
    daemon = Daemon(root, f"http://127.0.0.1:{port}", token, proc)
    spy: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(200):
            if proc.poll() is not None:
                raise SystemExit(f"tocsin run exited {proc.returncode}:\n{daemon.tail()}")
            try:
                with urllib.request.urlopen(f"{daemon.api}/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise SystemExit(f"tocsin run did not answer /healthz:\n{daemon.tail()}")
        profile = os.environ.get("BENCH_PROFILE")  # py-spy's raw output, CPU (GIL) samples
        if profile:
            spy = subprocess.Popen(
                [shutil.which("py-spy") or "py-spy", "record", "--gil", "-f", "raw",
                 "-o", f"{profile}.{label}.raw", "-p", str(proc.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        yield daemon
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if spy is not None:
            spy.wait(timeout=60)  # it writes its file when the daemon has gone
        shutil.rmtree(root, ignore_errors=True)


def _wait(check: Callable[[], bool], timeout: float, daemon: Daemon) -> bool:
    """Poll `check` every 50 ms until it holds or `timeout` passes (or the daemon died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        if daemon.proc.poll() is not None:
            raise SystemExit(f"tocsin run exited {daemon.proc.returncode}:\n{daemon.tail()}")
        time.sleep(0.05)
    return check()


def _stamps(path: Path) -> tuple[dict[int, float], int]:
    """Read the script's `N START` lines: when each run's program began, and how many lines
    repeat a number (a run started twice)."""
    found: dict[int, float] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    for line in lines:
        n, started = line.split()
        found[int(n)] = float(started)
    return found, len(lines) - len(found)


# ---------------------------------------------------------------------------------------------
# Part 1: event -> runbook through the daemon, and the bare asyncio floor


async def _paced(total: int, rate: float, act: Callable[[int], None]) -> None:
    """Call `act(n)` for n in 0..total-1 at `rate` a second, on schedule."""
    start = time.monotonic()
    for n in range(total):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        act(n)


def daemon_runs(
    rate: int, seconds: float, concurrency: int, rate_limit: bool, work: Path
) -> dict[str, float]:
    """Write lines at `rate` into the daemon's log; time each from write to script start."""
    script, stamps, log = work / "stamp.sh", work / "daemon.stamps", work / "bench.log"
    script.write_text(STAMP)
    log.touch()
    total = int(rate * seconds)
    runbooks = (
        "runbooks:\n  - name: stamp\n    steps:\n"
        f"      - exec: {{argv: [{BASH}, {script}, '{{{{ n }}}}', {stamps}], env: [], "
        "timeout: 10s}\n"
        f"    concurrency: {concurrency}\n"
    )
    if rate_limit:  # per rule and key: each line's key starts once, so it never refuses
        runbooks += "    rate_limit: {runs: 10, per: 1h}\n"
    written: dict[int, float] = {}
    with running(runbooks, log=log, label="runs") as daemon:
        idle = _proc_cpu(daemon.proc.pid)[0]
        time.sleep(2.0)  # the daemon's own cost with nothing to do: tailer polls, ticks
        cpu0 = _proc_cpu(daemon.proc.pid)
        idle = (cpu0[0] - idle) / 2.0
        commits = daemon.commits()
        began_at = time.monotonic()
        with log.open("a") as out:

            def write(n: int) -> None:
                written[n] = time.time()
                out.write(f"bench {n}\n")
                out.flush()

            asyncio.run(_paced(total, rate, write))
        sql = f"SELECT COUNT(*) FROM runs WHERE state IN {FINAL}"
        _wait(lambda: daemon.query(sql)[0][0] >= total, 60 + total / 50, daemon)
        cpu1 = _proc_cpu(daemon.proc.pid)
        busy = (cpu1[0] - cpu0[0]) / (time.monotonic() - began_at)
        made, spent = (
            after - before for before, after in zip(commits, daemon.commits(), strict=True)
        )
        states: dict[str, int] = dict(
            daemon.query("SELECT state, COUNT(*) FROM runs GROUP BY state")
        )
        rows = daemon.query(
            "SELECT key, created_at, started_at, finished_at FROM runs WHERE rule = 'bench'"
        )
        if not rows:
            raise SystemExit(f"no runs recorded:\n{daemon.tail()}")
    began, doubled = _stamps(stamps)
    lost = total - len(began)
    ms = [(began[n] - written[n]) * 1000 for n in began]
    quarters = [
        _spread([(began[n] - written[n]) * 1000 for n in range(q * total // 4, (q + 1) * total // 4)
                 if n in began] or [math.nan])
        for q in range(4)
    ]  # fmt: skip
    created = {int(k): float(c) for k, c, _, _ in rows}
    admitted = {int(k): float(s) for k, _, s, _ in rows if s is not None}
    held = [(f - s) * 1000 for _, _, s, f in rows if s is not None and f is not None]
    starts = sorted(admitted.values())
    last = max(began.values()) if began else time.time()
    return {
        "sent": total,
        "started": len(began),
        "lost": lost,
        "doubled": doubled,
        "succeeded": float(states.get("succeeded", 0)),
        "runs": float(sum(states.values())),
        **{f"{k}_ms": v for k, v in _spread(ms).items()},
        "to_queued_ms": statistics.median((created[n] - written[n]) * 1000 for n in created),
        "to_admitted_ms": statistics.median(
            (admitted[n] - created[n]) * 1000 for n in admitted if n in created
        ),
        "to_process_ms": statistics.median(
            (began[n] - admitted[n]) * 1000 for n in began if n in admitted
        ),
        "slot_ms": statistics.median(held),
        "admission_gap_ms": statistics.median(
            (b - a) * 1000 for a, b in itertools.pairwise(starts)
        ),
        "runs_per_s": len(began) / (last - written[0]),
        "cpu_us_per_run": (cpu1[0] - cpu0[0]) / total * 1e6,
        "child_cpu_us_per_run": (cpu1[1] - cpu0[1]) / total * 1e6,
        "idle_cpu_pct": idle * 100,
        "cpu_pct": busy * 100,
        "commits_per_run": made / total,
        "commit_ms": spent / made * 1000,
        **{f"q{q + 1}_{k}_ms": v for q, spread in enumerate(quarters) for k, v in spread.items()},
    }


def floor_runs(rate: int, seconds: float, work: Path) -> dict[str, float]:
    """Spawn the same script `rate` times a second from a bare asyncio loop, as the daemon does
    (new session, pipes, empty environment), and time each from the spawn call to its start."""
    script, stamps = work / "stamp.sh", work / "floor.stamps"
    script.write_text(STAMP)
    total = int(rate * seconds)
    spawned: dict[int, float] = {}
    failures: list[int] = []

    async def one(n: int) -> None:
        spawned[n] = time.time()
        proc = await asyncio.create_subprocess_exec(
            BASH, str(script), str(n), str(stamps),
            env={}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        await proc.communicate()
        if proc.returncode != 0:
            failures.append(n)

    async def main() -> float:
        tasks: list[asyncio.Task[None]] = []
        await _paced(total, rate, lambda n: tasks.append(asyncio.create_task(one(n))))
        await asyncio.gather(*tasks)
        return time.time()

    cpu0 = _own_cpu()
    asyncio.run(main())
    cpu1 = _own_cpu()
    began, doubled = _stamps(stamps)
    ms = [(began[n] - spawned[n]) * 1000 for n in began]
    return {
        "sent": total,
        "started": len(began),
        "lost": total - len(began) + len(failures),
        "doubled": doubled,
        **{f"{k}_ms": v for k, v in _spread(ms).items()},
        "runs_per_s": len(began) / (max(began.values()) - spawned[0]),
        "cpu_us_per_run": (cpu1[0] - cpu0[0]) / total * 1e6,
        "child_cpu_us_per_run": (cpu1[1] - cpu0[1]) / total * 1e6,
    }


def report_runs(
    rate: int, rate_limit: bool, daemon: dict[str, float], floor: dict[str, float]
) -> bool:
    """Print part 1 side by side; tell whether every line became exactly one good run."""
    limit = "rate_limit {runs: 10, per: 1h}" if rate_limit else "no rate_limit"
    print(
        f"\n1. event -> runbook process start, {rate} lines/s ({daemon['sent']:,.0f} lines), "
        f"{limit}"
    )
    rows = [["", "tocsin run (remediate)", "bare asyncio spawn"]]
    for label, key, fmt in (
        ("started / sent", "", ""),
        ("p50 ms", "p50_ms", "{:.1f}"),
        ("p99 ms", "p99_ms", "{:.1f}"),
        ("max ms", "max_ms", "{:.1f}"),
        ("runs/s sustained", "runs_per_s", "{:.0f}"),
        ("CPU us per run, own", "cpu_us_per_run", "{:,.0f}"),
        ("CPU us per run, children", "child_cpu_us_per_run", "{:,.0f}"),
    ):
        if not key:
            rows.append(
                [label, *(f"{int(r['started']):,} / {int(r['sent']):,}" for r in (daemon, floor))]
            )
        else:
            rows.append([label, fmt.format(daemon[key]), fmt.format(floor[key])])
    print(_table(rows))
    print(
        f"runs in the store: {daemon['runs']:,.0f}, succeeded {daemon['succeeded']:,.0f}; "
        f"median write -> run queued {daemon['to_queued_ms']:.1f} ms, queued -> admitted "
        f"{daemon['to_admitted_ms']:.1f} ms, admitted -> process start "
        f"{daemon['to_process_ms']:.1f} ms, admitted -> program done "
        f"{daemon['slot_ms']:.1f} ms, between two admissions {daemon['admission_gap_ms']:.1f} "
        f"ms; {daemon['commits_per_run']:.1f} store commits per "
        f"run, {daemon['commit_ms']:.1f} ms each on average; daemon CPU {daemon['cpu_pct']:.0f} % "
        f"of a core during the run, {daemon['idle_cpu_pct']:.1f} % when idle"
    )
    print(
        "tocsin p50 / p99 ms by quarter of the lines: "
        + ", ".join(
            f"{daemon[f'q{q}_p50_ms']:.1f} / {daemon[f'q{q}_p99_ms']:.1f}" for q in range(1, 5)
        )
    )
    ok = not any(r["lost"] or r["doubled"] for r in (daemon, floor))
    if not ok or daemon["succeeded"] != daemon["sent"] or daemon["runs"] != daemon["sent"]:
        print("MISMATCH: not every line became exactly one successful run")
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Part 2: service requests through the API

REQUEST_RUNBOOKS = """
runbooks:
  - name: stamp
    steps:
      - exec: {argv: [/bin/true], env: []}
  - name: fulfil
    steps:
      - exec: {argv: [/bin/true], env: [], timeout: 10s}
    concurrency: CONCURRENCY
catalog:
  - name: bench-item
    description: Needs no approval; fulfilled by /bin/true
    fields:
      n: {type: integer, required: true, min: 0}
    runbook: fulfil
"""


async def _submit(daemon: Daemon, total: int, clients: int) -> tuple[dict[int, float], list[float]]:
    """POST `total` requests from `clients` concurrent clients; send times by id, answer ms."""
    sent: dict[int, float] = {}
    answers: list[float] = []
    counter = iter(range(total))
    headers = {"Authorization": f"Bearer {daemon.token}"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def client() -> None:
            for n in counter:
                at = time.time()
                started = time.perf_counter()
                async with session.post(
                    f"{daemon.api}/api/v1/requests", json={"item": "bench-item", "input": {"n": n}}
                ) as resp:
                    body = await resp.json()
                answers.append((time.perf_counter() - started) * 1000)
                if resp.status != 201:
                    raise SystemExit(f"POST /api/v1/requests: {resp.status} {body}")
                sent[int(body["id"])] = at

        await asyncio.gather(*(client() for _ in range(clients)))
    return sent, answers


def service_requests(total: int, clients: int, concurrency: int) -> dict[str, float]:
    """Submit catalog requests over the API; time the answers and each request's fulfilment."""
    runbooks = REQUEST_RUNBOOKS.replace("CONCURRENCY", str(concurrency))
    with running(runbooks, log=None, label="requests") as daemon:
        cpu0 = _proc_cpu(daemon.proc.pid)
        commits = daemon.commits()
        started = time.time()
        sent, answers = asyncio.run(_submit(daemon, total, clients))
        submitted = time.time() - started
        open_sql = "SELECT COUNT(*) FROM service_requests WHERE state IN " + str(
            ("submitted", "approved", "fulfilling")
        )
        _wait(lambda: daemon.query(open_sql)[0][0] == 0, 60 + total / 20, daemon)
        cpu1 = _proc_cpu(daemon.proc.pid)
        busy = (cpu1[0] - cpu0[0]) / (time.time() - started)
        made, spent = (
            after - before for before, after in zip(commits, daemon.commits(), strict=True)
        )
        rows = daemon.query("SELECT id, state, data FROM service_requests")
    finished = {int(i): json.loads(d)["finished_at"] for i, s, d in rows if s == "fulfilled"}
    done = [(finished[i] - sent[i]) * 1000 for i in finished if i in sent]
    last = max(finished.values()) if finished else started
    return {
        "sent": total,
        "fulfilled": len(finished),
        "other": len(rows) - len(finished),
        "requests_per_s": total / submitted,
        **{f"answer_{k}_ms": v for k, v in _spread(answers).items()},
        **({f"done_{k}_ms": v for k, v in _spread(done).items()} if done else {}),
        "fulfilled_per_s": len(finished) / (last - started),
        "cpu_us_per_request": (cpu1[0] - cpu0[0]) / total * 1e6,
        "child_cpu_us_per_request": (cpu1[1] - cpu0[1]) / total * 1e6,
        "commits_per_request": made / total,
        "commit_ms": spent / made * 1000,
        "cpu_pct": busy * 100,
    }


def report_requests(clients: int, figures: dict[str, float]) -> bool:
    """Print part 2; tell whether every request was fulfilled."""
    print(f"\n2. service requests over the API, {clients} clients ({figures['sent']:,.0f})")
    rows = [["", "p50", "p99", "max"]]
    for label, key in (("answer ms (POST)", "answer"), ("submit -> fulfilled ms", "done")):
        if f"{key}_p50_ms" in figures:
            rows.append(
                [label, *(f"{figures[f'{key}_{k}_ms']:.1f}" for k in ("p50", "p99", "max"))]
            )
    print(_table(rows))
    print(
        f"{figures['requests_per_s']:,.0f} requests/s answered, "
        f"{figures['fulfilled_per_s']:,.0f} fulfilled/s; "
        f"fulfilled {figures['fulfilled']:,.0f} / {figures['sent']:,.0f}"
        f"{'' if not figures['other'] else ', NOT fulfilled ' + str(int(figures['other']))}; "
        f"daemon CPU {figures['cpu_us_per_request']:,.0f} us per request "
        f"(+ {figures['child_cpu_us_per_request']:,.0f} us in /bin/true), "
        f"{figures['commits_per_request']:.1f} store commits per request, "
        f"{figures['commit_ms']:.1f} ms each on average; daemon CPU {figures['cpu_pct']:.0f} % "
        "of a core"
    )
    return figures["fulfilled"] == figures["sent"] and not figures["other"]


# ---------------------------------------------------------------------------------------------
# Part 3: access policy decisions in-process

USERS = [f"user{i:03d}" for i in range(200)]


def access_policy() -> AccessPolicy:
    """A policy of 20 roles over 200 users in 10 groups; role 0 needs no approval for any
    subject, role 1 needs approval, the rest are held by two groups each."""
    groups = {f"team{g}": USERS[g * 20 : g * 20 + 20] for g in range(10)}
    roles: list[dict[str, object]] = [
        {
            "name": "svc-login",
            "rights": ["ssh:login"],
            "subjects": "any",
            "requesters": ["group:team0", "rule:bench"],
            "max_duration": "8h",
            "provision": {"grant": "grant", "revoke": "revoke"},
        },
        {
            "name": "db-admin",
            "rights": ["postgres:superuser"],
            "subjects": "any",
            "requesters": ["group:team0"],
            "approval": {"by": ["group:team1"], "role": "operator", "ttl": "1h"},
            "max_duration": "8h",
            "provision": {"grant": "grant", "revoke": "revoke"},
        },
    ]
    for r in range(2, 20):
        roles.append(
            {
                "name": f"role{r}",
                "rights": [f"app{r}:admin"],
                "holders": [f"group:team{r % 10}", f"group:team{(r + 3) % 10}", "user:user199"],
                "max_duration": "4h",
                "provision": {"grant": "grant", "revoke": "revoke"},
            }
        )
    text = json.dumps({"groups": groups, "roles": roles})  # JSON is YAML
    return parse_access(
        load_yaml(text, name="access.yaml"),
        Mark("access.yaml", 1, 1),
        runbooks=("grant", "revoke"),
        users=USERS,
    )


def access_decisions(count: int, rounds: int = 5) -> dict[str, float]:
    """Time AccessBook.request per kind of outcome; the median of `rounds` rounds, per second."""
    policy = access_policy()
    now = 1_795_564_800.0

    def ask(role: str, subject: str, by: str, duration: float | None, n: int) -> AccessRequest:
        return AccessRequest(
            kind="grant", role=role, subject=subject, requested_by=by, duration=duration,
            source="api", time=now + n,
        )  # fmt: skip

    def denied_holder(n: int) -> AccessRequest:  # user040 (team2) may not hold role5
        return ask("role5", "user040", "user040", None, n)

    def denied_long(n: int) -> AccessRequest:  # a holder asking for more than max_duration
        return ask("role2", "user040", "user040", 86400.0, n)

    def granted(n: int) -> AccessRequest:  # each a new subject, so none is held already
        return ask("svc-login", f"svc{n}", "user005", 3600.0, n)

    def approval(n: int) -> AccessRequest:
        return ask("db-admin", f"svc{n}", "user005", None, n)

    kinds: list[tuple[str, Callable[[int], AccessRequest], Verdict]] = [
        ("denied: may not hold the role", denied_holder, Verdict.DENIED),
        ("denied: over max_duration", denied_long, Verdict.DENIED),
        ("granted, no approval (provision run)", granted, Verdict.ALLOWED),
        ("needs approval (waits)", approval, Verdict.NEEDS_APPROVAL),
    ]
    figures: dict[str, float] = {}
    for label, make, verdict in kinds:
        book_rates: list[float] = []
        policy_rates: list[float] = []
        for _ in range(rounds):
            requests = [make(n) for n in range(count)]
            book, wrong = AccessBook(policy), 0
            started = time.perf_counter()
            for r in requests:  # each outcome is checked and dropped, as the desk drops it
                decided = book.request(r).decision
                wrong += decided is None or decided.verdict is not verdict
            book_rates.append(count / (time.perf_counter() - started))
            started = time.perf_counter()
            for r in requests:
                wrong += policy.decide(r).verdict is not verdict
            policy_rates.append(count / (time.perf_counter() - started))
            if wrong:
                raise SystemExit(f"{label}: {wrong} decisions were not {verdict}")
        figures[label] = statistics.median(book_rates)
        figures[label + " [policy.decide]"] = statistics.median(policy_rates)
    return figures


def report_access(count: int, figures: dict[str, float]) -> None:
    """Print part 3."""
    print(f"\n3. access decisions in-process ({count:,} per kind, median of 5 rounds)")
    rows = [["request", "AccessBook.request/s", "policy.decide/s"]]
    for label, rate in figures.items():
        if not label.endswith("]"):
            rows.append([label, f"{rate:,.0f}", f"{figures[label + ' [policy.decide]']:,.0f}"])
    print(_table(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=int, default=100, help="lines (runs) a second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--no-rate-limit", action="store_true", help="part 1's runbook without a rate_limit"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="the runbooks' concurrency")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--decisions", type=int, default=50_000)
    parser.add_argument("--part", default="1,2,3", help="which parts to run, e.g. 1,3")
    args = parser.parse_args()
    parts = {p.strip() for p in args.part.split(",")}
    print(
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}, "
        f"load average {os.getloadavg()[0]:.2f} (others' work on this host skews the figures)"
    )
    figures: dict[str, dict[str, float]] = {}
    ok = True
    if "1" in parts:
        work = Path(tempfile.mkdtemp(prefix="tocsin-bench-stamps-"))
        try:
            figures["daemon_runs"] = daemon_runs(
                args.rate, args.seconds, args.concurrency, not args.no_rate_limit, work
            )
            figures["floor_runs"] = floor_runs(args.rate, args.seconds, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        ok &= report_runs(
            args.rate, not args.no_rate_limit, figures["daemon_runs"], figures["floor_runs"]
        )
    if "2" in parts:
        figures["requests"] = service_requests(args.requests, args.clients, args.concurrency)
        ok &= report_requests(args.clients, figures["requests"])
    if "3" in parts:
        figures["access"] = access_decisions(args.decisions)
        report_access(args.decisions, figures["access"])
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    print(json.dumps(figures))
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
