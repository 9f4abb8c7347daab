"""`tocsin incidents`, `tocsin oncall` and `tocsin token` against a real ApiServer."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from apikit import TOKENS, ApiKit
from tocsin.api.auth import Gate
from tocsin.cli import main
from tocsin.tokens import Role, parse_tokens


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiKit]:
    """A running API; the environment holds no TOCSIN_* settings and HOME has no client.yaml."""
    for name in ("TOCSIN_URL", "TOCSIN_TOKEN", "TOCSIN_CLIENT_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with ApiKit(tmp_path) as kit:
        yield kit


def token_file(api: ApiKit, role: str) -> str:
    """A client token file holding the kit's token for `role`."""
    path = api.root / f"{role}.token"
    path.write_text(TOKENS[role] + "\n")
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI; return the exit code, stdout and stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)


def test_list_prints_json_off_a_terminal_and_a_table_on_one(
    api: ApiKit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test `incidents list`: JSON when piped, an aligned table on a TTY, filters passed on."""
    api.open_incident("web down", service="web", impact="high", urgency="high")
    api.open_incident("db slow", service="db")
    code, out, _ = run(capsys, "incidents", "list", "--url", api.url)
    assert code == 0
    assert [i["title"] for i in json.loads(out)["incidents"]] == ["db slow", "web down"]
    on_a_terminal(monkeypatch)
    code, out, _ = run(capsys, "incidents", "list", "--url", api.url, "--priority", "P1")
    assert (code, out.splitlines()) == (0, [
        "ID  PRI  STATE  SERVICE  ASSIGNEE  LAST SEEN             COUNT  TITLE",
        "1   P1   new    web      -         2026-11-25 00:00:00Z  1      web down",
    ])  # fmt: skip
    code, out, _ = run(capsys, "incidents", "list", "--url", api.url, "--json", "--service", "db")
    assert [i["title"] for i in json.loads(out)["incidents"]] == ["db slow"]


def test_working_an_incident_from_the_command_line(
    api: ApiKit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test ack, assign, comment, start, hold, resolve, close and reopen, then `show`."""
    incident = str(api.open_incident("disk full", service="storage"))
    monkeypatch.setenv("TOCSIN_TOKEN", TOKENS["operator"])
    monkeypatch.setenv("TOCSIN_URL", api.url)
    on_a_terminal(monkeypatch)
    steps = [
        (["ack", incident, "--note", "mine"], "incident 1: acknowledged, P3 - disk full"),
        (["assign", incident, "--to", "alice", "--group", "storage"],
         "incident 1: acknowledged, P3, assigned to alice (storage) - disk full"),
        (["comment", incident, "growing", "fast"], "incident 1: acknowledged, P3, assigned to alice (storage) - disk full"),
        (["start", incident], "incident 1: in_progress, P3, assigned to alice (storage) - disk full"),
        (["hold", incident], "incident 1: on_hold, P3, assigned to alice (storage) - disk full"),
        (["resolve", incident], "incident 1: resolved, P3, assigned to alice (storage) - disk full"),
        (["reopen", incident], "incident 1: new, P3, assigned to alice (storage) - disk full"),
    ]  # fmt: skip
    for argv, said in steps:
        assert run(capsys, "incidents", *argv) == (0, said + "\n", "")
    code, out, _ = run(capsys, "incidents", "show", incident)
    assert code == 0
    lines = out.splitlines()
    assert lines[:3] == ["incident 1", "  title     disk full", "  state     new"]
    assert "  priority  P3 (impact medium, urgency medium)" in lines
    timeline = lines[lines.index("") + 1 :]
    assert timeline[0].split() == ["TIME", "KIND", "ACTOR", "CHANGE", "NOTE"]
    assert timeline[1].split() == ["2026-11-25", "00:00:00Z", "state", "tocsin", "new"]
    assert timeline[2].split() == [
        "2026-11-25",
        "00:00:00Z",
        "state",
        "olga",
        "new",
        "->",
        "acknowledged",
        "mine",
    ]
    assert timeline[4].split()[2:] == ["comment", "olga", "acknowledged", "growing", "fast"]
    code, out, _ = run(capsys, "incidents", "show", incident, "--json")
    assert json.loads(out)["timeline"][-1]["to"] == "new"


def test_refusals_exit_1_and_usage_errors_exit_2(
    api: ApiKit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test one clear stderr line: 1 when the API refuses, 2 for what the user must fix."""
    incident = str(api.open_incident())
    viewer = token_file(api, "viewer")
    assert run(capsys, "incidents", "ack", incident, "--url", api.url, "--token-file", viewer) == (
        1,
        "",
        f"tocsin incidents: POST /api/v1/incidents/{incident}/acknowledge: 403 "
        "this needs the operator role; vera has viewer\n",
    )
    assert (
        run(
            capsys,
            "incidents",
            "close",
            incident,
            "--url",
            api.url,
            "--token-file",
            token_file(api, "operator"),
        )[0]
        == 1
    )
    assert run(capsys, "incidents", "assign", incident, "--url", api.url) == (
        2, "", "tocsin incidents: give --to USER, --group GROUP or both\n"
    )  # fmt: skip
    code, _, err = run(capsys, "incidents", "ack", incident, "--token-file", str(api.root / "none"))
    assert code == 2
    assert err.startswith(f"tocsin incidents: cannot read token file {api.root / 'none'}")
    monkeypatch.setenv("TOCSIN_URL", "ftp://example.com")
    assert run(capsys, "oncall")[0] == 2
    monkeypatch.setenv("TOCSIN_URL", "http://127.0.0.1:9")
    code, _, err = run(capsys, "oncall")
    assert (code, err.startswith("tocsin oncall: cannot reach tocsin at http://127.0.0.1:9")) == (
        1,
        True,
    )
    with pytest.raises(SystemExit) as usage:
        main(["incidents", "ack", "not-a-number"])
    assert usage.value.code == 2


def test_url_and_token_come_from_flags_then_environment_then_client_config(
    api: ApiKit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test the precedence: --url/--token-file, then TOCSIN_URL/TOCSIN_TOKEN, then client.yaml."""
    incident = str(api.open_incident())
    dead = "http://127.0.0.1:9"
    config = api.root / "home" / ".config" / "tocsin" / "client.yaml"
    config.parent.mkdir(parents=True)
    (config.parent / "mine.token").write_text(TOKENS["operator"])
    config.write_text(f"url: {api.url}\ntoken_file: mine.token\n")
    assert run(capsys, "incidents", "ack", incident)[0] == 0  # all from client.yaml
    monkeypatch.setenv("TOCSIN_TOKEN", TOKENS["viewer"])  # the environment beats the file
    assert run(capsys, "incidents", "start", incident)[0] == 1
    code = run(capsys, "incidents", "start", incident, "--token-file", token_file(api, "admin"))[0]
    assert code == 0  # the flag beats the environment
    monkeypatch.setenv("TOCSIN_URL", dead)
    assert run(capsys, "incidents", "list")[0] == 1
    assert run(capsys, "incidents", "list", "--url", api.url)[0] == 0
    other = api.root / "other.yaml"
    other.write_text(f"url: {dead}\ntoken_fil: x\n")
    monkeypatch.delenv("TOCSIN_URL")
    monkeypatch.setenv("TOCSIN_CLIENT_CONFIG", str(other))
    code, _, err = run(capsys, "incidents", "list")
    assert (code, err) == (
        2,
        f"tocsin incidents: {other}:2:1: unknown client config key 'token_fil' "
        "(did you mean 'token_file'?)\n",
    )


def test_oncall_table(
    api: ApiKit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test `tocsin oncall --at` as a table."""
    on_a_terminal(monkeypatch)
    code, out, _ = run(capsys, "oncall", "--url", api.url, "--at", "2026-11-26T12:00:00+00:00")
    assert (code, out.splitlines()) == (0, [
        "SCHEDULE  ON CALL  UNTIL",
        "ops       bob      2026-11-27 09:00:00Z",
        "nobody    -        -",
    ])  # fmt: skip


def test_token_new_prints_the_secret_on_stdout_and_the_line_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Test that the token goes to stdout alone, and the stderr line (a hash) admits it."""
    code, out, err = run(capsys, "token", "new", "--principal", "alice", "--role", "operator")
    assert code == 0
    token = out.strip()
    assert out == token + "\n"
    assert token not in err
    found = Gate(parse_tokens(err, "stderr")).identify(token)
    assert found is not None
    assert (found.principal, found.role) == ("alice", Role.OPERATOR)
    assert run(capsys, "token", "new", "--principal", "token-1", "--role", "viewer")[0] == 2
