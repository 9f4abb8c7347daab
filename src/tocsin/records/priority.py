"""ITIL priority from impact x urgency, with the matrix configurable."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["DEFAULT_MATRIX", "PRIORITIES", "RATINGS", "PriorityMatrix"]

RATINGS: tuple[str, ...] = ("high", "medium", "low")  # for impact and urgency alike
PRIORITIES: tuple[str, ...] = ("P1", "P2", "P3", "P4", "P5")

# impact -> urgency -> priority: the common ITIL 3x3 table.
DEFAULT_MATRIX: Mapping[str, Mapping[str, str]] = {
    "high": {"high": "P1", "medium": "P2", "low": "P3"},
    "medium": {"high": "P2", "medium": "P3", "low": "P4"},
    "low": {"high": "P3", "medium": "P4", "low": "P5"},
}


class PriorityMatrix:
    """Looks up a priority; built from a complete, validated table."""

    __slots__ = ("_table",)

    def __init__(self, table: Mapping[str, Mapping[str, str]] = DEFAULT_MATRIX) -> None:
        missing = [f"{i}/{u}" for i in RATINGS for u in RATINGS if u not in table.get(i, {})]
        if missing:
            raise ValueError(
                f"priority matrix has no entry for impact/urgency {', '.join(missing)}"
            )
        bad = sorted({p for row in table.values() for p in row.values()} - set(PRIORITIES))
        if bad:
            raise ValueError(
                f"priority matrix uses unknown priorities {', '.join(bad)} (use P1..P5)"
            )
        self._table = {i: dict(table[i]) for i in RATINGS}

    def __call__(self, impact: str, urgency: str) -> str:
        """Return the priority for an impact and urgency (both high | medium | low)."""
        return self._table[impact][urgency]
