"""Topic filters: validity per MQTT 3.1.1/5, matching, named levels and routing to a subscription."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tocsin.mqtt.settings import Subscription, parse_brokers, parse_subscriptions
from tocsin.mqtt.topics import (
    Router,
    TopicFields,
    filter_error,
    matches,
    overlap,
    split_share,
    topic_problem,
)
from tocsin.yamlsrc import SourceError, load_yaml


def subscriptions(*filters: str) -> tuple[Subscription, ...]:
    """Return one subscription per filter, on one broker, in this order.

    Each is parsed on its own: the config refuses overlapping filters on one broker, but the
    router must still pick the first of them if it ever gets some.
    """
    found: list[Subscription] = []
    for i, f in enumerate(filters):
        item = f"    - {{topic: '{f}', name: s{i}}}\n"
        doc = load_yaml(
            f"mqtt:\n  brokers: {{b: {{host: h}}}}\nsources:\n  mqtt:\n{item}", name="t"
        )
        brokers = parse_brokers(doc["mqtt"], doc.mark, Path())
        found.extend(parse_subscriptions(doc["sources"]["mqtt"], doc.mark, brokers))
    return tuple(found)


@pytest.mark.parametrize(
    "text",
    [
        "#",
        "+",
        "/",
        "a//b",
        "+/+",
        "a/+/c",
        "sport/tennis/#",
        "$SYS/#",
        "$share",
        "$share/g/a/#",
        "$share/g/+",
        "é" * 32767,
    ],
)
def test_valid_filters(text: str) -> None:
    """Test filters MQTT allows, including empty levels and $share with a group."""
    assert filter_error(text) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "it is empty"),
        ("a\x00b", "it contains NUL"),
        ("a/\ud800", "it contains a lone surrogate, which is not UTF-8"),
        ("é" * 32768, "it is 65536 bytes of UTF-8; MQTT allows 65535"),
        ("a#", "'#' must be a whole level and the last one"),
        ("a/#/b", "'#' must be a whole level and the last one"),
        ("#/", "'#' must be a whole level and the last one"),
        ("a/b#", "'#' must be a whole level and the last one"),
        ("a+/b", "'+' must be a whole level"),
        ("a/+b", "'+' must be a whole level"),
        ("++", "'+' must be a whole level"),
        ("$share//a", "a shared subscription needs a group: $share/GROUP/filter"),
        ("$share/g+/a", "the share group 'g+' must not contain '+' or '#'"),
        ("$share/#/a", "the share group '#' must not contain '+' or '#'"),
        ("$share/g", "a shared subscription needs a filter after the group: $share/GROUP/filter"),
        ("$share/g/", "a shared subscription needs a filter after the group: $share/GROUP/filter"),
        ("$share/g/a/#/b", "'#' must be a whole level and the last one"),
    ],
)
def test_invalid_filters(text: str, reason: str) -> None:
    """Test that each kind of invalid filter is named for what is wrong with it."""
    assert filter_error(text) == reason


@pytest.mark.parametrize(
    ("topic", "problem"),
    [
        ("alerts/db", None),
        ("$SYS/x", None),
        ("", "is empty"),
        ("a/+/b", "contains an MQTT wildcard (+ or #)"),
        ("a/#", "contains an MQTT wildcard (+ or #)"),
        ("a\0b", "contains NUL"),
        ("é" * 32_768, "is longer than 65535 bytes"),
        ("x" * 65_535, None),
        ("a/\udcff", None),
    ],
)
def test_topic_problem(topic: str, problem: str | None) -> None:
    """Test that a PUBLISH topic's problem is named, and a lone surrogate is measured, not raised."""
    assert topic_problem(topic) == problem


@pytest.mark.parametrize(
    ("text", "split"),
    [
        ("a/b", (None, "a/b")),
        ("$share/g/a/+", ("g", "a/+")),
        ("$share/g/#", ("g", "#")),
        ("$share", (None, "$share")),
    ],
)
def test_split_share(text: str, split: tuple[str | None, str]) -> None:
    """Test that a shared subscription splits into its group and the filter topics meet."""
    assert split_share(text) == split


@pytest.mark.parametrize(
    ("filter_", "topic", "expected"),
    [
        ("sport/tennis/player1/#", "sport/tennis/player1", True),
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
        ("sport/#", "sport", True),
        ("#", "a/b/c", True),
        ("#", "/", True),
        ("sport/tennis/+", "sport/tennis/player1", True),
        ("sport/tennis/+", "sport/tennis/player1/ranking", False),
        ("sport/+", "sport", False),
        ("sport/+", "sport/", True),
        ("+/+", "/finance", True),
        ("/+", "/finance", True),
        ("+", "/finance", False),
        ("a/+/c", "a/b/c", True),
        ("a/+/c", "a/b/d", False),
        ("a/b", "a/b", True),
        ("a/b", "a/B", False),
        ("a/b", "a/b/c", False),
        ("a/b/c", "a/b", False),
        ("#", "$SYS/broker/load", False),
        ("+/broker/load", "$SYS/broker/load", False),
        ("$SYS/#", "$SYS/broker/load", True),
        ("$SYS/broker/+", "$SYS/broker/load", True),
        ("+/x", "a$/x", True),
    ],
)
def test_matches(filter_: str, topic: str, expected: bool) -> None:
    """Test matching against the examples of MQTT 3.1.1 section 4.7, $SYS included."""
    assert matches(filter_, topic) is expected


def test_topic_fields_extract_named_levels() -> None:
    """Test that names pick their levels and '+' leaves a level unnamed."""
    fields = TopicFields.compile("sensors/{site}/+/{kind}/#", "sensors/+/+/+/#")
    assert fields.names == ("site", "kind")
    assert fields.places == ((1, "site"), (3, "kind"))
    assert fields.extract(["sensors", "berlin", "dev1", "temp", "x", "y"]) == {
        "site": "berlin",
        "kind": "temp",
    }


@pytest.mark.parametrize(
    ("pattern", "topic_filter", "reason"),
    [
        ("a/{x}", "a/+/c", "'a/{x}' has 2 levels but the topic filter 'a/+/c' has 3"),
        (
            "a/{x}",
            "a/b",
            "level 2 '{x}' names a level the filter does not leave open: the filter has 'b' "
            "there, not '+'",
        ),
        (
            "{x}/#",
            "#/#",
            "level 1 '{x}' names a level the filter does not leave open: the filter has '#' "
            "there, not '+'",
        ),
        ("{x}/{x}", "+/+", "'x' names two levels"),
        (
            "{1x}/a",
            "+/a",
            "level 1 '{1x}' is not a {name} placeholder (a letter, then letters, digits or '_')",
        ),
        (
            "{a-b}",
            "+",
            "level 1 '{a-b}' is not a {name} placeholder (a letter, then letters, digits or '_')",
        ),
        (
            "x{a}",
            "+",
            "level 1 'x{a}' is not a {name} placeholder (a letter, then letters, digits or '_')",
        ),
        ("b/{x}", "a/+", "level 1 is 'b' but the topic filter has 'a'"),
        ("{x}/+", "+/#", "level 2 is '+' but the topic filter has '#'"),
        ("a/+", "a/+", "it names no level: write {name} where the filter has '+'"),
    ],
)
def test_topic_fields_errors(pattern: str, topic_filter: str, reason: str) -> None:
    """Test that a pattern must align with the filter level by level and name '+' levels only."""
    with pytest.raises(ValueError, match=f"^{re.escape(reason)}$"):
        TopicFields.compile(pattern, topic_filter)


def test_router_takes_the_first_match_in_config_order() -> None:
    """Test that an exact filter listed after a matching wildcard does not win, and before does."""
    wild, exact = subscriptions("a/+", "a/b")
    assert Router([wild, exact]).route("a/b") is wild
    assert Router([exact, wild]).route("a/b") is exact
    other, hashed, exact_last = subscriptions("x/#", "a/#", "a/b")
    router = Router([other, hashed, exact_last])
    assert router.route("a/b") is hashed
    assert router.route("a") is hashed
    assert router.route("x/y/z") is other
    assert router.route("b") is None


def test_router_keeps_dollar_topics_from_leading_wildcards() -> None:
    """Test that `#` and `+/...` do not claim $SYS topics, but a $SYS filter does."""
    everything, plus, system = subscriptions("#", "+/broker/load", "$SYS/#")
    assert Router([everything, plus]).route("$SYS/broker/load") is None
    assert Router([everything, plus, system]).route("$SYS/broker/load") is system
    assert Router([everything, system]).route("a/b") is everything


def test_router_matches_shared_subscriptions_without_their_prefix() -> None:
    """Test that `$share/GROUP/a/+` receives topics like `a/x`."""
    (shared,) = subscriptions("$share/g/a/+")
    router = Router([shared])
    assert router.route("a/x") is shared
    assert router.route("$share/g/a/x") is None


def test_router_cache_stays_bounded_and_correct() -> None:
    """Test that a full cache is emptied, not grown, and answers stay the same."""
    wild, exact = subscriptions("t/+", "u")
    router = Router([wild, exact], cache_size=3)
    for round_ in range(3):
        for n in range(10):
            assert router.route(f"t/{n}") is wild, round_
            assert router.route("u") is exact
            assert router.route(f"v/{n}") is None
            assert len(router._cache) <= 3  # the bound itself is what is under test


_LEVEL = st.sampled_from(["a", "b", "", "$x"])
_TOPICS = st.lists(_LEVEL, min_size=1, max_size=4).map("/".join)
_FILTERS = (
    st.lists(st.sampled_from(["a", "b", "", "+", "$x"]), min_size=1, max_size=4)
    .flatmap(lambda levels: st.sampled_from(["/".join(levels), "/".join([*levels, "#"])]))
    .filter(bool)
)


@given(_FILTERS, _TOPICS)
def test_router_agrees_with_matches(filter_: str, topic: str) -> None:
    """Test that a one-subscription router routes exactly the topics its filter matches."""
    (subscription,) = subscriptions(filter_)
    routed = Router([subscription]).route(topic)
    assert (routed is subscription) is matches(filter_, topic)


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/#", "a", True),
        ("a", "a/+", False),
        ("a/b", "a/c", False),
        ("#", "$SYS/x", False),
        ("$SYS/#", "#", False),
        ("+/b", "a/+", True),
        ("a/b/c", "a/#", True),
        ("sensors/#", "sensors/+/+/temp", True),
        ("x/y", "x/y/z", False),
        ("+", "$x", False),
        ("a/+/c", "a/b/d", False),
    ],
)
def test_overlap(first: str, second: str, expected: bool) -> None:
    """Test that two filters overlap exactly when some topic matches both, either way round."""
    assert overlap(first, second) is expected
    assert overlap(second, first) is expected


def test_overlapping_filters_on_one_broker_are_refused() -> None:
    """Test that an MQTT 5 broker's one copy per matching subscription is ruled out at load."""
    text = (
        "mqtt:\n  brokers: {b: {host: h}}\nsources:\n  mqtt:\n"
        "    - {topic: 'sensors/#', name: all}\n    - {topic: '$share/g/sensors/+/t', name: t}\n"
    )
    doc = load_yaml(text, name="t")
    brokers = parse_brokers(doc["mqtt"], doc.mark, Path())
    with pytest.raises(SourceError, match=r"t:6:7: topic '\$share/g/sensors/\+/t' overlaps"):
        parse_subscriptions(doc["sources"]["mqtt"], doc.mark, brokers)
