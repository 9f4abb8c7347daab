"""The daemon's config file: typed, strict (unknown keys are errors), errors carry file:line."""

from __future__ import annotations

import datetime
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tocsin.mqtt.settings import BrokerConfig, Subscription, parse_brokers, parse_subscriptions
from tocsin.mute.inhibit import InhibitRule, parse_inhibit_rules
from tocsin.mute.schedule import MaintenanceWindow, parse_windows
from tocsin.notify.settings import IncidentSettings, load_incident_settings
from tocsin.parsers import PARSER_KINDS
from tocsin.records.priority import DEFAULT_MATRIX, PRIORITIES, RATINGS, PriorityMatrix
from tocsin.rules.schema import (
    check_keys,
    expect_bool,
    expect_int,
    expect_items,
    expect_list,
    expect_map,
    expect_str,
    parse_duration,
    parse_path,
)
from tocsin.runbooks.settings import RunbookSettings, load_runbook_file
from tocsin.snmp.settings import SnmpConfig, parse_snmp
from tocsin.yamlsrc import Mark, MarkedMap, SourceError, load_yaml_file, value_mark

__all__ = ["Config", "CorrelationConfig", "FileSourceConfig", "HttpConfig", "load_config"]

_TOP = (
    "state_dir",
    "rules",
    "http",
    "store",
    "pipeline",
    "logging",
    "priority_matrix",
    "shutdown_timeout",
    "sources",
    "correlation",
    "muting",
    "mqtt",
    "incidents",
    "runbooks",
    "reload",
)
_FILE_KEYS = (
    "path",
    "parser",
    "start_at",
    "max_line_bytes",
    "year",
    "timezone",
    "poll_interval",
    "rescan_interval",
)


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """Where the API and /metrics listen."""

    host: str = "127.0.0.1"
    port: int = 8465
    tokens_file: Path | None = None  # who may do what (hashed tokens); none: changes off
    open_reads: bool = True  # GETs need no token (keep the API on localhost, or set false)


@dataclass(frozen=True, slots=True)
class CorrelationConfig:
    """Event time and the bounds on correlation state."""

    lateness: float = 10.0  # how late an event may be and still land in its windows
    clock_skew: float = 300.0  # how far ahead of the wall clock an event's stamp may be
    max_keys: int = 100_000  # live keys per rule unless the rule says otherwise
    tick: float = 1.0  # with no input, how often timers are checked against the wall clock


@dataclass(frozen=True, slots=True)
class FileSourceConfig:
    """One `sources.files` entry: a path or glob and how to read it."""

    patterns: tuple[str, ...]
    parser: str = "auto"
    start_at: str = "end"
    max_line_bytes: int = 65536
    year: int | None = None
    timezone: datetime.tzinfo | None = None
    poll_interval: float = 0.25
    rescan_interval: float = 2.0


@dataclass(frozen=True, slots=True)
class Config:
    """The whole daemon config, paths already resolved against the config file's folder."""

    path: Path
    state_dir: Path
    rule_paths: tuple[Path, ...]
    store_path: Path
    http: HttpConfig = HttpConfig()
    files: tuple[FileSourceConfig, ...] = ()
    queue_events: int = 16384
    batch_lines: int = 2048
    shutdown_timeout: float = 10.0
    log_level: str = "info"
    log_format: str = "auto"
    priorities: PriorityMatrix = field(default_factory=PriorityMatrix)
    correlation: CorrelationConfig = CorrelationConfig()
    muting_paths: tuple[Path, ...] = ()
    maintenance: tuple[MaintenanceWindow, ...] = ()
    inhibit: tuple[InhibitRule, ...] = ()
    snmp: SnmpConfig | None = None  # None: no trap receiver
    mqtt_brokers: Mapping[str, BrokerConfig] = field(default_factory=dict)
    mqtt_subscriptions: tuple[Subscription, ...] = ()
    incidents_path: Path | None = None
    incidents: IncidentSettings = field(default_factory=IncidentSettings)
    runbooks_path: Path | None = None
    runbooks: RunbookSettings = field(default_factory=RunbookSettings)
    watch: bool = False  # reload when a config or rule file changes
    watch_debounce: float = 2.0  # ... once they have been quiet this long


def _section(data: MarkedMap, key: str, allowed: tuple[str, ...]) -> MarkedMap:
    section = expect_map(data.get(key), value_mark(data, key, data.mark), f"'{key}'")
    check_keys(section, allowed, f"{key} option")
    return section


def _timezone(value: Any, where: Mark) -> datetime.tzinfo | None:
    name = expect_str(value, where, "'timezone'")
    if name == "local":
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SourceError(
            where, f"unknown time zone {name!r} (use an IANA name like Europe/Berlin or 'local')"
        ) from None


def _file_source(base: Path, spec: Any, where: Mark) -> FileSourceConfig:
    data = expect_map(spec, where, "a file source")
    check_keys(data, _FILE_KEYS, "file source option", required=("path",))

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    paths = expect_items(data["path"], at("path"), "'path'")
    patterns = tuple(str(parse_path(base, p, at("path"), "'path'")) for p in paths)
    parser = data.get("parser", "auto")
    if parser not in PARSER_KINDS:
        raise SourceError(
            at("parser"), f"unknown parser {parser!r}; use one of {', '.join(PARSER_KINDS)}"
        )
    start_at = data.get("start_at", "end")
    if start_at not in ("end", "beginning"):
        raise SourceError(at("start_at"), "start_at must be 'end' or 'beginning'")
    year = data.get("year")
    if year is not None:
        year = expect_int(year, at("year"), "'year'", minimum=1970)
        if year > 9999:
            raise SourceError(at("year"), "'year' must be at most 9999")
    return FileSourceConfig(
        patterns=patterns,
        parser=str(parser),
        start_at=str(start_at),
        max_line_bytes=expect_int(
            data.get("max_line_bytes", 65536), at("max_line_bytes"), "'max_line_bytes'", minimum=256
        ),
        year=year,
        timezone=_timezone(data["timezone"], at("timezone")) if "timezone" in data else None,
        poll_interval=_interval(data, "poll_interval", 0.25, at("poll_interval")),
        rescan_interval=_interval(data, "rescan_interval", 2.0, at("rescan_interval")),
    )


def _shutdown_timeout(value: Any, where: Mark) -> float:
    """Parse shutdown_timeout; zero would give up every batch at every stop."""
    seconds = parse_duration(value, where, "'shutdown_timeout'")
    if seconds < 0.1:
        raise SourceError(where, "'shutdown_timeout' must be at least 100ms")
    return seconds


def _interval(data: MarkedMap, key: str, default: float, where: Mark) -> float:
    """Parse a polling interval; zero would make the tailer spin, so 10ms is the least."""
    seconds = parse_duration(data.get(key, default), where, f"'{key}'")
    if seconds < 0.01:
        raise SourceError(where, f"'{key}' must be at least 10ms")
    return seconds


def _duration(data: MarkedMap, key: str, default: float, section: Mark, least: float) -> float:
    """Parse a duration option of a section, at least `least` seconds."""
    where = value_mark(data, key, section)
    seconds = parse_duration(data.get(key, default), where, f"'{key}'")
    if seconds < least:
        raise SourceError(where, f"'{key}' must be at least {least:g}s")
    return seconds


def load_muting(paths: tuple[Path, ...]) -> tuple[list[MaintenanceWindow], list[InhibitRule]]:
    """Read muting files: `maintenance:` windows and `inhibit:` rules, errors at file:line."""
    windows: list[MaintenanceWindow] = []
    inhibit: list[InhibitRule] = []
    for path in paths:
        data = load_yaml_file(path)
        if data is None:
            continue
        root = expect_map(data, Mark(str(path), 1, 1), "a muting file")
        check_keys(root, ("maintenance", "inhibit"), "muting key")
        found = parse_windows(root.get("maintenance"), value_mark(root, "maintenance", root.mark))
        known = {w.name: w.where for w in windows}
        for window in found:
            if window.name in known:
                raise SourceError(
                    window.where or root.mark,
                    f"duplicate maintenance window name '{window.name}' "
                    f"(first defined at {known[window.name]})",
                )
        windows.extend(found)
        inhibit.extend(
            parse_inhibit_rules(root.get("inhibit"), value_mark(root, "inhibit", root.mark))
        )
    return windows, inhibit


def _matrix(spec: Any, where: Mark) -> PriorityMatrix:
    data = expect_map(spec, where, "'priority_matrix'")
    check_keys(data, RATINGS, "impact level")
    table: dict[str, dict[str, str]] = {i: dict(row) for i, row in DEFAULT_MATRIX.items()}
    for impact, row_spec in data.items():
        row = expect_map(row_spec, value_mark(data, impact, where), f"priority_matrix.{impact}")
        check_keys(row, RATINGS, "urgency level")
        for urgency, priority in row.items():
            if priority not in PRIORITIES:
                raise SourceError(
                    value_mark(row, urgency, row.mark),
                    f"priority must be one of {', '.join(PRIORITIES)}",
                )
            table[impact][urgency] = priority
    return PriorityMatrix(table)


def load_config(path: Path) -> Config:
    """Read and validate the config; raise SourceError naming file:line of the first problem."""
    data = load_yaml_file(path)
    root = expect_map(data, Mark(str(path), 1, 1), "the config file")
    check_keys(root, _TOP, "config key")
    base = path.resolve().parent

    def at(key: str) -> Mark:
        return value_mark(root, key, root.mark)

    state_dir = parse_path(base, root.get("state_dir", "state"), at("state_dir"), "'state_dir'")
    rule_list = expect_items(root.get("rules", "rules"), at("rules"), "'rules'")
    rule_paths = tuple(parse_path(base, r, at("rules"), "a rules path") for r in rule_list)

    http_spec = _section(root, "http", ("host", "port", "tokens_file", "open_reads"))
    http = HttpConfig(
        host=expect_str(
            http_spec.get("host", "127.0.0.1"),
            value_mark(http_spec, "host", at("http")),
            "http.host",
        ),
        port=expect_int(
            http_spec.get("port", 8465), value_mark(http_spec, "port", at("http")), "http.port"
        ),
        tokens_file=parse_path(
            base,
            http_spec["tokens_file"],
            value_mark(http_spec, "tokens_file", at("http")),
            "http.tokens_file",
        )
        if "tokens_file" in http_spec
        else None,
        open_reads=expect_bool(
            http_spec.get("open_reads", True),
            value_mark(http_spec, "open_reads", at("http")),
            "http.open_reads",
        ),
    )
    store_spec = _section(root, "store", ("path",))
    store_path = parse_path(
        state_dir,
        store_spec.get("path", "tocsin.db"),
        value_mark(store_spec, "path", at("store")),
        "store.path",
    )
    pipeline = _section(root, "pipeline", ("queue_events", "batch_lines"))
    logging_spec = _section(root, "logging", ("level", "format"))
    level = logging_spec.get("level", "info")
    if level not in ("debug", "info", "warning", "error"):
        raise SourceError(
            value_mark(logging_spec, "level", at("logging")),
            "logging.level must be debug, info, warning or error",
        )
    fmt = logging_spec.get("format", "auto")
    if fmt not in ("auto", "json", "console"):
        raise SourceError(
            value_mark(logging_spec, "format", at("logging")),
            "logging.format must be auto, json or console",
        )

    corr = _section(root, "correlation", ("lateness", "clock_skew", "max_keys", "tick"))
    defaults = CorrelationConfig()
    correlation = CorrelationConfig(
        lateness=_duration(corr, "lateness", defaults.lateness, at("correlation"), 0.0),
        clock_skew=_duration(corr, "clock_skew", defaults.clock_skew, at("correlation"), 1.0),
        max_keys=expect_int(
            corr.get("max_keys", defaults.max_keys),
            value_mark(corr, "max_keys", at("correlation")),
            "correlation.max_keys",
            minimum=1,
        ),
        tick=_duration(corr, "tick", defaults.tick, at("correlation"), 0.01),
    )
    reload_spec = _section(root, "reload", ("watch", "debounce"))
    watch = expect_bool(
        reload_spec.get("watch", False), value_mark(reload_spec, "watch", at("reload")),
        "reload.watch",
    )  # fmt: skip
    watch_debounce = _duration(reload_spec, "debounce", 2.0, at("reload"), 0.1)
    muting_list = expect_items(root.get("muting"), at("muting"), "'muting'")
    muting_paths = tuple(parse_path(base, m, at("muting"), "a muting file") for m in muting_list)
    windows, inhibit = load_muting(muting_paths)
    sources = _section(root, "sources", ("files", "snmp", "mqtt"))
    brokers = parse_brokers(root["mqtt"], at("mqtt"), base) if "mqtt" in root else {}
    subscriptions = (
        parse_subscriptions(sources["mqtt"], value_mark(sources, "mqtt", at("sources")), brokers)
        if sources.get("mqtt") is not None
        else ()
    )
    incidents_path: Path | None = None
    incidents = IncidentSettings()
    if root.get("incidents") is not None:
        incidents_path = parse_path(base, root["incidents"], at("incidents"), "'incidents'")
        incidents = load_incident_settings(incidents_path, brokers=brokers)
    runbooks_path: Path | None = None
    runbooks = RunbookSettings()
    if root.get("runbooks") is not None:
        runbooks_path = parse_path(base, root["runbooks"], at("runbooks"), "'runbooks'")
        runbooks = load_runbook_file(
            runbooks_path,
            brokers=brokers,
            policies=list(incidents.policies),
            users=list(incidents.users),
        )
    files_spec = sources.get("files", [])
    files_where = value_mark(sources, "files", at("sources"))
    files_list = expect_list(files_spec, files_where, "sources.files") if files_spec else []
    files = tuple(
        _file_source(base, spec, value_mark(files_list, i, files_where))
        for i, spec in enumerate(files_list)
    )
    seen: dict[str, int] = {}
    for index, source in enumerate(files):
        for pattern in source.patterns:
            if pattern in seen:
                raise SourceError(
                    value_mark(files_list, index, files_where),
                    f"path {pattern} is already tailed by sources.files entry {seen[pattern] + 1}",
                )
            seen[pattern] = index
    return Config(
        path=path,
        state_dir=state_dir,
        rule_paths=rule_paths,
        store_path=store_path,
        http=http,
        files=files,
        queue_events=expect_int(
            pipeline.get("queue_events", 16384),
            value_mark(pipeline, "queue_events", at("pipeline")),
            "pipeline.queue_events",
            minimum=1,
        ),
        batch_lines=expect_int(
            pipeline.get("batch_lines", 2048),
            value_mark(pipeline, "batch_lines", at("pipeline")),
            "pipeline.batch_lines",
            minimum=1,
        ),
        shutdown_timeout=_shutdown_timeout(
            root.get("shutdown_timeout", 10), at("shutdown_timeout")
        ),
        log_level=str(level),
        log_format=str(fmt),
        priorities=_matrix(root["priority_matrix"], at("priority_matrix"))
        if "priority_matrix" in root
        else PriorityMatrix(),
        correlation=correlation,
        muting_paths=muting_paths,
        maintenance=tuple(windows),
        inhibit=tuple(inhibit),
        snmp=parse_snmp(sources["snmp"], value_mark(sources, "snmp", at("sources")), base)
        if "snmp" in sources
        else None,
        mqtt_brokers=brokers,
        mqtt_subscriptions=subscriptions,
        incidents_path=incidents_path,
        incidents=incidents,
        runbooks_path=runbooks_path,
        watch=watch,
        watch_debounce=watch_debounce,
        runbooks=runbooks,
    )


def describe(config: Config) -> Mapping[str, Any]:
    """Summarize the config for the startup log line."""
    return {
        "config": str(config.path),
        "state_dir": str(config.state_dir),
        "rules": [str(p) for p in config.rule_paths],
        "files": [p for f in config.files for p in f.patterns],
        "snmp": [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in config.snmp.listen]
        if config.snmp
        else [],
        "mqtt": [
            f"{b.name}={b.host}:{b.port}{' (tls)' if b.tls else ''}"
            for b in config.mqtt_brokers.values()
        ],
        "mqtt_subscriptions": [s.filter for s in config.mqtt_subscriptions],
        "incidents": str(config.incidents_path) if config.incidents_path else None,
        "receivers": sorted(config.incidents.receivers),
        "runbooks": sorted(config.runbooks.runbooks),
    }
