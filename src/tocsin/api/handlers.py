"""One way for the runs, problems and known-errors endpoints to read path ids, list queries
and bodies, and to turn a refusal (the request's or the desk's) into an answer, never a 500."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from tocsin.api.auth import Handler
from tocsin.api.incidents import IncidentError
from tocsin.api.replies import RequestError, error, known_fields, read_json
from tocsin.store.base import StoreError

__all__ = ["MAX_ID", "MAX_LIMIT", "ListQuery", "Work", "handler", "list_query", "record_id"]

MAX_ID = 2**63  # record ids are SQLite integers: signed 64-bit
MAX_LIMIT = 1000
_QUERY = ("state", "limit", "offset")

# Does what a request asks with its checked body ({} when none is read); returns the answer.
Work = Callable[[web.Request, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A checked list query: one state or all (None), and a page."""

    state: str | None
    limit: int
    offset: int


def record_id(request: web.Request, noun: str) -> int:
    """The path's {id}: RequestError unless a whole number, IncidentError(404) if never used."""
    text = request.match_info["id"]
    if not (text.isascii() and text.isdigit()):
        raise RequestError(f"a {noun} id is a whole number, like 42")
    if not 0 < int(text) < MAX_ID:
        raise IncidentError(404, f"no {noun} {text}")
    return int(text)


def list_query(query: MultiMapping[str], states: Sequence[str]) -> ListQuery:
    """Check `?state=&limit=&offset=`: unknown or repeated parameters are refused, not ignored."""
    keys = [key for key, _ in query.items()]
    unknown = sorted({k for k in keys if k not in _QUERY})
    if unknown:
        raise RequestError(
            f"unknown parameter(s): {', '.join(unknown)}; known: {', '.join(_QUERY)}"
        )
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise RequestError(f"give {', '.join(repeated)} once")
    state = query.get("state")
    if state is not None and state not in states:
        raise RequestError(f"state must be one of {', '.join(states)}")
    try:
        limit = int(query.get("limit", "100"))
        offset = int(query.get("offset", "0"))
    except ValueError:
        raise RequestError("limit and offset must be whole numbers") from None
    if not 1 <= limit <= MAX_LIMIT or not 0 <= offset < MAX_ID:
        raise RequestError(f"limit must be 1 to {MAX_LIMIT} and offset 0 or more")
    return ListQuery(state, limit, offset)


def handler(
    work: Work,
    *,
    fields: tuple[str, ...] | None = None,
    optional: bool = False,
    status: int = 200,
) -> Handler:
    """Serve `work`: read a JSON object with only `fields` first (none when `fields` is None;
    an empty body is {} when `optional`), and answer its result as JSON with `status`.

    RequestError answers 400, IncidentError its own status (the desks raise it), StoreError 503.
    """

    async def handle(request: web.Request) -> web.Response:
        raw: Any = {}
        if fields is not None:
            raw, problem = await read_json(request, empty={} if optional else None)
            if problem is not None:
                return problem
        try:
            body = known_fields(raw, fields) if fields is not None else {}
            answer = await work(request, body)
        except RequestError as exc:
            return error(400, str(exc))
        except IncidentError as exc:
            return error(exc.status, exc.message)
        except StoreError as exc:
            if request.method == "GET":
                return error(503, exc.reason)
            return error(503, f"the change was not saved: {exc.reason}")
        return web.json_response(answer, status=status)

    return handle
