"""`GET /api/v1/rules` and the per-rule metrics, on a real ApiServer whose engine holds the
bundled rules (see apikit)."""

from __future__ import annotations

import re

import schemathesis

from apikit import ApiKit
from testkit import make_event
from tocsin.model import Event

T0 = 1_795_564_800.0


def feed(api: ApiKit, events: list[Event]) -> None:
    """Run a batch through the kit's engine on its loop, as the daemon's engine task does."""
    engine = api.engine
    assert engine is not None

    async def process() -> None:
        engine.process(events)

    api.run(process())


def ssh(n: int, user: str = "bob") -> Event:
    """An sshd failure from one address."""
    return make_event(
        f"Failed password for {user} from 192.0.2.9 port 22 ssh2", program="sshd", time=T0 + n
    )


def test_rules_are_listed_in_order_with_their_figures(api: ApiKit) -> None:
    """Test the listing after a batch: every bundled rule in load order (the clear follow-up
    last), what it is, and what it did; the per-event time is the total over the events."""
    feed(api, [ssh(1), ssh(2, "root"), make_event("(root) CMD (x)", program="cron", time=T0)])
    reply = api.request("GET", "/api/v1/rules")
    assert reply.status == 200
    rules = reply.body["rules"]
    assert [r["id"] for r in rules][:3] == ["link-down", "link-up", "snmp-link-down"]
    assert rules[-1]["id"] == "snmp-link-down#clear"
    by_id = {r["id"]: r for r in rules}
    assert (by_id["snmp-link-down#clear"]["kind"], by_id["snmp-link-down#clear"]["follows"]) == (
        "clear",
        "snmp-link-down",
    )
    brute = by_id["ssh-bruteforce"]
    assert (brute["kind"], brute["correlation"], brute["continue"]) == ("rule", ["threshold"], True)
    assert (brute["evaluated"], brute["matches"], brute["actions"]) == (2, 2, 0)
    assert brute["where"].endswith("rules/ssh.yaml:9")
    admin = by_id["ssh-failed-password-admin"]
    assert (admin["evaluated"], admin["matches"], admin["actions"]) == (2, 1, 1)
    plain = by_id["ssh-failed-password"]
    assert (plain["evaluated"], plain["matches"], plain["actions"]) == (1, 1, 1)
    assert by_id["cron-noise"]["actions_declared"] == ["drop"]
    assert by_id["cron-noise"]["matches"] == 1
    assert admin["eval_seconds"] > 0
    assert admin["eval_us_per_event"] == round(admin["eval_seconds"] * 1e6 / 2, 3)
    assert by_id["oom-kill"]["eval_us_per_event"] is None  # never tried: no average
    document = schemathesis.openapi.from_url(f"{api.url}/api/v1/openapi.json")
    document["/api/v1/rules"]["GET"].Case().call_and_validate(base_url=api.url)


def test_metrics_carry_actions_and_time_per_rule(api: ApiKit) -> None:
    """Test that /metrics shows tocsin_rule_actions_total and tocsin_rule_eval_seconds_total
    for each rule, read from the engine when scraped."""
    feed(api, [ssh(1), ssh(2)])
    text = api.request("GET", "/metrics").body
    assert 'tocsin_rule_actions_total{rule="ssh-failed-password"} 2.0' in text
    assert 'tocsin_rule_actions_total{rule="ssh-bruteforce"} 0.0' in text
    found = re.search(r'tocsin_rule_eval_seconds_total\{rule="ssh-failed-password"\} (\S+)', text)
    assert found is not None
    assert float(found.group(1)) > 0


def test_an_unknown_parameter_is_refused(api: ApiKit) -> None:
    """Test that the listing takes no parameters and says so."""
    reply = api.request("GET", "/api/v1/rules?sort=time")
    assert (reply.status, reply.body) == (400, {"error": "unknown parameter(s): sort"})
