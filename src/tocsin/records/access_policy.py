"""Access policy: which roles exist, who may hold and request them, who approves, for how long.
Pure; a request carries its own time, and the policy only says yes, no or "ask X first".

Principals are written `user:NAME` (a user from `users:`), `group:NAME` (a group of those
users) or, among requesters only, `rule:NAME` (a rule asking, e.g. for a request that came in
over MQTT; rule names are not checked here, the rules load later). User names cannot hold a
':', so a requester is a rule exactly when its name starts with `rule:`.

A role's subjects are users from `users:` unless it says `subjects: any` (system accounts,
service users): then any well-formed subject may hold it, `holders` must be left out and
`requesters` are required. Subject names are letters, digits and `_.@-`, starting with a
letter or digit, as user names are, because a provisioner gets them as one argv element each.

Approval (`approval: {by: [...], role: operator, ttl: 1h}`) is given by a person listed in
`by` whose API token has at least `role`; nobody approves a request they made or a grant for
themselves. A request waits `ttl` (default 1h) for it. A grant lasts the requested duration,
or `max_duration` when none is asked for; asking for more is denied. Revokes are always
allowed for a role in the policy, and `*` revokes every grant of a subject.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tocsin.rules.schema import (
    Errors,
    check_keys,
    expect_int,
    expect_list,
    expect_map,
    expect_str,
    format_duration,
    parse_duration,
    parse_named,
)
from tocsin.tokens import Role
from tocsin.yamlsrc import Mark, SourceError, did_you_mean, value_mark

__all__ = [
    "ALL_ROLES",
    "AccessPolicy",
    "AccessRequest",
    "AccessRole",
    "Approval",
    "Decision",
    "Principal",
    "Verdict",
    "parse_access",
    "subject_problem",
]

ALL_ROLES = "*"  # `revoke: "*"`: every grant of the subject

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # role and group names go into URLs
_NAME_RULE = "1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
_SUBJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")
_LONGEST = 366 * 86400.0
_DEFAULT_APPROVAL_TTL = 3600.0

PrincipalKind = Literal["user", "group", "rule"]
_KINDS: dict[str, PrincipalKind] = {"user": "user", "group": "group", "rule": "rule"}


def subject_problem(subject: str) -> str | None:
    """Say what is wrong with a subject name (it reaches provisioners' argv), or None."""
    if _SUBJECT.fullmatch(subject):
        return None
    return (
        f"subject {subject!r} is not a valid name (up to 128 letters, digits and _.@-, "
        "starting with a letter or digit)"
    )


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a policy names: a user, a group of users, or a rule (requesters only)."""

    kind: PrincipalKind
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def shown(self) -> str:
        """Say it in a sentence: "group dba"."""
        return f"{self.kind} {self.name}"


@dataclass(frozen=True, slots=True)
class Approval:
    """Who approves a role's grants, the API role they need, and how long a request waits."""

    by: tuple[Principal, ...]
    role: Role = Role.OPERATOR
    ttl: float = _DEFAULT_APPROVAL_TTL


@dataclass(frozen=True, slots=True)
class AccessRole:
    """One role: the rights it carries, who may hold and request it, and how it is applied."""

    name: str
    rights: tuple[str, ...]
    holders: tuple[Principal, ...]  # empty when any_subject
    requesters: tuple[Principal, ...]
    max_duration: float
    grant_runbook: str
    revoke_runbook: str
    approval: Approval | None = None
    any_subject: bool = False
    where: Mark | None = field(default=None, compare=False)


class Verdict(enum.StrEnum):
    """What the policy says of a request."""

    ALLOWED = "allowed"
    DENIED = "denied"
    NEEDS_APPROVAL = "needs_approval"


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's word on one request, with the reason an operator reads in the audit log."""

    verdict: Verdict
    reason: str
    duration: float | None = None  # a grant's length: the one asked for, or max_duration
    approval: Approval | None = None  # set when the verdict is needs_approval

    @property
    def allowed(self) -> bool:
        """Tell whether it may go ahead at once."""
        return self.verdict is Verdict.ALLOWED


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessRequest:
    """Grant `role` to `subject` (or revoke it; role "*" revokes all), asked by `requested_by`."""

    kind: Literal["grant", "revoke"]
    role: str
    subject: str
    requested_by: str  # a user name, or "rule:NAME"
    duration: float | None = None  # seconds; None: the role's max_duration
    source: str = ""  # where it came from, for the audit log: "api", "rule:x event 12"
    time: float


def _listed(principals: tuple[Principal, ...]) -> str:
    return ", ".join(p.shown for p in principals)


@dataclass(frozen=True, slots=True)
class RevokeRetry:
    """How a failed revoke is tried again: `attempts` in all, waiting `first`, doubling, at
    most `most` between them (defaults: 8 attempts over about 1h15m)."""

    attempts: int = 8
    first: float = 60.0
    most: float = 900.0

    def delay(self, failures: int) -> float:
        """Return the wait after the `failures`-th failure."""
        return min(self.first * 2.0 ** (failures - 1), self.most)


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """Groups and roles from the `access:` section; decides requests and approvals."""

    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    roles: Mapping[str, AccessRole] = field(default_factory=dict)
    retry: RevokeRetry = field(default_factory=RevokeRetry)

    def _is(self, name: str, principals: tuple[Principal, ...]) -> bool:
        """Tell whether `name` (a user, or "rule:X") is one of `principals`."""
        for p in principals:
            if p.kind == "group" and name in self.groups.get(p.name, ()):
                return True
            if (p.kind == "user" and p.name == name) or (p.kind == "rule" and str(p) == name):
                return True
        return False

    def may_hold(self, role: AccessRole, subject: str) -> bool:
        """Tell whether `subject` may hold `role` under this policy."""
        return role.any_subject or self._is(subject, role.holders)

    def unknown_role(self, name: str) -> str:
        """Word the reason for a role not in the policy."""
        return f"unknown role {name!r}{did_you_mean(name, self.roles)}"

    def decide(self, request: AccessRequest) -> Decision:
        """Check a request against the policy; nothing is recorded or run here."""
        problem = subject_problem(request.subject)
        if problem is not None:
            return Decision(Verdict.DENIED, problem)
        if request.kind == "revoke":
            if request.role == ALL_ROLES:
                return Decision(
                    Verdict.ALLOWED, f"revoking every grant of {request.subject}: always allowed"
                )
            if request.role not in self.roles:
                return Decision(Verdict.DENIED, self.unknown_role(request.role))
            return Decision(Verdict.ALLOWED, "revokes are always allowed")
        role = self.roles.get(request.role)
        if role is None:
            return Decision(Verdict.DENIED, self.unknown_role(request.role))
        who, subject = request.requested_by, request.subject
        if not self._is(who, role.requesters):
            return Decision(
                Verdict.DENIED,
                f"{who} may not request {role.name} (requesters: {_listed(role.requesters)})",
            )
        if not self.may_hold(role, subject):
            return Decision(
                Verdict.DENIED,
                f"{subject} may not hold {role.name} (holders: {_listed(role.holders)})",
            )
        duration = role.max_duration if request.duration is None else request.duration
        if not (math.isfinite(duration) and duration > 0):
            return Decision(Verdict.DENIED, f"duration {duration:g}s must be more than 0s")
        if duration > role.max_duration:
            return Decision(
                Verdict.DENIED,
                f"duration {format_duration(duration)} is over {role.name}'s max_duration "
                f"{format_duration(role.max_duration)}",
            )
        if role.approval is not None:
            return Decision(
                Verdict.NEEDS_APPROVAL,
                f"{role.name} needs approval by {_listed(role.approval.by)} "
                f"(API role {role.approval.role} or above) "
                f"within {format_duration(role.approval.ttl)}",
                duration,
                role.approval,
            )
        return Decision(
            Verdict.ALLOWED,
            f"{who} may request {role.name} for {subject} for {format_duration(duration)}; "
            "no approval needed",
            duration,
        )

    def approval_problem(
        self, role: AccessRole, approver: str, api_role: Role, *, requested_by: str, subject: str
    ) -> str | None:
        """Say why `approver` (holding API role `api_role`) may not approve a grant of `role`
        asked by `requested_by` for `subject`; None when they may.
        """
        approval = role.approval
        if approval is None:
            return f"{role.name} needs no approval"
        if approver in (requested_by, subject):
            whose = "their own request" if approver == requested_by else "a grant for themselves"
            return f"{approver} may not approve {whose}"
        if not self._is(approver, approval.by):
            return f"{approver} may not approve {role.name} (approvers: {_listed(approval.by)})"
        if api_role < approval.role:
            return (
                f"{approver} may not approve {role.name}: it needs API role {approval.role} "
                f"or above, not {api_role}"
            )
        return None


# ---------------------------------------------------------------------------------------------
# Parsing from YAML

_ACCESS_KEYS = ("groups", "roles", "revoke_retry")
_RETRY_KEYS = ("attempts", "first", "most")
_ROLE_KEYS = (
    "name",
    "rights",
    "holders",
    "subjects",
    "requesters",
    "approval",
    "max_duration",
    "provision",
)
_APPROVAL_KEYS = ("by", "role", "ttl")
_PROVISION_KEYS = ("grant", "revoke")


def parse_access(
    spec: Any, where: Mark, *, runbooks: Collection[str], users: Collection[str]
) -> AccessPolicy:
    """Parse the `access:` section; empty: no roles, so every grant is denied."""
    if spec is None:
        return AccessPolicy()
    data = expect_map(spec, where, "'access'")
    check_keys(data, _ACCESS_KEYS, "access option")
    groups = _groups(data.get("groups"), value_mark(data, "groups", where), users)
    roles: dict[str, AccessRole] = {}
    if data.get("roles") is not None:

        def one(item: Any, at: Mark, number: int) -> AccessRole:
            return _role(item, at, number, groups=groups, runbooks=runbooks, users=users)

        found = parse_named(data["roles"], value_mark(data, "roles", where), "'roles'", "role", one)
        roles = {r.name: r for r in found}
    retry = RevokeRetry()
    if data.get("revoke_retry") is not None:
        retry = _retry(data["revoke_retry"], value_mark(data, "revoke_retry", where))
    return AccessPolicy(groups=groups, roles=roles, retry=retry)


def _retry(spec: Any, where: Mark) -> RevokeRetry:
    data = expect_map(spec, where, "'revoke_retry'")
    check_keys(data, _RETRY_KEYS, "revoke_retry option")
    default = RevokeRetry()
    attempts = default.attempts
    if "attempts" in data:
        at = value_mark(data, "attempts", where)
        attempts = expect_int(data["attempts"], at, "'revoke_retry: attempts'", minimum=1)
        if attempts > 100:
            raise SourceError(at, "'revoke_retry: attempts' must be at most 100")
    times: dict[str, float] = {}
    for key in ("first", "most"):
        times[key] = getattr(default, key)
        if key in data:
            at = value_mark(data, key, where)
            times[key] = parse_duration(data[key], at, f"'revoke_retry: {key}'")
            if not 0 < times[key] <= 86400:
                raise SourceError(at, f"'revoke_retry: {key}' must be more than 0s and at most 1d")
    if times["most"] < times["first"]:
        raise SourceError(where, "'revoke_retry: most' must be at least 'first'")
    return RevokeRetry(attempts=attempts, first=times["first"], most=times["most"])


def _groups(spec: Any, where: Mark, users: Collection[str]) -> dict[str, frozenset[str]]:
    if spec is None:
        return {}
    data = expect_map(spec, where, "'groups'")
    groups: dict[str, frozenset[str]] = {}
    for name, members in data.items():
        at = value_mark(data, name, where)

        def errors(mark: Mark, message: str, name: Any = name) -> SourceError:
            return SourceError(mark, f"group '{name}': {message}")

        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise SourceError(
                data.key_marks.get(name, where), f"group name {name!r} must be {_NAME_RULE}"
            )
        items = expect_list(members, at, "its members", errors)
        found: list[str] = []
        for index, item in enumerate(items):
            item_at = value_mark(items, index, at)
            member = expect_str(item, item_at, "a member", errors).strip()
            if member.startswith(("user:", "group:")):
                raise errors(item_at, f"list users by name only (groups do not nest), not {member}")
            if member not in users:
                raise errors(
                    item_at,
                    f"unknown user '{member}'{did_you_mean(member, users)} "
                    "(users are defined under 'users')",
                )
            if member in found:
                raise errors(item_at, f"user '{member}' is listed twice")
            found.append(member)
        groups[name] = frozenset(found)
    return groups


def _role(
    spec: Any,
    where: Mark,
    number: int,
    *,
    groups: Mapping[str, frozenset[str]],
    runbooks: Collection[str],
    users: Collection[str],
) -> AccessRole:
    data = expect_map(spec, where, "a role")
    raw = data.get("name")
    label = f"role '{raw.strip()}'" if isinstance(raw, str) and raw.strip() else f"role {number}"

    def errors(at: Mark, message: str) -> SourceError:
        return SourceError(at, f"{label}: {message}")

    check_keys(
        data, _ROLE_KEYS, "option", errors, required=("name", "rights", "max_duration", "provision")
    )

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    name = expect_str(data["name"], at("name"), "'name'", errors).strip()
    if not _NAME.fullmatch(name):
        raise errors(at("name"), f"'name' must be {_NAME_RULE}, not {name!r}")
    rights = _texts(data["rights"], at("rights"), "'rights'", errors)
    if not rights:
        raise errors(at("rights"), "'rights' needs at least one right, like postgres:superuser")

    def principals(key: str, kinds: tuple[PrincipalKind, ...]) -> tuple[Principal, ...]:
        return _principals(
            data[key], at(key), f"'{key}'", kinds=kinds, groups=groups, users=users, errors=errors
        )

    subjects = "users"
    if "subjects" in data:
        subjects = expect_str(data["subjects"], at("subjects"), "'subjects'", errors).strip()
        if subjects not in ("users", "any"):
            raise errors(at("subjects"), f"'subjects' must be users or any, not {subjects!r}")
    any_subject = subjects == "any"
    holders: tuple[Principal, ...] = ()
    if any_subject:
        if "holders" in data:
            raise errors(
                at("holders"),
                "'holders' and 'subjects: any' exclude each other (any subject may hold it)",
            )
        if data.get("requesters") is None:
            raise errors(data.mark, "a role with 'subjects: any' needs 'requesters'")
    else:
        if data.get("holders") is None:
            raise errors(
                data.mark, "missing required key 'holders' (or 'subjects: any' for any subject)"
            )
        holders = principals("holders", ("user", "group"))
    requesters = holders
    if data.get("requesters") is not None:
        requesters = principals("requesters", ("user", "group", "rule"))
    max_duration = parse_duration(
        data["max_duration"], at("max_duration"), "'max_duration'", errors
    )
    if not 0 < max_duration <= _LONGEST:
        raise errors(at("max_duration"), "'max_duration' must be more than 0s and at most 366d")
    approval = None
    if data.get("approval") is not None:
        approval = _approval(data["approval"], at("approval"), groups, users, errors)
    grant, revoke = _provision(data["provision"], at("provision"), runbooks, errors)
    return AccessRole(
        name=name,
        rights=rights,
        holders=holders,
        requesters=requesters,
        max_duration=max_duration,
        grant_runbook=grant,
        revoke_runbook=revoke,
        approval=approval,
        any_subject=any_subject,
        where=where,
    )


def _texts(spec: Any, where: Mark, what: str, errors: Errors) -> tuple[str, ...]:
    items = expect_list(spec, where, what, errors)
    found: list[str] = []
    for index, item in enumerate(items):
        text = expect_str(item, value_mark(items, index, where), f"an item of {what}", errors)
        if not text.strip():
            raise errors(value_mark(items, index, where), f"{what} must not hold empty text")
        found.append(text.strip())
    return tuple(found)


def _principals(
    spec: Any,
    where: Mark,
    what: str,
    *,
    kinds: tuple[PrincipalKind, ...],
    groups: Mapping[str, frozenset[str]],
    users: Collection[str],
    errors: Errors,
) -> tuple[Principal, ...]:
    items = expect_list(spec, where, what, errors)
    if not items:
        raise errors(where, f"{what} needs at least one of {', '.join(k + ':NAME' for k in kinds)}")
    found: list[Principal] = []
    shapes = " or ".join(f"{k}:NAME" for k in kinds)
    for index, item in enumerate(items):
        at = value_mark(items, index, where)
        text = expect_str(item, at, f"an item of {what}", errors).strip()
        kind, colon, name = text.partition(":")
        if not colon or kind not in kinds:
            hint = f" (did you mean 'user:{text}'?)" if text in users else ""
            raise errors(at, f"{what} lists {text!r}; write {shapes}{hint}")
        if kind == "user" and name not in users:
            raise errors(
                at,
                f"unknown user '{name}'{did_you_mean(name, users)} "
                "(users are defined under 'users')",
            )
        if kind == "group" and name not in groups:
            raise errors(
                at,
                f"unknown group '{name}'{did_you_mean(name, groups)} "
                "(groups are defined under 'access: groups')",
            )
        if kind == "rule" and not _NAME.fullmatch(name):
            raise errors(at, f"rule name {name!r} must be {_NAME_RULE}")
        principal = Principal(_KINDS[kind], name)
        if principal in found:
            raise errors(at, f"{what} lists {text} twice")
        found.append(principal)
    return tuple(found)


def _approval(
    spec: Any,
    where: Mark,
    groups: Mapping[str, frozenset[str]],
    users: Collection[str],
    errors: Errors,
) -> Approval:
    data = expect_map(spec, where, "'approval'", errors)
    check_keys(data, _APPROVAL_KEYS, "approval option", errors, required=("by",))

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    by = _principals(
        data["by"],
        at("by"),
        "'approval: by'",
        kinds=("user", "group"),
        groups=groups,
        users=users,
        errors=errors,
    )
    role = Role.OPERATOR
    if "role" in data:
        text = expect_str(data["role"], at("role"), "'approval: role'", errors).strip()
        try:
            role = Role.named(text)
        except ValueError:
            raise errors(
                at("role"), f"'approval: role' must be viewer, operator or admin, not {text!r}"
            ) from None
    ttl = _DEFAULT_APPROVAL_TTL
    if "ttl" in data:
        ttl = parse_duration(data["ttl"], at("ttl"), "'approval: ttl'", errors)
        if not 0 < ttl <= _LONGEST:
            raise errors(at("ttl"), "'approval: ttl' must be more than 0s and at most 366d")
    return Approval(by=by, role=role, ttl=ttl)


def _provision(
    spec: Any, where: Mark, runbooks: Collection[str], errors: Errors
) -> tuple[str, str]:
    data = expect_map(spec, where, "'provision'", errors)
    check_keys(data, _PROVISION_KEYS, "provision option", errors, required=_PROVISION_KEYS)
    names: list[str] = []
    for key in _PROVISION_KEYS:
        at = value_mark(data, key, where)
        name = expect_str(data[key], at, f"'provision: {key}'", errors).strip()
        if name not in runbooks:
            raise errors(
                at,
                f"unknown runbook '{name}'{did_you_mean(name, runbooks)} "
                "(runbooks are defined under 'runbooks')",
            )
        names.append(name)
    return names[0], names[1]
