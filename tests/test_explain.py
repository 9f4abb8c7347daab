"""`tocsin explain`: the bundled rules and test-written ones, a real config with muting and
routing, through the library and the command line (with a real API for silences)."""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from apikit import TOKENS, ApiKit
from tocsin.actions.registry import ACTION_KINDS
from tocsin.cli import main
from tocsin.config import load_config
from tocsin.explain import Explanation, RuleVerdict, explain, setup_from
from tocsin.explain.inputs import Mibs, from_json, from_line, from_trap
from tocsin.explain.report import describe_miss
from tocsin.rules.loader import load_rules

REPO_RULES = Path(__file__).resolve().parents[1] / "rules"
T = 1_795_600_800.0  # 2026-11-25T10:00:00Z
AT = "2026-11-25T10:00:00Z"
SSH_ROOT = "Nov 25 10:00:00 web1 sshd[42]: Failed password for root from 192.0.2.9 port 22 ssh2"
SSH_ALICE = "Nov 25 10:00:00 web1 sshd[42]: Failed password for alice from 192.0.2.9 port 22 ssh2"

# One rule per condition form, each failing on EVENT at a known condition.
OPERATORS = r"""
lists:
  admins: [root, admin]
macros:
  sshd: {program: sshd}
  nginxd: {program: nginx}
rules:
  - {id: equals, match: {program: nginx}, actions: [drop]}
  - {id: equals-number, match: {fields.port: 2222}, actions: [drop]}
  - {id: one-of, match: {host: [db1, db2]}, actions: [drop]}
  - {id: not-in-list, match: {fields.user: {not_in: lists.admins}}, actions: [drop]}
  - {id: regex, match: {message: {regex: 'Accepted \w+'}}, actions: [drop]}
  - {id: contains, match: {message: {contains: [refused, reset]}}, actions: [drop]}
  - {id: startswith, match: {host: {startswith: db}}, actions: [drop]}
  - {id: endswith, match: {host: {endswith: "-2"}}, actions: [drop]}
  - {id: greater, match: {fields.port: {gt: 1024}}, actions: [drop]}
  - {id: text-order, match: {fields.user: {lt: a}}, actions: [drop]}
  - {id: range-second, match: {fields.port: {gt: 10, lt: 20}}, actions: [drop]}
  - {id: absent, match: {fields.user: {exists: false}}, actions: [drop]}
  - {id: present, match: {fields.gone: {exists: true}}, actions: [drop]}
  - {id: missing-path, match: {fields.gone.deeper: x}, actions: [drop]}
  - {id: list-index, match: {fields.tags.1: c}, actions: [drop]}
  - {id: cheap-first, match: {message: {regex: nothing}, program: nginx}, actions: [drop]}
  - {id: in-macro, match: {macro: nginxd}, actions: [drop]}
  - {id: after-macro, match: {macro: sshd, host: db9}, actions: [drop]}
  - {id: all-item, match: {all: [{program: sshd}, {host: db9}]}, actions: [drop]}
  - {id: any-of, match: {any: [{program: nginx}, {host: db9}]}, actions: [drop]}
  - {id: negated, match: {not: {program: sshd}}, actions: [drop]}
"""
EVENT = {
    "time": T,
    "message": "Failed password for root from 192.0.2.9 port 22",
    "host": "web1",
    "program": "sshd",
    "fields": {"port": 22, "user": "root", "tags": ["a", "b"]},
}
MESSAGE = EVENT["message"]
# rule -> (field, op, expected, got, missing, within) of its first failing condition
MISSES: dict[str, tuple[str, str, Any, Any, bool, tuple[str, ...]]] = {
    "equals": ("program", "equals", "nginx", "sshd", False, ()),
    "equals-number": ("fields.port", "equals", 2222, 22, False, ()),
    "one-of": ("host", "in", ["db1", "db2"], "web1", False, ()),
    "not-in-list": ("fields.user", "not_in", ["root", "admin"], "root", False, ()),
    "regex": ("message", "regex", r"Accepted \w+", MESSAGE, False, ()),
    "contains": ("message", "contains", ["refused", "reset"], MESSAGE, False, ()),
    "startswith": ("host", "startswith", "db", "web1", False, ()),
    "endswith": ("host", "endswith", "-2", "web1", False, ()),
    "greater": ("fields.port", "gt", 1024, 22, False, ()),
    "text-order": ("fields.user", "lt", "a", "root", False, ()),
    "range-second": ("fields.port", "lt", 20, 22, False, ()),
    "absent": ("fields.user", "exists", False, "root", False, ()),
    "present": ("fields.gone", "exists", True, None, True, ()),
    "missing-path": ("fields.gone.deeper", "equals", "x", None, True, ()),
    "list-index": ("fields.tags.1", "equals", "c", "b", False, ()),
    "cheap-first": ("program", "equals", "nginx", "sshd", False, ()),
    "in-macro": ("program", "equals", "nginx", "sshd", False, ("macro nginxd",)),
    "after-macro": ("host", "equals", "db9", "web1", False, ()),
    "all-item": ("host", "equals", "db9", "web1", False, ("all: item 2",)),
}

CONFIG = """\
state_dir: state
rules: [{rules}, extra.yaml]
muting: muting.yaml
incidents: incidents.yaml
"""
EXTRA = """\
rules:
  - id: disk-full
    match: {message: {regex: 'No space left on (?P<device>\\S+)'}}
    key: "{{ event.host }}"
    actions:
      - incident: {title: "Disk full on {{ event.host }}", service: storage, impact: high,
                   urgency: high}
      - log: {message: "disk full on {{ event.host }}"}
"""
MUTING = """\
maintenance:
  - name: web-patching
    matchers: [host=web1, service=storage]
    start: 2026-11-25T09:00:00Z
    end: 2026-11-25T11:00:00Z
"""
INCIDENTS = """\
receivers:
  - {name: team, webhook: {url: "http://127.0.0.1:9/team"}}
  - {name: pager, webhook: {url: "http://127.0.0.1:9/pager"}}
route:
  receiver: team
  group_by: [service]
  routes:
    - matchers: [priority=~"P1|P2"]
      receiver: pager
      group_wait: 0s
"""


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    """A real config: the bundled rules plus one, a maintenance window, a routing tree."""
    (tmp_path / "extra.yaml").write_text(EXTRA)
    (tmp_path / "muting.yaml").write_text(MUTING)
    (tmp_path / "incidents.yaml").write_text(INCIDENTS)
    path = tmp_path / "tocsin.yaml"
    path.write_text(CONFIG.format(rules=json.dumps(str(REPO_RULES))))
    return path


def explained(config_path: Path, line: str, *, at: float = T) -> Explanation:
    """Explain one syslog line against the config, as the command does."""
    config = load_config(config_path)
    ruleset = load_rules(list(config.rule_paths), kinds=ACTION_KINDS)
    event = from_line(line, parser="syslog", received=at, year=2026)
    event.time = at
    return explain(event, setup_from(ruleset, list(config.rule_paths), config))


def verdict(explanation: Explanation, rule_id: str) -> RuleVerdict:
    """The verdict on one rule."""
    return next(v for v in explanation.verdicts if v.rule.id == rule_id)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI; return the exit code, stdout and stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_matched_rule_shows_its_captures_key_and_who_stopped_the_event(
    config_path: Path,
) -> None:
    """Test the bundled ssh rules on a root failure: the brute-force rule matches and goes
    on, the admin rule matches and stops the event, the plain rule would match but is not
    reached; the engine's own run agrees."""
    found = explained(config_path, SSH_ROOT)
    brute = verdict(found, "ssh-bruteforce")
    admin = verdict(found, "ssh-failed-password-admin")
    plain = verdict(found, "ssh-failed-password")
    assert (brute.status, brute.captures, brute.key, brute.acted) == (
        "matched",
        {"ip": "192.0.2.9"},
        "192.0.2.9",
        True,
    )
    assert (admin.status, admin.captures, admin.acted) == (
        "matched",
        {"user": "root", "ip": "192.0.2.9"},
        True,
    )
    assert (plain.status, plain.stopped_by, plain.acted) == (
        "matched",
        "ssh-failed-password-admin",
        False,
    )
    assert verdict(found, "cron-noise").stopped_by == "ssh-failed-password-admin"
    assert found.disagreements == []
    assert [o.rule.id for o in found.outcomes] == ["ssh-bruteforce", "ssh-failed-password-admin"]


def test_when_false_lets_the_next_rule_take_the_event(config_path: Path) -> None:
    """Test that a `when` that says no is shown with its expression, and the next rule acts."""
    found = explained(config_path, SSH_ALICE)
    admin = verdict(found, "ssh-failed-password-admin")
    assert (admin.status, admin.error) == ("when_false", "user in lists.admin_users")
    assert verdict(found, "ssh-failed-password").acted
    opened = next(o for o in found.outcomes if o.rule.id == "ssh-failed-password").outputs
    assert [(o.action, o.op, o.title) for o in opened] == [
        ("incident", "open", "SSH password failures from 192.0.2.9")
    ]


@pytest.mark.parametrize("rule_id", sorted(MISSES))
def test_each_non_match_names_its_first_failing_condition(tmp_path: Path, rule_id: str) -> None:
    """Test, for every condition form, the field, operator, expected and actual value of the
    first condition that failed (in the engine's order: equality before regex)."""
    (tmp_path / "ops.yaml").write_text(OPERATORS)
    ruleset = load_rules([tmp_path], kinds=ACTION_KINDS)
    assert not ruleset.errors, [str(e) for e in ruleset.errors]
    found = explain(from_json(json.dumps(EVENT), received=T), setup_from(ruleset, [tmp_path], None))
    miss = verdict(found, rule_id).miss
    assert miss is not None
    assert (miss.field, miss.op, miss.expected, miss.got, miss.missing, miss.within) == MISSES[
        rule_id
    ]
    assert found.disagreements == []


def test_any_and_not_say_why_they_fail(tmp_path: Path) -> None:
    """Test that `any` lists each alternative's own miss and `not` shows what it negates."""
    (tmp_path / "ops.yaml").write_text(OPERATORS)
    ruleset = load_rules([tmp_path], kinds=ACTION_KINDS)
    found = explain(from_json(json.dumps(EVENT), received=T), setup_from(ruleset, [tmp_path], None))
    any_of = verdict(found, "any-of").miss
    assert any_of is not None
    assert [(m.field, m.expected, m.got) for m in any_of.alternatives] == [
        ("program", "nginx", "sshd"),
        ("host", "db9", "web1"),
    ]
    assert describe_miss(any_of) == (
        'any: none of its 2 alternatives holds: (1) program: wanted "nginx", got "sshd"; '
        '(2) host: wanted "db9", got "web1"'
    )
    negated = verdict(found, "negated").miss
    assert negated is not None
    assert describe_miss(negated) == 'not: the negated condition holds: {"program": "sshd"}'


def test_a_threshold_rule_says_one_event_does_not_act_and_what_acting_would_do(
    config_path: Path,
) -> None:
    """Test the brute-force rule's caveat (10 within 1m), that nothing runs now, and the
    incident and route it would have once it acts."""
    found = explained(config_path, SSH_ROOT)
    brute = next(o for o in found.outcomes if o.rule.id == "ssh-bruteforce")
    assert brute.outputs == []
    assert brute.correlation == [
        'threshold: counts toward 10 within 1m for key "192.0.2.9"; one event alone does not act'
    ]
    assert [(o.action, o.op, o.title) for o in brute.when_acting] == [
        ("incident", "open", "SSH brute force from 192.0.2.9")
    ]
    assert brute.incident is not None
    assert brute.incident.priority == "P2"
    assert [r.receiver for r in brute.routes or ()] == ["pager"]


def test_a_maintenance_window_mutes_inside_and_is_named_outside(config_path: Path) -> None:
    """Test that the config's window mutes the disk incident at 10:00 and, at 12:00, is still
    shown as matching but inactive; the route is the team's for a P1 too (pager first)."""
    line = "Nov 25 10:00:00 web1 kernel: EXT4-fs: No space left on sda1"
    inside = explained(config_path, line)
    (disk,) = inside.outcomes
    assert disk.muted is not None
    assert disk.muted.startswith("muted by maintenance window web-patching")
    assert [(w.name, active) for w, active in disk.windows] == [("web-patching", True)]
    assert [(o.action, o.op) for o in disk.outputs] == [
        ("incident", "open"),
        ("mute", "maintenance"),
    ]
    assert [r.receiver for r in disk.routes or ()] == ["pager"]
    outside = explained(config_path, line.replace("10:00", "12:00"), at=T + 7200)
    (later,) = outside.outcomes
    assert later.muted is None
    assert [(w.name, active) for w, active in later.windows] == [("web-patching", False)]
    assert [(o.action, o.op) for o in later.outputs] == [("incident", "open"), ("log", "info")]


def test_routing_sends_a_low_priority_incident_to_the_root_receiver(config_path: Path) -> None:
    """Test the route tree on a P3/P4 incident: the child route needs P1 or P2, so the root's
    receiver and group_by apply."""
    found = explained(config_path, SSH_ALICE)
    (plain,) = [o for o in found.outcomes if o.rule.id == "ssh-failed-password"]
    assert plain.incident is not None
    assert plain.incident.priority not in ("P1", "P2")
    assert [(r.receiver, r.group_by) for r in plain.routes or ()] == [("team", ("service",))]


def test_a_trap_description_becomes_the_event_the_receiver_would_make(config_path: Path) -> None:
    """Test a linkDown by name with an enumeration label, and by numeric OID: both match the
    bundled snmp-link-down rule with the agent and ifIndex as key."""
    config = load_config(config_path)
    ruleset = load_rules(list(config.rule_paths), kinds=ACTION_KINDS)
    setup = setup_from(ruleset, list(config.rule_paths), config)
    mibs = Mibs()
    named = from_trap(
        "IF-MIB::linkDown ifIndex=3 ifDescr=Gi0/3 ifOperStatus=down",
        mibs=mibs,
        agent="10.0.0.7",
        community="public",
        received=T,
    )
    assert named.fields["vars"] == {"ifIndex": 3, "ifDescr": "Gi0/3", "ifOperStatus": "down"}
    numeric = from_trap(
        "1.3.6.1.6.3.1.1.5.3 1.3.6.1.2.1.2.2.1.1.3=3",
        mibs=mibs,
        agent="10.0.0.7",
        community="public",
        received=T,
    )
    for event in (named, numeric):
        found = explain(event, setup)
        link = verdict(found, "snmp-link-down")
        assert (link.status, link.key, link.acted) == ("matched", "10.0.0.7:3", True)
        (outcome,) = found.outcomes
        assert outcome.correlation == [
            'clear: a later event matching its clear: with key "10.0.0.7:3" resolves its incident'
        ]


def test_a_clear_follow_up_is_shown_matching_its_event(config_path: Path) -> None:
    """Test that a linkUp trap matches the hidden clear of snmp-link-down, which the engine
    tries first, with the key of the incident it would resolve."""
    config = load_config(config_path)
    ruleset = load_rules(list(config.rule_paths), kinds=ACTION_KINDS)
    event = from_trap(
        "IF-MIB::linkUp ifIndex=3", mibs=Mibs(), agent="10.0.0.7", community="c", received=T
    )
    found = explain(event, setup_from(ruleset, list(config.rule_paths), config))
    assert found.verdicts[0].rule.id == "snmp-link-down#clear"
    clear = found.verdicts[0]
    assert (clear.status, clear.follower_of, clear.key, clear.acted) == (
        "matched",
        "snmp-link-down",
        "10.0.0.7:3",
        True,
    )
    assert verdict(found, "snmp-link-down").miss is not None
    assert found.disagreements == []


def test_a_line_can_come_from_stdin(
    config_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test --line - : the line is read from standard input."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(SSH_ALICE + "\n"))
    code, out, _ = run(
        capsys, "explain", "--config", str(config_path), "--line", "-", "--at", AT, "--json"
    )
    assert code == 0
    assert json.loads(out)["event"]["message"].startswith("Failed password for alice")


def test_json_output_has_every_rule_and_outcome(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Test `tocsin explain --json` on a line: the event, each rule's status and reason, the
    outcomes with actions, muting and routes, and the notes."""
    code, out, err = run(
        capsys,
        "explain",
        "--config",
        str(config_path),
        "--parser",
        "syslog",
        "--year",
        "2026",
        "--line",
        SSH_ALICE,
        "--at",
        AT,
        "--json",
    )
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert data["event"]["program"] == "sshd"
    assert data["event"]["time"] == AT
    rules = {r["id"]: r for r in data["rules"]}
    assert rules["ssh-failed-password"]["status"] == "matched"
    assert rules["ssh-failed-password"]["captures"] == {"user": "alice", "ip": "192.0.2.9"}
    assert rules["oom-kill"]["reason"] == 'program: wanted "kernel", got "sshd"'
    assert rules["oom-kill"]["miss"]["op"] == "equals"
    assert rules["snmp-link-down#clear"]["follower_of"] == "snmp-link-down"
    outcome = next(o for o in data["outcomes"] if o["rule"] == "ssh-failed-password")
    assert outcome["actions"][0]["op"] == "open"
    assert outcome["routes"][0]["receiver"] == "team"
    assert outcome["muted"] is None  # the window is for storage incidents only
    assert data["silences_active"] is None
    assert any("silences" in note for note in data["notes"])
    assert data["disagreements"] == []


def test_text_output_explains_for_people(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Test the text form: a rule line per rule with its reason, and what would happen."""
    code, out, _ = run(
        capsys, "explain", "--config", str(config_path), "--line", SSH_ROOT, "--year", "2026",
        "--at", AT,
    )  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    assert any(line.startswith("  oom-kill ") and " no, not reached " in line for line in lines)
    assert '      program: wanted "kernel", got "sshd"' in lines
    assert "      'ssh-failed-password-admin' matched first and stopped the event" in lines
    assert (
        '      correlation threshold: counts toward 10 within 1m for key "192.0.2.9"; one event '
        "alone does not act"
    ) in lines


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--event", '{"msg": "x"}'], "unknown event key(s) msg"),
        (["--event", "[1, 2]"], "the event must be a JSON object"),
        (["--event", "{"], "the event is not valid JSON"),
        (["--event", '{"fields": []}'], "event key 'fields' must be an object"),
        (["--event", '{"time": "yesterday"}'], "event key 'time' must be epoch seconds"),
        (["--trap", "NO-MIB::nothing"], "unknown trap 'NO-MIB::nothing'"),
        (["--trap", "IF-MIB::linkDown ifIndex"], "'ifIndex' is not VAR=VALUE"),
        (["--line", "   "], "the log line is empty"),
        (["--line", "x", "--at", "noon"], "--at 'noon': give ISO 8601 with an offset"),
        (["--line", "x", "--at", "nan"], "--at 'nan': give ISO 8601 with an offset"),
        (["--event", '{"time": Infinity}'], "event key 'time' must be epoch seconds"),
    ],
)
def test_a_bad_event_is_refused_with_exit_2(
    config_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    """Test that an event that cannot be read exits 2 and says what is wrong with it."""
    code, out, err = run(capsys, "explain", "--config", str(config_path), *argv)
    assert (code, out) == (2, "")
    assert err.startswith("tocsin explain: ")
    assert said in err


def test_silences_come_from_the_running_daemon_with_url(
    config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Test --url against a real API with a silence over host=web1: the ssh incident is muted
    by it, and the count of active silences is shown; without --url they are not consulted."""
    (tmp_path / "api").mkdir()
    with capture_logs(), ApiKit(tmp_path / "api") as api:  # its log lines stay off stdout
        made = api.request(
            "POST",
            "/api/v1/silences",
            {"matchers": ["host=web1"], "ends_at": time.time() + 7200, "comment": "disk swap"},
            token=TOKENS["operator"],
        )
        assert made.status == 201, made.body
        at = str(time.time() + 60)
        argv = ["explain", "--config", str(config_path), "--line", SSH_ALICE, "--at", at]
        code, out, err = run(capsys, *argv, "--url", api.url, "--json")
    assert (code, err) == (0, "")
    data = json.loads(out)
    outcome = next(o for o in data["outcomes"] if o["rule"] == "ssh-failed-password")
    assert outcome["muted"].startswith(f"muted by silence {made.body['id'][:8]} (disk swap")
    assert data["silences_active"] == 1
    code, out, _ = run(capsys, *argv, "--json")
    assert json.loads(out)["silences_active"] is None


def test_an_unreachable_daemon_exits_1(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Test that --url naming no daemon exits 1 and says it cannot reach it."""
    code, out, err = run(
        capsys, "explain", "--config", str(config_path), "--line", SSH_ROOT,
        "--url", "http://127.0.0.1:9",
    )  # fmt: skip
    assert (code, out) == (1, "")
    assert "cannot reach tocsin at http://127.0.0.1:9" in err


def test_a_broken_config_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Test that a config that does not load exits 1 with its file:line error."""
    bad = tmp_path / "tocsin.yaml"
    bad.write_text("state_dir: s\nrules: [r]\nnope: 1\n")
    code, out, err = run(capsys, "explain", "--config", str(bad), "--line", SSH_ROOT)
    assert (code, out) == (1, "")
    assert "tocsin.yaml:3" in err


GROUPED = r"""
rules:
  - id: disk-slow
    match: {message: {regex: 'slow I/O on (?P<dev>\w+)'}}
    key: "{{ dev }}"
    continue: true
    actions: []
  - id: disk-errors
    match: {message: {contains: "I/O"}, host: {startswith: db}}
    key: "{{ fields.dev }}"
    continue: true
    actions: []
  - id: disk-trouble
    group: {all_of: [disk-slow, disk-errors], within: 5m}
    actions:
      - incident: {title: "Disk trouble on {{ fields.dev }}"}
"""


def test_a_group_shows_its_members_and_acts_when_they_all_matched(tmp_path: Path) -> None:
    """Test a group of two rules that both match one event: the group lists them, says what
    it waits for, and opens its incident; its members say they count toward it."""
    (tmp_path / "group.yaml").write_text(GROUPED)
    ruleset = load_rules([tmp_path], kinds=ACTION_KINDS)
    assert not ruleset.errors, [str(e) for e in ruleset.errors]
    event = from_json('{"message": "slow I/O on sdb", "host": "db1"}', received=T)
    found = explain(event, setup_from(ruleset, [tmp_path], None))
    group = verdict(found, "disk-trouble")
    assert (group.status, group.members) == ("group", ("disk-slow", "disk-errors"))
    outcome = next(o for o in found.outcomes if o.rule.id == "disk-trouble")
    assert outcome.correlation == [
        "group: acts when 2 of its 2 member rules match for one key within 5m"
    ]
    assert [(o.op, o.key, o.title) for o in outcome.outputs] == [
        ("open", "sdb", "Disk trouble on sdb")
    ]
    slow = next(o for o in found.outcomes if o.rule.id == "disk-slow")
    assert slow.correlation == [
        "member of group 'disk-trouble': counts toward 2 of 2 rules within 5m for the key"
    ]
    assert found.disagreements == []
