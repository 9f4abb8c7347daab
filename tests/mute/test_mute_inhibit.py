"""Inhibition: Alertmanager's equal-label semantics, no self-inhibition, the source index."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.mute import MuteDecision
from tocsin.mute.inhibit import InhibitHit, Inhibitor, InhibitRule, parse_inhibit_rules
from tocsin.mute.matchers import LabelMatcher, Matchers, parse_matchers
from tocsin.yamlsrc import Mark, SourceError, load_yaml, value_mark

HERE = Mark("test", 1, 1)


def rule(source: list[str], target: list[str], equal: tuple[str, ...] = ()) -> InhibitRule:
    """Build a rule from matcher texts."""
    return InhibitRule(
        source=parse_matchers(source, HERE), target=parse_matchers(target, HERE), equal=equal
    )


HOST_DOWN = rule(["rule=host-down"], ["severity=~minor|major"], ("host",))


def parse(text: str) -> list[InhibitRule]:
    """Parse a config file holding an `inhibit:` section."""
    data = load_yaml(text, name="config.yaml")
    return parse_inhibit_rules(data["inhibit"], value_mark(data, "inhibit", data.mark))


def test_open_source_inhibits_targets_on_the_same_host() -> None:
    """Test the classic rule: a host that is down mutes that host's other incidents only."""
    inhibitor = Inhibitor(rules=[HOST_DOWN])
    inhibitor.add_source("host-down:web1", {"rule": "host-down", "host": "web1"})
    same_host = {"rule": "disk-full", "host": "web1", "severity": "major"}
    assert inhibitor.inhibited_by(same_host, "disk-full:web1") == (0, "host-down:web1")
    assert inhibitor.inhibited_by({**same_host, "host": "web2"}, "disk-full:web2") is None
    assert inhibitor.inhibited_by({**same_host, "severity": "critical"}, "x") is None


def test_closing_the_source_lifts_the_inhibition() -> None:
    """Test that remove_source stops inhibition and empties the index."""
    inhibitor = Inhibitor(rules=[HOST_DOWN])
    inhibitor.add_source("down", {"rule": "host-down", "host": "web1"})
    target = {"host": "web1", "severity": "minor"}
    assert inhibitor.inhibited_by(target, "t") == (0, "down")
    inhibitor.remove_source("down")
    assert inhibitor.inhibited_by(target, "t") is None
    assert len(inhibitor) == 0
    assert "down" not in inhibitor
    inhibitor.remove_source("down")  # unknown now: ignored


@pytest.mark.parametrize(
    ("source_labels", "target_labels", "inhibited"),
    [
        ({"host": "web1", "dc": "eu"}, {"host": "web1", "dc": "eu"}, True),
        ({"host": "web1", "dc": "eu"}, {"host": "web1", "dc": "us"}, False),
        ({}, {}, True),  # missing on both sides counts as equal
        ({"host": "web1"}, {"host": "web1"}, True),  # dc missing on both
        ({"host": "web1", "dc": ""}, {"host": "web1"}, True),  # empty and missing are the same
        ({"host": "web1", "dc": "eu"}, {"host": "web1"}, False),  # missing on one side only
        ({"host": "web1"}, {"host": "web1", "dc": "eu"}, False),
    ],
)
def test_equal_labels_follow_alertmanager(
    source_labels: dict[str, str], target_labels: dict[str, str], inhibited: bool
) -> None:
    """Test that `equal` compares values with missing read as "", as Alertmanager does."""
    inhibitor = Inhibitor(rules=[rule(["kind=cause"], ["kind=effect"], ("host", "dc"))])
    inhibitor.add_source("src", {**source_labels, "kind": "cause"})
    hit = inhibitor.inhibited_by({**target_labels, "kind": "effect"}, "tgt")
    assert (hit is not None) is inhibited


def test_an_incident_never_inhibits_itself() -> None:
    """Test that an incident matching both sides of a rule is not muted by its own record."""
    inhibitor = Inhibitor(rules=[rule(["severity=critical"], [], ("host",))])
    labels = {"severity": "critical", "host": "web1"}
    inhibitor.add_source("fp1", labels)
    assert inhibitor.inhibited_by(labels, "fp1") is None
    assert inhibitor.inhibited_by({"host": "web1", "severity": "minor"}, "fp2") == (0, "fp1")


def test_two_sided_incidents_do_not_inhibit_each_other() -> None:
    """Test Alertmanager's rule: when a target also matches source, two-sided sources are skipped."""
    inhibitor = Inhibitor(
        rules=[rule(["severity=critical"], ["severity=~critical|minor"], ("host",))]
    )
    first = {"severity": "critical", "host": "web1", "rule": "a"}
    second = {"severity": "critical", "host": "web1", "rule": "b"}
    inhibitor.add_source("a", first)
    inhibitor.add_source("b", second)
    assert inhibitor.inhibited_by(first, "a") is None
    assert inhibitor.inhibited_by(second, "b") is None
    assert inhibitor.inhibited_by({"severity": "minor", "host": "web1"}, "c") == (0, "a")


def test_one_sided_sources_still_inhibit_two_sided_targets() -> None:
    """Test that a source that does not match `target` can mute a target that matches `source`."""
    inhibitor = Inhibitor(rules=[rule(["tier=~db|web"], ["tier=web"], ("dc",))])
    inhibitor.add_source("db", {"tier": "db", "dc": "eu"})
    inhibitor.add_source("web-a", {"tier": "web", "dc": "eu"})
    assert inhibitor.inhibited_by({"tier": "web", "dc": "eu"}, "web-b") == (0, "db")
    inhibitor.remove_source("db")
    assert inhibitor.inhibited_by({"tier": "web", "dc": "eu"}, "web-b") is None


def test_first_rule_and_oldest_source_win() -> None:
    """Test that the answer is deterministic: rules in order, then sources by age."""
    inhibitor = Inhibitor(
        rules=[rule(["kind=b"], ["kind=t"]), rule(["kind=a"], ["kind=t"])],
        sources=[("a1", {"kind": "a"}), ("b1", {"kind": "b"}), ("b2", {"kind": "b"})],
    )
    assert inhibitor.inhibited_by({"kind": "t"}, "t") == (0, "b1")
    inhibitor.remove_source("b1")
    assert inhibitor.inhibited_by({"kind": "t"}, "t") == (0, "b2")
    inhibitor.remove_source("b2")
    assert inhibitor.inhibited_by({"kind": "t"}, "t") == (1, "a1")


def test_adding_a_source_again_refiles_it() -> None:
    """Test that add_source with new labels moves the incident to its new bucket."""
    inhibitor = Inhibitor(rules=[HOST_DOWN])
    inhibitor.add_source("down", {"rule": "host-down", "host": "web1"})
    inhibitor.add_source("down", {"rule": "host-down", "host": "web2"})
    assert inhibitor.inhibited_by({"host": "web1", "severity": "minor"}, "t") is None
    assert inhibitor.inhibited_by({"host": "web2", "severity": "minor"}, "t") == (0, "down")
    inhibitor.add_source("down", {"rule": "recovered", "host": "web2"})
    assert len(inhibitor) == 0


def test_incidents_that_match_no_source_are_not_kept() -> None:
    """Test that only possible sources are indexed."""
    inhibitor = Inhibitor(rules=[HOST_DOWN])
    inhibitor.add_source("other", {"rule": "disk-full", "host": "web1"})
    assert len(inhibitor) == 0
    assert "other" not in inhibitor


def test_mute_decision_names_source_and_rule() -> None:
    """Test the reason an incident records: the inhibiting incident and the rule's place."""
    (parsed,) = parse("inhibit:\n  - source: [rule=host-down]\n    target: []\n    equal: [host]\n")
    inhibitor = Inhibitor(rules=[parsed])
    hit: InhibitHit = (0, "host-down:web1")
    assert inhibitor.mute_decision(hit) == MuteDecision(
        kind="inhibit",
        name="host-down:web1",
        reason="inhibited by open incident host-down:web1 (inhibit rule 1 at config.yaml:2:5)",
        counted_as="rule 1",
    )
    assert Inhibitor(rules=[HOST_DOWN]).mute_decision(hit).reason == (
        "inhibited by open incident host-down:web1 (inhibit rule 1)"
    )


def test_parse_rules() -> None:
    """Test that a section parses into rules; target may be empty, equal defaults to none."""
    rules = parse(
        "inhibit:\n"
        "  - source: [rule=host-down]\n    target: ['severity!=critical']\n    equal: [host, dc]\n"
        "  - source: [{name: rule, op: '=~', value: 'link-down|power'}]\n    target: []\n"
    )
    assert rules == [
        rule(["rule=host-down"], ["severity!=critical"], ("host", "dc")),
        InhibitRule(
            source=Matchers((LabelMatcher(name="rule", op="=~", value="link-down|power"),)),
            target=Matchers(),
        ),
    ]
    assert rules[1].where == Mark("config.yaml", 5, 5)
    assert parse("inhibit:\n") == []


BAD = [
    (
        "- {sorce: [a=b], target: [c=d]}",
        "config.yaml:2:6: inhibit rule 1: unknown option 'sorce' (did you mean 'source'?)",
    ),
    ("- {source: [a=b]}", "config.yaml:2:5: inhibit rule 1: missing required key 'target'"),
    (
        "- {source: [a=b], target: [c=d]}\n- {source: ['a=~.*'], target: [c=d]}",
        "config.yaml:3:14: inhibit rule 2: 'source' needs at least one matcher that does not "
        "match the empty string, like host=web1 or host=~.+ (these would also match incidents "
        "without the labels)",
    ),
    (
        "- {source: [], target: [c=d]}",
        "config.yaml:2:14: inhibit rule 1: 'source' needs at least one matcher, like host=web1",
    ),
    (
        "- {source: a=b, target: [c=d]}",
        "config.yaml:2:14: inhibit rule 1: 'source' must be a list, not text",
    ),
    (
        "- {source: [a=b], target: ['c=~[']}",
        "config.yaml:2:30: inhibit rule 1: matcher 'c=~[' has an invalid regex: missing ]: [",
    ),
    (
        "- {source: [a=b], target: [], equal: host}",
        "config.yaml:2:40: inhibit rule 1: 'equal' must be a list, not text",
    ),
    (
        "- {source: [a=b], target: [], equal: [host, 'my host']}",
        "config.yaml:2:47: inhibit rule 1: 'equal' entry 'my host' is not a valid label name "
        "(use letters, digits, '_' and '.', not starting with a digit)",
    ),
    (
        "- {source: [a=b], target: [], equal: [host, 1]}",
        "config.yaml:2:47: inhibit rule 1: 'equal' entry must be text, not a number",
    ),
    (
        "- {source: [a=b], target: [], equal: [host, host]}",
        "config.yaml:2:47: inhibit rule 1: label 'host' is listed twice in 'equal'",
    ),
    ("- [a=b]", "config.yaml:2:5: inhibit rule 1 must be a mapping, not a list"),
    ("{source: [a=b]}", "config.yaml:2:3: 'inhibit' must be a list, not a mapping"),
]


@pytest.mark.parametrize(("rules_yaml", "message"), BAD)
def test_bad_rules(rules_yaml: str, message: str) -> None:
    """Test that each broken inhibit rule is rejected with exactly this file:line:col message."""
    text = "inhibit:\n" + "".join(f"  {line}\n" for line in rules_yaml.split("\n"))
    with pytest.raises(SourceError) as caught:
        parse(text)
    assert str(caught.value) == message


# ---------------------------------------------------------------------------------------------
# The index must answer exactly as a scan of every open incident would.

LABELS = st.dictionaries(
    st.sampled_from(["kind", "host", "dc"]),
    st.sampled_from(["", "a", "b"]),
)
RULES = [
    rule(["kind=a"], ["kind=b"], ("host",)),
    rule(["kind=~a|b"], ["kind=~b|"], ("host", "dc")),
    rule(["host=a"], [], ()),
    rule(["dc=~.+"], ["dc!=b"], ("dc",)),
]


def scan(
    rules: list[InhibitRule],
    sources: Mapping[str, Mapping[str, str]],
    labels: Mapping[str, str],
    fingerprint: str,
) -> InhibitHit | None:
    """Answer inhibited_by the slow way, straight from Alertmanager's description."""
    for index, candidate in enumerate(rules):
        if not candidate.target.matches(labels):
            continue
        two_sided_target = candidate.source.matches(labels)
        ordered = sorted(
            sources.items(), key=lambda item: candidate.target.matches(item[1])
        )  # one-sided sources are consulted first, then two-sided ones, each oldest first
        for source_fp, source in ordered:
            if source_fp == fingerprint or not candidate.source.matches(source):
                continue
            if two_sided_target and candidate.target.matches(source):
                continue
            if all(source.get(n, "") == labels.get(n, "") for n in candidate.equal):
                return index, source_fp
    return None


@settings(max_examples=300)
@given(
    steps=st.lists(
        st.tuples(st.booleans(), st.sampled_from(["f1", "f2", "f3", "f4"]), LABELS), max_size=12
    ),
    probe=LABELS,
    probe_fp=st.sampled_from(["f1", "f2", "f9"]),
)
def test_index_agrees_with_a_full_scan(
    steps: list[tuple[bool, str, dict[str, str]]], probe: dict[str, str], probe_fp: str
) -> None:
    """Test that after any adds and removes the index gives the same answer as a scan."""
    inhibitor = Inhibitor(rules=RULES)
    open_sources: dict[str, dict[str, str]] = {}
    for adding, fingerprint, labels in steps:
        if adding:
            inhibitor.add_source(fingerprint, labels)
            open_sources.pop(fingerprint, None)  # refiling makes it the newest
            open_sources[fingerprint] = labels
        else:
            inhibitor.remove_source(fingerprint)
            open_sources.pop(fingerprint, None)
    assert inhibitor.inhibited_by(probe, probe_fp) == scan(RULES, open_sources, probe, probe_fp)
    for fingerprint, labels in open_sources.items():
        assert inhibitor.inhibited_by(labels, fingerprint) == scan(
            RULES, open_sources, labels, fingerprint
        )
