"""The `receivers:` section: named destinations, each on one channel, and the senders behind them.

A receiver renders a notice into one outbox row when the change behind it commits; a sender
per channel delivers the rows. MQTT receivers write to their broker's channel, which the MQTT
daemon sends, so they have no sender here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from tocsin.notify.channels.base import Options, Receiver, Report, Sender
from tocsin.notify.channels.email import parse_email
from tocsin.notify.channels.mqtt import parse_mqtt
from tocsin.notify.channels.pagerduty import parse_pagerduty
from tocsin.notify.channels.slack import parse_slack
from tocsin.notify.channels.webhook import parse_webhook
from tocsin.outbox import Send
from tocsin.rules.schema import check_keys, expect_map, expect_str, parse_named
from tocsin.yamlsrc import Mark, SourceError, value_mark

__all__ = ["KINDS", "Receiver", "Report", "Senders", "make_senders", "parse_receivers"]

# Each kind's section parser: (receiver name, section, where it is, shared options).
KINDS: Mapping[str, Callable[[str, Any, Mark, Options], Receiver]] = {
    "webhook": parse_webhook,
    "slack": parse_slack,
    "pagerduty": parse_pagerduty,
    "email": parse_email,
    "mqtt": parse_mqtt,
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def parse_receivers(
    spec: Any, where: Mark, *, base: Path, brokers: Collection[str]
) -> dict[str, Receiver]:
    """Parse `receivers:` (a list); secret files are read now, relative to `base`."""
    if spec is None:
        return {}
    known = frozenset(brokers)

    def one(item: Any, at: Mark, number: int) -> Receiver:
        return _receiver(item, at, number, base, known)

    return {r.name: r for r in parse_named(spec, where, "'receivers'", "receiver", one)}


def _receiver(spec: Any, where: Mark, number: int, base: Path, brokers: frozenset[str]) -> Receiver:
    data = expect_map(spec, where, "a receiver")
    raw = data.get("name")
    label = f"receiver '{raw}'" if isinstance(raw, str) and raw else f"receiver {number}"

    def errors(at: Mark, message: str) -> SourceError:
        return SourceError(at, f"{label}: {message}")

    check_keys(data, ("name", *KINDS), "receiver option", errors, required=("name",))
    name_at = value_mark(data, "name", where)
    name = expect_str(data["name"], name_at, "name", errors)
    if _NAME.fullmatch(name) is None:
        raise errors(
            name_at,
            "name must start with a letter or digit and have only letters, digits, "
            "'_', '.' and '-' (at most 100)",
        )
    kinds = [kind for kind in KINDS if kind in data]
    if len(kinds) != 1:
        given = f"got {' and '.join(kinds)}" if kinds else "got none"
        raise errors(where, f"a receiver needs exactly one of {', '.join(KINDS)} ({given})")
    kind = kinds[0]
    options = Options(base=base, brokers=brokers, errors=errors)
    return KINDS[kind](name, data[kind], value_mark(data, kind, where), options)


class Senders:
    """The senders of every non-MQTT receiver's channel; close them on shutdown or reload."""

    def __init__(self, senders: Mapping[str, Sender]) -> None:
        self._senders = dict(senders)
        self.sends: dict[str, Send] = {channel: s.send for channel, s in self._senders.items()}

    async def close(self) -> None:
        """Close every sender's connections."""
        for sender in self._senders.values():
            await sender.close()


def make_senders(receivers: Mapping[str, Receiver], *, report: Report) -> Senders:
    """Build one sender per channel; `report` hears of every failed delivery."""
    senders: dict[str, Sender] = {}
    for receiver in receivers.values():
        sender = receiver.sender(report)
        if sender is not None:
            senders[receiver.channel] = sender
    return Senders(senders)
