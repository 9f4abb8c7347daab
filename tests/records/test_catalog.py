"""The service catalog: parsing items with file:line errors, and validating untrusted input."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Collection
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.records.catalog import (
    MAX_TEXT,
    CatalogItem,
    FieldType,
    InputField,
    RequestInputError,
    parse_catalog,
)
from tocsin.tokens import Role
from tocsin.yamlsrc import SourceError, load_yaml, value_mark

DOCUMENTED = """\
catalog:
  - name: reset-password
    description: Reset a user's password
    fields:
      user: {type: string, required: true, pattern: '[a-z][a-z0-9_-]{0,31}', max_length: 32}
      notify: {type: boolean, default: false}
      days: {type: integer, min: 1, max: 30}
      reason: {type: string, required: true, max_length: 500}
      env: {type: enum, values: [prod, staging]}
    approval: {role: operator}
    runbook: reset-password
    sla: 4h
    escalation: requests
"""

RUNBOOKS = ("reset-password", "restart-unit")
POLICIES = ("requests",)


def parse(
    text: str, *, runbooks: Collection[str] = RUNBOOKS, policies: Collection[str] = POLICIES
) -> dict[str, CatalogItem]:
    """Parse a file holding a `catalog:` section."""
    data = load_yaml(text, name="catalog.yaml")
    return parse_catalog(
        data.get("catalog"),
        value_mark(data, "catalog", data.mark),
        runbooks=runbooks,
        policies=policies,
    )


@pytest.fixture(scope="module")
def item() -> CatalogItem:
    """Return the documented reset-password item."""
    return parse(DOCUMENTED)["reset-password"]


def refusal(item: CatalogItem, data: Any, *, from_text: bool = False) -> str:
    """Return the text of the RequestInputError that `data` gets."""
    with pytest.raises(RequestInputError) as caught:
        item.validate(data, from_text=from_text)
    return str(caught.value)


# ---------------------------------------------------------------------------------------------
# Parsing


def test_the_documented_item_parses() -> None:
    """Test every option of the documented item, and that an absent section means no items."""
    item = parse(DOCUMENTED)["reset-password"]
    assert item == CatalogItem(
        name="reset-password",
        description="Reset a user's password",
        fields=(
            InputField(
                "user", FieldType.STRING, required=True, pattern="[a-z][a-z0-9_-]{0,31}",
                max_length=32,
            ),
            InputField("notify", FieldType.BOOLEAN, default=False),
            InputField("days", FieldType.INTEGER, min=1, max=30),
            InputField("reason", FieldType.STRING, required=True, max_length=500),
            InputField("env", FieldType.ENUM, values=("prod", "staging")),
        ),
        approval=Role.OPERATOR,
        runbook="reset-password",
        sla=4 * 3600.0,
        escalation="requests",
    )  # fmt: skip
    assert str(item.where) == "catalog.yaml:2:5"
    assert parse("other: 1\n") == {}


def test_a_minimal_item_needs_no_approval_runbook_sla_or_fields() -> None:
    """Test the defaults: no fields, no approval, fulfilled by hand, no SLA, no escalation."""
    item = parse("catalog:\n  - name: coffee\n")["coffee"]
    assert (item.fields, item.approval, item.runbook, item.sla, item.escalation) == (
        (),
        None,
        None,
        None,
        None,
    )
    assert item.validate({}) == {}


def test_the_listing_describes_every_field() -> None:
    """Test to_dict, the form the catalog API shows, and that it is JSON."""
    item = parse(
        "catalog:\n"
        "  - name: vm\n"
        "    fields:\n"
        "      size: {type: enum, values: [s, m], default: s, description: How big}\n"
        "      cpus: {type: integer, min: 1}\n"
        "      host: {type: string}\n"
        "    approval: {role: admin}\n"
        "    sla: 90m\n"
    )["vm"]
    shown = item.to_dict()
    assert json.loads(json.dumps(shown)) == shown
    assert shown == {
        "name": "vm",
        "description": "",
        "fields": [
            {"name": "size", "type": "enum", "required": False, "description": "How big",
             "default": "s", "values": ["s", "m"]},
            {"name": "cpus", "type": "integer", "required": False, "description": "", "min": 1},
            {"name": "host", "type": "string", "required": False, "description": "",
             "max_length": MAX_TEXT},
        ],
        "approval": "admin",
        "runbook": None,
        "sla": 5400.0,
        "escalation": None,
    }  # fmt: skip


def item_text(body: str) -> str:
    """Wrap item options (indented 4) into a catalog with one item named x."""
    return "catalog:\n  - name: x\n" + body


def field_text(spec: str) -> str:
    """Wrap one field spec into a catalog item x with field f (line 4, column 10)."""
    return item_text(f"    fields:\n      f: {spec}\n")


ERRORS = [
    ("catalog: {a: 1}\n", "catalog.yaml:1:10: 'catalog' must be a list, not a mapping"),
    ("catalog: [1]\n", "catalog.yaml:1:11: catalog item #1: a catalog item must be a mapping, not a number"),
    ("catalog:\n  - {runbook: x}\n", "catalog.yaml:2:5: catalog item #1: missing required key 'name'"),
    ("catalog:\n  - name: a b\n",
     "catalog.yaml:2:11: catalog item #1: 'name' must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit, not 'a b'"),
    ("catalog:\n  - name: x\n  - name: x\n",
     "catalog.yaml:3:11: duplicate catalog item name 'x' (first defined at catalog.yaml:2:11)"),
    (item_text("    runbok: reset-password\n"),
     "catalog.yaml:3:5: catalog item 'x': unknown option 'runbok' (did you mean 'runbook'?)"),
    (item_text("    runbook: reset-pasword\n"),
     "catalog.yaml:3:14: catalog item 'x': unknown runbook 'reset-pasword' (did you mean 'reset-password'?) (known: reset-password, restart-unit)"),
    (item_text("    escalation: request\n"),
     "catalog.yaml:3:17: catalog item 'x': unknown escalation policy 'request' (did you mean 'requests'?) (known: requests)"),
    (item_text("    runbook: [a]\n"), "catalog.yaml:3:14: catalog item 'x': 'runbook' must be text, not a list"),
    (item_text("    approval: operator\n"),
     "catalog.yaml:3:15: catalog item 'x': 'approval' must be a mapping, not text"),
    (item_text("    approval: {}\n"), "catalog.yaml:3:15: catalog item 'x': missing required key 'role'"),
    (item_text("    approval: {role: operater}\n"),
     "catalog.yaml:3:22: catalog item 'x': unknown role 'operater' (did you mean 'operator'?) (use viewer, operator, admin)"),
    (item_text("    approval: {role: admin, ttl: 1h}\n"),
     "catalog.yaml:3:29: catalog item 'x': unknown approval option 'ttl'"),
    (item_text("    sla: soon\n"),
     "catalog.yaml:3:10: catalog item 'x': 'sla' must be a duration like 250ms, 10s, 5m, 1h or 2d, not 'soon'"),
    (item_text("    sla: 0s\n"), "catalog.yaml:3:10: catalog item 'x': 'sla' must be more than 0s and at most 365d"),
    (item_text("    sla: 400d\n"), "catalog.yaml:3:10: catalog item 'x': 'sla' must be more than 0s and at most 365d"),
    (item_text(f"    description: {'d' * 501}\n"),
     "catalog.yaml:3:18: catalog item 'x': 'description' must be at most 500 characters"),
    (item_text("    fields: [user]\n"), "catalog.yaml:3:13: catalog item 'x': 'fields' must be a mapping, not a list"),
    (item_text("    fields:\n      user-name: {type: string}\n"),
     "catalog.yaml:4:7: catalog item 'x': field name 'user-name' must be 1 to 64 letters, digits and '_', not starting with a digit"),
    (item_text("    fields:\n      id: {type: string}\n"),
     "catalog.yaml:4:7: catalog item 'x': field name 'id' is taken: the runbook reads the request's own id as request.id; call the field something else"),
    (item_text("    fields:\n      1: {type: string}\n"),
     "catalog.yaml:4:7: catalog item 'x': field name '1' must be 1 to 64 letters, digits and '_', not starting with a digit"),
    (field_text("string"), "catalog.yaml:4:10: catalog item 'x': field 'f': a field must be a mapping, not text"),
    (field_text("{required: true}"),
     "catalog.yaml:4:10: catalog item 'x': field 'f': missing required key 'type' (string, integer, boolean or enum)"),
    (field_text("{type: str}"),
     "catalog.yaml:4:17: catalog item 'x': field 'f': unknown type 'str' (did you mean 'string'?) (use string, integer, boolean, enum)"),
    (field_text("{type: boolean, pattern: x}"),
     "catalog.yaml:4:26: catalog item 'x': field 'f': 'pattern' is for string fields, not boolean"),
    (field_text("{type: string, min: 1}"),
     "catalog.yaml:4:25: catalog item 'x': field 'f': 'min' is for integer fields, not string"),
    (field_text("{type: string, requird: true}"),
     "catalog.yaml:4:25: catalog item 'x': field 'f': unknown option 'requird' (did you mean 'required'?)"),
    (field_text("{type: string, required: yes}"),
     "catalog.yaml:4:35: catalog item 'x': field 'f': 'required' must be true or false, not text"),
    (field_text("{type: string, required: true, default: a}"),
     "catalog.yaml:4:50: catalog item 'x': field 'f': a required field takes no 'default' (it is always given)"),
    (field_text("{type: string, pattern: '(?=a)'}"),
     "catalog.yaml:4:34: catalog item 'x': field 'f': invalid pattern '(?=a)': invalid perl operator: (?="),
    (field_text("{type: string, pattern: '[a'}"),
     "catalog.yaml:4:34: catalog item 'x': field 'f': invalid pattern '[a': missing ]: [a"),
    (field_text("{type: string, pattern: 7}"),
     "catalog.yaml:4:34: catalog item 'x': field 'f': 'pattern' must be text, not a number"),
    (field_text("{type: string, max_length: 0}"),
     "catalog.yaml:4:37: catalog item 'x': field 'f': 'max_length' must be a whole number >= 1"),
    (field_text("{type: string, max_length: 100001}"),
     "catalog.yaml:4:37: catalog item 'x': field 'f': 'max_length' must be at most 100000"),
    (field_text("{type: string, pattern: '[a-z]+', default: A}"),
     "catalog.yaml:4:53: catalog item 'x': field 'f': 'default' must match the pattern [a-z]+"),
    (field_text("{type: string, max_length: 2, default: abc}"),
     "catalog.yaml:4:49: catalog item 'x': field 'f': 'default' must be at most 2 characters"),
    (field_text("{type: integer, min: 1.5}"),
     "catalog.yaml:4:31: catalog item 'x': field 'f': 'min' must be a whole number"),
    (field_text("{type: integer, max: true}"),
     "catalog.yaml:4:31: catalog item 'x': field 'f': 'max' must be a whole number"),
    (field_text("{type: integer, max: 9223372036854775808}"),
     "catalog.yaml:4:31: catalog item 'x': field 'f': 'max' must fit in 64 bits"),
    (field_text("{type: integer, min: 5, max: 4}"),
     "catalog.yaml:4:39: catalog item 'x': field 'f': 'max' must not be below 'min'"),
    (field_text("{type: integer, min: 1, default: 0}"),
     "catalog.yaml:4:43: catalog item 'x': field 'f': 'default' must be a whole number of at least 1"),
    (field_text("{type: integer, default: '3'}"),
     "catalog.yaml:4:35: catalog item 'x': field 'f': 'default' must be a whole number that fits in 64 bits"),
    (field_text("{type: boolean, default: 'no'}"),
     "catalog.yaml:4:35: catalog item 'x': field 'f': 'default' must be true or false"),
    (field_text("{type: enum}"), "catalog.yaml:4:10: catalog item 'x': field 'f': missing required key 'values' (the allowed values)"),
    (field_text("{type: enum, values: []}"),
     "catalog.yaml:4:31: catalog item 'x': field 'f': 'values' needs at least one value"),
    (field_text("{type: enum, values: a}"),
     "catalog.yaml:4:31: catalog item 'x': field 'f': 'values' must be a list, not text"),
    (field_text("{type: enum, values: [a, 1]}"),
     "catalog.yaml:4:35: catalog item 'x': field 'f': an enum value must be text, not a number"),
    (field_text("{type: enum, values: [a, a]}"),
     "catalog.yaml:4:35: catalog item 'x': field 'f': 'values' lists 'a' twice"),
    (field_text("{type: enum, values: [a, b], default: c}"),
     "catalog.yaml:4:48: catalog item 'x': field 'f': 'default' must be one of a, b"),
    (field_text("{type: string, description: [a]}"),
     "catalog.yaml:4:38: catalog item 'x': field 'f': 'description' must be text, not a list"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_config_errors_name_file_line_and_problem(text: str, message: str) -> None:
    """Test that each catalog mistake is refused with its exact file:line message."""
    with pytest.raises(SourceError) as caught:
        parse(text)
    assert str(caught.value) == message


def test_references_are_checked_against_what_is_defined() -> None:
    """Test that with no runbooks or policies defined, the error says so."""
    with pytest.raises(SourceError) as caught:
        parse(item_text("    runbook: a\n"), runbooks=())
    assert str(caught.value) == (
        "catalog.yaml:3:14: catalog item 'x': unknown runbook 'a' (known: none are defined)"
    )
    assert parse(item_text("    runbook: restart-unit\n"))["x"].runbook == "restart-unit"


# ---------------------------------------------------------------------------------------------
# Validating input


def test_good_input_comes_back_clean_in_schema_order_with_defaults(item: CatalogItem) -> None:
    """Test that optional fields not given are left out, or filled from their default."""
    clean = item.validate({"reason": "forgot it", "env": "prod", "user": "bob"})
    assert clean == {"user": "bob", "notify": False, "reason": "forgot it", "env": "prod"}
    assert list(clean) == ["user", "notify", "reason", "env"]
    full = {"user": "a_b-9", "notify": True, "days": 30, "reason": "r" * 500, "env": "staging"}
    assert item.validate(full) == full


def test_the_documented_refusal_lists_every_problem(item: CatalogItem) -> None:
    """Test the message of the issue: all problems at once, field order, then unknown fields."""
    assert refusal(item, {"usr": "bob", "days": 31, "reason": "x"}) == (
        "user: required; days: must be a whole number from 1 to 30; "
        "unknown field 'usr' (did you mean 'user'?)"
    )
    with pytest.raises(RequestInputError) as caught:
        item.validate({"usr": "bob", "days": 31, "reason": "x"})
    assert caught.value.problems == (
        "user: required",
        "days: must be a whole number from 1 to 30",
        "unknown field 'usr' (did you mean 'user'?)",
    )
    assert caught.value.more == 0


STRING_CASES = [
    ({"user": None}, "user: required"),
    ({"user": ""}, "user: required"),
    ({"user": 7}, "user: must be text"),
    ({"user": ["bob"]}, "user: must be text"),
    ({"user": {"name": "bob"}}, "user: must be text"),
    ({"user": "Bob"}, "user: must match the pattern [a-z][a-z0-9_-]{0,31}"),
    ({"user": "bob\n"}, "user: must match the pattern [a-z][a-z0-9_-]{0,31}"),
    ({"user": "b" * 33}, "user: must be at most 32 characters"),
    ({"user": "b\udc80"}, "user: must be valid Unicode text"),
]


@pytest.mark.parametrize(("given", "message"), STRING_CASES)
def test_string_fields_are_typed_bounded_and_fully_matched(
    item: CatalogItem, given: dict[str, Any], message: str
) -> None:
    """Test each way a string value is refused (the pattern must match the whole value)."""
    assert refusal(item, {"reason": "r", **given}) == message


def test_strings_have_a_default_bound_and_optional_ones_may_be_empty() -> None:
    """Test that a string field without max_length takes MAX_TEXT characters, and no more."""
    item = CatalogItem("x", fields=(InputField("note", FieldType.STRING),))
    assert item.validate({"note": ""}) == {"note": ""}
    assert item.validate({"note": "n" * MAX_TEXT}) == {"note": "n" * MAX_TEXT}
    assert refusal(item, {"note": "n" * (MAX_TEXT + 1)}) == (
        f"note: must be at most {MAX_TEXT} characters"
    )


def test_patterns_are_re2_and_linear_time() -> None:
    """Test that a pattern that backtracks exponentially in Python re is fast under RE2."""
    item = CatalogItem("x", fields=(InputField("s", FieldType.STRING, pattern="(a+)+"),))
    started = time.perf_counter()
    assert refusal(item, {"s": "a" * 5000 + "b"}) == "s: must match the pattern (a+)+"
    assert time.perf_counter() - started < 1.0
    assert item.validate({"s": "aaa"}) == {"s": "aaa"}
    unicode = CatalogItem("u", fields=(InputField("s", FieldType.STRING, pattern=".{2}"),))
    assert unicode.validate({"s": "éü"}) == {"s": "éü"}  # characters, not bytes


INTEGER_CASES = [
    (InputField("n", FieldType.INTEGER, min=1, max=30), [1, 30], [0, 31, 1.0, "5", True, None],
     "n: must be a whole number from 1 to 30"),
    (InputField("n", FieldType.INTEGER, min=-5), [-5, 2**63 - 1], [-6, 2**63],
     "n: must be a whole number of at least -5"),
    (InputField("n", FieldType.INTEGER, max=0), [0, -(2**63)], [1, -(2**63) - 1],
     "n: must be a whole number of at most 0"),
    (InputField("n", FieldType.INTEGER), [0, 2**63 - 1, -(2**63)], [2**63, 10**400, math.nan, [1]],
     "n: must be a whole number that fits in 64 bits"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "good", "bad", "message"), INTEGER_CASES)
def test_integer_fields_check_type_and_bounds(
    spec: InputField, good: list[Any], bad: list[Any], message: str
) -> None:
    """Test the bounds inclusive, and that bools, floats and text are not whole numbers."""
    item = CatalogItem(
        "x", fields=(InputField("n", FieldType.INTEGER, required=True, min=spec.min, max=spec.max),)
    )
    for value in good:
        assert item.validate({"n": value}) == {"n": value}
    for value in bad:
        expected = "n: required" if value is None else message
        assert refusal(item, {"n": value}) == expected, value


def test_boolean_fields_take_only_true_and_false() -> None:
    """Test that 1, "true" and null are not booleans (null means not given)."""
    item = CatalogItem("x", fields=(InputField("b", FieldType.BOOLEAN, default=True),))
    assert item.validate({"b": False}) == {"b": False}
    assert item.validate({"b": None}) == {"b": True}
    for value in (1, 0, "true", [True]):
        assert refusal(item, {"b": value}) == "b: must be true or false"


def test_enum_fields_take_one_of_their_values() -> None:
    """Test exact matches only, and a suggestion only for short text."""
    item = CatalogItem("x", fields=(InputField("env", FieldType.ENUM, values=("prod", "staging")),))
    assert item.validate({"env": "staging"}) == {"env": "staging"}
    assert (
        refusal(item, {"env": "Prod"}) == "env: must be one of prod, staging (did you mean 'prod'?)"
    )
    assert refusal(item, {"env": "x"}) == "env: must be one of prod, staging"
    assert refusal(item, {"env": "prod" * 100}) == "env: must be one of prod, staging"
    assert refusal(item, {"env": 1}) == "env: must be one of prod, staging"


def test_text_input_from_rules_is_read_as_typed_values() -> None:
    """Test from_text: whole numbers and true/false are read from text, and "" is not given."""
    item = CatalogItem(
        "x",
        fields=(
            InputField("n", FieldType.INTEGER, min=1, max=30),
            InputField("b", FieldType.BOOLEAN, default=False),
            InputField("s", FieldType.STRING, required=True),
        ),
    )
    given = {"n": " 12 ", "b": "True", "s": "x"}
    assert item.validate(given, from_text=True) == {"n": 12, "b": True, "s": "x"}
    assert item.validate({"n": "", "b": "", "s": "x"}, from_text=True) == {"b": False, "s": "x"}
    assert refusal(item, {"n": "1.5", "b": "yes", "s": ""}, from_text=True) == (
        "n: must be a whole number from 1 to 30; b: must be true or false; s: required"
    )
    assert refusal(item, {"n": "12", "b": "true", "s": "x"}) == (
        "n: must be a whole number from 1 to 30; b: must be true or false"
    )


def test_unknown_field_names_are_shown_safely(item: CatalogItem) -> None:
    """Test that odd or long names from the input are escaped and cut in the message."""
    base = {"user": "bob", "reason": "r"}
    assert refusal(item, {**base, "a\nb": 1}) == "unknown field 'a\\nb'"
    assert refusal(item, {**base, "z" * 100: 1}) == f"unknown field '{'z' * 64}'..."
    assert refusal(item, {**base, 5: 1}) == "unknown field of type int"
    assert refusal(item, {**base, "\udc80": 1}) == "unknown field '\\udc80'"


def test_too_many_problems_are_counted_not_listed(item: CatalogItem) -> None:
    """Test that a flood of unknown fields gives a bounded message that still counts them."""
    flood = {f"f{i}": i for i in range(100_000)}
    with pytest.raises(RequestInputError) as caught:
        item.validate(flood)
    assert len(caught.value.problems) == 20
    assert caught.value.problems[:2] == ("user: required", "reason: required")
    assert caught.value.more == 100_000 - 18
    assert str(caught.value).endswith("; and 99982 more problems")


def test_the_problem_bound_counts_field_problems_too() -> None:
    """Test an item with more required fields than an error lists."""
    fields = tuple(InputField(f"f{i}", FieldType.BOOLEAN, required=True) for i in range(25))
    with pytest.raises(RequestInputError) as caught:
        CatalogItem("x", fields=fields).validate({"f0": 1})
    assert caught.value.problems[0] == "f0: must be true or false"
    assert (len(caught.value.problems), caught.value.more) == (20, 5)
    assert str(caught.value).endswith("; f19: required; and 5 more problems")


@pytest.mark.parametrize(
    "data", [None, [], "user=bob", 3, b"{}", [("user", "bob")], {"user", "reason"}]
)
def test_input_that_is_not_a_mapping_is_refused(item: CatalogItem, data: Any) -> None:
    """Test that the input as a whole must be a mapping."""
    assert refusal(item, data) == "the input must be a mapping of field names to values"


def test_values_of_kinds_json_does_not_have_are_refused(item: CatalogItem) -> None:
    """Test bytes, sets, tuples and objects: a clear refusal, never another exception."""
    for value in (b"bob", {"bob"}, ("bob",), object(), 1j, math.inf):
        problems = refusal(item, {"user": value, "reason": value, "days": value, "env": value})
        assert problems == (
            "user: must be text; days: must be a whole number from 1 to 30; "
            "reason: must be text; env: must be one of prod, staging"
        )


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
FIELD_NAMES = st.sampled_from(["user", "notify", "days", "reason", "env", "usr", "x"])
LIKELY = {
    "user": st.from_regex(r"[a-z][a-z0-9_-]{0,31}", fullmatch=True),
    "notify": st.booleans(),
    "days": st.integers(0, 31),
    "reason": st.text(max_size=501),
    "env": st.sampled_from(["prod", "staging", "dev"]),
}
INPUTS = st.one_of(
    JSON,
    st.dictionaries(FIELD_NAMES | st.text(), JSON, max_size=8),
    st.fixed_dictionaries({}, optional={k: v | JSON for k, v in LIKELY.items()}),
    st.fixed_dictionaries(  # nearly valid: the required fields right, the rest anything
        {"user": LIKELY["user"], "reason": LIKELY["reason"]},
        optional={k: LIKELY[k] | JSON for k in ("notify", "days", "env")},
    ),
)


@settings(max_examples=400, deadline=None)
@given(data=INPUTS, from_text=st.booleans())
def test_any_json_gives_clean_input_or_a_clear_refusal(
    item: CatalogItem, data: Any, from_text: bool
) -> None:
    """Test hostile input: either valid, JSON-able, idempotent clean data, or RequestInputError."""
    problems: tuple[str, ...] = ()
    try:
        clean = item.validate(data, from_text=from_text)
    except RequestInputError as refused:
        problems = refused.problems
    if problems:
        assert all(isinstance(p, str) and p for p in problems)
        return
    assert json.loads(json.dumps(clean)) == clean
    assert set(clean) <= {"user", "notify", "days", "reason", "env"}
    assert {"user", "reason", "notify"} <= set(clean)
    assert item.validate(clean) == clean
