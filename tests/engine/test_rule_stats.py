"""The engine's per-rule figures: events tried, matches, actions run and time, per batch into
totals that a reload keeps (what `tocsin rules` and the per-rule metrics show)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from testkit import make_event
from tocsin.engine.muting import Muter
from tocsin.engine.pipeline import Engine, RuleStats
from tocsin.mute.matchers import parse_matchers
from tocsin.mute.silences import SilenceBook
from tocsin.rules.loader import RuleSet
from tocsin.yamlsrc import Mark

Build = Callable[..., Engine]
T0 = 1_795_564_800.0

RULES = r"""
rules:
  - id: noise
    match: {program: cron}
    actions: [drop]
  - id: ssh
    match:
      program: sshd
      message: {regex: 'Failed password for (?P<user>\S+) from (?P<ip>[0-9.]+)'}
    key: "{{ ip }}"
    continue: true
    actions:
      - incident: {title: "Failures from {{ ip }}"}
      - log: {message: "failure for {{ user }}"}
  - id: brute
    match: {program: sshd, message: {contains: Failed}}
    key: "{{ fields.ip }}"
    threshold: {count: 3, within: 1m}
    actions:
      - incident: {title: "Brute force from {{ fields.ip }}"}
  - id: link-down
    match: {message: {regex: 'Interface (?P<ifname>\S+) down'}}
    key: "{{ ifname }}"
    clear:
      match: {message: {regex: 'Interface (?P<ifname>\S+) up'}}
    actions:
      - incident: {title: "{{ ifname }} down"}
"""


def failed(ip: str, n: int = 0) -> Any:
    """An sshd failure line's event."""
    return make_event(f"Failed password for bob from {ip} port 22", program="sshd", time=T0 + n)


def figures(engine: Engine) -> dict[str, tuple[int, int, int]]:
    """(evaluated, matches, actions) of every rule, by id."""
    return {
        rule.id: (stats.evaluated, stats.matches, stats.actions)
        for rule, stats in engine.rule_stats()
    }


def test_each_rule_counts_what_it_was_tried_on_matched_and_ran(engine_for: Build) -> None:
    """Test the figures after two batches: the prefilter spares rules most events, a drop
    stops the event, both actions of a plain rule count, and a threshold's action counts
    only when it acts (the third failure)."""
    engine = engine_for(RULES)
    cron = make_event("(root) CMD (run-parts)", program="cron", time=T0)
    engine.process([cron, failed("10.0.0.1", 1), failed("10.0.0.1", 2)])
    engine.process([failed("10.0.0.1", 3), make_event("Interface Gi0/1 down", time=T0 + 4)])
    engine.process([make_event("Interface Gi0/1 up", time=T0 + 5)])
    assert figures(engine) == {
        "noise": (6, 1, 1),  # no message pattern: tried on every event
        "ssh": (3, 3, 6),
        "brute": (3, 3, 1),
        "link-down": (1, 1, 1),
        "link-down#clear": (1, 1, 1),
    }


def test_time_is_spent_only_on_rules_that_were_tried(engine_for: Build) -> None:
    """Test that the evaluation time grows with the events a rule was tried on, and that a
    rule no event reached took none."""
    engine = engine_for(RULES)
    engine.process([failed("10.0.0.1", n) for n in range(20)])
    spent = {rule.id: stats.eval_ns for rule, stats in engine.rule_stats()}
    assert spent["ssh"] > 0
    assert spent["brute"] > 0
    assert spent["link-down"] == 0
    before = spent["ssh"]
    engine.process([failed("10.0.0.2", 30 + n) for n in range(20)])
    assert {r.id: s.eval_ns for r, s in engine.rule_stats()}["ssh"] > before


def test_actions_held_by_a_silence_are_not_counted(engine_for: Build) -> None:
    """Test the muting path: the incident opens (counted), the log action is held (not)."""
    silences = SilenceBook()
    silences.add(
        matchers=parse_matchers(["rule=ssh"], Mark("t", 1, 1)),
        starts_at=T0,
        ends_at=T0 + 3600,
        created_by="test",
        comment="quiet",
        now=T0,
    )
    engine = engine_for(RULES, muter=Muter(silences=silences))
    engine.process([failed("10.0.0.1", 1)])
    assert figures(engine)["ssh"] == (1, 1, 1)


def test_a_reload_keeps_the_figures_of_rules_that_stay(
    engine_for: Build, load_text: Callable[..., RuleSet]
) -> None:
    """Test that a reload keeps the totals of rules still loaded (even changed ones) and drops
    those of removed rules."""
    engine = engine_for(RULES)
    engine.process([failed("10.0.0.1", n) for n in range(4)])
    kept = RULES.replace("count: 3", "count: 5").split("  - id: link-down")[0]
    ruleset = load_text(kept, name="kept.yaml")
    engine.reload(ruleset.rules, ruleset.lists)
    engine.process([failed("10.0.0.1", 10)])
    assert figures(engine) == {"noise": (5, 0, 0), "ssh": (5, 5, 10), "brute": (5, 5, 1)}


def test_the_figures_handed_out_are_copies(engine_for: Build) -> None:
    """Test that what rule_stats returns does not change under a later batch."""
    engine = engine_for(RULES)
    engine.process([failed("10.0.0.1")])
    snapshot = {rule.id: stats for rule, stats in engine.rule_stats()}
    engine.process([failed("10.0.0.1", 1)])
    assert snapshot["ssh"] == RuleStats(
        evaluated=1, matches=1, actions=2, eval_ns=snapshot["ssh"].eval_ns
    )
