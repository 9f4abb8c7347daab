"""The `request`, `access` and `problem` actions: a rule raises a service request from the
catalog, asks for (or revokes) an access grant under the policy, or opens (or adds to) a
problem for its incident.

Both go through the outbox (channel `servicedesk`), committed with the batch that made them,
so a log line or MQTT message that asked is never lost; the service desk then handles them
like an API call, with the rule as the one asking (`rule:ID`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tocsin.model import Outgoing
from tocsin.records.access_policy import ALL_ROLES, AccessPolicy
from tocsin.records.catalog import CatalogItem
from tocsin.records.incidents import fingerprint
from tocsin.rules.schema import check_keys, expect_map, expect_str, parse_duration
from tocsin.rules.templates import Template
from tocsin.rules.types import ActionEnv, ActionOutput, CompileContext, Hit
from tocsin.yamlsrc import Mark, did_you_mean, value_mark

__all__ = [
    "SERVICE_CHANNEL",
    "AccessAction",
    "AccessKind",
    "ProblemAction",
    "ProblemKind",
    "RequestAction",
    "RequestKind",
]

SERVICE_CHANNEL = "servicedesk"  # the outbox channel the service desk reads


@dataclass(frozen=True, slots=True)
class RequestAction:
    """Raise a request for a catalog item, its input rendered from the hit (as text)."""

    rule: str
    item: str
    input: tuple[tuple[str, Template], ...]
    kind: str = "request"
    notifies: bool = False

    def run(self, hit: Hit, env: ActionEnv) -> None:
        """Queue the request; the desk validates the input as it does for the API."""
        variables = hit.variables
        data = {name: template.render(variables) for name, template in self.input}
        body = {"kind": "request", "item": self.item, "input": data, "key": hit.key}
        env.outbox.append(Outgoing(SERVICE_CHANNEL, self.rule, body))
        if env.outputs is not None:
            env.outputs.append(
                ActionOutput(hit.time, self.rule, "request", "submit", hit.key, "", self.item, 0)
            )

    def referenced_rules(self) -> tuple[str, ...]:
        """Refer to no other rule."""
        return ()


@dataclass(frozen=True, slots=True)
class AccessAction:
    """Ask for a grant of a role to a subject, or revoke one (`*`: every role of it)."""

    rule: str
    verb: str  # grant | revoke
    role: str
    subject: Template
    duration: float | None
    kind: str = "access"
    notifies: bool = False  # a revoke after an attack must not wait for a maintenance window

    def run(self, hit: Hit, env: ActionEnv) -> None:
        """Queue the ask; the desk checks it against the policy first."""
        body = {
            "kind": "access",
            "verb": self.verb,
            "role": self.role,
            "subject": self.subject.render(hit.variables).strip(),
            "duration": self.duration,
            "key": hit.key,
        }
        env.outbox.append(Outgoing(SERVICE_CHANNEL, self.rule, body))
        if env.outputs is not None:
            env.outputs.append(
                ActionOutput(hit.time, self.rule, "access", self.verb, hit.key, "",
                             f"{self.verb} {self.role} {body['subject']}", 0)
            )  # fmt: skip

    def referenced_rules(self) -> tuple[str, ...]:
        """Refer to no other rule."""
        return ()


class RequestKind:
    """Compiles `request: {item, input}` against the catalog."""

    name = "request"

    def __init__(self, catalog: Mapping[str, CatalogItem] | None = None) -> None:
        self._catalog = catalog or {}

    def compile(self, spec: Any, mark: Mark, ctx: CompileContext) -> RequestAction:
        """The item must exist and the input name only its fields."""
        data = expect_map(spec, mark, "'request'", ctx.error)
        check_keys(data, ("item", "input"), "request option", ctx.error, required=("item",))
        at = value_mark(data, "item", mark)
        name = expect_str(data["item"], at, "'item'", ctx.error)
        item = self._catalog.get(name)
        if item is None:
            known = ", ".join(sorted(self._catalog)) or "none (add a catalog to the runbooks file)"
            raise ctx.error(
                at, f"unknown catalog item '{name}'{did_you_mean(name, self._catalog)}; "
                f"items: {known}"
            )  # fmt: skip
        given = expect_map(data.get("input"), value_mark(data, "input", mark), "input", ctx.error)
        fields = {f.name for f in item.fields}
        check_keys(given, sorted(fields), f"field of {name}", ctx.error)
        return RequestAction(
            rule=ctx.rule_id,
            item=name,
            input=tuple(
                (
                    str(field_name),
                    ctx.template(
                        str(value) if not isinstance(value, str) else value,
                        value_mark(given, field_name, mark),
                        f"input '{field_name}'",
                    ),
                )
                for field_name, value in given.items()
            ),
        )


class AccessKind:
    """Compiles `access: {grant|revoke: ROLE, subject, duration}` against the policy."""

    name = "access"

    def __init__(self, policy: AccessPolicy | None = None) -> None:
        self._policy = policy or AccessPolicy()

    def compile(self, spec: Any, mark: Mark, ctx: CompileContext) -> AccessAction:
        """Exactly one of grant and revoke; a known role; a subject template."""
        data = expect_map(spec, mark, "'access'", ctx.error)
        check_keys(
            data, ("grant", "revoke", "subject", "duration"), "access option", ctx.error,
            required=("subject",),
        )  # fmt: skip
        verbs = [v for v in ("grant", "revoke") if v in data]
        if len(verbs) != 1:
            raise ctx.error(mark, "'access' needs exactly one of grant: ROLE and revoke: ROLE")
        verb = verbs[0]
        at = value_mark(data, verb, mark)
        role = expect_str(data[verb], at, f"'{verb}'", ctx.error)
        if not (verb == "revoke" and role == ALL_ROLES) and role not in self._policy.roles:
            raise ctx.error(at, self._policy.unknown_role(role))
        duration = None
        if "duration" in data:
            if verb != "grant":
                raise ctx.error(value_mark(data, "duration", mark), "only a grant has a duration")
            duration = parse_duration(
                data["duration"], value_mark(data, "duration", mark), "'duration'", ctx.error
            )
        return AccessAction(
            rule=ctx.rule_id,
            verb=verb,
            role=role,
            subject=ctx.template(data["subject"], value_mark(data, "subject", mark), "'subject'"),
            duration=duration,
        )


@dataclass(frozen=True, slots=True)
class ProblemAction:
    """Open the problem of a key (or reopen it), linking the rule's incident for the hit."""

    rule: str
    key: Template | None  # default: the rule's key
    title: Template
    kind: str = "problem"
    notifies: bool = False

    def run(self, hit: Hit, env: ActionEnv) -> None:
        """Queue it; the desk links the incident this rule has for the hit's key, if any."""
        variables = hit.variables
        key = self.key.render(variables) if self.key is not None else hit.key
        body = {
            "kind": "problem",
            "key": f"rule {self.rule}: {key}",
            "title": self.title.render(variables).strip(),
            "fingerprint": fingerprint(self.rule, hit.key),
        }
        env.outbox.append(Outgoing(SERVICE_CHANNEL, self.rule, body))
        if env.outputs is not None:
            env.outputs.append(
                ActionOutput(hit.time, self.rule, "problem", "link", hit.key, "", body["title"], 0)
            )

    def referenced_rules(self) -> tuple[str, ...]:
        """Refer to no other rule."""
        return ()


class ProblemKind:
    """Compiles `problem: {title, key}`."""

    name = "problem"

    def compile(self, spec: Any, mark: Mark, ctx: CompileContext) -> ProblemAction:
        """A title template, and optionally a key template (default: the rule's key)."""
        data = expect_map(spec, mark, "'problem'", ctx.error)
        check_keys(data, ("title", "key"), "problem option", ctx.error, required=("title",))
        key = data.get("key")
        return ProblemAction(
            rule=ctx.rule_id,
            key=ctx.template(key, value_mark(data, "key", mark), "'key'")
            if key is not None
            else None,
            title=ctx.template(data["title"], value_mark(data, "title", mark), "'title'"),
        )
