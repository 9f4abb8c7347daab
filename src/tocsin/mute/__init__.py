"""Muting, Alertmanager-style: silences, maintenance windows and inhibition rules.

Everything here is pure: no I/O, no asyncio, and time is always passed in as epoch seconds,
so the engine decides when to ask and tests move time by hand. Labels are plain
`Mapping[str, str]`; a label that is missing reads as "".
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Literal

__all__ = ["LATEST", "MuteDecision", "MuteKind", "format_time"]

MuteKind = Literal["silence", "maintenance", "inhibit", "flapping", "storm"]

# The last second datetime can show (9999-12-31T23:59:59Z): silences and windows end before.
LATEST = 253_402_300_799.0


@dataclass(frozen=True, slots=True)
class MuteDecision:
    """Why an incident is muted, recorded on it so operators can see who hid what."""

    kind: MuteKind
    # The silence id, the maintenance window name, or the inhibiting incident's fingerprint.
    name: str
    # One sentence for people: "muted by silence 3f2a9c01 (disk swap) until 2026-...Z".
    reason: str
    # When the mute is known to end (epoch seconds); None while an inhibiting incident is open.
    until: float | None = None
    # What metrics count it under: the silence id, the window name, or "rule N" for inhibition
    # (not the inhibiting incident, which would make one time series per incident).
    counted_as: str = ""


def format_time(when: float) -> str:
    """Return epoch seconds as `2026-11-25T10:00:00Z`, for reasons people read (and the API)."""
    moment = datetime.datetime.fromtimestamp(min(max(when, 0.0), LATEST), datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
