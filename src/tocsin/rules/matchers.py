"""Compile `match:` mappings into plain closures, once, at load time.

Regexes run on RE2 (linear time, so a crafted line cannot stall the engine); a pattern
RE2 rejects falls back to Python `re` with a load-time warning.

A compiler made with `explain=True` also builds, from the same walk and the same predicates,
a check that says which condition failed (`tocsin explain`); the engine never runs it.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import re2

from tocsin.model import Event
from tocsin.rules.schema import Errors, expect_list, expect_map, expect_str
from tocsin.rules.types import Matcher
from tocsin.yamlsrc import Mark, MarkedList, MarkedMap, did_you_mean, key_mark, value_mark

__all__ = [
    "ATTRIBUTES",
    "OPERATORS",
    "RE2_OPTIONS",
    "Check",
    "CompiledMatch",
    "MatchCompiler",
    "Miss",
    "Regex",
]

ATTRIBUTES: tuple[str, ...] = (
    "source",
    "origin",
    "host",
    "program",
    "severity",
    "level",
    "message",
    "time",
    "received",
)
OPERATORS: tuple[str, ...] = (
    "regex",
    "contains",
    "startswith",
    "endswith",
    "in",
    "not_in",
    "gt",
    "ge",
    "lt",
    "le",
    "exists",
)
COMBINATORS: tuple[str, ...] = ("any", "all", "not", "macro")

_MISSING: Any = object()

_UNANCHORED: Any = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)

# Compile errors are reported by us with file:line; RE2's own stderr logging would be noise.
RE2_OPTIONS = re2.Options()
RE2_OPTIONS.log_errors = False

Getter = Callable[[Event], Any]
Predicate = Callable[[Any, dict[str, Any]], bool]
Warn = Callable[[Mark, str], None]


class Regex:
    """A compiled pattern: RE2 when it can, Python `re` otherwise; captures by name."""

    __slots__ = ("group_slots", "groups", "is_re2", "pattern", "search", "spans")

    def __init__(self, pattern: str, *, where: Mark, errors: Errors, warn: Warn) -> None:
        self.pattern = pattern
        compiled: Any
        try:
            compiled = re2.compile(pattern, options=RE2_OPTIONS)
            self.is_re2 = True
        except re2.error as re2_error:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise errors(where, f"invalid regex '{pattern}': {exc}") from None
            self.is_re2 = False
            reason = re2_error.args[0] if re2_error.args else re2_error
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            warn(
                where,
                f"regex '{pattern}' is not supported by RE2 ({reason}); using Python re, "
                "which is not linear-time",
            )
        self.search: Callable[[str], Any] = compiled.search
        self.groups: bool = bool(compiled.groupindex)
        self.group_slots = tuple(sorted(compiled.groupindex.items(), key=lambda kv: kv[1]))
        # google-re2's low-level match returns byte spans without building match objects.
        low_level = getattr(compiled, "_regexp", None) if self.is_re2 and _UNANCHORED else None
        self.spans: Callable[[Any, bytes, int, int], Any] | None = getattr(low_level, "Match", None)


@dataclass(frozen=True, slots=True)
class Miss:
    """The first condition of a `match:` that an event failed, and what it had instead."""

    field: str  # the attribute, like program or fields.user; "" for any and not
    op: str  # equals, in, an OPERATORS name, any or not
    expected: Any  # what the rule asks for: a value, a list, a pattern, or a not's mapping
    got: Any = None  # the event's value (None when missing)
    missing: bool = False  # the event has no such attribute or field
    within: tuple[str, ...] = ()  # the macros and all/any items it sits in, outermost first
    alternatives: tuple[Miss, ...] = ()  # for any: each alternative's own first miss


# An explaining matcher: fills the captures like the Matcher, returns None when it holds.
Check = Callable[[Event, dict[str, Any]], Miss | None]


@dataclass(frozen=True, slots=True)
class CompiledMatch:
    """A compiled matcher and the RE2 pattern (if any) a message must match for it to hold."""

    matcher: Matcher
    prefilter: str | None
    explain: Check | None = None  # only from a compiler made with explain=True


@dataclass(frozen=True, slots=True)
class _Part:
    """One compiled condition: the engine's matcher and, when explaining, its check."""

    matcher: Matcher
    check: Check | None


def _getter(attr: str) -> Getter:
    if attr.startswith("fields."):
        path = attr.split(".")[1:]
        head, rest = path[0], path[1:]

        def get_field(event: Event) -> Any:
            value = event.fields.get(head, _MISSING)
            for step in rest:
                if isinstance(value, dict):
                    value = value.get(step, _MISSING)
                elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
                    value = value[int(step)]
                else:
                    return _MISSING
            return value

        return get_field
    return operator.attrgetter(attr)


def _text_of(value: Any) -> str | None:
    """Return the text form used by string operators (None when missing)."""
    if value is _MISSING or value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _number(value: Any) -> float | None:
    """Return a value as a number for gt/ge/lt/le, None when it is not one (or too large)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except (ValueError, OverflowError):
        return None


def _one_of(items: list[Any], *, negate: bool = False) -> Predicate:
    wanted: set[Any] = set()
    for item in items:
        wanted.add(item)
        if isinstance(item, int | float) and not isinstance(item, bool):
            wanted.add(str(item))

    def one_of(value: Any, _caps: dict[str, Any]) -> bool:
        if value is _MISSING:
            return negate
        try:
            found = value in wanted
        except TypeError:  # unhashable value (a dict or list field)
            found = False
        return found != negate

    return one_of


def _compare(op: str, bound: Any) -> Predicate:
    cmp = {"gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le}[op]
    if isinstance(bound, int | float) and not isinstance(bound, bool):
        number_bound = float(bound)

        def numeric(value: Any, _caps: dict[str, Any]) -> bool:
            number = _number(value)
            return number is not None and bool(cmp(number, number_bound))

        return numeric
    text_bound = str(bound)

    def textual(value: Any, _caps: dict[str, Any]) -> bool:
        text = _text_of(value)
        return text is not None and bool(cmp(text, text_bound))

    return textual


def _regex(rx: Regex) -> Predicate:
    search = rx.search
    if rx.spans is not None:  # RE2: spans on bytes, which also copes with lone surrogates
        return _re2_capturing(rx.spans, rx.group_slots, _identity)
    if not rx.groups:

        def plain(value: Any, _caps: dict[str, Any]) -> bool:
            text = _text_of(value)
            return text is not None and search(text) is not None

        return plain

    def capturing(value: Any, caps: dict[str, Any]) -> bool:
        text = _text_of(value)
        if text is None:
            return False
        m = search(text)
        if m is None:
            return False
        for name, captured in m.groupdict().items():
            if captured is not None:
                caps[name] = captured
        return True

    return capturing


def _identity(value: Any) -> Any:
    return value


def _re2_capturing(
    spans: Callable[[Any, bytes, int, int], Any],
    slots: tuple[tuple[str, int], ...],
    getter: Callable[[Any], Any],
) -> Callable[[Any, dict[str, Any]], bool]:
    """Capture through RE2's byte-span call: half the cost of the Python wrapper's search."""
    unanchored = _UNANCHORED

    def capturing(item: Any, caps: dict[str, Any]) -> bool:
        text = _text_of(getter(item))
        if text is None:
            return False
        data = text.encode("utf-8", "surrogatepass")
        found = spans(unanchored, data, 0, len(data))
        if found[0][0] < 0:
            return False
        for name, index in slots:
            start, end = found[index]
            if start >= 0:
                caps[name] = data[start:end].decode("utf-8", "replace")
        return True

    return capturing


def _string_op(op: str, arg: str | tuple[str, ...]) -> Predicate:
    if op == "contains":
        needles = (arg,) if isinstance(arg, str) else arg

        def contains(value: Any, _caps: dict[str, Any]) -> bool:
            text = _text_of(value)
            return text is not None and any(n in text for n in needles)

        return contains
    method = str.startswith if op == "startswith" else str.endswith

    def affix(value: Any, _caps: dict[str, Any]) -> bool:
        text = _text_of(value)
        return text is not None and method(text, arg)

    return affix


def _all(preds: list[Predicate]) -> Predicate:
    if len(preds) == 1:
        return preds[0]

    def all_of(value: Any, caps: dict[str, Any]) -> bool:
        return all(p(value, caps) for p in preds)

    return all_of


def _and(matchers: list[Matcher]) -> Matcher:
    if not matchers:
        return lambda _e, _c: True
    if len(matchers) == 1:
        return matchers[0]
    if len(matchers) == 2:
        first, second = matchers
        return lambda e, c: first(e, c) and second(e, c)

    def and_(event: Event, caps: dict[str, Any]) -> bool:
        return all(m(event, caps) for m in matchers)

    return and_


def _or(matchers: list[Matcher]) -> Matcher:
    def or_(event: Event, caps: dict[str, Any]) -> bool:
        for m in matchers:
            trial: dict[str, Any] = {}
            if m(event, trial):
                caps.update(trial)
                return True
        return False

    return or_


def _not(matcher: Matcher) -> Matcher:
    return lambda e, _c: not matcher(e, {})


def _on(getter: Getter, pred: Predicate) -> Matcher:
    return lambda e, c: pred(getter(e), c)


def _on_equals(getter: Getter, expected: Any) -> Matcher:
    """Fuse the getter into an equality test: the most common condition, one call per event."""
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        alt = str(expected)
        return lambda e, _c: (v := getter(e)) == expected or v == alt
    return lambda e, _c: getter(e) == expected


def _equals(expected: Any) -> Predicate:
    """Equality as _on_equals tests it (a number also equals its text), for explaining."""
    alt = (
        str(expected)
        if isinstance(expected, int | float) and not isinstance(expected, bool)
        else _MISSING
    )

    def equals(value: Any, _caps: dict[str, Any]) -> bool:
        return bool(value == expected) or (alt is not _MISSING and value == alt)

    return equals


def _on_one_of(getter: Getter, items: list[Any]) -> Matcher:
    """Fuse the getter into a set membership test."""
    pred = _one_of(items)
    return lambda e, c: pred(getter(e), c)


def _prefilter_of(op: str, arg: Any, rx: Regex | None) -> str | None:
    """Return an RE2 pattern equivalent to a message condition, for the rule-set prefilter."""
    if rx is not None:
        return rx.pattern if rx.is_re2 else None
    if not isinstance(arg, str):
        return None
    escaped: str = re2.escape(arg)
    if op == "contains":
        return escaped
    if op == "startswith":
        return "^" + escaped
    if op == "endswith":
        return escaped + "$"
    return None


class MatchCompiler:
    """Compiles match mappings, resolving lists and macros; raises SourceError on bad input."""

    def __init__(
        self,
        *,
        lists: Mapping[str, list[Any]],
        macros: Mapping[str, tuple[Any, Mark]],
        errors: Errors,
        warn: Warn,
        explain: bool = False,
    ) -> None:
        self._lists = lists
        self._macros = macros
        self._errors = errors
        self._warn = warn
        self._explain = explain

    def compile(self, spec: Any, where: Mark) -> CompiledMatch:
        """Compile a rule's whole `match:` mapping."""
        prefilters: list[str] = []
        part = self._mapping(spec, where, prefilters, expanding=())
        return CompiledMatch(part.matcher, prefilters[0] if prefilters else None, part.check)

    def _mapping(
        self,
        spec: Any,
        where: Mark,
        prefilters: list[str] | None,
        *,
        expanding: tuple[str, ...],
    ) -> _Part:
        """Compile one mapping of attribute -> condition (all must hold)."""
        data = expect_map(spec, where, "a matcher", self._errors)
        cheap: list[_Part] = []
        costly: list[_Part] = []
        for key, cond in data.items():
            kmark = key_mark(data, key, where)
            vmark = value_mark(data, key, where)
            if not isinstance(key, str):
                raise self._errors(kmark, f"matcher key {key!r} must be text")
            if key == "macro":
                cheap.append(self._macro(cond, vmark, prefilters, expanding))
            elif key in ("any", "all"):
                items = expect_list(cond, vmark, f"'{key}'", self._errors)
                subs = [
                    self._mapping(item, value_mark(items, i, vmark), None, expanding=expanding)
                    for i, item in enumerate(items)
                ]
                costly.append(self._any(subs, items) if key == "any" else self._all(subs))
            elif key == "not":
                sub = self._mapping(cond, vmark, None, expanding=expanding)
                check = _check_not(sub.check, _plain(cond)) if sub.check is not None else None
                costly.append(_Part(_not(sub.matcher), check))
            else:
                self._check_attribute(key, kmark)
                part, is_costly = self._condition(key, cond, vmark, prefilters)
                (costly if is_costly else cheap).append(part)
        # Cheap equality checks first, regexes last: most events fail early.
        return self._and(cheap + costly)

    def _and(self, parts: list[_Part]) -> _Part:
        """All of them, in the order given: the check stops at the first miss, as _and does."""
        checks = [p.check for p in parts if p.check is not None]
        return _Part(
            _and([p.matcher for p in parts]), _check_all(checks) if self._explain else None
        )

    def _all(self, parts: list[_Part]) -> _Part:
        """An `all:` list: each item's miss says which item it is."""
        checks = [
            _check_within(f"all: item {i}", p.check)
            for i, p in enumerate(parts, 1)
            if p.check is not None
        ]
        return _Part(
            _and([p.matcher for p in parts]), _check_all(checks) if self._explain else None
        )

    def _any(self, parts: list[_Part], items: Any) -> _Part:
        """An `any:` list: a miss only when every alternative misses, each one's reason kept."""
        checks = [p.check for p in parts if p.check is not None]
        check = _check_any(checks, _plain(items)) if self._explain else None
        return _Part(_or([p.matcher for p in parts]), check)

    def _macro(
        self, cond: Any, where: Mark, prefilters: list[str] | None, expanding: tuple[str, ...]
    ) -> _Part:
        if isinstance(cond, str):
            named: list[tuple[Any, Mark]] = [(cond, where)]
        else:
            items = expect_list(cond, where, "'macro'", self._errors)
            named = [(item, value_mark(items, i, where)) for i, item in enumerate(items)]
        parts: list[_Part] = []
        for item, at in named:
            name = expect_str(item, at, "a macro name", self._errors)
            if name not in self._macros:
                raise self._errors(at, f"unknown macro '{name}'{did_you_mean(name, self._macros)}")
            if name in expanding:
                chain = " -> ".join((*expanding, name))
                raise self._errors(at, f"macro '{name}' refers to itself ({chain})")
            spec, mark = self._macros[name]
            part = self._mapping(spec, mark, prefilters, expanding=(*expanding, name))
            check = None if part.check is None else _check_within(f"macro {name}", part.check)
            parts.append(_Part(part.matcher, check))
        return self._and(parts)

    def _check_attribute(self, key: str, where: Mark) -> None:
        if key in ATTRIBUTES:
            return
        if key.startswith("fields.") and all(key.split(".")[1:]):
            return
        hint = did_you_mean(key, (*ATTRIBUTES, *COMBINATORS))
        raise self._errors(
            where,
            f"unknown event attribute '{key}'{hint}; use one of {', '.join(ATTRIBUTES)}, "
            "fields.NAME, any, all, not or macro",
        )

    def _part(
        self, matcher: Matcher, attr: str, getter: Getter, tests: list[tuple[str, Any, Predicate]]
    ) -> _Part:
        """The engine's matcher for a condition, and its check built from the same tests."""
        return _Part(matcher, _check_field(attr, getter, tests) if self._explain else None)

    def _condition(
        self, attr: str, cond: Any, where: Mark, prefilters: list[str] | None
    ) -> tuple[_Part, bool]:
        """Compile one attribute's condition; returns it and whether it is costly."""
        getter = _getter(attr)
        if isinstance(cond, MarkedList):
            items = self._scalars(cond, where)
            tests = [("in", items, _one_of(items))]
            return self._part(_on_one_of(getter, items), attr, getter, tests), False
        if not isinstance(cond, MarkedMap):
            if cond is None:
                raise self._errors(where, f"condition for '{attr}' is empty")
            tests = [("equals", cond, _equals(cond))]
            return self._part(_on_equals(getter, cond), attr, getter, tests), False
        if not cond:
            raise self._errors(where, f"condition for '{attr}' is an empty mapping")
        tests = []
        costly = False
        fused_rx: Regex | None = None
        for op, arg in cond.items():
            omark = key_mark(cond, op, where)
            amark = value_mark(cond, op, where)
            if op not in OPERATORS:
                raise self._errors(
                    omark, f"unknown matcher operator '{op}'{did_you_mean(str(op), OPERATORS)}"
                )
            rx: Regex | None = None
            shown = arg
            if op == "regex":
                rx = Regex(
                    expect_str(arg, amark, "'regex'", self._errors),
                    where=amark,
                    errors=self._errors,
                    warn=self._warn,
                )
                pred = _regex(rx)
                costly = True
                fused_rx = rx
            elif op in ("contains", "startswith", "endswith"):
                text = self._text_args(op, arg, amark)
                pred = _string_op(op, text)
                shown = text if isinstance(text, str) else list(text)
            elif op in ("in", "not_in"):
                shown = self._list_arg(op, arg, amark)
                pred = _one_of(shown, negate=op == "not_in")
            elif op in ("gt", "ge", "lt", "le"):
                if isinstance(arg, dict | list) or arg is None:
                    raise self._errors(amark, f"'{op}' needs a number or text to compare with")
                pred = _compare(op, arg)
            else:  # exists
                if not isinstance(arg, bool):
                    raise self._errors(amark, "'exists' must be true or false")
                pred = _exists(want=arg)
            tests.append((op, shown, pred))
            if attr == "message" and prefilters is not None:
                pattern = _prefilter_of(op, arg, rx)
                if pattern is not None:
                    prefilters.append(pattern)
        if len(tests) == 1 and fused_rx is not None and fused_rx.spans is not None:
            fused = _re2_capturing(fused_rx.spans, fused_rx.group_slots, getter)
            return self._part(fused, attr, getter, tests), costly
        preds = [pred for _, _, pred in tests]
        return self._part(_on(getter, _all(preds)), attr, getter, tests), costly

    def _text_args(self, op: str, arg: Any, where: Mark) -> str | tuple[str, ...]:
        if isinstance(arg, str):
            return arg
        if isinstance(arg, list) and arg and all(isinstance(a, str) for a in arg):
            return tuple(arg)
        raise self._errors(where, f"'{op}' needs text or a list of texts")

    def _list_arg(self, op: str, arg: Any, where: Mark) -> list[Any]:
        if isinstance(arg, str) and arg.startswith("lists."):
            name = arg[len("lists.") :]
            if name not in self._lists:
                raise self._errors(where, f"unknown list '{name}'{did_you_mean(name, self._lists)}")
            return self._lists[name]
        if isinstance(arg, MarkedList):
            return self._scalars(arg, where)
        raise self._errors(where, f"'{op}' needs a list or lists.NAME")

    def _scalars(self, items: MarkedList, where: Mark) -> list[Any]:
        for i, item in enumerate(items):
            if isinstance(item, dict | list):
                raise self._errors(value_mark(items, i, where), "list items must be plain values")
        return list(items)


def _exists(*, want: bool) -> Predicate:
    def exists(value: Any, _caps: dict[str, Any]) -> bool:
        return (value is not _MISSING and value is not None) == want

    return exists


# ---------------------------------------------------------------------------------------------
# Explaining checks: the same predicates as above, reporting the first one that fails.


def _check_field(attr: str, getter: Getter, tests: list[tuple[str, Any, Predicate]]) -> Check:
    """Test an attribute's conditions in the engine's order; the first that fails is the miss."""

    def check(event: Event, caps: dict[str, Any]) -> Miss | None:
        value = getter(event)
        for op, expected, pred in tests:
            if not pred(value, caps):
                missing = value is _MISSING
                return Miss(attr, op, expected, None if missing else value, missing)
        return None

    return check


def _check_all(checks: list[Check]) -> Check:
    """The first miss of several checks that must all hold."""

    def all_of(event: Event, caps: dict[str, Any]) -> Miss | None:
        for check in checks:
            miss = check(event, caps)
            if miss is not None:
                return miss
        return None

    return all_of


def _check_within(label: str, check: Check) -> Check:
    """Say which macro or list item a miss sits in."""

    def within(event: Event, caps: dict[str, Any]) -> Miss | None:
        miss = check(event, caps)
        if miss is None:
            return None
        return Miss(
            miss.field, miss.op, miss.expected, miss.got, miss.missing,
            (label, *miss.within), miss.alternatives,
        )  # fmt: skip

    return within


def _check_any(checks: list[Check], shown: Any) -> Check:
    """Like _or: the first alternative that holds gives its captures; else every miss."""

    def any_of(event: Event, caps: dict[str, Any]) -> Miss | None:
        misses: list[Miss] = []
        for check in checks:
            trial: dict[str, Any] = {}
            miss = check(event, trial)
            if miss is None:
                caps.update(trial)
                return None
            misses.append(miss)
        return Miss("", "any", shown, alternatives=tuple(misses))

    return any_of


def _check_not(check: Check, shown: Any) -> Check:
    """A miss when the negated check holds; its captures are thrown away, as in _not."""

    def negated(event: Event, _caps: dict[str, Any]) -> Miss | None:
        return Miss("", "not", shown) if check(event, {}) is None else None

    return negated


def _plain(value: Any) -> Any:
    """A YAML value without its marks, to show what a rule asks for."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
