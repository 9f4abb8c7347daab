"""`tocsin runs`, `remediation`, `problems` and `known-errors` against a real ApiServer with the
daemon's own problem and run desks (runs of real tiny programs, see apikit)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from apikit import SCRIPTS, TOKENS, ApiKit
from tocsin.cli import main


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiKit]:
    """A running API, found through TOCSIN_URL, with an operator's TOCSIN_TOKEN."""
    monkeypatch.delenv("TOCSIN_CLIENT_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TOCSIN_TOKEN", TOKENS["operator"])
    with ApiKit(tmp_path) as kit:
        monkeypatch.setenv("TOCSIN_URL", kit.url)
        yield kit


def on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the captured stdout look like a terminal, so commands print tables (call it in
    the test: capsys replaces stdout only then)."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI; return the exit code, stdout and stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_runs_list_as_json_and_as_a_table(
    api: ApiKit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test `runs list`: the API's JSON off a terminal, a table on one, --state passed on."""
    incident = api.open_incident("unit down", rule="unit-failed", key="web1")
    api.finished(api.remediate("broken"))
    api.finished(api.remediate("rehearse", key="web2"))
    code, out, _ = run(capsys, "runs", "list")
    assert (code, [r["state"] for r in json.loads(out)["runs"]]) == (0, ["dry_run", "failed"])
    on_a_terminal(monkeypatch)
    code, out, _ = run(capsys, "runs", "list", "--state", "failed")
    header, row = out.splitlines()
    assert (code, header) == (
        0,
        "ID  STATE   RUNBOOK  TARGET  RULE         INCIDENT  CREATED               REASON",
    )
    assert row.startswith(f"1   failed  broken   web1    unit-failed  {incident}         "
                          "2026-11-25 00:00:00Z  exit 1 in ")  # fmt: skip
    assert run(capsys, "runs", "list", "--state", "running") == (0, "no runs\n", "")


def test_runs_show_escapes_what_the_command_printed(
    api: ApiKit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test the run card of a real run: fields, steps with argv quoted word by word, and
    output whose terminal escapes are shown, not obeyed."""
    on_a_terminal(monkeypatch)
    said = "ok\n\x1b[2Jgone\r\n"
    api.finished(api.remediate("restart-unit", unit="web 1; reboot", said=said, status=3))
    code, out, _ = run(capsys, "runs", "show", "1")
    assert code == 0
    lines = out.splitlines()
    failed = "step 2 of 2 (exec) failed: exit 3 in "
    assert lines[3].startswith(f"  reason     {failed}")
    assert lines[10].startswith(f"  result     {failed}")
    del lines[10], lines[3]
    assert lines == [
        "run 1",
        "  runbook    restart-unit",
        "  state      failed",
        "  rule       unit-failed [web1]",
        "  target     web1",
        "  incident   -",
        "  created    2026-11-25 00:00:00Z",
        "  started    2026-11-25 00:00:00Z",
        "  finished   2026-11-25 00:00:00Z",
        "",
        "STEP  WHAT",
        "1     exec /bin/true restart 'web 1; reboot' in / (timeout 30s)",
        f"2     exec /bin/sh {SCRIPTS}/apikit_echo.sh 'ok\\x0a\\x1b[2Jgone\\x0d\\x0a' 3 in / "
        "(timeout 30s)",
        "",
        "output:",
        "ok",
        "\\x1b[2Jgone\\x0d",
    ]


def test_approving_and_rejecting_runs(
    api: ApiKit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test `runs approve` and `runs reject` of runs awaiting approval, with notes, and a
    refused decision (exit 1)."""
    on_a_terminal(monkeypatch)
    for key in ("web1", "web2"):
        run_id = api.remediate("gated", key=key)
        api.until(f"/api/v1/runs/{run_id}", lambda r: r["state"] == "awaiting_approval", "approval")
    assert run(capsys, "runs", "approve", "1", "--note", "go") == (
        0,
        "run 1: running (gated on web1) - approved by olga\n",
        "",
    )
    assert run(capsys, "runs", "reject", "2", "--note", "not now") == (
        0,
        "run 2: rejected (gated on web2) - rejected by olga: not now\n",
        "",
    )
    assert api.finished(1)["state"] == "succeeded"
    assert run(capsys, "runs", "approve", "2") == (
        1,
        "",
        "tocsin runs: POST /api/v1/runs/2/approve: 409 run 2 is not awaiting approval\n",
    )


def test_the_kill_switch_from_the_command_line(
    api: ApiKit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test `remediation stop|status|resume`: an operator stops, only an admin resumes, and
    the daemon logs both."""
    on_a_terminal(monkeypatch)
    assert run(capsys, "remediation", "status") == (
        0,
        "remediation runs: the kill switch is not engaged\n",
        "",
    )
    with capture_logs() as logs:  # the daemon's log, not the command's output
        stopped = run(capsys, "remediation", "stop", "--why", "restart loop on web1")
    assert [(e["event"], e["by"]) for e in logs] == [("remediation_stopped", "olga")]
    assert stopped == (
        0,
        "remediation is STOPPED: kill switch engaged by olga at 2026-11-25 00:00:00Z: "
        "restart loop on web1\n",
        "",
    )
    code, out, _ = run(capsys, "remediation", "status", "--json")
    assert (code, json.loads(out)["engaged"]) == (0, True)
    assert run(capsys, "remediation", "resume") == (
        1,
        "",
        "tocsin remediation: DELETE /api/v1/remediation/kill-switch: 403 "
        "this needs the admin role; olga has operator\n",
    )
    monkeypatch.setenv("TOCSIN_TOKEN", TOKENS["admin"])
    with capture_logs() as logs:
        resumed = run(capsys, "remediation", "resume")
    assert [(e["event"], e["by"]) for e in logs] == [("remediation_resumed", "adam")]
    assert resumed == (
        0,
        "remediation runs: kill switch released by adam at 2026-11-25 00:00:00Z\n",
        "",
    )
    with pytest.raises(SystemExit) as usage:
        main(["remediation", "stop"])
    assert usage.value.code == 2


def test_working_a_problem_from_the_command_line(
    api: ApiKit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test create, investigate, link, update, known-error, list and show."""
    on_a_terminal(monkeypatch)
    steps = [
        (["create", "--title", "disks fill up", "--service", "storage", "--incident", "3"],
         "problem 1: new, 1 incident - disks fill up"),
        (["investigate", "1", "--note", "mine"], "problem 1: investigating, 1 incident - disks fill up"),
        (["link", "1", "5"], "problem 1: investigating, 2 incidents - disks fill up"),
        (["update", "1", "--owner", "alice", "--root-cause", "no rotation\nof logs"],
         "problem 1: investigating, owned by alice, 2 incidents - disks fill up"),
        (["known-error", "1"], "problem 1: known_error, owned by alice, 2 incidents - disks fill up"),
        (["update", "1", "--owner", ""], "problem 1: known_error, 2 incidents - disks fill up"),
    ]  # fmt: skip
    for argv, said in steps:
        assert run(capsys, "problems", *argv) == (0, said + "\n", ""), argv
    code, out, _ = run(capsys, "problems", "list")
    assert (code, out.splitlines()) == (0, [
        "ID  STATE        SERVICE  OWNER  INCIDENTS  OPENED                TITLE",
        "1   known_error  storage  -      2          2026-11-25 00:00:00Z  disks fill up",
    ])  # fmt: skip
    code, out, _ = run(capsys, "problems", "show", "1")
    lines = out.splitlines()
    assert lines[:9] == [
        "problem 1",
        "  title      disks fill up",
        "  state      known_error",
        "  service    storage",
        "  category   -",
        "  owner      -",
        "  incidents  3, 5",
        "  opened     2026-11-25 00:00:00Z",
        "  known as   -",
    ]
    assert lines[9:16] == [
        "",
        "root cause:",
        "  no rotation",
        "  of logs",
        "",
        "workaround:",
        "  -",
    ]
    assert [line.split()[2:] for line in lines[18:]] == [
        ["state", "olga", "new"],
        ["link", "olga", "new", "incident", "3", "linked"],
        ["state", "olga", "new", "->", "investigating", "mine"],
        ["link", "olga", "investigating", "incident", "5", "linked"],
        ["update", "olga", "investigating", "root", "cause", "set,", "owner", "alice"],
        ["state", "olga", "investigating", "->", "known_error"],
        ["update", "olga", "known_error", "owner", "(none)"],
    ]
    code, out, _ = run(capsys, "problems", "show", "1", "--json")
    assert json.loads(out)["incidents"] == [3, 5]


def test_problem_mistakes_exit_2_and_refusals_exit_1(
    api: ApiKit, capsys: pytest.CaptureFixture[str]
) -> None:
    """Test an empty update (usage, 2) and a transition the state forbids (refused, 1)."""
    run(capsys, "problems", "create", "--title", "t")
    assert run(capsys, "problems", "update", "1") == (
        2,
        "",
        "tocsin problems: give --root-cause, --workaround, --owner or --title\n",
    )
    assert run(capsys, "problems", "close", "1") == (
        1,
        "",
        "tocsin problems: POST /api/v1/problems/1/close: 409 problem 1 is new; "
        "it can move to closed only from resolved\n",
    )
    assert run(capsys, "problems", "list", "--state", "new", "--json")[0] == 0


def test_known_errors_from_the_command_line(
    api: ApiKit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test `known-errors add`, `list` as a table, and `remove` (config ones are refused)."""
    on_a_terminal(monkeypatch)
    run(capsys, "problems", "create", "--title", "nfs")
    added = run(
        capsys, "known-errors", "add", "nfs-stale", "-m", "service=nfs", "-m", "rule=~stale-.*",
        "--workaround", "remount\nthen check", "--problem", "1",
    )  # fmt: skip
    assert added == (0, "known error nfs-stale added\n", "")
    code, out, _ = run(capsys, "known-errors", "list")
    assert (code, out.splitlines()) == (0, [
        "NAME           SOURCE  PROBLEM  MATCHERS                         WORKAROUND",
        'disk-full-tmp  config  -        rule="disk-full", mount="/tmp"   clear /tmp/cache',
        'nfs-stale      api     1        service="nfs", rule=~"stale-.*"  remount',
    ])  # fmt: skip
    assert run(capsys, "known-errors", "remove", "disk-full-tmp")[0] == 1
    with capture_logs() as logs:  # the daemon's log, not the command's output
        removed = run(capsys, "known-errors", "remove", "nfs-stale")
    assert removed == (0, "known error nfs-stale removed\n", "")
    assert [(e["event"], e["name"], e["by"]) for e in logs] == [
        ("known_error_removed", "nfs-stale", "olga")
    ]
    code, _, err = run(capsys, "known-errors", "add", "x", "-m", "a=~(", "--workaround", "w")
    assert (code, err) == (
        1,
        "tocsin known-errors: POST /api/v1/known-errors: 400 matcher 'a=~(' has an invalid "
        "regex: missing ): (\n",
    )
