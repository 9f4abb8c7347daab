"""`tocsin explain`: which rules an event matches, why each other one does not, and what would
happen. Offline: a throwaway engine over the daemon's own compiled rules; nothing is stored,
sent or run.

The verdict of each rule is the engine's own matcher's; the reason a rule fails comes from an
explaining check compiled from the same `match:` by the same compiler (rules.matchers), which
the engine never runs. The two are compared on every event: a disagreement is reported.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tocsin.config import Config, CorrelationConfig
from tocsin.engine.clock import SystemClock
from tocsin.engine.muting import Muter, hit_labels
from tocsin.engine.pipeline import BatchResult, Engine
from tocsin.explain.inputs import copy_event
from tocsin.model import Event, Incident
from tocsin.mute import format_time
from tocsin.mute.inhibit import InhibitRule
from tocsin.mute.schedule import MaintenanceWindow
from tocsin.mute.silences import Silence, SilenceBook
from tocsin.notify.routing import Route
from tocsin.records.incidents import REOPEN_WINDOW, IncidentBook, fingerprint
from tocsin.records.priority import PriorityMatrix
from tocsin.records.views import route_labels
from tocsin.rules.correlation import (
    AbsenceSpec,
    ExpectSpec,
    GroupSpec,
    HysteresisSpec,
    NewValueSpec,
    SpikeSpec,
    SuppressSpec,
    ThresholdSpec,
)
from tocsin.rules.loader import RuleSet, display_path, find_rule_files
from tocsin.rules.matchers import Check, MatchCompiler, Miss
from tocsin.rules.schema import format_duration, plain_errors
from tocsin.rules.types import ActionOutput, Hit, Rule
from tocsin.yamlsrc import Mark, MarkedList, MarkedMap, SourceError, load_yaml_file, value_mark

__all__ = [
    "Explanation",
    "Outcome",
    "RuleVerdict",
    "Setup",
    "explain",
    "setup_from",
]

# Modes whose first event does not act: the explanation also shows what acting would do.
_WAITING = (ThresholdSpec, HysteresisSpec, SpikeSpec, AbsenceSpec)


@dataclass(frozen=True, slots=True)
class Setup:
    """What the daemon's config gives an explanation: rules and their checks, muting, routing."""

    ruleset: RuleSet
    checks: Mapping[str, Check]  # rule id (and "id#clear", "id#expect") -> explaining check
    priorities: PriorityMatrix = field(default_factory=PriorityMatrix)
    correlation: CorrelationConfig = field(default_factory=CorrelationConfig)
    windows: tuple[MaintenanceWindow, ...] = ()
    inhibit: tuple[InhibitRule, ...] = ()
    route: Route | None = None
    receivers: Collection[str] = ()
    reopen_window: float = REOPEN_WINDOW
    configured: bool = False  # from a config: muting and routing are known


def setup_from(ruleset: RuleSet, paths: Sequence[Path], config: Config | None) -> Setup:
    """Compile the explaining checks of the loaded rules; take muting and routing from config."""
    checks = compile_checks(paths, ruleset)
    if config is None:
        return Setup(ruleset, checks)
    return Setup(
        ruleset,
        checks,
        priorities=config.priorities,
        correlation=config.correlation,
        windows=config.maintenance,
        inhibit=config.inhibit,
        route=config.incidents.route,
        receivers=tuple(config.incidents.receivers),
        reopen_window=config.incidents.reopen_window,
        configured=True,
    )


def compile_checks(paths: Sequence[Path], ruleset: RuleSet) -> dict[str, Check]:
    """Read the rule files again and compile each loaded rule's `match:` with explain=True.

    Rules the loader refused are skipped; so is a rule whose file changed in between so that
    it no longer compiles (its verdicts are still the engine's, only the reason is missing).
    """
    files: list[MarkedMap] = []
    macros: dict[str, tuple[Any, Mark]] = {}
    for path in find_rule_files(paths):
        try:
            data = load_yaml_file(path, name=display_path(path))
        except (OSError, SourceError):
            continue
        if not isinstance(data, MarkedMap):
            continue
        files.append(data)
        named = data.get("macros")
        if isinstance(named, MarkedMap):
            for name, spec in named.items():
                if isinstance(name, str):  # the first definition wins, as in the loader
                    macros.setdefault(name, (spec, value_mark(named, name, named.mark)))
    loaded = {rule.id for rule in ruleset.rules if rule.matcher is not None}
    compiler = MatchCompiler(
        lists=ruleset.lists,
        macros=macros,
        errors=plain_errors,
        warn=lambda _where, _message: None,
        explain=True,
    )
    checks: dict[str, Check] = {}
    for data in files:
        items = data.get("rules")
        if not isinstance(items, MarkedList):
            continue
        for index, spec in enumerate(items):
            if not isinstance(spec, MarkedMap):
                continue
            rule_id = spec.get("id")
            if not isinstance(rule_id, str) or rule_id not in loaded or rule_id in checks:
                continue
            where = value_mark(items, index, data.mark)
            parts = [(rule_id, spec)] + [
                (f"{rule_id}#{role}", spec[role])
                for role in ("clear", "expect")
                if isinstance(spec.get(role), MarkedMap)
            ]
            for name, holder in parts:
                if "match" not in holder:
                    continue
                try:
                    compiled = compiler.compile(holder["match"], value_mark(holder, "match", where))
                except SourceError:
                    continue
                if compiled.explain is not None:
                    checks[name] = compiled.explain
    return checks


@dataclass(slots=True)
class RuleVerdict:
    """What one rule made of the event, in the order the engine tries rules."""

    rule: Rule
    status: str  # matched, no_match, when_false, failed, or group (no matcher of its own)
    follower_of: str = ""  # a clear or expect follow-up of this rule
    miss: Miss | None = None  # no_match: the first condition that failed
    captures: dict[str, Any] = field(default_factory=dict)
    key: str | None = None
    error: str = ""  # when_false: the expression; failed: what was raised
    stopped_by: str = ""  # an earlier rule that stopped the event: the engine never got here
    agrees: bool = True  # the explaining check said what the engine's matcher said
    members: tuple[str, ...] = ()  # group: its member rules that matched this event

    @property
    def acted(self) -> bool:
        """Whether the engine matched this rule (and so ran, or correlated, its actions)."""
        return self.status == "matched" and not self.stopped_by


@dataclass(slots=True)
class Outcome:
    """What one matched rule would do with the event."""

    rule: Rule
    key: str
    outputs: list[ActionOutput]  # what the throwaway engine did, in order
    runs: list[str]  # runbooks a remediate action asked for (never run here)
    correlation: list[str]  # what its correlation options mean for this event
    when_acting: list[ActionOutput]  # a waiting mode (threshold...): what acting would do
    muted: str | None  # why it would be muted now; None: not muted
    windows: list[tuple[MaintenanceWindow, bool]]  # config windows that match: active?
    routes: list[Route] | None  # where its incident goes; None: it raises no incident
    incident: Incident | None


@dataclass(slots=True)
class Explanation:
    """Everything `tocsin explain` shows; `notes` are the limits of an offline look."""

    event: Event
    verdicts: list[RuleVerdict]
    outcomes: list[Outcome]
    silences: int | None  # silences active at the event's time; None: not consulted
    notes: list[str]
    disagreements: list[str]  # where the explaining checks and the engine differ (a bug)
    configured: bool = True  # from a config: muting and routing were known


def explain(
    event: Event, setup: Setup, *, silences: Sequence[Silence] | None = None
) -> Explanation:
    """Run the event through a throwaway engine and explain each rule's verdict."""
    muter = Muter(
        silences=SilenceBook(silences=silences or ()),
        windows=setup.windows,
        inhibit=setup.inhibit,
    )
    engine = _engine(setup, setup.ruleset.rules, muter)
    result = engine.process([copy_event(event)])
    verdicts, before = _walk(event, setup, engine, result)
    disagreements = _compare(verdicts, result)
    outcomes = [
        _outcome(
            verdict,
            before.get(verdict.rule.id, event),
            setup=setup,
            engine=engine,
            result=result,
            muter=muter,
        )
        for verdict in verdicts
        if (verdict.acted and not verdict.follower_of) or verdict.members
    ]
    notes = _notes(setup, outcomes, silences, verdicts)
    active = None
    if silences is not None:
        active = sum(1 for s in silences if s.is_active(event.time))
    return Explanation(
        event, verdicts, outcomes, active, notes, disagreements, configured=setup.configured
    )


def _engine(setup: Setup, rules: Sequence[Rule], muter: Muter | None) -> Engine:
    correlation = setup.correlation
    return Engine(
        rules=rules,
        lists=setup.ruleset.lists,
        book=IncidentBook(priorities=setup.priorities, reopen_window=setup.reopen_window),
        clock=SystemClock(),
        record_outputs=True,
        lateness=correlation.lateness,
        skew=correlation.clock_skew,
        max_keys=correlation.max_keys,
        muter=muter,
    )


def _walk(
    event: Event, setup: Setup, engine: Engine, result: BatchResult
) -> tuple[list[RuleVerdict], dict[str, Event]]:
    """Try every rule in the engine's order, as the engine does, but on past the first match.

    Captures of a rule that matched join the event's fields for the rules after it, as in
    the engine; rules after the one that stopped the event are tried on what it had then.
    Returns the verdicts (clear and expect follow-ups first, as the engine tries them, then
    the rules in load order) and, per matched rule, the event as that rule saw it.
    """
    lists = setup.ruleset.lists
    current = copy_event(event)
    stopped = ""
    tried: dict[str, RuleVerdict] = {}
    before: dict[str, Event] = {}
    for rule in engine.rules:
        probe = current if not stopped else copy_event(current)
        verdict = _try(rule, probe, setup.checks.get(rule.id), lists)
        owner, _, role = rule.id.partition("#")  # rule ids hold no '#'; followers' do
        verdict.follower_of = owner if role else ""
        verdict.stopped_by = stopped
        if verdict.status == "matched" and not stopped:
            before[rule.id] = copy_event(probe)
            probe.fields.update(verdict.captures)
            drops = rule.correlation is None and any(a.kind == "drop" for a in rule.actions)
            if drops or not rule.continue_:
                stopped = rule.id
        tried[rule.id] = verdict
    verdicts = [v for v in tried.values() if v.follower_of]
    for rule in setup.ruleset.rules:
        if rule.id in tried:
            verdicts.append(tried[rule.id])
            continue
        mode = rule.correlation.mode if rule.correlation else None
        members = mode.members if isinstance(mode, GroupSpec) else ()
        matched = tuple(m for m in members if m in result.matches)
        verdicts.append(RuleVerdict(rule, "group", members=matched))
    return verdicts, before


def _try(
    rule: Rule, event: Event, check: Check | None, lists: Mapping[str, list[Any]]
) -> RuleVerdict:
    """One rule on one event: its matcher's verdict, the first miss, `when` and the key."""
    assert rule.matcher is not None
    captures: dict[str, Any] = {}
    try:
        matched = rule.matcher(event, captures)
    except Exception as exc:  # noqa: BLE001 - the engine counts a raising matcher as failed
        return RuleVerdict(rule, "failed", error=f"the matcher raised {exc!r}")
    miss = None
    agrees = True
    if check is not None:
        try:
            miss = check(event, {})
        except Exception:  # noqa: BLE001 - the verdict is the matcher's; only the reason is lost
            miss = None
        agrees = (miss is None) == matched
    if not matched:
        return RuleVerdict(rule, "no_match", miss=miss, agrees=agrees)
    fields = event.fields
    if rule.when is not None:
        variables = {
            **captures,
            "event": event,
            "fields": {**fields, **captures} if captures else fields,
            "lists": lists,
        }
        try:
            if not rule.when(variables):
                return RuleVerdict(
                    rule, "when_false", captures=captures, error=rule.when.source, agrees=agrees
                )
        except Exception as exc:  # noqa: BLE001 - as in the engine: the rule does not match
            return RuleVerdict(rule, "failed", captures=captures, error=f"when: {exc}")
    merged = copy_event(event)
    merged.fields.update(captures)
    key = ""
    if rule.key is not None:
        try:
            key = rule.key.render(Hit(merged, rule, captures, lists, time=event.time).variables)
        except Exception as exc:  # noqa: BLE001 - as in the engine: the rule does not match
            return RuleVerdict(rule, "failed", captures=captures, error=f"key: {exc}")
    return RuleVerdict(rule, "matched", captures=captures, key=key, agrees=agrees)


def _compare(verdicts: list[RuleVerdict], result: BatchResult) -> list[str]:
    """Where the explaining checks, this walk and the engine's own run disagree (bugs all)."""
    found = [
        f"rule '{v.rule.id}': its explaining check and its matcher disagree"
        for v in verdicts
        if not v.agrees
    ]
    walked = {v.rule.id for v in verdicts if v.acted}
    for rule_id in sorted(walked ^ set(result.matches)):
        said = "matched" if rule_id in result.matches else "did not match"
        found.append(f"rule '{rule_id}': the engine {said} it, the explanation says otherwise")
    return found


def _outcome(
    verdict: RuleVerdict,
    seen: Event,
    *,
    setup: Setup,
    engine: Engine,
    result: BatchResult,
    muter: Muter,
) -> Outcome:
    rule = verdict.rule
    outputs = [o for o in result.outputs or () if o.rule == rule.id]
    key = verdict.key or next((o.key for o in outputs), "")  # a group's: its members'
    runs = [run.runbook for run in result.runs if run.rule == rule.id]
    when_acting: list[ActionOutput] = []
    book = engine.book
    mode = rule.correlation.mode if rule.correlation else None
    if isinstance(mode, _WAITING) and not outputs:
        eager = dataclasses.replace(rule, correlation=None)
        alone = _engine(setup, [eager], None)
        acted = alone.process([copy_event(seen)])
        when_acting = list(acted.outputs or ())
        book = alone.book
    incident = book.get(fingerprint(rule.id, key))
    merged = copy_event(seen)
    merged.fields.update(verdict.captures)
    hit = Hit(merged, rule, verdict.captures, setup.ruleset.lists, None, time=seen.time)
    hit.key = key
    labels = hit_labels(hit, incident)
    decision = None
    if muter.engaged:
        decision = muter.decide(labels, fingerprint(rule.id, key), seen.time)
    windows = [(w, w.active(seen.time)) for w in setup.windows if w.matches(labels)]
    routes = None
    if incident is not None and setup.route is not None:
        routes = setup.route.match(route_labels(incident))
    elif incident is not None and setup.configured:
        routes = []
    return Outcome(
        rule=rule,
        key=key,
        outputs=outputs,
        runs=runs,
        correlation=_correlation(rule, key, setup.ruleset.rules),
        when_acting=when_acting,
        muted=decision.reason if decision is not None else None,
        windows=windows,
        routes=routes,
        incident=incident,
    )


def _correlation(rule: Rule, key: str, rules: Sequence[Rule]) -> list[str]:
    """What the rule's correlation options mean for one event of this key."""
    said: list[str] = []
    correlation = rule.correlation
    mode = correlation.mode if correlation else None
    shown = f"key {json.dumps(key, ensure_ascii=False)}"
    if isinstance(mode, SuppressSpec):
        said.append(
            f"suppress {format_duration(mode.within)}: the first event of {shown} acts; "
            f"its repeats for {format_duration(mode.within)} only count into its incident "
            "(the daemon may be suppressing this key already)"
        )
    elif isinstance(mode, ThresholdSpec | HysteresisSpec):
        kind = "threshold" if isinstance(mode, ThresholdSpec) else "hysteresis"
        alone = "one event alone does not act" if mode.count > 1 else "each event acts (count 1)"
        said.append(
            f"{kind}: counts toward {mode.count} within {format_duration(mode.within)} "
            f"for {shown}; {alone}"
        )
        if isinstance(mode, HysteresisSpec):
            said.append(
                f"it resolves once at most {mode.clear_max} events arrive in "
                f"{format_duration(mode.clear_within)}"
            )
    elif isinstance(mode, AbsenceSpec):
        said.append(
            f"absence: acts when {shown} has been silent for {format_duration(mode.within)}; "
            "this event starts the wait again (and resolves an open absence incident)"
        )
    elif isinstance(mode, ExpectSpec):
        said.append(
            f"expect: waits {format_duration(mode.within)} for the follow-up event of {shown}; "
            "if none comes, its on_timeout actions run"
        )
    elif isinstance(mode, GroupSpec):
        said.append(
            f"group: acts when {mode.count} of its {len(mode.members)} member rules match for "
            f"one key within {format_duration(mode.within)}"
        )
    elif isinstance(mode, SpikeSpec):
        said.append(
            f"spike: acts when the count of {shown} in {format_duration(mode.within)} is at "
            f"least {mode.min_count} and {mode.ratio:g}x its usual rate; one event alone "
            "does not act"
        )
    elif isinstance(mode, NewValueSpec):
        said.append(
            f"new_value: acts the first time {shown} shows a value of {mode.value.source!r}; "
            "the daemon may have seen this one"
        )
    if correlation is not None and correlation.clear is not None:
        said.append(f"clear: a later event matching its clear: with {shown} resolves its incident")
    if correlation is not None and correlation.flapping is not None:
        spec = correlation.flapping
        said.append(
            f"flapping: if its incident opens or resolves {spec.changes} times within "
            f"{format_duration(spec.within)}, notifications are held until it settles"
        )
    if correlation is not None and correlation.storm is not None:
        storm = correlation.storm
        said.append(
            f"storm: above {storm.new_keys} new incidents within "
            f"{format_duration(storm.within)}, new ones fold into one summary incident"
        )
    for group in rules:
        spec_of = group.correlation.mode if group.correlation else None
        if isinstance(spec_of, GroupSpec) and rule.id in spec_of.members:
            said.append(
                f"member of group '{group.id}': counts toward {spec_of.count} of "
                f"{len(spec_of.members)} rules within {format_duration(spec_of.within)} "
                "for the key"
            )
    return said


def _notes(
    setup: Setup,
    outcomes: list[Outcome],
    silences: Sequence[Silence] | None,
    verdicts: list[RuleVerdict],
) -> list[str]:
    """The limits of an offline explanation, said where they matter."""
    notes = []
    if any(o.incident is not None for o in outcomes):
        notes.append(
            "offline: the daemon's open incidents are not known, so an incident shows as "
            "opened where the running daemon may count the event into an open one"
        )
    if not setup.configured:
        notes.append("no config given (--rules): maintenance windows and routing not known")
    if silences is None:
        notes.append("silences live in the daemon and were not consulted (give --url to ask it)")
    if setup.inhibit:
        notes.append(
            f"inhibition ({len(setup.inhibit)} rules) depends on which incidents are open: "
            "not evaluated"
        )
    if setup.windows or silences is not None:
        notes.append("maintenance windows made through the API live in the daemon: not consulted")
    if not any(v.status == "matched" and not v.follower_of for v in verdicts):
        notes.append("no rule matches: the event would be counted and otherwise ignored")
    if any(o.runs for o in outcomes):
        notes.append("remediation is shown, never run")
    return notes


def event_view(event: Event) -> dict[str, Any]:
    """The event as JSON output shows it."""
    return {
        "time": _iso(event.time),
        "received": _iso(event.received),
        "source": event.source,
        "origin": event.origin,
        "host": event.host,
        "program": event.program,
        "level": event.level,
        "severity": str(event.severity),
        "message": event.message,
        "fields": event.fields,
    }


def _iso(when: float) -> str | float:
    return format_time(when) if math.isfinite(when) else when
