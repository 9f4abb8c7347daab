"""Run a rendered run's steps in order, stop at the first failure, and record what happened.

An exec step starts its program directly in a new session (its own process group) with only
the allowlisted environment and stdin from /dev/null. Both pipes are read as they fill: the
first `max_output` bytes of each are kept and the rest only counted, so a chatty program never
blocks. On timeout the whole group gets SIGTERM, then SIGKILL after a grace, so grandchildren
die too (one that starts a session of its own escapes; only a cgroup would catch it). After
the program exits, output still held open by something it left behind is read for the grace
at most, then the pipes are closed. A failing step never raises: it is a failed StepResult.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pwd
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from tocsin.engine.clock import Clock
from tocsin.runbooks.render import RenderedExec, RenderedHttp, RenderedPublish, RenderedRun

__all__ = ["KILL_GRACE", "Publish", "RunResult", "StepResult", "execute"]

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL, and for output after the program exits
_POLL = 0.05  # how often a terminated group is checked for survivors

# Queues one MQTT message: (broker, outbox row body {topic, payload, qos, retain}).
Publish = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one step did; `summary` is one line for the timeline."""

    kind: str  # exec, http or publish
    ok: bool
    started: float  # clock time
    duration: float  # seconds
    summary: str
    exit_code: int | None = None  # exec: the exit status, None when killed by a signal
    signal: str | None = None  # exec: e.g. "SIGKILL"
    timed_out: bool = False
    stdout: str = ""  # exec: the first max_output bytes, decoded with errors replaced
    stderr: str = ""
    stdout_cut: int = 0  # bytes left out after those
    stderr_cut: int = 0
    status: int | None = None  # http: the answer's status
    response: str = ""  # http: the first max_output bytes of the answer
    response_cut: int = 0
    error: str | None = None  # why the step could not do its work at all

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a run did: the steps that ran, and how many were skipped after a failure."""

    runbook: str
    ok: bool
    steps: tuple[StepResult, ...]
    skipped: int
    started: float
    duration: float

    @property
    def summary(self) -> str:
        """Say in one line how the run went ("exit 0 in 1.2s", "step 2 of 3 (http) failed: ...")."""
        if not self.steps:
            return "no steps ran"
        last = self.steps[-1]
        total = len(self.steps) + self.skipped
        if total == 1:
            return last.summary
        if self.ok:
            return f"{total} steps ok in {_took(self.duration)}"
        return f"step {len(self.steps)} of {total} ({last.kind}) failed: {last.summary}"

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data, summary included."""
        return {
            "runbook": self.runbook,
            "ok": self.ok,
            "summary": self.summary,
            "started": self.started,
            "duration": self.duration,
            "skipped": self.skipped,
            "steps": [step.to_dict() for step in self.steps],
        }


async def execute(
    run: RenderedRun,
    *,
    max_output: int,
    publish: Publish | None,
    session: aiohttp.ClientSession | None,
    clock: Clock,
    kill_grace: float = KILL_GRACE,
) -> RunResult:
    """Run the steps in order until one fails; without a `session`, http steps get their own."""
    started = clock.now()
    start = time.monotonic()
    results: list[StepResult] = []
    own: aiohttp.ClientSession | None = None
    try:
        for step in run.steps:
            if isinstance(step, RenderedExec):
                result = await _exec(step, max_output, kill_grace, clock)
            elif isinstance(step, RenderedHttp):
                if session is None:
                    own = session = aiohttp.ClientSession()
                result = await _http(step, session, max_output, clock)
            else:
                result = _publish(step, publish, clock)
            results.append(result)
            if not result.ok:
                break
    finally:
        if own is not None:
            await own.close()
    return RunResult(
        runbook=run.runbook,
        ok=len(results) == len(run.steps) and all(r.ok for r in results),
        steps=tuple(results),
        skipped=len(run.steps) - len(results),
        started=started,
        duration=time.monotonic() - start,
    )


def _took(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms" if seconds < 0.1 else f"{seconds:.1f}s"


class _Output(asyncio.SubprocessProtocol):
    """Keep the first `limit` bytes of stdout and stderr, count the rest, note exit and EOF."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        self._limit = limit
        self._open = {1, 2}
        self.kept = {1: bytearray(), 2: bytearray()}
        self.cut = {1: 0, 2: 0}
        self.exited: asyncio.Future[None] = loop.create_future()
        self.drained: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        kept = self.kept[fd]
        room = max(self._limit - len(kept), 0)
        kept += data[:room]
        self.cut[fd] += max(len(data) - room, 0)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open.discard(fd)
        if not self._open and not self.drained.done():
            self.drained.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def text(self, fd: int) -> str:
        return self.kept[fd].decode(errors="replace")


async def _exec(step: RenderedExec, max_output: int, grace: float, clock: Clock) -> StepResult:
    started = clock.now()
    start = time.monotonic()

    def failed(error: str) -> StepResult:
        took = time.monotonic() - start
        return StepResult("exec", False, started, took, summary=error, error=error)

    env = {name: os.environ[name] for name in step.env if name in os.environ}
    env.update(step.set_env)
    account: dict[str, Any] = {}
    if step.user is not None:
        try:
            entry = pwd.getpwnam(step.user)
        except KeyError:
            return failed(f"cannot run as {step.user}: no such user")
        groups = os.getgrouplist(step.user, entry.pw_gid)
        account = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": groups}
    loop = asyncio.get_running_loop()
    output = _Output(max_output, loop)
    try:
        transport, _ = await loop.subprocess_exec(
            lambda: output,
            *step.argv,
            cwd=step.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            **account,
        )
    except (OSError, ValueError) as exc:
        return failed(_spawn_error(step, exc))
    group = transport.get_pid()  # the new session's leader: its pid is the group's id
    timed_out = False
    try:
        try:
            await asyncio.wait_for(asyncio.shield(output.exited), step.timeout)
        except TimeoutError:
            timed_out = True
            await _end_group(group, output.exited, grace)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(output.drained), grace)
    finally:
        if transport.get_returncode() is None:  # cancelled (shutdown, kill switch) mid-run
            _signal_group(group, signal.SIGKILL)
        transport.close()
    took = time.monotonic() - start
    code = transport.get_returncode()
    killed = _signal_name(-code) if code is not None and code < 0 else None
    if timed_out:
        summary = f"timed out after {step.timeout:g}s; killed the process group"
    elif killed is not None:
        summary = f"killed by {killed} after {_took(took)}"
    else:
        summary = f"exit {code} in {_took(took)}"
    return StepResult(
        "exec",
        ok=code == 0 and not timed_out,
        started=started,
        duration=took,
        summary=summary,
        exit_code=code if code is not None and code >= 0 else None,
        signal=killed,
        timed_out=timed_out,
        stdout=output.text(1),
        stderr=output.text(2),
        stdout_cut=output.cut[1],
        stderr_cut=output.cut[2],
    )


def _spawn_error(step: RenderedExec, exc: OSError | ValueError) -> str:
    """Say why the program did not start: a missing program, its mode, the cwd, the user."""
    if isinstance(exc, ValueError):
        return f"cannot execute {step.argv[0]}: {exc}"
    reason = (exc.strerror or str(exc)).lower()
    if exc.filename == step.cwd and exc.filename != step.argv[0]:
        return f"cannot change to directory {step.cwd}: {reason}"
    if exc.filename is None and step.user is not None:
        return f"cannot start {step.argv[0]} as {step.user}: {reason}"
    return f"cannot execute {step.argv[0]}: {reason}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _signal_group(group: int, sig: signal.Signals) -> None:
    # PermissionError: the group now runs as another user (a setuid program); nothing to do.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _end_group(group: int, exited: asyncio.Future[None], grace: float) -> None:
    """SIGTERM the group; SIGKILL it once `grace` is up unless every member has gone."""
    _signal_group(group, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while loop.time() < deadline:
        if exited.done() and not _group_alive(group):
            return
        await asyncio.sleep(_POLL)
    _signal_group(group, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(exited), grace)


def _shown_url(url: str) -> str:
    """Return the URL without user, password, query or fragment: they may hold tokens."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


async def _http(
    step: RenderedHttp, session: aiohttp.ClientSession, max_output: int, clock: Clock
) -> StepResult:
    started = clock.now()
    start = time.monotonic()
    shown = _shown_url(step.url)
    status: int | None = None
    kept = bytearray()
    cut = 0
    error: str | None = None
    timed_out = False
    try:
        async with session.request(
            step.method,
            step.url,
            headers=dict(step.headers),
            data=None if step.body is None else step.body.encode(),
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=step.timeout),
        ) as response:
            status = response.status
            async for chunk in response.content.iter_any():
                room = max(max_output - len(kept), 0)
                kept += chunk[:room]
                cut += max(len(chunk) - room, 0)
    except TimeoutError:
        timed_out = True
        error = (
            f"no answer from {shown} within {step.timeout:g}s"
            if status is None
            else f"timed out after {step.timeout:g}s reading the answer from {shown}"
        )
    except aiohttp.ClientError as exc:
        error = f"cannot reach {shown}: {exc or type(exc).__name__}"
    except ValueError as exc:  # a header or body this client refuses to send
        error = f"cannot send to {shown}: {exc}"
    took = time.monotonic() - start
    ok = False
    if error is not None:
        summary = error
    else:
        assert status is not None
        ok = status in step.expect if step.expect else 200 <= status < 300
        summary = f"HTTP {status} in {_took(took)}"
        if not ok:
            wanted = ", ".join(map(str, step.expect)) if step.expect else "2xx"
            summary += f"; expected {wanted}"
    return StepResult(
        "http",
        ok=ok,
        started=started,
        duration=took,
        summary=summary,
        timed_out=timed_out,
        status=status,
        response=kept.decode(errors="replace"),
        response_cut=cut,
        error=error,
    )


def _publish(step: RenderedPublish, publish: Publish | None, clock: Clock) -> StepResult:
    started = clock.now()
    start = time.monotonic()
    error: str | None = None
    if publish is None:
        error = "cannot publish: no MQTT publisher is running"
    else:
        try:
            publish(step.broker, step.body())
        except Exception as exc:  # noqa: BLE001 - whatever the outbox refused, the step failed
            error = f"cannot publish on mqtt broker '{step.broker}': {exc}"
    summary = error or f"queued on mqtt broker '{step.broker}' topic {step.topic!r}"
    took = time.monotonic() - start
    return StepResult("publish", error is None, started, took, summary=summary, error=error)
