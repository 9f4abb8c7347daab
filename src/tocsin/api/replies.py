"""What every endpoint answers with: errors as `{"error": sentence}`, JSON bodies read once."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import structlog
from aiohttp import web

from tocsin.api.auth import Handler

__all__ = [
    "MAX_BODY",
    "RequestError",
    "error",
    "json_errors",
    "known_fields",
    "read_json",
    "text_field",
]

MAX_BODY = 64 * 1024  # request bodies are small JSON objects; the app refuses bigger ones

log = structlog.get_logger("tocsin")


class RequestError(Exception):
    """A request the API refuses with 400; the message says what to fix."""


def error(status: int, message: str) -> web.Response:
    """An error answer: the status and one sentence saying what to fix."""
    return web.json_response({"error": message}, status=status)


async def read_json(request: web.Request, *, empty: Any = None) -> tuple[Any, web.Response | None]:
    """The request's JSON body (`empty` when there is none and that is allowed), or the answer
    to give instead: 400 when it is not UTF-8 JSON, 413 when it is over MAX_BODY bytes."""
    try:
        raw = await request.read()  # the app's client_max_size is MAX_BODY
    except web.HTTPRequestEntityTooLarge:
        return None, error(413, f"the body must be at most {MAX_BODY // 1024} KiB")
    if not raw.strip() and empty is not None:
        return empty, None
    try:
        return json.loads(raw.decode("utf-8")), None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None, error(400, "the body must be JSON (UTF-8)")


def known_fields(body: Any, known: Sequence[str]) -> dict[str, Any]:
    """`body` as a JSON object with only `known` fields; RequestError names the others."""
    if not isinstance(body, dict):
        raise RequestError("send a JSON object")
    unknown = sorted(k for k in body if k not in known)
    if unknown:
        raise RequestError(f"unknown field(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return body


def text_field(
    body: dict[str, Any], key: str, *, most: int, least: int = 0, null: bool = False
) -> str | None:
    """The text at `key` (None when absent, or null where `null` allows it), else RequestError."""
    if key not in body or (null and body[key] is None):
        return None
    value = body[key]
    if not isinstance(value, str):
        raise RequestError(f"{key} must be text{' or null' if null else ''}")
    if not least <= len(value) <= most:
        raise RequestError(f"{key} must be {least} to {most} characters long, not {len(value)}")
    return value


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer unknown paths, wrong methods and failures as JSON errors too."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.reason
        if exc.status == 404:
            message = f"no such endpoint: {request.method} {request.path}"
        elif exc.status == 405:
            message = f"{request.method} is not allowed here; use {exc.headers.get('Allow', '')}"
        elif exc.status == 413:
            message = f"the body must be at most {MAX_BODY // 1024} KiB"
        answer = error(exc.status, message)
        if "Allow" in exc.headers:
            answer.headers["Allow"] = exc.headers["Allow"]
        return answer
    except Exception:  # one bug must not take the API's error format with it
        log.exception("api_failed", method=request.method, path=request.path)
        return error(500, "internal error; the daemon log has the details")
