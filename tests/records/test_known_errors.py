"""Known errors (KEDB): config parsing at file:line, API validation, matching order, records."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tocsin.model import Incident, IncidentState
from tocsin.mute.matchers import Matchers, parse_matchers
from tocsin.records.known_errors import (
    KnownError,
    KnownErrorBook,
    KnownErrorError,
    parse_known_errors,
)
from tocsin.yamlsrc import Mark, SourceError, load_yaml, value_mark

NOW = 1_795_564_800.0  # 2026-11-25T00:00:00Z

CONFIG = """\
known_errors:
  - name: db-disk
    matchers: [service=db, category=disk]
    workaround: Run rotate-logs on the host.
    root_cause: log rotation is off
    problem: 12
  - name: any-disk
    matchers: [category=disk]
    workaround: Free some space.
"""


def parse(text: str) -> list[KnownError]:
    """Parse a config file holding a `known_errors:` section."""
    data = load_yaml(text, name="incidents.yaml")
    return parse_known_errors(data.get("known_errors"), value_mark(data, "known_errors", data.mark))


def matchers(*texts: str) -> Matchers:
    """Parse matchers written as text."""
    return parse_matchers(list(texts), Mark("test", 1, 1))


def incident(
    service: str = "db", category: str = "disk", *, labels: dict[str, str] | None = None
) -> Incident:
    """Return an open incident with these route labels."""
    return Incident(
        id=1,
        fingerprint="r:k",
        rule="r",
        key="k",
        title="disk full",
        state=IncidentState.NEW,
        priority="P3",
        impact="medium",
        urgency="high",
        first_seen=NOW,
        last_seen=NOW,
        service=service,
        category=category,
        labels=labels or {},
    )


def add(book: KnownErrorBook, **kw: Any) -> KnownError:
    """Add an API-made entry with sensible defaults for tests."""
    kw.setdefault("name", "api-one")
    kw.setdefault("matchers", matchers("service=web"))
    kw.setdefault("workaround", "restart the pool")
    kw.setdefault("created_by", "alice")
    kw.setdefault("now", NOW)
    return book.add(**kw)


# ---------------------------------------------------------------------------------------------
# Config


def test_the_documented_config_parses() -> None:
    """Test every option, where each entry is, and that an absent section means none."""
    entries = parse(CONFIG)
    assert [(e.name, str(e.matchers), e.problem, e.from_config) for e in entries] == [
        ("db-disk", '{service="db", category="disk"}', 12, True),
        ("any-disk", '{category="disk"}', None, True),
    ]
    first = entries[0]
    assert (first.workaround, first.root_cause, first.created_by) == (
        "Run rotate-logs on the host.",
        "log rotation is off",
        "config",
    )
    assert str(first.where) == "incidents.yaml:2:5"
    assert parse("other: 1\n") == []


ERRORS = [
    ("known_errors: {name: x}\n", "incidents.yaml:1:15: 'known_errors' must be a list, not a mapping"),
    ("known_errors:\n  - [name]\n", "incidents.yaml:2:5: a known error must be a mapping, not a list"),
    ("known_errors:\n  - {name: x, matchers: [host=a], workaround: w, fix: f}\n",
     "incidents.yaml:2:50: known error 'x': unknown option 'fix'"),
    ("known_errors:\n  - {name: x, matchers: [host=a]}\n",
     "incidents.yaml:2:5: known error 'x': missing required key 'workaround'"),
    ("known_errors:\n  - {matchers: [host=a], workaround: w}\n",
     "incidents.yaml:2:5: known error 1: missing required key 'name'"),
    ("known_errors:\n  - {name: x, matchers: [host=a], workaround: '  '}\n",
     "incidents.yaml:2:47: known error 'x': 'workaround' must say what to do until it is fixed"),
    ("known_errors:\n  - {name: x, matchers: [host=a], workaround: [w]}\n",
     "incidents.yaml:2:47: known error 'x': 'workaround' must be text, not a list"),
    ("known_errors:\n  - {name: 'a b', matchers: [host=a], workaround: w}\n",
     "incidents.yaml:2:12: known error 'a b': 'name' must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"),
    ("known_errors:\n  - {name: x, matchers: [], workaround: w}\n",
     "incidents.yaml:2:25: known error 'x': 'matchers' needs at least one matcher, like host=web1"),
    ("known_errors:\n  - {name: x, matchers: ['host=~.*'], workaround: w}\n",
     "incidents.yaml:2:25: known error 'x': 'matchers' needs at least one matcher that does not match the empty string, like host=web1 or host=~.+ (these would also match incidents without the labels)"),
    ("known_errors:\n  - {name: x, matchers: ['host=~(a'], workaround: w}\n",
     "incidents.yaml:2:26: known error 'x': matcher 'host=~(a' has an invalid regex: missing ): (a"),
    ("known_errors:\n  - {name: x, matchers: [host=a], workaround: w, problem: 0}\n",
     "incidents.yaml:2:59: known error 'x': 'problem' must be a whole number >= 1"),
    ("known_errors:\n  - {name: x, matchers: [host=a], workaround: w}\n  - {name: x, matchers: [host=b], workaround: v}\n",
     "incidents.yaml:3:12: duplicate known error name 'x' (first defined at incidents.yaml:2:12)"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_config_errors_name_file_line_and_problem(text: str, message: str) -> None:
    """Test that each config mistake is refused with its exact file:line message."""
    with pytest.raises(SourceError) as caught:
        parse(text)
    assert str(caught.value) == message


# ---------------------------------------------------------------------------------------------
# Matching


def test_the_first_match_wins_config_first_then_api_oldest_first() -> None:
    """Test the matching order and what the matchers see (route labels and own labels)."""
    book = KnownErrorBook(config=parse(CONFIG))
    add(book, name="late", matchers=matchers("urgency=high"), now=NOW + 1)
    add(book, name="early", matchers=matchers("zone=eu"), now=NOW + 2)
    assert [e.name for e in book.list()] == ["db-disk", "any-disk", "late", "early"]
    assert book.match(incident()) == book.get("db-disk")
    assert book.match(incident(service="web")) == book.get("any-disk")
    assert book.match(incident(category="cpu")) == book.get("late")
    assert book.match_labels({"zone": "eu"}) == book.get("early")
    assert book.match_labels({"service": "db"}) is None


def test_answers_are_cached_per_labels_and_forgotten_on_every_change() -> None:
    """Test that a re-rated incident is matched afresh and that changes clear the cache."""
    book = KnownErrorBook(cache_size=2)
    add(book, name="p1", matchers=matchers("priority=P1"))
    subject = incident()
    assert book.match(subject) is None
    subject.priority = "P1"  # its labels changed: a different cache entry
    assert book.match(subject) == book.get("p1")
    book.remove("p1")
    assert book.match(subject) is None
    add(book, name="p1-again", matchers=matchers("priority=P1"))
    assert book.match(subject) == book.get("p1-again")
    book.set_config(parse(CONFIG))
    assert book.match(subject) == book.get("db-disk")
    for category in ("a", "b", "c"):
        book.match(incident(category=category))
    assert len(book._cache) == 2  # bounded: the oldest answers went first


# ---------------------------------------------------------------------------------------------
# API-made entries


def test_an_api_entry_is_stored_trimmed_and_timed() -> None:
    """Test what add keeps, and that it can be found and removed again."""
    book = KnownErrorBook()
    entry = add(book, workaround="  restart  ", root_cause=" leak ", problem=4, created_by=" bob ")
    assert (entry.workaround, entry.root_cause, entry.created_by) == ("restart", "leak", "bob")
    assert (entry.created_at, entry.problem, entry.from_config) == (NOW, 4, False)
    assert book.get("api-one") == entry
    assert book.remove("api-one") == entry
    assert len(book) == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "a b"}, "a known error name must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit, not 'a b'"),
        ({"name": "a" * 65}, f"a known error name must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit, not '{'a' * 65}'"),
        ({"name": "db-disk"}, "known error 'db-disk' already exists in the config at incidents.yaml:2:5"),
        ({"name": "taken"}, "known error 'taken' already exists"),
        ({"matchers": matchers()}, "a known error needs at least one matcher, like host=web1"),
        ({"matchers": matchers("host!=a")}, "a known error needs at least one matcher that does not match the empty string, like host=web1 or host=~.+ (these would also match incidents without the labels)"),
        ({"workaround": " "}, "a known error needs a workaround: what to do until it is fixed"),
        ({"root_cause": "x" * 10_001}, "the root cause is too long (at most 10000 characters)"),
        ({"created_by": ""}, "a known error needs created_by: who records it"),
        ({"problem": 0}, "problem must be a problem id (a whole number >= 1)"),
        ({"now": float("inf")}, "now must be a finite time"),
    ],
)  # fmt: skip
def test_bad_api_entries_are_refused_with_a_sentence(fields: dict[str, Any], message: str) -> None:
    """Test each refusal's sentence, and that nothing is added."""
    book = KnownErrorBook(config=parse(CONFIG))
    add(book, name="taken")
    with pytest.raises(KnownErrorError) as caught:
        add(book, **fields)
    assert str(caught.value) == message
    assert [e.name for e in book.list()] == ["db-disk", "any-disk", "taken"]


def test_only_api_entries_can_be_removed() -> None:
    """Test that config entries and unknown names are refused with where to look."""
    book = KnownErrorBook(config=parse(CONFIG))
    with pytest.raises(KnownErrorError) as caught:
        book.remove("db-disk")
    assert str(caught.value) == (
        "known error 'db-disk' comes from the config (incidents.yaml:2:5); remove it there"
    )
    with pytest.raises(KnownErrorError, match="no known error named 'nope'"):
        book.remove("nope")


def test_a_reload_may_not_take_an_api_entrys_name() -> None:
    """Test that set_config refuses a clash and keeps the old config."""
    book = KnownErrorBook()
    add(book, name="db-disk")
    with pytest.raises(KnownErrorError) as caught:
        book.set_config(parse(CONFIG))
    assert str(caught.value) == (
        "incidents.yaml:2:5: known error 'db-disk' was already made through the API by alice; "
        "rename one, or remove the API one"
    )
    assert [e.name for e in book.list()] == ["db-disk"]
    assert book.match(incident(service="mail")) is None  # any-disk did not come in either


# ---------------------------------------------------------------------------------------------
# Records


def test_entries_round_trip_through_json_and_come_back_in_order() -> None:
    """Test to_dict/from_dict through JSON text, and the book's order after a restart."""
    book = KnownErrorBook()
    second = add(book, name="b", matchers=matchers('host=~"web[0-9]+"'), now=NOW + 1)
    first = add(book, name="a", root_cause="why", problem=3, now=NOW)
    stored = [json.loads(json.dumps(e.to_dict())) for e in (second, first)]
    back = [KnownError.from_dict(d) for d in stored]
    assert back == [second, first]
    again = KnownErrorBook(entries=back)
    assert [e.name for e in again.list()] == ["a", "b"]
    assert again.match_labels({"host": "web12"}) == second


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ({"name": 3}, "known error record field 'name' must be text"),
        ({"problem": "3"}, "known error record field 'problem' must be a problem id"),
        ({"created_at": float("nan")}, "known error record field 'created_at' must be a finite time"),
        ({"matchers": ["host"]}, "known error record x: matcher 'host' must look like name=value, name!=value, name=~regex or name!~regex"),
        ({"extra": 1}, "known error record has unknown fields extra"),
    ],
)  # fmt: skip
def test_damaged_records_are_named(damage: dict[str, Any], message: str) -> None:
    """Test that a damaged record says what is wrong."""
    data = KnownError(name="x", matchers=matchers("host=a"), workaround="w").to_dict()
    data.update(damage)
    with pytest.raises(KnownErrorError) as caught:
        KnownError.from_dict(data)
    assert str(caught.value) == message
    del data["workaround"]
    with pytest.raises(KnownErrorError, match="known error record lacks workaround"):
        KnownError.from_dict(data)
