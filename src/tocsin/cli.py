"""Command line: `tocsin run | check | replay | silence | version`; the only place with argv
and signals."""

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
from tocsin.actions.registry import ACTION_KINDS
from tocsin.config import Config, CorrelationConfig, load_config
from tocsin.obs import configure_logging
from tocsin.parsers import PARSER_KINDS
from tocsin.records.priority import PriorityMatrix
from tocsin.rules.loader import load_rules
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
    target = silence.add_mutually_exclusive_group()
    target.add_argument("--config", type=Path, help="find the daemon (and a token) from this")
    target.add_argument("--url", help="the daemon's base URL (default http://127.0.0.1:8465)")
    silence.add_argument("--token", help="API token (default: $TOCSIN_TOKEN, or the config's)")
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
    add.add_argument("--author", default=os.environ.get("USER", ""), help="who (default $USER)")
    expire = action.add_parser("expire", help="end a silence now")
    expire.add_argument("id", help="the silence id (a unique prefix will do)")

    sub.add_parser("version", help="print the version")
    return parser


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

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
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
    if config_path is not None:
        try:
            config = load_config(config_path)
        except SourceError as exc:
            print(exc, file=sys.stderr)
            return EXIT_INVALID
        if not paths:
            paths = list(config.rule_paths)
    if not paths:
        print("tocsin check: give --config or rule paths", file=sys.stderr)
        return EXIT_USAGE
    ruleset = load_rules(paths, kinds=ACTION_KINDS)
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
    if args.config is not None:
        try:
            config = load_config(args.config)
        except SourceError as exc:
            print(exc, file=sys.stderr)
            return EXIT_INVALID
        rule_paths, priorities = list(config.rule_paths), config.priorities
        correlation = config.correlation
        muter = Muter(silences=SilenceBook(), windows=config.maintenance, inhibit=config.inhibit)
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
    ruleset = load_rules(rule_paths, kinds=ACTION_KINDS)
    for error in ruleset.errors:
        print(f"{error} (rule skipped)", file=sys.stderr)
    _tune_gc()
    summary = replay(
        args.files,
        ruleset=ruleset,
        priorities=priorities,
        correlation=correlation,
        muter=muter,
        parser=args.parser,
        year=args.year,
        tz=tz,
        fmt=args.format,
        out=sys.stdout,
    )
    sys.stdout.flush()
    print(summary.render(), file=sys.stderr)
    return EXIT_OK


def _silence(args: argparse.Namespace) -> int:
    from tocsin.client import ApiClient, ApiError  # noqa: PLC0415 - only this command needs it

    url = args.url or "http://127.0.0.1:8465"
    token = args.token or os.environ.get("TOCSIN_TOKEN")
    if args.config is not None:
        try:
            config = load_config(args.config)
        except SourceError as exc:
            print(exc, file=sys.stderr)
            return EXIT_INVALID
        host = "127.0.0.1" if config.http.host in ("0.0.0.0", "::", "") else config.http.host  # noqa: S104
        url = f"http://{host}:{config.http.port}"
        if token is None and config.http.tokens_file is not None:
            token = _first_token(config.http.tokens_file)
    client = ApiClient(base_url=url, token=token)
    try:
        if args.silence_command == "list":
            query = f"?state={args.state}" if args.state else ""
            _print_silences(client.call("GET", f"/api/v1/silences{query}")["silences"])
        elif args.silence_command == "add":
            body: dict[str, object] = {
                "matchers": args.matcher,
                "created_by": args.author,
                "comment": args.comment,
            }
            if args.starts:
                body["starts_at"] = args.starts
            body["duration" if args.duration else "ends_at"] = args.duration or args.ends
            created = client.call("POST", "/api/v1/silences", body)
            print(f"{created['id']}  {created['state']} until {created['ends_at']}")
        else:
            found = [
                s["id"]
                for s in client.call("GET", "/api/v1/silences")["silences"]
                if s["id"].startswith(args.id)
            ]
            if len(found) != 1:
                problem = "no silence" if not found else f"{len(found)} silences"
                print(f"tocsin silence: {problem} with id {args.id}", file=sys.stderr)
                return EXIT_INVALID
            ended = client.call("DELETE", f"/api/v1/silences/{found[0]}")
            print(f"{ended['id']}  {ended['state']} at {ended['ends_at']}")
    except ApiError as exc:
        print(f"tocsin silence: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def _first_token(path: Path) -> str | None:
    """The first token in a tokens file, if this user may read it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    return next((t.strip() for t in lines if t.strip() and not t.startswith("#")), None)


def _print_silences(silences: list[dict[str, object]]) -> None:
    print(f"{'ID':<8}  {'STATE':<7}  {'STARTS':<25}  {'ENDS':<25}  BY  COMMENT  MATCHERS")
    for s in silences:
        matchers = ", ".join(str(m) for m in s["matchers"])  # type: ignore[attr-defined]
        print(
            f"{str(s['id'])[:8]}  {s['state']!s:<7}  {s['starts_at']!s:<25}  {s['ends_at']!s:<25}  "
            f"{s['created_by']}  {s['comment']}  {matchers}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tocsin` console script."""
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run(args.config)
    if args.command == "check":
        return _check(args.config, args.rules)
    if args.command == "replay":
        return _replay(args)
    if args.command == "silence":
        return _silence(args)
    print(__version__)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
