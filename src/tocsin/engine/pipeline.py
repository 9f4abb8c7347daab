"""The pure engine: a batch of events in, the batch's effects out. No I/O, no asyncio.

An RE2 Set over every rule's message pattern runs once per event, so an event meets only
the rules that can match it; rules without a message pattern are always tried.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import re2

from tocsin.engine.clock import Clock
from tocsin.model import Event, IncidentChange
from tocsin.records.incidents import IncidentBook
from tocsin.rules.matchers import RE2_OPTIONS
from tocsin.rules.types import ActionOutput, Hit, LogRequest, Rule

__all__ = ["RULE_STAGES", "BatchResult", "Engine", "Failure"]

RULE_STAGES = ("match", "when", "key")


@dataclass(frozen=True, slots=True)
class Failure:
    """A rule or action that raised on one event: reported and counted, the batch goes on.

    `stage` is "match", "when" or "key" for the rule itself, else the action kind.
    """

    rule: str
    stage: str
    error: str
    event: Event


@dataclass(slots=True)
class BatchResult:
    """What one batch did; the I/O edge persists `changes` and writes `logs`."""

    events: int = 0
    dropped: int = 0
    changes: list[IncidentChange] = field(default_factory=list)
    logs: list[LogRequest] = field(default_factory=list)
    outputs: list[ActionOutput] | None = None
    matches: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    now: float = 0.0


@dataclass(slots=True)
class _Env:
    """The ActionEnv one batch runs in."""

    book: IncidentBook
    changes: list[IncidentChange]
    logs: list[LogRequest]
    outputs: list[ActionOutput] | None


class Engine:
    """Runs events through compiled rules in load order (first match wins unless `continue`)."""

    def __init__(
        self,
        *,
        rules: Sequence[Rule],
        lists: Mapping[str, list[Any]],
        book: IncidentBook,
        clock: Clock,
        record_outputs: bool = False,
    ) -> None:
        self.rules = list(rules)
        self.lists = lists
        self.book = book
        self.clock = clock
        self.record_outputs = record_outputs
        self._by_id = {rule.id: rule for rule in self.rules}
        self._always: list[int] = []
        self._rule_of_pattern: list[int] = []
        self._set_match: Callable[[bytes], list[int] | None] | None = None
        patterns: list[tuple[int, str]] = []
        for index, rule in enumerate(self.rules):
            if rule.prefilter is None:
                self._always.append(index)
            else:
                patterns.append((index, rule.prefilter))
        if patterns:
            prefilter = re2.Set.SearchSet(RE2_OPTIONS)
            for index, pattern in patterns:
                prefilter.Add(pattern)
                self._rule_of_pattern.append(index)
            prefilter.Compile()
            # The wrapper's Match re-encodes every call; the low-level one takes our bytes.
            low_level = getattr(prefilter, "_set", None)
            self._set_match = getattr(low_level, "Match", prefilter.Match)

    def process(self, events: Sequence[Event]) -> BatchResult:
        """Run one batch; actions that raise are recorded as failures, never propagated."""
        result = BatchResult(events=len(events), now=self.clock.now())
        if self.record_outputs:
            result.outputs = []
        env = _Env(self.book, result.changes, result.logs, result.outputs)
        rules = self.rules
        lists = self.lists
        matches = result.matches
        always = self._always
        rule_of_pattern = self._rule_of_pattern
        set_match = self._set_match
        for event in events:
            candidates: Sequence[int] = always
            if set_match is not None:
                hits = set_match(event.message.encode("utf-8", "surrogatepass"))
                if hits:
                    if len(hits) == 1 and not always:
                        candidates = (rule_of_pattern[hits[0]],)
                    else:
                        candidates = sorted([*(rule_of_pattern[h] for h in hits), *always])
            for index in candidates:
                rule = rules[index]
                captures: dict[str, Any] = {}
                stage = "match"
                try:
                    if not rule.matcher(event, captures):
                        continue
                    fields = event.fields
                    variables: dict[str, Any] | None = None
                    if rule.when is not None:
                        # Captures join the fields only if `when` agrees; until then, a view.
                        stage = "when"
                        variables = {
                            **captures,
                            "event": event,
                            "fields": {**fields, **captures} if captures else fields,
                            "lists": lists,
                        }
                        if not rule.when(variables):
                            continue
                        variables["fields"] = fields
                    if captures:
                        fields.update(captures)  # matched: the key and actions see them as fields
                    hit = Hit(event, rule, captures, lists, variables)
                    if rule.key is not None:
                        stage = "key"
                        hit.key = rule.key.render(hit.variables)
                except Exception as exc:  # noqa: BLE001 - bad event data must not stop the engine
                    # The rule counts as not matching: a key that cannot be rendered would
                    # merge unrelated events into one incident.
                    result.failures.append(Failure(rule.id, stage, repr(exc), event))
                    continue
                matches[rule.id] += 1
                for action in rule.actions:
                    try:
                        action.run(hit, env)
                    except Exception as exc:  # noqa: BLE001 - one bad action must not stop the batch
                        result.failures.append(Failure(rule.id, action.kind, repr(exc), event))
                if hit.dropped:
                    result.dropped += 1
                    break
                if not rule.continue_:
                    break
        # Every action of a matched rule runs once per match: count them per batch, not per run.
        by_id = self._by_id
        for rule_id, count in matches.items():
            for action in by_id[rule_id].actions:
                result.actions[action.kind] += count
        return result
