"""The loader never crashes: any YAML an operator can write is either loaded or reported."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.actions.registry import ACTION_KINDS
from tocsin.rules.loader import load_rules
from tocsin.yamlsrc import SourceError

WORDS = st.sampled_from(
    [
        "id",
        "match",
        "actions",
        "key",
        "when",
        "continue",
        "enabled",
        "tags",
        "description",
        "regex",
        "contains",
        "in",
        "not_in",
        "gt",
        "exists",
        "any",
        "all",
        "not",
        "macro",
        "program",
        "message",
        "fields.x",
        "incident",
        "resolve",
        "drop",
        "log",
        "title",
        "impact",
        "urgency",
        "rule",
        "lists",
        "macros",
        "rules",
        "high",
        "low",
        "{{ x }}",
        "{{",
        "(?P<x>a+)",
        "(",
        "lists.a",
        "a",
        "",
    ]
)
SCALARS = st.one_of(WORDS, st.integers(-3, 3), st.booleans(), st.none(), st.text(max_size=8))
TREES: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(WORDS, inner, max_size=5)),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(TREES, st.fixed_dictionaries({"rules": st.lists(TREES, max_size=4)})))
def test_any_structure_is_loaded_or_reported(document: Any) -> None:
    """Test that random rule-shaped YAML never raises out of the loader; errors carry a line."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_text(yaml.safe_dump(document))
        ruleset = load_rules([path], kinds=ACTION_KINDS)
    for error in ruleset.errors:
        assert isinstance(error, SourceError)
        assert error.mark.line >= 1


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_loaded_or_reported(data: bytes) -> None:
    """Test that garbage files (bad UTF-8, broken YAML) are reported, never raised."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "garbage.yaml"
        path.write_bytes(data)
        ruleset = load_rules([path], kinds=ACTION_KINDS)
    assert all(isinstance(e, SourceError) for e in ruleset.errors)
