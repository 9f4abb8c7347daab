"""The remediation safety kit: what may stop, delay or fake a runbook run before it starts.

Pure: no I/O, no asyncio; time is always passed in as epoch seconds. `Gate.admit` applies the
checks to one run about to start, in this order, and the first that objects decides:

1. kill switch: engaged, every run is refused (dry runs too);
2. dry run: the global setting, the runbook's or the rule's; any one of them on makes it a dry
   run (recorded, never executed), and nothing can force a real run while the global is on;
3. approval: a runbook with `approval` waits for an operator (or its TTL) unless approved;
4. circuit breaker (per runbook and target): open refuses, half-open lets one trial run through;
5. rate limit (per runbook, rule and key): too many starts within the window refuses;
6. concurrency (per runbook): no free slot queues the run (FIFO), a full queue refuses it.

A refused run uses up nothing. A queued run is counted by the rate limit when it is queued;
when a slot frees it is checked again against the kill switch and its breaker, which may have
changed while it waited. Each refusal is a sentence for the incident timeline.
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tocsin.mute import format_time

__all__ = [
    "Approvals",
    "Breaker",
    "BreakerState",
    "Check",
    "Concurrency",
    "Decision",
    "Gate",
    "KillSwitch",
    "Limits",
    "Pending",
    "RateLimiter",
    "Run",
    "SafetyError",
    "Transition",
    "Verdict",
    "VerdictKind",
    "Waiting",
    "dry_run",
    "format_span",
]

BreakerState = Literal["closed", "open", "half_open"]
VerdictKind = Literal["run", "dry_run", "await_approval", "refused", "queued"]
Check = Literal["", "kill_switch", "dry_run", "approval", "breaker", "rate_limit", "concurrency"]

MAX_KEYS = 100_000  # rate-limit keys and breaker targets each remembers before evicting
MAX_WAITING = 1_000  # runs that may wait for a slot, per runbook


class SafetyError(ValueError):
    """A saved safety record that cannot be loaded; the text is one sentence."""


def format_span(seconds: float) -> str:
    """Return a wait for people, rounded up to the second: `45s`, `12m`, `1h30m`, `2d3h`."""
    left = max(0, math.ceil(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def dry_run(global_: bool, runbook: bool, rule: bool) -> bool:
    """Tell whether a run only records what it would do: any of the three settings on wins."""
    return global_ or runbook or rule


class RateLimiter:
    """At most `runs` starts per key within any `per` seconds (a sliding window).

    A start at `t` counts until `t + per` (exclusive). Keys idle for `per` are forgotten; past
    `max_keys` the least recently started key is evicted (and counted in `evicted`), which
    forgets its window: the memory bound wins over the limit under a flood of distinct keys.
    """

    __slots__ = ("_keys", "evicted", "max_keys", "per", "runs")

    def __init__(self, runs: int, per: float, *, max_keys: int = MAX_KEYS) -> None:
        if runs < 1:
            raise ValueError("a rate limit needs at least 1 run per window")
        if not (per > 0 and math.isfinite(per)):
            raise ValueError("a rate limit window must be a positive, finite number of seconds")
        if max_keys < 1:
            raise ValueError("a rate limiter must remember at least 1 key")
        self.runs = runs
        self.per = per
        self.max_keys = max_keys
        self.evicted = 0
        # Start times per key, sorted; keys in the order they last started.
        self._keys: OrderedDict[Hashable, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def allow(self, key: Hashable, now: float) -> bool:
        """Record a start for `key` at `now` and return True, or return False if over the limit."""
        self._forget_idle(now)
        starts = self._window(key, now)
        if len(starts) >= self.runs:
            return False
        bisect.insort(starts, now)
        self._keys[key] = starts
        self._keys.move_to_end(key)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
            self.evicted += 1
        return True

    def has_room(self, key: Hashable, now: float) -> bool:
        """Tell whether `allow(key, now)` would allow a start, recording nothing."""
        return sum(1 for t in self._keys.get(key, ()) if now - t < self.per) < self.runs

    def retry_after(self, key: Hashable, now: float) -> float:
        """Return the seconds until `key` may start again (0 when it may start now)."""
        starts = [t for t in self._keys.get(key, ()) if now - t < self.per]
        if len(starts) < self.runs:
            return 0.0
        return max(0.0, starts[-self.runs] + self.per - now)

    def _window(self, key: Hashable, now: float) -> list[float]:
        starts = [t for t in self._keys.get(key, ()) if now - t < self.per]
        if not starts:
            self._keys.pop(key, None)
        return starts

    def _forget_idle(self, now: float) -> None:
        while self._keys:
            key, starts = next(iter(self._keys.items()))
            if now - starts[-1] < self.per:
                return
            del self._keys[key]


@dataclass(frozen=True, slots=True)
class Decision:
    """A breaker's state for one target at one moment."""

    state: BreakerState
    failures: int  # consecutive failures counted so far
    opened_at: float | None = None
    half_open_at: float | None = None  # when an open breaker lets a trial through; None: manual
    trial_running: bool = False  # half-open, and its one trial run has started


@dataclass(frozen=True, slots=True)
class Transition:
    """A breaker changed state; `after == "open"` is the moment to page a person."""

    target: str
    before: BreakerState
    after: BreakerState
    at: float
    failures: int
    reason: str  # one sentence for the timeline


@dataclass(slots=True)
class _Tripped:
    opened_at: float
    failures: int
    trial: bool = False


class Breaker:
    """A circuit breaker per target: `failures` consecutive failures open it.

    Open refuses runs; `reset` seconds after opening it is half-open and lets one trial run
    through: success closes it, failure opens it again for another `reset`. With `reset` None
    it stays open until an operator closes it. While open (before `reset`), a late result of
    a run that started earlier changes nothing but the failure count; while half-open, any
    result decides. Memory: at most `max_targets` counting and `max_targets` open targets,
    the oldest evicted (counted in `evicted`).
    """

    __slots__ = ("_counting", "_open", "evicted", "failures", "max_targets", "reset")

    def __init__(self, failures: int, reset: float | None, *, max_targets: int = MAX_KEYS) -> None:
        if failures < 1:
            raise ValueError("a breaker needs at least 1 failure to open")
        if reset is not None and not (reset > 0 and math.isfinite(reset)):
            raise ValueError("a breaker reset must be a positive, finite number of seconds")
        if max_targets < 1:
            raise ValueError("a breaker must remember at least 1 target")
        self.failures = failures
        self.reset = reset
        self.max_targets = max_targets
        self.evicted = 0
        self._counting: OrderedDict[str, int] = OrderedDict()
        self._open: OrderedDict[str, _Tripped] = OrderedDict()

    def check(self, target: str, now: float) -> Decision:
        """Return the state of `target`'s breaker at `now` (it changes nothing)."""
        tripped = self._open.get(target)
        if tripped is None:
            return Decision("closed", self._counting.get(target, 0))
        half_open_at = None if self.reset is None else tripped.opened_at + self.reset
        state: BreakerState = (
            "half_open" if half_open_at is not None and now >= half_open_at else "open"
        )
        return Decision(
            state, tripped.failures, tripped.opened_at, half_open_at, trial_running=tripped.trial
        )

    def claim(self, target: str, now: float) -> bool:
        """Start the trial run of a half-open breaker; False if not half-open or already taken."""
        decision = self.check(target, now)
        if decision.state != "half_open" or decision.trial_running:
            return False
        self._open[target].trial = True
        return True

    def release(self, target: str) -> None:
        """Give the trial back unjudged (its run was cancelled), so another run can try."""
        tripped = self._open.get(target)
        if tripped is not None:
            tripped.trial = False

    def record(self, target: str, ok: bool, now: float) -> Transition | None:
        """Count a run's result; return the transition when the breaker opens or closes."""
        before = self.check(target, now)
        if before.state == "closed":
            if ok:
                self._counting.pop(target, None)
                return None
            failures = self._counting.pop(target, 0) + 1
            if failures < self.failures:
                self._counting[target] = failures
                self._trim(self._counting)
                return None
            self._open[target] = _Tripped(opened_at=now, failures=failures)
            self._trim(self._open)
            return self._opened(
                target, "closed", now, f"opened after {_plural(failures, 'consecutive failure')}"
            )
        tripped = self._open[target]
        if before.state == "open":
            if not ok:
                tripped.failures += 1
            return None
        if ok:
            del self._open[target]
            return Transition(
                target,
                "half_open",
                "closed",
                now,
                0,
                f"circuit breaker for target {target} closed: the trial run succeeded",
            )
        tripped.failures += 1
        tripped.opened_at = now
        tripped.trial = False
        self._open.move_to_end(target)
        return self._opened(
            target,
            "half_open",
            now,
            f"opened again: the trial run failed ({tripped.failures} consecutive failures)",
        )

    def close(self, target: str, now: float) -> Transition | None:
        """Close `target`'s breaker by hand (an operator); None if it was not open."""
        before = self.check(target, now)
        self._counting.pop(target, None)
        if self._open.pop(target, None) is None:
            return None
        return Transition(
            target,
            before.state,
            "closed",
            now,
            0,
            f"circuit breaker for target {target} closed by an operator",
        )

    def tripped(self, now: float) -> list[tuple[str, Decision]]:
        """Return the targets whose breaker is open or half-open, the oldest opened first."""
        found = [(target, self.check(target, now)) for target in self._open]
        found.sort(key=lambda item: (item[1].opened_at or 0.0, item[0]))
        return found

    def dump(self) -> dict[str, Any]:
        """Return the state as JSON-ready data, so an open breaker survives a restart."""
        return {
            "open": [
                {"target": t, "opened_at": s.opened_at, "failures": s.failures}
                for t, s in self._open.items()
            ],
            "counting": [{"target": t, "failures": n} for t, n in self._counting.items()],
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Replace the state with one saved by dump(); a trial running then is not restored."""
        record = _record(data, ("open", "counting"), "breaker record")
        opened: OrderedDict[str, _Tripped] = OrderedDict()
        counting: OrderedDict[str, int] = OrderedDict()
        for item in _items(record["open"], "breaker record 'open'"):
            entry = _record(item, ("target", "opened_at", "failures"), "open breaker entry")
            target = _text(entry, "target", "open breaker entry")
            failures = _count(entry, "failures", "open breaker entry")
            opened[target] = _Tripped(_time(entry, "opened_at", "open breaker entry"), failures)
        for item in _items(record["counting"], "breaker record 'counting'"):
            entry = _record(item, ("target", "failures"), "counting breaker entry")
            target = _text(entry, "target", "counting breaker entry")
            counting[target] = _count(entry, "failures", "counting breaker entry")
        self._open, self._counting = opened, counting
        self._trim(self._open)
        self._trim(self._counting)

    def _opened(self, target: str, before: BreakerState, now: float, what: str) -> Transition:
        then = (
            "it stays open until an operator closes it"
            if self.reset is None
            else f"a trial run is allowed from {format_time(now + self.reset)}"
        )
        failures = self._open[target].failures
        return Transition(
            target,
            before,
            "open",
            now,
            failures,
            f"circuit breaker for target {target} {what}; {then}",
        )

    def _trim(self, entries: OrderedDict[str, Any]) -> None:
        while len(entries) > self.max_targets:
            entries.popitem(last=False)
            self.evicted += 1


class Concurrency:
    """Counts the running runs of each runbook against its limit (1 for one not listed)."""

    __slots__ = ("_running", "limits")

    def __init__(self, limits: Mapping[str, int]) -> None:
        if any(limit < 1 for limit in limits.values()):
            raise ValueError("a concurrency limit must be at least 1")
        self.limits = dict(limits)
        self._running: dict[str, int] = {}

    def running(self, runbook: str) -> int:
        """Return how many runs of `runbook` are running."""
        return self._running.get(runbook, 0)

    def free(self, runbook: str) -> bool:
        """Tell whether one more run of `runbook` may start now."""
        return self.running(runbook) < self.limits.get(runbook, 1)

    def try_start(self, runbook: str) -> bool:
        """Count one more running run and return True, or False when the limit is reached."""
        if not self.free(runbook):
            return False
        self._running[runbook] = self.running(runbook) + 1
        return True

    def finish(self, runbook: str) -> None:
        """Count one run fewer; raise ValueError if none was running (a bookkeeping bug)."""
        running = self.running(runbook)
        if running < 1:
            raise ValueError(f"no run of runbook {runbook} is running")
        if running == 1:
            del self._running[runbook]
        else:
            self._running[runbook] = running - 1


@dataclass(frozen=True, slots=True)
class Run:
    """One run about to start, as the safety checks see it."""

    id: str
    runbook: str
    rule: str
    key: str  # the rule's key value (the incident fingerprint, for instance)
    target: str  # what the run acts on: the breaker's unit
    rule_dry_run: bool = False
    approved_by: str | None = None  # set when an operator approved it; admit it again then


class Waiting:
    """Runs waiting for a free slot, first in first out per runbook, at most `cap` each."""

    __slots__ = ("_queues", "cap")

    def __init__(self, cap: int = MAX_WAITING) -> None:
        if cap < 1:
            raise ValueError("a waiting queue must hold at least 1 run")
        self.cap = cap
        self._queues: dict[str, deque[Run]] = {}

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def __iter__(self) -> Iterator[Run]:
        for queue in self._queues.values():
            yield from queue

    def count(self, runbook: str) -> int:
        """Return how many runs of `runbook` wait."""
        return len(self._queues.get(runbook, ()))

    def push(self, run: Run) -> bool:
        """Queue `run` behind the others of its runbook; False when that queue is full."""
        queue = self._queues.setdefault(run.runbook, deque())
        if len(queue) >= self.cap:
            return False
        queue.append(run)
        return True

    def pop(self, runbook: str) -> Run | None:
        """Take the run of `runbook` that has waited longest, or None."""
        queue = self._queues.get(runbook)
        if not queue:
            return None
        run = queue.popleft()
        if not queue:
            del self._queues[runbook]
        return run

    def remove(self, run_id: str) -> Run | None:
        """Take the run with this id out of its queue (cancelled), or None if it is not waiting."""
        for runbook, queue in self._queues.items():
            for run in queue:
                if run.id == run_id:
                    queue.remove(run)
                    if not queue:
                        del self._queues[runbook]
                    return run
        return None

    def drain(self) -> list[Run]:
        """Take every waiting run, in arrival order per runbook."""
        runs = list(self)
        self._queues.clear()
        return runs


class KillSwitch:
    """Stops all remediation while engaged; remembers who changed it last, when and why."""

    __slots__ = ("at", "by", "engaged", "why")

    def __init__(
        self, *, engaged: bool = False, by: str = "", at: float | None = None, why: str = ""
    ) -> None:
        self.engaged = engaged
        self.by = by
        self.at = at
        self.why = why

    def engage(self, by: str, why: str, now: float) -> bool:
        """Engage it; False (and nothing changes) if it already was."""
        if self.engaged:
            return False
        self.engaged, self.by, self.at, self.why = True, by, now, why
        return True

    def release(self, by: str, now: float) -> bool:
        """Release it; False (and nothing changes) if it was not engaged."""
        if not self.engaged:
            return False
        self.engaged, self.by, self.at, self.why = False, by, now, ""
        return True

    def describe(self) -> str:
        """Say the state in one sentence for people."""
        if self.at is None:
            return "kill switch released"
        when = format_time(self.at)
        if not self.engaged:
            return f"kill switch released by {self.by} at {when}"
        because = f": {self.why}" if self.why else ""
        return f"kill switch engaged by {self.by} at {when}{because}"

    def to_dict(self) -> dict[str, Any]:
        """Return the state as JSON-ready data."""
        return {"engaged": self.engaged, "by": self.by, "at": self.at, "why": self.why}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KillSwitch:
        """Rebuild a kill switch saved by to_dict; raise SafetyError if the record is damaged."""
        record = _record(data, ("engaged", "by", "at", "why"), "kill switch record")
        if not isinstance(record["engaged"], bool):
            raise SafetyError("kill switch record field 'engaged' must be true or false")
        at = None if record["at"] is None else _time(record, "at", "kill switch record")
        return cls(
            engaged=record["engaged"],
            by=_text(record, "by", "kill switch record"),
            at=at,
            why=_text(record, "why", "kill switch record"),
        )


@dataclass(frozen=True, slots=True)
class Pending:
    """A run waiting for an operator's approval until `expires_at` (exclusive)."""

    run_id: str
    requested_at: float
    expires_at: float


class Approvals:
    """Runs awaiting approval; each expires `ttl` seconds after it was requested."""

    __slots__ = ("_pending", "ttl")

    def __init__(self, ttl: float) -> None:
        if not (ttl > 0 and math.isfinite(ttl)):
            raise ValueError("an approval TTL must be a positive, finite number of seconds")
        self.ttl = ttl
        self._pending: dict[str, Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._pending

    def request(self, run_id: str, now: float) -> Pending:
        """Ask for an approval of `run_id`; asking again keeps the first request's expiry."""
        pending = self._pending.get(run_id)
        if pending is None:
            pending = Pending(run_id, now, now + self.ttl)
            self._pending[run_id] = pending
        return pending

    def approve(self, run_id: str, by: str, now: float) -> bool:
        """Approve a pending run; False if unknown or expired (expiry is left to `expired`)."""
        return self._decide(run_id, by, now)

    def reject(self, run_id: str, by: str, now: float) -> bool:
        """Reject a pending run; False if unknown or expired (expiry is left to `expired`)."""
        return self._decide(run_id, by, now)

    def withdraw(self, run_id: str) -> bool:
        """Forget a request without a decision (its run was cancelled); False if unknown."""
        return self._pending.pop(run_id, None) is not None

    def pending(self) -> list[Pending]:
        """Return every request not yet decided or collected, the first to expire first."""
        return sorted(self._pending.values(), key=lambda p: (p.expires_at, p.run_id))

    def expired(self, now: float) -> list[str]:
        """Remove and return the run ids whose approval expired by `now`, oldest first."""
        gone = [p for p in self.pending() if p.expires_at <= now]
        for pending in gone:
            del self._pending[pending.run_id]
        return [p.run_id for p in gone]

    def next_expiry(self) -> float | None:
        """Return when the next pending approval expires, for the caller's timer."""
        return min((p.expires_at for p in self._pending.values()), default=None)

    def to_dict(self) -> dict[str, Any]:
        """Return the pending requests as JSON-ready data."""
        return {
            "pending": [
                {"run_id": p.run_id, "requested_at": p.requested_at, "expires_at": p.expires_at}
                for p in self.pending()
            ]
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], ttl: float) -> Approvals:
        """Rebuild requests saved by to_dict (they keep their expiry); `ttl` is for new ones."""
        record = _record(data, ("pending",), "approvals record")
        approvals = cls(ttl)
        for item in _items(record["pending"], "approvals record 'pending'"):
            entry = _record(item, ("run_id", "requested_at", "expires_at"), "pending approval")
            run_id = _text(entry, "run_id", "pending approval")
            approvals._pending[run_id] = Pending(
                run_id,
                _time(entry, "requested_at", "pending approval"),
                _time(entry, "expires_at", "pending approval"),
            )
        return approvals

    def _decide(self, run_id: str, by: str, now: float) -> bool:
        if not by.strip():
            raise ValueError("an approval or rejection needs who decided")
        pending = self._pending.get(run_id)
        if pending is None or now >= pending.expires_at:
            return False
        del self._pending[run_id]
        return True


@dataclass(frozen=True, slots=True)
class Limits:
    """One runbook's safety settings as plain values (the lead builds them from runbooks.yaml)."""

    runbook: str
    concurrency: int = 1
    rate_runs: int | None = None  # with rate_per: at most this many starts per rule and key
    rate_per: float = 0.0
    breaker_failures: int | None = None  # with breaker_reset: consecutive failures per target
    breaker_reset: float | None = None  # None: an operator closes an open breaker
    dry_run: bool = False
    approval_ttl: float | None = None  # None: runs need no approval

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"runbook {self.runbook}: concurrency must be at least 1")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a run, and why in one sentence for the incident timeline."""

    kind: VerdictKind
    reason: str
    check: Check = ""  # which check decided; "" when the run starts


@dataclass(slots=True)
class _Guard:
    limits: Limits
    rate: RateLimiter | None
    breaker: Breaker | None
    approvals: Approvals | None


class Gate:
    """Every safety check for every runbook, applied in the documented order.

    Keep one for the daemon's life: `reconfigure` on reload keeps what the checks remember
    (open breakers, pending approvals, rate-limit windows, running and waiting runs).
    `dump`/`restore` carry the kill switch, breakers and pending approvals over a restart.
    """

    __slots__ = ("_concurrency", "_guards", "_running", "_waiting", "dry_run", "kill_switch")

    def __init__(
        self,
        limits: Iterable[Limits],
        *,
        dry_run: bool = False,
        kill_switch: KillSwitch | None = None,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self.dry_run = dry_run
        self.kill_switch = kill_switch or KillSwitch()
        self._guards: dict[str, _Guard] = {}
        self._concurrency = Concurrency({})
        self._waiting = Waiting(max_waiting)
        self._running: dict[str, Run] = {}
        self.reconfigure(limits, dry_run=dry_run)

    def reconfigure(self, limits: Iterable[Limits], *, dry_run: bool) -> list[str]:
        """Apply new settings, keeping state; return the ids of runs that can no longer start.

        Those are the waiting runs of runbooks no longer configured, and the pending approvals
        of runbooks no longer configured or no longer asking for approval. A changed rate limit
        starts with an empty window; breakers and approvals keep what they remember.
        Call `start_waiting` afterwards: a raised concurrency limit may free slots.
        """
        new = {item.runbook: self._guard(item) for item in limits}
        dropped: list[str] = []
        for name, old in self._guards.items():
            if name not in new:
                dropped.extend(run.id for run in self._waiting_of(name))
            if old.approvals is not None and (name not in new or new[name].approvals is None):
                dropped.extend(p.run_id for p in old.approvals.pending())
        self.dry_run = dry_run
        self._guards = new
        self._concurrency.limits = {name: g.limits.concurrency for name, g in new.items()}
        return dropped

    def admit(self, run: Run, now: float) -> Verdict:
        """Decide whether `run` starts now, and record it if it starts, queues or awaits approval.

        On "run" the caller starts it and calls `finish` when it ends; on "queued" the caller
        waits for `finish` or `start_waiting` to hand it back; on "await_approval" the caller
        admits `replace(run, approved_by=who)` again once `approve` returns True.
        """
        guard = self._guards.get(run.runbook)
        if guard is None:
            raise ValueError(f"runbook {run.runbook} is not configured")
        limits = guard.limits
        if self.kill_switch.engaged:
            return Verdict("refused", f"refused: {self.kill_switch.describe()}", "kill_switch")
        if dry_run(self.dry_run, limits.dry_run, run.rule_dry_run):
            return Verdict("dry_run", self._dry_reason(run, limits), "dry_run")
        if guard.approvals is not None and run.approved_by is None:
            pending = guard.approvals.request(run.id, now)
            return Verdict(
                "await_approval",
                f"awaiting approval to run {run.runbook} until {format_time(pending.expires_at)}"
                f" ({format_span(pending.expires_at - now)}); it is dropped unless approved",
                "approval",
            )
        refused = self._breaker_refusal(guard, run, now)
        if refused is not None:
            return refused
        rate = guard.rate
        if rate is not None and not rate.has_room((run.rule, run.key), now):
            return Verdict(
                "refused",
                f"rate limited: {_plural(rate.runs, 'run')} of {run.runbook} for rule {run.rule} "
                f"key {run.key} within {format_span(rate.per)}; next allowed in "
                f"{format_span(rate.retry_after((run.rule, run.key), now))}",
                "rate_limit",
            )
        ahead = self._waiting.count(run.runbook)
        queued = not self._concurrency.free(run.runbook)
        if queued and not self._waiting.push(run):
            return Verdict(
                "refused",
                f"refused: {_plural(ahead, 'run')} of {run.runbook} already wait for a free slot "
                "(the queue is full)",
                "concurrency",
            )
        if rate is not None:
            rate.allow((run.rule, run.key), now)
        if not queued:
            return self._start(guard, run, now, "")
        running = self._concurrency.running(run.runbook)
        return Verdict(
            "queued",
            f"queued: {_plural(running, 'run')} of {run.runbook} running "
            f"(limit {limits.concurrency}), {ahead} waiting ahead",
            "concurrency",
        )

    def finish(self, run_id: str, ok: bool | None, now: float) -> Transition | None:
        """Count the end of a running run (ok None: cancelled, not judged); free its slot.

        Returns the breaker's transition, if any: page a person when `after == "open"`.
        Then call `start_waiting` to start what the freed slot allows.
        """
        run = self._running.pop(run_id, None)
        if run is None:
            return None
        self._concurrency.finish(run.runbook)
        guard = self._guards.get(run.runbook)
        if guard is None or guard.breaker is None:
            return None
        if ok is None:
            guard.breaker.release(run.target)
            return None
        return guard.breaker.record(run.target, ok, now)

    def start_waiting(self, now: float) -> list[tuple[Run, Verdict]]:
        """Hand back waiting runs that may now start ("run") or never will ("refused")."""
        handed: list[tuple[Run, Verdict]] = []
        for name, guard in self._guards.items():
            while self._concurrency.free(name):
                run = self._waiting.pop(name)
                if run is None:
                    break
                if self.kill_switch.engaged:
                    verdict = Verdict(
                        "refused", f"refused: {self.kill_switch.describe()}", "kill_switch"
                    )
                else:
                    verdict = self._breaker_refusal(guard, run, now) or self._start(
                        guard, run, now, "started after waiting for a free slot"
                    )
                handed.append((run, verdict))
        return handed

    def cancel(self, run_id: str) -> bool:
        """Forget a waiting run or a pending approval (the caller cancelled it)."""
        if self._waiting.remove(run_id) is not None:
            return True
        approvals = self._approvals_of(run_id)
        return approvals is not None and approvals.withdraw(run_id)

    def engage(self, by: str, why: str, now: float) -> list[tuple[Run, Verdict]]:
        """Engage the kill switch and refuse every waiting run; [] if it was engaged already."""
        if not self.kill_switch.engage(by, why, now):
            return []
        verdict = Verdict("refused", f"refused: {self.kill_switch.describe()}", "kill_switch")
        return [(run, verdict) for run in self._waiting.drain()]

    def release(self, by: str, now: float) -> bool:
        """Release the kill switch; False if it was not engaged."""
        return self.kill_switch.release(by, now)

    def approve(self, run_id: str, by: str, now: float) -> bool:
        """Approve a run awaiting approval; False if unknown or expired."""
        approvals = self._approvals_of(run_id)
        return approvals is not None and approvals.approve(run_id, by, now)

    def reject(self, run_id: str, by: str, now: float) -> bool:
        """Reject a run awaiting approval; False if unknown or expired."""
        approvals = self._approvals_of(run_id)
        return approvals is not None and approvals.reject(run_id, by, now)

    def pending(self) -> list[tuple[str, Pending]]:
        """Return (runbook, request) for every run awaiting approval, the first to expire first."""
        found = [
            (name, p)
            for name, g in self._guards.items()
            if g.approvals is not None
            for p in g.approvals.pending()
        ]
        found.sort(key=lambda item: (item[1].expires_at, item[1].run_id))
        return found

    def expired(self, now: float) -> list[str]:
        """Remove and return the ids of runs whose approval expired by `now`."""
        return [
            run_id
            for g in self._guards.values()
            if g.approvals is not None
            for run_id in g.approvals.expired(now)
        ]

    def next_expiry(self) -> float | None:
        """Return when the next pending approval expires, for the caller's timer."""
        return min(
            (
                when
                for g in self._guards.values()
                if g.approvals is not None and (when := g.approvals.next_expiry()) is not None
            ),
            default=None,
        )

    def breaker(self, runbook: str) -> Breaker | None:
        """Return the runbook's breaker (to list or close by hand), None if it has none."""
        guard = self._guards.get(runbook)
        return None if guard is None else guard.breaker

    def running(self) -> list[Run]:
        """Return the runs started and not yet finished, oldest first."""
        return list(self._running.values())

    def waiting(self) -> list[Run]:
        """Return the runs waiting for a free slot."""
        return list(self._waiting)

    def dump(self) -> dict[str, Any]:
        """Return what must survive a restart: kill switch, breakers and pending approvals.
        Rate-limit windows are not in it: `replay_starts` rebuilds them from the stored runs,
        so saving this stays small however many keys the windows hold."""
        return {
            "kill_switch": self.kill_switch.to_dict(),
            "breakers": {
                n: g.breaker.dump() for n, g in self._guards.items() if g.breaker is not None
            },
            "approvals": {
                n: g.approvals.to_dict() for n, g in self._guards.items() if g.approvals is not None
            },
        }

    def rate_window(self) -> float:
        """The longest rate-limit window of any runbook (0: none has a limit)."""
        return max((g.rate.per for g in self._guards.values() if g.rate is not None), default=0.0)

    def replay_starts(self, starts: Iterable[tuple[str, str, str, float]]) -> None:
        """Count admissions of the last life into the rate limits: (runbook, rule, key, time),
        oldest first; a crash loop must not reset "1 run an hour"."""
        for runbook, rule, key, at in starts:
            guard = self._guards.get(runbook)
            if guard is not None and guard.rate is not None:
                guard.rate.allow((rule, key), at)

    def restore(self, data: Mapping[str, Any]) -> None:
        """Load what dump() saved (all or nothing); runbooks no longer configured are skipped."""
        data = dict(data) if isinstance(data, Mapping) else data
        if isinstance(data, dict):
            data.pop("rates", None)  # older records saved the windows; the runs rebuild them
        record = _record(data, ("kill_switch", "breakers", "approvals"), "safety record")
        kill_switch = KillSwitch.from_dict(record["kill_switch"])
        for section in ("breakers", "approvals"):
            if not isinstance(record[section], Mapping):
                raise SafetyError(f"safety record field '{section}' must be a mapping")
        breakers: dict[str, Breaker] = {}
        for name, saved in record["breakers"].items():
            old = self.breaker(name)
            if old is not None:
                breakers[name] = Breaker(old.failures, old.reset)
                breakers[name].restore(saved)
        approvals: dict[str, Approvals] = {}
        for name, saved in record["approvals"].items():
            guard = self._guards.get(name)
            if guard is not None and guard.approvals is not None:
                approvals[name] = Approvals.from_dict(saved, guard.approvals.ttl)
        for name, breaker in breakers.items():
            self._guards[name].breaker = breaker
        for name, pending in approvals.items():
            self._guards[name].approvals = pending
        self.kill_switch = kill_switch

    def _guard(self, limits: Limits) -> _Guard:
        old = self._guards.get(limits.runbook)
        rate = None
        if limits.rate_runs is not None:
            window = None if old is None else old.rate
            if window is not None and (window.runs, window.per) == (
                limits.rate_runs,
                limits.rate_per,
            ):
                rate = window
            else:
                rate = RateLimiter(limits.rate_runs, limits.rate_per)
        breaker = None
        if limits.breaker_failures is not None:
            kept = None if old is None else old.breaker
            if kept is not None and (kept.failures, kept.reset) == (
                limits.breaker_failures,
                limits.breaker_reset,
            ):
                breaker = kept
            else:
                breaker = Breaker(limits.breaker_failures, limits.breaker_reset)
                if kept is not None:
                    breaker.restore(kept.dump())
        approvals = None
        if limits.approval_ttl is not None:
            asked = None if old is None else old.approvals
            approvals = (
                Approvals(limits.approval_ttl)
                if asked is None
                else Approvals.from_dict(asked.to_dict(), limits.approval_ttl)
            )
        return _Guard(limits, rate, breaker, approvals)

    def _start(self, guard: _Guard, run: Run, now: float, note: str) -> Verdict:
        started = self._concurrency.try_start(run.runbook)
        assert started  # callers check free() first
        self._running[run.id] = run
        notes = [note] if note else []
        if run.approved_by is not None:
            notes.append(f"approved by {run.approved_by}")
        if guard.breaker is not None and guard.breaker.claim(run.target, now):
            notes.append(f"trial run: the circuit breaker for target {run.target} is half-open")
        return Verdict("run", "; ".join(notes) or "started")

    def _breaker_refusal(self, guard: _Guard, run: Run, now: float) -> Verdict | None:
        if guard.breaker is None:
            return None
        decision = guard.breaker.check(run.target, now)
        if decision.state == "closed":
            return None
        failures = _plural(decision.failures, "consecutive failure")
        if decision.state == "half_open":
            if not decision.trial_running:
                return None
            why = "half-open and its trial run has not ended"
        elif decision.half_open_at is None:
            why = f"open after {failures}; it stays open until an operator closes it"
        else:
            why = (
                f"open after {failures}; a trial run is allowed in "
                f"{format_span(decision.half_open_at - now)}"
            )
        return Verdict(
            "refused",
            f"refused: the circuit breaker of {run.runbook} for target {run.target} is {why}",
            "breaker",
        )

    def _dry_reason(self, run: Run, limits: Limits) -> str:
        sources = [
            what
            for what, on in (
                ("remediation.dry_run is on", self.dry_run),
                (f"runbook {run.runbook} has dry_run", limits.dry_run),
                (f"rule {run.rule} has dry_run", run.rule_dry_run),
            )
            if on
        ]
        return f"dry run ({', '.join(sources)}): {run.runbook} was not executed"

    def _waiting_of(self, runbook: str) -> list[Run]:
        runs: list[Run] = []
        while (run := self._waiting.pop(runbook)) is not None:
            runs.append(run)
        return runs

    def _approvals_of(self, run_id: str) -> Approvals | None:
        for guard in self._guards.values():
            if guard.approvals is not None and run_id in guard.approvals:
                return guard.approvals
        return None


def _plural(count: int, what: str) -> str:
    return f"{count} {what}" if count == 1 else f"{count} {what}s"


def _record(data: Any, fields: tuple[str, ...], what: str) -> Mapping[str, Any]:
    """Check that a saved record is a mapping with exactly `fields`."""
    if not isinstance(data, Mapping):
        raise SafetyError(f"a {what} must be a mapping")
    missing = [k for k in fields if k not in data]
    if missing:
        raise SafetyError(f"{what} lacks {', '.join(missing)}")
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        raise SafetyError(f"{what} has unknown fields {', '.join(unknown)}")
    return data


def _items(data: Any, what: str) -> list[Any]:
    if not isinstance(data, list):
        raise SafetyError(f"{what} must be a list")
    return data


def _text(data: Mapping[str, Any], key: str, what: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise SafetyError(f"{what} field '{key}' must be text")
    return value


def _count(data: Mapping[str, Any], key: str, what: str) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SafetyError(f"{what} field '{key}' must be a whole number of at least 1")
    return value


def _time(data: Mapping[str, Any], key: str, what: str) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SafetyError(f"{what} field '{key}' must be a finite number")
    return float(value)
