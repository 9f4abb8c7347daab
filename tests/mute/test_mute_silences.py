"""Silences: lifecycle at exact boundaries, validation sentences, audit trail, persistence."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tocsin.mute import MuteDecision
from tocsin.mute.matchers import Matchers, parse_matchers
from tocsin.mute.silences import Silence, SilenceBook, SilenceError
from tocsin.yamlsrc import Mark

NOW = 1_795_564_800.0  # 2026-11-25T00:00:00Z
HOUR = 3600.0


def matchers(*texts: str) -> Matchers:
    """Parse matchers written as text."""
    return parse_matchers(list(texts), Mark("test", 1, 1))


def book() -> SilenceBook:
    """Return an empty book whose ids are s1, s2, ... so tests can name them."""
    counter = itertools.count(1)
    return SilenceBook(new_id=lambda: f"s{next(counter)}")


def add(silences: SilenceBook, **kw: Any) -> Silence:
    """Add a silence with sensible defaults for tests."""
    kw.setdefault("matchers", matchers("host=web1"))
    kw.setdefault("starts_at", NOW)
    kw.setdefault("ends_at", NOW + HOUR)
    kw.setdefault("created_by", "alice")
    kw.setdefault("comment", "disk swap")
    kw.setdefault("now", NOW)
    return silences.add(**kw)


@pytest.mark.parametrize(
    ("offset", "state"),
    [
        (-0.001, "pending"),
        (0.0, "active"),
        (HOUR / 2, "active"),
        (HOUR - 0.001, "active"),
        (HOUR, "expired"),
        (HOUR * 100, "expired"),
    ],
)
def test_state_at_the_boundaries(offset: float, state: str) -> None:
    """Test that a silence is active for starts_at <= now < ends_at, pending before, expired after."""
    silence = add(book(), starts_at=NOW + HOUR, ends_at=NOW + 2 * HOUR)
    start = NOW + HOUR
    assert silence.state(start + offset) == state
    assert silence.is_active(start + offset) is (state == "active")


def test_add_assigns_ids_and_records_who_and_when() -> None:
    """Test that the book assigns the id and keeps creator, comment and creation time."""
    silence = add(book(), created_by="  alice ", comment=" disk swap\n")
    assert silence == Silence(
        id="s1",
        matchers=matchers("host=web1"),
        starts_at=NOW,
        ends_at=NOW + HOUR,
        created_by="alice",
        comment="disk swap",
        created_at=NOW,
    )


def test_default_ids_are_uuid4_hex() -> None:
    """Test that without an injected factory ids are distinct 32-digit uuid4 hex strings."""
    silences = SilenceBook()
    first, second = add(silences), add(silences)
    assert first.id != second.id
    assert len(first.id) == 32
    assert first.id[12] == "4"
    int(first.id, 16)


def test_a_start_in_the_past_moves_to_now() -> None:
    """Test that a silence never claims to have muted anything before it existed."""
    silence = add(book(), starts_at=NOW - HOUR)
    assert silence.starts_at == NOW
    assert silence.state(NOW - 1) == "pending"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ends_at": NOW}, "a silence must end after it starts"),
        ({"ends_at": NOW - 1}, "a silence must end after it starts"),
        (
            {"starts_at": NOW - 2 * HOUR, "ends_at": NOW - HOUR},
            "a silence must end in the future",
        ),
        ({"starts_at": NOW - HOUR, "ends_at": NOW}, "a silence must end in the future"),
        ({"ends_at": float("inf")}, "ends_at must be a finite time"),
        ({"starts_at": float("nan")}, "starts_at must be a finite time"),
        ({"created_by": ""}, "a silence needs created_by: who is muting"),
        ({"created_by": "  "}, "a silence needs created_by: who is muting"),
        ({"comment": "\t"}, "a silence needs a comment: why it is muting"),
        ({"matchers": Matchers()}, "a silence needs at least one matcher, like host=web1"),
        (
            {"matchers": matchers("host=~.*", "rule!=x")},
            "a silence needs at least one matcher that does not match the empty string, like "
            "host=web1 or host=~.+ (these would also match incidents without the labels)",
        ),
    ],
)
def test_add_rejects(overrides: dict[str, Any], message: str) -> None:
    """Test that each invalid silence is refused with exactly this sentence, and not stored."""
    silences = book()
    with pytest.raises(SilenceError) as caught:
        add(silences, **overrides)
    assert str(caught.value) == message
    assert len(silences) == 0


def test_add_accepts_a_plain_sequence_of_matchers() -> None:
    """Test that a list of LabelMatcher works as well as a Matchers."""
    silence = add(book(), matchers=list(matchers("host=web1", "rule=~ssh-.*")))
    assert str(silence.matchers) == '{host="web1", rule=~"ssh-.*"}'


def test_a_reused_id_is_refused() -> None:
    """Test that an id factory handing out a taken id cannot overwrite a silence."""
    silences = SilenceBook(new_id=lambda: "same")
    add(silences)
    with pytest.raises(SilenceError, match="silence id same is already taken"):
        add(silences)


def test_expire_an_active_silence_keeps_it_for_audit() -> None:
    """Test that expiring ends the silence at that moment and keeps the record."""
    silences = book()
    silence = add(silences)
    ended = silences.expire(silence.id, now=NOW + 60)
    assert (ended.starts_at, ended.ends_at, ended.expired_at) == (NOW, NOW + 60, NOW + 60)
    assert ended.state(NOW + 60) == "expired"
    assert ended.state(NOW + 59) == "active"
    assert silences.get(silence.id) == ended
    assert silences.list(state="expired", now=NOW + 60) == [ended]
    assert silences.matching({"host": "web1"}, now=NOW + 60) == []
    assert silence.ends_at == NOW + HOUR  # the old value is untouched


def test_expire_a_pending_silence_means_it_never_starts() -> None:
    """Test that a pending silence expired early is expired at once, not pending forever."""
    silences = book()
    silence = add(silences, starts_at=NOW + HOUR, ends_at=NOW + 2 * HOUR)
    ended = silences.expire(silence.id, now=NOW + 10)
    assert (ended.starts_at, ended.ends_at, ended.expired_at) == (NOW + 10, NOW + 10, NOW + 10)
    for moment in (NOW + 10, NOW + HOUR, NOW + 1.5 * HOUR):
        assert ended.state(moment) == "expired"
    assert silences.next_change(NOW + 10) is None


def test_expire_errors() -> None:
    """Test that expiring twice, too late, or an unknown id is refused with a sentence."""
    silences = book()
    silence = add(silences)
    silences.expire(silence.id, now=NOW + 1)
    with pytest.raises(SilenceError) as caught:
        silences.expire(silence.id, now=NOW + 2)
    assert str(caught.value) == "silence s1 has already expired"
    other = add(silences)
    with pytest.raises(SilenceError) as caught:
        silences.expire(other.id, now=NOW + HOUR)
    assert str(caught.value) == "silence s2 has already expired"
    with pytest.raises(SilenceError) as caught:
        silences.expire("nope", now=NOW)
    assert str(caught.value) == "no silence with id nope"


def test_list_filters_by_state_oldest_first() -> None:
    """Test that list() returns all silences by creation time, or those in one state."""
    silences = book()
    late = add(silences, starts_at=NOW + 2 * HOUR, ends_at=NOW + 3 * HOUR, now=NOW + 2)
    now_active = add(silences, now=NOW + 1)
    gone = add(silences, ends_at=NOW + 10)
    at = NOW + 60
    assert silences.list(now=at) == [gone, now_active, late]
    assert silences.list(state="pending", now=at) == [late]
    assert silences.list(state="active", now=at) == [now_active]
    assert silences.list(state="expired", now=at) == [gone]


def test_matching_returns_active_matches_longest_first() -> None:
    """Test that only active, matching silences are returned, the longest-lasting first."""
    silences = book()
    short = add(silences, ends_at=NOW + 60)
    long = add(silences, matchers=matchers("rule=~ssh-.*"), ends_at=NOW + HOUR)
    add(silences, starts_at=NOW + 30, ends_at=NOW + 2 * HOUR)  # pending at NOW
    add(silences, matchers=matchers("host=db1"))  # does not match
    labels = {"host": "web1", "rule": "ssh-brute"}
    assert silences.matching(labels, now=NOW) == [long, short]
    assert [s.id for s in silences.matching(labels, now=NOW + 30)] == ["s3", "s2", "s1"]
    assert silences.matching(labels, now=NOW + 60) == [silences.get("s3"), long]
    assert silences.matching({"host": "web2"}, now=NOW) == []


def test_next_change_is_the_next_start_or_end() -> None:
    """Test that next_change gives the soonest future start or end, None when none is left."""
    silences = book()
    assert silences.next_change(NOW) is None
    add(silences, ends_at=NOW + HOUR)
    add(silences, starts_at=NOW + 60, ends_at=NOW + 120)
    assert silences.next_change(NOW) == NOW + 60
    assert silences.next_change(NOW + 60) == NOW + 120  # a start exactly now is not "next"
    assert silences.next_change(NOW + 120) == NOW + HOUR
    assert silences.next_change(NOW + HOUR) is None


def test_mute_decision_names_the_silence() -> None:
    """Test the reason an incident records: short id, comment, author and end time."""
    silence = add(SilenceBook(new_id=lambda: "3f2a9c01d4e5f60718293a4b5c6d7e8f"))
    assert silence.mute_decision() == MuteDecision(
        kind="silence",
        name="3f2a9c01d4e5f60718293a4b5c6d7e8f",
        reason="muted by silence 3f2a9c01 (disk swap, by alice) until 2026-11-25T01:00:00Z",
        until=NOW + HOUR,
        counted_as="3f2a9c01d4e5f60718293a4b5c6d7e8f",
    )


def test_records_round_trip_through_json() -> None:
    """Test that to_dict/from_dict survive JSON, matchers with quotes and regexes included."""
    silences = book()
    silence = add(silences, matchers=matchers('msg="say \\"hi\\""', "rule=~ssh-.*|sudo"))
    ended = silences.expire(add(silences).id, now=NOW + 5)
    for original in (silence, ended):
        record = json.loads(json.dumps(original.to_dict()))
        assert Silence.from_dict(record) == original
    assert silence.to_dict() == {
        "id": "s1",
        "matchers": ['msg="say \\"hi\\""', 'rule=~"ssh-.*|sudo"'],
        "starts_at": NOW,
        "ends_at": NOW + HOUR,
        "created_by": "alice",
        "comment": "disk swap",
        "created_at": NOW,
        "expired_at": None,
    }


def test_a_book_is_rebuilt_from_stored_silences() -> None:
    """Test that a book loaded from records answers as the original did."""
    silences = book()
    add(silences)
    add(silences, starts_at=NOW + HOUR, ends_at=NOW + 2 * HOUR)
    records = [s.to_dict() for s in silences.list(now=NOW)]
    again = SilenceBook(silences=[Silence.from_dict(r) for r in records])
    assert again.list(now=NOW) == silences.list(now=NOW)
    assert again.matching({"host": "web1"}, now=NOW) == silences.matching({"host": "web1"}, now=NOW)
    assert again.next_change(NOW) == NOW + HOUR


def _record(**changes: Any) -> dict[str, Any]:
    silence = add(book())
    record = silence.to_dict()
    record.update(changes)
    return record


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            {k: v for k, v in _record().items() if k not in ("comment", "ends_at")},
            "silence record lacks ends_at, comment",
        ),
        (_record(extra=1, more=2), "silence record has unknown fields extra, more"),
        (_record(id=5), "silence record field 'id' must be text"),
        (_record(ends_at="soon"), "silence record field 'ends_at' must be a number"),
        (_record(starts_at=True), "silence record field 'starts_at' must be a number"),
        (_record(expired_at=float("nan")), "silence record field 'expired_at' must be finite"),
        (
            _record(matchers=["host=~["]),
            "silence record s1: matcher 'host=~[' has an invalid regex: missing ]: [",
        ),
        (_record(matchers="host=web1"), "silence record s1: 'matchers' must be a list, not text"),
    ],
)
def test_damaged_records_are_refused(record: dict[str, Any], message: str) -> None:
    """Test that from_dict names what is wrong with a damaged stored record."""
    with pytest.raises(SilenceError) as caught:
        Silence.from_dict(record)
    assert str(caught.value) == message


def test_a_record_must_be_a_mapping() -> None:
    """Test that from_dict refuses a record that is not a mapping at all."""
    with pytest.raises(SilenceError, match="a silence record must be a mapping"):
        Silence.from_dict(["not", "a", "record"])  # type: ignore[arg-type]


moments = st.floats(min_value=NOW - 10 * HOUR, max_value=NOW + 10 * HOUR)


@given(start=moments, length=st.floats(min_value=0.001, max_value=5 * HOUR), now=moments)
def test_state_agrees_with_is_active_and_next_change(
    start: float, length: float, now: float
) -> None:
    """Test that state, is_active, matching and next_change tell one consistent story."""
    silences = SilenceBook()
    created = min(start, NOW - 20 * HOUR)
    silence = silences.add(
        matchers=matchers("host=web1"),
        starts_at=start,
        ends_at=start + length,
        created_by="a",
        comment="c",
        now=created,
    )
    state = silence.state(now)
    assert (state == "active") is silence.is_active(now)
    assert (silences.matching({"host": "web1"}, now=now) == [silence]) is (state == "active")
    upcoming = silences.next_change(now)
    if state == "pending":
        assert upcoming == silence.starts_at
    elif state == "active":
        assert upcoming == silence.ends_at
    else:
        assert upcoming is None
    if upcoming is not None:
        assert silence.state(upcoming) != state


def test_far_future_silences_are_refused() -> None:
    """Test that a silence ending past the year 9999 is refused, not a crash later."""
    with pytest.raises(SilenceError, match="before the year 10000"):
        SilenceBook().add(
            matchers=parse_matchers(["host=web1"], Mark("t", 1, 1)),
            starts_at=NOW,
            ends_at=1e12,
            created_by="al",
            comment="c",
            now=NOW,
        )
