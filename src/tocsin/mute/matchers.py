"""Label matchers (`host=web1`, `rule=~ssh-.*`, `severity!=minor`) for silences and friends.

Regexes use RE2 syntax, as Alertmanager's do, and are anchored at both ends: `host=~web`
matches "web" only, not "web1". RE2 runs in linear time, so a silence typed into the API
cannot stall the engine. A label that is missing matches as the empty string, so
`host!=web1` matches incidents without a host label and `host=""` matches only those.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import re2

from tocsin.rules.schema import Errors, check_keys, expect_str, kind_of, plain_errors
from tocsin.yamlsrc import Mark, MarkedMap, value_mark

__all__ = [
    "OPS",
    "InvalidRegexError",
    "LabelMatcher",
    "MatchOp",
    "Matchers",
    "check_label_name",
    "parse_matcher",
    "parse_matchers",
]

MatchOp = Literal["=", "!=", "=~", "!~"]
OPS: tuple[MatchOp, ...] = ("=", "!=", "=~", "!~")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_NAME_RULE = "use letters, digits, '_' and '.', not starting with a digit"
# Name, operator, rest; the name stops at the first operator character.
_SHAPE = re.compile(r"([^=!~]*)(=~|!~|!=|=)(.*)", re.DOTALL)
_SHAPES = "name=value, name!=value, name=~regex or name!~regex"

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_ANCHOR_BOTH: Any = getattr(getattr(re2, "_Anchor", None), "ANCHOR_BOTH", None)


class InvalidRegexError(ValueError):
    """A `=~`/`!~` value that RE2 cannot compile; `reason` is RE2's own words."""

    def __init__(self, pattern: str, reason: str) -> None:
        super().__init__(f"invalid regex '{pattern}': {reason}")
        self.pattern = pattern
        self.reason = reason


def _full_match(pattern: str) -> Callable[[str], bool]:
    """Compile `pattern` once into a whole-string test."""
    try:
        compiled: Any = re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise InvalidRegexError(pattern, str(reason)) from None
    except UnicodeEncodeError:  # a lone surrogate, e.g. from a JSON "\udc80" escape
        raise InvalidRegexError(pattern, "not valid Unicode text") from None
    low_match = getattr(getattr(compiled, "_regexp", None), "Match", None)
    if low_match is None or _ANCHOR_BOTH is None:  # pragma: no cover - other re2 builds
        fullmatch = compiled.fullmatch
        return lambda text: fullmatch(text) is not None
    anchor = _ANCHOR_BOTH

    # The low-level call skips the wrapper's match objects: about 8x faster per test.
    def test(text: str) -> bool:
        data = text.encode("utf-8", "surrogatepass")
        return bool(low_match(anchor, data, 0, len(data))[0][0] >= 0)

    return test


def _compile(op: MatchOp, value: str) -> Callable[[str], bool]:
    if op == "=":
        return lambda text: text == value
    if op == "!=":
        return lambda text: text != value
    test = _full_match(value)
    if op == "=~":
        return test
    return lambda text: not test(text)


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


@dataclass(frozen=True, slots=True)
class LabelMatcher:
    """One condition on one label, compiled when built; equal when name, op and value are."""

    name: str
    op: MatchOp
    value: str
    _test: Callable[[str], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"invalid label name '{self.name}' ({_NAME_RULE})")
        if self.op not in OPS:
            raise ValueError(f"invalid matcher op '{self.op}'; use one of {', '.join(OPS)}")
        object.__setattr__(self, "_test", _compile(self.op, self.value))

    @property
    def is_regex(self) -> bool:
        """Tell whether the value is a regex (costlier, so checked after plain comparisons)."""
        return self.op in ("=~", "!~")

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Test the label's value; a missing label counts as ""."""
        return self._test(labels.get(self.name, ""))

    def matches_value(self, value: str) -> bool:
        """Test a bare value as if it were this matcher's label."""
        return self._test(value)

    def __str__(self) -> str:
        """Return the canonical text form, which parse_matcher reads back to an equal matcher."""
        return f"{self.name}{self.op}{_quote(self.value)}"


@dataclass(frozen=True, slots=True)
class Matchers:
    """Matchers that must all hold; the empty set matches everything."""

    items: tuple[LabelMatcher, ...] = ()
    # Plain comparisons before regexes: most labels fail early and cheaply.
    _order: tuple[LabelMatcher, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_order", tuple(sorted(self.items, key=lambda m: m.is_regex)))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Test that every matcher holds for these labels."""
        return all(m._test(labels.get(m.name, "")) for m in self._order)

    @property
    def matches_empty(self) -> bool:
        """Tell whether an incident with no labels at all would match."""
        return all(m.matches_value("") for m in self.items)

    def unselective_reason(self) -> str | None:
        """Return why these matchers are too broad to mute with, or None when they are fine.

        Alertmanager's rule: at least one matcher must not match the empty string, so a mute
        never reaches incidents just because they lack a label.
        """
        if not self.items:
            return "needs at least one matcher, like host=web1"
        if self.matches_empty:
            return (
                "needs at least one matcher that does not match the empty string, like "
                "host=web1 or host=~.+ (these would also match incidents without the labels)"
            )
        return None

    def __iter__(self) -> Iterator[LabelMatcher]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __str__(self) -> str:
        """Return `{host="web1", rule=~"ssh-.*"}`."""
        return "{" + ", ".join(str(m) for m in self.items) + "}"


def check_label_name(name: Any, where: Mark, what: str, errors: Errors = plain_errors) -> str:
    """Return `name` if it is a valid label name, else raise at `where`."""
    text = expect_str(name, where, what, errors)
    if not _NAME.fullmatch(text):
        raise errors(where, f"{what} '{text}' is not a valid label name ({_NAME_RULE})")
    return text


def _build(
    name: str,
    op: MatchOp,
    value: str,
    *,
    shown: str,
    where: Mark,
    value_at: Mark | None = None,
    errors: Errors,
) -> LabelMatcher:
    """Build a matcher; name problems are reported at `where`, regex ones at `value_at`."""
    if not name:
        raise errors(where, f"matcher '{shown}' names no label")
    if not _NAME.fullmatch(name):
        raise errors(where, f"matcher '{shown}' has an invalid label name '{name}' ({_NAME_RULE})")
    try:
        return LabelMatcher(name=name, op=op, value=value)
    except InvalidRegexError as exc:
        raise errors(
            value_at or where, f"matcher '{shown}' has an invalid regex: {exc.reason}"
        ) from None


def _unquote(raw: str, shown: str, where: Mark, errors: Errors) -> str:
    """Read a double-quoted value: \\" \\\\ and \\n are escapes, other backslashes stay as typed."""
    out: list[str] = []
    i = 1
    while i < len(raw):
        char = raw[i]
        if char == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            out.append({'"': '"', "\\": "\\", "n": "\n"}.get(nxt, char + nxt))
            i += 2
        elif char == '"':
            if raw[i + 1 :].strip():
                raise errors(where, f"matcher '{shown}' has text after the closing quote")
            return "".join(out)
        else:
            out.append(char)
            i += 1
    raise errors(where, f"matcher '{shown}' has an unterminated quoted value")


def _parse_text(text: str, where: Mark, errors: Errors) -> LabelMatcher:
    shown = text.strip()
    found = _SHAPE.fullmatch(shown)
    if found is None:
        raise errors(where, f"matcher '{shown}' must look like {_SHAPES}")
    name, op, raw = found.group(1).strip(), cast("MatchOp", found.group(2)), found.group(3).strip()
    if op == "=" and raw.startswith("="):
        raise errors(where, f"matcher '{shown}' uses '=='; write a single '=' for equality")
    value = _unquote(raw, shown, where, errors) if raw.startswith('"') else raw
    return _build(name, op, value, shown=shown, where=where, errors=errors)


def _parse_mapping(data: MarkedMap, where: Mark, errors: Errors) -> LabelMatcher:
    check_keys(data, ("name", "op", "value"), "matcher option", errors, required=("name", "value"))

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    name = expect_str(data["name"], at("name"), "'name'", errors)
    value = expect_str(data["value"], at("value"), "'value'", errors)
    op = data.get("op", "=")
    if op not in OPS:
        raise errors(at("op"), f"matcher op {op!r} must be one of {', '.join(OPS)}")
    shown = f"{name}{op}{value}"
    return _build(
        name, op, value, shown=shown, where=at("name"), value_at=at("value"), errors=errors
    )


def _marked_map(data: Mapping[Any, Any], where: Mark) -> MarkedMap:
    """Wrap a plain mapping (from JSON, not YAML) so strict checks can point at `where`."""
    marked = MarkedMap(data)
    marked.mark, marked.key_marks, marked.value_marks = where, {}, {}
    return marked


def parse_matcher(spec: Any, where: Mark, errors: Errors = plain_errors) -> LabelMatcher:
    """Parse `host=web1` or `{name: host, op: "=", value: web1}` (op defaults to "=")."""
    if isinstance(spec, str):
        return _parse_text(spec, where, errors)
    if isinstance(spec, Mapping):
        data = spec if isinstance(spec, MarkedMap) else _marked_map(spec, where)
        return _parse_mapping(data, data.mark, errors)
    raise errors(where, f"a matcher must be text like host=web1 or a mapping, not {kind_of(spec)}")


def parse_matchers(
    data: Any, where: Mark, errors: Errors = plain_errors, *, what: str = "'matchers'"
) -> Matchers:
    """Parse a list of matchers from YAML (marked) or JSON (plain lists, errors at `where`)."""
    if not isinstance(data, list | tuple):
        raise errors(where, f"{what} must be a list, not {kind_of(data)}")
    return Matchers(
        tuple(
            parse_matcher(spec, value_mark(data, i, where), errors) for i, spec in enumerate(data)
        )
    )
