"""Rule-level correlation options, validated into frozen specs the engine builds state from."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tocsin.rules.matchers import MatchCompiler
from tocsin.rules.schema import check_keys, expect_int, expect_list, expect_map, parse_duration
from tocsin.rules.templates import Template
from tocsin.rules.types import CompileContext, CompiledAction, Matcher
from tocsin.yamlsrc import Mark, MarkedList, MarkedMap, value_mark

__all__ = [
    "CORRELATION_KEYS",
    "AbsenceSpec",
    "ClearSpec",
    "CorrelationSpec",
    "ExpectSpec",
    "FlappingSpec",
    "GroupSpec",
    "HysteresisSpec",
    "NewValueSpec",
    "SpikeSpec",
    "StormSpec",
    "SuppressSpec",
    "ThresholdSpec",
    "parse_correlation",
]

# Options that decide when a matched rule acts; a rule takes at most one of them.
MODES = (
    "suppress",
    "threshold",
    "hysteresis",
    "absence",
    "expect",
    "group",
    "spike",
    "new_value",
)
CORRELATION_KEYS = (*MODES, "clear", "flapping", "storm")

ActionsCompiler = Callable[[MarkedList, Mark], list[CompiledAction]]


@dataclass(frozen=True, slots=True)
class SuppressSpec:
    """Act on the first event of a key, absorb its repeats for `within`."""

    within: float


@dataclass(frozen=True, slots=True)
class ThresholdSpec:
    """Act on the `count`-th event of a key within a sliding `within`."""

    count: int
    within: float


@dataclass(frozen=True, slots=True)
class HysteresisSpec:
    """Raise like a threshold; resolve once at most `clear_max` events arrive in `clear_within`."""

    count: int
    within: float
    clear_max: int
    clear_within: float


@dataclass(frozen=True, slots=True)
class AbsenceSpec:
    """Act when a key has been silent for `within`; its next event resolves."""

    within: float


@dataclass(frozen=True, slots=True)
class Follower:
    """A second matcher that looks at every event, whatever the rule order (clear, expect)."""

    matcher: Matcher
    prefilter: str | None
    key: Template | None  # None: the rule's own key template


@dataclass(frozen=True, slots=True)
class ClearSpec:
    """An event matching `follower` with the same key resolves the rule's incident."""

    follower: Follower


@dataclass(frozen=True, slots=True)
class ExpectSpec:
    """After this rule's event, the follower must match within `within`."""

    follower: Follower
    within: float
    on_timeout: tuple[CompiledAction, ...]
    on_arrival: tuple[CompiledAction, ...]


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """Act when `count` of the member rules matched for one key within `within`."""

    members: tuple[str, ...]
    count: int
    within: float


@dataclass(frozen=True, slots=True)
class SpikeSpec:
    """Act when a key's count in `within` is >= `min_count` and >= `ratio` x its usual rate.

    The usual rate is the count in the `reference` before the window, scaled to `within`.
    """

    ratio: float
    within: float
    reference: float
    min_count: int


# A reference window longer than the current one gives a steadier baseline; ElastAlert uses 1x.
SPIKE_REFERENCE = 4
# The reference window may be at most this many current windows long: the engine counts in
# buckets of a tenth of `within`, so this bounds a key's state to 10 + 10 x this buckets.
SPIKE_MAX_REFERENCE = 100
NEW_VALUE_MAX_VALUES = 10_000  # default bound on the values remembered per key


@dataclass(frozen=True, slots=True)
class NewValueSpec:
    """Act the first time a key shows a rendered `value` (e.g. a user's first login to a host)."""

    value: Template
    forget_after: float | None  # None: remembered until pushed out by max_values or the key
    max_values: int


CorrelationSpec = (
    SuppressSpec
    | ThresholdSpec
    | HysteresisSpec
    | AbsenceSpec
    | ExpectSpec
    | GroupSpec
    | SpikeSpec
    | NewValueSpec
)


@dataclass(frozen=True, slots=True)
class Correlation:
    """What a rule's correlation options compiled to."""

    mode: CorrelationSpec | None
    clear: ClearSpec | None
    flapping: FlappingSpec | None = None
    storm: StormSpec | None = None


@dataclass(frozen=True, slots=True)
class FlappingSpec:
    """A key whose incident opens or resolves `changes` times in `within` is flapping.

    Its notifications are held until it has been quiet for `within`, then it settles.
    """

    changes: int
    within: float


@dataclass(frozen=True, slots=True)
class StormSpec:
    """Above `new_keys` new incidents in `within`, further ones fold into one summary."""

    new_keys: int
    within: float


def _window(data: Any, where: Mark, what: str, ctx: CompileContext) -> tuple[int, float]:
    spec = expect_map(data, where, f"'{what}'", ctx.error)
    check_keys(spec, ("count", "within"), f"{what} option", ctx.error, required=("count", "within"))
    count = expect_int(
        spec["count"], value_mark(spec, "count", where), "count", ctx.error, minimum=1
    )
    return count, _positive(spec["within"], value_mark(spec, "within", where), "within", ctx)


def _positive(value: Any, where: Mark, what: str, ctx: CompileContext) -> float:
    seconds = parse_duration(value, where, what, ctx.error)
    if seconds <= 0:
        raise ctx.error(where, f"{what} must be longer than 0s")
    return seconds


def _follower(
    data: MarkedMap, where: Mark, ctx: CompileContext, compiler: MatchCompiler
) -> Follower:
    if "match" not in data:
        raise ctx.error(where, "missing required key 'match'")
    compiled = compiler.compile(data["match"], value_mark(data, "match", where))
    key = (
        ctx.template(data["key"], value_mark(data, "key", where), "key") if "key" in data else None
    )
    return Follower(compiled.matcher, compiled.prefilter, key)


def _group(data: Any, where: Mark, ctx: CompileContext) -> GroupSpec:
    spec = expect_map(data, where, "'group'", ctx.error)
    check_keys(spec, ("all_of", "count_distinct", "within"), "group option", ctx.error)
    if ("all_of" in spec) == ("count_distinct" in spec):
        raise ctx.error(where, "'group' takes exactly one of 'all_of' and 'count_distinct'")
    if "within" not in spec:
        raise ctx.error(where, "missing required key 'within'")
    within = _positive(spec["within"], value_mark(spec, "within", where), "within", ctx)
    if "all_of" in spec:
        members = _members(spec["all_of"], value_mark(spec, "all_of", where), ctx)
        return GroupSpec(members, len(members), within)
    cmark = value_mark(spec, "count_distinct", where)
    distinct = expect_map(spec["count_distinct"], cmark, "'count_distinct'", ctx.error)
    check_keys(
        distinct,
        ("rules", "count"),
        "count_distinct option",
        ctx.error,
        required=("rules", "count"),
    )
    members = _members(distinct["rules"], value_mark(distinct, "rules", cmark), ctx)
    count = expect_int(
        distinct["count"], value_mark(distinct, "count", cmark), "count", ctx.error, minimum=1
    )
    if count > len(members):
        raise ctx.error(
            value_mark(distinct, "count", cmark),
            f"count {count} is more than the {len(members)} rules listed",
        )
    return GroupSpec(members, count, within)


def _members(value: Any, where: Mark, ctx: CompileContext) -> tuple[str, ...]:
    items = expect_list(value, where, "the member rules", ctx.error)
    if len(items) < 2:
        raise ctx.error(where, "a group needs at least 2 member rules")
    members: list[str] = []
    for index, item in enumerate(items):
        imark = value_mark(items, index, where)
        if not isinstance(item, str):
            raise ctx.error(imark, f"member {item!r} must be a rule id")
        if item in members:
            raise ctx.error(imark, f"rule '{item}' is listed twice")
        if item == ctx.rule_id:
            raise ctx.error(imark, "a group cannot list itself")
        members.append(item)
    return tuple(members)


# A key with no history has no usual rate: without a floor, its first event would be a spike.
SPIKE_MIN_COUNT = 10


def _spike(data: Any, where: Mark, ctx: CompileContext) -> SpikeSpec:
    spec = expect_map(data, where, "'spike'", ctx.error)
    check_keys(
        spec,
        ("ratio", "within", "reference", "min_count"),
        "spike option",
        ctx.error,
        required=("ratio", "within"),
    )
    rmark = value_mark(spec, "ratio", where)
    ratio = spec["ratio"]
    if not isinstance(ratio, int | float) or isinstance(ratio, bool) or not 1 < ratio < math.inf:
        raise ctx.error(rmark, f"ratio must be a number greater than 1, not {ratio!r}")
    within = _positive(spec["within"], value_mark(spec, "within", where), "within", ctx)
    reference = within * SPIKE_REFERENCE
    if "reference" in spec:
        fmark = value_mark(spec, "reference", where)
        reference = _positive(spec["reference"], fmark, "reference", ctx)
        if not within <= reference <= within * SPIKE_MAX_REFERENCE:
            raise ctx.error(
                fmark,
                f"reference must be from 1 to {SPIKE_MAX_REFERENCE} times within "
                f"({within:g}s to {within * SPIKE_MAX_REFERENCE:g}s)",
            )
    min_count = (
        expect_int(
            spec["min_count"],
            value_mark(spec, "min_count", where),
            "min_count",
            ctx.error,
            minimum=1,
        )
        if "min_count" in spec
        else SPIKE_MIN_COUNT
    )
    return SpikeSpec(float(ratio), within, reference, min_count)


def _new_value(data: Any, where: Mark, ctx: CompileContext) -> NewValueSpec:
    spec = expect_map(data, where, "'new_value'", ctx.error)
    check_keys(
        spec,
        ("value", "forget_after", "max_values"),
        "new_value option",
        ctx.error,
        required=("value",),
    )
    value = ctx.template(spec["value"], value_mark(spec, "value", where), "value")
    forget_after = (
        _positive(
            spec["forget_after"], value_mark(spec, "forget_after", where), "forget_after", ctx
        )
        if "forget_after" in spec
        else None
    )
    max_values = (
        expect_int(
            spec["max_values"],
            value_mark(spec, "max_values", where),
            "max_values",
            ctx.error,
            minimum=1,
        )
        if "max_values" in spec
        else NEW_VALUE_MAX_VALUES
    )
    return NewValueSpec(value, forget_after, max_values)


def parse_correlation(
    data: MarkedMap,
    where: Mark,
    ctx: CompileContext,
    compiler: MatchCompiler,
    compile_actions: ActionsCompiler,
) -> Correlation:
    """Validate a rule's correlation options (at most one mode, plus an optional clear)."""
    modes = [name for name in MODES if name in data]
    if len(modes) > 1:
        raise ctx.error(
            value_mark(data, modes[1], where),
            f"'{modes[1]}' cannot be combined with '{modes[0]}'; a rule takes one of "
            + ", ".join(MODES),
        )
    mode: CorrelationSpec | None = None
    name = modes[0] if modes else None
    vmark = value_mark(data, name, where) if name else where
    if name == "suppress":
        mode = SuppressSpec(_positive(data[name], vmark, "suppress", ctx))
    elif name == "threshold":
        mode = ThresholdSpec(*_window(data[name], vmark, "threshold", ctx))
    elif name == "hysteresis":
        spec = expect_map(data[name], vmark, "'hysteresis'", ctx.error)
        check_keys(
            spec, ("raise", "clear"), "hysteresis option", ctx.error, required=("raise", "clear")
        )
        count, within = _window(spec["raise"], value_mark(spec, "raise", vmark), "raise", ctx)
        cmark = value_mark(spec, "clear", vmark)
        lower = expect_map(spec["clear"], cmark, "'clear'", ctx.error)
        check_keys(lower, ("max", "within"), "clear option", ctx.error, required=("max", "within"))
        mode = HysteresisSpec(
            count,
            within,
            expect_int(lower["max"], value_mark(lower, "max", cmark), "max", ctx.error, minimum=0),
            _positive(lower["within"], value_mark(lower, "within", cmark), "within", ctx),
        )
    elif name == "absence":
        spec = expect_map(data[name], vmark, "'absence'", ctx.error)
        check_keys(spec, ("within",), "absence option", ctx.error, required=("within",))
        mode = AbsenceSpec(
            _positive(spec["within"], value_mark(spec, "within", vmark), "within", ctx)
        )
    elif name == "expect":
        spec = expect_map(data[name], vmark, "'expect'", ctx.error)
        check_keys(
            spec,
            ("match", "key", "within", "on_timeout", "on_arrival"),
            "expect option",
            ctx.error,
            required=("match", "within", "on_timeout"),
        )
        on_arrival: list[CompiledAction] = []
        if "on_arrival" in spec:
            amark = value_mark(spec, "on_arrival", vmark)
            on_arrival = compile_actions(
                expect_list(spec["on_arrival"], amark, "'on_arrival'", ctx.error), amark
            )
        tmark = value_mark(spec, "on_timeout", vmark)
        mode = ExpectSpec(
            _follower(spec, vmark, ctx, compiler),
            _positive(spec["within"], value_mark(spec, "within", vmark), "within", ctx),
            tuple(
                compile_actions(
                    expect_list(spec["on_timeout"], tmark, "'on_timeout'", ctx.error), tmark
                )
            ),
            tuple(on_arrival),
        )
    elif name == "group":
        mode = _group(data[name], vmark, ctx)
    elif name == "spike":
        mode = _spike(data[name], vmark, ctx)
    elif name == "new_value":
        mode = _new_value(data[name], vmark, ctx)
    clear: ClearSpec | None = None
    if "clear" in data:
        cmark = value_mark(data, "clear", where)
        if isinstance(mode, AbsenceSpec | HysteresisSpec):
            raise ctx.error(
                cmark, f"'clear' cannot be combined with '{name}', which resolves by itself"
            )
        clear_spec = expect_map(data["clear"], cmark, "'clear'", ctx.error)
        check_keys(clear_spec, ("match", "key"), "clear option", ctx.error, required=("match",))
        if isinstance(mode, GroupSpec) and "key" not in clear_spec:
            raise ctx.error(
                cmark, "'clear' on a group rule needs its own 'key': the group rule has none"
            )
        clear = ClearSpec(_follower(clear_spec, cmark, ctx, compiler))
    flapping = storm = None
    if "flapping" in data:
        fmark = value_mark(data, "flapping", where)
        spec = expect_map(data["flapping"], fmark, "'flapping'", ctx.error)
        check_keys(
            spec,
            ("changes", "within"),
            "flapping option",
            ctx.error,
            required=("changes", "within"),
        )
        changes = expect_int(
            spec["changes"], value_mark(spec, "changes", fmark), "changes", ctx.error, minimum=2
        )
        flapping = FlappingSpec(
            changes, _positive(spec["within"], value_mark(spec, "within", fmark), "within", ctx)
        )
    if "storm" in data:
        smark = value_mark(data, "storm", where)
        spec = expect_map(data["storm"], smark, "'storm'", ctx.error)
        check_keys(
            spec, ("new_keys", "within"), "storm option", ctx.error, required=("new_keys", "within")
        )
        storm = StormSpec(
            expect_int(
                spec["new_keys"],
                value_mark(spec, "new_keys", smark),
                "new_keys",
                ctx.error,
                minimum=1,
            ),
            _positive(spec["within"], value_mark(spec, "within", smark), "within", ctx),
        )
    return Correlation(mode, clear, flapping, storm)
