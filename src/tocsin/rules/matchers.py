"""Compile `match:` mappings into plain closures, once, at load time.

Regexes run on RE2 (linear time, so a crafted line cannot stall the engine); a pattern
RE2 rejects falls back to Python `re` with a load-time warning.
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
    "CompiledMatch",
    "MatchCompiler",
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
class CompiledMatch:
    """A compiled matcher and the RE2 pattern (if any) a message must match for it to hold."""

    matcher: Matcher
    prefilter: str | None


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
    ) -> None:
        self._lists = lists
        self._macros = macros
        self._errors = errors
        self._warn = warn

    def compile(self, spec: Any, where: Mark) -> CompiledMatch:
        """Compile a rule's whole `match:` mapping."""
        prefilters: list[str] = []
        matcher = self._mapping(spec, where, prefilters, expanding=())
        return CompiledMatch(matcher, prefilters[0] if prefilters else None)

    def _mapping(
        self,
        spec: Any,
        where: Mark,
        prefilters: list[str] | None,
        *,
        expanding: tuple[str, ...],
    ) -> Matcher:
        """Compile one mapping of attribute -> condition (all must hold)."""
        data = expect_map(spec, where, "a matcher", self._errors)
        cheap: list[Matcher] = []
        costly: list[Matcher] = []
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
                costly.append(_or(subs) if key == "any" else _and(subs))
            elif key == "not":
                costly.append(_not(self._mapping(cond, vmark, None, expanding=expanding)))
            else:
                self._check_attribute(key, kmark)
                matcher, is_costly = self._condition(key, cond, vmark, prefilters)
                (costly if is_costly else cheap).append(matcher)
        # Cheap equality checks first, regexes last: most events fail early.
        return _and(cheap + costly)

    def _macro(
        self, cond: Any, where: Mark, prefilters: list[str] | None, expanding: tuple[str, ...]
    ) -> Matcher:
        if isinstance(cond, str):
            named: list[tuple[Any, Mark]] = [(cond, where)]
        else:
            items = expect_list(cond, where, "'macro'", self._errors)
            named = [(item, value_mark(items, i, where)) for i, item in enumerate(items)]
        parts: list[Matcher] = []
        for item, at in named:
            name = expect_str(item, at, "a macro name", self._errors)
            if name not in self._macros:
                raise self._errors(at, f"unknown macro '{name}'{did_you_mean(name, self._macros)}")
            if name in expanding:
                chain = " -> ".join((*expanding, name))
                raise self._errors(at, f"macro '{name}' refers to itself ({chain})")
            spec, mark = self._macros[name]
            parts.append(self._mapping(spec, mark, prefilters, expanding=(*expanding, name)))
        return _and(parts)

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

    def _condition(
        self, attr: str, cond: Any, where: Mark, prefilters: list[str] | None
    ) -> tuple[Matcher, bool]:
        """Compile one attribute's condition; returns the matcher and whether it is costly."""
        getter = _getter(attr)
        if isinstance(cond, MarkedList):
            return _on_one_of(getter, self._scalars(cond, where)), False
        if not isinstance(cond, MarkedMap):
            if cond is None:
                raise self._errors(where, f"condition for '{attr}' is empty")
            return _on_equals(getter, cond), False
        if not cond:
            raise self._errors(where, f"condition for '{attr}' is an empty mapping")
        preds: list[Predicate] = []
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
            if op == "regex":
                rx = Regex(
                    expect_str(arg, amark, "'regex'", self._errors),
                    where=amark,
                    errors=self._errors,
                    warn=self._warn,
                )
                preds.append(_regex(rx))
                costly = True
                fused_rx = rx
            elif op in ("contains", "startswith", "endswith"):
                preds.append(_string_op(op, self._text_args(op, arg, amark)))
            elif op in ("in", "not_in"):
                preds.append(_one_of(self._list_arg(op, arg, amark), negate=op == "not_in"))
            elif op in ("gt", "ge", "lt", "le"):
                if isinstance(arg, dict | list) or arg is None:
                    raise self._errors(amark, f"'{op}' needs a number or text to compare with")
                preds.append(_compare(op, arg))
            else:  # exists
                if not isinstance(arg, bool):
                    raise self._errors(amark, "'exists' must be true or false")
                preds.append(_exists(want=arg))
            if attr == "message" and prefilters is not None:
                pattern = _prefilter_of(op, arg, rx)
                if pattern is not None:
                    prefilters.append(pattern)
        if len(preds) == 1 and fused_rx is not None and fused_rx.spans is not None:
            return _re2_capturing(fused_rx.spans, fused_rx.group_slots, getter), costly
        return _on(getter, _all(preds)), costly

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
