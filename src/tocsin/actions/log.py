"""The `log` action: a structured log line about the event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tocsin.rules.schema import check_keys, expect_map
from tocsin.rules.templates import Template
from tocsin.rules.types import ActionEnv, ActionOutput, CompileContext, Hit, LogRequest
from tocsin.yamlsrc import Mark, value_mark

__all__ = ["LogAction", "LogKind"]

_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True, slots=True)
class LogAction:
    """Ask the daemon to log a rendered message at a level."""

    rule: str
    level: str
    message: Template
    kind: str = "log"
    notifies: bool = True  # held while the incident is muted

    def run(self, hit: Hit, env: ActionEnv) -> None:
        """Queue the log line; the I/O edge writes it after the batch."""
        text = self.message.render(hit.variables)
        env.logs.append(LogRequest(self.level, text, self.rule, hit.event))
        if env.outputs is not None:
            env.outputs.append(
                ActionOutput(hit.time, self.rule, "log", self.level, hit.key, title=text)
            )

    def referenced_rules(self) -> tuple[str, ...]:
        """Refer to no other rule."""
        return ()


class LogKind:
    """Compiles `log: {message: TEMPLATE, level: info}` (or `log: TEMPLATE`)."""

    name = "log"

    def compile(self, spec: Any, mark: Mark, ctx: CompileContext) -> LogAction:
        """Validate the message template and level."""
        if isinstance(spec, str):
            return LogAction(
                rule=ctx.rule_id, level="info", message=ctx.template(spec, mark, "log message")
            )
        data = expect_map(spec, mark, "'log'", ctx.error)
        check_keys(data, ("message", "level"), "log option", ctx.error, required=("message",))
        level = data.get("level", "info")
        if level not in _LEVELS:
            raise ctx.error(
                value_mark(data, "level", mark), f"log level must be one of {', '.join(_LEVELS)}"
            )
        return LogAction(
            rule=ctx.rule_id,
            level=str(level),
            message=ctx.template(data["message"], value_mark(data, "message", mark), "log message"),
        )
