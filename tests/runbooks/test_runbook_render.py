"""Rendering runbooks: one argv string per element, encoded URLs, refusals, stored form."""

from __future__ import annotations

import json
import re
import textwrap
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tocsin.runbooks.render import (
    RenderedExec,
    RenderedHttp,
    RenderedPublish,
    RenderedRun,
    RenderError,
    render_run,
)
from tocsin.runbooks.settings import Runbook, parse_runbooks
from tocsin.yamlsrc import load_yaml, value_mark

# Values event data might carry to break out of an argument, a URL or a header.
CORPUS = [
    "; touch /tmp/tocsin-pwned",
    "a && touch /tmp/tocsin-pwned",
    "a | touch /tmp/tocsin-pwned",
    "$(touch /tmp/tocsin-pwned)",
    "`touch /tmp/tocsin-pwned`",
    "line one\nline two; touch /tmp/tocsin-pwned",
    "--output=/etc/passwd",
    "-rf",
    "*",
    "~root",
    'it\'s "quoted" \\ back',
    "{{ 7 * 7 }}",
    "x" * 100_000,
    "ünïcödé ☃ 日本",
    "",
    " leading and trailing ",
]


def runbook_of(text: str, base: Path) -> Runbook:
    doc = load_yaml(textwrap.dedent(text), name="runbooks.yaml")
    found = parse_runbooks(
        doc["runbooks"], value_mark(doc, "runbooks", doc.mark), base=base, brokers=("local",)
    )
    return next(iter(found.values()))


def fields(**values: Any) -> dict[str, Any]:
    return {"fields": values, "host": "web1"}


def test_each_argv_element_renders_into_exactly_one_string(tmp_path: Path) -> None:
    """Test that every corpus value stays one element, unchanged, wherever it is placed."""
    runbook = runbook_of(
        """\
        runbooks:
          - name: r
            steps:
              - exec:
                  argv: [/bin/echo, "{{ fields.v }}", "--unit={{ fields.v }}", "{{ host }}"]
                  set_env: {VALUE: "{{ fields.v }}"}
        """,
        tmp_path,
    )
    for value in CORPUS:
        if value.startswith("-"):
            with pytest.raises(RenderError, match=r"argv\[1\] would start with '-' from event"):
                render_run(runbook, fields(v=value))
            continue
        (step,) = render_run(runbook, fields(v=value)).steps
        assert isinstance(step, RenderedExec)
        assert step.argv == ("/bin/echo", value, f"--unit={value}", "web1")
        assert step.set_env == {"VALUE": value}


def test_an_option_from_event_data_or_a_dot_segment_in_a_url_is_refused(tmp_path: Path) -> None:
    """Test that data cannot become an option (`--host=x`) or walk a URL path (`..`)."""
    runbook = runbook_of(
        """\
        runbooks:
          - name: r
            steps:
              - exec: {argv: [/bin/systemctl, restart, --, "{{ fields.v }}"]}
              - http: {url: "http://127.0.0.1:9/nodes/{{ fields.v }}/restart"}
        """,
        tmp_path,
    )
    with pytest.raises(RenderError, match=r"argv\[3\] would start with '-' from event data"):
        render_run(runbook, fields(v="--host=evil"))
    for dots in (".", ".."):
        with pytest.raises(RenderError, match=r"may not be .* \(a dot segment\)"):
            render_run(runbook, fields(v=dots))
    (_, http) = render_run(runbook, fields(v="a..b")).steps
    assert "/nodes/a..b/restart" in http.url  # type: ignore[union-attr]


def test_a_nul_byte_fails_the_whole_run(tmp_path: Path) -> None:
    """Test that NUL in an argument refuses the run, naming the runbook, step and element."""
    runbook = runbook_of(
        """\
        runbooks:
          - name: r
            steps:
              - publish: {topic: a, payload: b}
              - exec: {argv: [/bin/echo, ok, "{{ fields.v }}"]}
        """,
        tmp_path,
    )
    with pytest.raises(RenderError) as caught:
        render_run(runbook, fields(v="a\0b"))
    assert str(caught.value) == (
        "runbook 'r': step 2 (exec): argv[2] would contain a NUL byte, which no program can receive"
    )


def test_url_placeholders_are_percent_encoded(tmp_path: Path) -> None:
    """Test that data cannot add path segments, query parameters or a fragment to the URL."""
    runbook = runbook_of(
        """\
        runbooks:
          - name: r
            steps:
              - http:
                  url: "https://hooks.example/units/{{ fields.unit }}/restart?by=tocsin&why={{ fields.why }}"
        """,
        tmp_path,
    )
    (step,) = render_run(runbook, fields(unit="../../admin?x=1#f", why="a b&c=d")).steps
    assert isinstance(step, RenderedHttp)
    assert step.url == (
        "https://hooks.example/units/..%2F..%2Fadmin%3Fx%3D1%23f/restart?by=tocsin&why=a%20b%26c%3Dd"
    )
    parts = urllib.parse.urlsplit(step.url)
    assert parts.hostname == "hooks.example"
    assert urllib.parse.parse_qs(parts.query) == {"by": ["tocsin"], "why": ["a b&c=d"]}
    (step,) = render_run(runbook, {}).steps
    assert isinstance(step, RenderedHttp)
    assert step.url == "https://hooks.example/units//restart?by=tocsin&why="


def test_http_headers_and_bodies(tmp_path: Path) -> None:
    """Test a text body as is, a JSON body keeping types, and a header refusing line breaks."""
    runbook = runbook_of(
        """\
        runbooks:
          - name: r
            steps:
              - http:
                  url: "http://127.0.0.1/x"
                  headers: {X-Unit: "{{ fields.unit }}"}
                  json: {unit: "{{ fields.unit }}", count: "{{ fields.count }}", note: "n={{ fields.count }}"}
                  expect: 204
              - http: {url: "http://127.0.0.1/y", body: "unit={{ fields.unit }}", method: PUT}
        """,
        tmp_path,
    )
    first, second = render_run(runbook, fields(unit='nginx"}', count=3)).steps
    assert isinstance(first, RenderedHttp)
    assert isinstance(second, RenderedHttp)
    assert first.headers == {"X-Unit": 'nginx"}', "Content-Type": "application/json"}
    assert first.body is not None
    assert json.loads(first.body) == {"unit": 'nginx"}', "count": 3, "note": "n=3"}
    assert (first.method, first.expect) == ("POST", (204,))
    assert (second.method, second.body, second.headers) == ("PUT", 'unit=nginx"}', {})
    with pytest.raises(RenderError) as caught:
        render_run(runbook, fields(unit="x\r\nX-Admin: yes"))
    assert str(caught.value) == (
        "runbook 'r': step 1 (http): header X-Unit would contain a line break or NUL"
    )


def test_publish_topics_are_checked_once_rendered(tmp_path: Path) -> None:
    """Test a rendered topic and payload, and a topic the data turns into a wildcard."""
    runbook = runbook_of(
        """\
        runbooks:
          - name: r
            steps:
              - publish: {topic: "ops/{{ fields.unit }}", payload: {unit: "{{ fields.unit }}"}}
        """,
        tmp_path,
    )
    (step,) = render_run(runbook, fields(unit="nginx")).steps
    assert step == RenderedPublish("local", "ops/nginx", '{"unit":"nginx"}', qos=1, retain=False)
    assert step.body() == {
        "topic": "ops/nginx",
        "payload": '{"unit":"nginx"}',
        "qos": 1,
        "retain": False,
    }
    with pytest.raises(RenderError) as caught:
        render_run(runbook, fields(unit="#"))
    assert str(caught.value) == (
        "runbook 'r': step 1 (publish): rendered topic 'ops/#' contains an MQTT wildcard (+ or #)"
    )


def test_undecodable_input_becomes_replacement_characters(tmp_path: Path) -> None:
    """Test that lone surrogates from undecodable bytes turn into U+FFFD, so JSON can hold it."""
    runbook = runbook_of(
        "runbooks:\n  - name: r\n    steps: [exec: {argv: [/bin/echo, '{{ fields.v }}']}]\n",
        tmp_path,
    )
    (step,) = render_run(runbook, fields(v="bad\udcffbyte")).steps
    assert isinstance(step, RenderedExec)
    assert step.argv[1] == "bad\ufffdbyte"


def test_a_rendered_run_survives_json_and_back(tmp_path: Path) -> None:
    """Test that to_dict is plain JSON and from_dict rebuilds the same run."""
    runbook = runbook_of(
        """\
        runbooks:
          - name: r
            steps:
              - exec: {argv: [/bin/echo, "{{ fields.v }}"], env: [PATH], set_env: {A: b}, timeout: 5s}
              - http: {url: "http://127.0.0.1/{{ fields.v }}", headers: {X-A: b}, body: "{{ fields.v }}", expect: [200]}
              - publish: {topic: t, payload: "{{ fields.v }}", retain: true}
        """,
        tmp_path,
    )
    run = render_run(runbook, fields(v="a b"))
    stored = json.loads(json.dumps(run.to_dict()))
    assert stored["format"] == 1
    assert [s["kind"] for s in stored["steps"]] == ["exec", "http", "publish"]
    assert RenderedRun.from_dict(stored) == run


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format=2), "not a rendered run of format 1"),
        (lambda d: d.update(steps=[]), "a rendered run needs a list of steps"),
        (lambda d: d["steps"][0].update(kind="shell"), "unknown rendered step kind 'shell'"),
        (
            lambda d: d["steps"][0].update(argv=["echo"]),
            "rendered step: argv must start with an absolute program path",
        ),
        (
            lambda d: d["steps"][0].update(timeout=True),
            "rendered step: 'timeout' is missing or of the wrong type",
        ),
    ],
)
def test_from_dict_refuses_what_to_dict_never_wrote(change: Any, message: str) -> None:
    """Test that a damaged stored run is refused with a reason rather than half-read."""
    run = RenderedRun("r", (RenderedExec(("/bin/true",), "/", (), {}, None, 1.0),))
    data = run.to_dict()
    change(data)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        RenderedRun.from_dict(data)


def test_describe_is_one_line_per_step_without_secrets() -> None:
    """Test descriptions: argv quoted as a shell would show it, no header values, no query."""
    run = RenderedRun(
        "r",
        (
            RenderedExec(("/bin/echo", "a b", "x\ny", "z" * 300), "/srv", (), {}, "nobody", 30.0),
            RenderedHttp(
                "POST",
                "https://user:pw@h.example/x?token=secret",
                {"Authorization": "Bearer secret"},
                "{}",
                (),
                10.0,
            ),
            RenderedPublish("local", "ops/a", "done", 1, False),
        ),
    )
    exec_line, http_line, publish_line = run.describe()
    assert exec_line == (
        f"exec /bin/echo 'a b' 'x\\x0ay' '{'z' * 200}...(100 more)' in /srv as nobody (timeout 30s)"
    )
    assert http_line == "http POST https://h.example/x with a 2-byte body (timeout 10s)"
    assert "secret" not in " ".join(run.describe())
    assert publish_line == "publish on mqtt broker 'local' topic 'ops/a' qos 1: 'done'"


def test_a_redacted_run_keeps_what_it_did_but_no_secrets() -> None:
    """Test what a finished run keeps: argv, method, host and path, topic; not header or
    set_env values, URL credentials and queries, or the body."""
    run = RenderedRun(
        "r",
        (
            RenderedExec(("/bin/echo", "a"), "/", ("PATH",), {"TOKEN": "secret"}, None, 5.0),
            RenderedHttp(
                "POST",
                "https://user:secret@h.example:8443/x?token=secret#secret",
                {"Authorization": "Bearer secret"},
                '{"key": "secret"}',
                (200,),
                10.0,
            ),
            RenderedPublish("local", "ops/a", "done", 1, False),
        ),
    )
    kept = json.loads(json.dumps(run.redacted().to_dict()))
    assert "secret" not in json.dumps(kept)
    exec_step, http_step, publish_step = kept["steps"]
    assert (exec_step["argv"], exec_step["env"], exec_step["set_env"]) == (
        ["/bin/echo", "a"],
        ["PATH"],
        {"TOKEN": "[redacted]"},
    )
    assert (http_step["url"], http_step["headers"], http_step["body"]) == (
        "https://h.example:8443/x",
        {"Authorization": "[redacted]"},
        "[redacted]",
    )
    assert publish_step == run.to_dict()["steps"][2]
    assert RenderedRun.from_dict(kept).describe()[1] == (
        "http POST https://h.example:8443/x with a body (not kept) (timeout 10s)"
    )
