"""Inhibition: while a source incident is open, mute target incidents that share its labels.

Alertmanager's semantics: a target is inhibited by an open incident that matches a rule's
`source`, when the target matches `target` and every `equal` label has the same value on
both; a label missing on both sides counts as equal (missing reads as ""). An incident never
inhibits itself. When the target also matches `source`, sources that also match `target`
are skipped, so two incidents that fit both sides cannot mute each other.

`source` must not match everything; `target` may (`target: []` with `equal: [host]` mutes
everything else on a host that is down).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tocsin.mute import MuteDecision
from tocsin.mute.matchers import Matchers, check_label_name, parse_matchers
from tocsin.rules.schema import check_keys, expect_list, expect_map
from tocsin.yamlsrc import Mark, SourceError, value_mark

__all__ = ["InhibitHit", "InhibitRule", "Inhibitor", "parse_inhibit_rules"]

# (index of the rule in Inhibitor.rules, fingerprint of the inhibiting source incident)
InhibitHit = tuple[int, str]


@dataclass(frozen=True, slots=True)
class InhibitRule:
    """One `inhibit:` entry."""

    source: Matchers
    target: Matchers
    equal: tuple[str, ...] = ()
    where: Mark | None = field(default=None, compare=False)

    def key(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        """Return the values of the `equal` labels, "" for missing ones."""
        return tuple(labels.get(name, "") for name in self.equal)


class _Bucket:
    """The open sources of one rule that share one tuple of `equal` values, oldest first."""

    __slots__ = ("one_sided", "two_sided")

    def __init__(self) -> None:
        self.one_sided: dict[str, None] = {}  # sources that do not also match `target`
        self.two_sided: dict[str, None] = {}  # sources that also match `target`


class Inhibitor:
    """Open sources indexed per rule by their `equal` values, so a lookup is a dict get."""

    __slots__ = ("_entries", "_index", "rules")

    def __init__(
        self,
        *,
        rules: Sequence[InhibitRule],
        sources: Iterable[tuple[str, Mapping[str, str]]] = (),
    ) -> None:
        self.rules = tuple(rules)
        self._index: list[dict[tuple[str, ...], _Bucket]] = [{} for _ in self.rules]
        # fingerprint -> where it was filed, so removal touches only its own buckets
        self._entries: dict[str, list[tuple[int, tuple[str, ...], bool]]] = {}
        for fingerprint, labels in sources:
            self.add_source(fingerprint, labels)

    def __len__(self) -> int:
        """Return how many open incidents can inhibit others."""
        return len(self._entries)

    def __contains__(self, fingerprint: object) -> bool:
        return fingerprint in self._entries

    def add_source(self, fingerprint: str, labels: Mapping[str, str]) -> None:
        """File an open incident under every rule whose `source` it matches (again: refiled)."""
        self.remove_source(fingerprint)
        entries: list[tuple[int, tuple[str, ...], bool]] = []
        for index, rule in enumerate(self.rules):
            if not rule.source.matches(labels):
                continue
            key = rule.key(labels)
            two_sided = rule.target.matches(labels)
            bucket = self._index[index].get(key)
            if bucket is None:
                bucket = self._index[index][key] = _Bucket()
            (bucket.two_sided if two_sided else bucket.one_sided)[fingerprint] = None
            entries.append((index, key, two_sided))
        if entries:
            self._entries[fingerprint] = entries

    def remove_source(self, fingerprint: str) -> None:
        """Forget an incident that closed; unknown fingerprints are ignored."""
        for index, key, two_sided in self._entries.pop(fingerprint, ()):
            bucket = self._index[index][key]
            (bucket.two_sided if two_sided else bucket.one_sided).pop(fingerprint, None)
            if not bucket.one_sided and not bucket.two_sided:
                del self._index[index][key]

    def inhibited_by(
        self, target_labels: Mapping[str, str], target_fingerprint: str
    ) -> InhibitHit | None:
        """Return the first rule (in order) and its oldest open source that inhibit a target."""
        for index, rule in enumerate(self.rules):
            buckets = self._index[index]
            if not buckets or not rule.target.matches(target_labels):
                continue
            bucket = buckets.get(rule.key(target_labels))
            if bucket is None:
                continue
            for fingerprint in bucket.one_sided:
                if fingerprint != target_fingerprint:
                    return index, fingerprint
            if rule.source.matches(target_labels):
                continue  # Alertmanager: two-sided targets ignore two-sided sources
            for fingerprint in bucket.two_sided:
                if fingerprint != target_fingerprint:
                    return index, fingerprint
        return None

    def mute_decision(self, hit: InhibitHit) -> MuteDecision:
        """Describe an inhibition as the reason an incident is muted."""
        index, source = hit
        rule = self.rules[index]
        place = f" at {rule.where}" if rule.where is not None else ""
        return MuteDecision(
            kind="inhibit",
            name=source,
            reason=f"inhibited by open incident {source} (inhibit rule {index + 1}{place})",
            counted_as=f"rule {index + 1}",
        )


def parse_inhibit_rules(data: Any, where: Mark) -> list[InhibitRule]:
    """Parse an `inhibit:` section (a list of rules); empty means none."""
    if data is None:
        return []
    items = expect_list(data, where, "'inhibit'")
    return [_rule(spec, value_mark(items, i, where), i + 1) for i, spec in enumerate(items)]


def _rule(spec: Any, where: Mark, number: int) -> InhibitRule:
    def errors(at: Mark, message: str) -> SourceError:
        return SourceError(at, f"inhibit rule {number}: {message}")

    data = expect_map(spec, where, f"inhibit rule {number}")
    check_keys(data, ("source", "target", "equal"), "option", errors, required=("source", "target"))

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    source = parse_matchers(data["source"], at("source"), errors, what="'source'")
    problem = source.unselective_reason()
    if problem is not None:
        raise errors(at("source"), f"'source' {problem}")
    target = parse_matchers(data["target"], at("target"), errors, what="'target'")
    equal: list[str] = []
    if "equal" in data:
        names = expect_list(data["equal"], at("equal"), "'equal'", errors)
        for i, item in enumerate(names):
            item_at = value_mark(names, i, at("equal"))
            name = check_label_name(item, item_at, "'equal' entry", errors)
            if name in equal:
                raise errors(item_at, f"label '{name}' is listed twice in 'equal'")
            equal.append(name)
    return InhibitRule(source=source, target=target, equal=tuple(equal), where=where)
