"""Option parsing the channels share: secrets from files, URLs, templates, timeouts."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

from tocsin.notify.channels.base import Options
from tocsin.notify.render import HtmlTemplate, TextTemplate
from tocsin.rules.schema import expect_map, expect_str, parse_duration, parse_path
from tocsin.rules.templates import TemplateCompileError, compile_template
from tocsin.yamlsrc import Mark, MarkedMap, key_mark, value_mark

__all__ = [
    "compile_option",
    "parse_html_template",
    "parse_secret",
    "parse_string_map",
    "parse_template",
    "parse_text",
    "parse_timeout",
    "parse_url",
    "read_secret",
    "shown_url",
]


def parse_text(data: MarkedMap, key: str, where: Mark, options: Options) -> str:
    """Return a non-empty text option."""
    at = value_mark(data, key, where)
    text = expect_str(data[key], at, key, options.errors).strip()
    if not text:
        raise options.errors(at, f"{key} must not be empty")
    return text


def read_secret(data: MarkedMap, key: str, where: Mark, options: Options) -> str:
    """Read a secret from the file option `key` (relative to the config), at load time."""
    at = value_mark(data, key, where)
    path = parse_path(options.base, expect_str(data[key], at, key, options.errors), at, key)
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise options.errors(at, f"{key} {path} is not UTF-8 text") from None
    except OSError as exc:
        raise options.errors(at, f"cannot read {key} {path}: {exc.strerror or exc}") from None
    if not secret:
        raise options.errors(at, f"{key} {path} is empty")
    return secret


def parse_secret(data: MarkedMap, key: str, where: Mark, options: Options) -> str | None:
    """Return the secret given as `key` or read from `key`_file (not both); None if neither."""
    file_key = f"{key}_file"
    if key in data and file_key in data:
        raise options.errors(key_mark(data, file_key, where), f"give {key} or {file_key}, not both")
    if file_key in data:
        return read_secret(data, file_key, where, options)
    if key in data:
        return parse_text(data, key, where, options)
    return None


def parse_url(value: Any, where: Mark, what: str, options: Options) -> str:
    """Return an http(s) URL with a host."""
    url = expect_str(value, where, what, options.errors).strip()
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # raises on a port that is not a number in range
    except ValueError as exc:
        raise options.errors(where, f"{what} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise options.errors(where, f"{what} must be an http:// or https:// URL with a host")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise options.errors(where, f"{what} must not contain spaces or control characters")
    return url


def shown_url(url: str) -> str:
    """Return a URL fit for logs: no user, password, query or fragment (they may hold tokens)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def compile_option(
    data: MarkedMap,
    key: str,
    where: Mark,
    options: Options,
    *,
    compile_with: Callable[[str], TextTemplate] = compile_template,
) -> TextTemplate:
    """Compile the template option `key`, which is given."""
    at = value_mark(data, key, where)
    source = expect_str(data[key], at, key, options.errors)
    try:
        return compile_with(source)
    except TemplateCompileError as exc:
        raise options.errors(at, f"{key} is not a valid template: {exc}") from None


def parse_template(
    data: MarkedMap,
    key: str,
    where: Mark,
    options: Options,
    default: TextTemplate,
    *,
    compile_with: Callable[[str], TextTemplate] = compile_template,
) -> TextTemplate:
    """Compile a template option, or return the default when it is not given."""
    if key not in data:
        return default
    return compile_option(data, key, where, options, compile_with=compile_with)


def parse_html_template(
    data: MarkedMap, key: str, where: Mark, options: Options, default: TextTemplate
) -> TextTemplate:
    """Compile an HTML template option (variables are escaped), or return the default."""
    return parse_template(data, key, where, options, default, compile_with=HtmlTemplate)


def parse_timeout(data: MarkedMap, where: Mark, options: Options, default: float = 10.0) -> float:
    """Return the `timeout` option in seconds: more than 0, at most 5 minutes."""
    at = value_mark(data, "timeout", where)
    seconds = parse_duration(data.get("timeout", default), at, "timeout", options.errors)
    if not 0 < seconds <= 300:
        raise options.errors(at, "timeout must be more than 0 and at most 5m")
    return seconds


def parse_string_map(value: Any, where: Mark, what: str, options: Options) -> dict[str, str]:
    """Return a mapping of text to text (numbers are taken as text)."""
    data = expect_map(value, where, what, options.errors)
    found: dict[str, str] = {}
    for key, item in data.items():
        if not isinstance(key, str) or not key:
            raise options.errors(key_mark(data, key, where), f"{what} keys must be text")
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise options.errors(value_mark(data, key, where), f"{what} '{key}' must be text")
        found[key] = str(item)
    return found
