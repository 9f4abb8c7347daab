"""Command line: `tocsin run | check | test | replay | explain | silence | maintenance |
version` and the commands for a running daemon (incidents, rules, runs, requests, ...); the
only place with argv and signals."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
import zoneinfo
from collections.abc import Sequence
from pathlib import Path

import structlog

from tocsin import __version__
from tocsin.actions.registry import action_kinds
from tocsin.config import Config, CorrelationConfig, load_config
from tocsin.incidents_cli import add_commands
from tocsin.obs import configure_logging
from tocsin.ops_cli import add_ops_commands
from tocsin.parsers import PARSER_KINDS
from tocsin.records.incidents import REOPEN_WINDOW
from tocsin.records.priority import PriorityMatrix
from tocsin.rules.loader import load_rules
from tocsin.rules_cli import add_rule_commands
from tocsin.service_cli import add_service_commands
from tocsin.yamlsrc import SourceError

__all__ = ["main"]

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tocsin", description="Service-operation daemon: events in, incidents out."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", type=Path, required=True, help="path to tocsin.yaml")

    check = sub.add_parser("check", help="validate the config and rule files")
    check.add_argument("--config", type=Path, help="path to tocsin.yaml (checks its rules too)")
    check.add_argument("rules", nargs="*", type=Path, help="rule files or folders")

    replay = sub.add_parser("replay", help="run log files through the rules and print what fired")
    source = replay.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="take rules and priorities from this config")
    source.add_argument("--rules", type=Path, action="append", help="a rule file or folder")
    replay.add_argument("--parser", choices=PARSER_KINDS, default="auto")
    replay.add_argument("--year", type=_year, help="year of the first line (BSD syslog has none)")
    replay.add_argument("--timezone", help="time zone of local timestamps (default: this host's)")
    replay.add_argument("--format", choices=("table", "jsonl"), default="table")
    replay.add_argument("files", nargs="+", type=Path)

    silence = sub.add_parser("silence", help="list, add or expire silences on a running daemon")
    _api_target(silence)
    action = silence.add_subparsers(dest="silence_command", required=True)
    listing = action.add_parser("list", help="show silences")
    listing.add_argument("--state", choices=("pending", "active", "expired"))
    add = action.add_parser("add", help="mute what matches, for a while")
    add.add_argument(
        "-m", "--matcher", action="append", required=True, help="e.g. host=web1, rule=~ssh-.*"
    )
    until = add.add_mutually_exclusive_group(required=True)
    until.add_argument("--duration", help="e.g. 30m, 2h")
    until.add_argument("--ends", help="ISO 8601 time with offset")
    add.add_argument("--starts", help="ISO 8601 time with offset (default: now)")
    add.add_argument("--comment", required=True, help="why")
    add.add_argument("--author", help="on whose behalf (recorded beside the token's name)")
    expire = action.add_parser("expire", help="end a silence now")
    expire.add_argument("id", help="the silence id (a unique prefix will do)")

    maintenance = sub.add_parser(
        "maintenance", help="list, add or end one-off maintenance windows on a running daemon"
    )
    _api_target(maintenance)
    mw = maintenance.add_subparsers(dest="maintenance_command", required=True)
    mw.add_parser("list", help="show the windows in force (config and API-made)")
    make = mw.add_parser("add", help="mute what matches, for a while, by name")
    make.add_argument("name")
    make.add_argument("-m", "--matcher", action="append", required=True, help="e.g. host=db1")
    span = make.add_mutually_exclusive_group(required=True)
    span.add_argument("--duration", help="e.g. 2h")
    span.add_argument("--ends", help="ISO 8601 time with offset")
    make.add_argument("--starts", help="ISO 8601 time with offset (default: now)")
    make.add_argument("--remind-before", help="log a reminder this long before the end, e.g. 15m")
    make.add_argument("--comment", required=True, help="why")
    make.add_argument("--author", help="on whose behalf (recorded beside the token's name)")
    end = mw.add_parser("end", help="end an API-made window now")
    end.add_argument("name")

    add_commands(sub)  # incidents, oncall, token
    add_ops_commands(sub)  # runs, remediation, problems, known-errors
    add_service_commands(sub)  # requests, access
    add_rule_commands(sub)  # explain, rules
    test = sub.add_parser(
        "test", help="run rule unit tests: events in on a virtual clock, expected outcomes out"
    )
    test.add_argument("paths", nargs="+", type=Path, help="test files (*.test.yaml) or folders")
    test.add_argument("--case", help="only the cases whose name this regex finds")
    test.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error", "critical"),
        default="critical",
        help="show the daemon's own log lines from this level on, on stderr (default: critical)",
    )
    sub.add_parser("version", help="print the version")
    return parser


def _api_target(command: argparse.ArgumentParser) -> None:
    """Options that find a running daemon and its token."""
    target = command.add_mutually_exclusive_group()
    target.add_argument("--config", type=Path, help="find the daemon (and a token) from this")
    target.add_argument("--url", help="the daemon's base URL (default http://127.0.0.1:8465)")
    command.add_argument("--token", help="API token (default: $TOCSIN_TOKEN, or the config's)")


def _tune_gc() -> None:
    """Freeze what startup built and collect less often: events are acyclic and short-lived.

    The cyclic collector otherwise rescans the long-lived rules, modules and open incidents
    every few thousand allocations, about 4% of the time spent per line.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _year(text: str) -> int:
    """Parse --year: a calendar year the timestamp code can represent."""
    try:
        year = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a year: {text!r}") from None
    if not 1970 <= year <= 9999:
        raise argparse.ArgumentTypeError(f"year {year} is outside 1970..9999")
    return year


def _run(config_path: Path) -> int:
    try:
        config = load_config(config_path)
    except SourceError as exc:
        print(f"tocsin: {exc}", file=sys.stderr)
        return EXIT_INVALID
    configure_logging(level=config.log_level, fmt=config.log_format)
    _tune_gc()
    return asyncio.run(_serve(config))


async def _serve(config: Config) -> int:
    from tocsin.app import Daemon, StartupError  # noqa: PLC0415 - keep `check`/`replay` light
    from tocsin.store.base import StoreError  # noqa: PLC0415

    log = structlog.get_logger("tocsin")
    stop = asyncio.Event()
    daemon = Daemon(config)

    def on_signal(name: str) -> None:
        if stop.is_set():  # a second signal: the operator does not want to wait
            log.error("tocsin_exit_now", signal=name, note="uncommitted lines are read again")
            os._exit(EXIT_INVALID)
        stop.set()

    reloads: set[asyncio.Task[object]] = set()

    def on_hup() -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(daemon.reload("sighup"))
        reloads.add(task)  # kept until done: the loop holds tasks only weakly
        task.add_done_callback(reloads.discard)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        clean = await daemon.run(stop)
    except (StartupError, StoreError) as exc:
        if daemon.ready.is_set():
            raise
        log.error("tocsin_cannot_start", reason=str(exc))
        return EXIT_INVALID
    if not clean:
        # A store call may still be blocked in its thread (a lock, a stalled disk); the
        # interpreter would wait for it at exit, so leave now: nothing uncommitted is lost.
        sys.stdout.flush()
        os._exit(EXIT_INVALID)
    return EXIT_OK


def _check(config_path: Path | None, rule_paths: Sequence[Path]) -> int:
    paths = list(rule_paths)
    brokers = None  # without a config, publish actions may name any broker
    service = None  # ... and remediate, request and access actions none
    if config_path is not None:
        try:
            config = load_config(config_path)
        except SourceError as exc:
            print(exc, file=sys.stderr)
            return EXIT_INVALID
        if not paths:
            paths = list(config.rule_paths)
        brokers = list(config.mqtt_brokers)
        service = config.runbooks
    if not paths:
        print(
            f"tocsin check: {config_path} names no rule paths (rules:)"
            if config_path is not None
            else "tocsin check: give --config or rule paths",
            file=sys.stderr,
        )
        return EXIT_USAGE
    ruleset = load_rules(
        paths,
        kinds=action_kinds(
            brokers=brokers,
            runbooks=service.runbooks if service else None,
            catalog=service.catalog if service else None,
            access=service.access if service else None,
        ),
    )
    for warning in ruleset.warnings:
        print(f"{warning.mark}: warning: {warning.message}", file=sys.stderr)
    for error in ruleset.errors:
        print(error, file=sys.stderr)
    summary = (
        f"{len(ruleset.files)} files, {len(ruleset.rules)} rules ok, "
        f"{len(ruleset.errors)} errors, {len(ruleset.warnings)} warnings"
    )
    if ruleset.disabled:
        summary += f", {ruleset.disabled} disabled"
    print(summary, file=sys.stderr if ruleset.errors else sys.stdout)
    return EXIT_INVALID if ruleset.errors else EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    from tocsin.engine.muting import Muter  # noqa: PLC0415
    from tocsin.mute.silences import SilenceBook  # noqa: PLC0415
    from tocsin.replay import replay  # noqa: PLC0415 - keep `check` light to start

    priorities = PriorityMatrix()
    correlation = CorrelationConfig()
    muter = None
    brokers = None
    service = None
    reopen_window = REOPEN_WINDOW
    if args.config is not None:
        try:
            config = load_config(args.config)
        except SourceError as exc:
            print(exc, file=sys.stderr)
            return EXIT_INVALID
        rule_paths, priorities = list(config.rule_paths), config.priorities
        correlation = config.correlation
        muter = Muter(silences=SilenceBook(), windows=config.maintenance, inhibit=config.inhibit)
        brokers = list(config.mqtt_brokers)
        reopen_window = config.incidents.reopen_window
        service = config.runbooks
    else:
        rule_paths = list(args.rules)
    tz = None
    if args.timezone:
        try:
            tz = zoneinfo.ZoneInfo(args.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            print(f"tocsin replay: unknown time zone {args.timezone!r}", file=sys.stderr)
            return EXIT_USAGE
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        print(f"tocsin replay: no such file: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    ruleset = load_rules(
        rule_paths,
        kinds=action_kinds(
            brokers=brokers,
            runbooks=service.runbooks if service else None,
            catalog=service.catalog if service else None,
            access=service.access if service else None,
        ),
    )
    for error in ruleset.errors:
        print(f"{error} (rule skipped)", file=sys.stderr)
    _tune_gc()
    summary = replay(
        args.files,
        ruleset=ruleset,
        priorities=priorities,
        correlation=correlation,
        muter=muter,
        reopen_window=reopen_window,
        parser=args.parser,
        year=args.year,
        tz=tz,
        fmt=args.format,
        out=sys.stdout,
    )
    sys.stdout.flush()
    print(summary.render(), file=sys.stderr)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tocsin` console script; output cut short by a closed pipe (`|
    head`) ends it quietly."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at /dev/null so that flush is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run(args.config)
    if args.command == "check":
        return _check(args.config, args.rules)
    if args.command == "test":
        from tocsin.ruletest.runner import main as run_tests  # noqa: PLC0415 - only `test`

        return run_tests(args.paths, case=args.case, log_level=args.log_level)
    if args.command == "replay":
        return _replay(args)
    if args.command == "explain":
        from tocsin.explain.command import run_explain  # noqa: PLC0415 - only `explain` needs it

        return run_explain(args)
    if args.command in ("silence", "maintenance"):
        from tocsin import remote  # noqa: PLC0415 - only these commands need it

        return remote.silence(args) if args.command == "silence" else remote.maintenance(args)
    if "remote" in args:  # set by incidents_cli.add_commands
        return int(args.remote(args))
    print(__version__)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
