"""`tocsin requests` and `tocsin access` against a real ApiServer with the daemon's own request
and access desks (runbooks that really run, see apikit)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from apikit import TOKENS, ApiKit
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


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI; return the exit code, stdout and stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_requests_from_the_command_line(
    api: ApiKit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test catalog, submit with typed FIELD=VALUE input, a refused approval (exit 1), a
    request its runbook fulfils, list and show as tables, and JSON off a terminal."""
    code, out, _ = run(capsys, "requests", "submit", "new-vm", "size=4", "os=alpine")
    assert (code, json.loads(out)["input"]) == (0, {"size": 4, "os": "alpine"})
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert run(capsys, "requests", "catalog")[1].splitlines() == [
        "ITEM            APPROVAL  SLA  FIELDS                  DESCRIPTION",
        "new-vm          admin     1d   size:integer*, os:enum  A virtual machine",
        "reset-password  -         -    user:string*            -",
        "restart-app     -         -    app:string*             -",
    ]
    assert run(capsys, "requests", "approve", "1") == (
        1,
        "",
        "tocsin requests: POST /api/v1/requests/1/approve: 403 request 1 can be approved only "
        "by a role of admin or above; olga is operator\n",
    )
    assert run(capsys, "requests", "submit", "reset-password", "user=bob") == (
        0,
        "request 2: fulfilling (reset-password)\n",
        "",
    )
    api.until("/api/v1/requests/2", lambda r: r["state"] == "fulfilled", "the reset")
    assert api.noted() == ["reset bob"]
    assert run(capsys, "requests", "list")[1].splitlines() == [
        "ID  STATE      ITEM            REQUESTED BY  OPENED                DUE",
        "2   fulfilled  reset-password  olga          2026-11-25 00:00:00Z  -",
        "1   submitted  new-vm          olga          2026-11-25 00:00:00Z  2026-11-26 00:00:00Z",
    ]
    card = run(capsys, "requests", "show", "1")[1].splitlines()
    assert card[:3] == ["request 1", "  item      new-vm", "  state     submitted"]
    assert card[11:14] == ["FIELD  VALUE", "size   4", "os     alpine"]
    assert card[-1].endswith("state  olga   submitted  via api")


def test_requests_fulfilled_or_failed_by_hand(
    api: ApiKit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test `requests start|fulfil|fail ID --note` on approved new-vm requests (no runbook),
    and that fail without a note is refused (exit 1)."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    for _ in range(2):
        run(capsys, "requests", "submit", "new-vm", "size=2")
    monkeypatch.setenv("TOCSIN_TOKEN", TOKENS["admin"])
    for request_id in ("1", "2"):
        assert run(capsys, "requests", "approve", request_id)[0] == 0
    assert run(capsys, "requests", "start", "1") == (0, "request 1: fulfilling (new-vm)\n", "")
    assert run(capsys, "requests", "fulfil", "1", "--note", "vm up") == (
        0,
        "request 1: fulfilled (new-vm)\n",
        "",
    )
    assert run(capsys, "requests", "fail", "2") == (
        1,
        "",
        "tocsin requests: POST /api/v1/requests/2/fail: 400 note is required: say why the "
        "request failed\n",
    )
    assert run(capsys, "requests", "fail", "2", "--note", "no capacity") == (
        0,
        "request 2: failed (new-vm) - no capacity\n",
        "",
    )
    timeline = api.request("GET", "/api/v1/requests/1").body["timeline"]
    assert [(e["to"], e["actor"], e["note"]) for e in timeline[2:]] == [
        ("fulfilling", "adam", "fulfilment started by hand"),
        ("fulfilled", "adam", "vm up"),
    ]


def test_request_mistakes_exit_2_and_bad_input_exits_1(
    api: ApiKit, capsys: pytest.CaptureFixture[str]
) -> None:
    """Test FIELD=VALUE mistakes (usage, exit 2) and input the item refuses (exit 1)."""
    assert run(capsys, "requests", "submit", "new-vm", "size") == (
        2,
        "",
        "tocsin requests: give the input as FIELD=VALUE, not 'size'\n",
    )
    assert run(capsys, "requests", "submit", "new-vm", "size=1", "size=2")[0] == 2
    assert run(capsys, "requests", "submit", "new-vm", "size=lots") == (
        1,
        "",
        "tocsin requests: POST /api/v1/requests: 400 new-vm: size: must be a whole number from "
        "1 to 64\n",
    )


def test_access_from_the_command_line(
    api: ApiKit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test request (allowed, needing approval, denied: exit 1), approve as the admin,
    grants, revoke and the audit log, with the provisioning runbooks really run."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert run(capsys, "access", "request", "ssh", "carol", "--for", "30m") == (
        0,
        "allowed: olga may request ssh for carol for 30m; no approval needed\n"
        "grant 1: provisioning (ssh for carol until 2026-11-25 00:30:00Z)\n",
        "",
    )
    assert run(capsys, "access", "request", "ssh", "olga", "--for", "2h") == (
        1,
        "denied: duration 2h is over ssh's max_duration 1h\n",
        "tocsin access: the request was denied\n",
    )
    assert run(capsys, "access", "request", "db-admin", "carol")[0] == 0
    monkeypatch.setenv("TOCSIN_TOKEN", TOKENS["admin"])
    assert run(capsys, "access", "approve", "2") == (
        0,
        "grant 2: provisioning (db-admin for carol until 2026-11-25 08:00:00Z)\n",
        "",
    )
    for grant_id in (1, 2):
        api.until(f"/api/v1/access/grants/{grant_id}", lambda g: g["state"] == "active", "grant")
    assert run(capsys, "access", "grants", "--role", "ssh")[1].splitlines() == [
        "ID  STATE   ROLE  SUBJECT  REQUESTED BY  EXPIRES",
        "1   active  ssh   carol    olga          2026-11-25 00:30:00Z",
    ]
    code, out, _ = run(capsys, "access", "revoke", "*", "carol", "--why", "left")
    assert (code, out.splitlines()[0]) == (
        0,
        "allowed: revoking every grant of carol: always allowed",
    )
    assert sorted(run(capsys, "access", "audit", "--action", "granted")[1].splitlines()) == [
        "2026-11-25 00:00:00Z  granted  db-admin  carol    adam    2      "
        "grant-db applied postgres:superuser until 2026-11-25T08:00:00Z",
        "2026-11-25 00:00:00Z  granted  ssh       carol    policy  1      "
        "grant-ssh applied ssh:login until 2026-11-25T00:30:00Z",
        "TIME                  ACTION   ROLE      SUBJECT  BY      GRANT  WHY",
    ]
    api.until("/api/v1/access/grants/1", lambda g: g["state"] == "revoked", "the revoke")
    code, out, _ = run(capsys, "access", "show", "1", "--json")
    assert (code, json.loads(out)["state"]) == (0, "revoked")


def test_withdrawing_a_pending_grant_from_the_command_line(
    api: ApiKit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that the asker withdraws their own pending grant with `access reject --why`, and
    that `access show` prints a pending grant's card."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    run(capsys, "access", "request", "db-admin", "carol")
    code, out, _ = run(capsys, "access", "show", "1")
    assert (code, out.splitlines()[0]) == (0, "grant 1")
    assert "  approve by 2026-11-25 00:30:00Z" in out.splitlines()
    assert run(capsys, "access", "reject", "1", "--why", "wrong person") == (
        0,
        "grant 1: denied (db-admin for carol) - withdrawn by olga: wrong person\n",
        "",
    )
