"""Turn one MQTT message into an Event; every message passes here, so choices are made once.

A payload that cannot be decoded never raises: it is counted by reason and becomes a
warning event that keeps its head, or is dropped, as the subscription says.
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from datetime import tzinfo
from typing import Any

from tocsin.model import Event
from tocsin.mqtt.settings import Subscription
from tocsin.parsers.jsonl import without_surrogates
from tocsin.parsers.timestamps import StampCache, epoch_of_number
from tocsin.rules.templates import Template

__all__ = [
    "HEAD_BYTES",
    "HOST_TEMPLATE",
    "INVALID_JSON",
    "INVALID_UTF8",
    "MESSAGE_TEMPLATE",
    "TIME_FIELD",
    "TOO_LARGE",
    "MessageMapper",
]

# Reasons counted in MessageMapper.errors; the first three fail the payload.
TOO_LARGE = "too large"
INVALID_JSON = "invalid json"
INVALID_UTF8 = "invalid utf-8"
HOST_TEMPLATE = "host template"
MESSAGE_TEMPLATE = "message template"
TIME_FIELD = "time field"  # present but neither an ISO 8601 text nor an epoch number
HEAD_BYTES = 200  # how much of an undecodable payload its event keeps

_decode = json.JSONDecoder().decode
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # the only source of lone surrogates


class MessageMapper:
    """Map the messages of one subscription to events; `errors` counts failures by reason.

    Templates see the event's fields as variables: `topic`, `payload` (the decoded value),
    `qos`, `retain` and the topic fields.
    """

    __slots__ = (
        "_decoder",
        "_depth",
        "_drop",
        "_host",
        "_level",
        "_limit",
        "_message",
        "_places",
        "_program",
        "_stamps",
        "_time_field",
        "errors",
        "subscription",
    )

    def __init__(self, subscription: Subscription, *, stamps_tz: tzinfo | None = None) -> None:
        self.subscription = subscription
        self.errors: Counter[str] = Counter()
        self._limit = subscription.max_payload
        self._decoder = subscription.decoder
        self._places = () if subscription.fields is None else subscription.fields.places
        self._depth = max((index + 1 for index, _ in self._places), default=0)
        self._host = subscription.host
        self._message = subscription.message
        self._program = subscription.program
        self._level = subscription.level
        self._time_field = subscription.time_field
        self._drop = subscription.on_error == "drop"
        self._stamps = StampCache(tz=stamps_tz)

    def map(  # noqa: PLR0917 - one call per message, in the order the message carries them
        self,
        topic: str,
        levels: list[str],
        payload: bytes,
        qos: int,
        retain: bool,
        received: float,
    ) -> Event | None:
        """Return the event of a message whose topic (split at '/' in `levels`) matched.

        None means the payload failed and the subscription drops such messages.
        """
        size = len(payload)
        decoder = self._decoder
        value: Any = None
        text = ""
        failure: tuple[str, str] | None = None
        if size > self._limit:
            failure = TOO_LARGE, f"{size} bytes, limit {self._limit}"
        else:
            try:
                if decoder == "raw":
                    value = base64.b64encode(payload).decode("ascii")
                else:
                    text = value = payload.decode()
                    if decoder == "json":
                        value = _decode(text)
                        if "\\u" in text and _SURROGATE_ESCAPE.search(text):
                            value = without_surrogates(value)
            except UnicodeDecodeError as exc:  # before ValueError: it is one
                failure = INVALID_UTF8, f"{exc.reason} at byte {exc.start}"
            except json.JSONDecodeError as exc:
                failure = INVALID_JSON, f"{exc.msg} at character {exc.pos}"
            except ValueError as exc:  # an integer of over 4,300 digits
                failure = INVALID_JSON, str(exc)
            except RecursionError:
                failure = INVALID_JSON, "nested too deeply"
        fields: dict[str, Any] = {"topic": topic, "qos": qos, "retain": retain}
        if len(levels) >= self._depth:  # shorter: a topic the router did not send here
            for index, name in self._places:
                fields[name] = levels[index]
        if failure is not None:
            return self._failed(failure, fields, payload, received)
        fields["payload"] = value
        if decoder == "raw":
            fields["payload_size"] = size
        message = self._message
        host = self._host
        return Event(
            time=received if self._time_field is None else self._time(value, received),
            received=received,
            source="mqtt",
            origin=topic,
            message=text if message is None else self._render(message, fields, MESSAGE_TEMPLATE),
            host="" if host is None else self._render(host, fields, HOST_TEMPLATE),
            program=self._program,
            level=self._level,
            fields=fields,
        )

    def _failed(
        self, failure: tuple[str, str], fields: dict[str, Any], payload: bytes, received: float
    ) -> Event | None:
        """Count a payload that cannot be decoded; return its warning event, or None to drop."""
        reason, detail = failure
        self.errors[reason] += 1
        if self._drop:
            return None
        fields["decode_error"] = reason
        fields["payload_size"] = len(payload)
        fields["payload_head"] = payload[:HEAD_BYTES].decode(errors="replace")
        return Event(
            time=received,
            received=received,
            source="mqtt",
            origin=fields["topic"],
            message=f"mqtt payload not decoded: {reason}: {detail}",
            host="" if self._host is None else self._render(self._host, fields, HOST_TEMPLATE),
            program=self._program,
            level="warning",
            fields=fields,
        )

    def _render(self, template: Template, variables: dict[str, Any], reason: str) -> str:
        """Render the host or message template; a failure on this message's data gives ""."""
        try:
            return template.render(variables)
        except (ValueError, RecursionError):  # TemplateRenderError is a ValueError
            self.errors[reason] += 1
            return ""

    def _time(self, value: Any, received: float) -> float:
        """Return the event time from the payload's time field, else when it was received."""
        for key in self._time_field or ():
            if not isinstance(value, dict):
                return received
            value = value.get(key)
        epoch: float | None = None
        if value is None:
            return received
        if isinstance(value, str):
            epoch = self._stamps.iso(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            epoch = epoch_of_number(value)
        if epoch is None:
            self.errors[TIME_FIELD] += 1
            return received
        return epoch
