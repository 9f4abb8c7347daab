"""The runbooks file: remediation steps checked whole at load, so a run never has to guess.

A step's program is an absolute path written in the config: steps run without a shell and
without a PATH lookup, and event data never chooses the program. Templates fill the other argv
elements, each rendering into exactly one element. `user` runs a step as another account, which
only root can do: when tocsin does not run as root, `user` is refused at load rather than
failing on every run. An http step's URL takes placeholders only after the host (in the path
and the query) and their values are percent-encoded, so event data cannot change where a
request goes. Safety options (concurrency, rate_limit, breaker, approval) are only parsed here.
"""

from __future__ import annotations

import math
import os
import pwd
import re
import urllib.parse
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from jinja2 import ChainableUndefined, TemplateError, Undefined

from tocsin.mqtt.topics import topic_problem
from tocsin.records.access_policy import AccessPolicy, parse_access
from tocsin.records.catalog import CatalogItem, parse_catalog
from tocsin.rules.schema import (
    Errors,
    check_keys,
    expect_bool,
    expect_int,
    expect_list,
    expect_map,
    expect_str,
    kind_of,
    parse_duration,
    parse_named,
    parse_path,
    parse_size,
)
from tocsin.rules.templates import (
    Sandbox,
    Template,
    TemplateCompileError,
    TemplateRenderError,
    compile_template,
)
from tocsin.yamlsrc import (
    Mark,
    MarkedMap,
    SourceError,
    did_you_mean,
    key_mark,
    load_yaml_file,
    value_mark,
)

__all__ = [
    "DEFAULT_ENV",
    "HTTP_METHODS",
    "Breaker",
    "ExecStep",
    "HttpStep",
    "JsonBody",
    "Node",
    "PublishStep",
    "RateLimit",
    "RemediationSettings",
    "Runbook",
    "RunbookSettings",
    "Step",
    "UrlTemplate",
    "load_runbook_file",
    "parse_remediation",
    "parse_runbooks",
]

DEFAULT_ENV = ("PATH", "LANG")  # names an exec step passes on from tocsin's environment
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

# A compiled JSON document: templates at the text leaves, YAML's own values elsewhere.
Node: TypeAlias = "Template | dict[str, Node] | list[Node] | int | float | bool | None"

_FILE_KEYS = ("remediation", "runbooks", "catalog", "access")
_REMEDIATION_KEYS = ("dry_run", "max_output")
_RUNBOOK_KEYS = ("name", "steps", "concurrency", "rate_limit", "breaker", "dry_run", "approval")
_STEP_KINDS = ("exec", "http", "publish")
_EXEC_KEYS = ("argv", "cwd", "env", "set_env", "user", "timeout")
_HTTP_KEYS = ("method", "url", "headers", "body", "json", "expect", "timeout")
_PUBLISH_KEYS = ("broker", "topic", "payload", "qos", "retain")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TEMPLATE_SYNTAX = re.compile(r"\{[{%#]|[}%#]\}")
_TEMPLATE_BLOCK = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_ORIGIN = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)")
_EXEC_TIMEOUT = (30.0, 86400.0)  # default, most
_HTTP_TIMEOUT = (10.0, 300.0)


@dataclass(frozen=True, slots=True)
class RemediationSettings:
    """Options for every runbook: a global dry run, and how much output a step keeps."""

    dry_run: bool = False
    max_output: int = 64 << 10  # bytes kept of each of stdout, stderr and an HTTP answer


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `runs` runs per rule and key within `per` seconds (the safety kit counts)."""

    runs: int
    per: float


@dataclass(frozen=True, slots=True)
class Breaker:
    """`failures` failed runs in a row on one target open it for `reset` seconds."""

    failures: int
    reset: float


@dataclass(frozen=True, slots=True)
class ExecStep:
    """Run `program` directly with `args` rendered one element each; no shell, no PATH lookup."""

    program: str  # absolute, literal
    args: tuple[Template, ...]
    cwd: str
    env: tuple[str, ...]  # names passed on from tocsin's environment when set there
    set_env: Mapping[str, Template]  # names set to rendered values (these win)
    user: str | None
    timeout: float


class UrlTemplate:
    """A URL template whose placeholder values are percent-encoded (`/ ? & #` in data stay data)."""

    __slots__ = ("_jinja", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._jinja = _URL_ENV.from_string(source)
        except TemplateError as exc:
            raise TemplateCompileError(str(exc)) from None

    def render(self, variables: Mapping[str, Any]) -> str:
        """Render; a failure on the data raises TemplateRenderError."""
        try:
            return str(self._jinja.render(variables))
        except Exception as exc:  # noqa: BLE001 - sandbox violation or bad data: the run fails
            raise TemplateRenderError(f"template {self.source[:80]!r}: {exc}") from None


def _percent_encoded(value: Any) -> str:
    """Encode one placeholder's value so that it stays inside its path segment or query value."""
    if isinstance(value, Undefined):
        return ""
    text = value if isinstance(value, str) else str(value)
    if text in (".", ".."):
        # Encoded or not, a client normalizes a dot segment away: data would pick the endpoint.
        raise ValueError(f"a URL value may not be {text!r} (a dot segment)")
    return urllib.parse.quote(text, safe="", errors="replace")


_URL_ENV = Sandbox(autoescape=False, undefined=ChainableUndefined, finalize=_percent_encoded)


@dataclass(frozen=True, slots=True)
class JsonBody:
    """A body written as YAML and sent as JSON; its text leaves are templates, keeping types."""

    tree: Node


@dataclass(frozen=True, slots=True)
class HttpStep:
    """Send one request; it succeeds when the answer's status is in `expect` (empty: any 2xx)."""

    method: str
    url: UrlTemplate
    headers: Mapping[str, Template]
    body: Template | JsonBody | None
    expect: tuple[int, ...]
    timeout: float


@dataclass(frozen=True, slots=True)
class PublishStep:
    """Queue one MQTT message on a configured broker."""

    broker: str
    topic: Template
    payload: Template | JsonBody
    qos: int
    retain: bool


Step: TypeAlias = ExecStep | HttpStep | PublishStep


@dataclass(frozen=True, slots=True)
class Runbook:
    """A named list of steps run in order, and the limits the safety kit applies to its runs."""

    name: str
    steps: tuple[Step, ...]
    concurrency: int = 1  # runs of this runbook at once
    rate_limit: RateLimit | None = None
    breaker: Breaker | None = None
    dry_run: bool = False
    approval_ttl: float | None = None  # None: runs without waiting for an operator
    where: Mark | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class RunbookSettings:
    """The whole runbooks file."""

    remediation: RemediationSettings = field(default_factory=RemediationSettings)
    runbooks: Mapping[str, Runbook] = field(default_factory=dict)
    catalog: Mapping[str, CatalogItem] = field(default_factory=dict)  # service requests
    access: AccessPolicy = field(default_factory=AccessPolicy)


def load_runbook_file(
    path: Path,
    *,
    brokers: Collection[str],
    policies: Collection[str] = (),
    users: Collection[str] = (),
) -> RunbookSettings:
    """Read the runbooks file; raise SourceError at file:line of the first problem."""
    data = load_yaml_file(path)
    root = expect_map(data, Mark(str(path), 1, 1), "the runbooks file")
    check_keys(root, _FILE_KEYS, "runbooks file key")
    remediation = RemediationSettings()
    if root.get("remediation") is not None:
        remediation = parse_remediation(
            root["remediation"], value_mark(root, "remediation", root.mark)
        )
    runbooks: dict[str, Runbook] = {}
    if root.get("runbooks") is not None:
        runbooks = parse_runbooks(
            root["runbooks"],
            value_mark(root, "runbooks", root.mark),
            base=path.resolve().parent,
            brokers=brokers,
        )
    catalog = parse_catalog(
        root.get("catalog"),
        value_mark(root, "catalog", root.mark),
        runbooks=runbooks,
        policies=policies,
    )
    access = parse_access(
        root.get("access"), value_mark(root, "access", root.mark), runbooks=runbooks, users=users
    )
    return RunbookSettings(
        remediation=remediation, runbooks=runbooks, catalog=catalog, access=access
    )


def parse_remediation(spec: Any, where: Mark) -> RemediationSettings:
    """Parse `remediation: {dry_run, max_output}`."""
    data = expect_map(spec, where, "'remediation'")
    check_keys(data, _REMEDIATION_KEYS, "remediation option")
    defaults = RemediationSettings()
    return RemediationSettings(
        dry_run=expect_bool(
            data.get("dry_run", defaults.dry_run), value_mark(data, "dry_run", where), "dry_run"
        ),
        max_output=parse_size(
            data.get("max_output", defaults.max_output),
            value_mark(data, "max_output", where),
            "max_output",
            least=1 << 10,
            most=16 << 20,
        ),
    )


def parse_runbooks(
    spec: Any, where: Mark, *, base: Path, brokers: Collection[str]
) -> dict[str, Runbook]:
    """Parse the `runbooks:` list into runbooks by name; relative paths are taken from `base`."""
    known = tuple(sorted(brokers))

    def parse_one(item: Any, at: Mark, number: int) -> Runbook:
        return _runbook(item, at, number, base, known)

    runbooks = parse_named(spec, where, "'runbooks'", "runbook", parse_one)
    return {runbook.name: runbook for runbook in runbooks}


def _prefixed(prefix: str) -> Errors:
    """Return an error builder that starts every message with `prefix`."""

    def errors(where: Mark, message: str) -> SourceError:
        return SourceError(where, f"{prefix}{message}")

    return errors


def _runbook(spec: Any, where: Mark, number: int, base: Path, brokers: tuple[str, ...]) -> Runbook:
    unnamed = _prefixed(f"runbook #{number}: ")
    data = expect_map(spec, where, "a runbook", unnamed)
    if "name" not in data:
        raise unnamed(where, "missing required key 'name'")
    name_at = value_mark(data, "name", where)
    name = expect_str(data["name"], name_at, "name", unnamed)
    if _NAME.fullmatch(name) is None:
        raise unnamed(
            name_at,
            f"runbook name {name!r} may only have letters, digits, '_', '.' and '-' "
            "(it is used in API paths and on the command line)",
        )
    errors = _prefixed(f"runbook '{name}': ")
    check_keys(data, _RUNBOOK_KEYS, "runbook option", errors, required=("steps",))

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    items = expect_list(data["steps"], at("steps"), "steps", errors)
    if not items:
        raise errors(at("steps"), "steps must list at least one step")
    steps = tuple(
        _step(
            item,
            value_mark(items, index, at("steps")),
            index + 1,
            name,
            base=base,
            brokers=brokers,
        )
        for index, item in enumerate(items)
    )
    approval = data.get("approval")
    return Runbook(
        name=name,
        steps=steps,
        concurrency=expect_int(
            data.get("concurrency", 1), at("concurrency"), "concurrency", errors, minimum=1
        ),
        rate_limit=_rate_limit(data.get("rate_limit"), at("rate_limit"), errors),
        breaker=_breaker(data.get("breaker"), at("breaker"), errors),
        dry_run=expect_bool(data.get("dry_run", False), at("dry_run"), "dry_run", errors),
        approval_ttl=None if approval is None else _approval(approval, at("approval"), errors),
        where=where,
    )


def _positive_duration(value: Any, where: Mark, what: str, errors: Errors) -> float:
    seconds = parse_duration(value, where, what, errors)
    if seconds <= 0:
        raise errors(where, f"{what} must be longer than 0")
    return seconds


def _rate_limit(spec: Any, where: Mark, errors: Errors) -> RateLimit | None:
    """Parse `rate_limit: {runs, per}`; absent or empty: no limit."""
    if spec is None:
        return None
    data = expect_map(spec, where, "rate_limit", errors)
    check_keys(data, ("runs", "per"), "rate_limit option", errors, required=("runs", "per"))
    return RateLimit(
        runs=expect_int(data["runs"], value_mark(data, "runs", where), "runs", errors, minimum=1),
        per=_positive_duration(data["per"], value_mark(data, "per", where), "per", errors),
    )


def _breaker(spec: Any, where: Mark, errors: Errors) -> Breaker | None:
    """Parse `breaker: {failures, reset}`; absent or empty: no breaker."""
    if spec is None:
        return None
    data = expect_map(spec, where, "breaker", errors)
    check_keys(
        data, ("failures", "reset"), "breaker option", errors, required=("failures", "reset")
    )
    at_failures = value_mark(data, "failures", where)
    return Breaker(
        failures=expect_int(data["failures"], at_failures, "failures", errors, minimum=1),
        reset=_positive_duration(data["reset"], value_mark(data, "reset", where), "reset", errors),
    )


def _approval(spec: Any, where: Mark, errors: Errors) -> float:
    """Parse `approval: {ttl}`: how long a run waits for an operator before it expires."""
    data = expect_map(spec, where, "approval", errors)
    check_keys(data, ("ttl",), "approval option", errors, required=("ttl",))
    return _positive_duration(data["ttl"], value_mark(data, "ttl", where), "ttl", errors)


def _step(
    spec: Any, where: Mark, number: int, name: str, *, base: Path, brokers: tuple[str, ...]
) -> Step:
    errors = _prefixed(f"runbook '{name}': step {number}: ")
    data = expect_map(spec, where, "a step", errors)
    check_keys(data, _STEP_KINDS, "step kind", errors)
    if len(data) != 1:
        given = " and ".join(str(key) for key in data) or "nothing"
        raise errors(where, f"a step is one of exec, http or publish; this one gives {given}")
    kind = next(iter(data))
    at = value_mark(data, kind, where)
    errors = _prefixed(f"runbook '{name}': step {number} ({kind}): ")
    options = expect_map(data[kind], at, f"'{kind}'", errors)
    if kind == "exec":
        return _exec(options, at, base, errors)
    if kind == "http":
        return _http(options, at, errors)
    return _publish(options, at, brokers, errors)


def _template(value: Any, where: Mark, what: str, errors: Errors, *, nul: bool = False) -> Template:
    """Compile a text option (numbers are taken as text); `nul=False` refuses a literal NUL."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise errors(where, f"{what} must be text, not {kind_of(value)}")
    source = value if isinstance(value, str) else str(value)
    if not nul and "\0" in source:
        raise errors(where, f"{what} contains a NUL character")
    try:
        return compile_template(source)
    except TemplateCompileError as exc:
        raise errors(where, f"{what} is not a valid template: {exc}") from None


def _timeout(data: MarkedMap, where: Mark, errors: Errors, limits: tuple[float, float]) -> float:
    default, most = limits
    at = value_mark(data, "timeout", where)
    seconds = parse_duration(data.get("timeout", default), at, "timeout", errors)
    if not 0 < seconds <= most:
        shown = "1d" if most == 86400 else f"{most / 60:g}m"
        raise errors(at, f"timeout must be more than 0 and at most {shown}")
    return seconds


def _exec(data: MarkedMap, where: Mark, base: Path, errors: Errors) -> ExecStep:
    check_keys(data, _EXEC_KEYS, "exec option", errors, required=("argv",))

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    argv = expect_list(data["argv"], at("argv"), "argv", errors)
    if not argv:
        raise errors(at("argv"), "argv must not be empty: its first element is the program")
    program = _program(argv[0], value_mark(argv, 0, at("argv")), errors)
    args = tuple(
        _template(item, value_mark(argv, index, at("argv")), f"argv[{index}]", errors)
        for index, item in enumerate(argv)
        if index > 0
    )
    env = _env_names(data["env"], at("env"), errors) if "env" in data else DEFAULT_ENV
    set_env = _set_env(data.get("set_env"), at("set_env"), env, errors)
    return ExecStep(
        program=program,
        args=args,
        cwd=_cwd(data.get("cwd", "/"), at("cwd"), base, errors),
        env=env,
        set_env=set_env,
        user=_user(data.get("user"), at("user"), errors),
        timeout=_timeout(data, where, errors, _EXEC_TIMEOUT),
    )


def _program(value: Any, where: Mark, errors: Errors) -> str:
    """Return argv[0]: a literal absolute path, since nothing looks it up and no shell runs."""
    program = expect_str(value, where, "argv[0]", errors)
    if _TEMPLATE_SYNTAX.search(program):
        raise errors(
            where,
            f"argv[0] {program!r} must be the program's path itself, not a template: "
            "event data never chooses which program runs",
        )
    if "\0" in program:
        raise errors(where, "argv[0] contains a NUL character")
    if not os.path.isabs(program):
        example = "/usr/bin/" + (program.rsplit("/", 1)[-1] or "program")
        raise errors(
            where,
            f"argv[0] {program!r} must be an absolute path such as {example}: steps run "
            "without a shell and without a PATH lookup",
        )
    return program


def _env_names(value: Any, where: Mark, errors: Errors) -> tuple[str, ...]:
    items = expect_list(value, where, "env", errors)
    names: list[str] = []
    for index, item in enumerate(items):
        at = value_mark(items, index, where)
        name = expect_str(item, at, "an env name", errors)
        if _ENV_NAME.fullmatch(name) is None:
            raise errors(
                at, f"env name {name!r} must be letters, digits and '_', not a digit first"
            )
        if name in names:
            raise errors(at, f"env lists {name} twice")
        names.append(name)
    return tuple(names)


def _set_env(
    value: Any, where: Mark, passed: tuple[str, ...], errors: Errors
) -> dict[str, Template]:
    data = expect_map(value, where, "set_env", errors)
    found: dict[str, Template] = {}
    for name, item in data.items():
        at = key_mark(data, name, where)
        if not isinstance(name, str) or _ENV_NAME.fullmatch(name) is None:
            raise errors(
                at, f"set_env name {name!r} must be letters, digits and '_', not a digit first"
            )
        if name in passed:
            raise errors(at, f"{name} is both passed on (env) and set (set_env); keep one")
        found[name] = _template(item, value_mark(data, name, where), f"set_env {name}", errors)
    return found


def _cwd(value: Any, where: Mark, base: Path, errors: Errors) -> str:
    path = parse_path(base, expect_str(value, where, "cwd", errors), where, "cwd")
    if not path.is_dir():
        raise errors(where, f"cwd {path} is not a directory")
    return str(path)


def _user(value: Any, where: Mark, errors: Errors) -> str | None:
    """Return the account to run as; switching needs root, so it is refused otherwise."""
    if value is None:
        return None
    user = expect_str(value, where, "user", errors)
    uid = os.geteuid()
    if uid != 0:
        raise errors(
            where,
            f"user {user!r} needs tocsin to run as root, but it runs as uid {uid}: only root "
            "can switch users; remove 'user' to run the step as tocsin's own user",
        )
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise errors(where, f"user {user!r} does not exist on this host") from None
    return user


def _http(data: MarkedMap, where: Mark, errors: Errors) -> HttpStep:
    check_keys(data, _HTTP_KEYS, "http option", errors, required=("url",))

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    method = expect_str(data.get("method", "POST"), at("method"), "method", errors).upper()
    if method not in HTTP_METHODS:
        raise errors(at("method"), f"method must be one of {', '.join(HTTP_METHODS)}")
    body: Template | JsonBody | None = None
    if "body" in data and "json" in data:
        raise errors(key_mark(data, "json", where), "give body or json, not both")
    if "body" in data:
        body = _template(data["body"], at("body"), "body", errors, nul=True)
    elif "json" in data:
        body = JsonBody(_node(data["json"], at("json"), "json", errors))
    return HttpStep(
        method=method,
        url=_url(data["url"], at("url"), errors),
        headers=_headers(data.get("headers"), at("headers"), errors),
        body=body,
        expect=_expect(data.get("expect"), at("expect"), errors),
        timeout=_timeout(data, where, errors, _HTTP_TIMEOUT),
    )


def _url(value: Any, where: Mark, errors: Errors) -> UrlTemplate:
    """Compile the URL; placeholders may fill the path and query only, never the host."""
    source = expect_str(value, where, "url", errors).strip()
    origin = _ORIGIN.match(source)
    if origin is None or origin[1].lower() not in ("http", "https"):
        raise errors(where, "url must be an http:// or https:// URL with a host")
    if _TEMPLATE_SYNTAX.search(origin[0]):
        raise errors(
            where,
            "url: placeholders may fill only the path and the query, after the host: event "
            "data never chooses where a request goes",
        )
    try:
        url = UrlTemplate(source)
    except TemplateCompileError as exc:
        raise errors(where, f"url is not a valid template: {exc}") from None
    literal = _TEMPLATE_BLOCK.sub("x", source)
    if any(c.isspace() or not c.isprintable() for c in literal):
        raise errors(where, "url must not contain spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(literal)
        port = parts.port  # raises on a port that is not a number in range
    except ValueError as exc:
        raise errors(where, f"url is not a valid URL: {exc}") from None
    if not parts.hostname or port == 0:
        raise errors(where, "url must be an http:// or https:// URL with a host")
    return url


def _headers(value: Any, where: Mark, errors: Errors) -> dict[str, Template]:
    data = expect_map(value, where, "headers", errors)
    found: dict[str, Template] = {}
    for name, item in data.items():
        if not isinstance(name, str) or _HEADER_NAME.fullmatch(name) is None:
            raise errors(key_mark(data, name, where), f"{name!r} is not a valid header name")
        at = value_mark(data, name, where)
        template = _template(item, at, f"header {name}", errors)
        if any(c in template.source for c in "\r\n"):
            raise errors(at, f"header {name} must be one line")
        found[name] = template
    return found


def _expect(value: Any, where: Mark, errors: Errors) -> tuple[int, ...]:
    """Return the statuses that count as success; empty (the default) means any 2xx."""
    if value is None:
        return ()
    items = [value] if isinstance(value, int) else expect_list(value, where, "expect", errors)
    if not items:
        raise errors(where, "expect must list at least one status")
    codes: list[int] = []
    for index, item in enumerate(items):
        at = value_mark(items, index, where)
        if type(item) is not int or not 100 <= item <= 599:
            raise errors(at, f"expect: {item!r} is not an HTTP status (100 to 599)")
        codes.append(item)
    return tuple(sorted(set(codes)))


def _publish(data: MarkedMap, where: Mark, brokers: tuple[str, ...], errors: Errors) -> PublishStep:
    check_keys(data, _PUBLISH_KEYS, "publish option", errors, required=("topic", "payload"))

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    topic = _template(data["topic"], at("topic"), "topic", errors)
    if not _TEMPLATE_SYNTAX.search(topic.source):
        problem = topic_problem(topic.source)
        if problem is not None:
            raise errors(at("topic"), f"topic {topic.source!r} {problem}")
    qos = data.get("qos", 1)
    if type(qos) is not int or qos not in (0, 1):
        raise errors(at("qos"), f"qos must be 0 or 1, not {qos!r}")
    payload = data["payload"]
    compiled: Template | JsonBody
    if isinstance(payload, Mapping | list):
        compiled = JsonBody(_node(payload, at("payload"), "payload", errors))
    else:
        compiled = _template(payload, at("payload"), "payload", errors, nul=True)
    return PublishStep(
        broker=_broker(data, where, brokers, errors),
        topic=topic,
        payload=compiled,
        qos=qos,
        retain=expect_bool(data.get("retain", False), at("retain"), "retain", errors),
    )


def _broker(data: MarkedMap, where: Mark, brokers: tuple[str, ...], errors: Errors) -> str:
    """Return the broker to publish on; it may go unnamed when only one is configured."""
    if not brokers:
        raise errors(where, "publish needs an mqtt broker, but none is configured")
    if "broker" not in data:
        if len(brokers) == 1:
            return brokers[0]
        raise errors(where, f"say which broker: one of {', '.join(brokers)}")
    at = value_mark(data, "broker", where)
    name = expect_str(data["broker"], at, "broker", errors)
    if name not in brokers:
        raise errors(
            at,
            f"unknown mqtt broker {name!r}{did_you_mean(name, brokers)}; "
            f"configured: {', '.join(brokers)}",
        )
    return name


def _node(value: Any, where: Mark, path: str, errors: Errors) -> Node:
    """Compile a JSON document: text becomes a template, containers recurse, keys stay literal."""
    if isinstance(value, str):
        return _template(value, where, path, errors, nul=True)
    if isinstance(value, Mapping):
        tree: dict[str, Node] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise errors(
                    key_mark(value, key, where), f"{path} keys must be text; quote {key!s}"
                )
            tree[key] = _node(item, value_mark(value, key, where), f"{path}.{key}", errors)
        return tree
    if isinstance(value, list):
        return [
            _node(item, value_mark(value, index, where), f"{path}[{index}]", errors)
            for index, item in enumerate(value)
        ]
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise errors(where, f"{path} value {value!s} has no JSON form; quote it")
