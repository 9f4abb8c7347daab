"""The `drop` action: filter the event out; no later rule sees it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tocsin.rules.types import ActionEnv, ActionOutput, CompileContext, Hit
from tocsin.yamlsrc import Mark

__all__ = ["DropAction", "DropKind"]


@dataclass(frozen=True, slots=True)
class DropAction:
    """Stop processing the event."""

    rule: str
    kind: str = "drop"
    notifies: bool = False

    def run(self, hit: Hit, env: ActionEnv) -> None:
        """Mark the hit dropped; the engine stops there."""
        hit.dropped = True
        if env.outputs is not None:
            env.outputs.append(ActionOutput(hit.time, self.rule, "drop", "drop", hit.key))

    def referenced_rules(self) -> tuple[str, ...]:
        """Refer to no other rule."""
        return ()


class DropKind:
    """Compiles `drop` (bare, or with an empty mapping)."""

    name = "drop"

    def compile(self, spec: Any, mark: Mark, ctx: CompileContext) -> DropAction:
        """Accept only an empty spec."""
        if spec not in (None, {}, True):
            raise ctx.error(mark, "'drop' takes no options")
        return DropAction(rule=ctx.rule_id)
