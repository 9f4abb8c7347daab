"""`tocsin runs`, `tocsin remediation`, `tocsin problems` and `tocsin known-errors`: operators'
commands for remediation and problem management on a running daemon.

Same conventions as `tocsin incidents` (incidents_cli): tables on a terminal, the API's JSON
with --json or off one; exit 1 when the daemon refuses or cannot be reached, 2 for usage.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from typing import Any, TypeAlias
from urllib.parse import quote, urlencode

from tocsin.api.problems import ACTIONS as PROBLEM_ACTIONS
from tocsin.api.problems import PROBLEM_STATES
from tocsin.client import ApiClient
from tocsin.incidents_cli import _change, _emit, _run, _table, _UsageError, _when, target_options
from tocsin.model import RUN_STATES

__all__ = ["add_ops_commands"]

Sub: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

# Control characters: text from commands and events must not drive the terminal. A block of
# output keeps its newlines and tabs; a table cell or a line keeps none.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_IN_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def add_ops_commands(sub: Sub) -> None:
    """Register `runs`, `remediation`, `problems` and `known-errors` on the top-level parser."""
    target = target_options()
    _add_runs(sub, target)
    _add_problems(sub, target)

    remediation = sub.add_parser("remediation", help="stop or resume all remediation at once")
    switch = remediation.add_subparsers(dest="remediation_command", required=True)
    stop = switch.add_parser(
        "stop", parents=[target], help="engage the kill switch: nothing runs until resumed"
    )
    stop.add_argument("--why", required=True, help="what is wrong, for whoever resumes")
    switch.add_parser("resume", parents=[target], help="release the kill switch (needs admin)")
    switch.add_parser("status", parents=[target], help="whether the kill switch is engaged")
    remediation.set_defaults(remote=_remediation)

    known = sub.add_parser("known-errors", help="list, add and remove known errors on a daemon")
    command = known.add_subparsers(dest="known_command", required=True)
    command.add_parser("list", parents=[target], help="known errors from the config and the API")
    add = command.add_parser("add", parents=[target], help="record a known error")
    add.add_argument("name", help="1 to 64 letters, digits, '.', '_' or '-'")
    add.add_argument(
        "-m", "--matcher", action="append", required=True, help="e.g. service=db, rule=~disk-.*"
    )
    add.add_argument("--workaround", required=True, help="what to do until the cause is fixed")
    add.add_argument("--root-cause", default="")
    add.add_argument("--problem", type=int, help="the problem it belongs to")
    remove = command.add_parser("remove", parents=[target], help="remove an API-made one")
    remove.add_argument("name")
    known.set_defaults(remote=_known_errors)


def _add_runs(sub: Sub, target: argparse.ArgumentParser) -> None:
    runs = sub.add_parser("runs", help="remediation runs: list, show, approve or reject")
    command = runs.add_subparsers(dest="runs_command", required=True)
    listing = command.add_parser("list", parents=[target], help="list runs, newest first")
    listing.add_argument("--state", choices=RUN_STATES)
    listing.add_argument("--limit", type=int, default=100)
    show = command.add_parser("show", parents=[target], help="one run: its steps and result")
    show.add_argument("id", type=int)
    for verb in ("approve", "reject"):
        decide = command.add_parser(verb, parents=[target], help=f"{verb} a waiting run")
        decide.add_argument("id", type=int)
        decide.add_argument("--note", default="", help="why, for the record")
    runs.set_defaults(remote=_runs)


def _add_problems(sub: Sub, target: argparse.ArgumentParser) -> None:
    problems = sub.add_parser("problems", help="list, show and work problems on a daemon")
    command = problems.add_subparsers(dest="problems_command", required=True)
    listing = command.add_parser("list", parents=[target], help="list problems, newest first")
    listing.add_argument("--state", choices=PROBLEM_STATES)
    listing.add_argument("--limit", type=int, default=100)
    show = command.add_parser("show", parents=[target], help="one problem and its timeline")
    show.add_argument("id", type=int)
    create = command.add_parser("create", parents=[target], help="open a problem")
    create.add_argument("--title", required=True)
    create.add_argument("--service", default="")
    create.add_argument("--category", default="")
    create.add_argument(
        "--incident", type=int, action="append", default=[], help="link this incident (repeat)"
    )
    for action, to in PROBLEM_ACTIONS.items():
        said = "reopen a resolved problem" if to == "reopen" else f"move a problem to {to}"
        move = command.add_parser(action, parents=[target], help=said)
        move.add_argument("id", type=int)
        move.add_argument("--note", default="", help="why, for the timeline")
    link = command.add_parser("link", parents=[target], help="link an incident to a problem")
    link.add_argument("id", type=int)
    link.add_argument("incident", type=int)
    update = command.add_parser("update", parents=[target], help="set root cause, workaround...")
    update.add_argument("id", type=int)
    update.add_argument("--root-cause", help='"" clears it')
    update.add_argument("--workaround", help='"" clears it')
    update.add_argument("--owner", help='"" clears it')
    update.add_argument("--title")
    problems.set_defaults(remote=_problems)


def _runs(args: argparse.Namespace) -> int:
    def work(client: ApiClient, table: bool) -> None:
        command = args.runs_command
        if command == "list":
            query = {"limit": args.limit, **({"state": args.state} if args.state else {})}
            found = client.call("GET", f"/api/v1/runs?{urlencode(query)}")
            _emit(found, table, lambda: _run_table(found["runs"]))
            return
        path = f"/api/v1/runs/{args.id}"
        if command == "show":
            run = client.call("GET", path)
            _emit(run, table, lambda: _run_card(run))
            return
        body = {"note": args.note} if args.note else {}
        run = client.call("POST", f"{path}/{command}", body)
        _emit(run, table, lambda: _run_line(run))

    return _run("runs", args, work)


def _remediation(args: argparse.Namespace) -> int:
    def work(client: ApiClient, table: bool) -> None:
        path = "/api/v1/remediation/kill-switch"
        command = args.remediation_command
        if command == "stop":
            switch = client.call("POST", path, {"why": args.why})
        elif command == "resume":
            switch = client.call("DELETE", path)
        else:
            switch = client.call("GET", path)
        _emit(switch, table, lambda: _switch_line(switch))

    return _run("remediation", args, work)


def _problems(args: argparse.Namespace) -> int:
    def work(client: ApiClient, table: bool) -> None:
        command = args.problems_command
        if command == "list":
            query = {"limit": args.limit, **({"state": args.state} if args.state else {})}
            found = client.call("GET", f"/api/v1/problems?{urlencode(query)}")
            _emit(found, table, lambda: _problem_table(found["problems"]))
            return
        if command == "create":
            body = {"title": args.title, "service": args.service, "category": args.category}
            changed = client.call("POST", "/api/v1/problems", {**body, "incidents": args.incident})
            _emit(changed, table, lambda: _problem_line(changed))
            return
        path = f"/api/v1/problems/{args.id}"
        if command == "show":
            problem = client.call("GET", path)
            _emit(problem, table, lambda: _problem_card(problem))
            return
        if command in PROBLEM_ACTIONS:
            changed = client.call(
                "POST", f"{path}/{command}", {"note": args.note} if args.note else {}
            )
        elif command == "link":
            changed = client.call("POST", f"{path}/incidents", {"incident": args.incident})
        else:
            changed = client.call("PATCH", path, _changes(args))
        _emit(changed, table, lambda: _problem_line(changed))

    return _run("problems", args, work)


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    """The PATCH body of `problems update`: only what was given; an empty owner clears it."""
    given = {
        key: getattr(args, key)
        for key in ("root_cause", "workaround", "owner", "title")
        if getattr(args, key) is not None
    }
    if not given:
        raise _UsageError("give --root-cause, --workaround, --owner or --title")
    if given.get("owner") == "":
        given["owner"] = None
    return given


def _known_errors(args: argparse.Namespace) -> int:
    def work(client: ApiClient, table: bool) -> None:
        command = args.known_command
        if command == "list":
            found = client.call("GET", "/api/v1/known-errors")
            _emit(found, table, lambda: _known_table(found["known_errors"]))
            return
        if command == "add":
            body = {
                "name": args.name,
                "matchers": args.matcher,
                "workaround": args.workaround,
                "root_cause": args.root_cause,
                "problem": args.problem,
            }
            known = client.call("POST", "/api/v1/known-errors", body)
        else:
            known = client.call("DELETE", f"/api/v1/known-errors/{quote(args.name, safe='')}")
        verb = "removed" if command == "remove" else "added"
        _emit(known, table, lambda: f"known error {known['name']} {verb}")

    return _run("known-errors", args, work)


def _escape(found: re.Match[str]) -> str:
    return f"\\x{ord(found.group()):02x}"


def _printable(text: str) -> str:
    """Text for one line or cell, control characters (newlines too) shown, not obeyed."""
    return _CONTROL_IN_LINE.sub(_escape, text)


def _block(text: str) -> str:
    """Lines of output, control characters other than newline and tab shown, not obeyed."""
    return _CONTROL.sub(_escape, text)


def _step(step: dict[str, Any]) -> str:
    """A rendered step on one line: argv lists shell-quoted, so separate words stay visible."""
    parts = []
    for key, value in step.items():
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            shown = shlex.join(value)
        elif isinstance(value, str):
            shown = value
        else:
            shown = json.dumps(value, ensure_ascii=False)
        parts.append(f"{key} {shown}")
    return _printable("  ".join(parts))


def _run_table(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return "no runs"
    header = ["ID", "STATE", "RUNBOOK", "TARGET", "RULE", "INCIDENT", "CREATED", "REASON"]
    rows = [
        [
            str(r["id"]),
            r["state"],
            r["runbook"],
            _printable(r["target"]) or "-",
            r["rule"],
            str(r["incident"] or "-"),
            _when(r["created_at"]),
            _printable(r["reason"]) or "-",
        ]
        for r in runs
    ]
    return _table(header, rows)


def _run_line(run: dict[str, Any]) -> str:
    reason = f" - {_printable(run['reason'])}" if run["reason"] else ""
    return (
        f"run {run['id']}: {run['state']} ({run['runbook']} on {_printable(run['target'])}){reason}"
    )


def _run_card(run: dict[str, Any]) -> str:
    result = run["result"] or {}
    exit_status = result.get("exit")
    outcome = _printable(str(result.get("summary") or "-"))
    if exit_status is not None:
        outcome += f" (exit {exit_status})"
    fields = [
        ("runbook", run["runbook"]),
        ("state", run["state"]),
        ("reason", _printable(run["reason"]) or "-"),
        ("rule", f"{run['rule']} [{_printable(run['key'])}]"),
        ("target", _printable(run["target"]) or "-"),
        ("incident", str(run["incident"] or "-")),
        ("created", _when(run["created_at"])),
        ("started", _when(run["started_at"])),
        ("finished", _when(run["finished_at"])),
        ("result", outcome),
    ]
    if run.get("expires_at"):
        fields.append(("approve by", _when(run["expires_at"])))
    if run.get("decided_by"):
        fields.append(("decided by", run["decided_by"]))
    card = [f"run {run['id']}"] + [f"  {k:<10} {v}" for k, v in fields]
    steps = [[str(n), _step(step)] for n, step in enumerate(run["steps"], 1)]
    card += ["", _table(["STEP", "WHAT"], steps) if steps else "no steps"]
    output = result.get("output")
    if output:
        card += ["", "output:", _block(str(output)).rstrip("\n")]
    return "\n".join(card)


def _switch_line(switch: dict[str, Any]) -> str:
    if switch["engaged"]:
        return (
            f"remediation is STOPPED: kill switch engaged by {switch['by']} at "
            f"{_when(switch['at'])}: {switch['why']}"
        )
    if switch["by"]:
        return f"remediation runs: kill switch released by {switch['by']} at {_when(switch['at'])}"
    return "remediation runs: the kill switch is not engaged"


def _problem_table(problems: list[dict[str, Any]]) -> str:
    if not problems:
        return "no problems"
    header = ["ID", "STATE", "SERVICE", "OWNER", "INCIDENTS", "OPENED", "TITLE"]
    rows = [
        [
            str(p["id"]),
            p["state"],
            p["service"] or "-",
            p["owner"] or "-",
            str(p["incident_count"]),
            _when(p["opened_at"]),
            _printable(p["title"]),
        ]
        for p in problems
    ]
    return _table(header, rows)


def _problem_line(problem: dict[str, Any]) -> str:
    owner = f", owned by {problem['owner']}" if problem["owner"] else ""
    linked = problem["incident_count"]
    return (
        f"problem {problem['id']}: {problem['state']}{owner}, {linked} "
        f"incident{'' if linked == 1 else 's'} - {_printable(problem['title'])}"
    )


def _problem_card(problem: dict[str, Any]) -> str:
    fields = [
        ("title", _printable(problem["title"])),
        ("state", problem["state"]),
        ("service", problem["service"] or "-"),
        ("category", problem["category"] or "-"),
        ("owner", problem["owner"] or "-"),
        ("incidents", ", ".join(str(i) for i in problem["incidents"]) or "-"),
        ("opened", _when(problem["opened_at"])),
        ("known as", problem["known_error"] or "-"),
    ]
    card = [f"problem {problem['id']}"] + [f"  {k:<10} {v}" for k, v in fields]
    for heading, key in (("root cause", "root_cause"), ("workaround", "workaround")):
        text = _block(problem[key]).strip("\n") or "-"
        card += ["", f"{heading}:", *(f"  {line}" for line in text.splitlines())]
    timeline = [
        [_when(e["time"]), e["kind"], e["actor"], _change(e), _printable(e["note"])]
        for e in problem["timeline"]
    ]
    return "\n".join([*card, "", _table(["TIME", "KIND", "ACTOR", "CHANGE", "NOTE"], timeline)])


def _known_table(known: list[dict[str, Any]]) -> str:
    if not known:
        return "no known errors"
    header = ["NAME", "SOURCE", "PROBLEM", "MATCHERS", "WORKAROUND"]
    rows = [
        [
            k["name"],
            k["source"],
            str(k["problem"] or "-"),
            _printable(", ".join(k["matchers"])),
            _printable(k["workaround"].splitlines()[0] if k["workaround"] else "-"),
        ]
        for k in known
    ]
    return _table(header, rows)
