"""The `receivers:` section: what parses into which channel, and the exact error for what does not."""

from __future__ import annotations

from pathlib import Path

import pytest
from channelkit import Reports, make_notice, receivers_from

from tocsin.notify.channels.email import EmailReceiver
from tocsin.notify.channels.mqtt import MqttReceiver
from tocsin.notify.channels.pagerduty import PagerDutyReceiver
from tocsin.notify.channels.slack import SlackReceiver
from tocsin.notify.channels.webhook import WebhookReceiver
from tocsin.notify.receivers import make_senders, parse_receivers
from tocsin.yamlsrc import Mark, SourceError

ALL = """
receivers:
  - name: hook
    webhook: {url: "https://hooks.example/x", format: alertmanager, max_alerts: 5}
  - name: chat
    slack: {url_file: slack.url, channel: "#ops"}
  - name: pd
    pagerduty: {routing_key_file: pd.key, severity: {P2: critical}, timeout: 3s}
  - name: mail
    email:
      from: tocsin@example.com
      to: [a@example.com, "B <b@example.com>"]
      smtp: {host: mail.example, tls: true, username: tocsin, password_file: smtp.pw}
  - name: bus
    mqtt: {topic: "alerts/{{ receiver }}", qos: 0, retain: true}
"""


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """Return a config folder with the secret files the examples read."""
    (tmp_path / "slack.url").write_text("https://hooks.slack.example/services/T/B/S\n")
    (tmp_path / "pd.key").write_text("R0UT1NG\n")
    (tmp_path / "smtp.pw").write_text("pw\n")
    (tmp_path / "empty").write_text("\n")
    return tmp_path


def test_every_kind_parses_into_its_channel(base: Path) -> None:
    """Test the five kinds: options read, secrets loaded, channels named."""
    found = receivers_from(ALL, base, ["local"])
    assert list(found) == ["hook", "chat", "pd", "mail", "bus"]
    assert {name: r.channel for name, r in found.items()} == {
        "hook": "webhook:hook",
        "chat": "slack:chat",
        "pd": "pagerduty:pd",
        "mail": "email:mail",
        "bus": "mqtt:local",
    }
    hook, chat, pd, mail, bus = found.values()
    assert isinstance(hook, WebhookReceiver)
    assert (hook.format, hook.max_alerts, hook.timeout) == ("alertmanager", 5, 10.0)
    assert isinstance(chat, SlackReceiver)
    assert (chat.url, chat.slack_channel) == ("https://hooks.slack.example/services/T/B/S", "#ops")
    assert isinstance(pd, PagerDutyReceiver)
    assert (pd.routing_key, pd.severity["P2"], pd.severity["P1"], pd.timeout) == (
        "R0UT1NG",
        "critical",
        "critical",
        3.0,
    )
    assert isinstance(mail, EmailReceiver)
    assert mail.to == ("a@example.com", "B <b@example.com>")
    assert (mail.smtp.port, mail.smtp.tls, mail.smtp.starttls, mail.smtp.password) == (
        465,
        True,
        False,
        "pw",
    )
    assert isinstance(bus, MqttReceiver)
    assert (bus.broker, bus.qos, bus.retain) == ("local", 0, True)


def test_secrets_stay_out_of_reprs(base: Path) -> None:
    """Test that printing the receivers never shows a secret."""
    shown = repr(receivers_from(ALL, base, ["local"]))
    for secret in ("R0UT1NG", "services/T/B/S", "'pw'"):
        assert secret not in shown


def test_every_row_carries_key_incidents_and_rule(base: Path) -> None:
    """Test the outbox contract of every kind: key, incident ids, rule notify:NAME."""
    for receiver in receivers_from(ALL, base, ["local"]).values():
        row = receiver.render(make_notice())
        assert row.channel == receiver.channel
        assert row.rule == f"notify:{receiver.name}"
        assert (row.body["key"], row.body["incidents"]) == ("n-42", [7, 9])


def test_mqtt_row_is_what_the_mqtt_sender_sends(base: Path) -> None:
    """Test the MQTT body: topic, payload, qos, retain as the publish action writes them."""
    row = receivers_from(ALL, base, ["local"])["bus"].render(make_notice())
    assert row.body["topic"] == "alerts/ops"
    assert (row.body["qos"], row.body["retain"]) == (0, True)
    assert row.body["payload"].startswith('{"version":"1","status":"firing","action":"trigger"')


def test_mqtt_topic_made_unusable_by_data_falls_back(base: Path) -> None:
    """Test that a topic rendered with a wildcard goes to the default topic and says why."""
    text = 'receivers:\n  - name: bus\n    mqtt: {topic: "alerts/{{ group_labels.service }}"}'
    receiver = receivers_from(text, base, ["local"])["bus"]
    notice = make_notice()
    notice.group_labels["service"] = "db/#"
    row = receiver.render(notice)
    assert row.body["topic"] == "tocsin/notify/bus"
    assert row.body["template_error"] == (
        "rendered topic 'alerts/db/#' contains an MQTT wildcard (+ or #)"
    )
    assert '"template_error":"rendered topic' in row.body["payload"]


def test_make_senders_covers_all_but_mqtt(base: Path) -> None:
    """Test that every non-MQTT receiver gets a Send under its channel."""
    senders = make_senders(receivers_from(ALL, base, ["local"]), report=Reports())
    assert sorted(senders.sends) == ["email:mail", "pagerduty:pd", "slack:chat", "webhook:hook"]


def test_no_section_means_no_receivers(base: Path) -> None:
    """Test that a missing `receivers:` parses to none."""
    assert parse_receivers(None, Mark("incidents.yaml", 1, 1), base=base, brokers=()) == {}


def one(kind: str) -> str:
    """Return a receiver 'a' with one option line, for the error table."""
    return f"receivers:\n  - name: a\n    {kind}"


ERRORS = [
    ("receivers: {a: 1}", "1:12: 'receivers' must be a list, not a mapping"),
    (
        "receivers:\n  - name: a\n    webhook: {url: 'http://x/'}\n"
        "  - name: a\n    webhook: {url: 'http://x/'}",
        "4:11: duplicate receiver name 'a' (first defined at incidents.yaml:2:11)",
    ),
    (one("slak: {}"), "3:5: receiver 'a': unknown receiver option 'slak' (did you mean 'slack'?)"),
    (
        "receivers:\n  - name: a",
        "2:5: receiver 'a': a receiver needs exactly one of webhook, slack, pagerduty, email, "
        "mqtt (got none)",
    ),
    (
        one("webhook: {url: 'http://x/'}\n    slack: {url: 'http://x/'}"),
        "2:5: receiver 'a': a receiver needs exactly one of webhook, slack, pagerduty, email, "
        "mqtt (got webhook and slack)",
    ),
    ("receivers:\n  - webhook: {}", "2:5: receiver 1: missing required key 'name'"),
    (
        "receivers:\n  - name: 'a b'\n    webhook: {url: 'http://x/'}",
        "2:11: receiver 'a b': name must start with a letter or digit and have only letters, "
        "digits, '_', '.' and '-' (at most 100)",
    ),
    (
        one("webhook: {url: 'ftp://x/'}"),
        "3:20: receiver 'a': url must be an http:// or https:// URL with a host",
    ),
    (
        one("webhook: {url: 'http://x:99999/'}"),
        "3:20: receiver 'a': url is not a valid URL: Port out of range 0-65535",
    ),
    (
        one("webhook: {url: 'http://x/', timout: 5s}"),
        "3:33: receiver 'a': unknown webhook option 'timout' (did you mean 'timeout'?)",
    ),
    (
        one("webhook: {url: 'http://x/', format: json}"),
        "3:41: receiver 'a': format must be one of tocsin, alertmanager",
    ),
    (
        one("webhook: {url: 'http://x/', headers: {'Bad Header': x}}"),
        "3:43: receiver 'a': header name 'Bad Header' is not a valid HTTP header name",
    ),
    (
        one("webhook: {url: 'http://x/', headers: {Idempotency-Key: x}}"),
        "3:43: receiver 'a': header Idempotency-Key is set by tocsin",
    ),
    (
        one("webhook: {url: 'http://x/', headers: {Authorization: x}, bearer_token_file: empty}"),
        "3:62: receiver 'a': give an Authorization header or bearer_token_file, not both",
    ),
    (
        one("webhook: {url: 'http://x/', external_url: 'http://y/'}"),
        "3:33: receiver 'a': external_url needs format: alertmanager",
    ),
    (
        one("webhook: {url: 'http://x/', timeout: 10m}"),
        "3:42: receiver 'a': timeout must be more than 0 and at most 5m",
    ),
    (
        one("webhook: {url: 'http://x/', bearer_token_file: nope}"),
        "3:52: receiver 'a': cannot read bearer_token_file {base}/nope: No such file or directory",
    ),
    (one("slack: {url_file: empty}"), "3:23: receiver 'a': url_file {base}/empty is empty"),
    (
        one("slack: {channel: '#x'}"),
        "3:12: receiver 'a': slack needs url or url_file (the incoming webhook's URL)",
    ),
    (
        one("slack: {url: 'http://x/', url_file: empty}"),
        "3:31: receiver 'a': give url or url_file, not both",
    ),
    (
        one("slack: {url: 'http://x/', text: '{{ oops'}"),
        "3:37: receiver 'a': text is not a valid template: unexpected end of template, "
        "expected 'end of print statement'.",
    ),
    (
        one("pagerduty: {}"),
        "3:16: receiver 'a': pagerduty needs routing_key_file (or routing_key): the integration key",
    ),
    (
        one("pagerduty: {routing_key: k, severity: {P1: fatal}}"),
        "3:48: receiver 'a': severity of P1 must be one of critical, error, warning, info",
    ),
    (
        one("email: {from: nobody, smtp: {host: h}}"),
        "3:19: receiver 'a': from: 'nobody' is not an email address (ASCII, like ops@example.com)",
    ),
    (
        one("email: {from: a@b.c, to: [x@y.z, 'bad address'], smtp: {host: h}}"),
        "3:38: receiver 'a': to: 'bad address' is not an email address (ASCII, like "
        "ops@example.com)",
    ),
    (
        one("email: {from: a@b.c, smtp: {host: h, tls: true, starttls: false}}"),
        "3:53: receiver 'a': give tls (implicit TLS, port 465) or starttls, not both",
    ),
    (
        one("email: {from: a@b.c, smtp: {host: h, password_file: empty}}"),
        "3:42: receiver 'a': password_file needs a username",
    ),
    (one("email: {from: a@b.c}"), "3:12: receiver 'a': missing required key 'smtp'"),
    (
        one("email: {from: a@b.c, smtp: {host: h}, html: '{% for %}'}"),
        "3:49: receiver 'a': html is not a valid template: Expected an expression, got 'end of "
        "statement block'",
    ),
    (
        one("email: {from: a@b.c, smtp: {host: h, ca: nope.pem}}"),
        "3:46: receiver 'a': ca: no such file {base}/nope.pem",
    ),
    (
        one("mqtt: {broker: lokal}"),
        "3:20: receiver 'a': unknown mqtt broker 'lokal' (did you mean 'local'?); configured: "
        "local",
    ),
    (
        one("mqtt: {topic: 'a/#'}"),
        "3:19: receiver 'a': topic 'a/#' contains an MQTT wildcard (+ or #)",
    ),
    (one("mqtt: {qos: 2}"), "3:17: receiver 'a': qos must be 0 or 1"),
]


@pytest.mark.parametrize(("text", "expected"), ERRORS)
def test_errors_name_the_place_and_the_fix(base: Path, text: str, expected: str) -> None:
    """Test each broken section's exact message and file:line:col."""
    with pytest.raises(SourceError) as error:
        receivers_from(text, base, ["local"])
    assert str(error.value) == f"incidents.yaml:{expected.format(base=base)}"


def test_mqtt_needs_a_known_broker(base: Path) -> None:
    """Test an mqtt receiver with no brokers configured, and without a name among several."""
    text = one("mqtt: {}")
    with pytest.raises(SourceError, match=r"an mqtt receiver needs a broker under mqtt\.brokers"):
        receivers_from(text, base, [])
    with pytest.raises(SourceError, match="say which broker: one of x, y"):
        receivers_from(text, base, ["y", "x"])
