"""Tests of `tocsin test` expectations: each kind of record, multisets and order, timers on
the virtual clock, and the diff a failing case prints."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ruletestkit import RULES, outcome, setup
from tocsin.app import Daemon
from tocsin.engine.clock import ManualClock
from tocsin.notify.notice import Notice
from tocsin.ruletest.harness import _Play, _Writer, prepare
from tocsin.ruletest.records import read_records
from tocsin.ruletest.spec import RECORD_KEYS, load_test_file
from tocsin.store.sqlite import SqliteStore

HEARTBEAT = (
    RULES
    + """\
  - id: heartbeat-missing
    match: {program: heartbeat, message: alive}
    key: "{{ event.host }}"
    absence: {within: 3m}
    actions:
      - incident: {title: "no heartbeat from {{ event.host }}", impact: low, urgency: low}
"""
)


async def test_a_failing_case_prints_what_differs_where(tmp_path: Path) -> None:
    """Test the whole report of a failing case: each unmet pattern with where it is written,
    the closest record and the fields that differ, the records nobody expected, an ordered
    check by position, and the summary."""
    setup(tmp_path, {"t.test.yaml": """\
        config: tocsin.yaml
        cases:
          - name: two hosts
            input:
              - at: 0s
                syslog: ["db1 postgres[7]: database down", "db2 postgres[7]: database down"]
            expect:
              - at: 10s
                incidents:
                  - {rule: db-down, key: db1, state: resolved}
                  - {rule: db-down, key: db3}
                notifications:
                  in_order:
                    - {receiver: hook, incidents: [2, 1]}
        """})  # fmt: skip
    status, out, err = await outcome(tmp_path, "t.test.yaml")
    assert (status, err) == (1, "")
    assert out == (
        "FAIL  t.test.yaml:3:5: two hosts\n"
        "      t.test.yaml:10:11: at 10s: incidents are not as expected\n"
        '        expected at t.test.yaml:10:13, not found: {rule: "db-down", key: "db1", '
        'state: "resolved"}\n'
        '          closest: incident 1: rule db-down key "db1", new, P1, count 1: '
        '"database down on db1"\n'
        '            state: expected "resolved", got "new"\n'
        '        expected at t.test.yaml:11:13, not found: {rule: "db-down", key: "db3"}\n'
        '          closest: incident 2: rule db-down key "db2", new, P1, count 1: '
        '"database down on db2"\n'
        '            key: expected "db3", got "db2"\n'
        "      t.test.yaml:14:13: at 10s: notifications are not as expected (in order)\n"
        '        expected at t.test.yaml:14:15: {receiver: "hook", incidents: [2, 1]}\n'
        "          got trigger to hook for carol about incidents [1] (escalation level 1)\n"
        "            incidents: expected [2, 1], got [1]\n"
        "        not expected: trigger to hook for carol about incidents [2] (escalation level 1)\n"
        "        not expected: trigger to hook about incidents [1, 2] (new)\n"
        "1 file, 1 case: 0 passed, 1 failed\n"
    )


async def test_notifications_are_the_outbox_rows_that_would_be_sent(tmp_path: Path) -> None:
    """Test that a group notice (after group_wait) and an escalation page are both in the
    outbox with their receiver, action, reason, group and rendered body."""
    setup(tmp_path, {"t.test.yaml": """\
        config: tocsin.yaml
        cases:
          - name: grouped and paged
            input:
              - at: 0s
                syslog: "db1 postgres[7]: database down"
              - at: 5s
                syslog: "db2 postgres[7]: database down"
            expect:
              - at: 9s
                notifications:
                  - {receiver: hook, user: carol, reason: escalation level 1, incidents: [1]}
                  - {receiver: hook, user: carol, reason: escalation level 1, incidents: [2]}
              - at: 10s
                notifications:
                  in_order:
                    - {receiver: hook, action: trigger, incidents: [1]}
                    - {receiver: hook, action: trigger, incidents: [2]}
                    - receiver: hook
                      channel: webhook:hook
                      action: trigger
                      reason: new
                      incidents: [1, 2]
                      group: {rule: db-down}
                      user: null
                      body: {json: {status: firing, incidents: [{id: 1, title: database down on db1}, {id: 2}]}}
        """})  # fmt: skip
    status, out, _ = await outcome(tmp_path, "t.test.yaml")
    assert status == 0, out


async def test_timers_fire_on_the_virtual_clock_without_input(tmp_path: Path) -> None:
    """Test that an absence rule fires from the ticks alone, a lateness (10s) after its
    deadline, and that the next beat resolves it."""
    setup(tmp_path, {"t.test.yaml": """\
        config: tocsin.yaml
        cases:
          - name: heartbeat
            input:
              - at: 0s
                syslog: "app2 heartbeat: alive"
              - at: 10m
                syslog: "app2 heartbeat: alive"
            expect:
              - at: 190s
                incidents: []
              - at: 191s
                incidents:
                  - {rule: heartbeat-missing, key: app2, state: new, first_seen: "2026-01-05T00:03:00Z"}
              - at: 10m
                incidents:
                  - {rule: heartbeat-missing, state: resolved, resolved_at: "2026-01-05T00:10:00Z"}
        """}, rules=HEARTBEAT)  # fmt: skip
    status, out, _ = await outcome(tmp_path, "t.test.yaml")
    assert status == 0, out


async def test_problems_maintenance_and_a_coarser_tick(tmp_path: Path) -> None:
    """Test a problem a rule opens (through the service desk's outbox) with the incidents it
    links, and a maintenance window from the muting file muting an incident on Sunday night;
    a 1m tick fires the window's timers late, as a daemon with that tick would."""
    setup(tmp_path, {"t.test.yaml": """\
        config: tocsin.yaml
        start: 2026-01-04T01:58:00Z      # a Sunday; db-patching is 02:00-04:00 UTC
        tick: 1m
        cases:
          - name: flapping links make a problem
            input:
              - at: 0s
                trap: {name: linkDown, from: 192.0.2.5, varbinds: {ifIndex.1: 1, ifDescr.1: a}}
              - at: 1s
                trap: {name: linkDown, from: 192.0.2.5, varbinds: {ifIndex.2: 2, ifDescr.2: b}}
            expect:
              - at: 1m
                problems:
                  - {id: 1, title: links flap on 192.0.2.5, state: new, incidents: [1, 2]}
          - name: patching window
            input:
              - at: 1m
                syslog: "db1 postgres[7]: database down"
              - at: 3m
                syslog: "db2 postgres[7]: database down"
            expect:
              - at: 4m
                incidents:
                  - {key: db1, muted_by: "", escalation: {level: 1}}
                  - key: db2
                    muted_by: maintenance
                    muted: {regex: "^muted by maintenance window db-patching until 2026-01-04T04:00:00Z"}
                    escalation: null
        """})  # fmt: skip
    status, out, _ = await outcome(tmp_path, "t.test.yaml")
    assert status == 0, out


async def test_record_fields_are_those_the_expectations_offer(tmp_path: Path) -> None:
    """Test that every kind of record has exactly the fields RECORD_KEYS lets a test name
    (so a view that changes cannot drift from what test files are checked against)."""
    setup(tmp_path, {"t.test.yaml": """\
        config: tocsin.yaml
        cases:
          - name: everything
            input:
              - at: 0s
                syslog: "web1 systemd[1]: nginx.service: Failed"
              - at: 0s
                mqtt: {topic: sensors/berlin/d1/temp, payload: {temp: 35.5}}
              - at: 0s
                trap: {name: linkDown, from: 192.0.2.5, varbinds: {ifIndex.1: 1}}
              - at: 0s
                request: {item: desk-move, input: {desk: B12}}
              - at: 0s
                access: {role: ssh, subject: alice, by: alice}
            expect:
              - {at: 20s, incidents: []}
        """})  # fmt: skip
    spec = load_test_file(tmp_path / "t.test.yaml")
    world = prepare(spec, tmp_path)
    (case,) = spec.cases
    clock = ManualClock(case.start)
    notices: dict[str, Notice] = {}
    play = _Play(world, case, clock, notices)
    with tempfile.TemporaryDirectory() as folder:
        config = world.config_for(Path(folder), notices)
        writer = _Writer(store=SqliteStore(path=config.store_path))
        async with writer, Daemon(config, clock=clock).open_core(writer) as core:
            await play.run(core, writer)
            for kind, keys in RECORD_KEYS.items():
                records = await read_records(kind, core, writer, notices)
                assert records, kind
                assert sorted(records[0]) == sorted(keys), kind
