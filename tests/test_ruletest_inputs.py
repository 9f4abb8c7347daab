"""Tests of each kind of `tocsin test` input going through the daemon's own path: log lines
through the parsers, traps through the SNMP source's check and mapper, MQTT messages
through the normaliser, API calls through the desks."""

from __future__ import annotations

from pathlib import Path

from ruletestkit import outcome, setup


async def test_syslog_lines_are_stamped_with_the_clock_and_repeat(tmp_path: Path) -> None:
    """Test that `syslog` lines get the clock's time as their stamp (the incident's first and
    last seen are the inputs' times) and that repeat/every spreads them out."""
    setup(tmp_path, {"t.test.yaml": """\
        config: tocsin.yaml
        start: 2026-03-02T08:00:00Z
        cases:
          - name: stamped
            input:
              - at: 10s
                repeat: 3
                every: 1m
                syslog: "<27>db1 postgres[7]: database down"
            expect:
              - at: 3m
                incidents:
                  - rule: db-down
                    key: db1
                    count: 3
                    first_seen: "2026-03-02T08:00:10Z"
                    last_seen: "2026-03-02T08:02:10Z"
        """})  # fmt: skip
    status, out, _ = await outcome(tmp_path, "t.test.yaml")
    assert status == 0, out


async def test_log_lines_keep_their_own_stamp_and_use_the_file_sources_parser(
    tmp_path: Path,
) -> None:
    """Test that a `log` line's own stamp is the event time (the year guessed from the
    clock), and that a file a `sources.files` entry reads gets that entry's parser (JSON)."""
    setup(tmp_path, {"t.test.yaml": """\
        config: tocsin.yaml
        start: 2026-03-02T08:00:00Z
        cases:
          - name: own stamps
            input:
              - at: 1m
                log: "Mar  2 07:59:00 db2 postgres[7]: database down"
              - at: 1m
                file: /var/log/app/shop.log
                log: '{"time": "2026-03-02T08:00:30Z", "host": "app1", "level": "error", "msg": "cart lost"}'
            expect:
              - at: 2m
                incidents:
                  - {rule: db-down, key: db2, first_seen: "2026-03-02T07:59:00Z"}
                  - {rule: json-error, key: app1, title: cart lost, first_seen: "2026-03-02T08:00:30Z"}
        """})  # fmt: skip
    status, out, _ = await outcome(tmp_path, "t.test.yaml")
    assert status == 0, out


async def test_traps_are_mapped_with_the_mibs_and_checked_against_the_communities(
    tmp_path: Path,
) -> None:
    """Test that a trap named from the MIBs becomes the event the rules expect (enumeration
    labels back as labels, uptime in fields), that its linkUp clears it, and that a trap from
    a network the community may not send from makes no event and a note says why."""
    setup(tmp_path, {"t.test.yaml": """\
        config: tocsin.yaml
        cases:
          - name: link down and up
            input:
              - at: 0s
                trap:
                  name: IF-MIB::linkDown
                  from: 192.0.2.10
                  uptime: 4242
                  varbinds:
                    IF-MIB::ifIndex.3: 3
                    IF-MIB::ifDescr.3: Gi0/3
                    IF-MIB::ifOperStatus.3: down
                    IF-MIB::ifLastChange.3: {type: TimeTicks, value: 4200}
              - at: 1m
                trap: {name: 1.3.6.1.6.3.1.1.5.4, from: 192.0.2.10, varbinds: {ifIndex.3: 3}}
            expect:
              - at: 30s
                incidents:
                  - rule: link-trap
                    key: 192.0.2.10:3
                    title: Gi0/3 is down
                    state: new
                    labels: {uptime: "4242"}
                    description: ""
              - at: 1m
                incidents:
                  - {rule: link-trap, state: resolved}
          - name: refused
            input:
              - at: 0s
                trap: {name: linkDown, from: 198.51.100.1, varbinds: {ifIndex.4: 4}}
            expect:
              - at: 1s
                incidents:
                  - {rule: link-trap}
        """})  # fmt: skip
    status, out, _ = await outcome(tmp_path, "t.test.yaml")
    assert status == 1
    assert out.splitlines()[0] == "ok    t.test.yaml:3:5: link down and up"
    assert out.splitlines()[1:] == [
        "FAIL  t.test.yaml:29:5: refused",
        "      t.test.yaml:36:11: at 1s: incidents are not as expected",
        '        expected at t.test.yaml:36:13, not found: {rule: "link-trap"}',
        "        (there are no incidents)",
        "      note: t.test.yaml:31:9: at 0s: no event: community 'public' from 198.51.100.1: "
        "community not allowed from this network",
        "1 file, 2 cases: 1 passed, 1 failed",
    ]


async def test_mqtt_messages_are_routed_and_normalised_as_the_source_does(
    tmp_path: Path,
) -> None:
    """Test that a message becomes its subscription's event (topic fields, host template,
    JSON payload), that a rule's publish is what would be sent, and that a topic no
    subscription matches makes no event."""
    setup(tmp_path, {"t.test.yaml": """\
        config: tocsin.yaml
        cases:
          - name: hot sensor
            input:
              - at: 0s
                mqtt: {topic: sensors/berlin/d1/temp, payload: {temp: 35.5}}
              - at: 1s
                mqtt: {topic: sensors/berlin/d2/temp, payload: '{"temp": 20}', qos: 0}
              - at: 2s
                mqtt: {topic: elsewhere/d3, payload: '{"temp": 99}'}
            expect:
              - at: 10s
                incidents:
                  - {rule: hot, key: d1, title: d1 at berlin is hot, priority: P3}
                published:
                  - {broker: site, rule: hot, topic: alerts/berlin, payload: '{"device":"d1"}', qos: 1}
              - at: 11s
                incidents: []
        """})  # fmt: skip
    status, out, _ = await outcome(tmp_path, "t.test.yaml")
    assert status == 1
    assert out.splitlines()[-2:] == [
        "      note: t.test.yaml:9:9: at 2s: no event: no subscription of broker site matches "
        "topic 'elsewhere/d3'",
        "1 file, 1 case: 0 passed, 1 failed",
    ]
    assert (
        '        not expected: incident 1: rule hot key "d1", new, P3, count 1: '
        '"d1 at berlin is hot"' in out
    )


async def test_silences_mute_until_they_are_expired(tmp_path: Path) -> None:
    """Test that a silence made through the desk mutes incidents it matches (muted_by says
    by what), and that expiring it unmutes them."""
    setup(tmp_path, {"t.test.yaml": """\
        config: tocsin.yaml
        start: 2020-01-06T09:00:00Z          # long past: the desk reads the case's clock
        cases:
          - name: silenced
            input:
              - at: 0s
                silence: {matchers: ["host=db1"], duration: 1h, comment: disk swap, by: bob}
                response: {state: active, comment: disk swap, created_by: bob}
              - at: 1m
                syslog: "db1 postgres[7]: database down"
              - at: 5m
                expire-silence: {silence: 1}
                response: {state: expired}
              - at: 6m
                syslog: "db1 postgres[7]: database down"
            expect:
              - at: 2m
                incidents:
                  - rule: db-down
                    muted_by: silence
                    muted: {regex: "^muted by silence [0-9a-f]{8} \\\\(disk swap, by bob\\\\)"}
                notifications: []
              - at: 7m
                incidents:
                  - {rule: db-down, count: 2, muted_by: "", muted: ""}
        """})  # fmt: skip
    status, out, _ = await outcome(tmp_path, "t.test.yaml")
    assert status == 0, out


async def test_incidents_are_worked_by_id_or_by_rule_and_refusals_can_be_expected(
    tmp_path: Path,
) -> None:
    """Test acknowledge and resolve through the incident desk, naming the incident by rule
    or id, an expected refusal, and the failures of an unexpected refusal, of a wrong
    answer and of an incident that is not there."""
    setup(tmp_path, {"t.test.yaml": """\
        config: tocsin.yaml
        cases:
          - name: worked
            input:
              - at: 0s
                syslog: "db1 postgres[7]: database down"
              - at: 1m
                acknowledge: {incident: {rule: db-down, key: db1}, by: alice, note: looking}
                response: {state: acknowledged, acknowledged_at: "2026-01-05T00:01:00Z"}
              - at: 2m
                acknowledge: {incident: 1, by: alice}
                error: {status: 409, message: {contains: acknowledged}}
              - at: 3m
                resolve: {incident: 1, by: alice}
            expect:
              - at: 4m
                incidents:
                  - {id: 1, state: resolved, resolved_at: "2026-01-05T00:03:00Z"}
          - name: mistakes
            input:
              - at: 0s
                syslog: "db1 postgres[7]: database down"
              - at: 1m
                resolve: {incident: 1}
                response: {state: closed}
              - at: 2m
                resolve: {incident: 1}
              - at: 3m
                acknowledge: {incident: {rule: unit-failed}}
              - at: 4m
                close: {incident: 1}
                error: 404
            expect:
              - at: 5m
                incidents:
                  - {id: 1, state: closed}
        """})  # fmt: skip
    status, out, _ = await outcome(tmp_path, "t.test.yaml")
    assert status == 1
    lines = out.splitlines()
    assert lines[:4] == [
        "ok    t.test.yaml:3:5: worked",
        "FAIL  t.test.yaml:19:5: mistakes",
        "      t.test.yaml:23:9: at 1m: resolve incident 1: the answer is not as expected "
        "(at t.test.yaml:25:19):",
        '        state: expected "closed", got "resolved"',
    ]
    assert lines[4].startswith('        answer: {id: 1, fingerprint: "db-down:db1", ')
    assert lines[5:8] == [
        "      t.test.yaml:26:9: at 2m: resolve incident 1: refused with 409: incident 1 is "
        "resolved; it can move to resolved only from acknowledged, in_progress, new, on_hold",
        "      t.test.yaml:28:9: at 3m: acknowledge the incident of rule unit-failed: rule "
        "unit-failed has no incident",
        lines[7],
    ]
    assert lines[7].startswith(
        "      t.test.yaml:30:9: at 4m: close incident 1: expected a refusal (at "
        't.test.yaml:32:16), but it was done: {id: 1, fingerprint: "db-down:db1", '
    )
    assert lines[8:] == ["1 file, 2 cases: 1 passed, 1 failed"]


async def test_requests_go_through_the_service_desk(tmp_path: Path) -> None:
    """Test submit, approve and the steps by hand: a request with a runbook runs it as a dry
    run (which walks it to fulfilled, saying nothing ran), one without is fulfilled by hand, a rule's request is taken from the
    outbox, and a request past its SLA raises a paged incident."""
    setup(tmp_path, {"t.test.yaml": """\
        config: tocsin.yaml
        cases:
          - name: requests
            input:
              - at: 0s
                request: {item: restart-app, input: {app: shop}, by: bob}
                response: {state: submitted, approval: operator}
              - at: 1m
                approve-request: {request: 1, by: bob}
                error: {status: 403, message: "request 1 was submitted by bob: somebody else must approve it"}
              - at: 2m
                approve-request: {request: 1, by: carol}
              - at: 3m
                request: {item: desk-move, input: {desk: B12}, by: bob}
              - at: 4m
                fulfil-request: {request: 2, by: alice, note: moved}
              - at: 5m
                syslog: "web2 shop[3]: app cart hung"
              - at: 6m
                request: {item: restart-app, input: {app: Shop1}}
                error: {status: 400, message: {contains: "must match the pattern"}}
            expect:
              - at: 10m
                requests:
                  in_order:
                    - {id: 1, state: fulfilled, decided_by: carol, reason: ""}
                    - {id: 2, item: desk-move, state: fulfilled}
                    - {id: 3, requested_by: "rule:app-hung", input: {app: cart}, state: submitted}
                runs:
                  - {runbook: restart-app, rule: "request:restart-app", state: dry_run,
                     argv: [[/usr/bin/app-restart, shop]]}
          - name: overdue
            input:
              - at: 0s
                request: {item: desk-move, input: {desk: C3}, by: bob}
            expect:
              - at: 1h
                requests: [{id: 1, sla_breached: true}]
                incidents:
                  - {rule: request-sla, key: "1", priority: P2, escalation: {policy: page-carol}}
                notifications:
                  - {receiver: hook, user: carol, reason: escalation level 1, incidents: [1]}
        """})  # fmt: skip
    status, out, _ = await outcome(tmp_path, "t.test.yaml")
    assert status == 0, out


async def test_access_goes_through_the_policy_and_is_audited(tmp_path: Path) -> None:
    """Test a grant the policy allows at once, one that needs approval (refused to its own
    requester, approved by carol), a denied one and a revoke; provisioning runs dry, which
    walks each grant through as if its runbooks had worked, saying nothing ran."""
    setup(tmp_path, {"t.test.yaml": """\
        config: tocsin.yaml
        cases:
          - name: access
            input:
              - at: 0s
                access: {role: ssh, subject: alice, duration: 1h, by: alice}
                response: {verdict: allowed, grant: {id: 1, role: ssh, subject: alice}}
              - at: 1s
                access: {role: db-admin, subject: bob, by: bob}
                response: {verdict: needs_approval}
              - at: 2s
                approve-access: {grant: 2, by: bob}
                error: {status: 403, message: "bob may not approve their own request"}
              - at: 3s
                approve-access: {grant: 2, by: carol}
                response: {id: 2, granted_by: carol}
              - at: 4s
                access: {role: ssh, subject: bob, by: bob}
                response: {verdict: denied, reason: "bob may not request ssh (requesters: user alice)"}
              - at: 5s
                revoke-access: {role: ssh, subject: alice, by: carol, why: left}
            expect:
              - at: 10s
                grants:
                  - {id: 1, role: ssh, subject: alice, state: revoked, ended_by: carol}
                  - {id: 2, role: db-admin, subject: bob, granted_by: carol, state: active}
                runs:
                  - {rule: "access:grant", key: "1", state: dry_run, argv: [[/usr/bin/grant, ssh, alice]]}
                  - {rule: "access:grant", key: "2", state: dry_run}
                  - {rule: "access:revoke", key: "1", state: dry_run}
                audit:
                  in_order:
                    - {action: requested, role: ssh, subject: alice, by: alice}
                    - {action: approved, role: ssh, by: policy}
                    - {action: granted, role: ssh, by: policy, why: {contains: "dry run: nothing ran"}}
                    - {action: requested, role: db-admin, subject: bob}
                    - {action: denied, role: db-admin, why: {contains: "may not approve"}}
                    - {action: approved, role: db-admin, by: carol}
                    - {action: granted, role: db-admin, by: carol}
                    - {action: requested, role: ssh, subject: bob, by: bob}
                    - {action: denied, role: ssh, subject: bob, by: policy}
                    - {action: requested, role: ssh, subject: alice, by: carol, why: {contains: left}}
                    - {action: revoked, role: ssh, subject: alice, why: {contains: "dry run: nothing ran"}}
        """})  # fmt: skip
    status, out, _ = await outcome(tmp_path, "t.test.yaml")
    assert status == 0, out


async def test_the_other_steps_of_incidents_requests_and_grants(tmp_path: Path) -> None:
    """Test start, hold and reopen of an incident; a request started, failed and closed by
    hand and one rejected; a grant rejected by its approver."""
    setup(tmp_path, {"t.test.yaml": """\
        config: tocsin.yaml
        cases:
          - name: steps
            input:
              - at: 0s
                syslog: "db1 postgres[7]: database down"
              - at: 1m
                start: {incident: 1, by: alice}
                response: {state: in_progress}
              - at: 2m
                hold: {incident: 1, by: alice, note: waiting for the vendor}
                response: {state: on_hold}
              - at: 3m
                resolve: {incident: 1, by: alice}
              - at: 4m
                reopen: {incident: 1, by: bob, note: still down}
                response: {state: new, reopened: 1}
              - at: 5m
                request: {item: desk-move, input: {desk: A1}, by: bob}
              - at: 6m
                start-request: {request: 1, by: alice}
                response: {state: fulfilling}
              - at: 7m
                fail-request: {request: 1, by: alice, note: no free desk}
                response: {state: failed, reason: no free desk}
              - at: 8m
                close-request: {request: 1, by: alice}
                response: {state: closed}
              - at: 9m
                request: {item: restart-app, input: {app: shop}, by: bob}
              - at: 10m
                reject-request: {request: 2, by: carol, note: not now}
                response: {state: rejected, decided_by: carol}
              - at: 11m
                access: {role: db-admin, subject: alice, by: alice}
              - at: 12m
                reject-access: {grant: 1, by: carol, why: not today}
                response: {id: 1, state: denied}
            expect:
              - at: 13m
                incidents: [{id: 1, state: new, reopened: 1}]
                requests:
                  - {id: 1, state: closed}
                  - {id: 2, state: rejected}
                grants: [{id: 1, state: denied, why: {contains: not today}}]
                runs: []
        """})  # fmt: skip
    status, out, _ = await outcome(tmp_path, "t.test.yaml")
    assert status == 0, out
