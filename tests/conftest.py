"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tocsin.actions.registry import ACTION_KINDS
from tocsin.engine.clock import ManualClock
from tocsin.engine.pipeline import Engine
from tocsin.records.incidents import IncidentBook
from tocsin.records.priority import PriorityMatrix
from tocsin.rules.loader import RuleSet, load_rules


@pytest.fixture
def clock() -> ManualClock:
    """Return a virtual clock starting at 2026-11-25T00:00:00Z."""
    return ManualClock(1_795_564_800.0)


@pytest.fixture
def load_text(tmp_path: Path) -> Callable[..., RuleSet]:
    """Return a function that writes rule YAML to a file and loads it."""

    def load(text: str, name: str = "rules.yaml") -> RuleSet:
        path = tmp_path / name
        path.write_text(text)
        return load_rules([path], kinds=ACTION_KINDS)

    return load


@pytest.fixture
def engine_for(load_text: Callable[..., RuleSet], clock: ManualClock) -> Callable[..., Engine]:
    """Return a function that builds a recording engine from rule YAML (which must be valid)."""

    def build(text: str, **options: Any) -> Engine:
        ruleset = load_text(text)
        assert not ruleset.errors, [str(e) for e in ruleset.errors]
        return Engine(
            rules=ruleset.rules,
            lists=ruleset.lists,
            book=IncidentBook(priorities=PriorityMatrix()),
            clock=clock,
            record_outputs=True,
            **options,
        )

    return build
