"""Turn a runbook and one hit's variables into plain, JSON-able calls; nothing runs here.

Every argv element renders from its own template into exactly one argv string, whatever the
data holds (spaces, quotes, `;`, `$()`, newlines, a leading `-`): no shell ever splits or reads
it. A NUL cannot reach a program, a header or a topic, so data carrying one fails the whole run
before anything runs, as does a line break in a header or an unusable topic. Undecodable input
(lone surrogates) becomes U+FFFD, so every string is valid UTF-8. URL placeholder values are
percent-encoded by the URL template itself (settings.UrlTemplate).
"""

from __future__ import annotations

import json
import math
import re
import shlex
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

from tocsin.mqtt.topics import topic_problem
from tocsin.rules.templates import Template, TemplateRenderError, jsonable
from tocsin.runbooks.settings import (
    ExecStep,
    HttpStep,
    JsonBody,
    Node,
    Runbook,
    Step,
)

__all__ = [
    "FORMAT",
    "REDACTED",
    "RenderError",
    "RenderedExec",
    "RenderedHttp",
    "RenderedPublish",
    "RenderedRun",
    "RenderedStep",
    "render_run",
]

FORMAT = 1  # the version of RenderedRun.to_dict's layout; from_dict refuses others
_SURROGATE = re.compile("[\ud800-\udfff]")  # what undecodable input bytes decode to
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SHOWN = 200  # characters of one value that describe() shows


class RenderError(ValueError):
    """This run cannot be rendered from this data (the message says why); none of it runs."""


@dataclass(frozen=True, slots=True)
class RenderedExec:
    """A program to start: argv[0] is the configured absolute path, one string per element."""

    argv: tuple[str, ...]
    cwd: str
    env: tuple[str, ...]  # names passed on from tocsin's environment when set there
    set_env: Mapping[str, str]
    user: str | None
    timeout: float


@dataclass(frozen=True, slots=True)
class RenderedHttp:
    """A request to send; success is a status in `expect` (empty: any 2xx)."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: str | None
    expect: tuple[int, ...]
    timeout: float


@dataclass(frozen=True, slots=True)
class RenderedPublish:
    """An MQTT message to queue on `broker`."""

    broker: str
    topic: str
    payload: str
    qos: int
    retain: bool

    def body(self) -> dict[str, Any]:
        """Return the outbox row body, the same shape the `publish` rule action queues."""
        return {
            "topic": self.topic,
            "payload": self.payload,
            "qos": self.qos,
            "retain": self.retain,
        }


RenderedStep: TypeAlias = RenderedExec | RenderedHttp | RenderedPublish


@dataclass(frozen=True, slots=True)
class RenderedRun:
    """Everything a run needs, rendered: it can be stored, shown, and run after a restart."""

    runbook: str
    steps: tuple[RenderedStep, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the run as JSON-ready data (from_dict reads it back)."""
        return {
            "format": FORMAT,
            "runbook": self.runbook,
            "steps": [_step_dict(step) for step in self.steps],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RenderedRun:
        """Read what to_dict wrote; raise ValueError when it is not that."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ValueError(f"not a rendered run of format {FORMAT}")
        steps = data.get("steps")
        if not isinstance(steps, list) or not steps:
            raise ValueError("a rendered run needs a list of steps")
        return cls(runbook=_get(data, "runbook", str), steps=tuple(_read_step(s) for s in steps))

    def redacted(self) -> RenderedRun:
        """Return the run without what may hold secrets (header and set_env values, URL
        credentials and queries, HTTP bodies): what a finished run keeps in the store."""
        return replace(self, steps=tuple(_redacted(step) for step in self.steps))

    def describe(self) -> list[str]:
        """Return one line per step for people (timelines, dry runs): no header values, no query."""
        return [_describe(step) for step in self.steps]


def render_run(runbook: Runbook, variables: Mapping[str, Any]) -> RenderedRun:
    """Render every step; raise RenderError naming the step when the data makes one unusable."""
    steps: list[RenderedStep] = []
    for number, step in enumerate(runbook.steps, 1):
        try:
            steps.append(_render_step(step, variables))
        except (RenderError, TemplateRenderError) as exc:
            kind = _kind(step)
            raise RenderError(f"runbook '{runbook.name}': step {number} ({kind}): {exc}") from None
    return RenderedRun(runbook=runbook.name, steps=tuple(steps))


def _kind(step: Step) -> str:
    if isinstance(step, ExecStep):
        return "exec"
    if isinstance(step, HttpStep):
        return "http"
    return "publish"


def _valid_text(text: str) -> str:
    """Return text that encodes as UTF-8: a lone surrogate (undecodable input) becomes U+FFFD."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def _no_nul(text: str, what: str) -> str:
    if "\0" in text:
        raise RenderError(f"{what} would contain a NUL byte, which no program can receive")
    return _valid_text(text)


def _argument(template: Template, index: int, variables: Mapping[str, Any]) -> str:
    """One argv element; a leading dash may come from the config, never from event data
    (it would be an option to the program: `--host=elsewhere`)."""
    text = _no_nul(template.render(variables), f"argv[{index}]")
    if text.startswith("-") and not template.source.startswith("-"):
        raise RenderError(
            f"argv[{index}] would start with '-' from event data ({_shown(text)}), which the "
            "program would read as an option; put a literal prefix or a `--` argument before it"
        )
    return text


def _render_step(step: Step, variables: Mapping[str, Any]) -> RenderedStep:
    if isinstance(step, ExecStep):
        args = (_argument(arg, index, variables) for index, arg in enumerate(step.args, 1))
        return RenderedExec(
            argv=(step.program, *args),
            cwd=step.cwd,
            env=step.env,
            set_env={
                name: _no_nul(value.render(variables), f"set_env {name}")
                for name, value in step.set_env.items()
            },
            user=step.user,
            timeout=step.timeout,
        )
    if isinstance(step, HttpStep):
        headers = {name: _header(name, value, variables) for name, value in step.headers.items()}
        body = None if step.body is None else _body(step.body, variables)
        if isinstance(step.body, JsonBody) and not any(
            name.lower() == "content-type" for name in headers
        ):
            headers["Content-Type"] = "application/json"
        return RenderedHttp(
            method=step.method,
            url=_valid_text(step.url.render(variables)),
            headers=headers,
            body=body,
            expect=step.expect,
            timeout=step.timeout,
        )
    topic = _valid_text(step.topic.render(variables))
    problem = topic_problem(topic)
    if problem is not None:
        raise RenderError(f"rendered topic {_shown(topic)} {problem}")
    return RenderedPublish(
        broker=step.broker,
        topic=topic,
        payload=_body(step.payload, variables),
        qos=step.qos,
        retain=step.retain,
    )


def _header(name: str, template: Template, variables: Mapping[str, Any]) -> str:
    value = _valid_text(template.render(variables))
    if any(c in value for c in "\r\n\0"):
        raise RenderError(f"header {name} would contain a line break or NUL")
    return value


def _body(body: Template | JsonBody, variables: Mapping[str, Any]) -> str:
    if isinstance(body, Template):
        return _valid_text(body.render(variables))
    document = _fill(body.tree, variables)
    return _valid_text(json.dumps(document, ensure_ascii=False, separators=(",", ":")))


def _fill(node: Node, variables: Mapping[str, Any]) -> Any:
    """Fill a JSON document's templates; a lone `{{ path }}` keeps its value's JSON type."""
    if isinstance(node, Template):
        return jsonable(node.native(variables))
    if isinstance(node, dict):
        return {key: _fill(item, variables) for key, item in node.items()}
    if isinstance(node, list):
        return [_fill(item, variables) for item in node]
    return node


def _step_dict(step: RenderedStep) -> dict[str, Any]:
    if isinstance(step, RenderedExec):
        return {
            "kind": "exec",
            "argv": list(step.argv),
            "cwd": step.cwd,
            "env": list(step.env),
            "set_env": dict(step.set_env),
            "user": step.user,
            "timeout": step.timeout,
        }
    if isinstance(step, RenderedHttp):
        return {
            "kind": "http",
            "method": step.method,
            "url": step.url,
            "headers": dict(step.headers),
            "body": step.body,
            "expect": list(step.expect),
            "timeout": step.timeout,
        }
    return {"kind": "publish", **step.body(), "broker": step.broker}


def _get(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """Return data[key] if it is of `kind` (bool is never a number here), else raise."""
    value = data.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"rendered step: {key!r} is missing or of the wrong type")
    return value


def _texts(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    items = _get(data, key, list)
    if not all(isinstance(item, str) for item in items):
        raise ValueError(f"rendered step: {key!r} must be a list of text")
    return tuple(items)


def _text_map(data: Mapping[str, Any], key: str) -> dict[str, str]:
    items = _get(data, key, dict)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in items.items()):
        raise ValueError(f"rendered step: {key!r} must map text to text")
    return dict(items)


def _seconds(data: Mapping[str, Any], key: str) -> float:
    value = float(_get(data, key, (int, float)))
    if not 0 < value < math.inf:
        raise ValueError(f"rendered step: {key!r} must be a positive number of seconds")
    return value


def _read_step(data: Any) -> RenderedStep:
    if not isinstance(data, Mapping):
        raise ValueError("a rendered step must be a mapping")
    kind = data.get("kind")
    if kind == "exec":
        argv = _texts(data, "argv")
        if not argv or not argv[0].startswith("/"):
            raise ValueError("rendered step: argv must start with an absolute program path")
        user = data.get("user")
        if user is not None and not isinstance(user, str):
            raise ValueError("rendered step: 'user' must be text or null")
        return RenderedExec(
            argv=argv,
            cwd=_get(data, "cwd", str),
            env=_texts(data, "env"),
            set_env=_text_map(data, "set_env"),
            user=user,
            timeout=_seconds(data, "timeout"),
        )
    if kind == "http":
        body = data.get("body")
        if body is not None and not isinstance(body, str):
            raise ValueError("rendered step: 'body' must be text or null")
        expect = _get(data, "expect", list)
        if not all(type(code) is int for code in expect):
            raise ValueError("rendered step: 'expect' must be a list of statuses")
        return RenderedHttp(
            method=_get(data, "method", str),
            url=_get(data, "url", str),
            headers=_text_map(data, "headers"),
            body=body,
            expect=tuple(expect),
            timeout=_seconds(data, "timeout"),
        )
    if kind == "publish":
        return RenderedPublish(
            broker=_get(data, "broker", str),
            topic=_get(data, "topic", str),
            payload=_get(data, "payload", str),
            qos=_get(data, "qos", int),
            retain=_get(data, "retain", bool),
        )
    raise ValueError(f"unknown rendered step kind {kind!r}")


def _cut(text: str) -> str:
    """Shorten a long value for a description, saying how much was left out."""
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}...({len(text) - _SHOWN} more)"


def _shown(text: str) -> str:
    """Quote a value for a one-line description: control characters escaped, long ones cut."""
    return repr(_cut(text))


def _one_line(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", text)


REDACTED = "[redacted]"


def _redacted(step: RenderedStep) -> RenderedStep:
    if isinstance(step, RenderedExec):
        return replace(step, set_env=dict.fromkeys(step.set_env, REDACTED))
    if isinstance(step, RenderedHttp):
        parts = urllib.parse.urlsplit(step.url)
        bare = parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment="")
        return replace(
            step,
            url=urllib.parse.urlunsplit(bare),
            headers=dict.fromkeys(step.headers, REDACTED),
            body=None if step.body is None else REDACTED,
        )
    return step


def _describe(step: RenderedStep) -> str:
    if isinstance(step, RenderedExec):
        line = f"exec {_one_line(shlex.join(_cut(arg) for arg in step.argv))} in {step.cwd}"
        if step.user is not None:
            line += f" as {step.user}"
        return f"{line} (timeout {step.timeout:g}s)"
    if isinstance(step, RenderedHttp):
        parts = urllib.parse.urlsplit(step.url)
        line = f"http {step.method} {parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
        if step.body == REDACTED:
            line += " with a body (not kept)"
        elif step.body is not None:
            line += f" with a {len(step.body.encode())}-byte body"
        return f"{_one_line(line)} (timeout {step.timeout:g}s)"
    return (
        f"publish on mqtt broker '{step.broker}' topic {_shown(step.topic)} qos {step.qos}: "
        f"{_shown(step.payload)}"
    )
