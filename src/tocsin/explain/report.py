"""An explanation as text for people and as JSON for scripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tocsin.console import printable
from tocsin.explain import Explanation, Outcome, RuleVerdict, event_view
from tocsin.notify.routing import ALL_LABELS, Route
from tocsin.rules.loader import display_path
from tocsin.rules.matchers import Miss
from tocsin.rules.schema import format_duration
from tocsin.rules.types import ActionOutput
from tocsin.yamlsrc import Mark

__all__ = ["describe_miss", "to_dict", "to_text"]

_SHOWN = 120  # characters of a value shown in text; JSON has all of it
_LIST_SHOWN = 8  # items of a list shown in text
_OPS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_STATUS = {
    "matched": "MATCH",
    "no_match": "no",
    "when_false": "no (when)",
    "failed": "FAILED",
    "group": "group",
}


def _shown(value: Any) -> str:
    """A value in text: JSON-like, cut to _SHOWN characters."""
    if isinstance(value, list | tuple) and len(value) > _LIST_SHOWN:
        more = len(value) - _LIST_SHOWN
        text = json.dumps(list(value[:_LIST_SHOWN]), ensure_ascii=False, default=str)
        text = f"{text[:-1]}, ... {more} more]"
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def describe_miss(miss: Miss) -> str:
    """One sentence: which condition failed, what it wanted and what the event had."""
    where = "".join(f"{label}: " for label in miss.within)
    field, op, expected = miss.field, miss.op, miss.expected
    got = "missing" if miss.missing else _shown(miss.got)
    if op == "any":
        each = "; ".join(f"({i}) {describe_miss(m)}" for i, m in enumerate(miss.alternatives, 1))
        return f"{where}any: none of its {len(miss.alternatives)} alternatives holds: {each}"
    if op == "not":
        return f"{where}not: the negated condition holds: {_shown(expected)}"
    wanted = {
        "equals": _shown(expected),
        "in": f"one of {_shown(expected)}",
        "not_in": f"none of {_shown(expected)}",
        "regex": f"a match of regex '{expected}'",
        "contains": f"text containing {_shown(expected)}",
        "startswith": f"text starting with {_shown(expected)}",
        "endswith": f"text ending with {_shown(expected)}",
        "exists": "it present" if expected else "it absent",
    }.get(op) or f"{_OPS.get(op, op)} {_shown(expected)}"
    if isinstance(expected, list) and op in ("contains", "startswith", "endswith"):
        wanted = wanted.replace(" containing ", " containing any of ").replace(
            " with ", " with any of "
        )
    return f"{where}{field}: wanted {wanted}, got {got}"


def _where(mark: Mark | None) -> str | None:
    """A definition's place as file:line (relative when below here), as the API shows rules."""
    return None if mark is None else f"{display_path(Path(mark.file))}:{mark.line}"


def _verdict_dict(verdict: RuleVerdict) -> dict[str, Any]:
    rule = verdict.rule
    data: dict[str, Any] = {
        "id": rule.id,
        "where": _where(rule.mark),
        "status": verdict.status,
        "acted": verdict.acted,
    }
    if verdict.follower_of:
        data["follower_of"] = verdict.follower_of
    if verdict.stopped_by:
        data["stopped_by"] = verdict.stopped_by
    if verdict.miss is not None:
        data["miss"] = _miss_dict(verdict.miss)
        data["reason"] = describe_miss(verdict.miss)
    if verdict.status == "matched":
        data["captures"] = verdict.captures
        data["key"] = verdict.key
    if verdict.error:
        data["reason"] = verdict.error
    if verdict.status == "group":
        data["members_matched"] = list(verdict.members)
    return data


def _miss_dict(miss: Miss) -> dict[str, Any]:
    data: dict[str, Any] = {
        "field": miss.field,
        "op": miss.op,
        "expected": miss.expected,
        "got": miss.got,
        "missing": miss.missing,
    }
    if miss.within:
        data["within"] = list(miss.within)
    if miss.alternatives:
        data["alternatives"] = [_miss_dict(m) for m in miss.alternatives]
    return data


def _output_dict(output: ActionOutput) -> dict[str, Any]:
    return {
        "action": output.action,
        "op": output.op,
        "key": output.key,
        "fingerprint": output.fingerprint,
        "title": output.title,
        "count": output.count,
    }


def _route_dict(route: Route) -> dict[str, Any]:
    return {
        "receiver": route.receiver,
        "matchers": str(route.matchers),
        "group_by": [ALL_LABELS] if route.group_by is None else list(route.group_by),
        "group_wait": route.group_wait,
        "escalation": route.escalation,
        "where": _where(route.where),
    }


def _outcome_dict(outcome: Outcome) -> dict[str, Any]:
    incident = outcome.incident
    return {
        "rule": outcome.rule.id,
        "key": outcome.key,
        "declared_actions": [a.kind for a in outcome.rule.actions],
        "actions": [_output_dict(o) for o in outcome.outputs],
        "when_acting": [_output_dict(o) for o in outcome.when_acting],
        "remediation": outcome.runs,
        "correlation": outcome.correlation,
        "muted": outcome.muted,
        "windows": [
            {"name": w.name, "active": active, "where": _where(w.where)}
            for w, active in outcome.windows
        ],
        "incident": None
        if incident is None
        else {
            "fingerprint": incident.fingerprint,
            "title": incident.title,
            "priority": incident.priority,
            "labels": incident.labels,
        },
        "routes": None if outcome.routes is None else [_route_dict(r) for r in outcome.routes],
    }


def to_dict(explanation: Explanation) -> dict[str, Any]:
    """The explanation as `tocsin explain --json` prints it."""
    return {
        "event": event_view(explanation.event),
        "rules": [_verdict_dict(v) for v in explanation.verdicts],
        "outcomes": [_outcome_dict(o) for o in explanation.outcomes],
        "silences_active": explanation.silences,
        "notes": explanation.notes,
        "disagreements": explanation.disagreements,
    }


def _verdict_lines(verdict: RuleVerdict, width: int) -> list[str]:
    rule = verdict.rule
    name = f"{verdict.rule.id}".ljust(width)
    status = _STATUS[verdict.status]
    if verdict.stopped_by:
        status = "would match" if verdict.status == "matched" else f"{status}, not reached"
    lines = [f"  {name}  {status:<16} {_where(rule.mark)}"]
    pad = "      "
    if verdict.status == "matched":
        if verdict.captures:
            captured = " ".join(f"{k}={_shown(v)}" for k, v in verdict.captures.items())
            lines.append(f"{pad}captures  {captured}")
        if verdict.key:
            lines.append(f"{pad}key       {_shown(verdict.key)}")
    if verdict.miss is not None:
        lines.append(f"{pad}{describe_miss(verdict.miss)}")
    if verdict.status == "when_false":
        lines.append(f"{pad}when: {verdict.error!r} is false")
    elif verdict.error:
        lines.append(f"{pad}{verdict.error}")
    if verdict.stopped_by:
        lines.append(f"{pad}'{verdict.stopped_by}' matched first and stopped the event")
    if verdict.status == "group":
        matched = ", ".join(verdict.members) or "none"
        lines.append(f"{pad}fed by its member rules; matched here: {matched}")
    return lines


def _output_line(output: ActionOutput) -> str:
    text = f"{output.action} {output.op}"
    if output.title:
        text += f" {_shown(output.title)}"
    if output.action == "incident" and output.fingerprint:
        text += f" [{output.fingerprint}]"
    return text


def _outcome_lines(outcome: Outcome, configured: bool) -> list[str]:
    lines = [f"  {outcome.rule.id}" + (f"  key {_shown(outcome.key)}" if outcome.key else "")]
    pad = "      "
    declared = ", ".join(a.kind for a in outcome.rule.actions) or "none"
    lines.append(f"{pad}actions     {declared}")
    lines.extend(f"{pad}  now       {_output_line(o)}" for o in outcome.outputs)
    if not outcome.outputs and not outcome.when_acting and outcome.rule.actions:
        lines.append(f"{pad}  now       nothing runs for this event alone")
    lines.extend(f"{pad}  on acting {_output_line(o)}" for o in outcome.when_acting)
    lines.extend(f"{pad}  remediate runbook {name} (shown, never run)" for name in outcome.runs)
    lines.extend(f"{pad}correlation {note}" for note in outcome.correlation)
    if outcome.incident is not None:
        incident = outcome.incident
        lines.append(f"{pad}incident    {incident.priority} {_shown(incident.title)}")
    unknown = "not known (no config: maintenance windows unknown)"
    lines.append(f"{pad}muting      {outcome.muted or ('not muted' if configured else unknown)}")
    for window, active in outcome.windows:
        state = "active at the event's time" if active else "not active at the event's time"
        where = f" ({_where(window.where)})" if window.where else ""
        lines.append(f"{pad}  window    {window.name}{where} matches, {state}")
    if outcome.routes is not None:
        if not outcome.routes:
            lines.append(f"{pad}routing     no route in the incidents file: nobody is notified")
        for route in outcome.routes:
            group = "every label" if route.group_by is None else ",".join(route.group_by) or "-"
            text = (
                f"receiver {route.receiver} (group_by {group}, "
                f"group_wait {format_duration(route.group_wait)})"
            )
            if route.escalation:
                text += f", escalation {route.escalation}"
            if route.where is not None:
                text += f"  [{_where(route.where)}]"
            lines.append(f"{pad}routing     {text}")
        if outcome.routes and outcome.muted:
            lines.append(f"{pad}            held while muted")
    return lines


def to_text(explanation: Explanation) -> str:
    """The explanation as `tocsin explain` prints it for people."""
    event = event_view(explanation.event)
    lines = ["event"]
    lines.append(f"  time {event['time']}  source {event['source']}  origin {event['origin']}")
    lines.append(
        f"  host {event['host'] or '-'}  program {event['program'] or '-'}  "
        f"level {event['level']}  severity {event['severity']}"
    )
    lines.append(f"  message {_shown(event['message'])}")
    if event["fields"]:
        lines.append(f"  fields {_shown(event['fields'])}")
    followers = [v for v in explanation.verdicts if v.follower_of]
    verdicts = [v for v in explanation.verdicts if not v.follower_of]
    width = max((len(v.rule.id) for v in verdicts), default=4)
    lines.append("")
    lines.append("rules, in order (the first match stops the event unless it has continue)")
    for verdict in verdicts:
        lines.extend(_verdict_lines(verdict, width))
    matched_followers = [v for v in followers if v.status == "matched"]
    if followers:
        lines.append("")
        lines.append(
            f"clear and expect follow-ups (tried first): {len(matched_followers)} of "
            f"{len(followers)} match"
        )
        for verdict in matched_followers:
            role = verdict.rule.id.partition("#")[2]
            lines.append(
                f"  {verdict.rule.id}: the {role} of '{verdict.follower_of}' for key "
                f"{_shown(verdict.key)}"
            )
    lines.append("")
    lines.append("what would happen")
    if not explanation.outcomes:
        lines.append("  nothing: no rule acts on this event")
    for outcome in explanation.outcomes:
        lines.extend(_outcome_lines(outcome, explanation.configured))
    if explanation.silences is not None:
        lines.append(f"  silences consulted: {explanation.silences} active at the event's time")
    if explanation.notes:
        lines.append("")
        lines.append("notes")
        lines.extend(f"  - {note}" for note in explanation.notes)
    if explanation.disagreements:
        lines.append("")
        lines.append("DISAGREEMENTS (a tocsin bug: please report)")
        lines.extend(f"  - {text}" for text in explanation.disagreements)
    return "\n".join(printable(line) for line in lines)
