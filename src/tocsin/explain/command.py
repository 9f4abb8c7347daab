"""`tocsin explain` (its options are in rules_cli): read the config and the event, explain.

Exit 0 with an explanation (whether or not any rule matched), 1 when the config cannot be
loaded or the daemon asked for silences refuses, 2 when the event or the command line is wrong.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import time
import zoneinfo
from pathlib import Path

from tocsin.actions.registry import action_kinds
from tocsin.client import ApiClient, ApiError, TargetError, find_target
from tocsin.config import Config, load_config
from tocsin.console import EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from tocsin.explain import explain, setup_from
from tocsin.explain.inputs import InputError, Mibs, from_json, from_line, from_trap
from tocsin.explain.report import to_dict, to_text
from tocsin.model import Event
from tocsin.mute.silences import Silence, SilenceError
from tocsin.rules.loader import load_rules
from tocsin.yamlsrc import SourceError

__all__ = ["run_explain"]

EXIT_INVALID = 1  # the config or its rules cannot be loaded (as `tocsin check`)


def run_explain(args: argparse.Namespace) -> int:
    """Run `tocsin explain` for parsed arguments; return the exit status."""
    config = None
    if args.config is not None:
        try:
            config = load_config(args.config)
        except SourceError as exc:
            print(exc, file=sys.stderr)
            return EXIT_INVALID
    try:
        event = _event(args, config)
    except InputError as exc:
        print(f"tocsin explain: {exc}", file=sys.stderr)
        return EXIT_USAGE
    paths = list(config.rule_paths) if config is not None else list(args.rules)
    service = config.runbooks if config is not None else None
    ruleset = load_rules(
        paths,
        kinds=action_kinds(
            brokers=list(config.mqtt_brokers) if config is not None else None,
            runbooks=service.runbooks if service else None,
            catalog=service.catalog if service else None,
            access=service.access if service else None,
        ),
    )
    for error in ruleset.errors:
        print(f"{error} (rule skipped)", file=sys.stderr)
    silences = None
    if args.url:
        try:
            silences = _silences(args.url, args.token_file)
        except TargetError as exc:
            print(f"tocsin explain: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except ApiError as exc:
            print(f"tocsin explain: {exc}", file=sys.stderr)
            return EXIT_REFUSED
    explanation = explain(event, setup_from(ruleset, paths, config), silences=silences)
    if args.json:
        print(json.dumps(to_dict(explanation), indent=2, ensure_ascii=False, default=str))
    else:
        print(to_text(explanation))
    return EXIT_OK


def _event(args: argparse.Namespace, config: Config | None) -> Event:
    """The event the arguments describe; InputError says what is wrong with it."""
    at = _moment(args.at) if args.at else None
    received = time.time() if at is None else at
    if args.line is not None:
        tz = None
        if args.timezone:
            try:
                tz = zoneinfo.ZoneInfo(args.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise InputError(f"unknown time zone {args.timezone!r}") from None
        if args.year is not None and not 1970 <= args.year <= 9999:
            raise InputError(f"year {args.year} is outside 1970..9999")
        line = sys.stdin.readline() if args.line == "-" else args.line
        if not line.strip():
            raise InputError("the log line is empty")
        event = from_line(line, parser=args.parser, received=received, year=args.year, tz=tz)
    elif args.event is not None:
        event = from_json(sys.stdin.read() if args.event == "-" else args.event, received=received)
    else:
        folders = []
        if config is not None and config.snmp is not None and config.snmp.mib_dirs:
            folders.append(config.state_dir / "mibs")  # where the daemon compiled them
        event = from_trap(
            args.trap,
            mibs=Mibs(folders),
            agent=args.agent,
            community=args.community,
            received=received,
        )
    if at is not None:
        event.time = event.received = at
    return event


def _moment(text: str) -> float:
    """Read --at: epoch seconds, or ISO 8601 with an offset."""
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(number):
            return number
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InputError(f"--at {text!r}: give ISO 8601 with an offset, or epoch seconds")
    return moment.timestamp()


def _silences(url: str, token_file: Path | None) -> list[Silence]:
    """The running daemon's silences (all of them: the event's time may not be now)."""
    target = find_target(url=url, token_file=token_file, env=os.environ)
    body = ApiClient(base_url=target.url, token=target.token).call("GET", "/api/v1/silences")
    found = []
    for record in body.get("silences", []) if isinstance(body, dict) else []:
        data = {k: v for k, v in record.items() if k != "state"}
        for key in ("starts_at", "ends_at", "created_at", "expired_at"):
            if isinstance(data.get(key), str):
                data[key] = datetime.datetime.fromisoformat(data[key]).timestamp()
        try:
            found.append(Silence.from_dict(data))
        except SilenceError as exc:
            raise ApiError(f"the daemon sent a silence this tocsin cannot read: {exc}") from None
    return found
