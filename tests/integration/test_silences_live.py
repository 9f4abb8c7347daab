"""Silences through the real API and CLI: tokens, durability across kill -9, muted incidents."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from daemon import Daemon, ssh_line, wait_until

from tocsin.tokens import Role, token_line

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token-for-tests-0123456789"


def request(
    daemon: Daemon, method: str, path: str, body: Any = None, token: str | None = TOKEN
) -> tuple[int, Any]:
    """Send one JSON request; return (status, decoded body)."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{daemon.port}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
    )
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def fresh(line: str) -> str:
    """The line with its BSD stamp replaced by the current time in RFC 3339."""
    now = datetime.datetime.now(datetime.UTC).isoformat()
    return now + line[15:]


def cli(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `tocsin silence ...` against the daemon, finding it (and a token) from its config."""
    return subprocess.run(
        [sys.executable, "-m", "tocsin", "silence", "--config", str(daemon.root / "tocsin.yaml"), *args],
        capture_output=True, text=True, check=False, env={**os.environ, "TOCSIN_TOKEN": TOKEN},
    )  # fmt: skip


@pytest.fixture
def daemon(tmp_path: Path) -> Daemon:
    """A daemon with an API token file."""
    (tmp_path / "tokens").write_text(f"# operators\n{token_line('alice', Role.OPERATOR, TOKEN)}\n")
    return Daemon(tmp_path, extra="")


def with_tokens(daemon: Daemon) -> None:
    """Point the config at the tokens file (the Daemon helper writes http on one line)."""
    config = daemon.root / "tocsin.yaml"
    text = config.read_text()
    config.write_text(text.replace("port: ", "tokens_file: tokens, port: ", 1))


def test_changes_need_a_token(daemon: Daemon) -> None:
    """Test that creating a silence without, or with a wrong, token is refused; reads are open."""
    with_tokens(daemon)
    daemon.start()
    body = {"matchers": ["host=web1"], "duration": "1h", "created_by": "al", "comment": "x"}
    assert request(daemon, "POST", "/api/v1/silences", body, token=None)[0] == 401
    assert (
        request(daemon, "POST", "/api/v1/silences", body, token="wrong-token-000000000")[0] == 401
    )
    assert request(daemon, "GET", "/api/v1/silences", token=None) == (200, {"silences": []})
    status, answer = request(daemon, "POST", "/api/v1/silences", {**body, "matchers": []})
    assert (status, answer["error"]) == (
        400,
        "a silence needs at least one matcher, like host=web1",
    )
    status, answer = request(daemon, "POST", "/api/v1/silences", {**body, "duration": 1e12})
    assert (status, answer["error"]) == (400, "a silence must end before the year 10000")
    assert request(daemon, "GET", "/api/v1/silences")[0] == 200


def test_a_silence_survives_kill9_and_mutes_notifications(daemon: Daemon) -> None:
    """Test that an acknowledged silence is kept through kill -9 and mutes matching incidents."""
    with_tokens(daemon)
    log = daemon.root / "logs" / "auth.log"
    log.write_text("")
    daemon.start()
    status, created = request(
        daemon,
        "POST",
        "/api/v1/silences",
        {"matchers": ["rule=ssh-failed", "key=10.7.0.1"], "duration": "2h",
         "created_by": "alice", "comment": "pen test"},
    )  # fmt: skip
    assert status == 201
    assert created["state"] == "active"
    daemon.kill9()  # right after the acknowledgement
    daemon.start()
    listed = request(daemon, "GET", "/api/v1/silences")[1]["silences"]
    assert [s["id"] for s in listed] == [created["id"]]
    with log.open("a") as handle:  # stamped now: silences apply on event time
        handle.write(fresh(ssh_line(1, "10.7.0.1")) + fresh(ssh_line(2, "10.7.0.2")))
    wait_until(lambda: len(daemon.incidents()) == 2, what="two incidents")
    muted = {i["key"]: i["muted"] for i in daemon.incidents()}
    assert muted["10.7.0.2"] == ""
    assert muted["10.7.0.1"].startswith(
        f"muted by silence {created['id'][:8]} (pen test, by alice)"
    )
    metrics = daemon.metrics()
    assert f'tocsin_muted_total{{kind="silence",name="{created["id"]}"}} 1.0' in metrics


def test_cli_adds_lists_and_expires(daemon: Daemon) -> None:
    """Test the `tocsin silence` commands end to end, the expired silence kept for audit."""
    with_tokens(daemon)
    daemon.start()
    added = cli(
        daemon,
        "add",
        "-m",
        "host=web1",
        "--duration",
        "30m",
        "--comment",
        "reboot",
        "--author",
        "bob",
    )
    assert added.returncode == 0, added.stderr
    silence_id = added.stdout.split()[0]
    # The token says who; --author is kept beside it, never instead.
    made = request(daemon, "GET", f"/api/v1/silences/{silence_id}")[1]
    assert made["created_by"] == "alice (as bob)"
    listed = cli(daemon, "list", "--state", "active")
    assert silence_id[:8] in listed.stdout
    assert 'host="web1"' in listed.stdout
    expired = cli(daemon, "expire", silence_id[:8])
    assert expired.returncode == 0, expired.stderr
    assert "expired" in expired.stdout
    assert silence_id[:8] in cli(daemon, "list", "--state", "expired").stdout
    again = cli(daemon, "expire", silence_id)
    assert again.returncode == 1
    assert "has already expired" in again.stderr


def test_without_tokens_changes_are_off(daemon: Daemon) -> None:
    """Test that a daemon with no tokens file refuses every change, saying how to enable it."""
    daemon.start()
    failed = cli(daemon, "add", "-m", "host=web1", "--duration", "30m", "--comment", "c")
    assert failed.returncode == 1
    assert "no API tokens are configured (http.tokens_file)" in failed.stderr


def test_one_off_maintenance_window_by_api_reminds_and_mutes(daemon: Daemon) -> None:
    """Test that an API-made window mutes matching incidents, survives kill -9, and reminds once."""
    with_tokens(daemon)
    config = daemon.root / "tocsin.yaml"
    config.write_text(config.read_text() + "correlation: {tick: 50ms}\n")
    log = daemon.root / "logs" / "auth.log"
    log.write_text("")
    daemon.start()
    window = {
        "name": "pen-test",
        "matchers": ["rule=ssh-failed"],
        "duration": "4s",
        "remind_before": "3s",
        "created_by": "carol",
        "comment": "scheduled pen test",
    }
    status, made = request(daemon, "POST", "/api/v1/maintenance", window)
    assert (status, made["state"]) == (201, "active"), made
    assert request(daemon, "POST", "/api/v1/maintenance", window)[1]["error"] == (
        "a maintenance window named pen-test already exists"
    )
    daemon.kill9()
    daemon.start()
    listed = request(daemon, "GET", "/api/v1/maintenance")[1]["windows"]
    assert [(w["name"], w["source"]) for w in listed] == [("pen-test", "api")]
    with log.open("a") as handle:
        handle.write(fresh(ssh_line(1, "10.8.0.1")))
    wait_until(daemon.incidents, what="an incident")
    assert daemon.incidents()[0]["muted"].startswith("muted by maintenance window pen-test until")
    wait_until(lambda: "maintenance_window_ending" in daemon.output(), what="the reminder")
    assert daemon.output().count("maintenance_window_ending") == 1
    long = {**window, "name": "freeze", "duration": "1h"}
    assert request(daemon, "POST", "/api/v1/maintenance", long)[0] == 201
    status, ended = request(daemon, "DELETE", "/api/v1/maintenance/freeze")
    assert (status, ended["state"]) == (200, "ended")
    status, again = request(daemon, "DELETE", "/api/v1/maintenance/freeze")
    assert (status, again["error"]) == (409, "window freeze has already ended")


def test_cli_makes_lists_and_ends_maintenance_windows(daemon: Daemon) -> None:
    """Test `tocsin maintenance add/list/end` end to end."""
    with_tokens(daemon)
    daemon.start()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tocsin", "maintenance", "--config",
             str(daemon.root / "tocsin.yaml"), *args],
            capture_output=True, text=True, check=False,
            env={**os.environ, "TOCSIN_TOKEN": TOKEN},
        )  # fmt: skip

    made = run("add", "db move", "-m", "host=~db.*", "--duration", "2h", "--comment", "move")
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("db move  active until ")
    windows = request(daemon, "GET", "/api/v1/maintenance")[1]["windows"]
    assert [w["created_by"] for w in windows] == ["alice"]
    listed = run("list")
    assert "db move  api  active" in listed.stdout
    assert 'host=~"db.*"' in listed.stdout
    ended = run("end", "db move")
    assert ended.returncode == 0, ended.stderr
    assert "ended" in ended.stdout
    again = run("end", "nope")
    assert again.returncode == 1
    assert "no API-made maintenance window named nope" in again.stderr
