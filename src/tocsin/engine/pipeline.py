"""The pure engine: a batch of events in, the batch's effects out. No I/O, no asyncio.

An RE2 Set over every rule's message pattern runs once per event, so an event meets only
the rules that can match it; rules without a message pattern are always tried. Rules with a
correlation mode hand their hits to a correlator, which decides whether the actions run;
timers fire from one heap as event time passes them.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import re2

from tocsin.engine.clock import Clock
from tocsin.engine.correlators import (
    FLAPPING_PREFIX,
    STATE_FORMAT,
    Correlator,
    Expect,
    Flapping,
    Group,
    Storm,
    build_correlator,
)
from tocsin.engine.eventtime import EventTime
from tocsin.engine.muting import Muter, hit_labels, mute_change
from tocsin.model import Event, IncidentChange, Outgoing, RunRequest, StateRow
from tocsin.mute import MuteDecision
from tocsin.records.incidents import IncidentBook, fingerprint
from tocsin.rules.correlation import ExpectSpec, Follower, GroupSpec
from tocsin.rules.matchers import RE2_OPTIONS
from tocsin.rules.types import ActionEnv, ActionOutput, CompiledAction, Hit, LogRequest, Rule

__all__ = ["RULE_STAGES", "BatchResult", "Engine", "Failure", "RuleStats"]

RULE_STAGES = ("match", "when", "key", "correlate", "timer", "state", "mute")

# Each rule's evaluations are timed one in this many (a power of two): the 1st, 9th, ...
_TIME_EVERY = 8
_TIME_MASK = _TIME_EVERY - 1

# A pending timer: (due, rule order, key, sequence, correlator). Timers due together fire in
# rule order, then key order, never in the order they were set: so a restart or reload, which
# sets them again, fires them in the same order as an uninterrupted run.
Timer = tuple[float, int, str, int, Correlator]


@dataclass(frozen=True, slots=True)
class Failure:
    """A rule or action that raised on one event: reported and counted, the batch goes on.

    `stage` is "match", "when", "key", "correlate", "timer", "state" or "mute" for the rule
    itself, else the action kind.
    """

    rule: str
    stage: str
    error: str
    event: Event


@dataclass(slots=True)
class RuleStats:
    """What one rule did since the engine started: `tocsin rules` and the per-rule metrics.

    `eval_ns` is the time spent on the rule's events, from its matcher to its last action,
    measured on one evaluation in _TIME_EVERY and scaled; the prefilter, parsing and timers
    are shared and not counted to any rule.
    """

    evaluated: int = 0  # events tried against it (the prefilter lets most events skip it)
    matches: int = 0
    actions: int = 0  # actions run (held ones not counted)
    eval_ns: int = 0


@dataclass(slots=True)
class BatchResult:
    """What one batch did; the I/O edge persists `changes` and `state`, and writes `logs`."""

    events: int = 0
    dropped: int = 0
    changes: list[IncidentChange] = field(default_factory=list)
    logs: list[LogRequest] = field(default_factory=list)
    outbox: list[Outgoing] = field(default_factory=list)  # committed with the batch, then sent
    runs: list[RunRequest] = field(default_factory=list)  # remediation asked for, to commit
    outputs: list[ActionOutput] | None = None
    matches: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    rule_actions: Counter[str] = field(default_factory=Counter)  # actions run, per rule
    failures: list[Failure] = field(default_factory=list)
    now: float = 0.0
    watermark: float = -math.inf
    late: int = 0  # events older than the lateness allows, processed as now
    future: int = 0  # events stamped too far ahead of the wall clock, processed as now
    timers: int = 0  # timers that fired
    evicted: Counter[str] = field(default_factory=Counter)  # keys pushed out per rule
    expired: int = 0  # idle keys dropped
    muted: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, name) -> hits
    state: list[StateRow] = field(default_factory=list)


class _Clear:
    """The hidden action of a `clear` follower: resolve the rule's incident for the key."""

    kind = "clear"
    notifies = False

    def __init__(self, rule: Rule, correlator: Correlator | None) -> None:
        self.rule = rule
        self.correlator = correlator

    def run(self, hit: Hit, env: ActionEnv) -> None:
        """Resolve, when open; a suppress or threshold window of the key starts afresh."""
        assert isinstance(env, _Env)
        env.resolve(self.rule, hit.key, hit.time)
        if self.correlator is not None:
            self.correlator.forget(hit.key)

    def referenced_rules(self) -> tuple[str, ...]:
        """Refer to no rule the loader must check."""
        return ()


class _Arrive:
    """The hidden action of an `expect` follower: the awaited event is here."""

    kind = "expect"
    notifies = False

    def __init__(self, correlator: Expect) -> None:
        self.correlator = correlator

    def run(self, hit: Hit, env: ActionEnv) -> None:
        """Tell the expect rule's state."""
        assert isinstance(env, _Env)
        self.correlator.arrive(hit, env)

    def referenced_rules(self) -> tuple[str, ...]:
        """Refer to no rule the loader must check."""
        return ()


class _Env:
    """The ActionEnv one batch runs in, and the correlators' Effects."""

    __slots__ = (
        "book",
        "changes",
        "correlators",
        "failures",
        "flapping",
        "heap",
        "lists",
        "logs",
        "muter",
        "observed",
        "outbox",
        "outputs",
        "result",
        "runs",
        "seq",
        "storms",
    )

    def __init__(
        self,
        result: BatchResult,
        book: IncidentBook,
        lists: Mapping[str, list[Any]],
        heap: list[Timer],
        seq: Iterable[int],
        *,
        muter: Muter | None,
        flapping: Mapping[str, Flapping],
        storms: Mapping[str, Storm],
        correlators: Mapping[str, Correlator],
    ) -> None:
        self.result = result
        self.book = book
        self.changes = result.changes
        self.logs = result.logs
        self.outbox = result.outbox
        self.runs = result.runs
        self.outputs = result.outputs
        self.failures = result.failures
        self.lists = lists
        self.heap = heap
        self.seq = iter(seq)
        self.muter = muter if muter is not None and muter.engaged else None
        self.flapping = flapping
        self.storms = storms
        self.correlators = correlators
        self.observed = 0  # changes the muter and flapping guards have seen

    def act(
        self, rule: Rule, actions: Sequence[CompiledAction], hit: Hit, *, count: bool = True
    ) -> None:
        """Run actions; notifying ones only if no muting covers the hit. Failures are kept.

        With muting in play, record-keeping actions run first, so the incident exists (with
        its labels) when the mute decision is made, and the decision is recorded on it even
        when the rule itself notifies nobody: notifications that follow the incident later
        must know it is muted.
        """
        muter = self.muter
        flapping = self.flapping.get(rule.id)
        if muter is None and flapping is None and rule.id not in self.storms:
            self._run(rule, actions, hit, count)
            return
        self._run(rule, [a for a in actions if not a.notifies], hit, count)
        self.observe()
        fp = fingerprint(rule.id, hit.key)
        incident = self.book.get(fp)
        decision = None
        if muter is not None:
            try:
                decision = muter.decide(hit_labels(hit, incident), fp, hit.time)
            except Exception as exc:  # noqa: BLE001 - a muting bug must not stop the batch
                self.failures.append(Failure(rule.id, "mute", repr(exc), hit.event))
        if decision is None and hit.folded:
            reason = "folded into the storm summary; notifications held with it"
            decision = MuteDecision("storm", rule.id, reason, counted_as=rule.id)
            incident = None  # the folded key has no incident of its own to record it on
        held = flapping.held(hit.key) if flapping is not None and decision is None else None
        if held is not None:
            decision = MuteDecision("flapping", rule.id, held, counted_as=rule.id)
        if incident is not None:
            change = mute_change(incident, decision, hit.time)
            if change is not None:
                self.changes.append(change)
                if self.outputs is not None:
                    self.outputs.append(
                        ActionOutput(
                            hit.time, rule.id, "mute", change.actor.split(":")[0], hit.key, fp,
                            change.note, incident.count,
                        )
                    )  # fmt: skip
        if decision is None:
            self._run(rule, [a for a in actions if a.notifies], hit, count)
        else:
            self.result.muted[decision.kind, decision.counted_as] += 1

    def _run(self, rule: Rule, actions: Sequence[CompiledAction], hit: Hit, count: bool) -> None:
        ran = self.result.actions
        if count and actions:
            self.result.rule_actions[rule.id] += len(actions)
        for action in actions:
            if count:
                ran[action.kind] += 1
            try:
                action.run(hit, self)
            except Exception as exc:  # noqa: BLE001 - one bad action must not stop the batch
                self.failures.append(Failure(rule.id, action.kind, repr(exc), hit.event))

    def observe(self) -> None:
        """Show incidents opened or resolved since the last look to the muter and guards."""
        if self.observed == len(self.changes) or (self.muter is None and not self.flapping):
            return
        fresh = self.changes[self.observed :]
        self.observed = len(self.changes)
        if self.muter is not None:
            self.muter.observe(fresh)
        if self.flapping:
            for change in fresh:
                guard = self.flapping.get(change.incident.rule)
                if guard is not None and change.op in ("open", "reopen", "resolve"):
                    guard.change(change.incident.key, change.time, self)

    def forget(self, rule_id: str, key: str) -> None:
        """Drop a rule's correlation state for a key (its incident was resolved)."""
        correlator = self.correlators.get(rule_id)
        if correlator is not None:
            correlator.forget(key)

    def fold_new(self, hit: Hit) -> int:
        """Ask the rule's storm guard whether a new incident folds into its summary."""
        storm = self.storms.get(hit.rule.id)
        return storm.fold(hit.time, self) if storm is not None else 0

    def note(self, rule: Rule, key: str, time: float, reason: str, note: str) -> None:
        """Say a state change out loud (a log line), and on the open incident's timeline."""
        fp = fingerprint(rule.id, key)
        self.logs.append(LogRequest("warning", f"{fp}: {note}", rule.id, None))
        incident = self.book.get(fp)
        if self.outputs is not None:
            count = incident.count if incident is not None else 0
            self.outputs.append(
                ActionOutput(time, rule.id, "mute", "settled", key, fp, note, count)
            )
        if incident is not None and incident.muted.startswith(FLAPPING_PREFIX):
            # Only its own reason: a silence over the incident still holds, and says so.
            incident.muted = reason
            self.changes.append(
                IncidentChange("mute", incident, time, incident.count, "flapping", note=note)
            )

    def absorb(self, hit: Hit) -> None:
        """Count a repeat into the open incident of its rule and key."""
        fp = fingerprint(hit.rule.id, hit.key)
        incident = self.book.get(fp)
        if incident is None:
            return
        change = self.book.recur(
            incident, time=hit.time, actor=f"rule:{hit.rule.id}", event=hit.event
        )
        self.changes.append(change)
        if self.outputs is not None:
            self.outputs.append(
                ActionOutput(
                    hit.time,
                    hit.rule.id,
                    "incident",
                    "update",
                    hit.key,
                    fp,
                    incident.title,
                    change.count,
                )
            )

    def resolve(self, rule: Rule, key: str, time: float) -> None:
        """Resolve the rule's open incident for the key."""
        fp = fingerprint(rule.id, key)
        change = self.book.resolve(fp, time=time, actor=f"rule:{rule.id}")
        if change is None:
            return
        self.changes.append(change)
        if self.outputs is not None:
            self.outputs.append(
                ActionOutput(
                    time,
                    rule.id,
                    "resolve",
                    "resolve",
                    key,
                    fp,
                    change.incident.title,
                    change.count,
                )
            )

    def schedule(self, due: float, correlator: Correlator, key: str) -> None:
        """Queue a timer on the engine's heap."""
        heapq.heappush(self.heap, (due, correlator.order, key, next(self.seq), correlator))

    def evicted(self, rule: Rule) -> None:
        """Count an evicted key."""
        self.result.evicted[rule.id] += 1


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
        lateness: float = 0.0,
        skew: float = math.inf,
        max_keys: int = 100_000,
        track_state: bool = False,
        muter: Muter | None = None,
    ) -> None:
        self.book = book
        self.muter = muter
        self.clock = clock
        self.record_outputs = record_outputs
        self.time = EventTime(lateness=lateness, skew=skew)
        self.max_keys = max_keys
        self.track_state = track_state
        self._heap: list[Timer] = []
        self._seq = itertools.count()
        self._row_seq = itertools.count(1)  # saved rows are numbered in recency order
        self.correlators: dict[str, Correlator] = {}
        self.stats: dict[str, RuleStats] = {}  # by rule id; a reload keeps a rule's figures
        self._install(rules, lists)

    def _install(self, rules: Sequence[Rule], lists: Mapping[str, list[Any]]) -> None:
        """Build the match order, correlators, followers and the prefilter for a rule set."""
        self.lists = lists
        self.all_rules = list(rules)
        correlators: dict[str, Correlator] = {}
        followers: list[Rule] = []
        for order, rule in enumerate(rules):
            correlation = rule.correlation
            if correlation is None:
                continue
            if correlation.mode is not None:
                correlator = build_correlator(
                    rule,
                    correlation.mode,
                    max_keys=rule.max_keys or self.max_keys,
                    track=self.track_state,
                )
                correlator.order = order
                correlators[rule.id] = correlator
                if isinstance(correlation.mode, ExpectSpec) and isinstance(correlator, Expect):
                    followers.append(
                        _follower(rule, "expect", correlation.mode.follower, _Arrive(correlator))
                    )
            if correlation.clear is not None:
                clear = _Clear(rule, correlators.get(rule.id))
                followers.append(_follower(rule, "clear", correlation.clear.follower, clear))
        flapping: dict[str, Flapping] = {}
        storms: dict[str, Storm] = {}
        for order, rule in enumerate(rules):
            correlation = rule.correlation
            if correlation is None:
                continue
            max_keys = rule.max_keys or self.max_keys
            if correlation.flapping is not None:
                guard = Flapping(
                    rule, correlation.flapping, max_keys=max_keys, track=self.track_state
                )
                guard.order = order
                flapping[rule.id] = correlators[guard.name] = guard
            if correlation.storm is not None:
                storm = Storm(rule, correlation.storm, max_keys=1, track=self.track_state)
                storm.order = order
                storms[rule.id] = correlators[storm.name] = storm
        self._flapping = flapping
        self._storms = storms
        self.correlators = correlators
        # Followers see every event, before and whatever the rules after them do.
        self.rules = [*followers, *(r for r in rules if r.matcher is not None)]
        self._correlator_at: list[Correlator | None] = [
            correlators.get(r.id) if r.matcher is not None else None for r in self.rules
        ]
        index_of = {r.id: i for i, r in enumerate(self.rules) if r.matcher is not None}
        self._groups_at: dict[int, list[tuple[str, Group]]] = {}
        for rule in rules:
            mode = rule.correlation.mode if rule.correlation else None
            group = correlators.get(rule.id)
            if isinstance(mode, GroupSpec) and isinstance(group, Group):
                for member in mode.members:
                    self._groups_at.setdefault(index_of[member], []).append((member, group))
        self._by_id = {rule.id: rule for rule in self.rules}
        self._followers = followers
        kept = self.stats
        self.stats = {
            rule.id: kept.get(rule.id) or RuleStats() for rule in (*self.all_rules, *followers)
        }
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

    def _new_result(self) -> tuple[BatchResult, _Env]:
        result = BatchResult(now=self.clock.now())
        if self.record_outputs:
            result.outputs = []
        env = _Env(
            result,
            self.book,
            self.lists,
            self._heap,
            self._seq,
            muter=self.muter,
            flapping=self._flapping,
            storms=self._storms,
            correlators=self.correlators,
        )
        return result, env

    def process(self, events: Sequence[Event]) -> BatchResult:
        """Run one batch; actions that raise are recorded as failures, never propagated."""
        result, env = self._new_result()
        result.events = len(events)
        wall = result.now
        clock = self.time
        place = clock.place
        heap = self._heap
        rules = self.rules
        lists = self.lists
        matches = result.matches
        always = self._always
        rule_of_pattern = self._rule_of_pattern
        set_match = self._set_match
        correlator_at = self._correlator_at
        groups_at = self._groups_at
        muting = env.muter is not None or bool(self._flapping) or bool(self._storms)
        late, future = clock.late, clock.future
        lateness = clock.lateness
        latest = wall + clock.skew  # stamps after this are a wrong clock
        start = watermark = clock.watermark
        # Per rule and batch, in plain lists. A clock read costs as much as a cheap matcher,
        # so each rule's evaluations are timed one in _TIME_EVERY, then scaled up.
        clock_ns = time.perf_counter_ns
        sample = _TIME_MASK
        tried = [0] * len(rules)
        spent = [0] * len(rules)
        for event in events:
            t = event.time
            # In-order stamps, the common case, stay here; EventTime.place does the rest.
            if watermark <= t <= latest:
                watermark = t
            elif t > latest or t < watermark - lateness:
                clock.watermark = watermark
                t = place(t, wall)
                watermark = clock.watermark
            if heap and heap[0][0] < watermark - lateness:
                self._fire(watermark - lateness, env)
            candidates: Sequence[int] = always
            if set_match is not None:
                hits = set_match(event.message.encode("utf-8", "surrogatepass"))
                if hits:
                    if len(hits) == 1 and not always:
                        candidates = (rule_of_pattern[hits[0]],)
                    else:
                        candidates = sorted([*(rule_of_pattern[h] for h in hits), *always])
            for index in candidates:
                n = tried[index]
                tried[index] = n + 1
                began = 0 if n & sample else clock_ns()
                try:
                    rule = rules[index]
                    captures: dict[str, Any] = {}
                    stage = "match"
                    try:
                        if not rule.matcher(event, captures):  # type: ignore[misc]
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
                        if captures:  # matched: the key and actions see them as fields
                            fields.update(captures)
                        hit = Hit(event, rule, captures, lists, variables, time=t)
                        if rule.key is not None:
                            stage = "key"
                            hit.key = rule.key.render(hit.variables)
                    except Exception as exc:  # noqa: BLE001 - bad event data must not stop the engine
                        # The rule counts as not matching: a key that cannot be rendered would
                        # merge unrelated events into one incident.
                        result.failures.append(Failure(rule.id, stage, repr(exc), event))
                        continue
                    matches[rule.id] += 1
                    correlator = correlator_at[index]
                    if correlator is None and muting:
                        env.act(rule, rule.actions, hit)  # counts what ran, not what was held
                    elif correlator is None:
                        for action in rule.actions:
                            try:
                                action.run(hit, env)
                            except Exception as exc:  # noqa: BLE001 - one bad action must not stop the batch
                                result.failures.append(
                                    Failure(rule.id, action.kind, repr(exc), event)
                                )
                    else:
                        try:
                            correlator.hit(hit, env)
                        except Exception as exc:  # noqa: BLE001 - a bug for one key must not stop all
                            result.failures.append(Failure(rule.id, "correlate", repr(exc), event))
                    groups = groups_at.get(index)
                    if groups is not None:
                        for member, group in groups:
                            try:
                                group.member(member, hit, env)
                            except Exception as exc:  # noqa: BLE001 - as above
                                result.failures.append(
                                    Failure(group.rule.id, "correlate", repr(exc), event)
                                )
                    if hit.dropped:
                        result.dropped += 1
                        break
                    if not rule.continue_:
                        break
                finally:
                    if began:
                        spent[index] += clock_ns() - began
        if watermark > start:
            clock.advanced(watermark, wall)
        result.late = clock.late - late
        result.future = clock.future - future
        stats = self.stats
        for index, count in enumerate(tried):
            if count:
                rule_id = rules[index].id
                timed = (count + _TIME_MASK) // _TIME_EVERY
                entry = stats[rule_id]
                entry.evaluated += count
                entry.eval_ns += spent[index] * count // timed
        return self._finish(result, env)

    def tick(self) -> BatchResult:
        """With no input, let event time follow the wall clock: fire due timers, drop idle keys."""
        result, env = self._new_result()
        self.time.idle(result.now)
        self._fire(self.time.horizon, env)
        return self._finish(result, env)

    def _fire(self, until: float, env: _Env) -> None:
        """Fire every timer due before `until`, in time order."""
        env.observe()  # guards must know every change before their timers judge them
        heap = self._heap
        live = self.correlators
        while heap and heap[0][0] < until:
            due, _, key, _, correlator = heapq.heappop(heap)
            if live.get(correlator.name) is correlator:
                env.result.timers += 1
                try:
                    correlator.timer(key, due, env)
                except Exception as exc:  # noqa: BLE001 - one key's bug must not stop the clock
                    where = Event(
                        time=due, received=due, source="timer", origin=correlator.rule.id,
                        message=f"timer of key {key!r}",
                    )  # fmt: skip
                    env.failures.append(Failure(correlator.rule.id, "timer", repr(exc), where))

    def _finish(self, result: BatchResult, env: _Env) -> BatchResult:
        """Count actions, drop idle keys, and collect changed state for the store."""
        env.observe()
        result.watermark = self.time.watermark
        horizon = self.time.horizon  # a key may matter to an event still within the lateness
        for correlator in self.correlators.values():
            result.expired += correlator.sweep(horizon)
            if correlator.dirty:
                result.state.extend(self._dump(correlator, result.failures))
        # Every action of a plain rule runs once per match: count them per batch, not per run.
        by_id = self._by_id
        correlated = self.correlators
        muting = (
            env.muter is not None or bool(self._flapping) or bool(self._storms)
        )  # then act() counted them
        stats = self.stats
        for rule_id, count in result.matches.items():
            stats[rule_id].matches += count
            if rule_id not in correlated and not muting:
                actions = by_id[rule_id].actions
                for action in actions:
                    result.actions[action.kind] += count
                if actions:
                    result.rule_actions[rule_id] += count * len(actions)
        for rule_id, count in result.rule_actions.items():
            stats.setdefault(rule_id, RuleStats()).actions += count
        return result

    def _dump(self, correlator: Correlator, failures: list[Failure]) -> list[StateRow]:
        """Rows for the keys changed since the last dump, numbered least recent first.

        A state that cannot be written (an event nested past the JSON encoder's depth) is
        dropped with a failure: the batch and the other keys are still saved.
        """
        rule_id = correlator.name
        states = correlator.states
        dirty = correlator.dirty
        rows: list[StateRow] = [(rule_id, key, None, 0) for key in dirty if key not in states]
        live = len(dirty) - len(rows)
        # Changed keys are the most recently used: the tail of the dict, in recency order.
        newest = list(itertools.islice(reversed(states), live))
        newest.reverse()
        seq = self._row_seq
        dump = correlator.dump
        picked = [key for key in newest if key in dirty]
        if len(picked) != live:  # only if a change forgot to move its key: never lose one
            picked = [key for key in states if key in dirty]
        for key in picked:
            try:
                blob = json.dumps(dump(states[key]), default=str)  # odd field types: as text
            except (RecursionError, ValueError, TypeError) as exc:
                del states[key]
                rows.append((rule_id, key, None, 0))
                where = Event(time=0.0, received=0.0, source="state", origin=rule_id, message=key)
                failures.append(Failure(correlator.rule.id, "state", repr(exc)[:200], where))
                continue
            rows.append((rule_id, key, blob, next(seq)))
        dirty.clear()
        return rows

    def digests(self) -> dict[str, str]:
        """The definitions behind the correlation state, to store with it."""
        return {rule_id: _digest(c) for rule_id, c in self.correlators.items()}

    def restore(
        self,
        *,
        digests: Mapping[str, str],
        rows: Mapping[str, Sequence[tuple[str, str]]],
        watermark: float,
        wall: float,
        seq: int = 0,
    ) -> list[str]:
        """Load saved correlation state for unchanged rules; return the rules whose state went.

        Each rule's rows come least recently used first; `seq` is the newest row's number.
        """
        self.time.restore(watermark, wall)
        unreadable: list[str] = []
        for rule_id, correlator in self.correlators.items():
            if digests.get(rule_id) != _digest(correlator):
                continue
            try:
                for key, blob in rows.get(rule_id, ()):
                    state = correlator.load(json.loads(blob))
                    correlator.states[key] = state
                    due = correlator.due(state)
                    if due is not None:
                        self._heap.append((due, correlator.order, key, next(self._seq), correlator))
            except (ValueError, TypeError, KeyError, IndexError):
                # A damaged row: that rule starts fresh rather than the daemon not starting.
                correlator.states.clear()
                self._heap[:] = [t for t in self._heap if t[4] is not correlator]
                unreadable.append(rule_id)
        heapq.heapify(self._heap)
        self._row_seq = itertools.count(seq + 1)
        return sorted(
            {
                *unreadable,
                *(
                    rule_id
                    for rule_id, digest in digests.items()
                    if (c := self.correlators.get(rule_id)) is None or _digest(c) != digest
                ),
            }
        )

    def reload(self, rules: Sequence[Rule], lists: Mapping[str, list[Any]]) -> list[str]:
        """Swap in new rules; unchanged rules keep their state. Return rules whose state went."""
        old = self.correlators
        self._install(rules, lists)
        for rule_id, correlator in self.correlators.items():
            before = old.get(rule_id)
            if before is not None and before.rule.digest == correlator.rule.digest:
                correlator.states = before.states
                correlator.dirty = before.dirty
        # Timers point at correlator objects: re-arm them on the new ones.
        self._heap.clear()
        for correlator in self.correlators.values():
            for key, state in correlator.states.items():
                due = correlator.due(state)
                if due is not None:
                    self._heap.append((due, correlator.order, key, next(self._seq), correlator))
        heapq.heapify(self._heap)
        return sorted(
            rule_id
            for rule_id, before in old.items()
            if (c := self.correlators.get(rule_id)) is None or c.rule.digest != before.rule.digest
        )

    def rule_stats(self) -> list[tuple[Rule, RuleStats]]:
        """Each loaded rule, then the hidden clear/expect followers, with their figures so far."""
        return [
            (rule, dataclasses.replace(self.stats[rule.id]))
            for rule in (*self.all_rules, *self._followers)
        ]

    def pending_timers(self) -> int:
        """Timers waiting for event time to pass them (some may be stale)."""
        live = self.correlators
        return sum(1 for *_, c in self._heap if live.get(c.name) is c)

    def live_keys(self) -> dict[str, int]:
        """Keys held per correlated rule (for the gauge)."""
        return {rule_id: len(c.states) for rule_id, c in self.correlators.items()}


def _digest(correlator: Correlator) -> str:
    """What saved state must match: the rule's definition and the state format's version."""
    return f"{correlator.rule.digest}.{STATE_FORMAT}"


def _follower(rule: Rule, role: str, follower: Follower, action: CompiledAction) -> Rule:
    """A hidden rule that runs `action` for events matching a clear or expect follow-up."""
    return Rule(
        id=f"{rule.id}#{role}",
        mark=rule.mark,
        matcher=follower.matcher,
        prefilter=follower.prefilter,
        key=follower.key if follower.key is not None else rule.key,
        actions=[action],
        continue_=True,
    )
