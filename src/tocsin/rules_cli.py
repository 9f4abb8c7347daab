"""`tocsin explain` and `tocsin rules`: what the rules make of one event, offline, and what
each rule of a running daemon has done since it started (SEC's dump, per-rule figures).

`tocsin rules` follows the daemon commands' conventions (console): a table on a terminal, the
API's JSON with --json or off one; exit 1 when the daemon refuses or cannot be reached.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tocsin import console
from tocsin.client import ApiClient
from tocsin.parsers import PARSER_KINDS

__all__ = ["add_rule_commands"]

_SORTS = {
    "order": None,
    "matches": lambda rule: -rule["matches"],
    "time": lambda rule: -rule["eval_seconds"],
}


def add_rule_commands(sub: console.Sub) -> None:
    """Register `explain` and `rules` on the top-level parser."""
    command = sub.add_parser(
        "explain",
        help="show which rules an event matches, why the others do not, and what would happen",
    )
    source = command.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="the daemon's config: rules, muting, routing")
    source.add_argument("--rules", type=Path, action="append", help="a rule file or folder")
    event = command.add_mutually_exclusive_group(required=True)
    event.add_argument("--line", help="a log line ('-': read it from stdin)")
    event.add_argument("--event", help='a JSON event: {"message": ..., "fields": {...}}')
    event.add_argument("--trap", help="a v2c trap: 'IF-MIB::linkDown ifIndex=3 ifDescr=Gi0/3'")
    command.add_argument("--parser", choices=PARSER_KINDS, default="auto", help="for --line")
    command.add_argument("--year", type=int, help="for --line: the year of a BSD syslog stamp")
    command.add_argument("--timezone", help="for --line: the zone of local timestamps")
    command.add_argument("--agent", default="192.0.2.1", help="for --trap: who sent it")
    command.add_argument("--community", default="public", help="for --trap")
    command.add_argument("--at", help="judge the event at this time: ISO 8601 or epoch seconds")
    command.add_argument("--url", help="ask this running daemon for its silences")
    command.add_argument("--token-file", type=Path, help="a file with a token for --url")
    command.add_argument("--json", action="store_true", help="print JSON")

    listing = sub.add_parser(
        "rules",
        parents=[console.target_options()],
        help="the running daemon's rules: matches, actions and evaluation time of each",
    )
    listing.add_argument(
        "--sort", choices=tuple(_SORTS), default="order", help="most matches or time first"
    )
    listing.set_defaults(remote=_rules)


def _rules(args: argparse.Namespace) -> int:
    def work(client: ApiClient, table: bool) -> None:
        found = client.call("GET", "/api/v1/rules")
        order = _SORTS[args.sort]
        if order is not None:
            found["rules"].sort(key=order)  # stable: ties keep the load order
        console.emit(found, table, lambda: _rule_table(found["rules"]))

    return console.run("rules", args, work)


def _rule_table(rules: list[dict[str, Any]]) -> str:
    rows = [
        [
            rule["id"],
            rule["kind"],
            str(rule["evaluated"]),
            str(rule["matches"]),
            str(rule["actions"]),
            f"{rule['eval_seconds']:.3f}",
            "-" if rule["eval_us_per_event"] is None else f"{rule['eval_us_per_event']:.1f}",
            rule["where"],
        ]
        for rule in rules
    ]
    header = ("RULE", "KIND", "EVALUATED", "MATCHES", "ACTIONS", "TIME S", "US/EVENT", "WHERE")
    return console.table(header, rows) if rows else "no rules loaded"
