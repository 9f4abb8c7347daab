"""Correlation options: what loads, and the exact error for what does not."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tocsin.rules.correlation import (
    AbsenceSpec,
    ExpectSpec,
    FlappingSpec,
    GroupSpec,
    HysteresisSpec,
    StormSpec,
    SuppressSpec,
    ThresholdSpec,
)
from tocsin.rules.loader import RuleSet

Load = Callable[..., RuleSet]

HEAD = "rules:\n  - id: r\n    match: {message: {contains: x}}\n"


def only_error(ruleset: RuleSet) -> str:
    """The one error a load reported, as text."""
    assert len(ruleset.errors) == 1, [str(e) for e in ruleset.errors]
    return str(ruleset.errors[0]).rsplit("/", 1)[-1]  # as the operator sees it, from its folder


def test_every_mode_compiles_to_its_spec(load_text: Load) -> None:
    """Test that each correlation option becomes the spec with the values given."""
    ruleset = load_text(
        """
rules:
  - {id: s, match: {message: {contains: a}}, suppress: 5m, actions: [drop]}
  - {id: t, match: {message: {contains: b}}, threshold: {count: 5, within: 60s}, actions: [drop]}
  - id: h
    match: {message: {contains: c}}
    hysteresis: {raise: {count: 3, within: 1m}, clear: {max: 0, within: 2m}}
    actions: [{incident: {title: h}}]
  - {id: a, match: {message: {contains: d}}, absence: {within: 1h}, actions: [{log: gone}]}
  - id: e
    match: {message: {contains: e}}
    expect: {match: {message: {contains: f}}, within: 10m, on_timeout: [{log: late}]}
  - id: m1
    match: {message: {contains: g}}
    actions: []
  - id: g
    group: {all_of: [m1, s], within: 30s}
    actions: [{log: both}]
"""
    )
    assert not ruleset.errors, [str(e) for e in ruleset.errors]
    modes = {r.id: r.correlation.mode if r.correlation else None for r in ruleset.rules}
    assert modes["s"] == SuppressSpec(300.0)
    assert modes["t"] == ThresholdSpec(5, 60.0)
    assert modes["h"] == HysteresisSpec(3, 60.0, 0, 120.0)
    assert modes["a"] == AbsenceSpec(3600.0)
    assert isinstance(modes["e"], ExpectSpec)
    assert modes["e"].within == 600.0
    assert modes["m1"] is None
    assert modes["g"] == GroupSpec(("m1", "s"), 2, 30.0)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (
            "    threshold: {count: 0, within: 1m}\n    actions: [drop]\n",
            "rules.yaml:4:24: rule 'r': count must be a whole number >= 1",
        ),
        (
            "    threshold: {count: 2, within: 0s}\n    actions: [drop]\n",
            "rules.yaml:4:35: rule 'r': within must be longer than 0s",
        ),
        (
            "    threshold: {count: 2, window: 1m}\n    actions: [drop]\n",
            "rules.yaml:4:27: rule 'r': unknown threshold option 'window'",
        ),
        (
            "    suppress: soon\n    actions: [drop]\n",
            "rules.yaml:4:15: rule 'r': suppress must be a duration like 250ms, 10s, 5m, 1h "
            "or 2d, not 'soon'",
        ),
        (
            "    suppress: 1m\n    threshold: {count: 2, within: 1m}\n    actions: [drop]\n",
            "rules.yaml:5:16: rule 'r': 'threshold' cannot be combined with 'suppress'; a rule "
            "takes one of suppress, threshold, hysteresis, absence, expect, group, spike, new_value",
        ),
        (
            "    absence: {within: 1m}\n    clear: {match: {message: {contains: y}}}\n"
            "    actions: [drop]\n",
            "rules.yaml:5:12: rule 'r': 'clear' cannot be combined with 'absence', which "
            "resolves by itself",
        ),
        (
            "    clear: {key: x}\n    actions: [drop]\n",
            "rules.yaml:4:12: rule 'r': missing required key 'match'",
        ),
        (
            "    expect: {match: {message: {contains: y}}, within: 1m}\n",
            "rules.yaml:4:13: rule 'r': missing required key 'on_timeout'",
        ),
        (
            "    expect: {match: {message: {contains: y}}, within: 1m, on_timeout: []}\n",
            "rules.yaml:4:71: rule 'r': 'actions' is empty; give at least one action (or 'drop')",
        ),
        (
            "    max_keys: 10\n    actions: [drop]\n",
            "rules.yaml:4:5: rule 'r': 'max_keys' bounds correlation state; this rule has no "
            "correlation option",
        ),
        (
            "    actions: []\n",
            "rules.yaml:4:14: rule 'r': 'actions' is empty; give at least one action (or "
            "'drop'), or list the rule in a group",
        ),
    ],
)
def test_bad_options_name_file_line_and_problem(load_text: Load, options: str, error: str) -> None:
    """Test that a bad correlation option is reported at its line with a precise message."""
    assert only_error(load_text(HEAD + options)) == error


@pytest.mark.parametrize(
    ("group", "error"),
    [
        (
            "{all_of: [a], within: 1m}",
            "rules.yaml:5:21: rule 'g': a group needs at least 2 member rules",
        ),
        (
            "{all_of: [a, b], count_distinct: {rules: [a, b], count: 1}, within: 1m}",
            "rules.yaml:5:12: rule 'g': 'group' takes exactly one of 'all_of' and 'count_distinct'",
        ),
        (
            "{count_distinct: {rules: [a, b], count: 3}, within: 1m}",
            "rules.yaml:5:52: rule 'g': count 3 is more than the 2 rules listed",
        ),
        (
            "{all_of: [a, zz], within: 1m}",
            "rules.yaml:4:5: rule 'g': 'group' refers to unknown rule 'zz'",
        ),
        (
            "{all_of: [a, g], within: 1m}",
            "rules.yaml:5:25: rule 'g': a group cannot list itself",
        ),
    ],
)
def test_bad_groups_are_reported(load_text: Load, group: str, error: str) -> None:
    """Test that group definitions are checked, including their member rules."""
    text = (
        "rules:\n"
        "  - {id: a, match: {message: {contains: a}}, actions: [drop]}\n"
        "  - {id: b, match: {message: {contains: b}}, actions: [drop]}\n"
        f"  - id: g\n    group: {group}\n    actions: [drop]\n"
    )
    assert only_error(load_text(text)) == error


def test_group_rules_take_no_match(load_text: Load) -> None:
    """Test that a group rule with its own match is told where its events come from."""
    text = (
        "rules:\n"
        "  - {id: a, match: {message: {contains: a}}, actions: [drop]}\n"
        "  - {id: b, match: {message: {contains: b}}, actions: [drop]}\n"
        "  - id: g\n    group: {all_of: [a, b], within: 1m}\n"
        "    match: {message: {contains: c}}\n    actions: [drop]\n"
    )
    assert only_error(load_text(text)) == (
        "rules.yaml:6:5: rule 'g': a 'group' rule takes 'match' from its member rules; remove it"
    )


def test_digest_changes_with_the_rule_and_the_lists_it_names(load_text: Load) -> None:
    """Test that a rule's digest follows its own text and its lists, not unrelated ones."""
    base = (
        "lists:\n  ips: [1.2.3.4]\n  other: [x]\n"
        "rules:\n  - id: r\n    match: {host: {in: lists.ips}}\n"
        "    threshold: {count: 2, within: 1m}\n    actions: [drop]\n"
    )

    def digest(text: str) -> str:
        return load_text(text).rules[0].digest

    first = digest(base)
    assert digest(base) == first
    assert digest(base.replace("other: [x]", "other: [y]")) == first
    assert digest(base.replace("[1.2.3.4]", "[1.2.3.5]")) != first
    assert digest(base.replace("count: 2", "count: 3")) != first


def test_resolve_may_target_the_incidents_of_an_expect_rule(load_text: Load) -> None:
    """Test that an expect rule raising incidents on timeout can be resolved by another rule."""
    ruleset = load_text(
        "rules:\n"
        "  - id: job\n    match: {message: {contains: started}}\n"
        "    expect: {match: {message: {contains: done}}, within: 1m,"
        " on_timeout: [{incident: {title: late}}]}\n"
        "  - {id: fixed, match: {message: {contains: fixed}}, actions: [{resolve: job}]}\n"
    )
    assert not ruleset.errors, [str(e) for e in ruleset.errors]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (
            "    flapping: {changes: 1, within: 10m}\n    actions: [drop]\n",
            "rules.yaml:4:25: rule 'r': changes must be a whole number >= 2",
        ),
        (
            "    flapping: {changes: 3}\n    actions: [drop]\n",
            "rules.yaml:4:15: rule 'r': missing required key 'within'",
        ),
        (
            "    storm: {new_keys: 0, within: 1m}\n    actions: [drop]\n",
            "rules.yaml:4:23: rule 'r': new_keys must be a whole number >= 1",
        ),
        (
            "    storm: {keys: 5, within: 1m}\n    actions: [drop]\n",
            "rules.yaml:4:13: rule 'r': unknown storm option 'keys' (did you mean 'new_keys'?)",
        ),
    ],
)
def test_bad_guards_are_reported(load_text: Load, options: str, error: str) -> None:
    """Test that flapping and storm options are checked like the modes."""
    assert only_error(load_text(HEAD + options)) == error


def test_guards_combine_with_a_mode(load_text: Load) -> None:
    """Test that flapping and storm go with a correlation mode on the same rule."""
    ruleset = load_text(
        HEAD + "    suppress: 1m\n    flapping: {changes: 4, within: 10m}\n"
        "    storm: {new_keys: 50, within: 1m}\n    actions: [{incident: {title: t}}]\n"
    )
    assert not ruleset.errors, [str(e) for e in ruleset.errors]
    correlation = ruleset.rules[0].correlation
    assert correlation is not None
    assert (correlation.flapping, correlation.storm) == (
        FlappingSpec(4, 600.0),
        StormSpec(50, 60.0),
    )


def test_clear_on_a_group_rule_needs_a_key(load_text: Load) -> None:
    """Test that a group rule's clear must say which key it clears (the group has no key)."""
    text = (
        "rules:\n"
        "  - {id: a, match: {message: {contains: a}}, actions: [drop]}\n"
        "  - {id: b, match: {message: {contains: b}}, actions: [drop]}\n"
        "  - id: g\n    group: {all_of: [a, b], within: 1m}\n"
        "    clear: {match: {message: {contains: ok}}}\n    actions: [drop]\n"
    )
    assert only_error(load_text(text)) == (
        "rules.yaml:6:12: rule 'g': 'clear' on a group rule needs its own 'key': the group "
        "rule has none"
    )
