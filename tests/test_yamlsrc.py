"""YAML loading: positions, duplicates, merge keys and YAML 1.2 booleans."""

from __future__ import annotations

import pytest
import yaml

from tocsin.yamlsrc import SourceError, load_yaml

MERGES = """\
base: &b {level: low, x: 1}
mid: &m {<<: *b, level: high}
rule: {<<: *m}
a: &a {k: a}
bb: &bb {k: b, j: 2}
both: {<<: [*a, *bb]}
over: {<<: *b, x: 5}
"""


def test_merge_keys_follow_the_yaml_spec() -> None:
    """Test that nested and list merges resolve as PyYAML's own loader resolves them."""
    assert load_yaml(MERGES, name="m.yaml") == yaml.safe_load(MERGES)


def test_positions_are_one_based() -> None:
    """Test that keys and values remember line and column as editors count them."""
    data = load_yaml("a: 1\nrules:\n  - id: x\n", name="f.yaml")
    assert str(data.key_marks["rules"]) == "f.yaml:2:1"
    assert str(data["rules"].item_marks[0]) == "f.yaml:3:5"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\na: 2\n", "y.yaml:2:1: duplicate key 'a' (first given at line 1)"),
        ("x: &s 3\ny: {<<: *s}\n", "y.yaml:1:4: '<<' merges a mapping or a list of mappings"),
        ("a: [1\n", "y.yaml:2:1: invalid YAML: did not find expected ',' or ']'"),
    ],
)
def test_errors(text: str, message: str) -> None:
    """Test that YAML problems become SourceError with file:line:col."""
    with pytest.raises(SourceError) as caught:
        load_yaml(text, name="y.yaml")
    assert str(caught.value) == message


def test_only_true_and_false_are_booleans() -> None:
    """Test that on/off/yes/no stay words (YAML 1.2), true/false stay booleans."""
    assert load_yaml("a: off\nb: yes\nc: true\nd: False\n", name="b") == {
        "a": "off",
        "b": "yes",
        "c": True,
        "d": False,
    }
