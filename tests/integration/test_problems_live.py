"""Problem management through the real daemon: three incidents of one fingerprint open a
problem, an operator records the known error over the API, and the fourth incident arrives
with the workaround and linked to the problem, across a restart."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from daemon import Daemon, wait_until
from test_incidents_live import ALICE, VIEWER, _write
from test_silences_live import request

pytestmark = pytest.mark.integration

INCIDENTS = """
lifecycle: {reopen_window: 0s}
problems:
  recurrence:
    - {by: fingerprint, count: 3, within: 1d}
"""


def _daemon(root: Path) -> Daemon:
    digest = {t: hashlib.sha256(t.encode()).hexdigest() for t in (ALICE, VIEWER)}
    root.mkdir(parents=True, exist_ok=True)
    (root / "tokens").write_text(
        f"alice operator sha256:{digest[ALICE]}\nvictor viewer sha256:{digest[VIEWER]}\n"
    )
    (root / "incidents.yaml").write_text(INCIDENTS)
    daemon = Daemon(root, extra="incidents: incidents.yaml\n")
    config = daemon.root / "tocsin.yaml"
    config.write_text(config.read_text().replace("port: ", "tokens_file: tokens, port: ", 1))
    return daemon


def _flap(daemon: Daemon, hour: int) -> None:
    _write(
        daemon,
        f"Nov 25 {hour:02d}:00:00 r1 %LINK-3-UPDOWN: Interface Gi0/1, changed state to down\n",
    )
    _write(
        daemon, f"Nov 25 {hour:02d}:05:00 r1 %LINK-3-UPDOWN: Interface Gi0/1, changed state to up\n"
    )


def test_recurrence_opens_a_problem_and_the_known_error_reaches_the_next(tmp_path: Path) -> None:
    """Test recurrence -> problem, KEDB over the API, workaround on the fourth incident."""
    daemon = _daemon(tmp_path / "d")
    daemon.start()
    for hour in (1, 2, 3):
        _flap(daemon, hour)
    problems = wait_until(
        lambda: request(daemon, "GET", "/api/v1/problems", token=VIEWER)[1]["problems"],
        what="the problem the third incident opens",
    )
    (problem,) = problems
    assert (problem["state"], problem["incidents"]) == ("new", [1, 2, 3])
    status, entry = request(
        daemon, "POST", "/api/v1/known-errors",
        {"name": "sfp-gi0-1", "matchers": ["rule=link-down", 'key=~"r1:.*"'],
         "workaround": "reseat the SFP in Gi0/1", "root_cause": "a loose SFP",
         "problem": problem["id"]},
        ALICE,
    )  # fmt: skip
    assert status in {201, 200}, entry
    assert request(daemon, "POST", "/api/v1/known-errors", {}, VIEWER)[0] == 403
    daemon.stop()
    daemon.start()  # the known error and the problem survive a restart
    _write(daemon, "Nov 25 04:00:00 r1 %LINK-3-UPDOWN: Interface Gi0/1, changed state to down\n")
    fourth = wait_until(lambda: [i for i in daemon.incidents() if i["id"] == 4], what="4th")
    assert fourth[0]["workaround"] == "reseat the SFP in Gi0/1"
    timeline = daemon.get("/api/v1/incidents/4/timeline")["timeline"]
    kinds = {(e["kind"], e["actor"]) for e in timeline}
    assert ("workaround", "known-error:sfp-gi0-1") in kinds
    assert ("problem", "known-error:sfp-gi0-1") in kinds
    shown = request(daemon, "GET", f"/api/v1/problems/{problem['id']}", token=VIEWER)[1]
    assert shown["incidents"] == [1, 2, 3, 4]
    assert [e["kind"] for e in shown["timeline"]][:1] == ["state"]
    status, moved = request(
        daemon, "POST", f"/api/v1/problems/{problem['id']}/known-error", {}, ALICE
    )
    assert status == 409  # the problem itself has no workaround yet: the KEDB entry does
    assert "workaround" in moved["error"]
    assert daemon.stop() == 0


def test_a_rule_opens_a_problem_and_links_its_incident(tmp_path: Path) -> None:
    """Test the `problem` action: the rule's incident is linked to the key's problem."""
    root = tmp_path / "d"
    daemon = _daemon(root)
    (root / "rules" / "test.yaml").write_text(
        "rules:\n"
        "  - id: raid-degraded\n"
        "    match: {message: {regex: 'raid (?P<array>\\S+) degraded'}}\n"
        "    key: '{{ event.host }}'\n"
        "    actions:\n"
        "      - incident: {title: 'RAID degraded on {{ event.host }}', impact: high, urgency: low}\n"
        "      - problem: {key: '{{ array }}', title: 'Array {{ array }} keeps degrading'}\n"
    )
    daemon.start()
    _write(daemon, "Nov 25 10:00:00 db1 mdadm: raid md0 degraded\n")
    _write(daemon, "Nov 25 10:00:01 db2 mdadm: raid md0 degraded\n")
    problems = wait_until(
        lambda: [
            p
            for p in request(daemon, "GET", "/api/v1/problems", token=VIEWER)[1]["problems"]
            if len(p["incidents"]) == 2
        ],
        what="one problem with both incidents",
    )
    assert problems[0]["title"] == "Array md0 keeps degrading"
    assert problems[0]["fingerprint"] == "rule raid-degraded: md0"
    assert daemon.stop() == 0
