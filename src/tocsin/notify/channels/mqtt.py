"""MQTT receivers: notices become rows of the broker's `mqtt:BROKER` channel, which the MQTT
daemon already sends (body: topic, payload, qos, retain, as the `publish` action writes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tocsin.model import Outgoing
from tocsin.mqtt.topics import topic_problem
from tocsin.notify.channels.base import Options, Report, Sender
from tocsin.notify.channels.options import compile_option, parse_template
from tocsin.notify.notice import Notice
from tocsin.notify.render import TextTemplate, outgoing, tocsin_json, variables
from tocsin.rules.schema import check_keys, expect_bool, expect_map, expect_str
from tocsin.rules.templates import TemplateRenderError, compile_template
from tocsin.yamlsrc import Mark, did_you_mean, value_mark

__all__ = ["MqttReceiver", "parse_mqtt"]

_KEYS = ("broker", "topic", "qos", "retain", "payload")


def _json(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str)


@dataclass(frozen=True, slots=True)
class MqttReceiver:
    """Publishes notices to a topic; the default payload is the tocsin webhook JSON."""

    name: str
    broker: str
    topic: TextTemplate
    payload: TextTemplate | None = None  # None: the tocsin JSON
    qos: int = 1
    retain: bool = False

    @property
    def channel(self) -> str:
        """The broker's channel, shared with the `publish` action."""
        return f"mqtt:{self.broker}"

    @property
    def default_topic(self) -> str:
        """Where a notice goes when the topic template fails on its data."""
        return f"tocsin/notify/{self.name}"

    def render(self, notice: Notice) -> Outgoing:
        """Render topic and payload; on a template failure use the defaults and say why."""
        values = variables(notice)
        error = None
        try:
            topic = self.topic.render(values)
            problem = topic_problem(topic)
            if problem is not None:
                shown = topic if len(topic) <= 100 else f"{topic[:100]}..."
                raise TemplateRenderError(f"rendered topic {shown!r} {problem}")
            if self.payload is None:
                payload = _json(tocsin_json(notice))
            else:
                payload = self.payload.render(values)
        except TemplateRenderError as exc:
            error = str(exc)
            topic = self.default_topic
            payload = _json({**tocsin_json(notice), "template_error": error})
        body: dict[str, Any] = {
            "topic": topic,
            "payload": payload,
            "qos": self.qos,
            "retain": self.retain,
        }
        if error is not None:
            body["template_error"] = error
        return outgoing(self.channel, self.name, notice, body)

    def sender(self, report: Report) -> Sender | None:
        """The MQTT daemon sends the broker's channel."""
        return None


def parse_mqtt(name: str, spec: Any, where: Mark, options: Options) -> MqttReceiver:
    """Parse a receiver's `mqtt:` section against the configured brokers."""
    data = expect_map(spec, where, "mqtt", options.errors)
    check_keys(data, _KEYS, "mqtt option", options.errors)
    known = sorted(options.brokers)
    if not known:
        raise options.errors(where, "an mqtt receiver needs a broker under mqtt.brokers")
    if "broker" in data:
        at = value_mark(data, "broker", where)
        broker = expect_str(data["broker"], at, "broker", options.errors)
        if broker not in options.brokers:
            raise options.errors(
                at,
                f"unknown mqtt broker '{broker}'{did_you_mean(broker, known)}; "
                f"configured: {', '.join(known)}",
            )
    elif len(known) == 1:
        broker = known[0]
    else:
        raise options.errors(where, f"say which broker: one of {', '.join(known)}")
    default_topic = compile_template(f"tocsin/notify/{name}")
    topic = parse_template(data, "topic", where, options, default_topic)
    static = not any(s in topic.source for s in ("{{", "{%", "{#"))
    problem = topic_problem(topic.source) if static else None
    if problem is not None:
        raise options.errors(value_mark(data, "topic", where), f"topic {topic.source!r} {problem}")
    qos = data.get("qos", 1)
    if type(qos) is not int or qos not in (0, 1):
        raise options.errors(value_mark(data, "qos", where), "qos must be 0 or 1")
    return MqttReceiver(
        name=name,
        broker=broker,
        topic=topic,
        payload=compile_option(data, "payload", where, options) if "payload" in data else None,
        qos=qos,
        retain=expect_bool(
            data.get("retain", False), value_mark(data, "retain", where), "retain", options.errors
        ),
    )
