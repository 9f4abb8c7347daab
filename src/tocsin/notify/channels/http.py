"""POST outbox rows as JSON, in order, over one shared aiohttp session per channel.

2xx is delivered. 408, 429, 5xx, connection failures and timeouts are transient: the row
stays and the outbox retries it. Any other answer is permanent: the row is dropped and
reported, since sending it again would get the same answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp

from tocsin.model import Outgoing
from tocsin.notify.channels.base import Report, send_in_order

__all__ = ["HttpSender"]

_EXCERPT = 200  # characters of a failed answer's body kept in the reason


def _transient(status: int) -> bool:
    """Whether an HTTP status may go away by itself (rate limits, server trouble)."""
    return status in (408, 429) or status >= 500


class HttpSender:
    """Send each row's `json` document to one URL; headers and secrets come from the config."""

    def __init__(
        self,
        *,
        url: str,
        shown: str,
        headers: Mapping[str, str],
        timeout: float,
        report: Report,
        secrets: Sequence[str] = (),
        prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self._url = url
        self._shown = shown  # what reasons call the endpoint: never a secret
        self._headers = dict(headers)
        self._timeout = timeout
        self._report = report
        self._secrets = tuple(secrets)
        self._prepare = prepare  # adds what the store must not keep (PagerDuty's routing key)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, messages: Sequence[Outgoing]) -> int:
        """POST them in order; stop at the first transient failure (raise if it is the first)."""
        return await send_in_order(messages, self._post, self._report, self._secrets)

    async def close(self) -> None:
        """Close the session (the next send opens a new one)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, message: Outgoing) -> tuple[str, bool] | None:
        """Send one row; return None when delivered, else (reason, transient)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"User-Agent": "tocsin"},
            )
        document: dict[str, Any] = dict(message.body["json"])
        if self._prepare is not None:
            document = self._prepare(document)
        headers = {**self._headers, "Idempotency-Key": str(message.body["key"])}
        try:
            async with self._session.post(
                self._url, json=document, headers=headers, allow_redirects=False
            ) as response:
                if 200 <= response.status < 300:
                    return None
                status = response.status
                text = await response.text(errors="replace")
        except TimeoutError:
            return f"no answer from {self._shown} within {self._timeout:g}s", True
        except aiohttp.ClientError as exc:
            return f"cannot reach {self._shown}: {exc or type(exc).__name__}", True
        except (ValueError, TypeError) as exc:  # a row this client cannot send, ever
            return f"cannot send to {self._shown}: {exc}", False
        excerpt = " ".join(text.split())[:_EXCERPT]
        reason = f"HTTP {status} from {self._shown}" + (f": {excerpt}" if excerpt else "")
        return reason, _transient(status)
