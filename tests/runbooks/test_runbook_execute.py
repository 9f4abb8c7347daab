"""Running rendered runs against real processes, a real aiohttp server and a publish function."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tocsin.engine.clock import ManualClock
from tocsin.runbooks.execute import RunResult, execute
from tocsin.runbooks.render import (
    RenderedExec,
    RenderedHttp,
    RenderedPublish,
    RenderedRun,
    RenderedStep,
    render_run,
)
from tocsin.runbooks.settings import parse_runbooks
from tocsin.yamlsrc import load_yaml, value_mark

SCRIPTS = Path(__file__).parent / "scripts"
PYTHON = sys.executable
GRACE = 0.2  # kill grace for these tests: SIGKILL follows SIGTERM after this long


def exec_step(*argv: str, **options: Any) -> RenderedExec:
    settings: dict[str, Any] = {
        "cwd": "/",
        "env": ("PATH",),
        "set_env": {},
        "user": None,
        "timeout": 10.0,
    }
    settings.update(options)
    return RenderedExec(argv=argv, **settings)


async def run_steps(
    clock: ManualClock,
    *steps: RenderedStep,
    max_output: int = 64 << 10,
    published: list[tuple[str, dict[str, Any]]] | None = None,
    session: aiohttp.ClientSession | None = None,
) -> RunResult:
    def publish(broker: str, body: dict[str, Any]) -> None:
        assert published is not None
        published.append((broker, body))

    return await execute(
        RenderedRun("r", steps),
        max_output=max_output,
        publish=publish if published is not None else None,
        session=session,
        clock=clock,
        kill_grace=GRACE,
    )


def running(pid: int) -> bool:
    """Tell whether `pid` is a live process (not gone from /proc, not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


async def gone(pid: int) -> bool:
    """Wait (2 s at most) until `pid` no longer runs."""
    deadline = time.monotonic() + 2
    while running(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_the_child_receives_exactly_the_rendered_argv(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Test hostile field values end to end: the program gets them verbatim, no shell runs."""
    marker = tmp_path / "pwned"
    values = [
        f"; touch {marker}",
        f"a && touch {marker}",
        f"a | touch {marker}",
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"x\ntouch {marker}",
        "*",
        "~",
        'it\'s "quoted" \\',
        "{{ 7 * 7 }}",
        "x" * 100_000,
        "ünïcödé ☃",
        "",
    ]
    out = tmp_path / "argv.json"
    placeholders = ", ".join(f'"{{{{ fields.v{i} }}}}"' for i in range(len(values)))
    doc = load_yaml(
        textwrap.dedent(
            f"""\
            runbooks:
              - name: record
                steps:
                  - exec: {{argv: [{PYTHON}, {SCRIPTS / "record_argv.py"}, {out}, {placeholders}]}}
            """
        ),
        name="runbooks.yaml",
    )
    runbooks = parse_runbooks(
        doc["runbooks"], value_mark(doc, "runbooks", doc.mark), base=tmp_path, brokers=()
    )
    run = render_run(runbooks["record"], {"fields": {f"v{i}": v for i, v in enumerate(values)}})
    result = await run_steps(clock, *run.steps)
    assert result.ok, result.summary
    assert json.loads(out.read_text())["argv"] == values
    assert not marker.exists()


async def test_only_allowlisted_environment_reaches_the_child(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that a secret in tocsin's environment is not passed on; set values and cwd are."""
    monkeypatch.setenv("TOCSIN_TEST_SECRET", "hunter2")
    monkeypatch.delenv("TOCSIN_TEST_UNSET", raising=False)
    out = tmp_path / "env.json"
    step = exec_step(
        PYTHON,
        str(SCRIPTS / "record_argv.py"),
        str(out),
        cwd=str(tmp_path),
        env=("PATH", "TOCSIN_TEST_UNSET"),
        set_env={"UNIT": "nginx; rm -rf /"},
    )
    result = await run_steps(clock, step)
    assert result.ok, result.summary
    seen = json.loads(out.read_text())
    assert seen["cwd"] == str(tmp_path)
    env = seen["env"]
    env.pop("LC_CTYPE", None)  # Python sets it in its own environment under the C locale
    assert env == {"PATH": os.environ["PATH"], "UNIT": "nginx; rm -rf /"}


async def test_exit_status_signals_and_output(clock: ManualClock) -> None:
    """Test a failing exit status with its stderr, and death by a signal."""
    result = await run_steps(
        clock, exec_step(PYTHON, "-c", "import sys; print('out'); sys.exit('bad thing')")
    )
    (step,) = result.steps
    assert (step.ok, step.exit_code, step.signal) == (False, 1, None)
    assert (step.stdout, step.stderr) == ("out\n", "bad thing\n")
    assert step.summary.startswith("exit 1 in ")
    assert result.summary == step.summary
    assert step.started == clock.now()
    result = await run_steps(
        clock, exec_step(PYTHON, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGUSR1)")
    )
    (step,) = result.steps
    assert (step.ok, step.exit_code, step.signal) == (False, None, "SIGUSR1")
    assert step.summary.startswith("killed by SIGUSR1 after ")


async def test_output_is_capped_and_the_rest_counted(clock: ManualClock) -> None:
    """Test that a megabyte of output keeps max_output bytes of each pipe and counts the rest."""
    code = "import sys; sys.stdout.write('x' * 1_000_000); sys.stderr.write('é' * 600)"
    result = await run_steps(clock, exec_step(PYTHON, "-c", code), max_output=1000)
    (step,) = result.steps
    assert step.ok
    assert (step.stdout, step.stdout_cut) == ("x" * 1000, 999_000)
    assert (step.stderr, step.stderr_cut) == ("é" * 500, 200)


async def test_programs_that_cannot_start(tmp_path: Path, clock: ManualClock) -> None:
    """Test a missing program, a file without execute permission, and a missing cwd."""
    script = tmp_path / "fix.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    cases = [
        (
            exec_step("/no/such/program"),
            "cannot execute /no/such/program: no such file or directory",
        ),
        (exec_step(str(script)), f"cannot execute {script}: permission denied"),
        (
            exec_step("/bin/true", cwd=str(tmp_path / "gone")),
            f"cannot change to directory {tmp_path / 'gone'}: no such file or directory",
        ),
    ]
    for step, error in cases:
        result = await run_steps(clock, step)
        assert not result.ok
        assert (result.steps[0].error, result.summary) == (error, error)


async def test_a_timeout_kills_the_process_group(tmp_path: Path, clock: ManualClock) -> None:
    """Test that the child and its grandchild, both ignoring SIGTERM, are gone after a timeout."""
    pids = tmp_path / "pids"
    step = exec_step(PYTHON, str(SCRIPTS / "spawn_group.py"), str(pids), "wait", timeout=0.5)
    started = time.monotonic()
    result = await run_steps(clock, step)
    assert time.monotonic() - started < 0.5 + 2 * GRACE + 1
    (done,) = result.steps
    assert (done.ok, done.timed_out, done.signal) == (False, True, "SIGKILL")
    assert done.summary == "timed out after 0.5s; killed the process group"
    assert done.stdout == "started\n"
    leader, grandchild = map(int, pids.read_text().split())
    assert await gone(leader)
    assert await gone(grandchild)


async def test_output_held_open_after_exit_does_not_hang_the_step(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Test that a grandchild left holding the pipes delays the result by the grace at most."""
    pids = tmp_path / "pids"
    step = exec_step(PYTHON, str(SCRIPTS / "spawn_group.py"), str(pids), "exit", timeout=10.0)
    started = time.monotonic()
    result = await run_steps(clock, step)
    _, grandchild = map(int, pids.read_text().split())
    try:
        assert time.monotonic() - started < 3
        assert result.ok, result.summary
        assert result.steps[0].stdout == "started\n"
    finally:
        os.kill(grandchild, signal.SIGKILL)


async def test_cancelling_a_run_kills_its_process_group(tmp_path: Path, clock: ManualClock) -> None:
    """Test that cancelling execute (shutdown, kill switch) leaves no process of the step."""
    pids = tmp_path / "pids"
    step = exec_step(PYTHON, str(SCRIPTS / "spawn_group.py"), str(pids), "wait", timeout=30.0)
    task = asyncio.create_task(run_steps(clock, step))
    deadline = time.monotonic() + 5
    while not pids.exists() or not pids.read_text().endswith("\n"):
        assert time.monotonic() < deadline, "the script did not start"
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    leader, grandchild = map(int, pids.read_text().split())
    assert await gone(leader)
    assert await gone(grandchild)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
async def test_a_step_runs_as_its_user_with_that_users_groups(clock: ManualClock) -> None:
    """Test `user`: the uid, the primary group and no supplementary root group."""
    result = await run_steps(clock, exec_step("/usr/bin/id", user="nobody"))
    assert result.ok, result.summary
    out = result.steps[0].stdout
    assert out.startswith("uid=65534(nobody) gid=65534(")
    assert "root" not in out


async def test_steps_stop_at_the_first_failure(clock: ManualClock) -> None:
    """Test that later steps are skipped after a failure, and the summaries of both outcomes."""
    published: list[tuple[str, dict[str, Any]]] = []
    publish = RenderedPublish("local", "ops/done", "ok", 1, False)
    result = await run_steps(clock, exec_step("/bin/false"), publish, published=published)
    assert (result.ok, len(result.steps), result.skipped, published) == (False, 1, 1, [])
    assert result.summary.startswith("step 1 of 2 (exec) failed: exit 1 in ")
    result = await run_steps(clock, exec_step("/bin/true"), publish, published=published)
    assert (result.ok, result.skipped) == (True, 0)
    assert result.summary.startswith("2 steps ok in ")
    assert published == [
        ("local", {"topic": "ops/done", "payload": "ok", "qos": 1, "retain": False})
    ]
    data = json.loads(json.dumps(result.to_dict()))
    assert data["summary"] == result.summary
    assert [s["kind"] for s in data["steps"]] == ["exec", "publish"]
    assert data["steps"][1]["summary"] == "queued on mqtt broker 'local' topic 'ops/done'"


async def test_publish_failures(clock: ManualClock) -> None:
    """Test a publish function that raises, and no publisher at all."""

    def full(broker: str, body: dict[str, Any]) -> None:
        raise RuntimeError("outbox full")

    step = RenderedPublish("local", "ops/done", "ok", 1, False)
    result = await execute(
        RenderedRun("r", (step,)), max_output=100, publish=full, session=None, clock=clock
    )
    assert result.summary == "cannot publish on mqtt broker 'local': outbox full"
    result = await run_steps(clock, step)
    assert result.summary == "cannot publish: no MQTT publisher is running"


class Hooks:
    """A real HTTP server that records requests; /status/N answers N, /slow never answers."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(
            {
                "method": request.method,
                "path": request.raw_path,
                "headers": dict(request.headers),
                "body": await request.text(),
            }
        )
        if request.path == "/slow":
            await asyncio.sleep(30)
        if request.path == "/big":
            return web.Response(body=b"y" * 5000)
        status = int(request.path.rsplit("/", 1)[1]) if request.path.startswith("/status/") else 200
        return web.Response(status=status, text="boom" if status >= 500 else "")


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    """Serve Hooks on a free loopback port."""
    server = Hooks()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}"
    yield server
    await runner.cleanup()


def http_step(url: str, **options: Any) -> RenderedHttp:
    settings: dict[str, Any] = {
        "method": "POST",
        "headers": {},
        "body": None,
        "expect": (),
        "timeout": 5.0,
    }
    settings.update(options)
    return RenderedHttp(url=url, **settings)


async def test_an_http_step_sends_the_rendered_request(hooks: Hooks, clock: ManualClock) -> None:
    """Test method, encoded path, query, headers and body as the server saw them."""
    step = http_step(
        f"{hooks.url}/status/204?unit=a%20b%26c",
        method="PUT",
        headers={"X-Unit": "nginx"},
        body='{"unit":"nginx"}',
        expect=(200, 204),
    )
    async with aiohttp.ClientSession() as session:
        result = await run_steps(clock, step, session=session)
    assert result.ok, result.summary
    (done,) = result.steps
    assert done.status == 204
    assert done.summary.startswith("HTTP 204 in ")
    (seen,) = hooks.seen
    assert (seen["method"], seen["path"], seen["body"]) == (
        "PUT",
        "/status/204?unit=a%20b%26c",
        '{"unit":"nginx"}',
    )
    assert seen["headers"]["X-Unit"] == "nginx"


async def test_http_status_must_be_expected(hooks: Hooks, clock: ManualClock) -> None:
    """Test a status outside `expect`, and the 2xx default."""
    result = await run_steps(clock, http_step(f"{hooks.url}/status/500", expect=(200,)))
    (done,) = result.steps
    assert (done.ok, done.status, done.response) == (False, 500, "boom")
    assert done.summary.endswith("; expected 200")
    result = await run_steps(clock, http_step(f"{hooks.url}/status/201"))
    assert result.ok
    result = await run_steps(clock, http_step(f"{hooks.url}/status/302"))
    assert result.steps[0].summary.endswith("; expected 2xx")


async def test_http_answers_are_capped(hooks: Hooks, clock: ManualClock) -> None:
    """Test that only max_output bytes of an answer are kept, the rest counted."""
    result = await run_steps(clock, http_step(f"{hooks.url}/big", method="GET"), max_output=1000)
    (done,) = result.steps
    assert (done.ok, done.response, done.response_cut) == (True, "y" * 1000, 4000)


async def test_http_timeouts_and_unreachable_servers(hooks: Hooks, clock: ManualClock) -> None:
    """Test a server that never answers and a port nobody listens on; no query in reasons."""
    result = await run_steps(clock, http_step(f"{hooks.url}/slow?token=secret", timeout=0.3))
    (done,) = result.steps
    assert (done.ok, done.timed_out) == (False, True)
    assert done.summary == f"no answer from {hooks.url}/slow within 0.3s"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await run_steps(clock, http_step(f"http://127.0.0.1:{port}/x"))
    (done,) = result.steps
    assert done.error is not None
    assert done.error.startswith(f"cannot reach http://127.0.0.1:{port}/x: ")
