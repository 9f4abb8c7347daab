"""The service catalog: what people may request, the input each item takes, and its terms
(approval, fulfilment runbook, SLA, escalation). Pure, and hand-validated like the config.

An item's input is checked field by field against its schema, and every problem is reported
at once, so a form can show them all. Input is untrusted (the API, an MQTT payload, a log
line): whatever it is, `CatalogItem.validate` returns clean data or raises RequestInputError.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import re2

from tocsin.rules.schema import (
    Errors,
    check_keys,
    expect_bool,
    expect_int,
    expect_list,
    expect_map,
    expect_str,
    parse_duration,
    parse_named,
)
from tocsin.tokens import Role
from tocsin.yamlsrc import Mark, SourceError, did_you_mean, key_mark, value_mark

__all__ = [
    "MAX_TEXT",
    "CatalogItem",
    "FieldType",
    "InputField",
    "RequestInputError",
    "parse_catalog",
]

# Characters a string field takes when its schema sets no max_length, and the most it may set.
MAX_TEXT = 10_000
_LONGEST_TEXT = 100_000
_MAX_PROBLEMS = 20  # problems an input error lists; the rest are counted
_SHOWN = 64  # characters of an unknown field name an error repeats
_INT64 = (-(2**63), 2**63 - 1)  # what a whole number must fit in (the store keeps int64)
_LONGEST_SLA = 365 * 86400.0
_DESCRIPTION_LIMIT = 500

_ITEM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # names go into API URLs
_ITEM_NAME_RULE = "1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")  # templates read them as input.NAME
_TAKEN = frozenset({"id", "item"})  # request.id and request.item in fulfilment templates
_FIELD_NAME_RULE = "1 to 64 letters, digits and '_', not starting with a digit"
_WHOLE = re.compile(r"[+-]?[0-9]{1,19}")

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


class FieldType(enum.StrEnum):
    """What an input field holds."""

    STRING = "string"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    ENUM = "enum"


_COMMON_KEYS = ("type", "required", "default", "description")
# The options each type takes beyond the common ones.
_TYPE_KEYS: dict[FieldType, tuple[str, ...]] = {
    FieldType.STRING: ("pattern", "max_length"),
    FieldType.INTEGER: ("min", "max"),
    FieldType.BOOLEAN: (),
    FieldType.ENUM: ("values",),
}
_ITEM_KEYS = ("name", "description", "fields", "approval", "runbook", "sla", "escalation")


class RequestInputError(ValueError):
    """Input a catalog item refuses; `problems` lists every one, `field: what is wrong`."""

    def __init__(self, problems: Sequence[str], *, more: int = 0) -> None:
        shown = "; ".join(problems)
        if more:
            shown += f"; and {more} more problem{'s' if more > 1 else ''}"
        super().__init__(shown)
        self.problems = tuple(problems)
        self.more = more  # problems found but not listed


class _RefusedError(Exception):
    """One field's value is wrong; the text finishes "FIELD: ..."."""


@dataclass(frozen=True, slots=True)
class InputField:
    """One typed field of an item's input, and its constraints."""

    name: str
    type: FieldType
    required: bool = False
    default: Any = None  # filled in when the field is not given; None: left out
    description: str = ""
    pattern: str | None = None  # string: an RE2 pattern the whole value must match
    max_length: int = MAX_TEXT  # string: characters
    min: int | None = None  # integer bounds, inclusive
    max: int | None = None
    values: tuple[str, ...] = ()  # enum: the allowed values
    _match: Callable[[str], bool] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.pattern is not None:
            object.__setattr__(self, "_match", _full_match(self.pattern))

    def _clean(self, value: Any, *, from_text: bool = False) -> Any:
        """Return the clean value, or raise _RefusedError saying what it must be."""
        if self.type == FieldType.STRING:
            return self._text(value)
        if self.type == FieldType.INTEGER:
            return self._whole(value, from_text=from_text)
        if self.type == FieldType.BOOLEAN:
            return _truth(value, from_text=from_text)
        if isinstance(value, str) and value in self.values:
            return value
        raise _RefusedError(f"must be one of {', '.join(self.values)}{_hint(value, self.values)}")

    def _text(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _RefusedError("must be text")
        if len(value) > self.max_length:
            raise _RefusedError(f"must be at most {self.max_length} characters")
        if not _valid(value):
            raise _RefusedError("must be valid Unicode text")
        if self._match is not None and not self._match(value):
            raise _RefusedError(f"must match the pattern {self.pattern}")
        return str(value)

    def _whole(self, value: Any, *, from_text: bool) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = int(value)
        elif from_text and isinstance(value, str) and _WHOLE.fullmatch(value.strip()):
            number = int(value.strip())
        least = _INT64[0] if self.min is None else self.min
        most = _INT64[1] if self.max is None else self.max
        if number is None or not least <= number <= most:
            raise _RefusedError(self._whole_rule())
        return number

    def _whole_rule(self) -> str:
        if self.min is not None and self.max is not None:
            return f"must be a whole number from {self.min} to {self.max}"
        if self.min is not None:
            return f"must be a whole number of at least {self.min}"
        if self.max is not None:
            return f"must be a whole number of at most {self.max}"
        return "must be a whole number that fits in 64 bits"

    def to_dict(self) -> dict[str, Any]:
        """Describe the field for people and forms (the catalog listing)."""
        shown: dict[str, Any] = {
            "name": self.name,
            "type": str(self.type),
            "required": self.required,
            "description": self.description,
        }
        if self.default is not None:
            shown["default"] = self.default
        if self.type == FieldType.STRING:
            shown["max_length"] = self.max_length
            if self.pattern is not None:
                shown["pattern"] = self.pattern
        elif self.type == FieldType.INTEGER:
            shown.update((k, v) for k, v in (("min", self.min), ("max", self.max)) if v is not None)
        elif self.type == FieldType.ENUM:
            shown["values"] = list(self.values)
        return shown


def _valid(text: str) -> bool:
    """Tell whether text is proper Unicode (no lone surrogates, which JSON can smuggle in)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _truth(value: Any, *, from_text: bool) -> bool:
    if isinstance(value, bool):
        return value
    if from_text and isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _RefusedError("must be true or false")


def _full_match(pattern: str) -> Callable[[str], bool]:
    """Compile an RE2 pattern into a whole-text test; re2.error when RE2 refuses it."""
    compiled: Any = re2.compile(pattern, options=_RE2_OPTIONS)
    return lambda text: compiled.fullmatch(text) is not None


def _hint(given: Any, choices: Sequence[str]) -> str:
    """Suggest a close choice for something short given as text, else ''."""
    if isinstance(given, str) and len(given) <= _SHOWN and _valid(given):
        return did_you_mean(given, choices)
    return ""


def _shown(name: Any) -> str:
    """Quote a field name from the input for an error, cut short and escaped when odd."""
    if isinstance(name, str) and len(name) <= _SHOWN and name.isprintable():
        return f"'{name}'"
    if isinstance(name, str):
        cut = name[:_SHOWN]
        return repr(cut) + ("..." if len(name) > _SHOWN else "")
    return f"of type {type(name).__name__}"


@dataclass(frozen=True, slots=True)
class CatalogItem:
    """Something people may request: its input schema and the terms of its fulfilment."""

    name: str
    fields: tuple[InputField, ...] = ()
    description: str = ""
    approval: Role | None = None  # the least role that may approve; None: no approval
    runbook: str | None = None  # the fulfilment runbook; None: fulfilled by hand
    sla: float | None = None  # seconds from submission to fulfilment; None: no SLA
    escalation: str | None = None  # the escalation policy for its requests
    where: Mark | None = field(default=None, compare=False)

    def validate(self, data: Any, *, from_text: bool = False) -> dict[str, Any]:
        """Return the clean input, defaults filled and in schema order, or raise
        RequestInputError listing every problem.

        A null value counts as not given. `from_text` is for input rendered by rule templates,
        where every value is text: integers and true/false are read from it, and "" counts as
        not given.
        """
        if not isinstance(data, Mapping):
            raise RequestInputError(["the input must be a mapping of field names to values"])
        problems: list[str] = []
        more = 0

        def refuse(problem: str) -> None:
            nonlocal more
            if len(problems) < _MAX_PROBLEMS:
                problems.append(problem)
            else:
                more += 1

        clean: dict[str, Any] = {}
        for spec in self.fields:
            value = data.get(spec.name)
            if value is None or (from_text and value == ""):
                if spec.required:
                    refuse(f"{spec.name}: required")
                elif spec.default is not None:
                    clean[spec.name] = spec.default
                continue
            if spec.required and spec.type == FieldType.STRING and value == "":
                refuse(f"{spec.name}: required")
                continue
            try:
                clean[spec.name] = spec._clean(value, from_text=from_text)
            except _RefusedError as refused:
                refuse(f"{spec.name}: {refused}")
        names = [spec.name for spec in self.fields]
        for key in data:
            if isinstance(key, str) and key in names:
                continue
            if len(problems) >= _MAX_PROBLEMS:
                more += 1
                continue
            refuse(f"unknown field {_shown(key)}{_hint(key, names)}")
        if problems:
            raise RequestInputError(problems, more=more)
        return clean

    def to_dict(self) -> dict[str, Any]:
        """Describe the item for people and forms (the catalog listing)."""
        return {
            "name": self.name,
            "description": self.description,
            "fields": [f.to_dict() for f in self.fields],
            "approval": None if self.approval is None else str(self.approval),
            "runbook": self.runbook,
            "sla": self.sla,
            "escalation": self.escalation,
        }


# ---------------------------------------------------------------------------------------------
# Parsing from YAML


def parse_catalog(
    spec: Any, where: Mark, *, runbooks: Collection[str], policies: Collection[str]
) -> dict[str, CatalogItem]:
    """Parse a `catalog:` list into items by name; runbooks and escalation policies named
    must be among those given. Empty: no items.
    """
    if spec is None:
        return {}

    def one(item: Any, at: Mark, number: int) -> CatalogItem:
        return _item(item, at, number, runbooks=runbooks, policies=policies)

    items = parse_named(spec, where, "'catalog'", "catalog item", one)
    return {item.name: item for item in items}


def _prefixed(prefix: str, outer: Errors | None = None) -> Errors:
    """Build an Errors that starts each message with `prefix`."""

    def errors(at: Mark, message: str) -> SourceError:
        if outer is not None:
            return outer(at, prefix + message)
        return SourceError(at, prefix + message)

    return errors


def _item(
    spec: Any,
    where: Mark,
    number: int,
    *,
    runbooks: Collection[str],
    policies: Collection[str],
) -> CatalogItem:
    unnamed = _prefixed(f"catalog item #{number}: ")
    data = expect_map(spec, where, "a catalog item", unnamed)
    if "name" not in data:
        raise unnamed(where, "missing required key 'name'")
    name_at = value_mark(data, "name", where)
    name = expect_str(data["name"], name_at, "'name'", unnamed)
    if not _ITEM_NAME.fullmatch(name):
        raise unnamed(name_at, f"'name' must be {_ITEM_NAME_RULE}, not {name!r}")
    errors = _prefixed(f"catalog item '{name}': ")
    check_keys(data, _ITEM_KEYS, "option", errors)

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    description = _description(data, where, errors)
    fields: tuple[InputField, ...] = ()
    if data.get("fields") is not None:
        table = expect_map(data["fields"], at("fields"), "'fields'", errors)
        fields = tuple(
            _field(
                key,
                table[key],
                key_mark(table, key, table.mark),
                value_mark(table, key, table.mark),
                errors,
            )
            for key in table
        )
    approval: Role | None = None
    if data.get("approval") is not None:
        approval = _approval(data["approval"], at("approval"), errors)
    runbook = _reference(data, "runbook", where, known=runbooks, kind="runbook", errors=errors)
    escalation = _reference(
        data, "escalation", where, known=policies, kind="escalation policy", errors=errors
    )
    sla: float | None = None
    if data.get("sla") is not None:
        sla = parse_duration(data["sla"], at("sla"), "'sla'", errors)
        if not 0 < sla <= _LONGEST_SLA:
            raise errors(at("sla"), "'sla' must be more than 0s and at most 365d")
    return CatalogItem(
        name=name,
        fields=fields,
        description=description,
        approval=approval,
        runbook=runbook,
        sla=sla,
        escalation=escalation,
        where=where,
    )


def _description(data: Mapping[Any, Any], where: Mark, errors: Errors) -> str:
    if data.get("description") is None:
        return ""
    at = value_mark(data, "description", where)
    text = expect_str(data["description"], at, "'description'", errors).strip()
    if len(text) > _DESCRIPTION_LIMIT:
        raise errors(at, f"'description' must be at most {_DESCRIPTION_LIMIT} characters")
    return text


def _reference(
    data: Mapping[Any, Any],
    key: str,
    where: Mark,
    *,
    known: Collection[str],
    kind: str,
    errors: Errors,
) -> str | None:
    """Read an optional name of something defined elsewhere in the config."""
    if data.get(key) is None:
        return None
    at = value_mark(data, key, where)
    name = expect_str(data[key], at, f"'{key}'", errors).strip()
    if name not in known:
        choices = ", ".join(sorted(known)) or "none are defined"
        raise errors(at, f"unknown {kind} '{name}'{did_you_mean(name, known)} (known: {choices})")
    return name


def _approval(spec: Any, where: Mark, errors: Errors) -> Role:
    data = expect_map(spec, where, "'approval'", errors)
    check_keys(data, ("role",), "approval option", errors, required=("role",))
    at = value_mark(data, "role", where)
    text = expect_str(data["role"], at, "'role'", errors).strip()
    try:
        return Role.named(text)
    except ValueError:
        roles = [str(r) for r in Role]
        raise errors(
            at,
            f"unknown role '{text}'{did_you_mean(text.lower(), roles)} (use {', '.join(roles)})",
        ) from None


def _field(name: Any, spec: Any, name_at: Mark, where: Mark, outer: Errors) -> InputField:
    if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
        shown = name if isinstance(name, str) else repr(name)
        raise outer(name_at, f"field name '{shown}' must be {_FIELD_NAME_RULE}")
    if name in _TAKEN:
        raise outer(
            name_at,
            f"field name '{name}' is taken: the runbook reads the request's own {name} as "
            f"request.{name}; call the field something else",
        )
    errors = _prefixed(f"field '{name}': ", outer)
    data = expect_map(spec, where, "a field", errors)
    if "type" not in data:
        raise errors(where, "missing required key 'type' (string, integer, boolean or enum)")

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    text = expect_str(data["type"], at("type"), "'type'", errors).strip()
    kinds = [str(t) for t in FieldType]
    if text not in kinds:
        raise errors(
            at("type"),
            f"unknown type '{text}'{did_you_mean(text, kinds)} (use {', '.join(kinds)})",
        )
    kind = FieldType(text)
    allowed = _COMMON_KEYS + _TYPE_KEYS[kind]
    for key in data:
        owners = [str(t) for t, keys in _TYPE_KEYS.items() if key in keys]
        if key not in allowed and owners:
            raise errors(
                key_mark(data, key, where),
                f"'{key}' is for {' and '.join(owners)} fields, not {kind}",
            )
    check_keys(data, allowed, "option", errors)
    required = (
        expect_bool(data["required"], at("required"), "'required'", errors)
        if "required" in data
        else False
    )
    options: dict[str, Any] = {}
    if kind == FieldType.STRING:
        options = _string_options(data, where, errors)
    elif kind == FieldType.INTEGER:
        options = _integer_options(data, where, errors)
    elif kind == FieldType.ENUM:
        options = _enum_options(data, where, errors)
    made = InputField(
        name=name,
        type=kind,
        required=required,
        description=_description(data, where, errors),
        **options,
    )
    if data.get("default") is None:
        return made
    if required:
        raise errors(at("default"), "a required field takes no 'default' (it is always given)")
    try:
        default = made._clean(data["default"])
    except _RefusedError as refused:
        raise errors(at("default"), f"'default' {refused}") from None
    return dataclasses.replace(made, default=default)


def _string_options(data: Mapping[Any, Any], where: Mark, errors: Errors) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if data.get("max_length") is not None:
        at = value_mark(data, "max_length", where)
        most = expect_int(data["max_length"], at, "'max_length'", errors, minimum=1)
        if most > _LONGEST_TEXT:
            raise errors(at, f"'max_length' must be at most {_LONGEST_TEXT}")
        options["max_length"] = most
    if data.get("pattern") is not None:
        at = value_mark(data, "pattern", where)
        pattern = expect_str(data["pattern"], at, "'pattern'", errors)
        try:
            _full_match(pattern)
        except re2.error as exc:
            reason = exc.args[0] if exc.args else exc
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            raise errors(at, f"invalid pattern '{pattern}': {reason}") from None
        options["pattern"] = pattern
    return options


def _integer_options(data: Mapping[Any, Any], where: Mark, errors: Errors) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key in ("min", "max"):
        if data.get(key) is None:
            continue
        at = value_mark(data, key, where)
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise errors(at, f"'{key}' must be a whole number")
        if not _INT64[0] <= value <= _INT64[1]:
            raise errors(at, f"'{key}' must fit in 64 bits")
        options[key] = value
    if "min" in options and "max" in options and options["min"] > options["max"]:
        raise errors(value_mark(data, "max", where), "'max' must not be below 'min'")
    return options


def _enum_options(data: Mapping[Any, Any], where: Mark, errors: Errors) -> dict[str, Any]:
    if "values" not in data:
        raise errors(where, "missing required key 'values' (the allowed values)")
    at = value_mark(data, "values", where)
    items = expect_list(data["values"], at, "'values'", errors)
    if not items:
        raise errors(at, "'values' needs at least one value")
    values: list[str] = []
    for index, item in enumerate(items):
        item_at = value_mark(items, index, at)
        value = expect_str(item, item_at, "an enum value", errors)
        if value in values:
            raise errors(item_at, f"'values' lists '{value}' twice")
        values.append(value)
    return {"values": tuple(values)}
