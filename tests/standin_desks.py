"""A stand-in RunDesk over plain dicts, for the API and CLI tests until the daemon's own run
desk (tocsin.desks.Runs) serves them: it keeps the Protocol's promises (views, refusals as
IncidentError with 404 or 409) and nothing more."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tocsin.api.incidents import IncidentError
from tocsin.records.views import iso_time

Clock = Callable[[], float]


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
