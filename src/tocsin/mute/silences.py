"""Silences: operator-made mutes with an end, kept after they expire for the audit trail.

A silence is active for `starts_at <= now < ends_at`: pending before, expired from `ends_at`
on. Expiring one early moves `ends_at` to that moment and records `expired_at`; nothing is
ever deleted, so "who muted this, when and why" can always be answered.
"""

from __future__ import annotations

import builtins
import math
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from tocsin.mute import LATEST, MuteDecision, format_time
from tocsin.mute.matchers import LabelMatcher, Matchers, parse_matchers
from tocsin.yamlsrc import Mark, SourceError

__all__ = ["STATES", "Silence", "SilenceBook", "SilenceError", "SilenceState"]

SilenceState = Literal["pending", "active", "expired"]
STATES: tuple[SilenceState, ...] = ("pending", "active", "expired")

_RECORD = Mark("<silence record>", 1, 1)


class SilenceError(ValueError):
    """A silence that cannot be created, expired or loaded; the text is one sentence."""


@dataclass(frozen=True, slots=True)
class Silence:
    """One silence; replaced (never mutated) when it is expired early."""

    id: str
    matchers: Matchers
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float
    expired_at: float | None = None

    def state(self, now: float) -> SilenceState:
        """Return pending before starts_at, active until ends_at (exclusive), then expired."""
        if now < self.starts_at:
            return "pending"
        if now < self.ends_at:
            return "active"
        return "expired"

    def is_active(self, now: float) -> bool:
        """Tell whether the silence mutes matching incidents at `now`."""
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Test the matchers only, whatever the time."""
        return self.matchers.matches(labels)

    def mute_decision(self) -> MuteDecision:
        """Describe this silence as the reason an incident is muted."""
        return MuteDecision(
            kind="silence",
            name=self.id,
            reason=f"muted by silence {self.id[:8]} ({self.comment}, by {self.created_by}) "
            f"until {format_time(self.ends_at)}",
            until=self.ends_at,
            counted_as=self.id,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready record; matchers in their canonical text form."""
        return {
            "id": self.id,
            "matchers": [str(m) for m in self.matchers],
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "created_by": self.created_by,
            "comment": self.comment,
            "created_at": self.created_at,
            "expired_at": self.expired_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Silence:
        """Rebuild a silence saved by to_dict; raise SilenceError if the record is damaged."""
        if not isinstance(data, Mapping):
            raise SilenceError("a silence record must be a mapping")
        missing = [k for k in _FIELDS if k not in data]
        if missing:
            raise SilenceError(f"silence record lacks {', '.join(missing)}")
        unknown = sorted(str(k) for k in data if k not in _FIELDS)
        if unknown:
            raise SilenceError(f"silence record has unknown fields {', '.join(unknown)}")
        for key in ("id", "created_by", "comment"):
            if not isinstance(data[key], str):
                raise SilenceError(f"silence record field '{key}' must be text")
        for key in ("starts_at", "ends_at", "created_at", "expired_at"):
            value = data[key]
            if value is None and key == "expired_at":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SilenceError(f"silence record field '{key}' must be a number")
            if not math.isfinite(value):
                raise SilenceError(f"silence record field '{key}' must be finite")
        try:
            matchers = parse_matchers(data["matchers"], _RECORD)
        except SourceError as exc:
            raise SilenceError(f"silence record {data['id']}: {exc.message}") from None
        expired_at = data["expired_at"]
        return cls(
            id=data["id"],
            matchers=matchers,
            starts_at=float(data["starts_at"]),
            ends_at=float(data["ends_at"]),
            created_by=data["created_by"],
            comment=data["comment"],
            created_at=float(data["created_at"]),
            expired_at=None if expired_at is None else float(expired_at),
        )


_FIELDS = (
    "id",
    "matchers",
    "starts_at",
    "ends_at",
    "created_by",
    "comment",
    "created_at",
    "expired_at",
)


def _new_id() -> str:
    return uuid.uuid4().hex


class SilenceBook:
    """Every silence ever made, in memory; each mutation returns the silence to persist."""

    __slots__ = ("_new_id", "_silences")

    def __init__(
        self,
        *,
        silences: Iterable[Silence] = (),
        new_id: Callable[[], str] = _new_id,
    ) -> None:
        self._silences: dict[str, Silence] = {s.id: s for s in silences}
        self._new_id = new_id

    def __len__(self) -> int:
        return len(self._silences)

    def add(
        self,
        *,
        matchers: Matchers | Iterable[LabelMatcher],
        starts_at: float,
        ends_at: float,
        created_by: str,
        comment: str,
        now: float,
    ) -> Silence:
        """Validate and store a new silence; a start in the past is moved to `now`.

        Moving the start keeps the audit trail honest: nothing was muted before the silence
        existed. Raises SilenceError with a sentence an API can return as is.
        """
        chosen = matchers if isinstance(matchers, Matchers) else Matchers(tuple(matchers))
        for what, value in (("starts_at", starts_at), ("ends_at", ends_at), ("now", now)):
            if not math.isfinite(value):
                raise SilenceError(f"{what} must be a finite time")
        if ends_at <= starts_at:
            raise SilenceError("a silence must end after it starts")
        if ends_at > LATEST:
            raise SilenceError("a silence must end before the year 10000")
        if ends_at <= now:
            raise SilenceError("a silence must end in the future")
        if not created_by.strip():
            raise SilenceError("a silence needs created_by: who is muting")
        if not comment.strip():
            raise SilenceError("a silence needs a comment: why it is muting")
        problem = chosen.unselective_reason()
        if problem is not None:
            raise SilenceError(f"a silence {problem}")
        silence_id = self._new_id()
        if silence_id in self._silences:
            raise SilenceError(f"silence id {silence_id} is already taken")
        silence = Silence(
            id=silence_id,
            matchers=chosen,
            starts_at=max(starts_at, now),
            ends_at=ends_at,
            created_by=created_by.strip(),
            comment=comment.strip(),
            created_at=now,
        )
        self._silences[silence_id] = silence
        return silence

    def expire(self, silence_id: str, *, now: float) -> Silence:
        """End a silence at `now` (a pending one never starts); keep it for the audit trail."""
        silence = self._silences.get(silence_id)
        if silence is None:
            raise SilenceError(f"no silence with id {silence_id}")
        if silence.state(now) == "expired":
            raise SilenceError(f"silence {silence_id} has already expired")
        ended = replace(silence, starts_at=min(silence.starts_at, now), ends_at=now, expired_at=now)
        self._silences[silence_id] = ended
        return ended

    def restore(self, silence: Silence) -> None:
        """Put in a silence that was made (and saved) elsewhere, replacing one with its id."""
        self._silences[silence.id] = silence

    def get(self, silence_id: str) -> Silence | None:
        """Return the silence with this id, whatever its state."""
        return self._silences.get(silence_id)

    def list(self, *, state: SilenceState | None = None, now: float) -> builtins.list[Silence]:
        """Return silences (only those in `state` when given), oldest first."""
        chosen = (
            self._silences.values()
            if state is None
            else (s for s in self._silences.values() if s.state(now) == state)
        )
        return sorted(chosen, key=lambda s: (s.created_at, s.id))

    def matching(self, labels: Mapping[str, str], *, now: float) -> builtins.list[Silence]:
        """Return the active silences that match, the one that lasts longest first."""
        found = [s for s in self._silences.values() if s.is_active(now) and s.matches(labels)]
        found.sort(key=lambda s: (-s.ends_at, s.id))
        return found

    def next_change(self, now: float) -> float | None:
        """Return when a silence next starts or ends (after `now`), for the engine's timer."""
        soonest: float | None = None
        for silence in self._silences.values():
            for moment in (silence.starts_at, silence.ends_at):
                if moment > now and (soonest is None or moment < soonest):
                    soonest = moment
        return soonest
