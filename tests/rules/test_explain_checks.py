"""The explaining checks `tocsin explain` compiles agree with the engine's matchers: same verdict,
same captures, on any event, for every condition form and the bundled rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testkit import make_event
from tocsin.actions.registry import ACTION_KINDS
from tocsin.explain import compile_checks
from tocsin.model import Event
from tocsin.rules.loader import RuleSet, load_rules
from tocsin.rules.matchers import Check

REPO_RULES = Path(__file__).resolve().parents[2] / "rules"

FORMS = r"""
lists:
  admins: [root, admin, 7]
macros:
  web: {host: {startswith: web}}
  deep: {macro: web, program: [nginx, sshd]}
rules:
  - {id: a, match: {program: sshd, fields.port: 22}, actions: [drop]}
  - {id: a2, match: {fields.port: 22}, actions: [drop]}
  - {id: b, match: {fields.user: {in: lists.admins}, level: {not_in: [debug]}}, actions: [drop]}
  - {id: c, match: {message: {regex: 'for (?P<user>\w+) from (?P<ip>[0-9.]+)'}}, actions: [drop]}
  - {id: d, match: {message: {regex: '(?P<w>\w+(?=!))'}}, actions: [drop]}
  - {id: e, match: {fields.port: {gt: 10, le: 1024}, host: {endswith: "1"}}, actions: [drop]}
  - {id: f, match: {fields.user: {ge: m}, fields.gone: {exists: false}}, actions: [drop]}
  - {id: g, match: {any: [{program: cron}, {message: {regex: '(?P<code>E\d+)'}}]}, actions: [drop]}
  - {id: h, match: {all: [{macro: deep}, {not: {level: err}}]}, actions: [drop]}
  - {id: i, match: {message: {contains: [for, from], startswith: F}}, actions: [drop]}
  - {id: j, match: {fields.tags.0: x, fields.user: {exists: true}}, actions: [drop]}
  - {id: k, match: {not: {any: [{host: web1}, {fields.port: 22}]}}, actions: [drop]}
"""

texts = st.sampled_from(
    ["Failed for root from 10.0.0.1", "E42 happened", "hi there!", "Fx for y from 1.2.3.4", ""]
)
values = st.one_of(
    st.sampled_from([22, "22", 1024, "1024", 11, 7, "7", "root", "admin", "zed", "m", "x", None]),
    st.integers(min_value=-5, max_value=2000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.sampled_from(["x", "y"]), max_size=2),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), max_size=2),
)
fields = st.dictionaries(st.sampled_from(["port", "user", "tags", "gone"]), values, max_size=4)


@st.composite
def events(draw: st.DrawFn) -> Event:
    """Events that take most conditions both ways."""
    return make_event(
        message=draw(texts),
        host=draw(st.sampled_from(["web1", "web2", "db1", ""])),
        program=draw(st.sampled_from(["sshd", "nginx", "cron", ""])),
        level=draw(st.sampled_from(["err", "info", "debug"])),
        fields=draw(fields),
    )


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[RuleSet, dict[str, Check]]:
    """The condition forms above plus the bundled rules, and their explaining checks."""
    folder = tmp_path_factory.mktemp("forms")
    (folder / "forms.yaml").write_text(FORMS)
    paths = [folder, REPO_RULES]
    ruleset = load_rules(paths, kinds=ACTION_KINDS)
    assert not ruleset.errors, [str(e) for e in ruleset.errors]
    return ruleset, compile_checks(paths, ruleset)


def test_every_rule_with_a_matcher_gets_a_check(loaded: tuple[RuleSet, dict[str, Check]]) -> None:
    """Test that each loaded rule and each clear follow-up has an explaining check."""
    ruleset, checks = loaded
    wanted = {r.id for r in ruleset.rules if r.matcher is not None}
    assert wanted <= set(checks)
    assert {name for name in checks if "#" in name} == {"snmp-link-down#clear"}


@settings(max_examples=300, deadline=None)
@given(event=events())
def test_checks_and_matchers_agree_on_any_event(
    loaded: tuple[RuleSet, dict[str, Check]], event: Event
) -> None:
    """Test that a check finds no miss exactly when the matcher matches, with equal captures."""
    ruleset, checks = loaded
    for rule in ruleset.rules:
        if rule.matcher is None:
            continue
        caps: dict[str, Any] = {}
        matched = rule.matcher(event, caps)
        trial: dict[str, Any] = {}
        miss = checks[rule.id](event, trial)
        assert (miss is None) == matched, (rule.id, miss)
        if matched:
            assert trial == caps, rule.id
