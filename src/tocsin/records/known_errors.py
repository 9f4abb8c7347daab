"""The known-error database (KEDB): matchers that recognise an incident whose cause is known,
with the workaround to apply and the root cause behind it. Pure; time is an argument.

Entries come from the config (`known_errors:`) and from the API. An incident gets the first
entry that matches its labels (route_labels: rule, key, priority, service, category, impact,
urgency and its own labels): config entries in file order first, then API ones oldest first.
"""

from __future__ import annotations

import builtins
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tocsin.model import Incident
from tocsin.mute.matchers import LabelMatcher, Matchers, parse_matchers
from tocsin.records.views import route_labels
from tocsin.rules.schema import check_keys, expect_int, expect_map, expect_str, parse_named
from tocsin.yamlsrc import Mark, SourceError, value_mark

__all__ = ["KnownError", "KnownErrorBook", "KnownErrorError", "parse_known_errors"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # names go into API URLs
_NAME_RULE = "1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
_TEXT_LIMIT = 10_000  # characters of a workaround or a root cause
_RECORD = Mark("<known error record>", 1, 1)
_CONFIG = "config"


class KnownErrorError(ValueError):
    """A known error that cannot be added, removed or loaded; the text is one sentence."""


@dataclass(frozen=True, slots=True)
class KnownError:
    """One KEDB entry: which incidents it recognises, and what to do about them."""

    name: str
    matchers: Matchers
    workaround: str
    root_cause: str = ""
    problem: int | None = None  # the problem record it documents
    created_by: str = _CONFIG
    created_at: float | None = None  # None: it comes from the config
    where: Mark | None = field(default=None, compare=False)  # where the config defines it

    @property
    def from_config(self) -> bool:
        """Tell whether the config defines it (then only the config can remove it)."""
        return self.created_at is None

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Test the matchers against an incident's route labels."""
        return self.matchers.matches(labels)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready record; matchers in their canonical text form."""
        return {
            "name": self.name,
            "matchers": [str(m) for m in self.matchers],
            "workaround": self.workaround,
            "root_cause": self.root_cause,
            "problem": self.problem,
            "created_by": self.created_by,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KnownError:
        """Rebuild an entry saved by to_dict; KnownErrorError names what is damaged."""
        if not isinstance(data, Mapping):
            raise KnownErrorError("a known error record must be a mapping")
        missing = [k for k in _FIELDS if k not in data]
        if missing:
            raise KnownErrorError(f"known error record lacks {', '.join(missing)}")
        unknown = sorted(str(k) for k in data if k not in _FIELDS)
        if unknown:
            raise KnownErrorError(f"known error record has unknown fields {', '.join(unknown)}")
        for key in ("name", "workaround", "root_cause", "created_by"):
            if not isinstance(data[key], str):
                raise KnownErrorError(f"known error record field '{key}' must be text")
        problem, created_at = data["problem"], data["created_at"]
        if problem is not None and not _is_id(problem):
            raise KnownErrorError("known error record field 'problem' must be a problem id")
        if created_at is not None and (
            isinstance(created_at, bool)
            or not isinstance(created_at, int | float)
            or not math.isfinite(created_at)
        ):
            raise KnownErrorError("known error record field 'created_at' must be a finite time")
        try:
            matchers = parse_matchers(data["matchers"], _RECORD)
        except SourceError as exc:
            raise KnownErrorError(f"known error record {data['name']}: {exc.message}") from None
        return cls(
            name=data["name"],
            matchers=matchers,
            workaround=data["workaround"],
            root_cause=data["root_cause"],
            problem=problem,
            created_by=data["created_by"],
            created_at=None if created_at is None else float(created_at),
        )


_FIELDS = ("name", "matchers", "workaround", "root_cause", "problem", "created_by", "created_at")


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


_MISS = KnownError(name="", matchers=Matchers(), workaround="")  # a cached "no entry matches"


class KnownErrorBook:
    """Config entries and API-made ones; each API mutation returns the entry to persist."""

    __slots__ = ("_api", "_cache", "_config", "cache_size")

    def __init__(
        self,
        *,
        config: Sequence[KnownError] = (),
        entries: Iterable[KnownError] = (),
        cache_size: int = 4096,
    ) -> None:
        self.cache_size = cache_size
        self._config: dict[str, KnownError] = {}
        self._api: dict[str, KnownError] = {
            e.name: e for e in sorted(entries, key=lambda e: (e.created_at or 0.0, e.name))
        }
        # (fingerprint, route labels) -> the entry that matched, or _MISS; oldest first.
        self._cache: dict[tuple[str, tuple[tuple[str, str], ...]], KnownError] = {}
        self.set_config(config)

    def clash(self, config: Sequence[KnownError]) -> str:
        """Say why these config entries cannot be used ("" if they can): one of them takes
        the name of an API-made entry. A reload asks before it changes anything."""
        for entry in config:
            made = self._api.get(entry.name)
            if made is not None:
                place = f"{entry.where}: " if entry.where is not None else ""
                return (
                    f"{place}known error '{entry.name}' was already made through the API by "
                    f"{made.created_by}; rename one, or remove the API one"
                )
        return ""

    def set_config(self, config: Sequence[KnownError]) -> None:
        """Use these config entries from now on (a reload); nothing changes if one of them
        takes the name of an API-made entry.
        """
        problem = self.clash(config)
        if problem:
            raise KnownErrorError(problem)
        self._config = {e.name: e for e in config}
        self._cache.clear()

    def __len__(self) -> int:
        return len(self._config) + len(self._api)

    def get(self, name: str) -> KnownError | None:
        """Return the entry with this name, from the config or the API."""
        return self._config.get(name) or self._api.get(name)

    def list(self) -> builtins.list[KnownError]:
        """Return every entry in matching order: the config's, then the API's oldest first."""
        return [*self._config.values(), *self._api.values()]

    def add(
        self,
        *,
        name: str,
        matchers: Matchers | Iterable[LabelMatcher],
        workaround: str,
        created_by: str,
        now: float,
        root_cause: str = "",
        problem: int | None = None,
    ) -> KnownError:
        """Validate and store a new entry; KnownErrorError says what is wrong, as an API can
        return it.
        """
        chosen = matchers if isinstance(matchers, Matchers) else Matchers(tuple(matchers))
        if not _NAME.fullmatch(name):
            raise KnownErrorError(f"a known error name must be {_NAME_RULE}, not {name!r}")
        taken = self.get(name)
        if taken is not None:
            where = f" in the config at {taken.where}" if taken.where is not None else ""
            raise KnownErrorError(f"known error '{name}' already exists{where}")
        problem_text = chosen.unselective_reason()
        if problem_text is not None:
            raise KnownErrorError(f"a known error {problem_text}")
        if not workaround.strip():
            raise KnownErrorError("a known error needs a workaround: what to do until it is fixed")
        for what, text in (("workaround", workaround), ("root cause", root_cause)):
            if len(text.strip()) > _TEXT_LIMIT:
                raise KnownErrorError(f"the {what} is too long (at most {_TEXT_LIMIT} characters)")
        if not created_by.strip():
            raise KnownErrorError("a known error needs created_by: who records it")
        if problem is not None and not _is_id(problem):
            raise KnownErrorError("problem must be a problem id (a whole number >= 1)")
        if not math.isfinite(now):
            raise KnownErrorError("now must be a finite time")
        entry = KnownError(
            name=name,
            matchers=chosen,
            workaround=workaround.strip(),
            root_cause=root_cause.strip(),
            problem=problem,
            created_by=created_by.strip(),
            created_at=now,
        )
        self._api[name] = entry
        self._cache.clear()
        return entry

    def remove(self, name: str) -> KnownError:
        """Remove an API-made entry and return it (the store deletes it)."""
        entry = self._api.pop(name, None)
        if entry is not None:
            self._cache.clear()
            return entry
        configured = self._config.get(name)
        if configured is not None:
            where = f" ({configured.where})" if configured.where is not None else ""
            raise KnownErrorError(
                f"known error '{name}' comes from the config{where}; remove it there"
            )
        raise KnownErrorError(f"no known error named '{name}'")

    def match(self, incident: Incident) -> KnownError | None:
        """Return the first entry that matches the incident, or None; answers are cached."""
        labels = route_labels(incident)
        key = (incident.fingerprint, tuple(labels.items()))
        found = self._cache.get(key)
        if found is None:
            found = self.match_labels(labels) or _MISS
            if len(self._cache) >= self.cache_size:
                del self._cache[next(iter(self._cache))]
            self._cache[key] = found
        return None if found is _MISS else found

    def match_labels(self, labels: Mapping[str, str]) -> KnownError | None:
        """Return the first entry whose matchers hold for these labels (no cache)."""
        for entry in (*self._config.values(), *self._api.values()):
            if entry.matchers.matches(labels):
                return entry
        return None


# ---------------------------------------------------------------------------------------------
# Parsing from YAML

_KEYS = ("name", "matchers", "workaround", "root_cause", "problem")


def parse_known_errors(spec: Any, where: Mark) -> list[KnownError]:
    """Parse a `known_errors:` section (a list of entries) in file order; empty: none."""
    if spec is None:
        return []
    return parse_named(spec, where, "'known_errors'", "known error", _known_error)


def _known_error(spec: Any, where: Mark, number: int) -> KnownError:
    data = expect_map(spec, where, "a known error")
    raw = data.get("name")
    label = f"known error '{raw}'" if isinstance(raw, str) and raw else f"known error {number}"

    def errors(at: Mark, message: str) -> SourceError:
        return SourceError(at, f"{label}: {message}")

    check_keys(data, _KEYS, "option", errors, required=("name", "matchers", "workaround"))

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    name = expect_str(data["name"], at("name"), "'name'", errors)
    if not _NAME.fullmatch(name):
        raise errors(at("name"), f"'name' must be {_NAME_RULE}")
    matchers = parse_matchers(data["matchers"], at("matchers"), errors)
    unselective = matchers.unselective_reason()
    if unselective is not None:
        raise errors(at("matchers"), f"'matchers' {unselective}")
    texts: dict[str, str] = {}
    for key in ("workaround", "root_cause"):
        text = expect_str(data.get(key, ""), at(key), f"'{key}'", errors).strip()
        if len(text) > _TEXT_LIMIT:
            raise errors(at(key), f"'{key}' is too long (at most {_TEXT_LIMIT} characters)")
        texts[key] = text
    if not texts["workaround"]:
        raise errors(at("workaround"), "'workaround' must say what to do until it is fixed")
    problem = None
    if data.get("problem") is not None:
        problem = expect_int(data["problem"], at("problem"), "'problem'", errors, minimum=1)
    return KnownError(
        name=name,
        matchers=matchers,
        workaround=texts["workaround"],
        root_cause=texts["root_cause"],
        problem=problem,
        where=where,
    )
