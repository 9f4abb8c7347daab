"""Tests that `tocsin test` refuses test files it cannot run, naming file:line and the
problem, and exits 2."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ruletestkit import outcome, setup
from tocsin.ruletest.spec import load_test_file
from tocsin.yamlsrc import SourceError

RULE = """\
rules:
  - id: a
    match: {message: {regex: 'x'}}
    actions: [{incident: {title: t}}]
"""
CASE = "cases:\n  - {name: x, expect: [{at: 0s, incidents: []}]}\n"
INPUT = "rules: [r.yaml]\ncases:\n  - name: x\n    input:\n      - %s\n    expect: [{at: 0s, incidents: []}]\n"

PARSE_ERRORS = {
    "rules: [r.yaml]\ncase:\n  - name: x\n": (
        "t.test.yaml:2:1: unknown test file key 'case' (did you mean 'cases'?)"
    ),
    CASE: "t.test.yaml:1:1: give 'config' (a tocsin.yaml), 'rules' (rule files), or both",
    "rules: [r.yaml]\ncases: []\n": (
        "t.test.yaml:2:8: 'cases' is empty: a test file needs at least one case"
    ),
    "rules: [r.yaml]\ncases:\n  - name: x\n    expect: [{at: soon, incidents: []}]\n": (
        "t.test.yaml:4:19: 'at' must be a duration like 250ms, 10s, 5m, 1h or 2d, not 'soon'"
    ),
    "rules: [r.yaml]\ncases:\n  - name: x\n    expect:\n      - at: 0s\n        incidents:\n"
    "          - {rule: a, stat: new}\n": (
        "t.test.yaml:7:23: incidents have no field 'stat' (did you mean 'state'?)"
    ),
    "rules: [r.yaml]\ncases:\n  - name: x\n    expect:\n      - at: 0s\n        incidents:\n"
    "          - {title: {regex: '(unclosed'}}\n": (
        "t.test.yaml:7:29: invalid regex: missing ), unterminated subpattern at position 0"
    ),
    "rules: [r.yaml]\n" + CASE + "  - {name: x, expect: [{at: 0s, incidents: []}]}\n": (
        "t.test.yaml:4:5: duplicate case name 'x' (first at t.test.yaml:3:5)"
    ),
    "rules: [r.yaml]\ncases:\n  - name: x\n": (
        "t.test.yaml:3:5: case 'x' expects nothing: give 'expect'"
    ),
    "rules: [r.yaml]\ncases:\n  - name: x\n    expect: [{at: 0s}]\n": (
        "t.test.yaml:4:14: an expectation needs at least one of incidents, notifications, "
        "published, runs, problems, requests, grants, audit"
    ),
    "rules: [r.yaml]\ncases:\n  - name: x\n    expect: [{at: 0s, incidents: {in_ordr: []}}]\n": (
        "t.test.yaml:4:35: unknown incidents option 'in_ordr' (did you mean 'in_order'?)"
    ),
    "rules: [r.yaml]\nstart: '2026-01-05 10:00'\n" + CASE: (
        "t.test.yaml:2:8: 'start' must be an ISO 8601 time with a UTC offset, like "
        "2026-01-05T09:00:00Z"
    ),
    "rules: [r.yaml\ncases: []\n": "t.test.yaml:2:6: invalid YAML: did not find expected ',' or ']'",
    INPUT % "{at: 0s, log: a, syslog: b}": (
        "t.test.yaml:5:9: an input needs exactly one of log, syslog, trap, mqtt, silence, "
        "expire-silence, acknowledge, start, hold, resolve, close, reopen, request, "
        "approve-request, reject-request, start-request, fulfil-request, fail-request, "
        "close-request, access, approve-access, reject-access, revoke-access (got log and syslog)"
    ),
    INPUT % "{at: 0s, sylog: a}": (
        "t.test.yaml:5:18: unknown input key 'sylog' (did you mean 'syslog'?)"
    ),
    INPUT % "{at: 0s, every: 1s, log: a}": "t.test.yaml:5:18: 'every' needs 'repeat'",
    INPUT % "{at: 0s, log: a, response: {}}": (
        "t.test.yaml:5:26: 'response' is for API calls, not log inputs"
    ),
    INPUT % "{at: 0s, repeat: 2, acknowledge: {incident: 1}}": (
        "t.test.yaml:5:18: 'repeat' is for events, not API calls"
    ),
    INPUT % "{at: 0s, trap: {name: coldStart, varbinds: {ifIndex.1: {type: Integr, value: 1}}}}": (
        "t.test.yaml:5:71: unknown varbind type 'Integr' (did you mean 'Integer'?); use one of "
        "Integer, OctetString, ObjectIdentifier, IpAddress, Counter32, Gauge32, TimeTicks, "
        "Counter64, Opaque, Null"
    ),
    INPUT % "{at: 0s, trap: {name: coldStart, from: somewhere}}": (
        "t.test.yaml:5:48: 'from' must be an IP address, not 'somewhere'"
    ),
    INPUT % "{at: 0s, approve-request: {request: 1, as: boss}}": (
        "t.test.yaml:5:52: 'as' must be viewer, operator or admin, not 'boss'"
    ),
    INPUT % "{at: 0s, silence: {matchers: [host=a], comment: c}}": (
        "t.test.yaml:5:27: give exactly one of 'ends' and 'duration'"
    ),
    INPUT % "{at: 0s, silence: {matchers: ['host=~('], duration: 1h, comment: c}}": (
        "t.test.yaml:5:39: matcher 'host=~(' has an invalid regex: missing ): ("
    ),
    INPUT % "{at: 0s, acknowledge: {incident: {rul: a}}}": (
        "t.test.yaml:5:43: unknown incident option 'rul' (did you mean 'rule'?)"
    ),
    INPUT % "{at: 0s, access: {role: ssh}}": "t.test.yaml:5:26: missing required key 'subject'",
    INPUT % "{at: 0s, resolve: {incident: 1}, response: {}, error: 409}": (
        "t.test.yaml:5:9: give 'response' or 'error', not both"
    ),
}


@pytest.fixture
def here(tmp_path: Path) -> Iterator[Path]:
    """Run in tmp_path, so messages name files as an operator would see them."""
    before = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(before)


@pytest.mark.parametrize(("text", "message"), list(PARSE_ERRORS.items()))
def test_a_bad_test_file_is_refused_at_file_line(here: Path, text: str, message: str) -> None:
    """Test that each kind of mistake in a test file is reported where it is written."""
    (here / "t.test.yaml").write_text(text)
    with pytest.raises(SourceError) as caught:
        load_test_file(Path("t.test.yaml"))
    assert str(caught.value) == message


async def test_a_file_that_cannot_run_exits_2_and_says_why(here: Path) -> None:
    """Test that the exit status is 2, the problem is on stderr and the other files still
    run, each case reported."""
    (here / "r.yaml").write_text(RULE)
    (here / "bad.test.yaml").write_text("rules: [r.yaml]\ncase: []\n")
    (here / "good.test.yaml").write_text("rules: [r.yaml]\n" + CASE)
    status, out, err = await outcome(here, "bad.test.yaml", "good.test.yaml")
    assert status == 2
    assert err == "bad.test.yaml:2:1: unknown test file key 'case' (did you mean 'cases'?)\n"
    assert out == (
        "ok    good.test.yaml:3:5: x\n2 files, 1 case: 1 passed, 0 failed, 1 file could not run\n"
    )


async def test_rule_errors_make_the_file_unusable_listing_each(here: Path) -> None:
    """Test that every error of the rules a test names is printed, like `tocsin check`."""
    (here / "r.yaml").write_text(
        "rules:\n"
        "  - id: a\n    match: {message: {regex: '('}}\n    actions: [drop]\n"
        "  - id: b\n    match: {message: x}\n    actions: [{incidnet: {title: t}}]\n"
    )
    (here / "t.test.yaml").write_text("rules: [r.yaml]\n" + CASE)
    status, _, err = await outcome(here, "t.test.yaml")
    assert status == 2
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("r.yaml:3:30: rule 'a': invalid regex")
    assert lines[1].startswith("r.yaml:7:16: rule 'b': unknown action 'incidnet'")


async def test_a_broken_config_is_reported_in_its_own_file(here: Path) -> None:
    """Test that a problem in the daemon config a test names points into that config."""
    (here / "r.yaml").write_text(RULE)
    (here / "tocsin.yaml").write_text("rules: [r.yaml]\npipeline: {batch_line: 3}\n")
    (here / "t.test.yaml").write_text("config: tocsin.yaml\n" + CASE)
    status, _, err = await outcome(here, "t.test.yaml")
    assert status == 2
    assert err == (
        f"{here}/tocsin.yaml:2:12: unknown pipeline option 'batch_line' "
        "(did you mean 'batch_lines'?)\n"
    )


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            "{at: 0s, trap: {name: IF-MIB::linkDwn}}",
            "t.test.yaml:5:31: no MIB the SNMP source knows defines 'IF-MIB::linkDwn' "
            "(did you mean 'IF-MIB::linkDown'?)",
        ),
        (
            "{at: 0s, trap: {name: linkDown, varbinds: {ifOperStatus.1: {type: Integer, "
            "value: sideways}}}}",
            "t.test.yaml:5:68: varbind ifOperStatus.1: an Integer must be a 32-bit number "
            "(labels: up, down, testing, unknown, dormant, notPresent, lowerLayerDown), not "
            "'sideways'",
        ),
        (
            "{at: 0s, trap: {name: linkDown, varbinds: {ifSpeed.1: {type: Gauge32, value: -1}}}}",
            "t.test.yaml:5:63: varbind ifSpeed.1: a Gauge32 must be a number from 0 below 2^32",
        ),
        (
            "{at: 0s, mqtt: {topic: a/b, payload: x}}",
            "t.test.yaml:5:24: mqtt inputs need a config whose sources.mqtt subscribes",
        ),
    ],
)
async def test_inputs_the_config_cannot_take_are_refused_before_any_case_runs(
    here: Path, item: str, message: str
) -> None:
    """Test that trap names, varbind values and MQTT inputs are checked against the MIBs
    and the config before the cases run."""
    (here / "r.yaml").write_text(RULE)
    (here / "t.test.yaml").write_text(INPUT % item)
    status, out, err = await outcome(here, "t.test.yaml")
    assert (status, err) == (2, message + "\n")
    assert "0 cases" in out


async def test_an_unknown_broker_is_refused(here: Path) -> None:
    """Test that an MQTT input must name a broker that subscribes to something."""
    setup(here, {"t.test.yaml": "config: tocsin.yaml\n" + INPUT.split("\n", 1)[1] % (
        "{at: 0s, mqtt: {topic: sensors/a/b/temp, broker: elsewhere}}"
    )})  # fmt: skip
    status, _, err = await outcome(here, "t.test.yaml")
    assert (status, err) == (
        2,
        "t.test.yaml:5:24: broker 'elsewhere' has no subscriptions in sources.mqtt "
        "(brokers with some: site)\n",
    )


async def test_a_case_too_long_for_its_tick_is_refused(here: Path) -> None:
    """Test that a case that would take more than 500,000 ticks asks for a longer tick."""
    (here / "r.yaml").write_text(RULE)
    (here / "t.test.yaml").write_text(
        "rules: [r.yaml]\ntick: 100ms\ncases:\n  - {name: long, expect: [{at: 2d, incidents: []}]}\n"
    )
    status, _, err = await outcome(here, "t.test.yaml")
    assert (status, err) == (
        2,
        "t.test.yaml:4:5: case 'long' would take 1,728,000 ticks of 0.1s (at most 500,000): "
        "set a longer 'tick' in the test file\n",
    )
