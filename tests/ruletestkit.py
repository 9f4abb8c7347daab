"""Helpers for the tests of `tocsin test`: a daemon config with every part (MQTT and SNMP
sources, receivers and escalation, runbooks, a catalog and access policy), and a way to run
test files in-process and read what `tocsin test` prints."""

from __future__ import annotations

import contextlib
import io
import re
import textwrap
from collections.abc import Mapping
from pathlib import Path

from tocsin.ruletest.runner import report, run_files

CONFIG = """\
state_dir: state
rules: [rules.yaml]
incidents: incidents.yaml
runbooks: runbooks.yaml
muting: muting.yaml
mqtt:
  brokers:
    site: {host: 127.0.0.1, port: 1883}
sources:
  files:
    - {path: /var/log/app/*.log, parser: json}
  snmp:
    listen: ["127.0.0.1:0"]
    communities:
      - {community: public, networks: [192.0.2.0/24]}
  mqtt:
    - topic: sensors/+/+/temp
      topic_fields: sensors/{site}/{device}/temp
      host: "{{ device }}"
      program: sensors
"""

INCIDENTS = """\
users:
  - {name: alice, email: alice@example.com, receivers: [hook]}
  - {name: bob, email: bob@example.com, receivers: [hook]}
  - {name: carol, email: carol@example.com, receivers: [hook]}
receivers:
  - name: hook
    webhook: {url: "https://hooks.example.com/tocsin"}
escalation_policies:
  - name: page-carol
    levels:
      - targets: [{user: carol}]
        delay: 10m
route:
  receiver: hook
  group_by: [rule]
  group_wait: 10s
  routes:
    - matchers: [priority=P1]
      receiver: hook
      escalation: page-carol
"""

MUTING = """\
maintenance:
  - name: db-patching
    matchers: ['host=~db[0-9]+']
    time_zone: UTC
    intervals:
      - weekdays: [sunday]
        times: [{start: "02:00", end: "04:00"}]
"""

RUNBOOKS = """\
runbooks:
  - name: restart-unit
    steps:
      - exec: {argv: [/usr/bin/systemctl, restart, "{{ fields.unit }}"]}
  - name: restart-app
    steps:
      - exec: {argv: [/usr/bin/app-restart, "{{ request.app }}"]}
  - name: grant-access
    steps:
      - exec: {argv: [/usr/bin/grant, "{{ access.role }}", "{{ access.subject }}"]}
  - name: revoke-access
    steps:
      - exec: {argv: [/usr/bin/revoke, "{{ access.role }}", "{{ access.subject }}"]}
catalog:
  - name: desk-move
    fields:
      desk: {type: string, required: true}
    sla: 1h
    escalation: page-carol
  - name: restart-app
    fields:
      app: {type: string, required: true, pattern: '[a-z]+'}
    approval: {role: operator}
    runbook: restart-app
access:
  roles:
    - name: ssh
      rights: [ssh:login]
      holders: [user:alice]
      max_duration: 8h
      provision: {grant: grant-access, revoke: revoke-access}
    - name: db-admin
      rights: [db:all]
      holders: [user:alice, user:bob]
      approval: {by: [user:carol], role: operator, ttl: 1h}
      max_duration: 1h
      provision: {grant: grant-access, revoke: revoke-access}
"""

RULES = """\
rules:
  - id: unit-failed
    match: {program: systemd, message: {regex: '(?P<unit>\\S+\\.service): Failed'}}
    key: "{{ event.host }}:{{ unit }}"
    actions:
      - incident: {title: "{{ unit }} failed on {{ event.host }}", impact: medium, urgency: high}
      - remediate: {runbook: restart-unit}
  - id: hot
    match: {source: mqtt}
    when: "fields.payload.temp > 30"
    key: "{{ fields.device }}"
    actions:
      - incident: {title: "{{ fields.device }} at {{ fields.site }} is hot", impact: low,
                   urgency: high}
      - publish: {topic: "alerts/{{ fields.site }}", payload: {device: "{{ fields.device }}"}}
  - id: link-trap
    match: {source: snmp, fields.trap: IF-MIB::linkDown}
    key: "{{ event.host }}:{{ fields.vars.ifIndex }}"
    clear:
      match: {source: snmp, fields.trap: IF-MIB::linkUp}
    actions:
      - incident: {title: "{{ fields.vars.ifDescr }} is {{ fields.vars.ifOperStatus }}",
                   impact: high, urgency: high, labels: {uptime: "{{ fields.uptime }}"}}
      - problem: {title: "links flap on {{ event.host }}", key: "{{ event.host }}"}
  - id: app-hung
    match: {message: {regex: 'app (?P<app>\\S+) hung'}}
    key: "{{ app }}"
    actions:
      - request: {item: restart-app, input: {app: "{{ app }}"}}
  - id: db-down
    match: {message: {regex: 'database down'}}
    key: "{{ event.host }}"
    actions:
      - incident: {title: "database down on {{ event.host }}", impact: high, urgency: high}
  - id: json-error
    match: {source: log, level: err}
    key: "{{ event.host }}"
    actions:
      - incident: {title: "{{ event.message }}", impact: low, urgency: low}
"""


def setup(folder: Path, tests: Mapping[str, str], *, rules: str = RULES) -> None:
    """Write the daemon config (rules.yaml, incidents, runbooks, muting) and test files."""
    files = {
        "tocsin.yaml": CONFIG,
        "incidents.yaml": INCIDENTS,
        "muting.yaml": MUTING,
        "runbooks.yaml": RUNBOOKS,
        "rules.yaml": rules,
    }
    for name, text in {**files, **tests}.items():
        (folder / name).write_text(textwrap.dedent(text))


async def outcome(folder: Path, *names: str, case: str | None = None) -> tuple[int, str, str]:
    """Run test files from `folder` as `tocsin test` does there (so it names them as an
    operator would see them); return its exit status, stdout and stderr."""
    with contextlib.chdir(folder):
        results = await run_files([Path(n) for n in names], case=re.compile(case) if case else None)
    out, err = io.StringIO(), io.StringIO()
    status = report(results, out, err)
    return status, out.getvalue(), err.getvalue()
