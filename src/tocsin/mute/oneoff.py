"""One-off maintenance windows made through the API: who, why, and the reminder before the end."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from tocsin.mute import LATEST
from tocsin.mute.matchers import Matchers, parse_matchers
from tocsin.mute.schedule import MaintenanceWindow
from tocsin.yamlsrc import Mark, SourceError

__all__ = ["OneOffWindow", "WindowError"]


class WindowError(ValueError):
    """A window that cannot be made, ended or loaded; the text is one sentence."""


@dataclass(frozen=True, slots=True)
class OneOffWindow:
    """An API-made window; `remind_before` seconds before its end, a reminder is logged once."""

    name: str
    matchers: Matchers
    start: float
    end: float
    created_by: str
    comment: str
    created_at: float
    remind_before: float | None = None
    reminded: bool = False
    ended_early_at: float | None = None

    @classmethod
    def create(
        cls,
        *,
        name: str,
        matchers: Matchers,
        start: float,
        end: float,
        created_by: str,
        comment: str,
        now: float,
        remind_before: float | None = None,
    ) -> OneOffWindow:
        """Validate a new window; a start in the past is moved to `now`, like silences."""
        if not name.strip() or len(name) > 200:
            raise WindowError("a window needs a name of 1 to 200 characters")
        if not all(math.isfinite(x) for x in (start, end)):
            raise WindowError("start and end must be finite times")
        if end <= max(start, now):
            raise WindowError("a window must end after it starts, and in the future")
        if end > LATEST:
            raise WindowError("a window must end before the year 10000")
        if not created_by.strip() or not comment.strip():
            raise WindowError("a window needs created_by (who) and a comment (why)")
        problem = matchers.unselective_reason()
        if problem is not None:
            raise WindowError(f"a window {problem}")
        if remind_before is not None and not 0 < remind_before < math.inf:
            raise WindowError("remind_before must be a positive duration")
        return cls(
            name=name.strip(),
            matchers=matchers,
            start=max(start, now),
            end=end,
            created_by=created_by.strip(),
            comment=comment.strip(),
            created_at=now,
            remind_before=remind_before,
        )

    @property
    def window(self) -> MaintenanceWindow | None:
        """The window the muter uses; None once it was ended before it began."""
        if self.end <= self.start:
            return None
        return MaintenanceWindow(
            name=self.name, matchers=self.matchers, start=self.start, end=self.end
        )

    def state(self, now: float) -> str:
        """pending, active or ended (a window ended before it began is ended too)."""
        if self.end <= self.start or now >= self.end:
            return "ended"
        return "pending" if now < self.start else "active"

    def end_now(self, now: float) -> OneOffWindow:
        """End early, kept for the audit trail."""
        if self.state(now) == "ended":
            raise WindowError(f"window {self.name} has already ended")
        # A pending window ends before it begins: end == start, so it never mutes.
        return replace(self, end=max(self.start, now), ended_early_at=now)

    def reminder_due(self, now: float) -> bool:
        """Whether the reminder should go out now (once, while the window is still open)."""
        if self.remind_before is None or self.reminded:
            return False
        return self.end - self.remind_before <= now < self.end

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record."""
        return {
            "name": self.name,
            "matchers": [str(m) for m in self.matchers],
            "start": self.start,
            "end": self.end,
            "created_by": self.created_by,
            "comment": self.comment,
            "created_at": self.created_at,
            "remind_before": self.remind_before,
            "reminded": self.reminded,
            "ended_early_at": self.ended_early_at,
        }

    @classmethod
    def from_dict(cls, data: Any) -> OneOffWindow:
        """Rebuild from `to_dict`; WindowError if the record is damaged."""
        try:
            return cls(
                name=str(data["name"]),
                matchers=parse_matchers(data["matchers"], Mark("store", 1, 1)),
                start=float(data["start"]),
                end=float(data["end"]),
                created_by=str(data["created_by"]),
                comment=str(data["comment"]),
                created_at=float(data["created_at"]),
                remind_before=None
                if data["remind_before"] is None
                else float(data["remind_before"]),
                reminded=bool(data["reminded"]),
                ended_early_at=None
                if data["ended_early_at"] is None
                else float(data["ended_early_at"]),
            )
        except (KeyError, TypeError, ValueError, SourceError) as exc:
            raise WindowError(f"damaged window record: {exc}") from None
