"""The daemon config: defaults, paths, and exact file:line errors."""

from __future__ import annotations

import shutil
import zoneinfo
from pathlib import Path

import pytest

from tocsin.config import load_config
from tocsin.yamlsrc import SourceError

REPO = Path(__file__).parents[1]


def write(tmp_path: Path, text: str) -> Path:
    """Write a config file and return its path."""
    path = tmp_path / "tocsin.yaml"
    path.write_text(text)
    return path


def test_bundled_demo_config_loads() -> None:
    """Test that config/tocsin.yaml is valid and points into the checkout."""
    config = load_config(REPO / "config" / "tocsin.yaml")
    assert config.state_dir.resolve() == (REPO / "state").resolve()
    assert [p.resolve() for p in config.rule_paths] == [(REPO / "rules").resolve()]
    assert config.http.host == "127.0.0.1"
    assert config.files[0].patterns == (str(REPO / "config" / ".." / "demo" / "*.log"),)


def test_bundled_incidents_file_loads_when_enabled(tmp_path: Path) -> None:
    """Test that config/incidents.yaml, enabled as the demo config's comment says, is valid."""
    demo = (REPO / "config" / "tocsin.yaml").read_text()
    assert "# incidents: incidents.yaml" in demo
    shutil.copy(REPO / "config" / "incidents.yaml", tmp_path / "incidents.yaml")
    config = load_config(write(tmp_path, "incidents: incidents.yaml\nhttp: {open_reads: false}\n"))
    settings = config.incidents
    assert (settings.reopen_window, settings.auto_close, settings.samples) == (3600.0, 259200.0, 10)
    assert sorted(settings.receivers) == ["mail", "ops-slack", "pagerduty", "team-webhook"]
    assert settings.route is not None
    assert list(settings.schedules) == ["primary"]
    assert config.http.open_reads is False
    assert load_config(write(tmp_path, "{}\n")).incidents.route is None


def test_bundled_runbooks_file_loads_when_enabled(tmp_path: Path) -> None:
    """Test that config/runbooks.yaml, enabled as the demo config's comment says, is valid."""
    assert "# runbooks: runbooks.yaml" in (REPO / "config" / "tocsin.yaml").read_text()
    shutil.copy(REPO / "config" / "runbooks.yaml", tmp_path / "runbooks.yaml")
    config = load_config(write(tmp_path, "runbooks: runbooks.yaml\n"))
    assert sorted(config.runbooks.runbooks) == ["clear-tmp", "notify-cmdb", "restart-unit"]
    assert config.runbooks.remediation.dry_run is True


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    """Test that an empty config gets the documented defaults, relative to its folder."""
    config = load_config(write(tmp_path, "{}\n"))
    assert config.state_dir == tmp_path / "state"
    assert config.store_path == tmp_path / "state" / "tocsin.db"
    assert config.rule_paths == (tmp_path / "rules",)
    assert (config.http.host, config.http.port) == ("127.0.0.1", 8465)
    assert (config.queue_events, config.batch_lines, config.shutdown_timeout) == (16384, 2048, 10.0)
    assert config.files == ()


def test_file_source_options(tmp_path: Path) -> None:
    """Test that every file source option is read and durations are parsed."""
    config = load_config(
        write(
            tmp_path,
            "sources:\n  files:\n    - path: [a/*.log, /var/log/b.log]\n      parser: rfc5424\n"
            "      start_at: beginning\n      max_line_bytes: 4096\n      year: 2025\n"
            "      timezone: Europe/Berlin\n      poll_interval: 50ms\n      rescan_interval: 1m\n",
        )
    )
    [files] = config.files
    assert files.patterns == (str(tmp_path / "a/*.log"), "/var/log/b.log")
    assert (files.parser, files.start_at, files.max_line_bytes, files.year) == (
        "rfc5424",
        "beginning",
        4096,
        2025,
    )
    assert files.timezone == zoneinfo.ZoneInfo("Europe/Berlin")
    assert (files.poll_interval, files.rescan_interval) == (0.05, 60.0)


def test_priority_matrix_override(tmp_path: Path) -> None:
    """Test that priority_matrix changes only the cells it names."""
    config = load_config(write(tmp_path, "priority_matrix:\n  low: {high: P2}\n"))
    assert config.priorities("low", "high") == "P2"
    assert config.priorities("high", "high") == "P1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("htpp: {port: 1}\n", "1:1: unknown config key 'htpp' (did you mean 'http'?)"),
        ("http: {port: eighty}\n", "1:14: http.port must be a whole number >= 0"),
        (
            "sources:\n  files:\n    - path: x.log\n      parsr: json\n",
            "4:7: unknown file source option 'parsr' (did you mean 'parser'?)",
        ),
        (
            "sources:\n  files:\n    - path: x.log\n      parser: xml\n",
            "4:15: unknown parser 'xml'; use one of auto, syslog, rfc5424, json, plain",
        ),
        ("sources:\n  files:\n    - parser: json\n", "3:7: missing required key 'path'"),
        (
            "sources:\n  files:\n    - {path: x, timezone: Mars/Base}\n",
            "3:27: unknown time zone 'Mars/Base' (use an IANA name like Europe/Berlin or 'local')",
        ),
        (
            "shutdown_timeout: soon\n",
            "1:19: 'shutdown_timeout' must be a duration like 250ms, 10s, 5m, 1h or 2d, not 'soon'",
        ),
        (
            "priority_matrix:\n  low: {high: P9}\n",
            "2:15: priority must be one of P1, P2, P3, P4, P5",
        ),
        ("logging: {level: loud}\n", "1:18: logging.level must be debug, info, warning or error"),
        ("http: {port: 1}\nhttp: {port: 2}\n", "2:1: duplicate key 'http' (first given at line 1)"),
        ("rules: [\n", "2:1: invalid YAML: did not find expected node content"),
        (
            "sources:\n  files:\n    - path: /var/log/a.log\n    - path: /var/log/a.log\n",
            "4:7: path /var/log/a.log is already tailed by sources.files entry 1",
        ),
        (
            "sources:\n  files:\n    - {path: x.log, poll_interval: 0}\n",
            "3:36: 'poll_interval' must be at least 10ms",
        ),
        ("shutdown_timeout: 0\n", "1:19: 'shutdown_timeout' must be at least 100ms"),
    ],
)
def test_config_errors(tmp_path: Path, text: str, message: str) -> None:
    """Test that each config mistake is reported with its exact file:line:col sentence."""
    path = write(tmp_path, text)
    with pytest.raises(SourceError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}:{message}"


def test_missing_file(tmp_path: Path) -> None:
    """Test that a missing config file is a clear error, not a traceback."""
    with pytest.raises(SourceError, match="cannot read file: No such file or directory"):
        load_config(tmp_path / "nope.yaml")


def test_mqtt_brokers_and_subscriptions(tmp_path: Path) -> None:
    """Test that `mqtt.brokers` and `sources.mqtt` reach the config, paths resolved."""
    (tmp_path / "mqtt.pass").write_text("s3cret\n")
    config = load_config(
        write(
            tmp_path,
            "mqtt:\n  brokers:\n    site: {host: broker.example, username: tocsin,"
            " password_file: mqtt.pass, client_id: ops1}\n"
            "sources:\n  mqtt:\n    - topic: sensors/+/temp\n      topic_fields: sensors/{room}/temp\n",
        )
    )
    broker = config.mqtt_brokers["site"]
    assert (broker.host, broker.port, broker.version, broker.password) == (
        "broker.example",
        1883,
        "5",
        "s3cret",
    )
    assert "s3cret" not in repr(config)
    [subscription] = config.mqtt_subscriptions
    assert (subscription.broker, subscription.filter, subscription.qos) == (
        "site",
        "sensors/+/temp",
        1,
    )
    assert load_config(write(tmp_path, "{}\n")).mqtt_brokers == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "sources:\n  mqtt:\n    - topic: a/b\n",
            "3:5: sources.mqtt needs a broker under mqtt.brokers",
        ),
        (
            "mqtt:\n  brokers:\n    b: {host: h}\nsources:\n  mqtt:\n    - {topic: a/b, broker: c}\n",
            "6:28: unknown broker 'c'",
        ),
        (
            "mqtt:\n  brokers:\n    b: {host: h, password: x, username: u}\n",
            None,
        ),
    ],
)
def test_mqtt_config_errors(tmp_path: Path, text: str, message: str | None) -> None:
    """Test that MQTT mistakes in the config name file:line like every other option."""
    path = write(tmp_path, text)
    with pytest.raises(SourceError) as caught:
        load_config(path)
    if message is not None:
        assert str(caught.value).startswith(f"{path}:{message}")
    else:
        assert "password_file or password_env" in str(caught.value)
