"""Stand-in RunDesk and ProblemDesk over plain dicts, for the API and CLI tests until the
daemon's own desks (tocsin.desks) exist: they keep the Protocols' promises (views, refusals as
IncidentError with 404 or 409) and nothing more."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tocsin.api.incidents import IncidentError
from tocsin.records.views import iso_time

Clock = Callable[[], float]

# problem state asked for -> the states it may come from
PROBLEM_MOVES = {
    "investigating": ("new",),
    "known_error": ("new", "investigating"),
    "resolved": ("new", "investigating", "known_error"),
    "closed": ("resolved",),
    "reopen": ("resolved",),
}


def _page(found: list[dict[str, Any]], limit: int, offset: int) -> list[dict[str, Any]]:
    return sorted(found, key=lambda r: -int(r["id"]))[offset : offset + limit]


class StandInRuns:
    """A RunDesk stand-in: runs are added by the test with `add`."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.runs: dict[int, dict[str, Any]] = {}
        self.switch: dict[str, Any] = {"engaged": False, "by": None, "at": None, "why": None}

    def add(self, **fields: Any) -> dict[str, Any]:
        """Record a run (a succeeded restart of web1 unless `fields` say otherwise)."""
        run_id = len(self.runs) + 1
        run: dict[str, Any] = {
            "id": run_id,
            "runbook": "restart-unit",
            "rule": "unit-failed",
            "key": "web1",
            "target": "web1",
            "incident": None,
            "state": "succeeded",
            "reason": "",
            "created_at": iso_time(self.clock()),
            "started_at": None,
            "finished_at": None,
            "steps": [{"exec": ["/bin/systemctl", "restart", "nginx"]}],
            "result": None,
            **fields,
        }
        self.runs[run_id] = run
        return run

    async def list(self, *, state: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        found = [r for r in self.runs.values() if state is None or r["state"] == state]
        return _page(found, limit, offset)

    async def get(self, run_id: int) -> dict[str, Any] | None:
        return self.runs.get(run_id)

    def _waiting(self, run_id: int, verb: str) -> dict[str, Any]:
        run = self.runs.get(run_id)
        if run is None:
            raise IncidentError(404, f"no run {run_id}")
        if run["state"] != "awaiting_approval":
            raise IncidentError(
                409, f"run {run_id} is {run['state']}; only a waiting run is {verb}"
            )
        return run

    async def approve(self, run_id: int, *, actor: str, note: str = "") -> dict[str, Any]:
        run = self._waiting(run_id, "approved")
        run.update(state="queued", reason=f"approved by {actor}: {note}".rstrip(": "))
        return run

    async def reject(self, run_id: int, *, actor: str, note: str = "") -> dict[str, Any]:
        run = self._waiting(run_id, "rejected")
        run.update(state="rejected", reason=f"rejected by {actor}: {note}".rstrip(": "))
        return run

    def kill_switch(self) -> dict[str, Any]:
        return dict(self.switch)

    async def engage(self, *, actor: str, why: str) -> dict[str, Any]:
        if self.switch["engaged"]:
            raise IncidentError(409, f"the kill switch is already engaged by {self.switch['by']}")
        self.switch = {"engaged": True, "by": actor, "at": iso_time(self.clock()), "why": why}
        return self.kill_switch()

    async def release(self, *, actor: str) -> dict[str, Any]:
        if not self.switch["engaged"]:
            raise IncidentError(409, "the kill switch is not engaged")
        self.switch = {"engaged": False, "by": actor, "at": iso_time(self.clock()), "why": None}
        return self.kill_switch()


class StandInProblems:
    """A ProblemDesk stand-in with one known error from the config, `disk-full-tmp`."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.problems: dict[int, dict[str, Any]] = {}
        self.timelines: dict[int, list[dict[str, Any]]] = {}
        self.known: dict[str, dict[str, Any]] = {
            "disk-full-tmp": {
                "name": "disk-full-tmp",
                "source": "config",
                "matchers": ['rule="disk-full"', 'mount="/tmp"'],
                "workaround": "clear /tmp/cache",
                "root_cause": "the cache is never pruned",
                "problem": None,
                "created_by": "config",
                "created_at": None,
            }
        }

    def _note(self, problem_id: int, kind: str, before: str | None, actor: str, note: str) -> None:
        self.timelines[problem_id].append(
            {
                "time": iso_time(self.clock()),
                "kind": kind,
                "from": before,
                "to": self.problems[problem_id]["state"],
                "actor": actor,
                "note": note,
            }
        )

    def _find(self, problem_id: int) -> dict[str, Any]:
        problem = self.problems.get(problem_id)
        if problem is None:
            raise IncidentError(404, f"no problem {problem_id}")
        return problem

    async def get(self, problem_id: int) -> dict[str, Any] | None:
        problem = self.problems.get(problem_id)
        if problem is None:
            return None
        return {**problem, "timeline": list(self.timelines[problem_id])}

    async def create(
        self, *, title: str, service: str, category: str, actor: str, incidents: list[int]
    ) -> dict[str, Any]:
        problem_id = len(self.problems) + 1
        self.problems[problem_id] = {
            "id": problem_id,
            "title": title,
            "state": "new",
            "opened_at": iso_time(self.clock()),
            "service": service,
            "category": category,
            "fingerprint": "",
            "incidents": list(incidents),
            "incident_count": len(incidents),
            "root_cause": "",
            "workaround": "",
            "owner": "",
            "known_error": "",
            "resolved_at": None,
            "closed_at": None,
        }
        self.timelines[problem_id] = []
        self._note(problem_id, "state", None, actor, "")
        return dict(self.problems[problem_id])

    async def transition(
        self, problem_id: int, to: str, *, actor: str, note: str = ""
    ) -> dict[str, Any]:
        problem = self._find(problem_id)
        before = problem["state"]
        if before not in PROBLEM_MOVES[to]:
            raise IncidentError(
                409,
                f"problem {problem_id} is {before}; it can move to {to} only from "
                f"{' or '.join(PROBLEM_MOVES[to])}",
            )
        problem["state"] = "new" if to == "reopen" else to
        if to in ("resolved", "closed"):
            problem[f"{to}_at"] = iso_time(self.clock())
        self._note(problem_id, "state", before, actor, note)
        return dict(problem)

    async def update(
        self,
        problem_id: int,
        *,
        actor: str,
        root_cause: str | None,
        workaround: str | None,
        owner: str | None,
        title: str | None,
    ) -> dict[str, Any]:
        problem = self._find(problem_id)
        given = {"root_cause": root_cause, "workaround": workaround, "owner": owner, "title": title}
        changed = {key: value for key, value in given.items() if value is not None}
        problem.update(changed)
        self._note(problem_id, "update", problem["state"], actor, ", ".join(sorted(changed)))
        return dict(problem)

    async def link(self, problem_id: int, incident_id: int, *, actor: str) -> dict[str, Any]:
        problem = self._find(problem_id)
        if incident_id in problem["incidents"]:
            raise IncidentError(409, f"incident {incident_id} is already linked")
        problem["incidents"].append(incident_id)
        problem["incident_count"] += 1
        self._note(problem_id, "link", problem["state"], actor, f"incident {incident_id}")
        return dict(problem)

    async def known_errors(self) -> list[dict[str, Any]]:
        return [dict(k) for k in self.known.values()]

    async def add_known_error(
        self,
        *,
        name: str,
        matchers: list[str],
        workaround: str,
        root_cause: str,
        problem: int | None,
        actor: str,
    ) -> dict[str, Any]:
        if name in self.known:
            raise IncidentError(409, f"there is a known error {name} already")
        if problem is not None:
            self._find(problem)
        self.known[name] = {
            "name": name,
            "source": "api",
            "matchers": matchers,
            "workaround": workaround,
            "root_cause": root_cause,
            "problem": problem,
            "created_by": actor,
            "created_at": iso_time(self.clock()),
        }
        return dict(self.known[name])

    async def remove_known_error(self, name: str, *, actor: str) -> dict[str, Any]:
        known = self.known.get(name)
        if known is None:
            raise IncidentError(404, f"no known error {name}")
        if known["source"] == "config":
            raise IncidentError(409, f"known error {name} is from the config; remove it there")
        return self.known.pop(name)

    # Last: in the class body, `list` names this method from here on.
    async def list(self, *, state: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        found = [p for p in self.problems.values() if state is None or p["state"] == state]
        return [dict(p) for p in _page(found, limit, offset)]
