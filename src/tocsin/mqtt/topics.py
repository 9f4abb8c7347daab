"""MQTT topic filters: checked at load, matched per message, so a bad filter never reaches a broker.

Rules from MQTT 3.1.1 section 4.7 and MQTT 5 section 4.7-4.8: `+` is one whole level, `#` is
the last whole level and also matches its parent, and filters starting with a wildcard do not
match topics starting with `$` (broker internals such as `$SYS/...`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tocsin.mqtt.settings import Subscription

__all__ = [
    "MAX_TOPIC_BYTES",
    "Router",
    "TopicFields",
    "filter_error",
    "matches",
    "overlap",
    "split_share",
    "topic_problem",
]

MAX_TOPIC_BYTES = 65535  # an MQTT string's length is a 16-bit number
_SHARE = "$share/"
_WILDCARDS = ("+", "#")
_PLACEHOLDER = re.compile(r"\{([A-Za-z][A-Za-z0-9_]*)\}")  # a name templates read as a variable
_CACHE_TOPICS = 10_000
_NO_EXACT: tuple[int, None] = (sys.maxsize, None)  # no exact filter: any wildcard may match


def filter_error(text: str) -> str | None:
    """Return why `text` is not a valid subscription filter, None if it is one."""
    if not text:
        return "it is empty"
    if "\x00" in text:
        return "it contains NUL"
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        return "it contains a lone surrogate, which is not UTF-8"
    if size > MAX_TOPIC_BYTES:
        return f"it is {size} bytes of UTF-8; MQTT allows {MAX_TOPIC_BYTES}"
    if text.startswith(_SHARE):
        group, _, text = text[len(_SHARE) :].partition("/")
        if not group:
            return "a shared subscription needs a group: $share/GROUP/filter"
        if "+" in group or "#" in group:
            return f"the share group {group!r} must not contain '+' or '#'"
        if not text:
            return "a shared subscription needs a filter after the group: $share/GROUP/filter"
    levels = text.split("/")
    last = len(levels) - 1
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != last):
            return "'#' must be a whole level and the last one"
        if "+" in level and level != "+":
            return "'+' must be a whole level"
    return None


def topic_problem(topic: str) -> str | None:
    """Say what makes `topic` unusable for a PUBLISH ("is empty"...), or None when it is fine."""
    if not topic:
        return "is empty"
    if "+" in topic or "#" in topic:
        return "contains an MQTT wildcard (+ or #)"
    if "\0" in topic:
        return "contains NUL"
    # "replace": a lone surrogate from undecodable input is measured, not raised on.
    if len(topic.encode("utf-8", "replace")) > MAX_TOPIC_BYTES:
        return f"is longer than {MAX_TOPIC_BYTES} bytes"
    return None


def split_share(filter_: str) -> tuple[str | None, str]:
    """Return (share group or None, the filter topics are matched against) of a valid filter."""
    if filter_.startswith(_SHARE):
        group, _, rest = filter_[len(_SHARE) :].partition("/")
        return group, rest
    return None, filter_


def _match(pattern: tuple[str, ...] | list[str], levels: list[str]) -> bool:
    """Return whether topic levels match filter levels; the `$` rule is left to the caller."""
    count = len(levels)
    for index, level in enumerate(pattern):
        if level == "#":
            return True
        if index >= count or (level != "+" and level != levels[index]):
            return False
    return len(pattern) == count


def matches(filter_: str, topic: str) -> bool:
    """Return whether a topic name matches a filter (without its `$share/GROUP/` prefix)."""
    if topic.startswith("$") and filter_.startswith(_WILDCARDS):
        return False
    return _match(filter_.split("/"), topic.split("/"))


def overlap(first: str, second: str) -> bool:
    """Return whether some topic matches both filters (without their `$share/GROUP/` prefix).

    An MQTT 5 broker sends such a topic once per matching subscription, so the daemon
    refuses two overlapping filters on one broker rather than make two events of a message.
    """
    a, b = first.split("/"), second.split("/")
    if a[0] != b[0] and (
        (a[0].startswith("$") and b[0] in _WILDCARDS)
        or (b[0].startswith("$") and a[0] in _WILDCARDS)
    ):
        return False
    for left, right in zip(a, b, strict=False):
        if left == "#" or right == "#":
            return True
        if left not in (right, "+") and right != "+":
            return False
    longer = a if len(a) > len(b) else b
    rest = longer[min(len(a), len(b)) :]
    return not rest or rest == ["#"]


@dataclass(frozen=True, slots=True)
class TopicFields:
    """Names for the `+` levels of a filter, so `sensors/{site}/+/temp` gives fields.site."""

    pattern: str
    places: tuple[tuple[int, str], ...]  # (level index, name), in level order

    @classmethod
    def compile(cls, pattern: str, topic_filter: str) -> TopicFields:
        """Check `pattern` against the filter level by level; raise ValueError saying why not."""
        levels = pattern.split("/")
        wanted = topic_filter.split("/")
        if len(levels) != len(wanted):
            raise ValueError(
                f"{pattern!r} has {len(levels)} levels but the topic filter "
                f"{topic_filter!r} has {len(wanted)}"
            )
        places: list[tuple[int, str]] = []
        for index, (level, filter_level) in enumerate(zip(levels, wanted, strict=True)):
            named = _PLACEHOLDER.fullmatch(level)
            if named is not None:
                if filter_level != "+":
                    raise ValueError(
                        f"level {index + 1} {level!r} names a level the filter does not leave "
                        f"open: the filter has {filter_level!r} there, not '+'"
                    )
                if any(named[1] == name for _, name in places):
                    raise ValueError(f"{named[1]!r} names two levels")
                places.append((index, named[1]))
            elif "{" in level or "}" in level:
                raise ValueError(
                    f"level {index + 1} {level!r} is not a {{name}} placeholder "
                    "(a letter, then letters, digits or '_')"
                )
            elif level != filter_level:
                raise ValueError(
                    f"level {index + 1} is {level!r} but the topic filter has {filter_level!r}"
                )
        if not places:
            raise ValueError("it names no level: write {name} where the filter has '+'")
        return cls(pattern, tuple(places))

    @property
    def names(self) -> tuple[str, ...]:
        """Return the field names, in level order."""
        return tuple(name for _, name in self.places)

    def extract(self, levels: list[str]) -> dict[str, str]:
        """Return the named levels of a topic that matched the filter, split at '/'."""
        return {name: levels[index] for index, name in self.places}


class Router:
    """Attribute a received topic to the subscription of one broker whose filter matches it.

    The config refuses overlapping filters on one broker; should several match anyway, the
    first in config order wins.
    """

    __slots__ = ("_cache", "_cache_size", "_exact", "_wildcards")

    def __init__(
        self, subscriptions: Iterable[Subscription], *, cache_size: int = _CACHE_TOPICS
    ) -> None:
        self._exact: dict[str, tuple[int, Subscription]] = {}
        self._wildcards: list[tuple[int, tuple[str, ...], bool, Subscription]] = []
        for index, subscription in enumerate(subscriptions):
            levels = tuple(subscription.topic_filter.split("/"))
            if "+" in levels or "#" in levels:
                hides_dollar = levels[0] in _WILDCARDS
                self._wildcards.append((index, levels, hides_dollar, subscription))
            else:
                self._exact.setdefault(subscription.topic_filter, (index, subscription))
        self._cache: dict[str, Subscription | None] = {}
        self._cache_size = cache_size

    def route(self, topic: str) -> Subscription | None:
        """Return the subscription a message on `topic` belongs to, None if no filter matches."""
        cache = self._cache
        if topic in cache:
            return cache[topic]
        before, found = self._exact.get(topic, _NO_EXACT)
        if self._wildcards:
            levels = topic.split("/")
            dollar = topic.startswith("$")
            for index, pattern, hides_dollar, subscription in self._wildcards:
                if index > before:
                    break
                if not (dollar and hides_dollar) and _match(pattern, levels):
                    found = subscription
                    break
        if len(cache) >= self._cache_size:
            cache.clear()
        cache[topic] = found
        return found
