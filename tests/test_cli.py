"""The command line: check, replay and version, as operators run them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tocsin.cli import main

REPO = Path(__file__).parents[1]

LOG = """\
Dec 31 23:59:58 web1 sshd[1]: Failed password for root from 203.0.113.7 port 1 ssh2
Dec 31 23:59:59 web1 sshd[1]: Failed password for root from 203.0.113.7 port 1 ssh2
Jan  1 00:00:01 core1 %LINK-3-UPDOWN: Interface Gi0/1, changed state to down
Jan  1 00:00:02 web1 CRON[5]: (root) CMD (run-parts /etc/cron.hourly)
Jan  1 00:02:00 core1 %LINK-3-UPDOWN: Interface Gi0/1, changed state to up
this line is not syslog at all
"""


def test_check_accepts_the_bundled_config(capsys: pytest.CaptureFixture[str]) -> None:
    """Test that `tocsin check --config config/tocsin.yaml` passes with a summary line."""
    assert main(["check", "--config", str(REPO / "config" / "tocsin.yaml")]) == 0
    out = capsys.readouterr().out
    assert "4 files, 12 rules ok, 0 errors, 0 warnings" in out


def test_check_rejects_a_broken_file_with_file_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Test that `tocsin check` prints file:line:col for each error and exits 1."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules:\n  - id: x\n    match: {program: a}\n    actions: [{incident: {titel: t}}]\n"
    )
    assert main(["check", str(REPO / "rules"), str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:4:27: rule 'x': unknown incident option 'titel' (did you mean 'title'?)" in err
    assert "12 rules ok, 1 errors" in err


def test_check_reports_a_broken_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Test that a config error is printed with file:line and exits 1."""
    config = tmp_path / "tocsin.yaml"
    config.write_text("state_dri: x\n")
    assert main(["check", "--config", str(config)]) == 1
    assert (
        f"{config}:1:1: unknown config key 'state_dri' (did you mean 'state_dir'?)"
        in capsys.readouterr().err
    )


def test_replay_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Test that replay prints one JSON object per action, with the lines' own times and year rollover."""
    log = tmp_path / "syslog"
    log.write_text(LOG)
    assert (
        main(
            [
                "replay",
                "--rules",
                str(REPO / "rules"),
                "--year",
                "2025",
                "--timezone",
                "UTC",
                "--format",
                "jsonl",
                str(log),
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [(r["rule"], r["action"], r["op"], r["key"], r["count"]) for r in rows] == [
        ("ssh-failed-password-admin", "incident", "open", "203.0.113.7", 1),
        ("ssh-failed-password-admin", "incident", "update", "203.0.113.7", 2),
        ("link-down", "incident", "open", "core1:Gi0/1", 1),
        ("cron-noise", "drop", "drop", "", 0),
        ("link-up", "resolve", "resolve", "core1:Gi0/1", 1),
    ]
    assert rows[0]["time"] == "2025-12-31T23:59:58+00:00"
    assert rows[2]["time"] == "2026-01-01T00:00:01+00:00"
    assert rows[0]["fingerprint"] == "ssh-failed-password-admin:203.0.113.7"
    assert rows[2]["title"] == "Gi0/1 down on core1"
    assert set(rows[0]) >= {"time", "rule", "action", "op", "key", "fingerprint", "title", "count"}
    assert "lines: 6  events: 6" in captured.err
    assert "lines/s:" in captured.err
    assert "  ssh-failed-password-admin: 2" in captured.err


def test_replay_table_and_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Test that replay takes rules from a config and prints a table with a header."""
    log = tmp_path / "syslog"
    log.write_text(LOG)
    assert (
        main(
            ["replay", "--config", str(REPO / "config" / "tocsin.yaml"), "--year", "2025", str(log)]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["TIME", "RULE", "ACTION", "OP", "COUNT", "KEY", "TITLE"]
    assert len(out) == 6
    assert "link-up  resolve  resolve  1  core1:Gi0/1  Gi0/1 down on core1" in out[5]


def test_replay_reopens_as_the_daemon_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Test that a flap within lifecycle.reopen_window reopens the incident in replay too."""
    log = tmp_path / "syslog"
    log.write_text(
        "".join(
            f"Jan  1 {at} core1 %LINK-3-UPDOWN: Interface Gi0/1, changed state to {state}\n"
            for at, state in (
                ("00:00:01", "down"),
                ("00:02:00", "up"),
                ("00:30:00", "down"),
                ("02:00:00", "up"),
                ("03:30:00", "down"),
            )
        )
    )
    args = ["replay", "--rules", str(REPO / "rules"), "--year", "2025", "--format", "jsonl"]
    assert main([*args, str(log)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    link = [(r["op"], r["count"]) for r in rows if r["rule"] == "link-down"]
    assert link == [("open", 1), ("reopen", 2), ("open", 1)]  # 28 min after: reopen; 90: new


def test_replay_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Test that a missing input file is a usage error, not a traceback."""
    assert main(["replay", "--rules", str(REPO / "rules"), str(tmp_path / "nope.log")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_console_script_runs() -> None:
    """Test that `python -m tocsin version` works as a real process."""
    out = subprocess.run(
        [sys.executable, "-m", "tocsin", "version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "0.1.0"


def test_replay_without_year_uses_the_current_year(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Test that BSD stamps in a replay without --year get the year they have when read today."""
    import datetime

    today = datetime.datetime.now(datetime.UTC)
    log = tmp_path / "syslog"
    log.write_text(
        f"{today:%b} {today.day:2d} 00:00:01 web1 sshd[1]: Failed password for x from 192.0.2.1 port 1 ssh2\n"
    )
    assert (
        main(
            [
                "replay",
                "--rules",
                str(REPO / "rules"),
                "--timezone",
                "UTC",
                "--format",
                "jsonl",
                str(log),
            ]
        )
        == 0
    )
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["time"].startswith(f"{today.year}-")


def test_replay_reports_rule_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Test that a rule failing on the data shows up in the replay summary, not as zero matches."""
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "rules:\n  - id: bad-key\n    match: {program: sshd}\n    key: '{{ event.program + 1 }}'\n"
        "    actions: [{incident: {title: x}}]\n"
    )
    log = tmp_path / "syslog"
    log.write_text(LOG)
    assert main(["replay", "--rules", str(rules), "--year", "2025", str(log)]) == 0
    err = capsys.readouterr().err
    assert "  bad-key [key]: 2" in err
    assert "can only concatenate" in err


def test_check_knows_the_configured_brokers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Test that with --config a publish action to a broker the config lacks is an error."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - id: p\n    match: {program: a}\n"
        "    actions: [{publish: {broker: alert, topic: t, payload: x}}]\n"
    )
    config = tmp_path / "tocsin.yaml"
    config.write_text(f"rules: [{rules}]\nmqtt:\n  brokers:\n    alerts: {{host: h}}\n")
    assert main(["check", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"{rules}:4:" in err
    assert "unknown mqtt broker 'alert'" in err
    assert "did you mean 'alerts'" in err
    assert main(["check", str(rules)]) == 0  # no config: any broker name is accepted
