"""What every endpoint answers with: errors as `{"error": sentence}`, JSON bodies read once."""

from __future__ import annotations

from typing import Any

from aiohttp import web

__all__ = ["error", "read_json"]


def error(status: int, message: str) -> web.Response:
    """An error answer: the status and one sentence saying what to fix."""
    return web.json_response({"error": message}, status=status)


async def read_json(request: web.Request) -> tuple[Any, web.Response | None]:
    """The request's JSON body, or the 400 answer to give when it is not JSON."""
    try:
        return await request.json(), None
    except ValueError:
        return None, error(400, "the body must be JSON")
