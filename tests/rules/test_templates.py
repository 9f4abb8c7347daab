"""Templates: the fast path renders exactly like the sandbox, and event data stays data."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testkit import make_event
from tocsin.rules.templates import (
    TemplateCompileError,
    TemplateRenderError,
    compile_expression,
    compile_template,
)

VARS: dict[str, Any] = {
    "ip": "10.0.0.1",
    "n": 3,
    "none": None,
    "event": make_event("hello", host="web-1", fields={"a": {"b": "deep"}}),
    "fields": {"a": {"b": "deep"}},
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ ip }}", "10.0.0.1"),
        ("from {{ ip }} x{{n}}", "from 10.0.0.1 x3"),
        ("{{ event.host }}:{{ fields.a.b }}", "web-1:deep"),
        ("{{ missing }}|{{ event.missing }}|{{ fields.nope.deeper }}", "||"),
        ("plain text", "plain text"),
        ("{{ ip | upper }}", "10.0.0.1"),
        ("{{ n * 2 }}", "6"),
        ("{% if n > 2 %}big{% endif %}", "big"),
    ],
)
def test_render(source: str, expected: str) -> None:
    """Test that templates render like Jinja2 would."""
    assert compile_template(source).render(VARS) == expected


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_event_data_is_never_template_source(value: str) -> None:
    """Test that braces and Jinja syntax inside event data are printed, never evaluated."""
    rendered = compile_template("<{{ value }}>").render({"value": value})
    assert rendered == f"<{value}>"


def test_fast_path_matches_jinja() -> None:
    """Test that the no-Jinja fast path and the sandbox agree on the same template."""
    fast = compile_template("{{ event.host }}-{{ ip }}-{{ none }}")
    slow = compile_template("{{ event.host }}-{{ ip }}-{{ none }}{% if false %}{% endif %}")
    assert fast.render(VARS) == slow.render(VARS) == "web-1-10.0.0.1-None"


def test_sandbox_blocks_unsafe_attributes() -> None:
    """Test that attribute access that could escape the sandbox is refused and reported."""
    with pytest.raises(TemplateRenderError, match="is unsafe"):
        compile_template("{{ ''.__class__.__subclasses__() }}").render(VARS)
    assert compile_template("{{ event.__init__.__globals__ }}").render(VARS) == ""


def test_render_errors_are_raised_not_hidden() -> None:
    """Test that a template failing on the event's data raises instead of rendering ''."""
    with pytest.raises(TemplateRenderError, match="can only concatenate"):
        compile_template("{{ ip + 1 }}").render(VARS)
    with pytest.raises(TemplateRenderError):
        compile_expression("ip + 1 > 2")(VARS)


def test_mapping_items_win_over_dict_methods() -> None:
    """Test that `fields.items` is the field named items in both render paths."""
    variables = {"fields": {"items": "3 apples", "keys": "k"}}
    assert compile_template("{{ fields.items }}").render(variables) == "3 apples"
    assert (
        compile_template("{{ fields.items }}{% if true %}/{{ fields.keys }}{% endif %}").render(
            variables
        )
        == "3 apples/k"
    )


def test_syntax_error_is_reported_at_compile_time() -> None:
    """Test that a broken template fails when compiled, not per event."""
    with pytest.raises(TemplateCompileError):
        compile_template("{{ ip ")


def test_expression() -> None:
    """Test that `when` expressions evaluate to booleans and errors count as false."""
    assert compile_expression("ip.startswith('10.') and n >= 3")(VARS)
    assert not compile_expression("missing > 3")(VARS)
    assert not compile_expression("missing")(VARS)
    assert not compile_expression("event.__class__")(VARS)
