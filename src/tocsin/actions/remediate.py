"""The `remediate` action: render a runbook for this hit and ask for a run with the batch.

The run is rendered here, from the hit's variables, into plain argv lists and request texts;
the daemon commits it with the batch and its remediator runs it after the commit, through
the safety kit. Event data only ever fills template variables: a value becomes exactly one
argv element, never a shell command and never a template.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tocsin.model import RunRequest
from tocsin.records.incidents import fingerprint
from tocsin.records.priority import RATINGS
from tocsin.rules.schema import check_keys, expect_bool, expect_map, expect_str, parse_duration
from tocsin.rules.templates import Template
from tocsin.rules.types import ActionEnv, ActionOutput, CompileContext, Hit
from tocsin.runbooks.render import RenderError, render_run
from tocsin.runbooks.settings import Runbook
from tocsin.yamlsrc import Mark, did_you_mean, value_mark

__all__ = ["RemediateAction", "RemediateKind"]

_KEYS = ("runbook", "target", "dry_run", "on_success", "on_failure")
_ON_FAILURE = ("escalate", "raise_priority")


@dataclass(frozen=True, slots=True)
class RemediateAction:
    """Ask for a run of one runbook for the hit's key (and its incident, if it has one)."""

    rule: str
    runbook: Runbook
    target: Template | None  # what the circuit breaker counts failures for; default: the key
    dry_run: bool
    on_success: str  # "", "resolve", or "wait_clear:SECONDS"
    on_failure: str  # "", "escalate", or "priority:IMPACT/URGENCY"
    kind: str = "remediate"
    notifies: bool = True  # it acts on systems: held while muted, like a notification

    def run(self, hit: Hit, env: ActionEnv) -> None:
        """Render the runbook for this hit; a value that cannot be used fails the action."""
        variables = hit.variables
        try:
            spec = render_run(self.runbook, variables).to_dict()
        except RenderError as exc:
            raise ValueError(f"runbook {self.runbook.name}: {exc}") from None
        target = self.target.render(variables) if self.target is not None else hit.key
        fp = fingerprint(self.rule, hit.key)
        env.runs.append(
            RunRequest(
                runbook=self.runbook.name,
                rule=self.rule,
                key=hit.key,
                target=target,
                fingerprint=fp,
                spec=spec,
                time=hit.time,
                dry_run=self.dry_run,
                on_success=self.on_success,
                on_failure=self.on_failure,
            )
        )
        if env.outputs is not None:
            incident = env.book.get(fp)
            env.outputs.append(
                ActionOutput(
                    hit.time, self.rule, "remediate", "run", hit.key, fp,
                    incident.title if incident is not None else self.runbook.name, 0,
                )
            )  # fmt: skip

    def referenced_rules(self) -> tuple[str, ...]:
        """Refer to no other rule."""
        return ()


class RemediateKind:
    """Compiles `remediate:` specs against the configured runbooks."""

    name = "remediate"

    def __init__(self, runbooks: Mapping[str, Runbook] | None = None) -> None:
        self._runbooks = runbooks

    def compile(self, spec: Any, mark: Mark, ctx: CompileContext) -> RemediateAction:
        """Check the runbook exists and the outcome handling is one we know."""
        data = expect_map(spec, mark, "'remediate'", ctx.error)
        check_keys(data, _KEYS, "remediate option", ctx.error, required=("runbook",))

        def at(key: str) -> Mark:
            return value_mark(data, key, mark)

        name = expect_str(data["runbook"], at("runbook"), "'runbook'", ctx.error)
        runbooks = self._runbooks or {}
        runbook = runbooks.get(name)
        if runbook is None:
            known = ", ".join(sorted(runbooks)) or (
                "none (name a runbooks file in the config, and check the rules with --config)"
            )
            raise ctx.error(
                at("runbook"),
                f"unknown runbook '{name}'{did_you_mean(name, runbooks)}; runbooks: {known}",
            )
        target = data.get("target")
        return RemediateAction(
            rule=ctx.rule_id,
            runbook=runbook,
            target=ctx.template(target, at("target"), "'target'") if target is not None else None,
            dry_run=expect_bool(data.get("dry_run", False), at("dry_run"), "'dry_run'", ctx.error),
            on_success=self._on_success(data.get("on_success"), at("on_success"), ctx),
            on_failure=self._on_failure(data.get("on_failure"), at("on_failure"), ctx),
        )

    @staticmethod
    def _on_success(spec: Any, where: Mark, ctx: CompileContext) -> str:
        """`resolve`, or `{wait_clear: DURATION}`: the clear event must come within it."""
        if spec is None:
            return ""
        if spec == "resolve":
            return "resolve"
        if isinstance(spec, Mapping) and list(spec) == ["wait_clear"]:
            seconds = parse_duration(
                spec["wait_clear"], where, "'on_success.wait_clear'", ctx.error
            )
            if seconds <= 0:
                raise ctx.error(where, "'on_success.wait_clear' must be more than 0s")
            return f"wait_clear:{seconds:g}"
        raise ctx.error(where, "'on_success' must be resolve or {wait_clear: DURATION}")

    @staticmethod
    def _on_failure(spec: Any, where: Mark, ctx: CompileContext) -> str:
        """`escalate`, or `{raise_priority: {impact, urgency}}`."""
        if spec is None:
            return ""
        if spec == "escalate":
            return "escalate"
        if isinstance(spec, Mapping) and list(spec) == ["raise_priority"]:
            levels = expect_map(
                spec["raise_priority"], where, "'on_failure.raise_priority'", ctx.error
            )
            check_keys(levels, ("impact", "urgency"), "raise_priority option", ctx.error)
            impact = str(levels.get("impact", "high"))
            urgency = str(levels.get("urgency", "high"))
            if impact not in RATINGS or urgency not in RATINGS:
                raise ctx.error(where, "impact and urgency must be high, medium or low")
            return f"priority:{impact}/{urgency}"
        raise ctx.error(
            where, "'on_failure' must be escalate or {raise_priority: {impact: .., urgency: ..}}"
        )
