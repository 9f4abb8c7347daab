"""Templates and `when` expressions: sandboxed Jinja2, compiled once, event data only as variables.

Templates made only of text and `{{ name }}` / `{{ a.b }}` placeholders skip Jinja2 at
render time (a dict lookup and a join); anything else renders through the sandbox.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import ChainableUndefined, TemplateError, Undefined, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

__all__ = [
    "Expression",
    "Sandbox",
    "Template",
    "TemplateCompileError",
    "TemplateRenderError",
    "compile_expression",
    "compile_template",
    "jsonable",
]


class Sandbox(SandboxedEnvironment):
    """The sandbox, reading `a.b` as an item first for mappings, as the fast path does.

    Without this, `{{ fields.items }}` would be the dict method rather than the field.
    Notification templates build their autoescaping environment from it too.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)


# ChainableUndefined: a missing name or path renders empty at any depth, like the fast path.
_ENV = Sandbox(autoescape=False, keep_trailing_newline=True, undefined=ChainableUndefined)

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*)\s*\}\}")
_JINJA_SYNTAX = re.compile(r"\{[{%#]|[}%#]\}")

Vars = Mapping[str, Any]


class TemplateCompileError(ValueError):
    """A template or expression that Jinja2 cannot compile; the message is Jinja2's."""


class TemplateRenderError(ValueError):
    """A template or expression failed on this event's data (e.g. text + number)."""


_MISSING = object()

# Names Jinja2 gives a meaning of its own (literals and globals): leave those to Jinja2.
_JINJA_NAMES = frozenset({"true", "false", "none", "True", "False", "None", *_ENV.globals})


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
    """A compiled template; `render(vars)` raises TemplateRenderError when the data breaks it."""

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
        """Render with `variables`; a failure on the data raises TemplateRenderError."""
        parts = self._parts
        if self._single is not None:  # "{{ name }}": the most common key template
            single = variables.get(self._single, _MISSING)
            return single if type(single) is str else _text(single)
        if parts is None:
            try:
                return str(self._jinja.render(variables))
            except Exception as exc:  # noqa: BLE001 - sandbox violation or bad data: caller counts
                raise TemplateRenderError(f"template {self.source!r}: {exc}") from None
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

    def native(self, variables: Vars) -> Any:
        """Return a lone `{{ path }}`'s value itself (None when missing), so JSON keeps types.

        Any other template renders to text, as `render` does.
        """
        parts = self._parts
        if parts is None or len(parts) != 1 or isinstance(parts[0], str):
            return self.render(variables)
        path = parts[0]
        value: Any = variables.get(path[0], _MISSING)
        for name in path[1:]:
            if value is _MISSING:
                break
            value = _lookup(value, name)
        return None if value is _MISSING else value


def _fast_parts(source: str) -> list[str | tuple[str, ...]] | None:
    """Split a template into text and variable paths, or None when it needs real Jinja2."""
    parts: list[str | tuple[str, ...]] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(source):
        parts.append(source[pos : m.start()])
        path = tuple(m.group(1).split("."))
        if any(p.startswith("_") for p in path) or path[0] in _JINJA_NAMES:
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
        """Evaluate; an undefined result is false, an error raises TemplateRenderError."""
        try:
            result = self._fn(**variables)
        except UndefinedError:
            return False  # `user in lists.admins` without a `user`: the condition cannot hold
        except Exception as exc:  # noqa: BLE001 - bad data or sandbox violation: caller counts
            raise TemplateRenderError(f"expression {self.source!r}: {exc}") from None
        return not isinstance(result, Undefined) and bool(result)


def compile_template(source: str) -> Template:
    """Compile a template once at load time."""
    return Template(source)


def compile_expression(source: str) -> Expression:
    """Compile a `when` expression once at load time."""
    return Expression(source)


def jsonable(value: Any) -> Any:
    """Return a template's native value as JSON can hold it: text for whatever JSON has no
    type for (NaN and infinities too)."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)
