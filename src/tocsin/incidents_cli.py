"""`tocsin incidents`, `tocsin oncall` and `tocsin token`: operators' commands for a running
daemon (output and exit codes as tocsin.console says)."""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import urlencode

from tocsin import console
from tocsin.client import ApiClient
from tocsin.records.priority import PRIORITIES
from tocsin.tokens import Role, TokenError, new_token, token_line

__all__ = ["add_commands"]

# `tocsin incidents <command> ID` -> the API action it posts.
_TRANSITIONS = {
    "ack": "acknowledge",
    "start": "start",
    "hold": "hold",
    "resolve": "resolve",
    "close": "close",
    "reopen": "reopen",
}


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `incidents`, `oncall` and `token` on the top-level parser."""
    target = console.target_options()

    incidents = sub.add_parser("incidents", help="list, show and work incidents on a daemon")
    command = incidents.add_subparsers(dest="incidents_command", required=True)
    listing = command.add_parser("list", parents=[target], help="list incidents, newest first")
    listing.add_argument(
        "--state", default="open", help="open (default), all, or states like new,on_hold"
    )
    listing.add_argument("--priority", help=f"e.g. P1 or P1,P2 ({', '.join(PRIORITIES)})")
    listing.add_argument("--service")
    listing.add_argument("--assignee")
    listing.add_argument("--group")
    listing.add_argument("--limit", type=int, default=100)
    show = command.add_parser("show", parents=[target], help="one incident and its timeline")
    show.add_argument("id", type=int)
    for name, action in _TRANSITIONS.items():
        move = command.add_parser(name, parents=[target], help=f"{action} an incident")
        move.add_argument("id", type=int)
        move.add_argument("--note", default="", help="why, for the timeline")
    assign = command.add_parser("assign", parents=[target], help="assign to a person or group")
    assign.add_argument("id", type=int)
    assign.add_argument("--to", help="the assignee")
    assign.add_argument("--group", help="the assignment group")
    assign.add_argument("--note", default="", help="why, for the timeline")
    comment = command.add_parser("comment", parents=[target], help="comment on an incident")
    comment.add_argument("id", type=int)
    comment.add_argument("text", nargs="+", help="the comment (words are joined by spaces)")
    incidents.set_defaults(remote=_incidents)

    oncall = sub.add_parser("oncall", parents=[target], help="who is on call in every schedule")
    oncall.add_argument("--at", help="epoch seconds or ISO 8601 with offset (default: now)")
    oncall.set_defaults(remote=_oncall)

    token = sub.add_parser("token", help="make API tokens")
    make = token.add_subparsers(dest="token_command", required=True)
    new = make.add_parser(
        "new", help="print a new token on stdout and its tokens-file line on stderr"
    )
    new.add_argument("--principal", required=True, help="who holds it: the actor on timelines")
    new.add_argument("--role", required=True, choices=[str(r) for r in Role])
    token.set_defaults(remote=_token)


def _token(args: argparse.Namespace) -> int:
    """Print a fresh token on stdout (for a script to capture) and, on stderr, the line for
    http.tokens_file: the line holds only a hash, so a terminal or log that sees it leaks
    nothing."""
    token = new_token()
    try:
        line = token_line(args.principal, Role.named(args.role), token)
    except TokenError as exc:
        print(f"tocsin token: {exc}", file=sys.stderr)
        return console.EXIT_USAGE
    print(token)
    sys.stdout.flush()
    print(line, file=sys.stderr)
    return console.EXIT_OK


def _incidents(args: argparse.Namespace) -> int:
    return console.run("incidents", args, lambda client, table: _work(client, args, table))


def _work(client: ApiClient, args: argparse.Namespace, table: bool) -> None:
    command = args.incidents_command
    if command == "list":
        query = {"state": args.state, "limit": args.limit}
        for key in ("priority", "service", "assignee", "group"):
            if getattr(args, key) is not None:
                query[key] = getattr(args, key)
        found = client.call("GET", f"/api/v1/incidents?{urlencode(query)}")
        console.emit(found, table, lambda: _incident_table(found["incidents"]))
        return
    path = f"/api/v1/incidents/{args.id}"
    if command == "show":
        incident = client.call("GET", path)
        console.emit(incident, table, lambda: _incident_card(incident))
        return
    if command in _TRANSITIONS:
        body: dict[str, Any] = {"note": args.note} if args.note else {}
        changed = client.call("POST", f"{path}/{_TRANSITIONS[command]}", body)
    elif command == "assign":
        if args.to is None and args.group is None:
            raise console.UsageError("give --to USER, --group GROUP or both")
        body = {"note": args.note} if args.note else {}
        if args.to is not None:
            body["assignee"] = args.to
        if args.group is not None:
            body["group"] = args.group
        changed = client.call("POST", f"{path}/assign", body)
    else:
        changed = client.call("POST", f"{path}/comments", {"text": " ".join(args.text)})
    console.emit(changed, table, lambda: _incident_line(changed))


def _oncall(args: argparse.Namespace) -> int:
    def work(client: ApiClient, table: bool) -> None:
        query = f"?{urlencode({'at': args.at})}" if args.at else ""
        found = client.call("GET", f"/api/v1/oncall{query}")
        rows = [
            [e["schedule"], e["on_call"] or "-", console.when(e["until"])] for e in found["oncall"]
        ]
        console.emit(found, table, lambda: console.table(["SCHEDULE", "ON CALL", "UNTIL"], rows))

    return console.run("oncall", args, work)


def _incident_table(incidents: list[dict[str, Any]]) -> str:
    if not incidents:
        return "no incidents"
    header = ["ID", "PRI", "STATE", "SERVICE", "ASSIGNEE", "LAST SEEN", "COUNT", "TITLE"]
    rows = [
        [
            str(i["id"]),
            i["priority"],
            i["state"],
            i["service"] or "-",
            i["assignee"] or "-",
            console.when(i["last_seen"]),
            str(i["count"]),
            i["title"],
        ]
        for i in incidents
    ]
    return console.table(header, rows)


def _incident_line(incident: dict[str, Any]) -> str:
    who = f", assigned to {incident['assignee']}" if incident["assignee"] else ""
    group = f" ({incident['group']})" if incident["group"] else ""
    return (
        f"incident {incident['id']}: {incident['state']}, {incident['priority']}{who}{group}"
        f" - {incident['title']}"
    )


def _incident_card(incident: dict[str, Any]) -> str:
    fields = [
        ("title", incident["title"]),
        ("state", incident["state"]),
        ("priority", f"{incident['priority']} (impact {incident['impact']}, "
                     f"urgency {incident['urgency']})"),
        ("service", incident["service"] or "-"),
        ("assignee", incident["assignee"] or "-"),
        ("group", incident["group"] or "-"),
        ("rule", f"{incident['rule']} [{incident['key']}]"),
        ("seen", f"{incident['count']}x, {console.when(incident['first_seen'])} .. "
                 f"{console.when(incident['last_seen'])}"),
        ("muted", incident["muted"] or "-"),
    ]  # fmt: skip
    card = [f"incident {incident['id']}"] + [f"  {k:<9} {v}" for k, v in fields]
    return "\n".join([*card, "", console.timeline(incident["timeline"])])
