"""Tests of partial matching and multiset/ordered judging for `tocsin test` expectations."""

from __future__ import annotations

from tocsin.ruletest.compare import ABSENT, describe, judge, mismatches, show


def test_only_the_keys_given_are_compared() -> None:
    """Test that a pattern ignores fields it does not name, and names each one that differs."""
    record = {"rule": "link-down", "state": "new", "count": 3, "labels": {"a": "1", "b": "2"}}
    assert mismatches({"rule": "link-down", "labels": {"b": "2"}}, record) == []
    found = [str(m) for m in mismatches({"state": "resolved", "labels": {"a": "9"}}, record)]
    assert found == ['state: expected "resolved", got "new"', 'labels.a: expected "9", got "1"']


def test_a_field_the_record_lacks_is_a_mismatch() -> None:
    """Test that a key missing from the record is reported as such."""
    (found,) = mismatches({"labels": {"user": "root"}}, {"labels": {}})
    assert (found.path, found.got) == ("labels.user", ABSENT)
    assert str(found) == 'labels.user: expected "root", got (no such field)'


def test_lists_are_compared_whole_and_in_order() -> None:
    """Test that a list inside a record must have the same items in the same order."""
    assert mismatches({"argv": [["/bin/a", "x"]]}, {"argv": [["/bin/a", "x"]]}) == []
    assert [str(m) for m in mismatches({"incidents": [1, 2]}, {"incidents": [2, 1]})] == [
        "incidents[0]: expected 1, got 2",
        "incidents[1]: expected 2, got 1",
    ]
    assert len(mismatches({"incidents": [1]}, {"incidents": [1, 2]})) == 1


def test_text_patterns_search_and_contain() -> None:
    """Test that {regex} searches, {contains} looks for a part, and neither applies to
    anything but text."""
    record = {"muted": "muted by silence 3f2a9c01 (disk swap, by bob) until 2027-01-01T10:00:00Z"}
    assert mismatches({"muted": {"regex": r"^muted by silence [0-9a-f]{8}"}}, record) == []
    assert mismatches({"muted": {"contains": "disk swap"}}, record) == []
    assert len(mismatches({"muted": {"regex": "^inhibited"}}, record)) == 1
    assert mismatches({"labels": {"regex": "x"}}, {"labels": {"regex": "x"}}) == []


def test_times_match_as_instants_and_numbers_by_value() -> None:
    """Test that ISO times with different offsets match when they name one instant, that 1
    equals 1.0, and that true is not 1."""
    record = {"resolved_at": "2026-01-05T00:05:00+00:00", "count": 1, "retain": True}
    assert mismatches({"resolved_at": "2026-01-05T01:05:00+01:00"}, record) == []
    assert mismatches({"resolved_at": "2026-01-05T00:05:00Z"}, record) == []
    assert len(mismatches({"resolved_at": "2026-01-05T00:05:01Z"}, record)) == 1
    assert mismatches({"count": 1.0}, record) == []
    assert len(mismatches({"retain": 1}, record)) == 1


def test_a_multiset_gives_every_pattern_its_own_record() -> None:
    """Test that an earlier, looser pattern does not take the record a later, stricter one
    needs (the matching is maximal, not greedy)."""
    records = [{"state": "new", "priority": "P1"}, {"state": "new", "priority": "P4"}]
    assert judge([{"state": "new"}, {"priority": "P1"}], records, ordered=False).ok
    assert judge([{"priority": "P4"}, {"state": "new"}], records, ordered=False).ok


def test_a_multiset_reports_the_closest_record_and_the_ones_nobody_expected() -> None:
    """Test that a pattern nothing matches comes with the record differing in the fewest
    places, and that unmatched records are listed."""
    records = [{"rule": "a", "state": "new", "count": 2}, {"rule": "b", "state": "new"}]
    verdict = judge([{"rule": "a", "state": "resolved"}], records, ordered=False)
    assert not verdict.ok
    ((pattern, closest),) = verdict.missing
    assert pattern == 0
    assert closest is not None
    assert closest[0] == 0
    assert [str(m) for m in closest[1]] == ['state: expected "resolved", got "new"']
    assert verdict.unexpected == [0, 1]


def test_on_a_tie_the_closest_record_agrees_on_the_first_keys() -> None:
    """Test that when two records differ in as many places, the one that agrees on what the
    pattern names first (its rule) is shown as closest."""
    records = [{"rule": "other", "count": 1}, {"rule": "brute", "count": 10}]
    verdict = judge([{"rule": "brute", "count": 1}], records, ordered=False)
    ((_, closest),) = verdict.missing
    assert closest is not None
    assert closest[0] == 1
    assert [str(m) for m in closest[1]] == ["count: expected 1, got 10"]


def test_an_ordered_check_compares_by_position() -> None:
    """Test that in order, a swapped pair is wrong at both places, and extra or missing
    records are reported by position."""
    records = [{"receiver": "a"}, {"receiver": "b"}, {"receiver": "c"}]
    assert judge(
        [{"receiver": "a"}, {"receiver": "b"}, {"receiver": "c"}], records, ordered=True
    ).ok
    swapped = judge([{"receiver": "b"}, {"receiver": "a"}], records, ordered=True)
    assert [(p, r) for p, r, _ in swapped.wrong] == [(0, 0), (1, 1)]
    assert swapped.unexpected == [2]
    longer = judge([{}, {}, {}, {"receiver": "d"}], records, ordered=True)
    assert longer.missing == [(3, None)]


def test_an_empty_expectation_matches_no_records_only() -> None:
    """Test that `[]` passes on nothing and reports every record otherwise."""
    assert judge([], [], ordered=False).ok
    assert judge([], [{"id": 1}], ordered=False).unexpected == [0]


def test_values_and_records_are_shown_for_people() -> None:
    """Test the compact form of patterns and the one-line description of records."""
    assert show({"rule": "x", "incidents": [1, 2], "muted": None}) == (
        '{rule: "x", incidents: [1, 2], muted: null}'
    )
    incident = {
        "id": 2, "rule": "link-down", "key": "r1:Gi0/1", "state": "new", "priority": "P1",
        "count": 1, "muted": "muted by maintenance window x", "muted_by": "maintenance",
        "title": "Gi0/1 down on r1",
    }  # fmt: skip
    assert describe("incidents", incident) == (
        'incident 2: rule link-down key "r1:Gi0/1", new, P1, count 1, muted by maintenance: '
        '"Gi0/1 down on r1"'
    )
    notice = {"receiver": "mail", "action": "trigger", "user": "bob", "incidents": [2],
              "reason": "escalation level 1"}  # fmt: skip
    assert describe("notifications", notice) == (
        "trigger to mail for bob about incidents [2] (escalation level 1)"
    )
