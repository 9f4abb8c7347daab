"""What every channel offers the receivers module: a receiver that renders, a sender that sends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tocsin.model import Outgoing
from tocsin.notify.notice import Notice
from tocsin.rules.schema import Errors

__all__ = [
    "Attempt",
    "DeliveryError",
    "Options",
    "Receiver",
    "Report",
    "Sender",
    "redact",
    "send_in_order",
]

# Told about every failed delivery: (the message, one sentence why, whether it is dropped).
Report = Callable[[Outgoing, str, bool], None]
# Sends one row: None when it was taken, else (one sentence why not, whether that may pass).
Attempt = Callable[[Outgoing], Awaitable[tuple[str, bool] | None]]


class DeliveryError(Exception):
    """The first message of a batch could not be sent now; the outbox retries it later."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Sender(Protocol):
    """Delivers one channel's outbox rows (the outbox `Send` contract) and owns its connections."""

    async def send(self, messages: Sequence[Outgoing]) -> int:
        """Deliver a prefix in order and return how many; raise when the first one failed."""
        ...

    async def close(self) -> None:
        """Release connections; `send` may open them again."""
        ...


class Receiver(Protocol):
    """A configured receiver: renders notices into rows of its outbox channel."""

    @property
    def name(self) -> str:
        """The name routes and escalation policies use."""
        ...

    @property
    def channel(self) -> str:
        """The outbox channel its rows go to ("slack:NAME", or "mqtt:BROKER")."""
        ...

    def render(self, notice: Notice) -> Outgoing:
        """Return the exact request for `notice`; never raises on odd data."""
        ...

    def sender(self, report: Report) -> Sender | None:
        """Return what sends this receiver's channel, or None when another part of tocsin does."""
        ...


@dataclass(frozen=True, slots=True)
class Options:
    """What a channel's option parser needs besides its own section."""

    base: Path  # relative secret and CA files are read from here
    brokers: frozenset[str]  # the configured MQTT brokers
    errors: Errors  # prefixes messages with the receiver they are about


def redact(text: str, secrets: Sequence[str]) -> str:
    """Replace every secret in `text` with ***, so reasons can be logged and stored."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


async def send_in_order(
    messages: Sequence[Outgoing], attempt: Attempt, report: Report, secrets: Sequence[str]
) -> int:
    """Deliver a prefix (the `Sender.send` contract): report every failure, drop a permanent
    one, stop at a transient one, and raise when that is the first row, so the outbox retries.
    """
    for index, message in enumerate(messages):
        problem = await attempt(message)
        if problem is None:
            continue
        reason, transient = problem
        reason = redact(reason, secrets)
        report(message, reason, not transient)
        if not transient:
            continue
        if index == 0:
            raise DeliveryError(reason)
        return index
    return len(messages)
