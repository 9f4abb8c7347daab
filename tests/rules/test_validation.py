"""Validation messages are part of the contract: exact text, file:line:column."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tocsin.actions.registry import ACTION_KINDS
from tocsin.rules.loader import find_rule_files, load_rules

FIXTURES = Path(__file__).parent / "fixtures"

BAD = {
    "unknown_operator.yaml": "bad/unknown_operator.yaml:6:9: rule 'ssh-failed-password': "
    "unknown matcher operator 'regexp' (did you mean 'regex'?)",
    "unknown_attribute.yaml": "bad/unknown_attribute.yaml:3:13: rule 'typo': unknown event "
    "attribute 'porgram' (did you mean 'program'?); use one of source, origin, host, program, "
    "severity, level, message, time, received, fields.NAME, any, all, not or macro",
    "unknown_rule_option.yaml": "bad/unknown_rule_option.yaml:4:5: rule 'opts': unknown rule "
    "option 'action' (did you mean 'actions'?)",
    "duplicate_id.yaml": "bad/duplicate_id.yaml:5:9: rule 'twice': duplicate rule id "
    "(first defined at bad/duplicate_id.yaml:2:9)",
    "bad_regex.yaml": "bad/bad_regex.yaml:3:30: rule 'broken-regex': invalid regex "
    "'unclosed (group': missing ), unterminated subpattern at position 9",
    "unknown_action.yaml": "bad/unknown_action.yaml:5:9: rule 'act': unknown action 'incidnet' "
    "(did you mean 'incident'?); known actions: access, drop, incident, log, problem, publish, remediate, request, resolve",
    "bad_impact.yaml": "bad/bad_impact.yaml:5:38: rule 'impact': impact must be one of high, "
    "medium, low, not 'severe'",
    "unknown_macro.yaml": "bad/unknown_macro.yaml:5:20: rule 'mac': unknown macro 'sshdd' "
    "(did you mean 'sshd'?)",
    "unknown_list.yaml": "bad/unknown_list.yaml:5:31: rule 'lst': unknown list 'admin' "
    "(did you mean 'admins'?)",
    "bad_template.yaml": "bad/bad_template.yaml:4:10: rule 'tmpl': 'key' is not a valid "
    "template: unexpected end of template, expected 'end of print statement'.",
    "resolve_unknown.yaml": "bad/resolve_unknown.yaml:2:5: rule 'up': 'resolve' refers to "
    "unknown rule 'dwon'",
    "yaml_syntax.yaml": "bad/yaml_syntax.yaml:3:27: invalid YAML: did not find expected ',' or ']'",
    "duplicate_key.yaml": "bad/duplicate_key.yaml:4:5: duplicate key 'match' (first given at "
    "line 3)",
    "missing_actions.yaml": "bad/missing_actions.yaml:2:5: rule 'noact': missing required key "
    "'actions'",
    "bad_when.yaml": "bad/bad_when.yaml:4:11: rule 'when': 'when' is not a valid expression: "
    "unexpected 'end of template'",
    "top_level.yaml": "bad/top_level.yaml:1:1: unknown top-level key 'rule' (did you mean "
    "'rules'?)",
    "macro_cycle.yaml": "bad/macro_cycle.yaml:3:14: rule 'cyc': macro 'a' refers to itself "
    "(a -> b -> a)",
}


@pytest.fixture(autouse=True)
def _in_fixtures() -> Iterator[None]:
    """Run from the fixtures folder so paths print relative, as operators see them."""
    old = Path.cwd()
    os.chdir(FIXTURES)
    yield
    os.chdir(old)


def test_every_bad_fixture_is_covered() -> None:
    """Test that each bad fixture file has an expected message and vice versa."""
    assert sorted(p.name for p in (FIXTURES / "bad").iterdir()) == sorted(BAD)


@pytest.mark.parametrize(("name", "expected"), sorted(BAD.items()))
def test_bad_fixture_message(name: str, expected: str) -> None:
    """Test that a broken rule file yields exactly the expected file:line:col message."""
    ruleset = load_rules([Path("bad") / name], kinds=ACTION_KINDS)
    assert [str(e) for e in ruleset.errors] == [expected]


def test_good_fixtures_load_cleanly() -> None:
    """Test that the good fixtures load with no error or warning and count disabled rules."""
    ruleset = load_rules([Path("good")], kinds=ACTION_KINDS)
    assert [str(e) for e in ruleset.errors] == []
    assert [str(w) for w in ruleset.warnings] == []
    assert [r.id for r in ruleset.rules] == ["ssh-failed-password", "everything-else"]
    assert ruleset.disabled == 1


def test_invalid_rule_is_skipped_and_others_load() -> None:
    """Test that one bad rule does not keep the valid rules of the same file from loading."""
    ruleset = load_rules([Path("bad") / "duplicate_id.yaml"], kinds=ACTION_KINDS)
    assert [r.id for r in ruleset.rules] == ["twice"]
    assert ruleset.rules[0].mark.line == 2


def test_bundled_rules_are_valid() -> None:
    """Test that the rules shipped in rules/ load without errors or warnings."""
    bundled = Path(__file__).parents[2] / "rules"
    ruleset = load_rules([bundled], kinds=ACTION_KINDS)
    assert [str(e) for e in ruleset.errors] == []
    assert [str(w) for w in ruleset.warnings] == []
    assert len(ruleset.rules) >= 5


def test_python_re_fallback_warns(tmp_path: Path) -> None:
    """Test that a pattern RE2 rejects (a backreference) loads with a warning naming file:line."""
    path = tmp_path / "back.yaml"
    path.write_text(
        "rules:\n  - id: rep\n    match: {message: {regex: '(\\w+) \\1'}}\n    actions: [drop]\n"
    )
    ruleset = load_rules([path], kinds=ACTION_KINDS)
    assert not ruleset.errors
    assert len(ruleset.warnings) == 1
    warning = ruleset.warnings[0]
    assert (warning.mark.line, warning.mark.col) == (3, 30)
    assert warning.message == (
        "rule 'rep': regex '(\\w+) \\1' is not supported by RE2 (invalid escape sequence: \\1); "
        "using Python re, which is not linear-time"
    )
    assert ruleset.rules[0].prefilter is None


def test_yaml_words_stay_words(tmp_path: Path) -> None:
    """Test that on/off/yes/no are read as text, not YAML 1.1 booleans."""
    path = tmp_path / "words.yaml"
    path.write_text("rules:\n  - id: off\n    match: {fields.answer: no}\n    actions: [drop]\n")
    ruleset = load_rules([path], kinds=ACTION_KINDS)
    assert [r.id for r in ruleset.rules] == ["off"]


def test_yaml_merge_keys_can_be_overridden(tmp_path: Path) -> None:
    """Test that a key written next to `<<: *anchor` overrides the merged one, not a duplicate."""
    path = tmp_path / "merge.yaml"
    path.write_text(
        "macros:\n  base: &base {program: sshd, host: a}\n"
        "rules:\n  - id: m\n    match:\n      <<: *base\n      host: b\n    actions: [drop]\n"
    )
    ruleset = load_rules([path], kinds=ACTION_KINDS)
    assert [str(e) for e in ruleset.errors] == []
    from testkit import make_event

    assert ruleset.rules[0].matcher(make_event(program="sshd", host="b"), {})
    assert not ruleset.rules[0].matcher(make_event(program="sshd", host="a"), {})


def test_reference_to_an_invalid_rule_says_so(tmp_path: Path) -> None:
    """Test that a resolve naming a rule that failed validation points at that rule's error."""
    path = tmp_path / "ref.yaml"
    path.write_text(
        "rules:\n  - id: down\n    match: {program: {regexp: x}}\n    actions: [{incident: {title: t}}]\n"
        "  - id: up\n    match: {program: b}\n    actions: [{resolve: {rule: down}}]\n"
    )
    ruleset = load_rules([path], kinds=ACTION_KINDS)
    assert [e.message for e in ruleset.errors] == [
        "rule 'down': unknown matcher operator 'regexp' (did you mean 'regex'?)",
        f"rule 'up': 'resolve' refers to rule 'down', which is invalid (defined at {path}:2:9)",
    ]


def test_macro_error_points_at_the_list_item(tmp_path: Path) -> None:
    """Test that an unknown macro inside a list is reported at that item."""
    path = tmp_path / "mac.yaml"
    path.write_text(
        "macros:\n  a: {program: x}\nrules:\n  - id: m\n    match: {macro: [a, nope]}\n    actions: [drop]\n"
    )
    [error] = load_rules([path], kinds=ACTION_KINDS).errors
    assert (error.mark.line, error.mark.col) == (5, 24)


def test_reference_to_a_disabled_rule_says_so(tmp_path: Path) -> None:
    """Test that a resolve naming a disabled rule says it is disabled."""
    path = tmp_path / "off.yaml"
    path.write_text(
        "rules:\n  - id: down\n    enabled: false\n    match: {program: a}\n"
        "    actions: [{incident: {title: t}}]\n"
        "  - id: up\n    match: {program: b}\n    actions: [{resolve: {rule: down}}]\n"
    )
    assert [e.message for e in load_rules([path], kinds=ACTION_KINDS).errors] == [
        "rule 'up': 'resolve' refers to rule 'down', which is disabled"
    ]


def test_a_rules_folder_leaves_out_rule_tests(tmp_path: Path) -> None:
    """Test that *.test.yaml files beside the rules (for `tocsin test`) are not loaded as
    rules, while other YAML files in the folder and below are, in name order."""
    (tmp_path / "sub").mkdir()
    for name in ("b.yaml", "a.yml", "ssh.test.yaml", "x.test.yml", "notes.txt", "sub/c.yaml"):
        (tmp_path / name).write_text("rules: []\n")
    assert [p.relative_to(tmp_path).as_posix() for p in find_rule_files([tmp_path])] == [
        "a.yml",
        "b.yaml",
        "sub/c.yaml",
    ]
