"""Access policy: parsing with file:line errors, and every decision with its exact reason."""

from __future__ import annotations

from typing import Any

import pytest

from tocsin.records.access_policy import (
    AccessPolicy,
    AccessRequest,
    Approval,
    Principal,
    Verdict,
    parse_access,
)
from tocsin.tokens import Role
from tocsin.yamlsrc import Mark, SourceError, load_yaml, value_mark

NOW = 1_795_564_800.0  # 2026-11-25T00:00:00Z
USERS = ("alice", "bob", "carol", "dave")
RUNBOOKS = ("grant-db-admin", "revoke-db-admin", "grant-ssh", "revoke-ssh")

POLICY = """\
access:
  groups:
    dba: [alice, bob]
    oncall: [carol]
  roles:
    - name: db-admin
      rights: [postgres:superuser]
      holders: [group:dba, user:carol]
      requesters: [group:dba, group:oncall]
      approval: {by: [group:dba], role: operator}
      max_duration: 8h
      provision: {grant: grant-db-admin, revoke: revoke-db-admin}
    - name: ssh
      rights: [ssh:login, "sudo: none"]
      holders: [group:oncall, user:dave]
      requesters: [group:oncall, user:dave, rule:mqtt-access]
      max_duration: 1h
      provision: {grant: grant-ssh, revoke: revoke-ssh}
    - name: backup-writer
      rights: [s3:write]
      subjects: any
      requesters: [user:alice]
      approval: {by: [user:bob], role: admin, ttl: 10m}
      max_duration: 30m
      provision: {grant: grant-ssh, revoke: revoke-ssh}
"""


def parse(text: str) -> AccessPolicy:
    """Parse the `access:` section of a YAML text named access.yaml."""
    data = load_yaml(text, name="access.yaml")
    where = value_mark(data, "access", Mark("access.yaml", 1, 1))
    return parse_access(data.get("access"), where, runbooks=RUNBOOKS, users=USERS)


def ask(
    role: str, subject: str, by: str, duration: float | None = None, kind: Any = "grant"
) -> AccessRequest:
    """Build a request at NOW."""
    return AccessRequest(
        kind=kind, role=role, subject=subject, requested_by=by, duration=duration, time=NOW
    )


@pytest.fixture(scope="module")
def policy() -> AccessPolicy:
    """Return the example policy."""
    return parse(POLICY)


# ---------------------------------------------------------------------------------------------
# Parsing


def test_the_example_parses_into_roles_groups_and_defaults(policy: AccessPolicy) -> None:
    """Test groups, principals, approval defaults, requesters defaulting and runbooks."""
    assert policy.groups == {"dba": {"alice", "bob"}, "oncall": {"carol"}}
    db = policy.roles["db-admin"]
    assert db.rights == ("postgres:superuser",)
    assert db.holders == (Principal("group", "dba"), Principal("user", "carol"))
    assert db.approval == Approval(by=(Principal("group", "dba"),), role=Role.OPERATOR, ttl=3600)
    assert (db.max_duration, db.grant_runbook, db.revoke_runbook) == (
        8 * 3600,
        "grant-db-admin",
        "revoke-db-admin",
    )
    assert str(db.where) == "access.yaml:6:7"
    ssh = policy.roles["ssh"]
    assert ssh.rights == ("ssh:login", "sudo: none")
    assert ssh.requesters[-1] == Principal("rule", "mqtt-access")
    assert ssh.approval is None
    assert not ssh.any_subject
    backup = policy.roles["backup-writer"]
    assert backup.any_subject
    assert backup.holders == ()
    assert backup.approval == Approval(by=(Principal("user", "bob"),), role=Role.ADMIN, ttl=600)


def test_requesters_default_to_the_holders() -> None:
    """Test that a role without requesters lets its holders ask."""
    text = POLICY.replace("      requesters: [group:dba, group:oncall]\n", "")
    role = parse(text).roles["db-admin"]
    assert role.requesters == role.holders


def test_an_empty_section_is_a_policy_without_roles() -> None:
    """Test that no `access:` denies every grant, naming the unknown role."""
    policy = parse("access:\n")
    assert policy.roles == {}
    assert policy.groups == {}
    assert policy.decide(ask("ssh", "carol", "carol")).reason == "unknown role 'ssh'"


ROLE = """\
access:
  groups: {dba: [alice]}
  roles:
    - name: r
      rights: [x]
      holders: [group:dba]
      max_duration: 1h
      provision: {grant: grant-ssh, revoke: revoke-ssh}
"""


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        (
            "  roles:",
            "  role:",
            "access.yaml:3:3: unknown access option 'role' (did you mean 'roles'?)",
        ),
        (
            "[alice]",
            "[alice, alcie]",
            "access.yaml:2:25: group 'dba': unknown user 'alcie' (did you mean 'alice'?) "
            "(users are defined under 'users')",
        ),
        (
            "[alice]",
            "[alice, alice]",
            "access.yaml:2:25: group 'dba': user 'alice' is listed twice",
        ),
        (
            "[alice]",
            "[user:alice]",
            "access.yaml:2:18: group 'dba': list users by name only (groups do not nest), "
            "not user:alice",
        ),
        (
            "{dba: [alice]}",
            "{d b: [alice]}",
            "access.yaml:2:12: group name 'd b' must be 1 to 64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
        ),
        (
            "[group:dba]",
            "[group:dbb]",
            "access.yaml:6:17: role 'r': unknown group 'dbb' (did you mean 'dba'?) "
            "(groups are defined under 'access: groups')",
        ),
        (
            "[group:dba]",
            "[alice]",
            "access.yaml:6:17: role 'r': 'holders' lists 'alice'; write user:NAME or group:NAME "
            "(did you mean 'user:alice'?)",
        ),
        (
            "[group:dba]",
            "[rule:x]",
            "access.yaml:6:17: role 'r': 'holders' lists 'rule:x'; write user:NAME or group:NAME",
        ),
        (
            "[group:dba]",
            "[user:bobby]",
            "access.yaml:6:17: role 'r': unknown user 'bobby' (did you mean 'bob'?) "
            "(users are defined under 'users')",
        ),
        (
            "[group:dba]",
            "[group:dba, group:dba]",
            "access.yaml:6:28: role 'r': 'holders' lists group:dba twice",
        ),
        (
            "[group:dba]",
            "[]",
            "access.yaml:6:16: role 'r': 'holders' needs at least one of user:NAME, group:NAME",
        ),
        (
            "      holders: [group:dba]\n",
            "",
            "access.yaml:4:7: role 'r': missing required key 'holders' (or 'subjects: any' for "
            "any subject)",
        ),
        (
            "      holders: [group:dba]\n",
            "      subjects: any\n",
            "access.yaml:4:7: role 'r': a role with 'subjects: any' needs 'requesters'",
        ),
        (
            "      holders: [group:dba]\n",
            "      subjects: any\n      holders: [group:dba]\n      requesters: [user:alice]\n",
            "access.yaml:7:16: role 'r': 'holders' and 'subjects: any' exclude each other "
            "(any subject may hold it)",
        ),
        (
            "      holders: [group:dba]\n",
            "      holders: [group:dba]\n      subjects: some\n",
            "access.yaml:7:17: role 'r': 'subjects' must be users or any, not 'some'",
        ),
        (
            "      holders: [group:dba]\n",
            "      holders: [group:dba]\n      requesters: [rule:a b]\n",
            "access.yaml:7:20: role 'r': rule name 'a b' must be 1 to 64 letters, digits, '_', "
            "'.' or '-', starting with a letter or digit",
        ),
        (
            "name: r",
            "name: r/x",
            "access.yaml:4:13: role 'r/x': 'name' must be 1 to 64 letters, digits, '_', '.' or "
            "'-', starting with a letter or digit, not 'r/x'",
        ),
        (
            "rights: [x]",
            "rights: []",
            "access.yaml:5:15: role 'r': 'rights' needs at least one right, like "
            "postgres:superuser",
        ),
        (
            "rights: [x]",
            "rights: ['  ']",
            "access.yaml:5:16: role 'r': 'rights' must not hold empty text",
        ),
        (
            "      rights: [x]\n",
            "",
            "access.yaml:4:7: role 'r': missing required key 'rights'",
        ),
        (
            "max_duration: 1h",
            "max_duration: 0s",
            "access.yaml:7:21: role 'r': 'max_duration' must be more than 0s and at most 366d",
        ),
        (
            "max_duration: 1h",
            "max_duration: soon",
            "access.yaml:7:21: role 'r': 'max_duration' must be a duration like 250ms, 10s, 5m, "
            "1h or 2d, not 'soon'",
        ),
        (
            "grant: grant-ssh",
            "grant: grant-shh",
            "access.yaml:8:26: role 'r': unknown runbook 'grant-shh' (did you mean 'grant-ssh'?) "
            "(runbooks are defined under 'runbooks')",
        ),
        (
            ", revoke: revoke-ssh}",
            "}",
            "access.yaml:8:18: role 'r': missing required key 'revoke'",
        ),
        (
            "max_duration: 1h",
            "max_duration: 1h\n      aproval: {by: [group:dba]}",
            "access.yaml:8:7: role 'r': unknown option 'aproval' (did you mean 'approval'?)",
        ),
        (
            "max_duration: 1h",
            "max_duration: 1h\n      approval: {by: [group:dba], role: boss}",
            "access.yaml:8:41: role 'r': 'approval: role' must be viewer, operator or admin, "
            "not 'boss'",
        ),
        (
            "max_duration: 1h",
            "max_duration: 1h\n      approval: {by: [group:dba], ttl: 0}",
            "access.yaml:8:40: role 'r': 'approval: ttl' must be more than 0s and at most 366d",
        ),
        (
            "max_duration: 1h",
            "max_duration: 1h\n      approval: {by: [rule:x]}",
            "access.yaml:8:23: role 'r': 'approval: by' lists 'rule:x'; write user:NAME or "
            "group:NAME",
        ),
        (
            "max_duration: 1h",
            "max_duration: 1h\n      approval: {role: admin}",
            "access.yaml:8:17: role 'r': missing required key 'by'",
        ),
        (
            "provision: {grant: grant-ssh, revoke: revoke-ssh}\n",
            "provision: {grant: grant-ssh, revoke: revoke-ssh}\n"
            "    - name: r\n      rights: [y]\n      holders: [group:dba]\n      max_duration: 1h\n"
            "      provision: {grant: grant-ssh, revoke: revoke-ssh}\n",
            "access.yaml:9:13: duplicate role name 'r' (first defined at access.yaml:4:13)",
        ),
    ],
)
def test_config_errors_name_the_place_and_the_fix(old: str, new: str, error: str) -> None:
    """Test each broken policy against its exact message at file:line:col."""
    assert old in ROLE
    with pytest.raises(SourceError) as caught:
        parse(ROLE.replace(old, new, 1))
    assert str(caught.value) == error


def test_the_base_of_the_error_cases_is_valid() -> None:
    """Test that the error cases break a policy that parses, so each error is the edit's."""
    assert list(parse(ROLE).roles) == ["r"]


# ---------------------------------------------------------------------------------------------
# Decisions


@pytest.mark.parametrize(
    ("request_", "verdict", "reason", "duration"),
    [
        (
            ask("ssh", "carol", "carol"),
            Verdict.ALLOWED,
            "carol may request ssh for carol for 1h; no approval needed",
            3600.0,
        ),
        (
            ask("ssh", "dave", "rule:mqtt-access", 900),
            Verdict.ALLOWED,
            "rule:mqtt-access may request ssh for dave for 15m; no approval needed",
            900.0,
        ),
        (
            ask("db-admin", "carol", "alice", 4 * 3600),
            Verdict.NEEDS_APPROVAL,
            "db-admin needs approval by group dba (API role operator or above) within 1h",
            4 * 3600.0,
        ),
        (
            ask("db-admin", "carol", "dave"),
            Verdict.DENIED,
            "dave may not request db-admin (requesters: group dba, group oncall)",
            None,
        ),
        (
            ask("db-admin", "dave", "alice"),
            Verdict.DENIED,
            "dave may not hold db-admin (holders: group dba, user carol)",
            None,
        ),
        (
            ask("ssh", "carol", "rule:other"),
            Verdict.DENIED,
            "rule:other may not request ssh (requesters: group oncall, user dave, "
            "rule mqtt-access)",
            None,
        ),
        (
            ask("db-admin", "carol", "alice", 12 * 3600),
            Verdict.DENIED,
            "duration 12h is over db-admin's max_duration 8h",
            None,
        ),
        (
            ask("ssh", "carol", "carol", 0),
            Verdict.DENIED,
            "duration 0s must be more than 0s",
            None,
        ),
        (
            ask("ssh", "carol", "carol", float("inf")),
            Verdict.DENIED,
            "duration infs must be more than 0s",
            None,
        ),
        (
            ask("db-admn", "carol", "alice"),
            Verdict.DENIED,
            "unknown role 'db-admn' (did you mean 'db-admin'?)",
            None,
        ),
        (
            ask("ssh", "-rf", "carol"),
            Verdict.DENIED,
            "subject '-rf' is not a valid name (up to 128 letters, digits and _.@-, starting "
            "with a letter or digit)",
            None,
        ),
        (
            ask("backup-writer", "svc-backup", "alice"),
            Verdict.NEEDS_APPROVAL,
            "backup-writer needs approval by user bob (API role admin or above) within 10m",
            1800.0,
        ),
        (
            ask("backup-writer", "svc-backup", "bob"),
            Verdict.DENIED,
            "bob may not request backup-writer (requesters: user alice)",
            None,
        ),
        (
            ask("db-admin", "carol", "eve", kind="revoke"),
            Verdict.ALLOWED,
            "revokes are always allowed",
            None,
        ),
        (
            ask("*", "carol", "rule:brute-force", kind="revoke"),
            Verdict.ALLOWED,
            "revoking every grant of carol: always allowed",
            None,
        ),
        (
            ask("nope", "carol", "alice", kind="revoke"),
            Verdict.DENIED,
            "unknown role 'nope'",
            None,
        ),
        (
            ask("*", "carol; rm", "alice", kind="revoke"),
            Verdict.DENIED,
            "subject 'carol; rm' is not a valid name (up to 128 letters, digits and _.@-, "
            "starting with a letter or digit)",
            None,
        ),
    ],
)
def test_every_decision_path_gives_its_exact_reason(
    policy: AccessPolicy,
    request_: AccessRequest,
    verdict: Verdict,
    reason: str,
    duration: float | None,
) -> None:
    """Test the verdict, reason and granted duration of each kind of request."""
    decision = policy.decide(request_)
    assert (decision.verdict, decision.reason, decision.duration) == (verdict, reason, duration)
    assert decision.allowed is (verdict is Verdict.ALLOWED)
    assert (decision.approval is not None) is (verdict is Verdict.NEEDS_APPROVAL)


@pytest.mark.parametrize(
    ("approver", "api_role", "requested_by", "subject", "problem"),
    [
        ("bob", Role.OPERATOR, "alice", "carol", None),
        ("bob", Role.ADMIN, "alice", "carol", None),
        (
            "bob",
            Role.VIEWER,
            "alice",
            "carol",
            "bob may not approve db-admin: it needs API role operator or above, not viewer",
        ),
        (
            "carol",
            Role.ADMIN,
            "alice",
            "bob",
            "carol may not approve db-admin (approvers: group dba)",
        ),
        ("alice", Role.ADMIN, "alice", "carol", "alice may not approve their own request"),
        ("bob", Role.ADMIN, "alice", "bob", "bob may not approve a grant for themselves"),
        (
            "rule:mqtt-access",
            Role.ADMIN,
            "alice",
            "carol",
            "rule:mqtt-access may not approve db-admin (approvers: group dba)",
        ),
    ],
)
def test_approvers_are_listed_people_with_the_api_role_and_not_the_asker(  # noqa: PLR0917 - parametrized
    policy: AccessPolicy,
    approver: str,
    api_role: Role,
    requested_by: str,
    subject: str,
    problem: str | None,
) -> None:
    """Test who may approve a db-admin grant, with the reason for each refusal."""
    role = policy.roles["db-admin"]
    found = policy.approval_problem(
        role, approver, api_role, requested_by=requested_by, subject=subject
    )
    assert found == problem


def test_a_role_without_approval_has_nothing_to_approve(policy: AccessPolicy) -> None:
    """Test that approving a grant of a role that needs none is refused with the reason."""
    found = policy.approval_problem(
        policy.roles["ssh"], "alice", Role.ADMIN, requested_by="carol", subject="carol"
    )
    assert found == "ssh needs no approval"


def test_any_subject_roles_take_system_accounts_but_users_roles_do_not(
    policy: AccessPolicy,
) -> None:
    """Test may_hold for a users role and a `subjects: any` role."""
    assert policy.may_hold(policy.roles["backup-writer"], "svc-backup")
    assert not policy.may_hold(policy.roles["db-admin"], "svc-backup")
    assert policy.may_hold(policy.roles["db-admin"], "bob")  # via group dba


def test_revoke_retry_defaults_and_settings() -> None:
    """Test the revoke retry schedule: 8 attempts, 1m doubling to at most 15m by default;
    the section's own values otherwise."""
    default = parse(ROLE).retry
    assert (default.attempts, [default.delay(n) for n in range(1, 8)]) == (
        8,
        [60, 120, 240, 480, 900, 900, 900],
    )
    own = parse(ROLE + "  revoke_retry: {attempts: 3, first: 10s, most: 15s}\n").retry
    assert (own.attempts, own.delay(1), own.delay(2), own.delay(5)) == (3, 10, 15, 15)


@pytest.mark.parametrize(
    ("retry", "error"),
    [
        ("{attempts: 0}", "access.yaml:9:28: 'revoke_retry: attempts' must be a whole number >= 1"),
        ("{attempts: 101}", "access.yaml:9:28: 'revoke_retry: attempts' must be at most 100"),
        (
            "{first: 0s}",
            "access.yaml:9:25: 'revoke_retry: first' must be more than 0s and at most 1d",
        ),
        (
            "{first: 5m, most: 1m}",
            "access.yaml:9:17: 'revoke_retry: most' must be at least 'first'",
        ),
        ("{tries: 3}", "access.yaml:9:18: unknown revoke_retry option 'tries'"),
    ],
)
def test_a_bad_revoke_retry_names_file_and_line(retry: str, error: str) -> None:
    """Test that a revoke_retry mistake is refused with file:line:column and what is wrong."""
    with pytest.raises(SourceError) as caught:
        parse(ROLE + f"  revoke_retry: {retry}\n")
    assert str(caught.value).startswith(error)
