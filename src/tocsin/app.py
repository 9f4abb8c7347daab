"""Builds the long-lived parts, runs them, and shuts them down in a fixed order."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from tocsin import __version__, obs
from tocsin.actions.registry import action_kinds
from tocsin.actions.service import SERVICE_CHANNEL
from tocsin.api.http import ApiServer
from tocsin.api.incidents import IncidentError
from tocsin.config import Config, FileSourceConfig, describe, load_config
from tocsin.desks import (
    Incidents,
    Maintenance,
    Problems,
    Runs,
    Silences,
    load_silences,
    load_windows,
)
from tocsin.engine.clock import Clock, SystemClock
from tocsin.engine.muting import Muter
from tocsin.engine.pipeline import RULE_STAGES, BatchResult, Engine
from tocsin.model import (
    Event,
    FileOffset,
    Incident,
    IncidentChange,
    Outgoing,
    RemediationRun,
    RunRequest,
    StateRow,
)
from tocsin.mqttd import MQTT_CHANNEL, MqttService
from tocsin.mute.silences import SilenceBook
from tocsin.notify.escalation import Escalator
from tocsin.notify.grouping import Dispatcher
from tocsin.notify.notifier import Notifier, Reaction
from tocsin.notify.receivers import Senders, make_senders
from tocsin.notify.settings import IncidentSettings
from tocsin.outbox import OutboxSender, Send
from tocsin.parsers import Parser, make_parser
from tocsin.records.access import Grant
from tocsin.records.incidents import IncidentBook
from tocsin.records.known_errors import KnownError, KnownErrorBook, KnownErrorError
from tocsin.records.priority import PRIORITIES
from tocsin.records.problem_keeper import RECURRENCE_DOCUMENT, ProblemKeeper, problem_rows
from tocsin.records.problems import (
    PROBLEM_STATES_KEPT,
    Problem,
    ProblemBook,
    ProblemError,
    RecurrencePolicy,
)
from tocsin.records.requests import ServiceRequest
from tocsin.reloading import (
    ConfigFiles,
    ConfigWatcher,
    ReloadOutcome,
    config_hash,
    keep_running,
    kept_raw,
    raw_config,
    restart_needed,
)
from tocsin.remediator import Remediator
from tocsin.rules.loader import RuleSet, load_rules
from tocsin.runbooks.settings import PublishStep, RunbookSettings
from tocsin.sdnotify import SystemdNotifier
from tocsin.servicedesk import AccessDeskImpl, RequestDeskImpl, ServiceDesk
from tocsin.sources.logfile import LogFileSource
from tocsin.store.base import CommitBatch, HistoryEntry, Store, StoreError
from tocsin.store.sqlite import SqliteStore
from tocsin.store.writer import StoreWriter
from tocsin.tokens import TokenError, read_tokens
from tocsin.trapd import TrapReceiver
from tocsin.yamlsrc import SourceError

__all__ = ["Core", "Daemon", "ResultReporter", "StartupError", "load_ruleset"]

log = structlog.get_logger("tocsin")


class StartupError(Exception):
    """The daemon cannot start (port taken, state dir unusable); the message says why."""


@dataclass(slots=True)
class EventBatch:
    """Events from one read of one file, and the offset to commit once they are done."""

    events: list[Event]
    checkpoint: FileOffset | None
    read_at: float
    on_commit: Callable[[], None] | None = None  # e.g. acknowledge the messages to the broker
    source: str = ""  # what queued it (log, snmp, mqtt); "" when fed to the engine directly


_NOTHING = EventBatch([], None, 0.0)  # no batch arrived before the tick was due
_REQUEST_SLA = "request-sla"  # the rule id of the incidents overdue requests raise
_ACCESS_REVOKE = "access-revoke"  # ... and of those revokes that failed for good raise
_NOTIFY_OUTBOX_LIMIT = 100_000  # notifications kept per receiver while it cannot be reached
_RETIRE_AFTER = 60.0  # seconds a reload's old receiver connections stay for sends in flight
_SYSTEMD_STATUS_EVERY = 2.0  # seconds between refreshes of the status line systemd shows
_ENGINE_TURN = 0.05  # seconds the engine may run queued batches before others get the loop


def load_ruleset(
    paths: tuple[Path, ...],
    *,
    brokers: Collection[str] | None = None,
    service: RunbookSettings | None = None,
) -> RuleSet:
    """Load rules and log every problem with file:line; invalid rules are skipped."""
    kinds = action_kinds(
        brokers=brokers,
        runbooks=service.runbooks if service else None,
        catalog=service.catalog if service else None,
        access=service.access if service else None,
    )
    ruleset = load_rules(list(paths), kinds=kinds)
    for warning in ruleset.warnings:
        log.warning("rule_warning", problem=str(warning))
    for error in ruleset.errors:
        log.error("rule_invalid", problem=str(error))
    obs.RULES_LOADED.set(len(ruleset.rules))
    obs.RULE_ERRORS.set(len(ruleset.errors))
    return ruleset


class ResultReporter:
    """Counts a batch's matches, actions and failures, and logs them without flooding.

    A rule that fails on every event would otherwise log thousands of lines a second: each
    (rule, stage) is logged at most once per `every` seconds, with how many were not logged.
    """

    def __init__(self, *, every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._throttle = obs.Throttle(every=every, clock=clock)

    def report(self, result: BatchResult) -> None:
        """Write what `log` actions asked for; count everything; log failures, rate-limited."""
        for request in result.logs:
            event = request.event
            about = (
                {}
                if event is None
                else {
                    "source": event.source,
                    "origin": event.origin,
                    "host": event.host,
                    "program": event.program,
                }
            )
            getattr(log, request.level)(request.message, rule=request.rule, **about)
        for kind, count in result.actions.items():
            obs.ACTIONS.labels(kind).inc(count)
        for rule, count in result.matches.items():
            obs.RULE_MATCHES.labels(rule).inc(count)
        if result.late:
            obs.EVENTS_LATE.inc(result.late)
        if result.future:
            obs.EVENTS_FUTURE.inc(result.future)
        if result.timers:
            obs.TIMERS_FIRED.inc(result.timers)
        if result.expired:
            obs.CORRELATION_EXPIRED.inc(result.expired)
        for rule, count in result.evicted.items():
            obs.CORRELATION_EVICTED.labels(rule).inc(count)
        for (kind, name), count in result.muted.items():
            obs.MUTED.labels(kind, name).inc(count)
        for failure in result.failures:
            is_rule = failure.stage in RULE_STAGES
            if is_rule:
                obs.RULE_FAILURES.labels(failure.rule, failure.stage).inc()
            else:
                obs.ACTIONS_FAILED.labels(failure.stage).inc()
            held = self._throttle.allow((failure.rule, failure.stage))
            if held is None:
                continue
            (log.warning if is_rule else log.error)(
                "rule_failed" if is_rule else "action_failed",
                rule=failure.rule,
                stage=failure.stage,
                error=failure.error,
                origin=failure.event.origin,
                message=failure.event.message[:200],
                not_logged_since_last=held,
            )


class Daemon:
    """The running tocsin: file sources -> bounded queue -> engine -> store, plus the API."""

    def __init__(self, config: Config, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self._queue: asyncio.Queue[EventBatch | None] = asyncio.Queue(
            maxsize=max(1, config.queue_events // config.batch_lines)  # >= one batch
        )
        self._queued_events = 0
        self._ledger = obs.QueueLedger(clock=self.clock.now)  # the same, per source and age
        self._writer: StoreWriter | None = None
        self._maintenance: Maintenance | None = None
        self._reporter = ResultReporter()
        self._senders: dict[str, OutboxSender] = {}
        self._outbox_limits: dict[str, int] = {}
        self._outbox_done: dict[str, tuple[int, int]] = {}  # (sent, failures) exported so far
        self._outbox_throttle = obs.Throttle(every=60.0)
        self._mqtt: MqttService | None = None
        self._notifier: Notifier | None = None
        self._remediator: Remediator | None = None
        self._keeper: ProblemKeeper | None = None
        self._service: ServiceDesk | None = None
        self._background: set[asyncio.Task[None]] = set()  # runbook publishes being committed
        self._book: IncidentBook | None = None
        self._send_failures: list[HistoryEntry] = []  # timeline notes of failed sends, to commit
        self._failed_keys: set[str] = set()  # messages whose first failed send was noted
        self._next_close = 0.0  # monotonic time of the next auto-close sweep
        self._last_batch = -math.inf  # monotonic time the engine last took a batch
        self._stop_by = math.inf  # the shutdown deadline: the engine takes no batch after it
        self.ready = asyncio.Event()
        self.systemd = SystemdNotifier()  # a no-op unless systemd started us (Type=notify)
        # What a reload swaps, kept from the start (None until then).
        self._engine: Engine | None = None
        self._muter: Muter | None = None
        self._api: ApiServer | None = None
        self._incidents_desk: Incidents | None = None
        self._notifying: Senders | None = None
        self._retired: list[Senders] = []  # senders a reload replaced, closed at the end
        self._late_senders: list[asyncio.Task[None]] = []  # outbox senders a reload started
        self._rules_loaded = 0
        self._raw_config = raw_config(config.path)
        self._config_files = ConfigFiles.of(config)
        self._reload_lock = asyncio.Lock()
        self._stopping = False  # set at shutdown (under the reload lock): no reload after

    async def run(self, stop: asyncio.Event) -> bool:
        """Run until `stop` is set, then shut down within the deadline; False if that failed."""
        config = self.config
        try:
            config.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(
                f"cannot create state_dir {config.state_dir}: {exc.strerror}"
            ) from None
        obs.BUILD.info({"version": __version__})
        obs.QUEUE_CAPACITY.set(self._queue.maxsize * config.batch_lines)
        self._ledger.export()
        ruleset = load_ruleset(
            config.rule_paths,
            brokers=list(config.mqtt_brokers),
            service=config.runbooks,
        )
        try:
            tokens = (
                frozenset(read_tokens(config.http.tokens_file))
                if config.http.tokens_file
                else frozenset()
            )
        except TokenError as exc:
            raise StartupError(str(exc)) from None
        store: Store = SqliteStore(path=config.store_path)
        async with StoreWriter(store=store) as writer:
            self._writer = writer
            saved = await writer.call(lambda s: s.load_offsets())
            parts = await self._assemble(writer, ruleset)
            book, muter, silences = parts.book, parts.muter, parts.silences
            remediator, service, engine = parts.remediator, parts.service, parts.engine
            settings = config.incidents
            receiver = None
            if config.snmp is not None:
                try:
                    receiver = TrapReceiver(
                        config=config.snmp,
                        state_dir=config.state_dir,
                        clock=self.clock,
                        batch_events=config.batch_lines,
                    )
                except (OSError, ValueError) as exc:
                    raise StartupError(f"cannot set up the SNMP trap receiver: {exc}") from None
            mqtt = None
            if config.mqtt_brokers:
                mqtt = MqttService(
                    brokers=config.mqtt_brokers,
                    subscriptions=config.mqtt_subscriptions,
                    clock=self.clock,
                    state_dir=config.state_dir,
                    batch_events=config.batch_lines,
                )
                self._mqtt = mqtt
            desk = self._incidents_for(parts, writer)
            api = ApiServer(
                host=config.http.host,
                port=config.http.port,
                store_path=config.store_path,
                health=self._health,
                silences=Silences(book=silences, muter=muter, writer=writer, clock=self.clock.now),
                maintenance=self._maintenance,
                incidents=desk,
                runs=Runs(remediator=remediator, writer=writer),
                requests=RequestDeskImpl(service),
                access=AccessDeskImpl(service),
                problems=Problems(keeper=parts.keeper, writer=writer, clock=self.clock.now),
                rules=engine,  # /api/v1/rules and the per-rule metrics read its figures
                config=lambda: describe(self.config),
                reload=self._reload_view,
                tokens=tokens,
                open_reads=config.http.open_reads,
            )
            self._api, self._incidents_desk = api, desk
            try:
                await api.start()
            except OSError as exc:
                raise StartupError(
                    f"cannot listen on {config.http.host}:{config.http.port}: {exc.strerror}"
                ) from None
            traps = contextlib.AsyncExitStack()
            if receiver is not None:
                try:
                    await traps.enter_async_context(receiver)
                except OSError as exc:
                    await api.stop()
                    raise StartupError(str(exc.strerror or exc)) from None
            if mqtt is not None:
                # Closed after the final commits, so their acknowledgements still go out.
                await traps.enter_async_context(mqtt)
            notifying = make_senders(settings.receivers, report=self._send_failed)
            self._notifying = notifying
            traps.push_async_callback(self._close_senders)
            senders = await self._start_senders(
                mqtt, notifying, writer, {SERVICE_CHANNEL: service.deliver}
            )
            # A file that several entries match belongs to the first of them, in config order.
            earlier = [
                [p for spec in config.files[:i] for p in spec.patterns]
                for i in range(len(config.files))
            ]
            sources = [
                asyncio.create_task(
                    self._supervise(
                        functools.partial(self._read_files, spec, saved, earlier[i]),
                        {"patterns": list(spec.patterns)},
                    ),
                    name=f"tocsin.source.files[{i}]",
                )
                for i, spec in enumerate(config.files)
            ]
            if receiver is not None:
                sources.append(
                    asyncio.create_task(
                        self._supervise(
                            functools.partial(receiver.run, self._put),
                            {"snmp": list(map(str, receiver.bound))},
                        ),
                        name="tocsin.source.snmp",
                    )
                )
            if mqtt is not None:
                for name, consume in mqtt.consumers().items():
                    sources.append(
                        asyncio.create_task(
                            self._supervise(
                                functools.partial(consume, self._put), {"mqtt_broker": name}
                            ),
                            name=f"tocsin.source.mqtt.{name}",
                        )
                    )
            senders.append(asyncio.create_task(remediator.run(), name="tocsin.remediation"))
            await service.resume()  # provisioning a stop cut off runs again
            processor = asyncio.create_task(self._process(engine, writer), name="tocsin.engine")
            systemd_tasks: list[asyncio.Task[None]] = []
            try:
                log.info(
                    "tocsin_started",
                    version=__version__,
                    api=f"http://{api.address}/api/v1/incidents",
                    metrics=f"http://{api.address}/metrics",
                    rules_loaded=len(ruleset.rules),
                    rule_errors=len(ruleset.errors),
                    open_incidents=len(book),
                    **describe(config),
                )
                self.ready.set()
                systemd_tasks = await self._systemd_ready(len(sources), book)
                self._applied(config)
                if config.watch:
                    watcher = ConfigWatcher(
                        self._config_folders,
                        self._is_config_file,
                        functools.partial(self.reload, "watch"),
                        debounce=config.watch_debounce,
                    )
                    systemd_tasks.append(
                        asyncio.create_task(watcher.run(), name="tocsin.config.watch")
                    )
                waiter = asyncio.create_task(stop.wait())
                await asyncio.wait({waiter, processor}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                async with self._reload_lock:  # a reload under way finishes first
                    self._stopping = True
                self.systemd.stopping(f"stopping: finishing {self._queued_events} queued events")
                clean = await self._shutdown(sources, processor, writer)
                if mqtt is not None:
                    mqtt.keep_identities = clean
            finally:
                await remediator.stop()
                for task in (*sources, processor, *senders, *systemd_tasks, *self._late_senders):
                    task.cancel()
                await asyncio.gather(*senders, *self._late_senders, return_exceptions=True)
                await traps.aclose()
                await api.stop()
        return clean

    async def _assemble(self, writer: StoreWriter, ruleset: RuleSet) -> _Parts:
        """Build the pipeline's core from the store (empty: a fresh start): the incident book,
        problems, notifications, muting, remediation, the service desk and the engine, with
        what each resumes. `run` and `open_core` share it, so the two cannot drift."""
        config = self.config
        open_incidents = await writer.call(lambda s: s.load_open_incidents())
        next_id = await writer.call(lambda s: s.next_incident_id())
        settings = config.incidents
        # Reopening compares event times: resume from the saved watermark, not the wall.
        watermark = await writer.call(lambda s: s.load_watermark())
        since = (self.clock.now() if watermark is None else watermark) - settings.reopen_window
        resolved = (
            await writer.call(lambda s: s.load_resolved_since(since))
            if settings.reopen_window > 0
            else []
        )
        book = IncidentBook(
            priorities=config.priorities,
            next_id=next_id,
            open_incidents=open_incidents,
            resolved=resolved,
            reopen_window=settings.reopen_window,
            samples=settings.samples,
        )
        self._book = book
        keeper = self._keeper = await self._make_keeper(writer)
        self._notifier = await self._make_notifier(writer)
        silences = await load_silences(writer)
        muter = Muter(silences=silences, inhibit=config.inhibit, open_incidents=open_incidents)
        self._maintenance = Maintenance(
            configured=config.maintenance,
            made=await load_windows(writer),
            muter=muter,
            writer=writer,
            clock=self.clock.now,
        )
        next_run = await writer.call(lambda s: s.next_run_id())
        remediator = Remediator(
            settings=config.runbooks,
            writer=writer,
            book=book,
            clock=self.clock,
            commit_changes=functools.partial(self._commit_changes, writer),
            escalate=functools.partial(self._escalate, writer),
            publish=self._runbook_publish if config.mqtt_brokers else None,
            muter=muter,
            next_id=next_run,
        )
        self._remediator = remediator
        service = await ServiceDesk.load(
            settings=config.runbooks, writer=writer, remediator=remediator, clock=self.clock.now
        )
        self._service = service
        service.problems = functools.partial(self._rule_problem, writer)
        service.escalate = functools.partial(self._request_overdue, writer)
        service.revoke_failed = functools.partial(self._revoke_failed, writer)
        await remediator.resume()  # after the desk listens: interrupted runs settle there
        correlation = config.correlation
        engine = Engine(
            rules=ruleset.rules,
            lists=ruleset.lists,
            book=book,
            clock=self.clock,
            lateness=correlation.lateness,
            skew=correlation.clock_skew,
            max_keys=correlation.max_keys,
            track_state=True,
            muter=muter,
        )
        await self._restore(engine, writer)
        self._engine, self._muter, self._rules_loaded = engine, muter, len(ruleset.rules)
        self._set_open_gauge(book)
        return _Parts(book, muter, silences, keeper, remediator, service, engine)

    def _incidents_for(self, parts: _Parts, writer: StoreWriter) -> Incidents:
        """The incidents desk the API (or a `tocsin test` case) works through."""
        settings = self.config.incidents
        return Incidents(
            book=parts.book,
            writer=writer,
            commit=functools.partial(self._commit_changes, writer),
            clock=self.clock.now,
            schedules=settings.schedules,
            users={name: user.as_dict() for name, user in settings.users.items()},
            muter=parts.muter,
        )

    async def _systemd_ready(self, sources: int, book: IncidentBook) -> list[asyncio.Task[None]]:
        """Send READY=1 once every source has opened what it reads, then keep the status line
        fresh and ping the watchdog from this loop (a hung loop stops pinging)."""
        await asyncio.sleep(0)  # each source task takes its first step: its files are open

        def summary() -> str:
            return (
                f"running: {sources} sources, {self._rules_loaded} rules, "
                f"{self._queued_events} queued, "
                f"{len(book)} open incidents"
            )

        self.systemd.ready(summary())
        return [
            asyncio.create_task(self.systemd.heartbeat(), name="tocsin.systemd.watchdog"),
            asyncio.create_task(
                self.systemd.keep_status(summary, every=_SYSTEMD_STATUS_EVERY),
                name="tocsin.systemd.status",
            ),
        ]

    def reloading(self) -> contextlib.AbstractContextManager[None]:
        """Wrap a reload: systemd sees RELOADING=1 while it runs and READY=1 after it."""
        return self.systemd.reloading()

    async def reload(self, trigger: str) -> ReloadOutcome:
        """Read the config and rules again and swap them in, only if every part is valid: a
        failed reload changes nothing and says why (file:line). One reload at a time."""
        async with self._reload_lock:
            if self._stopping:
                return ReloadOutcome(False, trigger, ["tocsin is shutting down"])
            with self.reloading():
                try:
                    outcome = await self._reload(trigger)
                except Exception as exc:
                    log.exception("config_reload_crashed", trigger=trigger)
                    outcome = ReloadOutcome(False, trigger, [f"the reload crashed: {exc!r}"])
        obs.CONFIG_RELOADS.labels("ok" if outcome.ok else "failed").inc()
        if outcome.ok:
            log.info(
                "config_reloaded",
                trigger=trigger,
                rules=outcome.rules,
                rules_restarted=outcome.changed_rules,
                restart_needed=outcome.restart_needed,
                config_hash=outcome.config_hash,
            )
            for key in outcome.restart_needed:
                log.warning(
                    "config_change_needs_restart",
                    key=key,
                    note="the running daemon keeps the old value until it restarts",
                )
        else:
            obs.CONFIG_LAST_RELOAD_OK.set(0)
            for problem in outcome.errors:
                log.error("config_reload_failed", trigger=trigger, problem=problem)
            log.error("config_reload_refused", trigger=trigger, errors=len(outcome.errors),
                      note="the running config and rules stay as they were")  # fmt: skip
        return outcome

    def _config_folders(self) -> list[Path]:
        """The folders to watch for the config in use now (a reload may name new ones)."""
        return self._config_files.folders()

    def _is_config_file(self, path: Path) -> bool:
        """Whether `path` is part of the config in use now (asked from the watch's thread)."""
        return path in self._config_files

    async def _reload_view(self, trigger: str) -> dict[str, Any]:
        return (await self.reload(trigger)).to_dict()

    def _applied(self, config: Config) -> str:
        """Export that `config` is the one in use (at start and after each reload)."""
        digest = config_hash(config)
        obs.CONFIG_LAST_RELOAD_OK.set(1)
        obs.CONFIG_LAST_RELOAD_TIME.set(time.time())
        obs.CONFIG_HASH.set(int(digest[:12], 16))
        return digest

    async def _reload(self, trigger: str) -> ReloadOutcome:
        """Build everything from the files first; then swap, without awaiting in between, so
        no batch, tick or API change sees half of it."""
        old = self.config
        engine, writer, book = self._engine, self._writer, self._book
        if engine is None or writer is None or book is None:
            return ReloadOutcome(False, trigger, ["the daemon is still starting"])
        try:
            loaded = await asyncio.to_thread(load_config, old.path)
        except SourceError as exc:
            return ReloadOutcome(False, trigger, [str(exc)])
        raw = await asyncio.to_thread(raw_config, old.path)
        later = restart_needed(self._raw_config, raw)
        new = keep_running(loaded, old)  # what needs a restart keeps its running value
        kinds = action_kinds(
            brokers=list(new.mqtt_brokers),
            runbooks=new.runbooks.runbooks,
            catalog=new.runbooks.catalog,
            access=new.runbooks.access,
        )
        ruleset = await asyncio.to_thread(load_rules, list(new.rule_paths), kinds=kinds)
        if ruleset.errors:
            return ReloadOutcome(False, trigger, [str(error) for error in ruleset.errors])
        try:
            tokens = read_tokens(new.http.tokens_file) if new.http.tokens_file else []
        except TokenError as exc:
            return ReloadOutcome(False, trigger, [str(exc)])
        missing = _new_brokers(new)
        if missing:
            return ReloadOutcome(False, trigger, missing)
        if self._keeper is not None:  # what the swap could still refuse, refused here
            clash = self._keeper.known.clash(new.incidents.known_errors)
            signatures = [r.signature for r in new.incidents.recurrence]
            if len(set(signatures)) != len(signatures):
                clash = clash or "two problems.recurrence rules count by the same fields"
            if clash:
                return ReloadOutcome(False, trigger, [clash])
        for warning in ruleset.warnings:
            log.warning("rule_warning", problem=str(warning))
        notifying = make_senders(new.incidents.receivers, report=self._send_failed)

        # -- the swap: nothing awaits from here to the commit below --------------------------
        changed = engine.reload(ruleset.rules, ruleset.lists)
        book.priorities = new.priorities
        book.reopen_window = new.incidents.reopen_window
        book.samples = new.incidents.samples
        if self._keeper is not None:
            self._keeper.policy.set_rules(new.incidents.recurrence)
            self._keeper.known.set_config(new.incidents.known_errors)
        self._notifier = self._renotifier(new)
        if self._muter is not None:
            self._muter.set_inhibit(new.inhibit, book.open_incidents())
        if self._maintenance is not None:
            self._maintenance.configure(new.maintenance)
        if self._incidents_desk is not None:
            self._incidents_desk.configure(
                schedules=new.incidents.schedules,
                users={name: user.as_dict() for name, user in new.incidents.users.items()},
            )
        if self._api is not None:
            self._api.set_tokens(tokens)
        self._swap_senders(notifying)
        dropped = self._remediator.apply(new.runbooks) if self._remediator is not None else []
        if self._service is not None:
            self._service.settings = new.runbooks
        self.config = new
        self._raw_config = kept_raw(self._raw_config, raw)  # what still needs a restart stays
        self._config_files = ConfigFiles.of(new)
        self._rules_loaded = len(ruleset.rules)
        obs.RULES_LOADED.set(len(ruleset.rules))
        obs.RULE_ERRORS.set(0)
        digest = self._applied(new)
        # -- then what may wait: saving the rules' state bookkeeping, runbooks and access ----
        for rule_id in changed:  # gone, or starting over: no stale series
            with contextlib.suppress(KeyError):
                obs.CORRELATION_KEYS.remove(rule_id)
        self._set_key_gauges(engine)
        try:
            await writer.submit(CommitBatch(digests=engine.digests(), forget=changed))
            if self._remediator is not None:
                await self._remediator.settle(dropped)
            if self._service is not None:
                await self._service.reconfigure(new.runbooks)
        except (StoreError, RuntimeError) as exc:  # applied, but a follow-up was not saved
            log.error("config_reload_followup_failed", problem=str(exc))
        return ReloadOutcome(
            True,
            trigger,
            restart_needed=later,
            rules=len(ruleset.rules),
            changed_rules=changed,
            config_hash=digest,
        )

    def _renotifier(self, config: Config) -> Notifier | None:
        """A notifier for the new incidents file, with the groups and timers of the old one
        (groups of routes no longer configured are dropped and deleted with the next commit)."""
        settings = config.incidents
        if not settings.receivers and settings.sla is None:
            return None
        dispatcher = Dispatcher(settings.route) if settings.route is not None else None
        old = self._notifier.dispatcher if self._notifier is not None else None
        if dispatcher is not None and old is not None:
            restored = dispatcher.restore(old.snapshot())
            if restored.dropped:
                log.warning("notify_groups_dropped", route_gone=restored.dropped,
                            kept=restored.groups)  # fmt: skip
        if dispatcher is not None and self._book is not None:
            for incident in self._book.open_incidents():  # as at a start: fresh views, and
                dispatcher.observe(incident, self.clock.now())  # the new routes' groups
        return self._notifier_with(settings, dispatcher)

    def _swap_senders(self, notifying: Senders) -> None:
        """Send each receiver channel's outbox rows with the new receivers from now on: a
        channel kept gets the new send, a new one a sender of its own; the old connections
        close at the end (a send in flight finishes on them)."""
        writer = self._writer
        if writer is None:
            return
        for channel, send in notifying.sends.items():
            sender = self._senders.get(channel)
            if sender is not None:
                sender.use(send)
                continue
            sender = OutboxSender(channel=channel, writer=writer, send=send)
            self._senders[channel] = sender
            self._outbox_limits[channel] = _NOTIFY_OUTBOX_LIMIT
            task = asyncio.get_running_loop().create_task(
                sender.run(), name=f"tocsin.outbox.{channel}"
            )
            self._late_senders.append(task)
        if self._notifying is not None:
            retired = self._notifying
            self._retired.append(retired)
            task = asyncio.get_running_loop().create_task(self._retire(retired))
            self._late_senders.append(task)
        self._notifying = notifying

    async def _retire(self, senders: Senders) -> None:
        """Close a reload's old connections once a send in flight on them has had its time."""
        await asyncio.sleep(_RETIRE_AFTER)
        if senders in self._retired:
            self._retired.remove(senders)
            await senders.close()

    async def _close_senders(self) -> None:
        for senders in (*self._retired, *([self._notifying] if self._notifying else [])):
            await senders.close()

    async def _restore(self, engine: Engine, writer: StoreWriter) -> None:
        """Resume correlation state saved under the same rule definitions; forget the rest."""
        snapshot = await writer.call(lambda s: s.load_correlation())
        forget = engine.restore(
            digests=snapshot.digests,
            rows=snapshot.rows,
            watermark=snapshot.watermark if snapshot.watermark is not None else -math.inf,
            wall=self.clock.now(),
            seq=snapshot.seq,
        )
        await writer.submit(CommitBatch(digests=engine.digests(), forget=forget))
        keys = engine.live_keys()
        if snapshot.rows or forget:
            log.info(
                "correlation_restored",
                keys=sum(keys.values()),
                rules=len(keys),
                changed_rules_started_fresh=forget,
            )
        self._set_key_gauges(engine)

    async def _shutdown(
        self, sources: list[asyncio.Task[None]], processor: asyncio.Task[None], writer: StoreWriter
    ) -> bool:
        """Stop reading, drain the queue, commit, all within shutdown_timeout; False on trouble.

        Whatever is left uncommitted at the deadline is given up: those lines' offsets were
        never committed, so they are read again at the next start.
        """
        deadline = time.monotonic() + self.config.shutdown_timeout
        self._stop_by = deadline  # checked by the engine itself: our awaits wait for its turns

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        log.info(
            "tocsin_stopping",
            queued_events=self._queued_events,
            queued_by_source=self._ledger.by_source(),
        )
        for task in sources:
            task.cancel()
        await asyncio.gather(*sources, return_exceptions=True)
        reason = ""
        try:
            if not processor.done():
                await asyncio.wait_for(self._queue.put(None), left())
            await asyncio.wait_for(asyncio.shield(processor), left())
        except TimeoutError:
            processor.cancel()
            reason = "shutdown_timeout passed"
        except Exception as error:  # the engine crashed: report it, keep what it finished
            log.error("engine_crashed", exc_info=error)
            reason = "the engine crashed"
        if not reason and self._queued_events:  # the engine stopped at the deadline
            reason = "shutdown_timeout passed"
        if self._send_failures:  # failed sends noted since the last tick
            notes, self._send_failures = self._send_failures, []
            await writer.submit(CommitBatch(history=notes))
        try:
            # Batches the engine finished are committed even after a crash, if time allows.
            await asyncio.wait_for(writer.flush(), max(0.1, left()))
        except TimeoutError:
            reason = reason or "shutdown_timeout passed"
        if reason:
            given_up = await writer.abandon()
            log.error(
                "shutdown_incomplete",
                reason=reason,
                unprocessed_events=self._queued_events,
                unprocessed_by_source=self._ledger.by_source(),
                uncommitted_batches=given_up,
                note="lines not committed are read again at the next start",
            )
            return False
        log.info("tocsin_stopped")
        return True

    async def _supervise(
        self, start: Callable[[], Awaitable[None]], about: dict[str, object]
    ) -> None:
        """Keep a source running: a crash is logged and it restarts after what it queued."""
        delay = 1.0
        while True:
            started = time.monotonic()
            try:
                await start()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                if time.monotonic() - started > 60:
                    delay = 1.0  # it ran fine for a while: this is a new problem
                log.exception("source_crashed", **about, restart_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _put(
        self,
        events: list[Event],
        read_at: float,
        source: str = "snmp",
        on_commit: Callable[[], None] | None = None,
        *,
        checkpoint: FileOffset | None = None,
    ) -> None:
        """Queue a source's events; returns once they are in the pipeline (the backpressure).

        `on_commit` runs once everything the events changed is committed.
        """
        obs.EVENTS_RECEIVED.labels(source).inc(len(events))
        self._queued_events += len(events)
        self._ledger.add(source, len(events), read_at)
        obs.QUEUE_DEPTH.set(self._queued_events)
        try:
            await self._queue.put(EventBatch(events, checkpoint, read_at, on_commit, source))
        except BaseException:  # cancelled while the queue was full (stopping): not queued
            self._queued_events -= len(events)
            self._ledger.settle(source, len(events), read_at)
            raise

    async def _read_files(
        self, spec: FileSourceConfig, saved: dict[str, FileOffset], exclude: list[str]
    ) -> None:
        """Tail one `sources.files` entry into the queue, parsing each read into events."""
        parsers: dict[str, Parser] = {}

        def parser_for(path: str) -> Parser:
            parser = parsers.get(path)
            if parser is None:
                parser = make_parser(
                    spec.parser, origin=path, year=spec.year, tz=spec.timezone, now=self.clock.now
                )
                parsers[path] = parser
            return parser

        async with LogFileSource(
            patterns=spec.patterns,
            saved=saved,
            start_at="beginning" if spec.start_at == "beginning" else "end",
            max_line_bytes=spec.max_line_bytes,
            batch_lines=self.config.batch_lines,
            poll_interval=spec.poll_interval,
            rescan_interval=spec.rescan_interval,
            clock=self.clock.now,
            exclude=exclude,
        ) as source:
            async for lines in source:
                parser = parser_for(lines.path)
                read_at = lines.read_at
                events = [parser(line, read_at) for line in lines.lines]
                if parser.errors:
                    obs.PARSE_ERRORS.labels(parser.name).inc(parser.errors)
                    parser.errors = 0
                await self._put(events, read_at, "log", checkpoint=lines.checkpoint)
                # Where a restarted source resumes: after what is already queued.
                saved[lines.path] = lines.checkpoint

    async def _process(self, engine: Engine, writer: StoreWriter) -> None:
        """Take batches off the queue, run the engine, hand the effects to the store.

        Every `tick` seconds, busy or idle, event time may follow the wall clock, so timers
        (absence, expect, clear checks) fire without waiting for new events.
        """
        tick = self.config.correlation.tick
        next_tick = time.monotonic() + tick
        # One pending get survives timeouts: cancelling a get could lose the batch it took.
        getter: asyncio.Future[EventBatch | None] | None = None
        turn = time.monotonic()  # when the engine last let the rest of the loop run
        try:
            while True:
                if getter is None and time.monotonic() >= self._stop_by:
                    return  # shutdown_timeout passed: what is still queued is given up
                if getter is None and not self._queue.empty():
                    # No yield while batches wait: the store then gets them in groups (one
                    # transaction for several), not one transaction per batch. But only for
                    # a moment: in a backlog the API, the sockets and the watchdog wait too.
                    if time.monotonic() - turn >= _ENGINE_TURN:
                        await asyncio.sleep(0)
                        turn = time.monotonic()
                    batch = self._queue.get_nowait()
                else:
                    if getter is None:
                        getter = asyncio.ensure_future(self._queue.get())
                    await asyncio.wait({getter}, timeout=max(0.0, next_tick - time.monotonic()))
                    turn = time.monotonic()
                    batch = getter.result() if getter.done() else _NOTHING
                    if getter.done():
                        getter = None
                if batch is None:
                    return
                if batch is not _NOTHING:
                    await self._step(engine, writer, batch)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + tick
                    await self._tick(engine, writer)
        finally:
            if getter is not None:
                getter.cancel()

    async def _step(self, engine: Engine, writer: StoreWriter, batch: EventBatch) -> None:
        """Run one batch through the engine and hand its effects to the store."""
        self._queued_events -= len(batch.events)
        if batch.source:
            self._ledger.settle(batch.source, len(batch.events), batch.read_at)
        obs.QUEUE_DEPTH.set(self._queued_events)
        self._last_batch = time.monotonic()
        result = engine.process(batch.events)
        offsets = [batch.checkpoint] if batch.checkpoint is not None else []
        committed = await self._commit(
            writer,
            result.changes,
            offsets,
            state=result.state,
            watermark=result.watermark,
            outbox=result.outbox,
            runs=result.runs,
        )
        committed.add_done_callback(_latency_observer(batch.read_at, self.clock.now))
        if batch.on_commit is not None:
            committed.add_done_callback(_succeeded(batch.on_commit))
        self._report(engine, result)

    async def _commit_changes(
        self, writer: StoreWriter, changes: list[IncidentChange]
    ) -> asyncio.Future[None]:
        """Commit an operator's change with what it sets off (the desk's path to the store)."""
        committed = await self._commit(writer, changes, [])
        if self._book is not None:
            self._set_open_gauge(self._book)
        return committed

    async def _commit(
        self,
        writer: StoreWriter,
        changes: list[IncidentChange],
        offsets: list[FileOffset],
        *,
        state: list[StateRow] | None = None,
        watermark: float | None = None,
        outbox: list[Outgoing] | None = None,
        reaction: Reaction | None = None,
        runs: list[RunRequest] | None = None,
    ) -> asyncio.Future[None]:
        """Submit changes with their notifications and pages, the messages for the outbox and
        the remediation runs asked for (started once committed)."""
        if reaction is None:
            reaction = Reaction()
        kept = None
        if self._keeper is not None and changes:
            # Before notifying: a known error's workaround goes out with the first notice.
            kept = self._keeper.react(changes, self.clock.now())
            changes = [*changes, *kept.changes]
        if self._notifier is not None and changes:
            more = self._notifier.react(changes, self.clock.now())
            reaction.changes.extend(more.changes)
            reaction.history.extend(more.history)
            reaction.outbox.extend(more.outbox)
            reaction.groups.update(more.groups)
            reaction.members.update(more.members)
        admitted = self._admit([*(outbox or ()), *reaction.outbox])
        batch = CommitBatch.of(
            [*changes, *reaction.changes],
            offsets,
            state=state,
            watermark=watermark,
            outbox=admitted,
        )
        batch.history.extend(reaction.history)
        batch.groups = reaction.groups
        if kept is not None:
            kept.into(batch)
        numbered: list[RemediationRun] = []
        if runs and self._remediator is not None:
            numbered = self._remediator.number(runs)
            batch.runs = numbered
        batch.members = reaction.members
        committed = await writer.submit(batch)
        if numbered and self._remediator is not None:
            committed.add_done_callback(
                _succeeded(functools.partial(self._remediator.committed, numbered))
            )
        if admitted:
            woken = {m.channel for m in admitted}
            for channel in woken:
                sender = self._senders[channel]
                sender.added(sum(1 for m in admitted if m.channel == channel))
                committed.add_done_callback(_succeeded(sender.wake))
        return committed

    def _admit(self, outbox: list[Outgoing]) -> list[Outgoing]:
        """Keep the messages whose channel has room; count and log the rest."""
        if not outbox:
            return outbox
        kept: list[Outgoing] = []
        room = {c: self._outbox_limits[c] - s.pending for c, s in self._senders.items()}
        for message in outbox:
            channel = message.channel
            if room.get(channel, 0) > 0:
                room[channel] -= 1
                kept.append(message)
                continue
            obs.OUTBOX_DROPPED.labels(channel).inc()
            held = self._outbox_throttle.allow(channel)
            if held is not None:
                log.error(
                    "outbox_full",
                    channel=channel,
                    rule=message.rule,
                    dropped=held + 1,
                    limit=self._outbox_limits.get(channel, 0),
                    note="the channel is unknown" if channel not in self._senders else "",
                )
        return kept

    async def _request_overdue(
        self, writer: StoreWriter, request: ServiceRequest, policy: str | None, breached: bool
    ) -> None:
        """A request past its SLA raises an incident (rule `request-sla`) that notifies and
        escalates like any other, with the catalog item's policy when it names one; the
        incident resolves when the request ends."""
        book = self._book
        if book is None:
            return
        fp = f"{_REQUEST_SLA}:{request.id}"
        now = self.clock.now()
        if not breached:
            change = book.resolve(fp, time=now, actor=f"request:{request.id}",
                                  note=f"request {request.id} is {request.state}")  # fmt: skip
            if change is not None:
                await self._commit(writer, [change], [])
            return
        if book.get(fp) is not None:
            return
        opened = book.open(
            rule=_REQUEST_SLA,
            key=str(request.id),
            title=f"Request {request.id} ({request.item}) not fulfilled within its SLA",
            impact="medium",
            urgency="high",
            category="request",
            labels={"request": str(request.id), "item": request.item},
            time=now,
            actor=f"request:{request.id}",
        )
        reaction = None
        if policy is not None and self._notifier is not None:
            reaction = self._notifier.page_with(opened.incident, policy, now)
        await self._commit(writer, [opened], [], reaction=reaction)

    async def _revoke_failed(self, writer: StoreWriter, grant: Grant) -> None:
        """A revoke that failed every attempt raises a high-priority incident (rule
        `access-revoke`): the subject may still hold the role, and a person must look."""
        book = self._book
        if book is None:
            return
        opened = book.open(
            rule=_ACCESS_REVOKE,
            key=str(grant.id),
            title=f"Revoke of {grant.role} from {grant.subject} failed "
            f"{grant.revoke_failures} times; they may still hold it",
            impact="high",
            urgency="high",
            category="access",
            labels={"grant": str(grant.id), "role": grant.role, "subject": grant.subject},
            time=self.clock.now(),
            actor=f"access:{grant.id}",
        )
        await self._commit(writer, [opened], [])

    async def _rule_problem(
        self, writer: StoreWriter, key: str, title: str, fp: str, actor: str
    ) -> None:
        """A rule's `problem` action: open (or reopen) the key's problem, link the incident."""
        keeper, book = self._keeper, self._book
        if keeper is None or book is None:
            return
        incident = book.get(fp)
        try:
            changes = keeper.book.open_or_link(
                key,
                title=title or key,
                incident_ids=[incident.id] if incident is not None else [],
                time=self.clock.now(),
                actor=actor,
                service=incident.service if incident is not None else "",
                category=incident.category if incident is not None else "",
            )
        except ProblemError as exc:
            log.warning("problem_action_refused", key=key, reason=str(exc))
            return
        rows, history = problem_rows(changes)
        await writer.submit(CommitBatch(problems=rows, problem_history=history))

    async def _escalate(self, writer: StoreWriter, incident: Incident) -> None:
        """Page the incident's next level now (a remediation's on_failure: escalate)."""
        if self._notifier is None:
            return
        reaction = self._notifier.escalate(incident, "remediation failed", self.clock.now())
        await self._commit(writer, [], [], reaction=reaction)

    def _runbook_publish(self, broker: str, body: dict[str, object]) -> None:
        """A runbook's publish step: an MQTT outbox row, committed and sent like an action's."""
        message = Outgoing(f"mqtt:{broker}", "runbook", dict(body))
        writer = self._writer
        if writer is None:
            raise RuntimeError("the store is not open")
        if not self._admit([message]):  # counted and logged there; the step fails
            raise RuntimeError(f"the outbox of mqtt:{broker} is full; the message was dropped")
        sender = self._senders[message.channel]
        sender.added(1)  # room taken now, so later steps see it

        async def submit() -> None:
            committed = await writer.submit(CommitBatch(outbox=[message]))
            committed.add_done_callback(_succeeded(sender.wake))

        task = asyncio.get_running_loop().create_task(submit())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _make_keeper(self, writer: StoreWriter) -> ProblemKeeper:
        """Problems not closed, the recurrence counts and the known errors, from the store."""
        settings = self.config.incidents
        stored = await writer.call(lambda s: s.load_records("problems", PROBLEM_STATES_KEPT))
        problems = []
        for data in stored:
            try:
                problems.append(Problem.from_dict(json.loads(data)))
            except (ProblemError, ValueError) as exc:
                log.error("problem_unreadable", problem=str(exc), record=data[:200])
        next_id = await writer.call(lambda s: s.next_record_id("problems"))
        policy = RecurrencePolicy(settings.recurrence)
        documents = await writer.call(lambda s: s.load_documents())
        if RECURRENCE_DOCUMENT in documents:
            try:
                policy.restore(json.loads(documents[RECURRENCE_DOCUMENT]))
            except ValueError as exc:
                log.error("recurrence_counts_unreadable", problem=str(exc))
        entries = []
        for data in await writer.call(lambda s: s.load_known_errors()):
            try:
                entries.append(KnownError.from_dict(json.loads(data)))
            except (KnownErrorError, ValueError) as exc:
                log.error("known_error_unreadable", problem=str(exc), record=data[:200])
        configured = {entry.name for entry in settings.known_errors}
        for clash in [e for e in entries if e.name in configured]:
            log.error(
                "known_error_shadowed",
                name=clash.name,
                note="an API-made known error has the name of one in the config now; "
                "the config's is used and the API-made one is left out",
            )
        return ProblemKeeper(
            book=ProblemBook(next_id=next_id, problems=problems),
            policy=policy,
            known=KnownErrorBook(
                config=settings.known_errors,
                entries=[e for e in entries if e.name not in configured],
            ),
        )

    async def _make_notifier(self, writer: StoreWriter) -> Notifier | None:
        """Build routing, escalation and SLA from the incidents file; resume saved groups."""
        settings = self.config.incidents
        if not settings.receivers and settings.sla is None:
            return None
        dispatcher = Dispatcher(settings.route) if settings.route is not None else None
        if dispatcher is not None:
            saved = await writer.call(lambda s: s.load_groups())
            restored = dispatcher.restore(saved)
            if restored.dropped or restored.damaged:
                log.warning(
                    "notify_groups_dropped",
                    route_gone=restored.dropped,
                    damaged=restored.damaged,
                    kept=restored.groups,
                )
            for incident in self._book.open_incidents() if self._book is not None else ():
                dispatcher.observe(incident, self.clock.now())  # fresh views for what is live
        return self._notifier_with(settings, dispatcher)

    def _notifier_with(self, settings: IncidentSettings, dispatcher: Dispatcher | None) -> Notifier:
        """The notifier for these settings and this (restored) dispatcher, tracking the timers
        of the incidents open now."""
        escalator = (
            Escalator(
                policies=settings.policies, schedules=settings.schedules, users=settings.users
            )
            if settings.policies
            else None
        )
        notifier = Notifier(
            receivers=settings.receivers, dispatcher=dispatcher, escalator=escalator,
            sla=settings.sla,
        )  # fmt: skip
        if self._book is not None:
            notifier.track(self._book.open_incidents())
        return notifier

    async def _start_senders(
        self,
        mqtt: MqttService | None,
        notifying: Senders,
        writer: StoreWriter,
        internal: Mapping[str, Send],
    ) -> list[asyncio.Task[None]]:
        """Start one outbox sender per channel; say so when rows wait for a channel now gone."""
        channels: dict[str, tuple[Send, int]] = {
            channel: (send, _NOTIFY_OUTBOX_LIMIT)
            for channel, send in (*notifying.sends.items(), *internal.items())
        }
        if mqtt is not None:
            for channel, send in mqtt.channels.items():
                channels[channel] = (send, mqtt.outbox_limit(channel))
        tasks = []
        for channel, (send, limit) in channels.items():
            sender = OutboxSender(channel=channel, writer=writer, send=send)
            self._senders[channel] = sender
            self._outbox_limits[channel] = limit
            tasks.append(asyncio.create_task(sender.run(), name=f"tocsin.outbox.{channel}"))
        waiting = await writer.call(lambda s: s.count_outbox())
        for channel, count in waiting.items():
            if channel not in self._senders:
                log.warning(
                    "outbox_orphaned",
                    channel=channel,
                    messages=count,
                    note="nothing configured sends these; they stay until it is configured again",
                )
        return tasks

    def _send_failed(self, message: Outgoing, reason: str, permanent: bool) -> None:
        """Count a failed send; note it on its incidents' timelines (once per message)."""
        receiver = message.rule.removeprefix("notify:")
        obs.NOTIFICATIONS_FAILED.labels(receiver, "permanent" if permanent else "transient").inc()
        key = str(message.body.get("key", ""))
        if not permanent and key in self._failed_keys:
            return  # retried with backoff; the first failure is on the timeline already
        if len(self._failed_keys) > 10_000:
            self._failed_keys.clear()
        self._failed_keys.add(key)
        now = self.clock.now()
        note = (
            f"not delivered, given up: {reason}"
            if permanent
            else f"send failed, retrying with backoff: {reason}"
        )
        for incident_id in message.body.get("incidents", ()):
            incident = self._book.by_id(int(incident_id)) if self._book is not None else None
            state = str(incident.state) if incident is not None else ""
            self._send_failures.append(
                HistoryEntry(int(incident_id), now, state or None, state, message.rule, note,
                             "notify")
            )  # fmt: skip

    async def _tick(self, engine: Engine, writer: StoreWriter) -> None:
        """Let event time follow the wall clock: fire due timers, drop idle keys; then climb
        escalations, fire SLA marks (rules see them as events) and close old resolved ones."""
        if self._maintenance is not None:
            await self._maintenance.remind()
        quiet = time.monotonic() - self._last_batch >= self.config.correlation.tick
        if quiet and self._queue.empty():
            # Only when input has been quiet for a tick: event time follows the wall clock
            # when nothing else moves it. In a backlog the lines' own stamps move it, and a
            # wall-clock step there would make the next lines of the same second late (a
            # replay, which never ticks, would count them differently).
            result = engine.tick()
            if result.changes or result.state or result.outbox or result.runs:
                await self._commit(
                    writer,
                    result.changes,
                    [],
                    state=result.state,
                    watermark=result.watermark,
                    outbox=result.outbox,
                    runs=result.runs,
                )
            self._report(engine, result)
        book = engine.book
        now = self.clock.now()
        if self._notifier is not None:
            reaction = self._notifier.tick(now)
            if reaction.events:
                marked = engine.process(reaction.events)
                await self._commit(
                    writer,
                    marked.changes,
                    [],
                    state=marked.state,
                    watermark=marked.watermark,
                    outbox=marked.outbox,
                    reaction=reaction,
                    runs=marked.runs,
                )
                self._report(engine, marked)
            elif reaction:
                await self._commit(writer, [], [], reaction=reaction)
        if self._send_failures:
            notes, self._send_failures = self._send_failures, []
            await writer.submit(CommitBatch(history=notes))
        # Reopening compares event times, so forgetting does too (catching up old logs).
        book.forget_resolved(engine.time.watermark - book.reopen_window)
        await self._auto_close(writer, book, now)
        if self._service is not None:
            try:
                await self._service.tick(now)
            except IncidentError as exc:  # the store failed: the next tick tries again
                log.error("service_desk_tick_failed", reason=exc.message)
        self._set_key_gauges(engine)
        self._export_outbox()

    async def _auto_close(self, writer: StoreWriter, book: IncidentBook, now: float) -> None:
        """Close incidents resolved longer than lifecycle.auto_close ago: a page of them a
        minute (or a tenth of auto_close, when that is shorter)."""
        after = self.config.incidents.auto_close
        if after is None or time.monotonic() < self._next_close:
            return
        self._next_close = time.monotonic() + min(60.0, max(1.0, after / 10))
        try:
            stale = await writer.call(lambda s: s.resolved_before(now - after, 500))
        except StoreError as exc:
            log.error("auto_close_failed", reason=exc.reason)
            return
        changes = []
        for stored in stale:
            incident = book.by_id(stored.id) or stored
            if incident.state == "resolved":
                changes.append(
                    book.transition(incident, "closed", time=now, actor="tocsin:auto-close")
                )
        if changes:
            await self._commit(writer, changes, [])
            if len(stale) == 500:
                self._next_close = 0.0  # more wait: the next tick takes the next page

    def _export_outbox(self) -> None:
        """Turn the senders' counters into metrics (once a tick: they change per message)."""
        for channel, sender in self._senders.items():
            obs.OUTBOX_PENDING.labels(channel).set(sender.pending)
            sent, failures = sender.sent, sender.failures
            done = self._outbox_done.get(channel, (0, 0))
            if sent > done[0]:
                obs.OUTBOX_SENT.labels(channel).inc(sent - done[0])
            if failures > done[1]:
                obs.OUTBOX_FAILURES.labels(channel).inc(failures - done[1])
            self._outbox_done[channel] = (sent, failures)

    def _report(self, engine: Engine, result: BatchResult) -> None:
        self._reporter.report(result)
        obs.WATERMARK.set(max(result.watermark, 0.0))
        if result.changes:
            self._set_open_gauge(engine.book)

    @staticmethod
    def _set_key_gauges(engine: Engine) -> None:
        for rule, keys in engine.live_keys().items():
            obs.CORRELATION_KEYS.labels(rule).set(keys)

    @staticmethod
    def _set_open_gauge(book: IncidentBook) -> None:
        counts = book.open_by_priority()
        for priority in PRIORITIES:
            obs.INCIDENTS_OPEN.labels(priority).set(counts.get(priority, 0))

    def _health(self) -> dict[str, object]:
        health: dict[str, object] = {
            "status": "ok" if self.ready.is_set() else "starting",
            "queued_events": self._queued_events,
        }
        if self._mqtt is not None:
            down = [n for n, link in self._mqtt.links.items() if not link.is_connected]
            if down:
                health["mqtt_disconnected"] = down
                if health["status"] == "ok":
                    health["status"] = "degraded"
        failing_since = self._writer.failing_since if self._writer is not None else None
        if failing_since is not None:
            health["status"] = "degraded"
            health["store_failing_for_seconds"] = round(time.monotonic() - failing_since, 1)
        return health

    # -- the core without its I/O edge: what `tocsin test` drives on a virtual clock --------

    @contextlib.asynccontextmanager
    async def open_core(self, writer: StoreWriter) -> AsyncIterator[Core]:
        """Build the pipeline as `run` does on a fresh store, minus the sources, the API and
        the outbound senders (their rows stay in the outbox); remediation only dry-runs."""
        config = self.config
        if not config.runbooks.remediation.dry_run:
            raise StartupError("the core runs remediation only as a dry run (remediation.dry_run)")
        ruleset = load_ruleset(
            config.rule_paths, brokers=list(config.mqtt_brokers), service=config.runbooks
        )
        self._writer = writer
        settings = config.incidents
        parts = await self._assemble(writer, ruleset)
        remediator, service, engine = parts.remediator, parts.service, parts.engine
        held = {r.channel: _NOTIFY_OUTBOX_LIMIT for r in settings.receivers.values()}
        held.update({MQTT_CHANNEL + n: b.outbox_limit for n, b in config.mqtt_brokers.items()})
        for channel, limit in held.items():  # counted like live ones, never sent
            self._senders[channel] = OutboxSender(channel=channel, writer=writer, send=_unsent)
            self._outbox_limits[channel] = limit
        internal = OutboxSender(channel=SERVICE_CHANNEL, writer=writer, send=service.deliver)
        self._senders[SERVICE_CHANNEL] = internal
        self._outbox_limits[SERVICE_CHANNEL] = _NOTIFY_OUTBOX_LIMIT
        tasks = [
            asyncio.create_task(internal.run(), name=f"tocsin.outbox.{SERVICE_CHANNEL}"),
            asyncio.create_task(remediator.run(), name="tocsin.remediation"),
        ]
        try:
            await service.resume()
            yield Core(
                feed=functools.partial(self._feed, engine, writer),
                tick=functools.partial(self._quiet_tick, engine, writer),
                incidents=self._incidents_for(parts, writer),
                silences=Silences(
                    book=parts.silences, muter=parts.muter, writer=writer, clock=self.clock.now
                ),
                requests=RequestDeskImpl(service),
                access=AccessDeskImpl(service),
                problems=Problems(keeper=parts.keeper, writer=writer, clock=self.clock.now),
            )
        finally:
            await remediator.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _feed(self, engine: Engine, writer: StoreWriter, events: list[Event]) -> None:
        """Take one batch read now, as if a source had queued it."""
        self._queued_events += len(events)
        await self._step(engine, writer, EventBatch(events, None, self.clock.now()))

    async def _quiet_tick(self, engine: Engine, writer: StoreWriter) -> None:
        """Tick at the clock's time as if input had been quiet a while and a close sweep were
        due: the core's time is the clock's alone (the live pacing reads the wall)."""
        self._last_batch = -math.inf
        self._next_close = 0.0
        await self._tick(engine, writer)


@dataclass(frozen=True, slots=True)
class _Parts:
    """The pipeline's core as `Daemon._assemble` builds it."""

    book: IncidentBook
    muter: Muter
    silences: SilenceBook
    keeper: ProblemKeeper
    remediator: Remediator
    service: ServiceDesk
    engine: Engine


@dataclass(frozen=True, slots=True)
class Core:
    """The daemon's pipeline without its I/O edge (Daemon.open_core), driven by hand."""

    feed: Callable[[list[Event]], Awaitable[None]]  # one batch through engine and store
    tick: Callable[[], Awaitable[None]]  # timers, escalation, SLA, desks: at the clock's time
    incidents: Incidents  # the desks the API uses
    silences: Silences
    requests: RequestDeskImpl
    access: AccessDeskImpl
    problems: Problems


def _new_brokers(config: Config) -> list[str]:
    """What in the new incidents or runbooks file would publish to an MQTT broker that is not
    running (brokers are added with a restart); its messages would have no sender."""
    running = set(config.mqtt_brokers)
    problems = [
        f"receiver {name} publishes to MQTT broker {channel.removeprefix(MQTT_CHANNEL)!r}, "
        "which is not running; brokers are added with a restart"
        for name, receiver in config.incidents.receivers.items()
        if (channel := receiver.channel).startswith(MQTT_CHANNEL)
        and channel.removeprefix(MQTT_CHANNEL) not in running
    ]
    for runbook in config.runbooks.runbooks.values():
        for step in runbook.steps:
            if isinstance(step, PublishStep) and step.broker not in running:
                problems.append(
                    f"runbook {runbook.name} publishes to MQTT broker {step.broker!r}, which is "
                    "not running; brokers are added with a restart"
                )
    return problems


async def _unsent(messages: Sequence[Outgoing]) -> int:
    """The send of a channel the core holds: it never runs, so its rows stay in the outbox."""
    raise RuntimeError(f"the daemon's core sends nothing ({len(messages)} messages)")


def _succeeded(then: Callable[[], None]) -> Callable[[asyncio.Future[None]], None]:
    """A done-callback that calls `then` if the future succeeded."""

    def call(future: asyncio.Future[None]) -> None:
        if not future.cancelled() and future.exception() is None:
            then()

    return call


def _latency_observer(
    read_at: float, now: Callable[[], float]
) -> Callable[[asyncio.Future[None]], None]:
    def observe(future: asyncio.Future[None]) -> None:
        if not future.cancelled() and future.exception() is None:
            obs.EVENT_LATENCY.observe(max(0.0, now() - read_at))

    return observe
