"""Every Prometheus metric in one place, and the structlog setup.

Hot paths never touch these per item: they count in plain ints and add once per batch.
"""

from __future__ import annotations

import collections
import logging
import math
import sys
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any

import structlog
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, Metric

__all__ = [
    "ACCESS_AUDIT",
    "ACCESS_GRANTS",
    "ACTIONS",
    "ACTIONS_FAILED",
    "BUILD",
    "CONFIG_HASH",
    "CONFIG_LAST_RELOAD_OK",
    "CONFIG_LAST_RELOAD_TIME",
    "CONFIG_RELOADS",
    "CORRELATION_EVICTED",
    "CORRELATION_EXPIRED",
    "CORRELATION_KEYS",
    "ESCALATIONS",
    "EVENTS_FUTURE",
    "EVENTS_LATE",
    "EVENTS_RECEIVED",
    "EVENT_LATENCY",
    "FILE_BACKLOG",
    "FILE_BYTES",
    "FILE_DATA_LOST",
    "FILE_ERRORS",
    "FILE_INVALID_UTF8",
    "FILE_LINES",
    "FILE_LINES_CUT",
    "FILE_ROTATIONS",
    "INCIDENTS_OPEN",
    "INCIDENT_CHANGES",
    "KNOWN_ERROR_MATCHES",
    "MAINTENANCE_REMINDERS",
    "MQTT_CONNECTED",
    "MQTT_CONNECTS",
    "MQTT_CONNECT_FAILURES",
    "MQTT_DISCONNECTS",
    "MQTT_DROPPED",
    "MQTT_MESSAGES",
    "MQTT_PAYLOAD_ERRORS",
    "MQTT_PUBLISHED",
    "MQTT_PUBLISH_REFUSED",
    "MQTT_REDELIVERED",
    "MQTT_SESSIONS_LOST",
    "MQTT_SUBSCRIBED",
    "MQTT_UNACKED",
    "MUTED",
    "NOTIFICATIONS",
    "NOTIFICATIONS_FAILED",
    "OUTBOX_DROPPED",
    "OUTBOX_FAILURES",
    "OUTBOX_PENDING",
    "OUTBOX_SENT",
    "PARSE_ERRORS",
    "PROBLEM_CHANGES",
    "QUEUE_CAPACITY",
    "QUEUE_DEPTH",
    "QUEUE_OLDEST_AGE",
    "QUEUE_SOURCE_DEPTH",
    "REMEDIATION_BREAKERS_OPENED",
    "REMEDIATION_KILL_SWITCH",
    "REMEDIATION_RUNS",
    "REMEDIATION_VERDICTS",
    "RULES_LOADED",
    "RULE_ERRORS",
    "RULE_FAILURES",
    "RULE_FIGURES",
    "RULE_MATCHES",
    "SERVICE_REQUEST_CHANGES",
    "SILENCES",
    "SLA_BREACHES",
    "SLA_WARNINGS",
    "SNMP_DROPPED",
    "SNMP_INFORMS_ACKED",
    "SNMP_PACKETS",
    "SNMP_PENDING",
    "SNMP_RECEIVE_BUFFER",
    "SNMP_RECEIVE_QUEUE",
    "STORE_COMMITS",
    "STORE_COMMIT_SECONDS",
    "STORE_FAILURES",
    "TIMERS_FIRED",
    "WATERMARK",
    "QueueLedger",
    "Throttle",
    "configure_logging",
]

BUILD = Info("tocsin_build", "Version of the running daemon.")

EVENTS_RECEIVED = Counter(
    "tocsin_events_received_total", "Events normalized from a source.", ["source"]
)
FILE_LINES = Counter("tocsin_file_lines_read_total", "Lines read from a log file.", ["path"])
FILE_BYTES = Counter("tocsin_file_bytes_read_total", "Bytes read from a log file.", ["path"])
FILE_LINES_CUT = Counter(
    "tocsin_file_lines_cut_total", "Lines cut because they exceeded max_line_bytes.", ["path"]
)
FILE_INVALID_UTF8 = Counter(
    "tocsin_file_invalid_utf8_lines_total",
    "Lines with invalid UTF-8, decoded with replacement characters.",
    ["path"],
)
FILE_ERRORS = Counter(
    "tocsin_file_errors_total",
    "Problems with a tailed file (missing, unreadable); the tailer retries.",
    ["path", "reason"],
)
FILE_DATA_LOST = Counter(
    "tocsin_file_data_lost_total",
    "Times data could not be read: a partial last line of a rotated-away file, or a file "
    "rotated while tocsin was down that was not found next to the path.",
    ["path", "reason"],
)
FILE_ROTATIONS = Counter(
    "tocsin_file_rotations_total",
    "Rotations seen on a tailed file (rename = rename+create, truncate = copytruncate).",
    ["path", "kind"],
)
FILE_BACKLOG = Gauge(
    "tocsin_file_backlog_bytes",
    "Bytes of a tailed file not read yet: it grows while lines come faster than they are "
    "processed (the tailer waits for room in the queue).",
    ["path"],
)
PARSE_ERRORS = Counter(
    "tocsin_parse_errors_total",
    "Lines the configured parser could not parse; they went on as plain events.",
    ["parser"],
)
RULE_MATCHES = Counter("tocsin_rule_matches_total", "Events matched per rule.", ["rule"])


class RuleFigures:
    """tocsin_rule_actions_total and tocsin_rule_eval_seconds_total, read at scrape time.

    The engine keeps each rule's figures in plain ints; they become metrics only when /metrics
    is scraped, so no batch ever looks up a label for them.
    """

    def __init__(self) -> None:
        self._source: Callable[[], Iterable[tuple[str, int, float]]] | None = None

    def follow(self, source: Callable[[], Iterable[tuple[str, int, float]]] | None) -> None:
        """Read (rule id, actions run, seconds spent) from `source` from now on."""
        self._source = source

    def describe(self) -> list[Metric]:
        """Name the metrics without reading the engine (the registry asks once)."""
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        """Each rule's actions and evaluation time, as the engine counted them so far."""
        actions, seconds = self._families()
        for rule, count, spent in self._source() if self._source is not None else ():
            actions.add_metric([rule], count)
            seconds.add_metric([rule], spent)
        yield actions
        yield seconds

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, CounterMetricFamily]:
        """Fresh, empty families: each scrape fills its own."""
        return (
            CounterMetricFamily(
                "tocsin_rule_actions",
                "Actions run per rule (held ones not counted).",
                labels=["rule"],
            ),
            CounterMetricFamily(
                "tocsin_rule_eval_seconds",
                "Time spent on each rule's events, from its matcher to its last action; each "
                "rule's evaluations are timed one in 8 and scaled.",
                labels=["rule"],
            ),
        )


RULE_FIGURES = RuleFigures()
REGISTRY.register(RULE_FIGURES)
RULE_FAILURES = Counter(
    "tocsin_rule_failures_total",
    "Events a rule could not evaluate (its match, when or key raised on their data); the "
    "rule counted as not matching.",
    ["rule", "stage"],
)
ACTIONS = Counter("tocsin_actions_total", "Actions run, per kind.", ["kind"])
ACTIONS_FAILED = Counter(
    "tocsin_actions_failed_total", "Actions that raised an error, per kind.", ["kind"]
)
INCIDENTS_OPEN = Gauge("tocsin_incidents_open", "Open incidents per priority.", ["priority"])
QUEUE_DEPTH = Gauge("tocsin_queue_depth", "Events waiting between the sources and the engine.")
QUEUE_CAPACITY = Gauge(
    "tocsin_queue_capacity", "Events the engine queue holds before sources wait."
)
QUEUE_SOURCE_DEPTH = Gauge(
    "tocsin_queue_source_depth",
    "Events waiting between the sources and the engine, per source (log, snmp, mqtt).",
    ["source"],
)
QUEUE_OLDEST_AGE = Gauge(
    "tocsin_queue_oldest_event_age_seconds",
    "How long the oldest event waiting for the engine has waited since it was read (0 when "
    "none waits).",
)
EVENT_LATENCY = Histogram(
    "tocsin_event_processing_seconds",
    "Time from reading a batch to committing its effects, observed once per batch.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
STORE_COMMIT_SECONDS = Histogram(
    "tocsin_store_commit_seconds",
    "Duration of one store transaction.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
STORE_COMMITS = Counter("tocsin_store_commits_total", "Store transactions committed.")
STORE_FAILURES = Counter(
    "tocsin_store_failures_total", "Store transactions that failed and were retried."
)
EVENTS_LATE = Counter(
    "tocsin_events_late_total",
    "Events older than the allowed lateness, processed at the current event time.",
)
EVENTS_FUTURE = Counter(
    "tocsin_events_future_total",
    "Events stamped further ahead of the wall clock than clock_skew, processed as now.",
)
WATERMARK = Gauge(
    "tocsin_event_time_watermark_seconds", "Event time the engine has reached (epoch seconds)."
)
TIMERS_FIRED = Counter("tocsin_timers_fired_total", "Correlation timers that fired.")
CORRELATION_KEYS = Gauge(
    "tocsin_correlation_keys", "Keys with live correlation state, per rule.", ["rule"]
)
CORRELATION_EVICTED = Counter(
    "tocsin_correlation_evicted_total",
    "Keys dropped because a rule reached its max_keys (oldest idle first).",
    ["rule"],
)
CORRELATION_EXPIRED = Counter(
    "tocsin_correlation_expired_total", "Idle correlation keys dropped once their windows passed."
)
MUTED = Counter(
    "tocsin_muted_total",
    "Hits whose notifications were held: per silence id, maintenance window name, inhibit "
    "rule ('rule N') or flapping rule.",
    ["kind", "name"],
)
MAINTENANCE_REMINDERS = Counter(
    "tocsin_maintenance_reminders_total", "Reminders that a one-off maintenance window ends soon."
)
SILENCES = Counter("tocsin_silences_changed_total", "Silences created or expired.", ["change"])
SNMP_PACKETS = Counter(
    "tocsin_snmp_packets_accepted_total",
    "SNMP traps and informs accepted, per version (1, 2c, 3).",
    ["version"],
)
SNMP_DROPPED = Counter(
    "tocsin_snmp_packets_dropped_total",
    "SNMP packets not processed, per reason (bad community, authentication failure, "
    "malformed, receive buffer full, ...).",
    ["reason"],
)
SNMP_INFORMS_ACKED = Counter(
    "tocsin_snmp_informs_acknowledged_total",
    "Informs answered, each once its event was committed.",
)
SNMP_RECEIVE_BUFFER = Gauge(
    "tocsin_snmp_receive_buffer_bytes",
    "Receive buffer the kernel granted each trap socket.",
    ["listen"],
)
SNMP_RECEIVE_QUEUE = Gauge(
    "tocsin_snmp_receive_queue_bytes",
    "Bytes waiting in a trap socket's kernel receive buffer (read each second from "
    "/proc/net/udp); near the granted buffer, the kernel drops traps.",
    ["listen"],
)
SNMP_PENDING = Gauge(
    "tocsin_snmp_pending_traps",
    "Traps read from the sockets and not yet in the engine queue; at 16384 tocsin stops "
    "reading and the kernel's receive buffer takes over.",
)
MQTT_MESSAGES = Counter(
    "tocsin_mqtt_messages_total",
    "MQTT messages received, per subscription (broker resends not included; repeats that "
    "dedupe_key drops are).",
    ["subscription"],
)
MQTT_DROPPED = Counter(
    "tocsin_mqtt_messages_dropped_total",
    "MQTT messages that made no event, per broker and reason (duplicate, no subscription, "
    "invalid topic, queue full: a QoS 0 message while tocsin was behind, shutdown: a QoS 0 "
    "message taken but not queued at the stop).",
    ["broker", "reason"],
)
MQTT_UNACKED = Gauge(
    "tocsin_mqtt_unacked_messages",
    "QoS 1 messages received and not acknowledged yet (waiting, queued or being committed); "
    "at receive_maximum the broker holds the rest.",
    ["broker"],
)
MQTT_PAYLOAD_ERRORS = Counter(
    "tocsin_mqtt_payload_errors_total",
    "MQTT message problems, per subscription and reason: a payload that is too large, "
    "invalid json or invalid utf-8 became a decode_error event or was dropped (on_error); "
    "a failed host or message template or an unreadable time field still made its event.",
    ["subscription", "reason"],
)
MQTT_REDELIVERED = Counter(
    "tocsin_mqtt_redelivered_total",
    "MQTT messages the broker flagged as sent before (after a reconnect or broker restart).",
    ["broker"],
)
MQTT_CONNECTED = Gauge("tocsin_mqtt_connected", "1 while connected to the broker.", ["broker"])
MQTT_CONNECTS = Counter(
    "tocsin_mqtt_connects_total", "Successful connections to the broker.", ["broker"]
)
MQTT_DISCONNECTS = Counter(
    "tocsin_mqtt_disconnects_total",
    "Connections lost, per broker and reason.",
    ["broker", "reason"],
)
MQTT_CONNECT_FAILURES = Counter(
    "tocsin_mqtt_connect_failures_total",
    "Connection attempts that failed, per broker and reason.",
    ["broker", "reason"],
)
MQTT_SESSIONS_LOST = Counter(
    "tocsin_mqtt_sessions_lost_total",
    "Reconnects where the broker had no session for us (messages sent meanwhile are lost).",
    ["broker"],
)
MQTT_SUBSCRIBED = Gauge(
    "tocsin_mqtt_subscribed",
    "1 if the broker granted the subscription at the last connect, 0 if it refused it.",
    ["broker", "filter"],
)
MQTT_PUBLISHED = Counter(
    "tocsin_mqtt_published_total", "Messages published by actions, per broker.", ["broker"]
)
MQTT_PUBLISH_REFUSED = Counter(
    "tocsin_mqtt_publish_refused_total",
    "Messages from actions the broker refused (MQTT 5 reason code, e.g. not authorized); "
    "they are not retried.",
    ["broker", "reason"],
)
OUTBOX_PENDING = Gauge(
    "tocsin_outbox_pending", "Messages from actions waiting to be delivered.", ["channel"]
)
OUTBOX_SENT = Counter("tocsin_outbox_sent_total", "Messages from actions delivered.", ["channel"])
OUTBOX_FAILURES = Counter(
    "tocsin_outbox_failures_total",
    "Failed delivery attempts (each is retried with backoff).",
    ["channel"],
)
OUTBOX_DROPPED = Counter(
    "tocsin_outbox_dropped_total",
    "Messages from actions not kept because the channel's outbox was full.",
    ["channel"],
)
INCIDENT_CHANGES = Counter(
    "tocsin_incident_changes_total",
    "Changes operators and timers made to incidents (acknowledge, assign, escalate, ...).",
    ["op"],
)
SLA_BREACHES = Counter(
    "tocsin_sla_breaches_total", "Incidents that missed an SLA target.", ["priority", "kind"]
)
SLA_WARNINGS = Counter(
    "tocsin_sla_warnings_total",
    "Incidents that came near an SLA target (the configured warn_at share of it).",
    ["priority", "kind"],
)
ESCALATIONS = Counter(
    "tocsin_escalations_total", "Escalation levels notified, per policy.", ["policy", "level"]
)
NOTIFICATIONS = Counter(
    "tocsin_notifications_total",
    "Notifications queued for sending, per receiver and why (new, repeat, escalation, ...).",
    ["receiver", "reason"],
)
NOTIFICATIONS_FAILED = Counter(
    "tocsin_notifications_failed_total",
    "Failed notification sends: transient ones are retried, permanent ones dropped.",
    ["receiver", "kind"],
)
REMEDIATION_VERDICTS = Counter(
    "tocsin_remediation_verdicts_total",
    "What the safety kit decided for runs: run, queued, await_approval, dry_run, refused.",
    ["runbook", "verdict"],
)
REMEDIATION_RUNS = Counter(
    "tocsin_remediation_runs_total",
    "Runs that ended, per final state (succeeded, failed, dry_run, refused, expired, ...).",
    ["runbook", "state"],
)
REMEDIATION_BREAKERS_OPENED = Counter(
    "tocsin_remediation_breakers_opened_total",
    "Circuit breakers that opened (each pages a person through an incident).",
    ["runbook"],
)
REMEDIATION_KILL_SWITCH = Gauge(
    "tocsin_remediation_kill_switch", "1 while the remediation kill switch is engaged."
)
KNOWN_ERROR_MATCHES = Counter(
    "tocsin_known_error_matches_total",
    "Incidents that matched a known error and got its workaround.",
    ["known_error"],
)
PROBLEM_CHANGES = Counter(
    "tocsin_problem_changes_total",
    "Changes to problem records: open, link, reopen, known_error, resolve, close, ...",
    ["op"],
)
SERVICE_REQUEST_CHANGES = Counter(
    "tocsin_service_request_changes_total",
    "Steps of service requests, per catalog item: submit, approve, reject, start, fulfil, "
    "fail, breach (of the SLA), close.",
    ["item", "op"],
)
ACCESS_AUDIT = Counter(
    "tocsin_access_audit_total",
    "Access decisions and results, as audited: requested, approved, denied, granted, revoked, "
    "expired, failed.",
    ["action"],
)
ACCESS_GRANTS = Gauge(
    "tocsin_access_grants",
    "Grants not ended, per state (pending_approval, provisioning, active, revoking).",
    ["state"],
)
CONFIG_RELOADS = Counter(
    "tocsin_config_reloads_total", "Config reloads, per result (ok, failed).", ["result"]
)
CONFIG_LAST_RELOAD_OK = Gauge(
    "tocsin_config_last_reload_successful",
    "1 if the last reload (or the start) applied the config, 0 if it was refused.",
)
CONFIG_LAST_RELOAD_TIME = Gauge(
    "tocsin_config_last_reload_success_timestamp_seconds",
    "When the config in use was applied (start or reload), in Unix time.",
)
CONFIG_HASH = Gauge(
    "tocsin_config_hash",
    "The first 48 bits of the SHA-256 over the config in use (its files' names and bytes).",
)
RULES_LOADED = Gauge("tocsin_rules_loaded", "Rules compiled and active.")
RULE_ERRORS = Gauge("tocsin_rule_errors", "Rules rejected by validation at the last load.")


class QueueLedger:
    """What waits between the sources and the engine: events per source, and since when.

    The daemon adds a batch when a source hands it over and settles it when the engine takes
    it (or when it never got in). The gauges read the ledger when scraped, so the oldest
    event's age grows while the engine is stuck, not only when a batch moves.
    """

    def __init__(self, *, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._events: collections.Counter[str] = collections.Counter()
        self._since: collections.Counter[float] = collections.Counter()  # read_at -> batches

    def add(self, source: str, events: int, read_at: float) -> None:
        """Count a batch of `events` read at `read_at` (wall clock) as waiting."""
        if not events:
            return
        if source not in self._events:
            QUEUE_SOURCE_DEPTH.labels(source).set_function(lambda: self._events[source])
        self._events[source] += events
        self._since[read_at] += 1

    def settle(self, source: str, events: int, read_at: float) -> None:
        """Stop counting a batch `add` counted: the engine took it, or it never got in."""
        if not events:
            return
        self._events[source] -= events
        self._since[read_at] -= 1
        if not self._since[read_at]:
            del self._since[read_at]

    def by_source(self) -> dict[str, int]:
        """Events waiting, per source that has any."""
        return {source: count for source, count in self._events.items() if count}

    def oldest_age(self) -> float:
        """Seconds since the oldest waiting batch was read; 0 when nothing waits."""
        return max(0.0, self._clock() - min(self._since)) if self._since else 0.0

    def export(self) -> None:
        """Point the queue age gauge at this ledger (a process runs one daemon)."""
        QUEUE_OLDEST_AGE.set_function(self.oldest_age)


class Throttle:
    """Let a repeated log line through at most once per `every` seconds per key, counting the rest.

    A failing rule or a flood of bad packets would otherwise log thousands of lines a second.
    """

    def __init__(self, *, every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every
        self._clock = clock
        self._last: dict[Hashable, float] = {}
        self._held: collections.Counter[Hashable] = collections.Counter()

    def allow(self, key: Hashable, count: int = 1) -> int | None:
        """Return None to hold this line back, else how many were held back since the last."""
        now = self._clock()
        if now - self._last.get(key, -math.inf) < self._every:
            self._held[key] += count
            return None
        self._last[key] = now
        return self._held.pop(key, 0)


def configure_logging(*, level: str = "info", fmt: str = "auto") -> None:
    """Log JSON lines to stdout unless it is a TTY (or `fmt` says otherwise)."""
    console = sys.stdout.isatty() if fmt == "auto" else fmt == "console"
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )
