"""The ITIL priority matrix."""

from __future__ import annotations

import pytest

from tocsin.records.priority import DEFAULT_MATRIX, PriorityMatrix


@pytest.mark.parametrize(
    ("impact", "urgency", "priority"),
    [
        ("high", "high", "P1"),
        ("high", "medium", "P2"),
        ("medium", "high", "P2"),
        ("high", "low", "P3"),
        ("medium", "medium", "P3"),
        ("low", "high", "P3"),
        ("medium", "low", "P4"),
        ("low", "medium", "P4"),
        ("low", "low", "P5"),
    ],
)
def test_default_matrix(impact: str, urgency: str, priority: str) -> None:
    """Test that the default table is the common ITIL 3x3 matrix."""
    assert PriorityMatrix()(impact, urgency) == priority


def test_custom_matrix() -> None:
    """Test that a configured table overrides the default."""
    table = {i: dict(row) for i, row in DEFAULT_MATRIX.items()}
    table["low"]["high"] = "P2"
    assert PriorityMatrix(table)("low", "high") == "P2"


def test_incomplete_matrix_is_refused() -> None:
    """Test that a table with a missing cell or unknown priority is an error."""
    with pytest.raises(ValueError, match="no entry for impact/urgency low/low"):
        PriorityMatrix({**DEFAULT_MATRIX, "low": {"high": "P3", "medium": "P4"}})
    with pytest.raises(ValueError, match="unknown priorities P9"):
        PriorityMatrix({**DEFAULT_MATRIX, "low": {"high": "P3", "medium": "P4", "low": "P9"}})
