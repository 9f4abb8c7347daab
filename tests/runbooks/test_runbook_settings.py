"""The runbooks file: good runbooks parse into plain fields, bad ones name file:line and why."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tocsin.rules.templates import Template
from tocsin.runbooks.settings import (
    DEFAULT_ENV,
    Breaker,
    ExecStep,
    HttpStep,
    JsonBody,
    PublishStep,
    RateLimit,
    RemediationSettings,
    Runbook,
    load_runbook_file,
    parse_remediation,
    parse_runbooks,
)
from tocsin.yamlsrc import SourceError, load_yaml, value_mark


def runbooks_of(text: str, base: Path, brokers: tuple[str, ...] = ("local",)) -> dict[str, Runbook]:
    doc = load_yaml(textwrap.dedent(text), name="runbooks.yaml")
    return parse_runbooks(
        doc["runbooks"], value_mark(doc, "runbooks", doc.mark), base=base, brokers=brokers
    )


def error_of(text: str, base: Path, brokers: tuple[str, ...] = ("local",)) -> str:
    with pytest.raises(SourceError) as caught:
        runbooks_of(text, base, brokers)
    return str(caught.value)


def test_a_full_runbook_parses(tmp_path: Path) -> None:
    """Test every option of every step kind and of the runbook itself."""
    (tmp_path / "work").mkdir()
    runbooks = runbooks_of(
        """\
        runbooks:
          - name: restart-unit
            steps:
              - exec:
                  argv: [/bin/systemctl, restart, "{{ fields.unit }}", 5]
                  cwd: work
                  env: [PATH, TZ]
                  set_env: {UNIT: "{{ fields.unit }}"}
                  user: root
                  timeout: 1m
              - http:
                  method: put
                  url: "https://hooks.example:8443/units/{{ fields.unit }}?why={{ title }}"
                  headers: {X-Token: abc, X-Unit: "{{ fields.unit }}"}
                  json: {unit: "{{ fields.unit }}", count: "{{ count }}", fixed: [1, true, null]}
                  expect: [204, 200]
                  timeout: 5s
              - publish:
                  topic: "ops/{{ fields.unit }}"
                  payload: "restarted"
                  qos: 0
                  retain: true
            concurrency: 2
            rate_limit: {runs: 3, per: 1h}
            breaker: {failures: 3, reset: 30m}
            dry_run: true
            approval: {ttl: 30m}
        """,
        tmp_path,
    )
    runbook = runbooks["restart-unit"]
    assert runbook.concurrency == 2
    assert runbook.rate_limit == RateLimit(runs=3, per=3600.0)
    assert runbook.breaker == Breaker(failures=3, reset=1800.0)
    assert runbook.dry_run is True
    assert runbook.approval_ttl == 1800.0
    exec_step, http_step, publish_step = runbook.steps
    assert isinstance(exec_step, ExecStep)
    assert exec_step.program == "/bin/systemctl"
    assert [a.source for a in exec_step.args] == ["restart", "{{ fields.unit }}", "5"]
    assert exec_step.cwd == str(tmp_path / "work")
    assert exec_step.env == ("PATH", "TZ")
    assert exec_step.set_env["UNIT"].source == "{{ fields.unit }}"
    assert exec_step.user == "root"
    assert exec_step.timeout == 60.0
    assert isinstance(http_step, HttpStep)
    assert http_step.method == "PUT"
    assert http_step.expect == (200, 204)
    assert http_step.timeout == 5.0
    assert set(http_step.headers) == {"X-Token", "X-Unit"}
    assert isinstance(http_step.body, JsonBody)
    assert isinstance(publish_step, PublishStep)
    assert publish_step.broker == "local"
    assert (publish_step.qos, publish_step.retain) == (0, True)
    assert isinstance(publish_step.payload, Template)


def test_defaults(tmp_path: Path) -> None:
    """Test the defaults: cwd /, PATH and LANG passed on, 30s, any 2xx, no limits, no approval."""
    runbook = runbooks_of(
        """\
        runbooks:
          - name: a
            steps:
              - exec: {argv: [/bin/true]}
              - http: {url: "http://127.0.0.1/x"}
        """,
        tmp_path,
    )["a"]
    exec_step, http_step = runbook.steps
    assert isinstance(exec_step, ExecStep)
    assert (exec_step.cwd, exec_step.env, exec_step.user, exec_step.timeout) == (
        "/",
        DEFAULT_ENV,
        None,
        30.0,
    )
    assert isinstance(http_step, HttpStep)
    assert (http_step.method, http_step.expect, http_step.timeout) == ("POST", (), 10.0)
    assert http_step.body is None
    assert (runbook.concurrency, runbook.rate_limit, runbook.breaker) == (1, None, None)
    assert (runbook.dry_run, runbook.approval_ttl) == (False, None)


def test_the_remediation_section(tmp_path: Path) -> None:
    """Test remediation's options, its defaults, and the whole file read from disk."""
    doc = load_yaml("remediation: {dry_run: true, max_output: 1MiB}\n", name="r.yaml")
    at = value_mark(doc, "remediation", doc.mark)
    assert parse_remediation(doc["remediation"], at) == RemediationSettings(True, 1 << 20)
    assert parse_remediation(None, at) == RemediationSettings(False, 64 << 10)
    path = tmp_path / "runbooks.yaml"
    path.write_text(
        "remediation: {dry_run: true}\nrunbooks:\n  - {name: a, steps: [exec: {argv: [/bin/true]}]}\n"
    )
    settings = load_runbook_file(path, brokers=())
    assert settings.remediation.dry_run is True
    assert list(settings.runbooks) == ["a"]
    path.write_text("remediation:\n  max_output: 1\n")
    with pytest.raises(SourceError) as caught:
        load_runbook_file(path, brokers=())
    assert str(caught.value) == f"{path}:2:15: max_output must be between 1KiB and 16MiB"
    path.write_text("runbook: []\n")
    with pytest.raises(SourceError) as caught:
        load_runbook_file(path, brokers=())
    assert str(caught.value) == (
        f"{path}:1:1: unknown runbooks file key 'runbook' (did you mean 'runbooks'?)"
    )


STEP = "runbooks:\n  - name: r\n    steps:\n      - "  # a step's options start on line 4

BAD = [
    pytest.param(
        STEP + "exec: {argv: []}\n",
        "runbooks.yaml:4:22: runbook 'r': step 1 (exec): argv must not be empty: its first "
        "element is the program",
        id="empty-argv",
    ),
    pytest.param(
        STEP + "exec: {argv: [systemctl, restart]}\n",
        "runbooks.yaml:4:23: runbook 'r': step 1 (exec): argv[0] 'systemctl' must be an "
        "absolute path such as /usr/bin/systemctl: steps run without a shell and without a "
        "PATH lookup",
        id="relative-program",
    ),
    pytest.param(
        STEP + 'exec: {argv: ["{{ fields.program }}"]}\n',
        "runbooks.yaml:4:23: runbook 'r': step 1 (exec): argv[0] '{{ fields.program }}' must "
        "be the program's path itself, not a template: event data never chooses which "
        "program runs",
        id="templated-program",
    ),
    pytest.param(
        STEP + 'exec: {argv: [/bin/echo, "{{ a"]}\n',
        "runbooks.yaml:4:34: runbook 'r': step 1 (exec): argv[1] is not a valid template: "
        "unexpected end of template, expected 'end of print statement'.",
        id="bad-template",
    ),
    pytest.param(
        STEP + "exec: {argv: [/bin/echo, [a]]}\n",
        "runbooks.yaml:4:34: runbook 'r': step 1 (exec): argv[1] must be text, not a list",
        id="argv-list",
    ),
    pytest.param(
        STEP + "exec: {argv: [/bin/true], env: [PATH, 1ST]}\n",
        "runbooks.yaml:4:47: runbook 'r': step 1 (exec): env name '1ST' must be letters, "
        "digits and '_', not a digit first",
        id="bad-env-name",
    ),
    pytest.param(
        STEP + "exec: {argv: [/bin/true], env: [PATH], set_env: {PATH: /x}}\n",
        "runbooks.yaml:4:58: runbook 'r': step 1 (exec): PATH is both passed on (env) and set "
        "(set_env); keep one",
        id="env-twice",
    ),
    pytest.param(
        STEP + "exec: {argv: [/bin/true], user: no-such-user-here}\n",
        "runbooks.yaml:4:41: runbook 'r': step 1 (exec): user 'no-such-user-here' does not "
        "exist on this host",
        id="unknown-user",
    ),
    pytest.param(
        STEP + "exec: {argv: [/bin/true], cwd: /no/such/dir}\n",
        "runbooks.yaml:4:40: runbook 'r': step 1 (exec): cwd /no/such/dir is not a directory",
        id="missing-cwd",
    ),
    pytest.param(
        STEP + "exec: {argv: [/bin/true], timeout: 0s}\n",
        "runbooks.yaml:4:44: runbook 'r': step 1 (exec): timeout must be more than 0 and at "
        "most 1d",
        id="zero-timeout",
    ),
    pytest.param(
        STEP + "exec: {argv: [/bin/true], shell: true}\n",
        "runbooks.yaml:4:35: runbook 'r': step 1 (exec): unknown exec option 'shell'",
        id="unknown-exec-option",
    ),
    pytest.param(
        STEP + "exec: {argv: [/bin/true]}\n        http: {url: 'http://h/'}\n",
        "runbooks.yaml:4:9: runbook 'r': step 1: a step is one of exec, http or publish; this "
        "one gives exec and http",
        id="two-kinds",
    ),
    pytest.param(
        STEP + "exce: {argv: [/bin/true]}\n",
        "runbooks.yaml:4:9: runbook 'r': step 1: unknown step kind 'exce' (did you mean 'exec'?)",
        id="unknown-kind",
    ),
    pytest.param(
        STEP + "http: {url: 'ftp://h/x'}\n",
        "runbooks.yaml:4:21: runbook 'r': step 1 (http): url must be an http:// or https:// "
        "URL with a host",
        id="ftp-url",
    ),
    pytest.param(
        STEP + "http: {url: 'https://{{ fields.host }}/x'}\n",
        "runbooks.yaml:4:21: runbook 'r': step 1 (http): url: placeholders may fill only the "
        "path and the query, after the host: event data never chooses where a request goes",
        id="templated-host",
    ),
    pytest.param(
        STEP + "http: {url: 'https://h/x', expect: [200, 600]}\n",
        "runbooks.yaml:4:50: runbook 'r': step 1 (http): expect: 600 is not an HTTP status "
        "(100 to 599)",
        id="expect-out-of-range",
    ),
    pytest.param(
        STEP + "http: {url: 'https://h/x', method: FETCH}\n",
        "runbooks.yaml:4:44: runbook 'r': step 1 (http): method must be one of GET, HEAD, "
        "POST, PUT, PATCH, DELETE",
        id="bad-method",
    ),
    pytest.param(
        STEP + "http: {url: 'https://h/x', headers: {'Bad Name': x}}\n",
        "runbooks.yaml:4:46: runbook 'r': step 1 (http): 'Bad Name' is not a valid header name",
        id="bad-header",
    ),
    pytest.param(
        STEP + "http: {url: 'https://h/x', body: a, json: {}}\n",
        "runbooks.yaml:4:45: runbook 'r': step 1 (http): give body or json, not both",
        id="body-and-json",
    ),
    pytest.param(
        STEP + "publish: {broker: remote, topic: a, payload: b}\n",
        "runbooks.yaml:4:27: runbook 'r': step 1 (publish): unknown mqtt broker 'remote'; "
        "configured: local",
        id="unknown-broker",
    ),
    pytest.param(
        STEP + "publish: {topic: 'a/#', payload: b}\n",
        "runbooks.yaml:4:26: runbook 'r': step 1 (publish): topic 'a/#' contains an MQTT "
        "wildcard (+ or #)",
        id="wildcard-topic",
    ),
    pytest.param(
        STEP + "publish: {topic: a, payload: b, qos: 2}\n",
        "runbooks.yaml:4:46: runbook 'r': step 1 (publish): qos must be 0 or 1, not 2",
        id="qos-2",
    ),
    pytest.param(
        "runbooks:\n  - name: r\n    steps: []\n",
        "runbooks.yaml:3:12: runbook 'r': steps must list at least one step",
        id="no-steps",
    ),
    pytest.param(
        "runbooks:\n  - name: 'a b'\n    steps: []\n",
        "runbooks.yaml:2:11: runbook #1: runbook name 'a b' may only have letters, digits, "
        "'_', '.' and '-' (it is used in API paths and on the command line)",
        id="bad-name",
    ),
    pytest.param(
        "runbooks:\n  - steps: []\n",
        "runbooks.yaml:2:5: runbook #1: missing required key 'name'",
        id="no-name",
    ),
    pytest.param(
        STEP + "exec: {argv: [/bin/true]}\n    concurrency: 0\n",
        "runbooks.yaml:5:18: runbook 'r': concurrency must be a whole number >= 1",
        id="concurrency-0",
    ),
    pytest.param(
        STEP + "exec: {argv: [/bin/true]}\n    rate_limit: {runs: 3}\n",
        "runbooks.yaml:5:17: runbook 'r': missing required key 'per'",
        id="rate-limit-without-per",
    ),
    pytest.param(
        STEP + "exec: {argv: [/bin/true]}\n    breaker: {failures: 3, reset: 0s}\n",
        "runbooks.yaml:5:35: runbook 'r': reset must be longer than 0",
        id="breaker-zero-reset",
    ),
    pytest.param(
        STEP + "exec: {argv: [/bin/true]}\n    approval: {ttl: soon}\n",
        "runbooks.yaml:5:21: runbook 'r': ttl must be a duration like 250ms, 10s, 5m, 1h or "
        "2d, not 'soon'",
        id="approval-ttl",
    ),
    pytest.param(
        STEP + "exec: {argv: [/bin/true]}\n    dryrun: true\n",
        "runbooks.yaml:5:5: runbook 'r': unknown runbook option 'dryrun' (did you mean 'dry_run'?)",
        id="unknown-option",
    ),
    pytest.param(
        STEP + "exec: {argv: [/bin/true]}\n  - name: r\n    steps: [exec: {argv: [/bin/true]}]\n",
        "runbooks.yaml:5:11: duplicate runbook name 'r' (first defined at runbooks.yaml:2:11)",
        id="duplicate",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_runbooks_name_file_line_and_why(tmp_path: Path, text: str, message: str) -> None:
    """Test that each broken runbook is refused at the line and column of the problem."""
    if "user:" in text and os.geteuid() != 0:
        pytest.skip("a user is refused earlier when not running as root")
    assert error_of(text, tmp_path) == message


def test_publish_needs_a_configured_broker(tmp_path: Path) -> None:
    """Test that a publish step without any broker, or unnamed among several, is refused."""
    text = STEP + "publish: {topic: a, payload: b}\n"
    assert error_of(text, tmp_path, brokers=()) == (
        "runbooks.yaml:4:18: runbook 'r': step 1 (publish): publish needs an mqtt broker, "
        "but none is configured"
    )
    assert error_of(text, tmp_path, brokers=("a", "b")) == (
        "runbooks.yaml:4:18: runbook 'r': step 1 (publish): say which broker: one of a, b"
    )


def test_a_user_needs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Test that `user` is refused, with the reason, when tocsin does not run as root."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert error_of(STEP + "exec: {argv: [/bin/true], user: nobody}\n", tmp_path) == (
        "runbooks.yaml:4:41: runbook 'r': step 1 (exec): user 'nobody' needs tocsin to run as "
        "root, but it runs as uid 1000: only root can switch users; remove 'user' to run the "
        "step as tocsin's own user"
    )
