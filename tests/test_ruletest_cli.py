"""Tests of the `tocsin test` command as CI runs it: the bundled rules' tests pass and cover
every bundled rule, and the exit status says passed (0), failed (1) or unusable (2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tocsin.actions.registry import ACTION_KINDS
from tocsin.rules.loader import load_rules
from tocsin.ruletest.runner import find_files

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "tests" / "rules"

RULE = """\
rules:
  - id: db-down
    match: {message: {regex: 'database down'}}
    key: "{{ event.host }}"
    actions:
      - incident: {title: "database down on {{ event.host }}", impact: high, urgency: high}
      - log: {message: "db down on {{ event.host }}", level: warning}
"""
TEST = """\
rules: [r.yaml]
cases:
  - name: down
    input:
      - {at: 0s, syslog: "db1 postgres[7]: database down"}
    expect:
      - at: 1s
        incidents: [{rule: db-down, key: db1, priority: P1}]
  - name: wrong on purpose
    input:
      - {at: 0s, syslog: "db1 postgres[7]: database down"}
    expect:
      - at: 1s
        incidents: [{rule: db-down, priority: P2}]
"""


def tocsin(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the tocsin command in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "tocsin", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_bundled_rules_pass_their_tests() -> None:
    """Test that `tocsin test tests/rules` (what scripts/test runs) passes every case."""
    done = tocsin("test", "tests/rules")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.splitlines()[-1]
    assert summary.endswith(" passed, 0 failed"), summary
    assert all(line.startswith("ok    tests/rules/") for line in done.stdout.splitlines()[:-1])


def test_every_bundled_rule_has_a_test() -> None:
    """Test that each rule in rules/ is named by some test file in tests/rules."""
    ruleset = load_rules([ROOT / "rules"], kinds=ACTION_KINDS)
    tests = "\n".join(p.read_text() for p in BUNDLED.glob("*.test.yaml"))
    untested = [rule.id for rule in ruleset.rules if rule.id not in tests]
    assert ruleset.rules
    assert untested == []


def test_failures_exit_1_and_only_chosen_cases_run(tmp_path: Path) -> None:
    """Test that a failing case makes the exit status 1 (the daemon's log kept out of it),
    and that --case runs only the cases whose name it finds, with --log-level showing the
    daemon's log lines (here a rule's `log` action) on stderr."""
    (tmp_path / "r.yaml").write_text(RULE)
    (tmp_path / "db.test.yaml").write_text(TEST)
    failed = tocsin("test", ".", cwd=tmp_path)
    assert (failed.returncode, failed.stderr) == (1, "")
    assert failed.stdout.splitlines()[0] == "ok    db.test.yaml:3:5: down"
    assert failed.stdout.splitlines()[1] == "FAIL  db.test.yaml:9:5: wrong on purpose"
    assert failed.stdout.splitlines()[-1] == "1 file, 2 cases: 1 passed, 1 failed"
    chosen = tocsin("test", "db.test.yaml", "--case", "^down$", "--log-level", "warning",
                    cwd=tmp_path)  # fmt: skip
    assert (chosen.returncode, chosen.stdout) == (
        0,
        "ok    db.test.yaml:3:5: down\n1 file, 1 case: 1 passed, 0 failed\n",
    )
    assert "db down on db1" in chosen.stderr


def test_unusable_paths_exit_2(tmp_path: Path) -> None:
    """Test that a missing path and a bad --case regex exit 2, and that a folder without
    test files gives none."""
    missing = tocsin("test", "nowhere", cwd=tmp_path)
    assert (missing.returncode, missing.stderr) == (
        2,
        "tocsin test: nowhere: no such file or folder\n",
    )
    assert find_files([tmp_path]) == ([], [])
    (tmp_path / "r.yaml").write_text(RULE)
    (tmp_path / "db.test.yaml").write_text(TEST)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "more.test.yml").write_text(TEST)
    assert find_files([tmp_path]) == (
        [tmp_path / "db.test.yaml", tmp_path / "sub" / "more.test.yml"],
        [],
    )
    regex = tocsin("test", ".", "--case", "(", cwd=tmp_path)
    assert regex.returncode == 2
    assert regex.stderr.startswith("tocsin test: --case is not a valid regex: ")
