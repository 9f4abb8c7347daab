"""Label matchers: both written forms, Alertmanager matching semantics, exact error texts."""

from __future__ import annotations

from typing import Any

import pytest
import re2
from hypothesis import given
from hypothesis import strategies as st

from tocsin.mute.matchers import (
    InvalidRegexError,
    LabelMatcher,
    Matchers,
    MatchOp,
    check_label_name,
    parse_matcher,
    parse_matchers,
)
from tocsin.yamlsrc import Mark, SourceError, load_yaml

HERE = Mark("api", 1, 1)


def one(text: Any) -> LabelMatcher:
    """Parse one matcher at a fixed mark."""
    return parse_matcher(text, HERE)


def error_of(text: Any) -> str:
    """Return the message a bad matcher raises."""
    with pytest.raises(SourceError) as caught:
        parse_matcher(text, HERE)
    return caught.value.message


@pytest.mark.parametrize(
    ("text", "name", "op", "value"),
    [
        ("host=web1", "host", "=", "web1"),
        ("rule=~ssh-.*", "rule", "=~", "ssh-.*"),
        ("severity!=minor", "severity", "!=", "minor"),
        ("service!~db|cache", "service", "!~", "db|cache"),
        ("  host = web1  ", "host", "=", "web1"),
        ("labels.zone=eu-1", "labels.zone", "=", "eu-1"),
        ("_x=", "_x", "=", ""),
        ("url=http://a/b?c=d", "url", "=", "http://a/b?c=d"),
        ('host="web 1"', "host", "=", "web 1"),
        ('host=""', "host", "=", ""),
        ('msg="say \\"hi\\""', "msg", "=", 'say "hi"'),
        ('path="C:\\\\tmp"', "path", "=", "C:\\tmp"),
        ('text="a\\nb"', "text", "=", "a\nb"),
        ('host=~"web\\.example"', "host", "=~", "web\\.example"),
        ('host=~"  padded  "', "host", "=~", "  padded  "),
    ],
)
def test_text_form(text: str, name: str, op: str, value: str) -> None:
    """Test that the text form yields the expected name, op and value."""
    assert one(text) == LabelMatcher(name=name, op=op, value=value)  # type: ignore[arg-type]


def test_mapping_form_defaults_to_equality() -> None:
    """Test that a mapping without op means "=" and one with op uses it."""
    assert one({"name": "host", "value": "web1"}) == LabelMatcher(name="host", op="=", value="web1")
    assert one({"name": "rule", "op": "=~", "value": "ssh-.*"}).op == "=~"


@pytest.mark.parametrize(
    ("matcher", "labels", "expected"),
    [
        ("host=web1", {"host": "web1"}, True),
        ("host=web1", {"host": "web10"}, False),
        ("host=web1", {}, False),
        ("host!=web1", {"host": "web2"}, True),
        ("host!=web1", {"host": "web1"}, False),
        ("host!=web1", {}, True),
        ('host=""', {}, True),
        ('host=""', {"host": "x"}, False),
        ("host=~web", {"host": "web1"}, False),
        ("host=~web", {"host": "aweb"}, False),
        ("host=~web.*", {"host": "web1"}, True),
        ("host=~a|b", {"host": "b"}, True),
        ("host=~a|b", {"host": "ab"}, False),
        ("host=~.*", {}, True),
        ("host=~.+", {}, False),
        ("host!~db-.*", {"host": "db-1"}, False),
        ("host!~db-.*", {"host": "web-1"}, True),
        ("host!~db-.*", {}, True),
        ("host=~(?i)WEB1", {"host": "web1"}, True),
        ("host=~.*", {"host": "line\nbreak"}, False),
        ("host=~jörg.", {"host": "jörgü"}, True),
        ("host=~.*", {"host": "lone \udc80 surrogate"}, True),
    ],
)
def test_matching_semantics(matcher: str, labels: dict[str, str], expected: bool) -> None:
    """Test equality, negation, anchored regexes and missing labels read as ""."""
    assert one(matcher).matches(labels) is expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("host=~[", "matcher 'host=~[' has an invalid regex: missing ]: ["),
        ("x=~(a)\\1", "matcher 'x=~(a)\\1' has an invalid regex: invalid escape sequence: \\1"),
        ("host==web1", "matcher 'host==web1' uses '=='; write a single '=' for equality"),
        (
            "1host=x",
            "matcher '1host=x' has an invalid label name '1host' (use letters, digits, '_' and "
            "'.', not starting with a digit)",
        ),
        (
            "my host=x",
            "matcher 'my host=x' has an invalid label name 'my host' (use letters, digits, '_' "
            "and '.', not starting with a digit)",
        ),
        ("=web1", "matcher '=web1' names no label"),
        (
            "hostweb1",
            "matcher 'hostweb1' must look like name=value, name!=value, name=~regex or name!~regex",
        ),
        (
            "host~=web",
            "matcher 'host~=web' must look like name=value, name!=value, name=~regex or "
            "name!~regex",
        ),
        ('host="web1', "matcher 'host=\"web1' has an unterminated quoted value"),
        ('host="web1\\"', "matcher 'host=\"web1\\\"' has an unterminated quoted value"),
        ('host="web"1', "matcher 'host=\"web\"1' has text after the closing quote"),
        (5, "a matcher must be text like host=web1 or a mapping, not a number"),
        (None, "a matcher must be text like host=web1 or a mapping, not empty"),
        ({"name": "host", "vale": "x"}, "unknown matcher option 'vale' (did you mean 'value'?)"),
        ({"name": "host"}, "missing required key 'value'"),
        ({"name": "host", "value": 22}, "'value' must be text, not a number"),
        (
            {"name": "host", "value": "x", "op": "=="},
            "matcher op '==' must be one of =, !=, =~, !~",
        ),
        (
            {"name": "host", "op": "=~", "value": "("},
            "matcher 'host=~(' has an invalid regex: missing ): (",
        ),
    ],
)
def test_parse_errors(spec: Any, message: str) -> None:
    """Test that each malformed matcher is rejected with exactly this sentence."""
    assert error_of(spec) == message


def test_errors_point_at_the_yaml_item() -> None:
    """Test that a bad matcher in a YAML list is reported at its own file:line:col."""
    data = load_yaml("matchers:\n  - host=web1\n  - host=~[\n", name="config.yaml")
    with pytest.raises(SourceError) as caught:
        parse_matchers(data["matchers"], data.mark)
    assert str(caught.value) == (
        "config.yaml:3:5: matcher 'host=~[' has an invalid regex: missing ]: ["
    )


def test_mapping_errors_point_at_the_key_or_value() -> None:
    """Test that mapping-form problems point at the offending key or value."""
    data = load_yaml(
        "m:\n  - {name: host, value: x, opp: '='}\n  - {name: 2x, value: y}\n", name="c.yaml"
    )
    with pytest.raises(SourceError) as caught:
        parse_matcher(data["m"][0], data.mark)
    assert str(caught.value) == "c.yaml:2:28: unknown matcher option 'opp' (did you mean 'op'?)"
    with pytest.raises(SourceError) as caught:
        parse_matcher(data["m"][1], data.mark)
    assert str(caught.value) == (
        "c.yaml:3:12: matcher '2x=y' has an invalid label name '2x' (use letters, digits, "
        "'_' and '.', not starting with a digit)"
    )


def test_mapping_value_errors_point_at_the_value() -> None:
    """Test that a mapping's bad op or regex is reported where that value is written."""
    data = load_yaml(
        "- {name: a, op: '~=', value: y}\n- {name: a, op: '=~', value: '['}\n", name="c.yaml"
    )
    with pytest.raises(SourceError) as caught:
        parse_matcher(data[0], data.mark)
    assert str(caught.value) == "c.yaml:1:17: matcher op '~=' must be one of =, !=, =~, !~"
    with pytest.raises(SourceError) as caught:
        parse_matcher(data[1], data.mark)
    assert str(caught.value) == "c.yaml:2:30: matcher 'a=~[' has an invalid regex: missing ]: ["


def test_matchers_must_be_a_list() -> None:
    """Test that a single string where a list belongs is rejected, naming the key."""
    with pytest.raises(SourceError) as caught:
        parse_matchers("host=web1", HERE)
    assert caught.value.message == "'matchers' must be a list, not text"
    with pytest.raises(SourceError) as caught:
        parse_matchers({"host": "web1"}, HERE, what="'source'")
    assert caught.value.message == "'source' must be a list, not a mapping"


def test_plain_json_lists_are_accepted() -> None:
    """Test that lists and dicts from JSON (not YAML) parse, errors falling back to the mark."""
    parsed = parse_matchers(["host=web1", {"name": "rule", "op": "=~", "value": "ssh-.*"}], HERE)
    assert str(parsed) == '{host="web1", rule=~"ssh-.*"}'
    with pytest.raises(SourceError) as caught:
        parse_matchers(["host=web1", {"name": "x"}], HERE)
    assert str(caught.value) == "api:1:1: missing required key 'value'"


def test_all_must_hold_and_empty_matches_everything() -> None:
    """Test that Matchers is an all-of, and that no matchers match any labels."""
    both = parse_matchers(["host=web1", "rule=~ssh-.*"], HERE)
    assert both.matches({"host": "web1", "rule": "ssh-bruteforce"})
    assert not both.matches({"host": "web1", "rule": "disk-full"})
    assert not both.matches({"rule": "ssh-bruteforce"})
    assert Matchers().matches({"anything": "at all"})
    assert len(both) == 2
    assert [m.name for m in both] == ["host", "rule"]


def test_regexes_are_checked_after_plain_comparisons() -> None:
    """Test that the written order is kept for display while evaluation puts regexes last."""
    parsed = parse_matchers(["rule=~ssh-.*", "host=web1"], HERE)
    assert [m.name for m in parsed] == ["rule", "host"]
    assert str(parsed) == '{rule=~"ssh-.*", host="web1"}'
    assert parsed.matches({"rule": "ssh-x", "host": "web1"})


@pytest.mark.parametrize(
    ("texts", "reason"),
    [
        ([], "needs at least one matcher, like host=web1"),
        (
            ["x=~.*"],
            "needs at least one matcher that does not match the empty string, like host=web1 or "
            "host=~.+ (these would also match incidents without the labels)",
        ),
        (
            ["host!=web1", 'rule=""', "svc!~db.*"],
            "needs at least one matcher that does not match the empty string, like host=web1 or "
            "host=~.+ (these would also match incidents without the labels)",
        ),
        (["x=~.*", "host=web1"], None),
        (["host=~.+"], None),
        (["host!~.*"], None),
    ],
)
def test_unselective_reason(texts: list[str], reason: str | None) -> None:
    """Test Alertmanager's rule: at least one matcher must not match the empty string."""
    assert parse_matchers(texts, HERE).unselective_reason() == reason


def test_direct_construction_validates() -> None:
    """Test that building a LabelMatcher in code checks the name, op and regex too."""
    with pytest.raises(ValueError, match="invalid label name 'a b'"):
        LabelMatcher(name="a b", op="=", value="x")
    with pytest.raises(ValueError, match="invalid matcher op '~'"):
        LabelMatcher(name="a", op="~", value="x")  # type: ignore[arg-type]
    with pytest.raises(InvalidRegexError) as caught:
        LabelMatcher(name="a", op="!~", value="a{1001}")
    assert str(caught.value) == "invalid regex 'a{1001}': invalid repetition size: {1001}"
    assert caught.value.reason == "invalid repetition size: {1001}"
    with pytest.raises(InvalidRegexError) as caught:
        LabelMatcher(name="a", op="=~", value="web\udc80")
    assert caught.value.reason == "not valid Unicode text"


def test_equality_ignores_the_compiled_form() -> None:
    """Test that equal matchers compare and hash equal, so they work in sets and dicts."""
    first, second = one("rule=~ssh-.*"), one('rule =~ "ssh-.*"')
    assert first == second
    assert len({first, second, one("rule!~ssh-.*")}) == 2


def test_check_label_name() -> None:
    """Test the label-name check used for inhibit rules' `equal` lists."""
    assert check_label_name("host", HERE, "'equal' entry") == "host"
    with pytest.raises(SourceError) as caught:
        check_label_name("ho st", HERE, "'equal' entry")
    assert caught.value.message == (
        "'equal' entry 'ho st' is not a valid label name (use letters, digits, '_' and '.', not "
        "starting with a digit)"
    )


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,8}", fullmatch=True)
values = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
ops = st.sampled_from(["=", "!=", "=~", "!~"])


@given(name=names, op=ops, value=values)
def test_text_form_round_trips(name: str, op: MatchOp, value: str) -> None:
    """Test that str() of any matcher parses back to an equal matcher (what silences store)."""
    if op in ("=~", "!~"):
        value = re2.escape(value)
    matcher = LabelMatcher(name=name, op=op, value=value)
    assert one(str(matcher)) == matcher


@given(value=values, probe=values)
def test_escaped_regex_matches_exactly_the_literal(value: str, probe: str) -> None:
    """Test that an escaped regex is anchored: it matches its literal and nothing else."""
    matcher = LabelMatcher(name="x", op="=~", value=re2.escape(value))
    assert matcher.matches({"x": value})
    assert matcher.matches({"x": probe}) is (probe == value)


@given(
    specs=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), ops, st.sampled_from(["", "x", "x.*"])),
        max_size=4,
    ),
    labels=st.dictionaries(st.sampled_from(["a", "b", "c"]), st.sampled_from(["", "x", "xy"])),
)
def test_matchers_is_all_of_its_items(
    specs: list[tuple[str, MatchOp, str]], labels: dict[str, str]
) -> None:
    """Test that Matchers.matches agrees with checking each matcher on its own."""
    items = tuple(LabelMatcher(name=n, op=o, value=v) for n, o, v in specs)
    assert Matchers(items).matches(labels) is all(m.matches(labels) for m in items)
