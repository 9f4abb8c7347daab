"""`tocsin requests` and `tocsin access`: service requests from the catalog and temporary
access grants on a running daemon.

Same conventions as `tocsin incidents` (incidents_cli): tables on a terminal, the API's JSON
with --json or off one; exit 1 when the daemon refuses or cannot be reached (or the access
policy denies), 2 for usage.
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import urlencode

from tocsin import console
from tocsin.api.access import AUDIT_ACTIONS, GRANT_STATES
from tocsin.api.requests import REQUEST_ACTIONS, REQUEST_STATES
from tocsin.client import ApiClient, ApiError
from tocsin.rules.schema import format_duration

__all__ = ["add_service_commands"]


def add_service_commands(sub: console.Sub) -> None:
    """Register `requests` and `access` on the top-level parser."""
    target = console.target_options()
    _add_requests(sub, target)
    _add_access(sub, target)


def _add_requests(sub: console.Sub, target: argparse.ArgumentParser) -> None:
    requests = sub.add_parser("requests", help="the service catalog and service requests")
    command = requests.add_subparsers(dest="requests_command", required=True)
    command.add_parser("catalog", parents=[target], help="what may be requested")
    console.list_and_show(
        command, target, noun="requests", states=REQUEST_STATES,
        show_help="one request and its timeline",
    )  # fmt: skip
    submit = command.add_parser("submit", parents=[target], help="request a catalog item")
    submit.add_argument("item")
    submit.add_argument("input", nargs="*", metavar="FIELD=VALUE", help="the item's input")
    for action in REQUEST_ACTIONS:
        decide = command.add_parser(action, parents=[target], help=f"{action} a request")
        decide.add_argument("id", type=int)
        decide.add_argument("--note", default="", help="why, for the timeline")
    requests.set_defaults(remote=_requests)


def _add_access(sub: console.Sub, target: argparse.ArgumentParser) -> None:
    access = sub.add_parser("access", help="temporary access grants and their audit log")
    command = access.add_subparsers(dest="access_command", required=True)
    grants = console.list_and_show(
        command, target, noun="grants", states=GRANT_STATES, show_help="one grant",
        listing="grants",
    )  # fmt: skip
    grants.add_argument("--subject")
    grants.add_argument("--role")
    ask = command.add_parser("request", parents=[target], help="ask for a role for a subject")
    ask.add_argument("role")
    ask.add_argument("subject")
    ask.add_argument("--for", dest="duration", help="like 2h (default: the role's longest)")
    approve = command.add_parser("approve", parents=[target], help="approve a pending grant")
    approve.add_argument("id", type=int)
    reject = command.add_parser("reject", parents=[target], help="reject a pending grant")
    reject.add_argument("id", type=int)
    reject.add_argument("--why", default="", help="for the audit log")
    revoke = command.add_parser("revoke", parents=[target], help="remove a subject's grant")
    revoke.add_argument("role", help='an access role, or "*" for every grant of the subject')
    revoke.add_argument("subject")
    revoke.add_argument("--why", required=True, help="for the audit log")
    audit = command.add_parser("audit", parents=[target], help="the audit log, newest first")
    audit.add_argument("--subject")
    audit.add_argument("--role")
    audit.add_argument("--action", choices=AUDIT_ACTIONS)
    audit.add_argument("--since", help="epoch seconds or ISO 8601 with offset")
    audit.add_argument("--until", help="epoch seconds or ISO 8601 with offset")
    audit.add_argument("--limit", type=int, default=100)
    access.set_defaults(remote=_access)


def _query(args: argparse.Namespace, keys: tuple[str, ...]) -> str:
    """The query string of the options given."""
    return urlencode({k: getattr(args, k) for k in keys if getattr(args, k) is not None})


def _requests(args: argparse.Namespace) -> int:
    def work(client: ApiClient, table: bool) -> None:
        command = args.requests_command
        if command == "catalog":
            found = client.call("GET", "/api/v1/catalog")
            console.emit(found, table, lambda: _catalog_table(found["items"]))
            return
        if command == "list":
            found = client.call("GET", f"/api/v1/requests?{_query(args, ('state', 'limit'))}")
            console.emit(found, table, lambda: _request_table(found["requests"]))
            return
        if command == "submit":
            body = {"item": args.item, "input": _input(client, args.item, args.input)}
            made = client.call("POST", "/api/v1/requests", body)
            console.emit(made, table, lambda: _request_line(made))
            return
        path = f"/api/v1/requests/{args.id}"
        if command == "show":
            found = client.call("GET", path)
            console.emit(found, table, lambda: _request_card(found))
            return
        changed = client.call("POST", f"{path}/{command}", {"note": args.note} if args.note else {})
        console.emit(changed, table, lambda: _request_line(changed))

    return console.run("requests", args, work)


def _input(client: ApiClient, item: str, pairs: list[str]) -> dict[str, Any]:
    """FIELD=VALUE words as the item's input: integers and true/false where its fields say
    so; the daemon checks the rest."""
    given: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise console.UsageError(f"give the input as FIELD=VALUE, not {pair!r}")
        if name in given:
            raise console.UsageError(f"{name} is given twice")
        given[name] = value
    if not given:
        return {}
    items = {i["name"]: i for i in client.call("GET", "/api/v1/catalog")["items"]}
    types = {f["name"]: f["type"] for f in items.get(item, {"fields": []})["fields"]}
    data: dict[str, Any] = dict(given)
    for name, value in given.items():
        if types.get(name) == "integer" and value.strip().lstrip("+-").isdigit():
            data[name] = int(value)
        elif types.get(name) == "boolean" and value.lower() in ("true", "false"):
            data[name] = value.lower() == "true"
    return data


def _access(args: argparse.Namespace) -> int:
    def work(client: ApiClient, table: bool) -> None:
        command = args.access_command
        if command == "grants":
            query = _query(args, ("state", "subject", "role", "limit"))
            found = client.call("GET", f"/api/v1/access/grants?{query}")
            console.emit(found, table, lambda: _grant_table(found["grants"]))
        elif command == "audit":
            query = _query(args, ("subject", "role", "action", "since", "until", "limit"))
            found = client.call("GET", f"/api/v1/access/audit?{query}")
            console.emit(found, table, lambda: _audit_table(found["audit"]))
        elif command == "request":
            body = {"role": args.role, "subject": args.subject}
            if args.duration is not None:
                body["duration"] = args.duration
            decided = client.call("POST", "/api/v1/access/requests", body)
            console.emit(decided, table, lambda: _decision(decided, decided["grant"]))
            _denied(decided, "request")
        elif command == "revoke":
            body = {"role": args.role, "subject": args.subject, "why": args.why}
            decided = client.call("POST", "/api/v1/access/revoke", body)
            console.emit(decided, table, lambda: _revocation(decided))
            _denied(decided, "revoke")
        elif command == "show":
            found = client.call("GET", f"/api/v1/access/grants/{args.id}")
            console.emit(found, table, lambda: _grant_card(found))
        else:
            path = f"/api/v1/access/grants/{args.id}/{command}"
            changed = client.call("POST", path, {"why": args.why} if command == "reject" else {})
            console.emit(changed, table, lambda: _grant_line(changed))

    return console.run("access", args, work)


def _denied(decided: dict[str, Any], what: str) -> None:
    """Exit 1 when the policy said no (the answer is printed first, for the reason)."""
    if decided["verdict"] == "denied":
        raise ApiError(f"the {what} was denied")


def _catalog_table(items: list[dict[str, Any]]) -> str:
    if not items:
        return "no catalog items"
    header = ["ITEM", "APPROVAL", "SLA", "FIELDS", "DESCRIPTION"]
    rows = [
        [
            i["name"],
            i["approval"] or "-",
            format_duration(i["sla"]) if i["sla"] else "-",
            ", ".join(_field(f) for f in i["fields"]) or "-",
            console.printable(i["description"]) or "-",
        ]
        for i in items
    ]
    return console.table(header, rows)


def _field(spec: dict[str, Any]) -> str:
    """A field as `name:type`, starred when required: size:integer*."""
    return f"{spec['name']}:{spec['type']}{'*' if spec['required'] else ''}"


def _request_table(requests: list[dict[str, Any]]) -> str:
    if not requests:
        return "no requests"
    header = ["ID", "STATE", "ITEM", "REQUESTED BY", "OPENED", "DUE"]
    rows = [
        [
            str(r["id"]),
            r["state"],
            r["item"],
            console.printable(r["requested_by"]),
            console.when(r["opened_at"]),
            console.when(r["due_at"]) + (" (late)" if r["sla_breached"] else ""),
        ]
        for r in requests
    ]
    return console.table(header, rows)


def _request_line(request: dict[str, Any]) -> str:
    reason = f" - {console.printable(request['reason'])}" if request["reason"] else ""
    return f"request {request['id']}: {request['state']} ({request['item']}){reason}"


def _request_card(request: dict[str, Any]) -> str:
    fields = [
        ("item", request["item"]),
        ("state", request["state"]),
        (
            "by",
            console.printable(f"{request['requested_by']} ({request['source']})"),
        ),
        ("opened", console.when(request["opened_at"])),
        ("due", console.when(request["due_at"]) + (" (late)" if request["sla_breached"] else "")),
        ("approval", request["approval"] or "-"),
        ("decided", console.printable(request["decided_by"]) or "-"),
        ("run", str(request["run_id"] or "-")),
        ("reason", console.printable(request["reason"]) or "-"),
    ]
    card = [f"request {request['id']}"] + [f"  {k:<9} {v}" for k, v in fields]
    data = [
        [console.printable(str(k)), console.printable(str(v))] for k, v in request["input"].items()
    ]
    card += ["", console.table(["FIELD", "VALUE"], data) if data else "no input"]
    return "\n".join([*card, "", console.timeline(request["timeline"])])


def _grant_table(grants: list[dict[str, Any]]) -> str:
    if not grants:
        return "no grants"
    header = ["ID", "STATE", "ROLE", "SUBJECT", "REQUESTED BY", "EXPIRES"]
    rows = [
        [
            str(g["id"]),
            g["state"],
            g["role"],
            console.printable(g["subject"]),
            console.printable(g["requested_by"]),
            console.when(g["expires_at"]),
        ]
        for g in grants
    ]
    return console.table(header, rows)


def _grant_line(grant: dict[str, Any]) -> str:
    until = f" until {console.when(grant['expires_at'])}" if grant["expires_at"] else ""
    why = f" - {console.printable(grant['why'])}" if grant["why"] else ""
    return (
        f"grant {grant['id']}: {grant['state']} ({grant['role']} for "
        f"{console.printable(grant['subject'])}{until}){why}"
    )


def _grant_card(grant: dict[str, Any]) -> str:
    fields = [
        ("role", grant["role"]),
        ("subject", console.printable(grant["subject"])),
        ("state", grant["state"]),
        ("rights", ", ".join(grant["rights"]) or "-"),
        (
            "asked by",
            f"{console.printable(grant['requested_by'])} at {console.when(grant['requested_at'])}",
        ),
        ("for", format_duration(grant["duration"])),
        ("approve by", console.when(grant["approve_by"])),
        ("granted by", console.printable(grant["granted_by"]) or "-"),
        ("granted", console.when(grant["granted_at"])),
        ("expires", console.when(grant["expires_at"])),
        ("ended", console.when(grant["ended_at"])),
        ("why", console.printable(grant["why"]) or "-"),
    ]
    return "\n".join([f"grant {grant['id']}"] + [f"  {k:<10} {v}" for k, v in fields])


def _decision(decided: dict[str, Any], grant: dict[str, Any] | None) -> str:
    said = f"{decided['verdict']}: {console.printable(decided['reason'])}"
    return said if grant is None else f"{said}\n{_grant_line(grant)}"


def _revocation(decided: dict[str, Any]) -> str:
    lines = [f"{decided['verdict']}: {console.printable(decided['reason'])}"]
    return "\n".join(lines + [_grant_line(g) for g in decided["grants"]])


def _audit_table(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "no audit entries"
    header = ["TIME", "ACTION", "ROLE", "SUBJECT", "BY", "GRANT", "WHY"]
    rows = [
        [
            console.when(e["time"]),
            e["action"],
            console.printable(e["role"]),
            console.printable(e["subject"]),
            console.printable(e["by"]),
            str(e["grant"] or "-"),
            console.printable(e["why"]),
        ]
        for e in entries
    ]
    return console.table(header, rows)
