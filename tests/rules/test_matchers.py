"""Matchers: every condition form, on real events, through the real loader."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testkit import make_event
from tocsin.rules.loader import RuleSet
from tocsin.rules.matchers import Regex
from tocsin.yamlsrc import Mark, SourceError

Load = Callable[..., RuleSet]


def matches(
    load_text: Load, match_yaml: str, event: Any, lists: str = ""
) -> tuple[bool, dict[str, Any]]:
    """Load one rule with `match_yaml` and run its matcher on `event`."""
    ruleset = load_text(f"{lists}rules:\n  - id: r\n    match: {match_yaml}\n    actions: [drop]\n")
    assert not ruleset.errors, [str(e) for e in ruleset.errors]
    captures: dict[str, Any] = {}
    return ruleset.rules[0].matcher(event, captures), captures


@pytest.mark.parametrize(
    ("match_yaml", "expected"),
    [
        ("{program: sshd}", True),
        ("{program: cron}", False),
        ("{program: [cron, sshd]}", True),
        ("{host: {startswith: web}}", True),
        ("{host: {startswith: [db, web]}}", True),
        ("{host: {endswith: '-1'}}", True),
        ("{message: {contains: password}}", True),
        ("{message: {contains: [nothing, here]}}", False),
        ("{level: {in: [err, crit]}}", True),
        ("{level: {not_in: [err, crit]}}", False),
        ("{fields.port: 22}", True),
        ("{fields.port: {gt: 21, le: 22}}", True),
        ("{fields.port: {lt: 22}}", False),
        ("{fields.user.name: root}", True),
        ("{fields.tags.1: b}", True),
        ("{fields.missing: {exists: false}}", True),
        ("{fields.port: {exists: true}}", True),
        ("{fields.missing: {not_in: [x]}}", True),
        ("{fields.missing: x}", False),
        ("{severity: exception}", True),
        ("{any: [{program: cron}, {host: web-1}]}", True),
        ("{all: [{program: sshd}, {host: db}]}", False),
        ("{not: {program: sshd}}", False),
        ("{source: log, origin: /var/log/auth.log}", True),
        ("{message: {regex: 'pass(word)?'}, program: sshd}", True),
        ("{message: {regex: '^password'}}", False),
    ],
)
def test_condition_forms(load_text: Load, match_yaml: str, expected: bool) -> None:
    """Test that each condition form gives the expected answer on one event."""
    event = make_event(
        "Failed password for root",
        host="web-1",
        program="sshd",
        level="err",
        origin="/var/log/auth.log",
        fields={"port": "22", "user": {"name": "root"}, "tags": ["a", "b"]},
    )
    assert matches(load_text, match_yaml, event)[0] is expected


def test_named_captures_are_returned(load_text: Load) -> None:
    """Test that regex named groups fill the captures, unmatched optional groups do not."""
    ok, caps = matches(
        load_text,
        r"{message: {regex: 'for (?:invalid user )?(?P<user>\S+) from (?P<ip>[0-9.]+)(?P<port> port \d+)?'}}",
        make_event("Failed password for invalid user bob from 10.1.2.3"),
    )
    assert ok
    assert caps == {"user": "bob", "ip": "10.1.2.3"}


def test_captures_handle_non_ascii(load_text: Load) -> None:
    """Test that captures are cut at character, not byte, boundaries for UTF-8 text."""
    ok, caps = matches(
        load_text,
        r"{message: {regex: 'user (?P<user>\S+) from (?P<ip>\S+)'}}",
        make_event("Grüße: user jörg-ü from ::1"),
    )
    assert ok
    assert caps == {"user": "jörg-ü", "ip": "::1"}


def test_in_named_list(load_text: Load) -> None:
    """Test that `in: lists.NAME` uses the named list."""
    lists = "lists:\n  admins: [root, admin]\n"
    assert matches(
        load_text, "{fields.user: {in: lists.admins}}", make_event(fields={"user": "root"}), lists
    )[0]
    assert not matches(
        load_text, "{fields.user: {in: lists.admins}}", make_event(fields={"user": "bob"}), lists
    )[0]


def test_macro_expands(load_text: Load) -> None:
    """Test that a macro's conditions apply where it is named, nested macros too."""
    text = (
        "macros:\n  sshd: {program: sshd}\n  web_sshd: {macro: sshd, host: {startswith: web}}\n"
        "rules:\n  - id: r\n    match: {macro: web_sshd}\n    actions: [drop]\n"
    )
    ruleset = load_text(text)
    matcher = ruleset.rules[0].matcher
    assert matcher(make_event(program="sshd", host="web-2"), {})
    assert not matcher(make_event(program="sshd", host="db-2"), {})
    assert not matcher(make_event(program="cron", host="web-2"), {})


def test_any_keeps_only_the_matching_branch_captures(load_text: Load) -> None:
    """Test that captures from a failed `any` branch do not leak into the result."""
    ok, caps = matches(
        load_text,
        r"{any: [{message: {regex: '(?P<a>x+)y'}, host: nope}, {message: {regex: '(?P<b>z+)'}}]}",
        make_event("xxy zz"),
    )
    assert ok
    assert caps == {"b": "zz"}


def test_prefilter_is_the_message_pattern(load_text: Load) -> None:
    """Test that the rule's prefilter is its top-level message regex or an escaped literal."""
    ruleset = load_text(
        "rules:\n"
        "  - id: a\n    match: {message: {regex: 'a+b'}}\n    actions: [drop]\n"
        "  - id: b\n    match: {message: {contains: 'x.y'}}\n    actions: [drop]\n"
        "  - id: c\n    match: {any: [{message: {contains: q}}]}\n    actions: [drop]\n"
        "  - id: d\n    match: {message: {startswith: 'GET /'}}\n    actions: [drop]\n"
    )
    assert [r.prefilter for r in ruleset.rules] == ["a+b", r"x\.y", None, r"^GET\ \/"]


def test_redos_pattern_is_linear(load_text: Load) -> None:
    """Test that a catastrophic-backtracking pattern runs in linear time on RE2."""
    import time

    ok, _ = matches(load_text, "{message: {regex: '(a+)+$'}}", make_event("a" * 50_000 + "!"))
    start = time.perf_counter()
    ok, _ = matches(load_text, "{message: {regex: '(x+x+)+y'}}", make_event("x" * 5_000))
    assert not ok
    assert time.perf_counter() - start < 1.0


@given(st.text(max_size=200))
def test_fast_captures_equal_re2_search(text: str) -> None:
    """Test that the byte-span capture path gives what google-re2's own search gives."""
    errors: list[str] = []

    def fail(where: Mark, message: str) -> SourceError:
        return SourceError(where, message)

    rx = Regex(
        r"(?P<word>\w+)\s*(?P<rest>.{0,3})",
        where=Mark("t", 1, 1),
        errors=fail,
        warn=lambda m, s: errors.append(s),
    )
    from tocsin.rules.matchers import _regex

    caps: dict[str, Any] = {}
    found = _regex(rx)(text, caps)
    expected = rx.search(text)
    assert found == (expected is not None)
    if expected is not None:
        assert caps == {k: v for k, v in expected.groupdict().items() if v is not None}
