"""`tocsin runs`, `tocsin remediation`, `tocsin problems` and `tocsin known-errors`: operators'
commands for remediation and problem management on a running daemon.

Same conventions as `tocsin incidents` (incidents_cli): tables on a terminal, the API's JSON
with --json or off one; exit 1 when the daemon refuses or cannot be reached, 2 for usage.
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote, urlencode

from tocsin import console
from tocsin.api.problems import ACTIONS as PROBLEM_ACTIONS
from tocsin.api.problems import PROBLEM_STATES
from tocsin.client import ApiClient
from tocsin.model import RUN_STATES

__all__ = ["add_ops_commands"]


def add_ops_commands(sub: console.Sub) -> None:
    """Register `runs`, `remediation`, `problems` and `known-errors` on the top-level parser."""
    target = console.target_options()
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


def _add_runs(sub: console.Sub, target: argparse.ArgumentParser) -> None:
    runs = sub.add_parser("runs", help="remediation runs: list, show, approve or reject")
    command = runs.add_subparsers(dest="runs_command", required=True)
    console.list_and_show(
        command, target, noun="runs", states=RUN_STATES, show_help="one run: its steps and result"
    )
    for verb in ("approve", "reject"):
        decide = command.add_parser(verb, parents=[target], help=f"{verb} a waiting run")
        decide.add_argument("id", type=int)
        decide.add_argument("--note", default="", help="why, for the record")
    runs.set_defaults(remote=_runs)


def _add_problems(sub: console.Sub, target: argparse.ArgumentParser) -> None:
    problems = sub.add_parser("problems", help="list, show and work problems on a daemon")
    command = problems.add_subparsers(dest="problems_command", required=True)
    console.list_and_show(
        command, target, noun="problems", states=PROBLEM_STATES,
        show_help="one problem and its timeline",
    )  # fmt: skip
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
            console.emit(found, table, lambda: _run_table(found["runs"]))
            return
        path = f"/api/v1/runs/{args.id}"
        if command == "show":
            run = client.call("GET", path)
            console.emit(run, table, lambda: _run_card(run))
            return
        body = {"note": args.note} if args.note else {}
        run = client.call("POST", f"{path}/{command}", body)
        console.emit(run, table, lambda: _run_line(run))

    return console.run("runs", args, work)


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
        console.emit(switch, table, lambda: _switch_line(switch))

    return console.run("remediation", args, work)


def _problems(args: argparse.Namespace) -> int:
    def work(client: ApiClient, table: bool) -> None:
        command = args.problems_command
        if command == "list":
            query = {"limit": args.limit, **({"state": args.state} if args.state else {})}
            found = client.call("GET", f"/api/v1/problems?{urlencode(query)}")
            console.emit(found, table, lambda: _problem_table(found["problems"]))
            return
        if command == "create":
            body = {"title": args.title, "service": args.service, "category": args.category}
            changed = client.call("POST", "/api/v1/problems", {**body, "incidents": args.incident})
            console.emit(changed, table, lambda: _problem_line(changed))
            return
        path = f"/api/v1/problems/{args.id}"
        if command == "show":
            problem = client.call("GET", path)
            console.emit(problem, table, lambda: _problem_card(problem))
            return
        if command in PROBLEM_ACTIONS:
            changed = client.call(
                "POST", f"{path}/{command}", {"note": args.note} if args.note else {}
            )
        elif command == "link":
            changed = client.call("POST", f"{path}/incidents", {"incident": args.incident})
        else:
            changed = client.call("PATCH", path, _changes(args))
        console.emit(changed, table, lambda: _problem_line(changed))

    return console.run("problems", args, work)


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    """The PATCH body of `problems update`: only what was given; an empty owner clears it."""
    given = {
        key: getattr(args, key)
        for key in ("root_cause", "workaround", "owner", "title")
        if getattr(args, key) is not None
    }
    if not given:
        raise console.UsageError("give --root-cause, --workaround, --owner or --title")
    if given.get("owner") == "":
        given["owner"] = None
    return given


def _known_errors(args: argparse.Namespace) -> int:
    def work(client: ApiClient, table: bool) -> None:
        command = args.known_command
        if command == "list":
            found = client.call("GET", "/api/v1/known-errors")
            console.emit(found, table, lambda: _known_table(found["known_errors"]))
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
        console.emit(known, table, lambda: f"known error {known['name']} {verb}")

    return console.run("known-errors", args, work)


def _run_table(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return "no runs"
    header = ["ID", "STATE", "RUNBOOK", "TARGET", "RULE", "INCIDENT", "CREATED", "REASON"]
    rows = [
        [
            str(r["id"]),
            r["state"],
            r["runbook"],
            console.printable(r["target"]) or "-",
            r["rule"],
            str(r["incident"] or "-"),
            console.when(r["created_at"]),
            console.printable(r["reason"]) or "-",
        ]
        for r in runs
    ]
    return console.table(header, rows)


def _run_line(run: dict[str, Any]) -> str:
    reason = f" - {console.printable(run['reason'])}" if run["reason"] else ""
    target = console.printable(run["target"])
    return f"run {run['id']}: {run['state']} ({run['runbook']} on {target}){reason}"


def _run_card(run: dict[str, Any]) -> str:
    result = run["result"] or {}
    fields = [
        ("runbook", run["runbook"]),
        ("state", run["state"]),
        ("reason", console.printable(run["reason"]) or "-"),
        ("rule", f"{run['rule']} [{console.printable(run['key'])}]"),
        ("target", console.printable(run["target"]) or "-"),
        ("incident", str(run["incident"] or "-")),
        ("created", console.when(run["created_at"])),
        ("started", console.when(run["started_at"])),
        ("finished", console.when(run["finished_at"])),
        ("result", console.printable(str(result.get("summary") or "-"))),
    ]
    if run.get("expires_at"):
        fields.append(("approve by", console.when(run["expires_at"])))
    if run.get("decided_by"):
        fields.append(("decided by", run["decided_by"]))
    card = [f"run {run['id']}"] + [f"  {k:<10} {v}" for k, v in fields]
    steps = [[str(n), step] for n, step in enumerate(run["steps"], 1)]
    card += ["", console.table(["STEP", "WHAT"], steps) if steps else "no steps"]
    done = result.get("steps") or []
    if done:  # the last step's output: the one that failed, or the one that finished the run
        last = done[-1]
        output = "\n".join(p for p in (last["stdout"], last["stderr"], last["response"]) if p)
        if output:
            card += ["", "output:", console.block(output).rstrip("\n")]
    return "\n".join(card)


def _switch_line(switch: dict[str, Any]) -> str:
    if switch["engaged"]:
        return (
            f"remediation is STOPPED: kill switch engaged by {switch['by']} at "
            f"{console.when(switch['at'])}: {switch['why']}"
        )
    if switch["by"]:
        released = f"released by {switch['by']} at {console.when(switch['at'])}"
        return f"remediation runs: kill switch {released}"
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
            console.when(p["opened_at"]),
            console.printable(p["title"]),
        ]
        for p in problems
    ]
    return console.table(header, rows)


def _problem_line(problem: dict[str, Any]) -> str:
    owner = f", owned by {problem['owner']}" if problem["owner"] else ""
    linked = problem["incident_count"]
    return (
        f"problem {problem['id']}: {problem['state']}{owner}, {linked} "
        f"incident{'' if linked == 1 else 's'} - {console.printable(problem['title'])}"
    )


def _problem_card(problem: dict[str, Any]) -> str:
    fields = [
        ("title", console.printable(problem["title"])),
        ("state", problem["state"]),
        ("service", problem["service"] or "-"),
        ("category", problem["category"] or "-"),
        ("owner", problem["owner"] or "-"),
        ("incidents", ", ".join(str(i) for i in problem["incidents"]) or "-"),
        ("opened", console.when(problem["opened_at"])),
        ("known as", problem["known_error"] or "-"),
    ]
    card = [f"problem {problem['id']}"] + [f"  {k:<10} {v}" for k, v in fields]
    for heading, key in (("root cause", "root_cause"), ("workaround", "workaround")):
        text = console.block(problem[key]).strip("\n") or "-"
        card += ["", f"{heading}:", *(f"  {line}" for line in text.splitlines())]
    return "\n".join([*card, "", console.timeline(problem["timeline"])])


def _known_table(known: list[dict[str, Any]]) -> str:
    if not known:
        return "no known errors"
    header = ["NAME", "SOURCE", "PROBLEM", "MATCHERS", "WORKAROUND"]
    rows = [
        [
            k["name"],
            k["source"],
            str(k["problem"] or "-"),
            console.printable(", ".join(k["matchers"])),
            console.printable(k["workaround"].splitlines()[0] if k["workaround"] else "-"),
        ]
        for k in known
    ]
    return console.table(header, rows)
