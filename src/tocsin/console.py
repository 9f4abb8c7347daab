"""What every daemon-facing command shares: finding the daemon, exit codes, and output.

Tables on a terminal; JSON with --json or when stdout is not a terminal, so scripts get data.
Exit 1 when the daemon refuses or cannot be reached, 2 for usage and local setup problems.
Text from events and commands is shown, never obeyed: control characters print as escapes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

from tocsin.client import ApiClient, ApiError, TargetError, find_target

__all__ = [
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "Sub",
    "UsageError",
    "block",
    "change",
    "emit",
    "list_and_show",
    "printable",
    "run",
    "table",
    "target_options",
    "timeline",
    "when",
]

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2

Sub: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

# Control characters: text from commands and events must not drive the terminal. A block of
# output keeps its newlines and tabs; a table cell or a line keeps none.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_IN_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class UsageError(Exception):
    """The command line cannot be run as given; exit 2."""


def target_options() -> argparse.ArgumentParser:
    """The options every command that talks to a daemon takes (a parent parser)."""
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument("--url", help="the daemon's base URL (else $TOCSIN_URL, client.yaml)")
    target.add_argument(
        "--token-file", type=Path, help="a file with your token (else $TOCSIN_TOKEN, client.yaml)"
    )
    target.add_argument("--json", action="store_true", help="print JSON even on a terminal")
    return target


def list_and_show(
    command: Sub,
    target: argparse.ArgumentParser,
    *,
    noun: str,
    states: Sequence[str],
    show_help: str,
    listing: str = "list",
) -> argparse.ArgumentParser:
    """Add the `list` (--state, --limit) and `show ID` commands of a kind of record; return
    the list parser for the kind's own filters."""
    found = command.add_parser(listing, parents=[target], help=f"list {noun}, newest first")
    found.add_argument("--state", choices=states)
    found.add_argument("--limit", type=int, default=100)
    show = command.add_parser("show", parents=[target], help=show_help)
    show.add_argument("id", type=int)
    return found


def _client(args: argparse.Namespace) -> ApiClient:
    try:
        target = find_target(url=args.url, token_file=args.token_file, env=os.environ)
    except TargetError as exc:
        raise UsageError(str(exc)) from None
    return ApiClient(base_url=target.url, token=target.token)


def run(name: str, args: argparse.Namespace, work: Callable[[ApiClient, bool], None]) -> int:
    """Run `work` with a client and whether to print tables; map failures to exit codes."""
    try:
        work(_client(args), not args.json and sys.stdout.isatty())
    except UsageError as exc:
        print(f"tocsin {name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ApiError as exc:
        print(f"tocsin {name}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


def emit(data: Any, table: bool, render: Callable[[], str]) -> None:
    """Print the table or line `render` makes on a terminal, else the data as JSON."""
    print(render() if table else json.dumps(data, indent=2, ensure_ascii=False))


def when(iso: str | None) -> str:
    """An API time as a short UTC time for a table."""
    if iso is None:
        return "-"
    moment = datetime.datetime.fromisoformat(iso).astimezone(datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell (the last one is not padded), cells printable."""
    cells = [[printable(str(cell)) for cell in row] for row in (header, *rows)]
    widths = [max(len(cell) for cell in column) for column in zip(*cells, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def timeline(entries: Sequence[dict[str, Any]]) -> str:
    """A record's timeline (incident, problem, request) as a table, oldest first."""
    rows = [[when(e["time"]), e["kind"], e["actor"], change(e), e["note"]] for e in entries]
    return table(["TIME", "KIND", "ACTOR", "CHANGE", "NOTE"], rows)


def change(entry: dict[str, Any]) -> str:
    """A timeline entry's move, like `new -> acknowledged`, or its one state."""
    if entry["from"] is None or entry["from"] == entry["to"]:
        return str(entry["to"])
    return f"{entry['from']} -> {entry['to']}"


def _escape(found: re.Match[str]) -> str:
    return f"\\x{ord(found.group()):02x}"


def printable(text: str) -> str:
    """Text for one line or cell, control characters (newlines too) shown, not obeyed."""
    return _CONTROL_IN_LINE.sub(_escape, text)


def block(text: str) -> str:
    """Lines of output, control characters other than newline and tab shown, not obeyed."""
    return _CONTROL.sub(_escape, text)
