"""Bearer tokens for the endpoints that change state; reads stay open on localhost."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

__all__ = ["Handler", "require_token"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def require_token(tokens: Iterable[str], handler: Handler) -> Handler:
    """Wrap a handler so it runs only for `Authorization: Bearer <a known token>`."""
    known = tuple(t.encode() for t in tokens)

    async def guarded(request: web.Request) -> web.StreamResponse:
        if not known:
            return _deny(403, "no API tokens are configured (http.tokens_file); changes are off")
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            return _deny(401, "send Authorization: Bearer <token>")
        offered = given.strip().encode("utf-8", "surrogateescape")  # odd bytes: just no match
        # Compare with every token, always: the time taken says nothing about which matched.
        matched = [hmac.compare_digest(offered, token) for token in known]
        if not any(matched):
            return _deny(401, "unknown token")
        return await handler(request)

    return guarded


def _deny(status: int, message: str) -> web.Response:
    return web.json_response(
        {"error": message}, status=status, headers={"WWW-Authenticate": "Bearer"}
    )
