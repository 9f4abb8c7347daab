"""`/api/v1/rules`: the loaded rules, each with what it did since the daemon started (events
tried, matches, actions run, evaluation time), like SEC's dump with per-rule performance."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from aiohttp import web

from tocsin.api.auth import Gate
from tocsin.api.replies import error
from tocsin.engine.pipeline import RuleStats
from tocsin.rules.correlation import (
    AbsenceSpec,
    CorrelationSpec,
    ExpectSpec,
    GroupSpec,
    HysteresisSpec,
    NewValueSpec,
    SpikeSpec,
    SuppressSpec,
    ThresholdSpec,
)
from tocsin.rules.types import Rule
from tocsin.tokens import Role

__all__ = ["CORRELATION_OPTIONS", "RuleBoard", "add_rule_routes", "rule_figures", "rule_view"]

_MODES: dict[type[CorrelationSpec], str] = {
    SuppressSpec: "suppress",
    ThresholdSpec: "threshold",
    HysteresisSpec: "hysteresis",
    AbsenceSpec: "absence",
    ExpectSpec: "expect",
    GroupSpec: "group",
    SpikeSpec: "spike",
    NewValueSpec: "new_value",
}
CORRELATION_OPTIONS = (*_MODES.values(), "clear", "flapping", "storm")


class RuleBoard(Protocol):
    """What the daemon offers about its rules (the engine has it)."""

    def rule_stats(self) -> Sequence[tuple[Rule, RuleStats]]:
        """Each loaded rule, then the clear/expect follow-ups, with their figures so far."""


def rule_view(rule: Rule, stats: RuleStats) -> dict[str, Any]:
    """One rule as the API shows it: where it is, what it is, what it did."""
    owner, _, role = rule.id.partition("#")  # only the engine's hidden follow-ups hold a '#'
    correlation = rule.correlation
    options = []
    if correlation is not None:
        if correlation.mode is not None:
            options.append(_MODES[type(correlation.mode)])
        options.extend(
            name
            for name in ("clear", "flapping", "storm")
            if getattr(correlation, name) is not None
        )
    evaluated = stats.evaluated
    return {
        "id": rule.id,
        "kind": role or ("group" if rule.matcher is None else "rule"),
        "follows": owner if role else None,
        "where": f"{rule.mark.file}:{rule.mark.line}",
        "description": rule.description,
        "tags": list(rule.tags),
        "correlation": options,
        "actions_declared": [action.kind for action in rule.actions],
        "continue": rule.continue_,
        "evaluated": evaluated,
        "matches": stats.matches,
        "actions": stats.actions,
        "eval_seconds": stats.eval_ns / 1e9,
        "eval_us_per_event": round(stats.eval_ns / 1000 / evaluated, 3) if evaluated else None,
    }


def rule_figures(board: RuleBoard) -> Iterator[tuple[str, int, float]]:
    """(rule id, actions run, seconds spent) of every rule, for the per-rule metrics."""
    for rule, stats in board.rule_stats():
        yield rule.id, stats.actions, stats.eval_ns / 1e9


def add_rule_routes(app: web.Application, gate: Gate, board: RuleBoard) -> None:
    """Register GET /api/v1/rules."""

    async def listing(request: web.Request) -> web.Response:
        if request.query:
            return error(400, f"unknown parameter(s): {', '.join(sorted(request.query))}")
        rules = [rule_view(rule, stats) for rule, stats in board.rule_stats()]
        return web.json_response({"rules": rules})

    gate.route(app, "GET", "/api/v1/rules", listing, Role.VIEWER)
