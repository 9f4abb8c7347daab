"""Who may call what: bearer tokens with roles, checked per route by one Gate."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable

import structlog
from aiohttp import web

from tocsin.tokens import ApiToken, Role, token_digest

__all__ = ["Gate", "Handler", "author", "caller"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CALLER = web.RequestKey("tocsin_caller", ApiToken)

log = structlog.get_logger("tocsin")

# What is refused, per role needed, when no tokens are configured.
_OFF = {
    Role.VIEWER: "reads need a token (http.open_reads is false)",
    Role.OPERATOR: "changes are off",
    Role.ADMIN: "admin endpoints are off",
}


def caller(request: web.Request) -> ApiToken:
    """The token a guarded handler was called with (its principal is the actor)."""
    return request[_CALLER]


def author(principal: str, given: str) -> str:
    """Who made a silence or window: the token's principal, which a body cannot change;
    a different name given there (an Alertmanager client's createdBy) is kept beside it."""
    given = given.strip()
    return principal if given in ("", principal) else f"{principal} (as {given})"


class Gate:
    """Registers routes with the role each needs and refuses callers without it.

    Reads (role viewer) stay open without a token when `open_reads` is set, as they were
    before roles existed; /healthz, /metrics and the OpenAPI document are always open.
    """

    def __init__(self, tokens: Iterable[ApiToken], *, open_reads: bool = True) -> None:
        self.tokens = tuple(tokens)
        self.open_reads = open_reads
        # (method, path) -> the role a caller needs there; None: no token needed
        self.needs: dict[tuple[str, str], Role | None] = {}
        legacy = [t.principal for t in self.tokens if t.legacy]
        if legacy:
            log.warning(
                "api_tokens_deprecated",
                tokens=legacy,
                note="bare tokens in http.tokens_file are deprecated: `tocsin token new` "
                "makes a PRINCIPAL ROLE sha256:HEX line to replace each",
            )

    def route(
        self, app: web.Application, method: str, path: str, handler: Handler, role: Role | None
    ) -> None:
        """Serve `handler` at method+path for callers holding `role` (None: for everyone)."""
        if role is Role.VIEWER and self.open_reads:
            role = None
        self.needs[(method, path)] = role
        serve = handler if role is None else self._guard(role, handler)
        if method == "GET":
            app.router.add_get(path, serve)  # and HEAD, as before
        else:
            app.router.add_route(method, path, serve)

    def identify(self, offered: str) -> ApiToken | None:
        """The known token equal to `offered`, comparing with every one of them, always."""
        digest = token_digest(offered)
        found: ApiToken | None = None
        for token in self.tokens:  # no early exit: the time taken does not depend on the match
            if hmac.compare_digest(digest, token.digest):
                found = token
        return found

    def _guard(self, role: Role, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not self.tokens:
                return _deny(403, f"no API tokens are configured (http.tokens_file); {_OFF[role]}")
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not given.strip():
                return _deny(401, "send Authorization: Bearer <token>", 'Bearer realm="tocsin"')
            token = self.identify(given.strip())
            if token is None:
                return _deny(401, "unknown token", 'Bearer realm="tocsin", error="invalid_token"')
            if token.role < role:
                return _deny(
                    403,
                    f"this needs the {role} role; {token.principal} has {token.role}",
                    f'Bearer realm="tocsin", error="insufficient_scope", scope="{role}"',
                )
            request[_CALLER] = token
            return await handler(request)

        return guarded


def _deny(status: int, message: str, challenge: str | None = None) -> web.Response:
    headers = {"WWW-Authenticate": challenge} if challenge else None
    return web.json_response({"error": message}, status=status, headers=headers)
