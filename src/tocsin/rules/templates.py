"""Templates and `when` expressions: sandboxed Jinja2, compiled once, event data only as variables.

Templates made only of text and `{{ name }}` / `{{ a.b }}` placeholders skip Jinja2 at
render time (a dict lookup and a join); anything else renders through the sandbox.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import TemplateError, Undefined
from jinja2.sandbox import SandboxedEnvironment

__all__ = [
    "Expression",
    "Template",
    "TemplateCompileError",
    "compile_expression",
    "compile_template",
]

_ENV = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*)\s*\}\}")
_JINJA_SYNTAX = re.compile(r"\{[{%#]|[}%#]\}")

Vars = Mapping[str, Any]


class TemplateCompileError(ValueError):
    """A template or expression that Jinja2 cannot compile; the message is Jinja2's."""


_MISSING = object()


def _lookup(value: Any, name: str) -> Any:
    """Resolve one dotted step the way Jinja2 does for plain data: item first for mappings."""
    if isinstance(value, Mapping):
        found = value.get(name, _MISSING)
        if found is not _MISSING:
            return found
    return getattr(value, name, _MISSING)


def _text(value: Any) -> str:
    """Render one value as Jinja2 would (undefined -> empty)."""
    if value is _MISSING or isinstance(value, Undefined):
        return ""
    return value if isinstance(value, str) else str(value)


class Template:
    """A compiled template; `render(vars)` never raises for event data."""

    __slots__ = ("_jinja", "_parts", "_single", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._jinja: Any = None
        self._parts: list[str | tuple[str, ...]] | None = _fast_parts(source)
        single = self._parts[0] if self._parts is not None and len(self._parts) == 1 else None
        self._single = single[0] if isinstance(single, tuple) and len(single) == 1 else None
        if self._parts is None:
            try:
                self._jinja = _ENV.from_string(source)
            except TemplateError as exc:
                raise TemplateCompileError(str(exc)) from None

    def render(self, variables: Vars) -> str:
        """Render with `variables`; a runtime error yields '' rather than stopping the rule."""
        parts = self._parts
        if self._single is not None:  # "{{ name }}": the most common key template
            single = variables.get(self._single, _MISSING)
            return single if type(single) is str else _text(single)
        if parts is None:
            try:
                return str(self._jinja.render(variables))
            except Exception:  # noqa: BLE001 - a sandbox violation or bad data must not stop the engine
                return ""
        out: list[str] = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value: Any = variables.get(part[0], _MISSING)
            for name in part[1:]:
                if value is _MISSING:
                    break
                value = _lookup(value, name)
            out.append(_text(value))
        return "".join(out)


def _fast_parts(source: str) -> list[str | tuple[str, ...]] | None:
    """Split a template into text and variable paths, or None when it needs real Jinja2."""
    parts: list[str | tuple[str, ...]] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(source):
        parts.append(source[pos : m.start()])
        path = tuple(m.group(1).split("."))
        if any(p.startswith("_") for p in path) or path[0] in {"true", "false", "none"}:
            return None
        parts.append(path)
        pos = m.end()
    parts.append(source[pos:])
    if any(isinstance(p, str) and _JINJA_SYNTAX.search(p) for p in parts):
        return None
    return [p for p in parts if p != ""]


class Expression:
    """A compiled sandboxed boolean expression (a rule's `when`)."""

    __slots__ = ("_fn", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._fn: Callable[..., Any] = _ENV.compile_expression(source)
        except TemplateError as exc:
            raise TemplateCompileError(str(exc)) from None

    def __call__(self, variables: Vars) -> bool:
        """Evaluate; errors and undefined results count as false."""
        try:
            result = self._fn(**variables)
        except Exception:  # noqa: BLE001 - event data must never stop the engine
            return False
        return not isinstance(result, Undefined) and bool(result)


def compile_template(source: str) -> Template:
    """Compile a template once at load time."""
    return Template(source)


def compile_expression(source: str) -> Expression:
    """Compile a `when` expression once at load time."""
    return Expression(source)
