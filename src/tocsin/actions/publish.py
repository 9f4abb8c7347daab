"""The `publish` action: queue an MQTT message in the batch's outbox; a sender delivers it."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from tocsin.model import Outgoing
from tocsin.mqtt.topics import topic_problem
from tocsin.rules.schema import check_keys, expect_bool, expect_map, expect_str, kind_of
from tocsin.rules.templates import Template, jsonable
from tocsin.rules.types import ActionEnv, ActionOutput, CompileContext, Hit
from tocsin.yamlsrc import Mark, did_you_mean, key_mark, value_mark

__all__ = ["PublishAction", "PublishKind"]

_KEYS = ("broker", "topic", "payload", "qos", "retain")
_SURROGATE = re.compile("[\ud800-\udfff]")  # what undecodable input bytes decode to

# A compiled JSON payload: templates at the text leaves, YAML's own values elsewhere.
Node: TypeAlias = "Template | dict[str, Node] | list[Node] | int | float | bool | None"


def _valid_text(text: str) -> str:
    """Return text that encodes as UTF-8: a lone surrogate (undecodable input) becomes U+FFFD."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def _render(node: Node, variables: Mapping[str, Any]) -> Any:
    """Fill a compiled payload tree with this hit's values."""
    if isinstance(node, Template):
        return jsonable(node.native(variables))
    if isinstance(node, dict):
        return {key: _render(item, variables) for key, item in node.items()}
    if isinstance(node, list):
        return [_render(item, variables) for item in node]
    return node


@dataclass(frozen=True, slots=True)
class PublishAction:
    """Render topic and payload into an outbox row; the daemon commits it with the batch."""

    rule: str
    channel: str  # "mqtt:BROKER"
    topic: Template
    payload: Template | Node  # a Template: text sent as is; else a tree rendered to JSON
    qos: int
    retain: bool
    kind: str = "publish"
    notifies: bool = True  # held while the incident is muted

    def run(self, hit: Hit, env: ActionEnv) -> None:
        """Queue the message; a topic the data made unusable fails this action."""
        variables = hit.variables
        topic = _valid_text(self.topic.render(variables))
        problem = topic_problem(topic)
        if problem is not None:
            shown = topic if len(topic) <= 100 else f"{topic[:100]}..."
            raise ValueError(f"rendered topic {shown!r} {problem}")
        if isinstance(self.payload, Template):
            payload = self.payload.render(variables)
        else:
            tree = _render(self.payload, variables)
            payload = json.dumps(tree, ensure_ascii=False, separators=(",", ":"))
        body = {
            "topic": topic,
            "payload": _valid_text(payload),
            "qos": self.qos,
            "retain": self.retain,
        }
        env.outbox.append(Outgoing(self.channel, self.rule, body))
        if env.outputs is not None:
            env.outputs.append(
                ActionOutput(hit.time, self.rule, "publish", "publish", hit.key, title=topic)
            )

    def referenced_rules(self) -> tuple[str, ...]:
        """Refer to no other rule."""
        return ()


class PublishKind:
    """Compiles `publish: {broker, topic, payload, qos, retain}` against the known brokers."""

    name = "publish"

    def __init__(self, *, brokers: Collection[str] | None = None) -> None:
        # None: the config is not known here (`tocsin check` without one), accept any name.
        self._brokers = None if brokers is None else tuple(sorted(brokers))

    def compile(self, spec: Any, mark: Mark, ctx: CompileContext) -> PublishAction:
        """Validate every option; a static topic is checked now, a templated one per hit."""
        data = expect_map(spec, mark, "'publish'", ctx.error)
        check_keys(data, _KEYS, "publish option", ctx.error, required=("topic", "payload"))
        broker = self._broker(data, mark, ctx)
        where = value_mark(data, "topic", mark)
        topic = ctx.template(data["topic"], where, "topic")
        if not any(s in topic.source for s in ("{{", "{%", "{#")):
            problem = topic_problem(_valid_text(topic.source))
            if problem is not None:
                raise ctx.error(where, f"topic {topic.source!r} {problem}")
        qos = data.get("qos", 1)
        if type(qos) is not int or qos not in (0, 1):
            raise ctx.error(value_mark(data, "qos", mark), f"qos must be 0 or 1, not {qos!r}")
        retain = expect_bool(
            data.get("retain", False), value_mark(data, "retain", mark), "retain", ctx.error
        )
        spec_payload = data["payload"]
        where = value_mark(data, "payload", mark)
        payload: Template | Node
        if isinstance(spec_payload, str):
            payload = ctx.template(spec_payload, where, "payload")
        elif isinstance(spec_payload, Mapping | list):
            payload = _compile_node(spec_payload, where, ctx, "payload")
        else:
            raise ctx.error(
                where,
                "payload must be a mapping, a list or a text template, "
                f"not {kind_of(spec_payload)}",
            )
        return PublishAction(
            rule=ctx.rule_id,
            channel=f"mqtt:{broker}",
            topic=topic,
            payload=payload,
            qos=qos,
            retain=retain,
        )

    def _broker(self, data: Mapping[str, Any], mark: Mark, ctx: CompileContext) -> str:
        """Return the broker name; "" when none is given and the configured ones are unknown."""
        known = self._brokers
        if known is not None and not known:
            raise ctx.error(mark, "'publish' needs an mqtt broker, but none is configured")
        if "broker" not in data:
            if known is None:
                return ""
            if len(known) == 1:
                return known[0]
            raise ctx.error(
                mark, f"'publish' needs a broker when several are configured: {', '.join(known)}"
            )
        where = value_mark(data, "broker", mark)
        name = expect_str(data["broker"], where, "broker", ctx.error)
        if not name:
            raise ctx.error(where, "broker must not be empty")
        if known is not None and name not in known:
            raise ctx.error(
                where,
                f"unknown mqtt broker '{name}'{did_you_mean(name, known)}; "
                f"configured: {', '.join(known)}",
            )
        return name


def _compile_node(value: Any, where: Mark, ctx: CompileContext, path: str) -> Node:
    """Compile one payload value: text becomes a template, containers recurse, keys stay literal."""
    if isinstance(value, str):
        return ctx.template(value, where, path)
    if isinstance(value, Mapping):
        tree: dict[str, Node] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ctx.error(
                    key_mark(value, key, where),
                    f"{path} keys must be text; quote {key!s}",
                )
            tree[key] = _compile_node(item, value_mark(value, key, where), ctx, f"{path}.{key}")
        return tree
    if isinstance(value, list):
        return [
            _compile_node(item, value_mark(value, index, where), ctx, f"{path}[{index}]")
            for index, item in enumerate(value)
        ]
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise ctx.error(where, f"{path} value {value!s} has no JSON form; quote it")
