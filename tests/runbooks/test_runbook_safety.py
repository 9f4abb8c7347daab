"""Tests for the remediation safety kit (tocsin.runbooks.safety), on virtual time only."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.runbooks.safety import (
    Approvals,
    Breaker,
    Concurrency,
    Decision,
    Gate,
    KillSwitch,
    Limits,
    Pending,
    RateLimiter,
    Run,
    SafetyError,
    Transition,
    Verdict,
    Waiting,
    dry_run,
    format_span,
)

NOW = 1_795_564_800.0  # 2026-11-25T00:00:00Z
HOUR = 3600.0


def roundtrip(data: dict[str, Any]) -> Any:
    """Return `data` as it comes back from a JSON file."""
    return json.loads(json.dumps(data))


# format_span and dry_run


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-5, "0s"),
        (0.2, "1s"),
        (45, "45s"),
        (719.2, "12m"),
        (3600, "1h"),
        (5400, "1h30m"),
        (3605, "1h5s"),
        (183600, "2d3h"),
    ],
)
def test_format_span(seconds: float, text: str) -> None:
    """Test that waits read like config durations, rounded up to the second."""
    assert format_span(seconds) == text


@pytest.mark.parametrize("global_", [False, True])
@pytest.mark.parametrize("runbook", [False, True])
@pytest.mark.parametrize("rule", [False, True])
def test_dry_run_any_setting_wins(global_: bool, runbook: bool, rule: bool) -> None:
    """Test that a run is dry when any of the global, runbook or rule settings is on."""
    assert dry_run(global_, runbook, rule) is (global_ or runbook or rule)


# RateLimiter


def test_rate_limit_allows_exactly_n_then_refuses() -> None:
    """Test that N starts at one instant pass and the N+1st is refused."""
    limiter = RateLimiter(3, HOUR)
    assert limiter.has_room("k", NOW)
    assert [limiter.allow("k", NOW) for _ in range(4)] == [True, True, True, False]
    assert not limiter.has_room("k", NOW)
    assert limiter.retry_after("k", NOW) == HOUR


def test_rate_limit_window_slides() -> None:
    """Test that a start stops counting exactly `per` seconds later, one start at a time."""
    limiter = RateLimiter(2, 60)
    assert limiter.allow("k", NOW)
    assert limiter.allow("k", NOW + 10)
    assert not limiter.allow("k", NOW + 59.5)
    assert limiter.retry_after("k", NOW + 59.5) == 0.5
    assert limiter.allow("k", NOW + 60)  # the first start left the window
    assert not limiter.allow("k", NOW + 69)
    assert limiter.retry_after("k", NOW + 69) == 1
    assert limiter.allow("k", NOW + 70)
    assert limiter.retry_after("k", NOW + 70) == 50


def test_rate_limit_refusals_are_not_counted() -> None:
    """Test that refused attempts do not push the next allowed start later."""
    limiter = RateLimiter(1, 60)
    assert limiter.has_room("k", NOW)
    assert limiter.has_room("k", NOW)  # asking records nothing
    assert limiter.allow("k", NOW)
    for second in range(1, 60):
        assert not limiter.allow("k", NOW + second)
    assert limiter.allow("k", NOW + 60)


def test_rate_limit_keys_are_independent() -> None:
    """Test that each key has its own window."""
    limiter = RateLimiter(1, 60)
    assert limiter.allow(("r", "a"), NOW)
    assert limiter.allow(("r", "b"), NOW)
    assert limiter.allow(("s", "a"), NOW)
    assert not limiter.allow(("r", "a"), NOW)
    assert limiter.retry_after(("r", "c"), NOW) == 0


def test_rate_limit_forgets_idle_keys() -> None:
    """Test that keys whose last start left the window are dropped from memory."""
    limiter = RateLimiter(2, 60)
    for n in range(1000):
        limiter.allow(f"k{n}", NOW)
    assert len(limiter) == 1000
    limiter.allow("late", NOW + 59)
    assert len(limiter) == 1001
    limiter.allow("later", NOW + 60)
    assert len(limiter) == 2
    assert limiter.evicted == 0


def test_rate_limit_caps_keys_evicting_the_oldest() -> None:
    """Test that past max_keys the least recently started key goes, and is counted."""
    limiter = RateLimiter(1, HOUR, max_keys=3)
    for key in ("a", "b", "c", "d"):
        assert limiter.allow(key, NOW)
    assert len(limiter) == 3
    assert limiter.evicted == 1
    assert limiter.allow("a", NOW)  # forgotten, so allowed again: the documented trade-off
    assert not limiter.allow("d", NOW)
    assert limiter.evicted == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 60.0), "a rate limit needs at least 1 run per window"),
        ((1, 0.0), "a rate limit window must be a positive, finite number of seconds"),
        ((1, float("inf")), "a rate limit window must be a positive, finite number of seconds"),
    ],
)
def test_rate_limit_rejects_bad_settings(args: tuple[int, float], message: str) -> None:
    """Test that impossible limits are refused with a sentence."""
    with pytest.raises(ValueError, match=message):
        RateLimiter(*args)


@settings(max_examples=300, deadline=None)
@given(
    runs=st.integers(1, 4),
    per=st.integers(1, 40).map(lambda n: n / 4),
    calls=st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 12)), max_size=80),
)
def test_rate_limit_never_exceeds_n_in_any_window(
    runs: int, per: float, calls: list[tuple[str, int]]
) -> None:
    """Test by brute force that no window of `per` holds more than N starts, and that every
    refusal was needed and its retry_after is exact (on a grid of quarter seconds)."""
    limiter = RateLimiter(runs, per)
    allowed: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    now = NOW
    for key, step in calls:
        now += step / 4
        before = [t for t in allowed[key] if now - t < per]
        if limiter.allow(key, now):
            assert len(before) < runs
            allowed[key].append(now)
        else:
            assert len(before) == runs
            wait = limiter.retry_after(key, now)
            assert wait > 0
            assert sum(1 for t in allowed[key] if now + wait - t < per) < runs
            assert sum(1 for t in allowed[key] if now + wait - 0.25 - t < per) == runs
    for times in allowed.values():
        for start in times:
            assert sum(1 for t in times if start <= t < start + per) <= runs


# Breaker


def test_breaker_opens_after_k_consecutive_failures_once() -> None:
    """Test that the K-th consecutive failure opens it with one transition, not the next."""
    breaker = Breaker(3, HOUR)
    assert breaker.record("web1", False, NOW) is None
    assert breaker.record("web1", False, NOW + 1) is None
    assert breaker.check("web1", NOW + 1) == Decision("closed", 2)
    opened = breaker.record("web1", False, NOW + 2)
    assert opened == Transition(
        "web1",
        "closed",
        "open",
        NOW + 2,
        3,
        "circuit breaker for target web1 opened after 3 consecutive failures; "
        "a trial run is allowed from 2026-11-25T01:00:02Z",
    )
    assert breaker.record("web1", False, NOW + 3) is None  # no second page
    assert breaker.check("web1", NOW + 3) == Decision("open", 4, NOW + 2, NOW + 2 + HOUR)
    assert breaker.check("web2", NOW + 3).state == "closed"


def test_breaker_success_resets_the_count() -> None:
    """Test that failures must be consecutive: a success in between starts over."""
    breaker = Breaker(2, HOUR)
    assert breaker.record("web1", False, NOW) is None
    assert breaker.record("web1", True, NOW + 1) is None
    assert breaker.record("web1", False, NOW + 2) is None
    assert breaker.check("web1", NOW + 2) == Decision("closed", 1)
    assert breaker.record("web1", False, NOW + 3) is not None


def test_breaker_goes_half_open_exactly_at_reset_and_allows_one_trial() -> None:
    """Test that the trial is allowed from opened_at + reset, once."""
    breaker = Breaker(1, 600)
    breaker.record("web1", False, NOW)
    assert breaker.check("web1", NOW + 599.9).state == "open"
    assert not breaker.claim("web1", NOW + 599.9)
    assert breaker.check("web1", NOW + 600).state == "half_open"
    assert breaker.claim("web1", NOW + 600)
    assert not breaker.claim("web1", NOW + 601)
    assert breaker.check("web1", NOW + 601).trial_running
    breaker.release("web1")
    assert breaker.claim("web1", NOW + 602)


def test_breaker_trial_success_closes() -> None:
    """Test that a successful trial closes the breaker and forgets the failures."""
    breaker = Breaker(1, 600)
    breaker.record("web1", False, NOW)
    breaker.claim("web1", NOW + 600)
    closed = breaker.record("web1", True, NOW + 610)
    assert closed == Transition(
        "web1",
        "half_open",
        "closed",
        NOW + 610,
        0,
        "circuit breaker for target web1 closed: the trial run succeeded",
    )
    assert breaker.check("web1", NOW + 610) == Decision("closed", 0)
    assert breaker.tripped(NOW + 610) == []


def test_breaker_trial_failure_reopens_for_another_reset() -> None:
    """Test that a failed trial opens the breaker again from that moment (a second page)."""
    breaker = Breaker(2, 600)
    breaker.record("web1", False, NOW)
    breaker.record("web1", False, NOW)
    breaker.claim("web1", NOW + 600)
    reopened = breaker.record("web1", False, NOW + 610)
    assert reopened is not None
    assert (reopened.before, reopened.after, reopened.failures) == ("half_open", "open", 3)
    assert reopened.reason == (
        "circuit breaker for target web1 opened again: the trial run failed "
        "(3 consecutive failures); a trial run is allowed from 2026-11-25T00:20:10Z"
    )
    assert breaker.check("web1", NOW + 1209).state == "open"
    assert breaker.check("web1", NOW + 1210) == Decision("half_open", 3, NOW + 610, NOW + 1210)


def test_breaker_ignores_late_success_while_open() -> None:
    """Test that a run that started before the breaker opened cannot close it early."""
    breaker = Breaker(1, 600)
    breaker.record("web1", False, NOW)
    assert breaker.record("web1", True, NOW + 5) is None
    assert breaker.check("web1", NOW + 5).state == "open"


def test_breaker_without_reset_waits_for_an_operator() -> None:
    """Test that reset None stays open for ever until close(), which reports the transition."""
    breaker = Breaker(1, None)
    opened = breaker.record("db", False, NOW)
    assert opened is not None
    assert opened.reason == (
        "circuit breaker for target db opened after 1 consecutive failure; "
        "it stays open until an operator closes it"
    )
    assert breaker.check("db", NOW + 10 * 365 * 86400) == Decision("open", 1, NOW, None)
    assert not breaker.claim("db", NOW + 10 * 365 * 86400)
    closed = breaker.close("db", NOW + 50)
    assert closed == Transition(
        "db", "open", "closed", NOW + 50, 0, "circuit breaker for target db closed by an operator"
    )
    assert breaker.check("db", NOW + 50) == Decision("closed", 0)
    assert breaker.close("db", NOW + 60) is None


def test_breaker_close_forgets_a_partial_count() -> None:
    """Test that closing by hand also clears failures counted on a closed breaker."""
    breaker = Breaker(3, None)
    breaker.record("db", False, NOW)
    assert breaker.close("db", NOW) is None
    assert breaker.check("db", NOW) == Decision("closed", 0)


def test_breaker_survives_a_restart() -> None:
    """Test that dump/restore through JSON keeps open breakers and counts, not the trial."""
    breaker = Breaker(2, 600)
    breaker.record("web1", False, NOW)
    breaker.record("web1", False, NOW)
    breaker.record("web2", False, NOW)
    breaker.claim("web1", NOW + 600)
    again = Breaker(2, 600)
    again.restore(roundtrip(breaker.dump()))
    assert again.check("web1", NOW + 1) == Decision("open", 2, NOW, NOW + 600)
    assert again.check("web2", NOW + 1) == Decision("closed", 1)
    assert again.tripped(NOW) == [("web1", Decision("open", 2, NOW, NOW + 600))]
    assert again.claim("web1", NOW + 600)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "a breaker record must be a mapping"),
        ({"open": []}, "breaker record lacks counting"),
        ({"open": [], "counting": [], "x": 1}, "breaker record has unknown fields x"),
        ({"open": {}, "counting": []}, "breaker record 'open' must be a list"),
        (
            {"open": [{"target": 1, "opened_at": 0, "failures": 1}], "counting": []},
            "open breaker entry field 'target' must be text",
        ),
        (
            {"open": [{"target": "a", "opened_at": "x", "failures": 1}], "counting": []},
            "open breaker entry field 'opened_at' must be a finite number",
        ),
        (
            {"open": [], "counting": [{"target": "a", "failures": 0}]},
            "counting breaker entry field 'failures' must be a whole number of at least 1",
        ),
        (
            {"open": [], "counting": [{"target": "a", "failures": True}]},
            "counting breaker entry field 'failures' must be a whole number of at least 1",
        ),
    ],
)
def test_breaker_restore_rejects_damaged_records(data: Any, message: str) -> None:
    """Test that a damaged record is refused with a sentence and changes nothing."""
    breaker = Breaker(1, None)
    breaker.record("keep", False, NOW)
    with pytest.raises(SafetyError) as caught:
        breaker.restore(data)
    assert str(caught.value) == message
    assert breaker.check("keep", NOW).state == "open"


def test_breaker_memory_is_bounded() -> None:
    """Test that counting and open targets are each capped, the oldest evicted and counted."""
    breaker = Breaker(2, HOUR, max_targets=2)
    for target in ("a", "b", "c"):
        breaker.record(target, False, NOW)
    assert [breaker.check(t, NOW).failures for t in "abc"] == [0, 1, 1]
    for target in ("x", "y", "z"):
        breaker.record(target, False, NOW)
        breaker.record(target, False, NOW)
    assert [t for t, _ in breaker.tripped(NOW)] == ["y", "z"]
    assert breaker.evicted == 3  # "a" and "b" from the counting targets, "x" from the open ones


# Approvals


def test_approval_expires_exactly_at_ttl() -> None:
    """Test that approval works until requested_at + ttl (exclusive) and then is refused."""
    approvals = Approvals(1800)
    assert approvals.request("r1", NOW) == Pending("r1", NOW, NOW + 1800)
    assert approvals.next_expiry() == NOW + 1800
    assert approvals.expired(NOW + 1799.9) == []
    assert not approvals.approve("r1", "alice", NOW + 1800)
    assert approvals.expired(NOW + 1800) == ["r1"]
    assert approvals.next_expiry() is None
    assert len(approvals) == 0


def test_approval_just_before_ttl_succeeds_once() -> None:
    """Test that an approval in time removes the request, so it cannot be decided twice."""
    approvals = Approvals(1800)
    approvals.request("r1", NOW)
    assert approvals.approve("r1", "alice", NOW + 1799.9)
    assert not approvals.approve("r1", "alice", NOW + 1799.9)
    assert not approvals.reject("r1", "bob", NOW + 1799.9)
    assert approvals.expired(NOW + 1800) == []


def test_approval_reject_unknown_and_withdraw() -> None:
    """Test reject, an unknown run id, and withdrawing a request without a decision."""
    approvals = Approvals(60)
    approvals.request("r1", NOW)
    approvals.request("r2", NOW)
    assert not approvals.approve("nope", "alice", NOW)
    assert approvals.reject("r1", "alice", NOW + 1)
    assert "r1" not in approvals
    assert approvals.withdraw("r2")
    assert not approvals.withdraw("r2")
    assert approvals.pending() == []


def test_asking_again_keeps_the_first_expiry() -> None:
    """Test that a repeated request cannot extend its TTL."""
    approvals = Approvals(60)
    approvals.request("r1", NOW)
    assert approvals.request("r1", NOW + 50) == Pending("r1", NOW, NOW + 60)


def test_a_decision_needs_who() -> None:
    """Test that an approval without a name is a caller bug, not a silent approval."""
    approvals = Approvals(60)
    approvals.request("r1", NOW)
    with pytest.raises(ValueError, match="an approval or rejection needs who decided"):
        approvals.approve("r1", " ", NOW)
    assert "r1" in approvals


def test_approvals_survive_a_restart_with_their_expiry() -> None:
    """Test that to_dict/from_dict through JSON keeps pending requests, soonest first."""
    approvals = Approvals(600)
    approvals.request("late", NOW + 10)
    approvals.request("early", NOW)
    again = Approvals.from_dict(roundtrip(approvals.to_dict()), 60)
    assert again.pending() == [
        Pending("early", NOW, NOW + 600),
        Pending("late", NOW + 10, NOW + 610),
    ]
    assert again.request("new", NOW).expires_at == NOW + 60
    with pytest.raises(SafetyError, match="pending approval field 'expires_at' must be a finite"):
        Approvals.from_dict(
            {"pending": [{"run_id": "x", "requested_at": 0, "expires_at": None}]}, 60
        )


# KillSwitch


def test_kill_switch_engage_and_release() -> None:
    """Test that engaging twice changes nothing and release records who and when."""
    switch = KillSwitch()
    assert switch.describe() == "kill switch released"
    assert switch.engage("alice", "bad deploy", NOW)
    assert not switch.engage("bob", "other", NOW + 1)
    assert switch.describe() == "kill switch engaged by alice at 2026-11-25T00:00:00Z: bad deploy"
    assert switch.release("bob", NOW + 60)
    assert not switch.release("bob", NOW + 61)
    assert not switch.engaged
    assert switch.describe() == "kill switch released by bob at 2026-11-25T00:01:00Z"


def test_kill_switch_survives_a_restart() -> None:
    """Test that to_dict/from_dict through JSON keeps an engaged switch and its reason."""
    switch = KillSwitch()
    switch.engage("alice", "bad deploy", NOW)
    again = KillSwitch.from_dict(roundtrip(switch.to_dict()))
    assert (again.engaged, again.by, again.at, again.why) == (True, "alice", NOW, "bad deploy")
    assert KillSwitch.from_dict(roundtrip(KillSwitch().to_dict())).at is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"engaged": "yes", "by": "", "at": None, "why": ""}, "field 'engaged' must be true or"),
        ({"engaged": True, "by": 3, "at": None, "why": ""}, "field 'by' must be text"),
        ({"engaged": True, "by": "", "at": "now", "why": ""}, "field 'at' must be a finite"),
        ({"engaged": True}, "kill switch record lacks by, at, why"),
    ],
)
def test_kill_switch_rejects_damaged_records(data: Any, message: str) -> None:
    """Test that a damaged kill switch record is refused with a sentence."""
    with pytest.raises(SafetyError, match=message):
        KillSwitch.from_dict(data)


# Concurrency and Waiting


def test_concurrency_counts_per_runbook() -> None:
    """Test the limit per runbook, the default of 1, and that finishing frees a slot."""
    slots = Concurrency({"a": 2})
    assert [slots.try_start("a") for _ in range(3)] == [True, True, False]
    assert slots.try_start("b")
    assert not slots.try_start("b")
    slots.finish("a")
    assert slots.running("a") == 1
    assert slots.try_start("a")
    slots.finish("b")
    with pytest.raises(ValueError, match="no run of runbook b is running"):
        slots.finish("b")


def run(n: int, runbook: str = "restart", **fields: Any) -> Run:
    """Return run `rN` of `runbook` for rule r, key k, target web1 unless `fields` say else."""
    return replace(Run(f"r{n}", runbook, rule="r", key="k", target="web1"), **fields)


def test_waiting_is_fifo_per_runbook_and_capped() -> None:
    """Test FIFO order per runbook, the cap, removal and draining."""
    waiting = Waiting(cap=2)
    assert waiting.push(run(1))
    assert waiting.push(run(2, "other"))
    assert waiting.push(run(3))
    assert not waiting.push(run(4))
    assert waiting.count("restart") == 2
    assert waiting.remove("r3") == run(3)
    assert waiting.remove("r3") is None
    assert waiting.pop("restart") == run(1)
    assert waiting.pop("restart") is None
    assert waiting.push(run(5))
    assert waiting.drain() == [run(2, "other"), run(5)]
    assert len(waiting) == 0


# Gate


def gate(**limits: Any) -> Gate:
    """Return a gate with one runbook "restart" configured with `limits`."""
    return Gate([Limits("restart", **limits)])


def test_verdict_order() -> None:
    """Test that with every check objecting, each decides in turn as the earlier ones clear:
    kill switch, dry run, approval, breaker, rate limit, concurrency."""
    limits = Limits(
        "restart",
        rate_runs=1,
        rate_per=2 * HOUR,
        breaker_failures=1,
        breaker_reset=HOUR,
        approval_ttl=1800,
    )
    checks = Gate([limits], max_waiting=1)
    assert checks.admit(run(1, approved_by="alice"), NOW) == Verdict("run", "approved by alice")
    assert checks.finish("r1", False, NOW) is not None  # web1's breaker opens for an hour
    later = NOW + HOUR
    assert checks.admit(run(2, key="k2", approved_by="a"), later) == Verdict(
        "run", "approved by a; trial run: the circuit breaker for target web1 is half-open"
    )
    assert checks.admit(run(3, key="k3", approved_by="a", target="web2"), later).kind == "queued"
    checks.kill_switch.engage("alice", "hands off", later)
    checks.reconfigure([replace(limits, dry_run=True)], dry_run=True)
    probe = run(9, rule_dry_run=True)

    def decided_by() -> tuple[str, str]:
        verdict = checks.admit(probe, later)
        return verdict.kind, verdict.check

    assert decided_by() == ("refused", "kill_switch")
    checks.release("alice", later)
    assert decided_by() == ("dry_run", "dry_run")
    checks.reconfigure([limits], dry_run=False)
    assert decided_by() == ("dry_run", "dry_run")  # the rule's own setting is enough
    probe = replace(probe, rule_dry_run=False)
    assert decided_by() == ("await_approval", "approval")
    probe = replace(probe, approved_by="alice")
    assert decided_by() == ("refused", "breaker")  # r2 is web1's trial run
    probe = replace(probe, target="web3")
    assert decided_by() == ("refused", "rate_limit")  # rule r key k ran at NOW (r1)
    probe = replace(probe, key="k9")
    assert decided_by() == ("refused", "concurrency")  # r2 runs, r3 fills the queue
    assert checks.cancel("r3")
    assert decided_by() == ("queued", "concurrency")  # the refusal did not use up key k9


def test_kill_switch_refuses_even_dry_runs() -> None:
    """Test the kill switch sentence, and that it comes before dry run."""
    checks = Gate([Limits("restart")], dry_run=True)
    checks.engage("alice", "bad deploy", NOW)
    assert checks.admit(run(1), NOW) == Verdict(
        "refused",
        "refused: kill switch engaged by alice at 2026-11-25T00:00:00Z: bad deploy",
        "kill_switch",
    )
    assert checks.running() == []


def test_dry_run_reason_names_every_source() -> None:
    """Test that the dry run sentence says which settings made it dry, and nothing runs."""
    checks = Gate([Limits("restart", dry_run=True, rate_runs=1, rate_per=60)], dry_run=True)
    verdict = checks.admit(run(1, rule_dry_run=True), NOW)
    assert verdict == Verdict(
        "dry_run",
        "dry run (remediation.dry_run is on, runbook restart has dry_run, rule r has dry_run): "
        "restart was not executed",
        "dry_run",
    )
    assert checks.running() == []
    checks.reconfigure([Limits("restart", rate_runs=1, rate_per=60)], dry_run=False)
    assert checks.admit(run(2), NOW).kind == "run"  # dry runs did not use the rate limit


def test_rate_limit_reason() -> None:
    """Test the rate limit sentence the timeline shows."""
    checks = gate(rate_runs=3, rate_per=HOUR, concurrency=5)
    for n in range(3):
        assert checks.admit(run(n), NOW + n * 60).kind == "run"
    assert checks.admit(run(3), NOW + 48 * 60) == Verdict(
        "refused",
        "rate limited: 3 runs of restart for rule r key k within 1h; next allowed in 12m",
        "rate_limit",
    )


def test_approval_flow_through_the_gate() -> None:
    """Test await -> approve -> admit approved -> run, and expiry of another request."""
    checks = gate(approval_ttl=1800)
    assert checks.admit(run(1), NOW) == Verdict(
        "await_approval",
        "awaiting approval to run restart until 2026-11-25T00:30:00Z (30m); "
        "it is dropped unless approved",
        "approval",
    )
    checks.admit(run(2), NOW + 60)
    assert [p.run_id for _, p in checks.pending()] == ["r1", "r2"]
    assert checks.next_expiry() == NOW + 1800
    assert checks.approve("r1", "bob", NOW + 1799)
    assert not checks.approve("r1", "bob", NOW + 1799)
    assert checks.admit(run(1, approved_by="bob"), NOW + 1799) == Verdict("run", "approved by bob")
    assert checks.expired(NOW + 1859) == []
    assert not checks.approve("r2", "bob", NOW + 1860)
    assert checks.expired(NOW + 1860) == ["r2"]
    assert checks.next_expiry() is None
    checks.admit(run(3), NOW)
    assert checks.reject("r3", "bob", NOW)
    checks.admit(run(4), NOW)
    assert checks.cancel("r4")
    assert checks.pending() == []


def test_queued_runs_start_in_order_when_a_slot_frees() -> None:
    """Test the queued sentence, FIFO hand-back, and that finishing an unknown run is a no-op."""
    checks = gate(concurrency=1)
    assert checks.admit(run(1), NOW).kind == "run"
    assert checks.admit(run(2), NOW) == Verdict(
        "queued", "queued: 1 run of restart running (limit 1), 0 waiting ahead", "concurrency"
    )
    assert checks.admit(run(3), NOW).reason.endswith("1 waiting ahead")
    assert checks.start_waiting(NOW) == []
    assert checks.finish("r1", True, NOW + 1) is None
    assert checks.finish("r1", True, NOW + 1) is None
    assert checks.start_waiting(NOW + 1) == [
        (run(2), Verdict("run", "started after waiting for a free slot"))
    ]
    assert [r.id for r in checks.waiting()] == ["r3"]
    assert [r.id for r in checks.running()] == ["r2"]
    assert checks.cancel("r3")
    assert not checks.cancel("r3")


def test_a_full_queue_refuses() -> None:
    """Test the sentence when the waiting queue of a runbook is full."""
    checks = Gate([Limits("restart")], max_waiting=1)
    checks.admit(run(1), NOW)
    checks.admit(run(2), NOW)
    assert checks.admit(run(3), NOW) == Verdict(
        "refused",
        "refused: 1 run of restart already wait for a free slot (the queue is full)",
        "concurrency",
    )


def test_waiting_runs_are_checked_again() -> None:
    """Test that a queued run meets a breaker that opened while it waited, and the kill switch
    refuses every waiting run when engaged."""
    checks = gate(breaker_failures=1, breaker_reset=HOUR)
    checks.admit(run(1), NOW)
    checks.admit(run(2), NOW)
    checks.admit(run(3, target="web2"), NOW)
    opened = checks.finish("r1", False, NOW + 5)
    assert opened is not None
    assert opened.after == "open"
    assert checks.start_waiting(NOW + 5) == [
        (
            run(2),
            Verdict(
                "refused",
                "refused: the circuit breaker of restart for target web1 is open after "
                "1 consecutive failure; a trial run is allowed in 1h",
                "breaker",
            ),
        ),
        (run(3, target="web2"), Verdict("run", "started after waiting for a free slot")),
    ]
    checks.admit(run(4, target="web2"), NOW + 6)
    assert checks.engage("alice", "stop", NOW + 7) == [
        (
            run(4, target="web2"),
            Verdict(
                "refused",
                "refused: kill switch engaged by alice at 2026-11-25T00:00:07Z: stop",
                "kill_switch",
            ),
        )
    ]
    assert checks.engage("alice", "stop", NOW + 8) == []
    assert checks.waiting() == []


def test_breaker_trial_through_the_gate() -> None:
    """Test that half-open lets one run through as a trial, and a cancelled trial is given back."""
    checks = gate(breaker_failures=1, breaker_reset=600, concurrency=3)
    checks.admit(run(1), NOW)
    checks.finish("r1", False, NOW)
    assert checks.admit(run(2), NOW + 600) == Verdict(
        "run", "trial run: the circuit breaker for target web1 is half-open"
    )
    assert checks.admit(run(3), NOW + 600) == Verdict(
        "refused",
        "refused: the circuit breaker of restart for target web1 is half-open and its trial "
        "run has not ended",
        "breaker",
    )
    assert checks.finish("r2", None, NOW + 601) is None
    assert checks.admit(run(4), NOW + 602).reason.startswith("trial run")
    closed = checks.finish("r4", True, NOW + 603)
    assert closed is not None
    assert closed.after == "closed"
    assert checks.admit(run(5), NOW + 604) == Verdict("run", "started")


def test_operator_closes_a_breaker_through_the_gate() -> None:
    """Test the refusal of a manual breaker and closing it via Gate.breaker."""
    checks = gate(breaker_failures=1)
    checks.admit(run(1), NOW)
    checks.finish("r1", False, NOW)
    assert checks.admit(run(2), NOW + 86400).reason == (
        "refused: the circuit breaker of restart for target web1 is open after "
        "1 consecutive failure; it stays open until an operator closes it"
    )
    breaker = checks.breaker("restart")
    assert breaker is not None
    assert breaker.close("web1", NOW + 86400) is not None
    assert checks.admit(run(3), NOW + 86400).kind == "run"
    assert checks.breaker("nope") is None


def test_unknown_runbook_is_a_caller_bug() -> None:
    """Test that admitting a run of a runbook the gate does not know raises."""
    with pytest.raises(ValueError, match="runbook nope is not configured"):
        gate().admit(run(1, "nope"), NOW)
    with pytest.raises(ValueError, match="runbook x: concurrency must be at least 1"):
        Limits("x", concurrency=0)


def test_reconfigure_keeps_state_and_drops_what_cannot_start() -> None:
    """Test that a reload keeps open breakers, windows and approvals, and hands back the ids
    of waiting runs and pending approvals that lost their runbook or approval."""
    checks = Gate(
        [
            Limits("restart", breaker_failures=1, breaker_reset=HOUR, rate_runs=1, rate_per=HOUR),
            Limits("ask", approval_ttl=600),
            Limits("gone", approval_ttl=600),
        ]
    )
    checks.admit(run(1), NOW)
    checks.admit(run(2, key="k2"), NOW)  # queued
    checks.finish("r1", False, NOW)
    checks.admit(run(3, "ask"), NOW)
    checks.admit(run(4, "gone"), NOW)
    checks.admit(run(5, "gone", approved_by="bob"), NOW)  # running
    checks.admit(run(6, "gone", approved_by="bob"), NOW)  # queued
    dropped = checks.reconfigure(
        [
            Limits("restart", breaker_failures=1, breaker_reset=HOUR, rate_runs=1, rate_per=HOUR),
            Limits("ask", approval_ttl=60),
        ],
        dry_run=False,
    )
    assert sorted(dropped) == ["r4", "r6"]
    assert checks.admit(run(7, key="k7"), NOW + 1).check == "breaker"
    assert checks.pending()[0][1] == Pending("r3", NOW, NOW + 600)
    assert checks.finish("r5", True, NOW + 2) is None  # its runbook is gone: only the slot
    assert [r.id for r in checks.waiting()] == ["r2"]
    checks.reconfigure(
        [Limits("restart", breaker_failures=2, breaker_reset=HOUR, rate_runs=1, rate_per=HOUR)],
        dry_run=False,
    )
    breaker = checks.breaker("restart")
    assert breaker is not None
    assert breaker.check("web1", NOW + 3).state == "open"  # new thresholds, same state


def test_reconfigure_drops_approvals_when_a_runbook_stops_asking() -> None:
    """Test that removing `approval` hands back the pending run ids."""
    checks = gate(approval_ttl=600)
    checks.admit(run(1), NOW)
    assert checks.reconfigure([Limits("restart")], dry_run=False) == ["r1"]
    assert checks.pending() == []


def test_reconfigure_resets_a_changed_rate_limit() -> None:
    """Test that an unchanged rate limit keeps its window and a changed one starts empty."""
    checks = gate(rate_runs=1, rate_per=HOUR, concurrency=9)
    checks.admit(run(1), NOW)
    checks.reconfigure(
        [Limits("restart", rate_runs=1, rate_per=HOUR, concurrency=9)], dry_run=False
    )
    assert checks.admit(run(2), NOW).check == "rate_limit"
    checks.reconfigure(
        [Limits("restart", rate_runs=2, rate_per=HOUR, concurrency=9)], dry_run=False
    )
    assert checks.admit(run(3), NOW).kind == "run"


def test_gate_survives_a_restart() -> None:
    """Test that dump/restore through JSON keeps the kill switch, breakers and approvals."""
    limits = [
        Limits("restart", breaker_failures=1, breaker_reset=HOUR),
        Limits("ask", approval_ttl=600),
    ]
    checks = Gate(limits)
    checks.admit(run(1), NOW)
    checks.finish("r1", False, NOW)
    checks.admit(run(2, "ask"), NOW)
    checks.engage("alice", "storm", NOW)
    saved = roundtrip(checks.dump())
    again = Gate(limits)
    again.restore(saved)
    assert again.kill_switch.describe() == checks.kill_switch.describe()
    again.release("alice", NOW + 1)
    assert again.admit(run(3), NOW + 1).check == "breaker"
    assert again.pending() == [("ask", Pending("r2", NOW, NOW + 600))]
    fewer = Gate([Limits("ask")])
    fewer.restore(saved)  # state of runbooks it does not have (or that changed) is skipped
    assert fewer.pending() == []
    assert fewer.kill_switch.engaged


def test_gate_restore_is_all_or_nothing() -> None:
    """Test that a damaged part leaves the whole gate as it was."""
    checks = gate(breaker_failures=1, approval_ttl=600)
    checks.admit(run(1), NOW)
    saved = roundtrip(checks.dump())
    saved["kill_switch"] = {"engaged": True, "by": "x", "at": NOW, "why": ""}
    saved["breakers"]["restart"] = {
        "open": [{"target": "a", "opened_at": NOW, "failures": 1}],
        "counting": [],
    }
    saved["approvals"]["restart"] = {"pending": "bad"}
    with pytest.raises(SafetyError, match="approvals record 'pending' must be a list"):
        checks.restore(saved)
    assert not checks.kill_switch.engaged
    breaker = checks.breaker("restart")
    assert breaker is not None
    assert breaker.tripped(NOW) == []
    assert [p.run_id for _, p in checks.pending()] == ["r1"]
    with pytest.raises(SafetyError, match="safety record field 'breakers' must be a mapping"):
        checks.restore({**saved, "breakers": []})


def test_rate_limit_windows_are_rebuilt_from_the_last_lifes_starts() -> None:
    """Test replay_starts: the starts of the last life (from the runs table) fill the windows
    again, so a crash loop cannot reset a limit; the saved record holds no windows at all
    (it stays small), and an older record that held them still loads."""
    limits = [Limits("r", rate_runs=1, rate_per=3600.0), Limits("free")]
    gate = Gate(limits)
    assert gate.rate_window() == 3600.0
    assert gate.admit(Run("1", "r", "rule", "k", "t"), 0.0).kind == "run"
    saved = json.loads(json.dumps(gate.dump()))
    assert "rates" not in saved
    again = Gate(limits)
    again.restore(saved)
    again.replay_starts(
        [("r", "rule", "k", 0.0), ("gone", "rule", "k", 0.0), ("free", "x", "y", 0.0)]
    )
    verdict = again.admit(Run("2", "r", "rule", "k", "t"), 10.0)
    assert (verdict.kind, verdict.check) == ("refused", "rate_limit")
    assert again.admit(Run("3", "r", "rule", "other", "t"), 10.0).kind == "run"
    again.finish("3", True, 11.0)
    assert again.admit(Run("4", "r", "rule", "k", "t"), 3600.0).kind == "run"
    Gate(limits).restore({**saved, "rates": {"r": [["rule", "k", [0.0]]]}})
    assert Gate([Limits("free")]).rate_window() == 0.0
