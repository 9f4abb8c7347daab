"""`tocsin rules` against the real daemon after it read real log lines: each rule's figures,
the documented answer, the per-rule metrics."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import schemathesis
from daemon import Daemon, ssh_line, wait_until

from tocsin.cli import main

pytestmark = pytest.mark.integration

LINES = [ssh_line(i, "10.0.0.1") for i in range(3)] + [
    ssh_line(9, "10.0.0.2"),
    "Nov 25 10:00:05 r1 %LINK-3-UPDOWN: Interface Gi0/1, changed state to down\n",
    "Nov 25 10:00:06 r1 %LINK-3-UPDOWN: Interface Gi0/1, changed state to up\n",
    "Nov 25 10:00:07 r1 systemd[1]: Started Session 4 of user bob.\n",
]


def test_rules_shows_what_each_rule_did(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test the figures after 7 lines: matches and actions per rule (link-down runs two
    actions), events tried as the prefilter allowed, time spent; then the table sorted by
    matches, the OpenAPI conformance of the answer and the metrics."""
    daemon = Daemon(tmp_path)
    (daemon.root / "logs" / "auth.log").write_text("".join(LINES))
    daemon.start()
    url = f"http://127.0.0.1:{daemon.port}"
    wait_until(lambda: daemon.incidents("resolved"), what="the link to come back up")
    monkeypatch.delenv("TOCSIN_CLIENT_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert main(["rules", "--url", url, "--json"]) == 0
    rules = json.loads(capsys.readouterr().out)["rules"]
    assert [(r["id"], r["evaluated"], r["matches"], r["actions"]) for r in rules] == [
        ("ssh-failed", 4, 4, 4),
        ("link-down", 1, 1, 2),
        ("link-up", 1, 1, 1),
    ]
    assert [r["where"].rsplit("/", 2)[1:] for r in rules] == [
        ["rules", "test.yaml:3"],
        ["rules", "test.yaml:10"],
        ["rules", "test.yaml:16"],
    ]
    assert all(r["eval_seconds"] > 0 for r in rules)

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["rules", "--url", url, "--sort", "matches"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "RULE", "KIND", "EVALUATED", "MATCHES", "ACTIONS", "TIME", "S", "US/EVENT", "WHERE",
    ]  # fmt: skip
    assert [row.split()[:5] for row in rows] == [
        ["ssh-failed", "rule", "4", "4", "4"],
        ["link-down", "rule", "1", "1", "2"],
        ["link-up", "rule", "1", "1", "1"],
    ]

    document = schemathesis.openapi.from_url(f"{url}/api/v1/openapi.json")
    document["/api/v1/rules"]["GET"].Case().call_and_validate(base_url=url)
    metrics = daemon.metrics()
    assert 'tocsin_rule_actions_total{rule="link-down"} 2.0' in metrics
    assert 'tocsin_rule_matches_total{rule="ssh-failed"} 4.0' in metrics
    spent = re.search(r'tocsin_rule_eval_seconds_total\{rule="ssh-failed"\} (\S+)', metrics)
    assert spent is not None
    assert float(spent.group(1)) > 0
    assert daemon.stop() == 0


def test_rules_says_when_no_daemon_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that an unreachable daemon exits 1 with the reason."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["rules", "--url", "http://127.0.0.1:9"]) == 1
    assert "cannot reach tocsin at http://127.0.0.1:9" in capsys.readouterr().err
