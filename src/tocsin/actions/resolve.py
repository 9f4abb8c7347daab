"""The `resolve` action: a clear event resolves the open incident of a rule and key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tocsin.records.incidents import fingerprint
from tocsin.rules.schema import check_keys, expect_map, expect_str
from tocsin.rules.templates import Template
from tocsin.rules.types import ActionEnv, ActionOutput, CompileContext, Hit
from tocsin.yamlsrc import Mark, value_mark

__all__ = ["ResolveAction", "ResolveKind"]


@dataclass(frozen=True, slots=True)
class ResolveAction:
    """Resolve incident `target:key`, rendering the key from this event (default: the rule's)."""

    rule: str
    target: str
    key: Template | None
    kind: str = "resolve"
    notifies: bool = False

    def run(self, hit: Hit, env: ActionEnv) -> None:
        """Resolve when open; a clear with nothing open does nothing."""
        key = self.key.render(hit.variables) if self.key is not None else hit.key
        fp = fingerprint(self.target, key)
        change = env.book.resolve(fp, time=hit.time, actor=f"rule:{self.rule}")
        env.forget(self.target, key)  # a suppress or threshold window starts afresh
        if change is None:
            return
        env.changes.append(change)
        if env.outputs is not None:
            env.outputs.append(
                ActionOutput(
                    hit.time,
                    self.rule,
                    "resolve",
                    "resolve",
                    key,
                    fp,
                    change.incident.title,
                    change.count,
                )
            )

    def referenced_rules(self) -> tuple[str, ...]:
        """Refer to the rule whose incidents this resolves."""
        return (self.target,)


class ResolveKind:
    """Compiles `resolve:` specs: `{rule: ID, key: TEMPLATE}`."""

    name = "resolve"

    def compile(self, spec: Any, mark: Mark, ctx: CompileContext) -> ResolveAction:
        """Validate the target rule id and the optional key template."""
        if isinstance(spec, str):
            return ResolveAction(rule=ctx.rule_id, target=spec, key=None)
        data = expect_map(spec, mark, "'resolve'", ctx.error)
        check_keys(data, ("rule", "key"), "resolve option", ctx.error)
        target = expect_str(
            data.get("rule", ctx.rule_id), value_mark(data, "rule", mark), "rule", ctx.error
        )
        key = data.get("key")
        return ResolveAction(
            rule=ctx.rule_id,
            target=target,
            key=ctx.template(key, value_mark(data, "key", mark), "key")
            if key is not None
            else None,
        )
