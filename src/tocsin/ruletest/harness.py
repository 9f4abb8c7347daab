"""Run a test file's cases on the daemon's own core (Daemon.open_core): each on a fresh
store in a temporary folder, on a virtual clock that ticks like the daemon's, with no
sources, no API listener and no outbound senders."""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any, TypeVar

from tocsin.actions.registry import action_kinds
from tocsin.api.incidents import ACTIONS, IncidentError
from tocsin.api.silences import silence_json
from tocsin.app import Core, Daemon
from tocsin.config import Config, load_config, load_muting
from tocsin.engine.clock import ManualClock
from tocsin.mute.silences import SilenceError
from tocsin.notify.notice import Notice
from tocsin.notify.settings import load_incident_settings
from tocsin.records.views import incident_json
from tocsin.rules.loader import load_rules
from tocsin.rules.schema import format_duration
from tocsin.ruletest.compare import Verdict, describe, judge, mismatches, show
from tocsin.ruletest.records import Heard, read_records
from tocsin.ruletest.spec import (
    AskAccess,
    Call,
    Case,
    Check,
    DecideAccess,
    Expectation,
    ExpireSilence,
    FileSpec,
    IncidentRef,
    Input,
    LogLines,
    MakeSilence,
    Message,
    MoveIncident,
    MoveRequest,
    SubmitRequest,
    Trap,
)
from tocsin.ruletest.stimuli import LogReader, MqttIntake, TrapNames, TrapSource
from tocsin.runbooks.settings import load_runbook_file
from tocsin.store.base import Store
from tocsin.store.sqlite import SqliteStore
from tocsin.store.writer import StoreWriter
from tocsin.trapd import load_mibs
from tocsin.yamlsrc import Mark, SourceError

__all__ = ["CaseResult", "SetupError", "World", "prepare", "run_case"]

T = TypeVar("T")

_CALM = 10  # loop turns in a row with nothing new before a case counts as quiet
_MAX_TICKS = 500_000  # ticks one case may take (a day at 1s is 86,400)
_ALL = 1_000_000


class SetupError(Exception):
    """The test file cannot run: its rules (or inputs) have problems, each at file:line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(slots=True)
class CaseResult:
    """How one case went: failures (none: it passed), and notes that help read them."""

    name: str
    mark: Mark
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every expectation held."""
        return not self.failures


@dataclass(frozen=True, slots=True)
class World:
    """What the cases of a file share: the daemon's settings and how inputs become events."""

    spec: FileSpec
    config: Config  # remediation forced to dry-run; state_dir set per case
    tick: float
    traps: TrapSource | None
    mqtt: MqttIntake | None

    def config_for(self, folder: Path, notices: dict[str, Notice]) -> Config:
        """The config of one case: its own store, and receivers that remember their notices."""
        incidents = self.config.incidents
        heard = {name: Heard(r, notices) for name, r in incidents.receivers.items()}
        return dataclasses.replace(
            self.config,
            state_dir=folder,
            store_path=folder / "tocsin.db",
            incidents=dataclasses.replace(incidents, receivers=heard),
        )

    def parser_for(self, file: str) -> tuple[str, int | None, tzinfo]:
        """How the daemon would parse `file`: its sources.files entry, else the test's."""
        spec = self.spec
        for entry in self.config.files:
            if any(fnmatch.fnmatchcase(file, pattern) for pattern in entry.patterns):
                return entry.parser, entry.year, entry.timezone or spec.timezone
        return spec.parser, spec.year, spec.timezone


def prepare(spec: FileSpec, scratch: Path) -> World:
    """Load what the file names and check its inputs against it; SourceError or SetupError
    (every rule problem) when it cannot run. `scratch` keeps compiled MIBs."""
    config = _config(spec, scratch)
    service = config.runbooks
    ruleset = load_rules(
        list(config.rule_paths),
        kinds=action_kinds(
            brokers=list(config.mqtt_brokers),
            runbooks=service.runbooks,
            catalog=service.catalog,
            access=service.access,
        ),
    )
    if ruleset.errors:
        raise SetupError([str(error) for error in ruleset.errors])
    inputs = [item.what for case in spec.cases for item in case.inputs]
    traps = None
    trap_inputs = [what for what in inputs if isinstance(what, Trap)]
    if trap_inputs:
        folders = []
        if config.snmp is not None and config.snmp.mib_dirs:
            load_mibs(config.snmp, scratch)  # compiles them as the trap receiver does
            folders.append(scratch / "mibs")
        names = TrapNames(folders)
        for trap in trap_inputs:
            names.varbinds(trap)  # SourceError at the name that is wrong
        traps = TrapSource(names, config.snmp)
    mqtt = None
    messages = [what for what in inputs if isinstance(what, Message)]
    if messages:
        if not config.mqtt_subscriptions:
            raise SourceError(
                messages[0].mark, "mqtt inputs need a config whose sources.mqtt subscribes"
            )
        mqtt = MqttIntake(config.mqtt_subscriptions)
        for message in messages:
            mqtt.broker(message)
    tick = spec.tick if spec.tick is not None else config.correlation.tick
    for case in spec.cases:
        end = max([i.at for i in case.inputs] + [e.at for e in case.expects])
        if end / tick > _MAX_TICKS:
            raise SourceError(
                case.mark,
                f"case '{case.name}' would take {end / tick:,.0f} ticks of {format_duration(tick)}"
                f" (at most {_MAX_TICKS:,}): set a longer 'tick' in the test file",
            )
    return World(spec, config, tick, traps, mqtt)


def _config(spec: FileSpec, scratch: Path) -> Config:
    """The config as the daemon would load it, with the file's replacements; dry runs only."""
    if spec.config is not None:
        base = load_config(spec.config)
    else:
        base = Config(
            path=spec.path, state_dir=scratch, rule_paths=(), store_path=scratch / "tocsin.db"
        )
    maintenance, inhibit = base.maintenance, base.inhibit
    if spec.muting is not None:
        windows, rules = load_muting(spec.muting)
        maintenance, inhibit = tuple(windows), tuple(rules)
    incidents = base.incidents
    if spec.incidents is not None:
        incidents = load_incident_settings(spec.incidents, brokers=base.mqtt_brokers)
    runbooks = base.runbooks
    if spec.runbooks is not None:
        runbooks = load_runbook_file(
            spec.runbooks,
            brokers=base.mqtt_brokers,
            policies=list(incidents.policies),
            users=list(incidents.users),
        )
    return dataclasses.replace(
        base,
        rule_paths=spec.rules if spec.rules is not None else base.rule_paths,
        muting_paths=spec.muting if spec.muting is not None else base.muting_paths,
        maintenance=maintenance,
        inhibit=inhibit,
        incidents=incidents,
        incidents_path=spec.incidents or base.incidents_path,
        runbooks=dataclasses.replace(
            runbooks, remediation=dataclasses.replace(runbooks.remediation, dry_run=True)
        ),
        runbooks_path=spec.runbooks or base.runbooks_path,
    )


class _Writer(StoreWriter):
    """The daemon's store writer, keeping its reads in flight in view: a case is quiet only
    when no read is out and no batch waits (see `_settle`)."""

    def __init__(self, *, store: Store) -> None:
        super().__init__(store=store)
        self.reads: set[asyncio.Future[Any]] = set()
        self.started = 0

    async def call(self, fn: Callable[[Store], T]) -> T:
        """Read (or write) in the store's thread, as the writer does, counted."""
        self.started += 1
        read = asyncio.ensure_future(super().call(fn))
        self.reads.add(read)
        try:
            return await read
        finally:
            self.reads.discard(read)


async def _settle(writer: _Writer) -> None:
    """Return once everything the last step set off is done: no store work out, and the loop
    has turned `_CALM` times with nothing new (every task waits for something that only a
    later input, tick or time can bring)."""
    calm = 0
    while calm < _CALM:
        if writer.reads:
            await asyncio.wait(set(writer.reads))
            calm = 0
            continue
        if writer.pending:
            await writer.flush()
            calm = 0
            continue
        seen = (writer.started, writer.committed)
        await asyncio.sleep(0)
        calm = calm + 1 if (writer.started, writer.committed) == seen else 0


async def run_case(world: World, case: Case) -> CaseResult:
    """Run one case from a fresh store; the result lists what did not hold."""
    notices: dict[str, Notice] = {}
    clock = ManualClock(case.start)
    with tempfile.TemporaryDirectory(prefix="tocsin-test-") as folder:
        config = world.config_for(Path(folder), notices)
        play = _Play(world, case, clock, notices)
        writer = _Writer(store=SqliteStore(path=config.store_path))
        async with writer, Daemon(config, clock=clock).open_core(writer) as core:
            await play.run(core, writer)
    return play.result


class _UnresolvedError(Exception):
    """A call names a record the case does not have."""


class _Play:
    """One case on its core: inputs and ticks in time order, expectations checked."""

    def __init__(
        self, world: World, case: Case, clock: ManualClock, notices: dict[str, Notice]
    ) -> None:
        self.world = world
        self.case = case
        self.clock = clock
        self.notices = notices
        self.result = CaseResult(case.name, case.mark)
        self.logs = LogReader(choose=world.parser_for, now=clock.now)
        self.silences: list[str] = []  # ids of the silences the case made, in order

    async def run(self, core: Core, writer: _Writer) -> None:
        """Play the case: at each moment its inputs, then the tick due (the daemon ticks
        every `tick` whether or not input came), then its expectations."""
        await _settle(writer)
        tick = self.world.tick
        inputs = sorted(self.case.inputs, key=lambda i: i.at)
        expects = sorted(self.case.expects, key=lambda e: e.at)
        moments = sorted({i.at for i in inputs} | {e.at for e in expects})
        step = 1
        for moment in moments:
            while step * tick < moment:
                self.clock.advance_to(self.case.start + step * tick)
                await core.tick()
                await _settle(writer)
                step += 1
            self.clock.advance_to(self.case.start + moment)
            for item in (i for i in inputs if i.at == moment):
                await self._input(core, writer, item)
                await _settle(writer)
            if step * tick == moment:
                await core.tick()
                await _settle(writer)
                step += 1
            for expectation in (e for e in expects if e.at == moment):
                await self._check(core, writer, expectation)

    async def _input(self, core: Core, writer: _Writer, item: Input) -> None:
        what = item.what
        now = self.clock.now()
        if isinstance(what, LogLines):
            await core.feed(self.logs.events(what))
            return
        if isinstance(what, Trap | Message):
            # prepare made a source for every kind of input the file has
            if isinstance(what, Trap):
                assert self.world.traps is not None
                made = self.world.traps.event(what, now)
            else:
                assert self.world.mqtt is not None
                made = self.world.mqtt.event(what, now)
            if isinstance(made, str):
                self.result.notes.append(f"{item.mark}: at {_at(item.at)}: no event: {made}")
                return
            await core.feed([made])
            return
        await self._call(core, writer, item, what)

    async def _call(self, core: Core, writer: _Writer, item: Input, call: Call) -> None:
        """Make an API call through the desk the API uses; judge its answer or refusal."""
        where = f"{item.mark}: at {_at(item.at)}: {_name(call)}"
        try:
            answer = await self._answer(core, writer, call)
        except _UnresolvedError as exc:
            self.result.failures.append(f"{where}: {exc}")
            return
        except IncidentError as exc:
            refusal: tuple[int, str] | None = (exc.status, exc.message)
        except SilenceError as exc:
            refusal = (400, str(exc))
        else:
            refusal = None
        error = item.error
        if refusal is None:
            if error is not None:
                self.result.failures.append(
                    f"{where}: expected a refusal (at {error.mark}), but it was done: "
                    + show(answer)
                )
            elif item.response is not None:
                differ = mismatches(item.response.value, answer)
                if differ:
                    self.result.failures.append(
                        f"{where}: the answer is not as expected (at {item.response.mark}):\n"
                        + "\n".join(f"  {m}" for m in differ)
                        + f"\n  answer: {show(answer)}"
                    )
            return
        status, message = refusal
        if error is None:
            self.result.failures.append(f"{where}: refused with {status}: {message}")
            return
        wrong: list[str] = []
        if error.status is not None and error.status != status:
            wrong.append(f"status: expected {error.status}, got {status}")
        if error.message is not None:
            wrong.extend(str(m) for m in mismatches(error.message.value, message, "message"))
        if wrong:
            self.result.failures.append(
                f"{where}: refused, but not as expected (at {error.mark}):\n"
                + "\n".join(f"  {line}" for line in wrong)
                + f"\n  refusal: {status} {show(message)}"
            )

    async def _answer(self, core: Core, writer: _Writer, call: Call) -> Any:
        """Make the call; return the view the API would answer with."""
        now = self.clock.now()
        start = self.case.start
        if isinstance(call, MakeSilence):
            starts_at = now if call.starts is None else start + call.starts
            ends_at = (
                start + call.ends if call.ends is not None else starts_at + (call.duration or 0.0)
            )
            silence = await core.silences.add(
                matchers=call.matchers, starts_at=starts_at, ends_at=ends_at,
                created_by=call.by, comment=call.comment,
            )  # fmt: skip
            self.silences.append(silence.id)
            return silence_json(silence, now)
        if isinstance(call, ExpireSilence):
            if call.number > len(self.silences):
                raise _UnresolvedError(
                    f"no silence {call.number}: the case made {len(self.silences)} so far"
                )
            return silence_json(await core.silences.expire(self.silences[call.number - 1]), now)
        if isinstance(call, MoveIncident):
            incident_id = await self._incident(writer, call.incident)
            moved = await core.incidents.transition(
                incident_id, ACTIONS[call.action], actor=call.by, note=call.note
            )
            return incident_json(moved)
        if isinstance(call, SubmitRequest):
            return await core.requests.submit(item=call.item, data=call.data, actor=call.by)
        if isinstance(call, MoveRequest):
            desk = core.requests
            if call.step in ("approve", "reject"):
                decide = desk.approve if call.step == "approve" else desk.reject
                return await decide(call.request, actor=call.by, role=call.role, note=call.note)
            if call.step == "close":
                return await desk.close(call.request, actor=call.by, note=call.note)
            return await desk.by_hand(call.request, call.step, actor=call.by, note=call.note)
        if isinstance(call, AskAccess):
            if call.verb == "grant":
                return await core.access.request(
                    role=call.role, subject=call.subject, duration=call.duration, actor=call.by
                )
            return await core.access.revoke(
                role=call.role, subject=call.subject, actor=call.by, why=call.why
            )
        assert isinstance(call, DecideAccess)
        if call.approve:
            return await core.access.approve(call.grant, actor=call.by, role=call.role)
        return await core.access.reject(call.grant, actor=call.by, role=call.role, why=call.why)

    async def _incident(self, writer: _Writer, ref: IncidentRef) -> int:
        """The id of the incident a call names: the newest of its rule (and key)."""
        if ref.id is not None:
            return ref.id
        found = [
            incident
            for incident in await writer.call(lambda s: s.list_incidents(limit=_ALL))
            if incident.rule == ref.rule and (ref.key is None or incident.key == ref.key)
        ]
        keys = sorted({incident.key for incident in found})
        if not found:
            which = f" key {show(ref.key)}" if ref.key is not None else ""
            raise _UnresolvedError(f"rule {ref.rule} has no incident{which}")
        if len(keys) > 1:
            raise _UnresolvedError(
                f"rule {ref.rule} has incidents for keys {show(keys)}: give 'key' or the id"
            )
        return found[0].id  # newest first

    async def _check(self, core: Core, writer: _Writer, expectation: Expectation) -> None:
        for check in expectation.checks:
            records = await read_records(check.kind, core, writer, self.notices)
            verdict = judge([p.value for p in check.records], records, ordered=check.ordered)
            if not verdict.ok:
                self.result.failures.append(
                    f"{check.mark}: at {_at(expectation.at)}: {check.kind} are not as expected"
                    + ("" if not check.ordered else " (in order)")
                    + "\n"
                    + "\n".join(_explain(check, records, verdict))
                )


def _explain(check: Check, records: Sequence[dict[str, Any]], verdict: Verdict) -> list[str]:
    """The diff: each expectation not met, with the record closest to it and how that differs,
    then the records nothing expected (those not shown as closest already)."""
    kind = check.kind
    lines = []
    shown = set()
    for pattern, record, wrong in verdict.wrong:
        expected = check.records[pattern]
        lines.append(f"  expected at {expected.mark}: {show(expected.value)}")
        lines.append(f"    got {describe(kind, records[record])}")
        lines.extend(f"      {m}" for m in wrong)
        shown.add(record)
    for pattern, closest in verdict.missing:
        expected = check.records[pattern]
        lines.append(f"  expected at {expected.mark}, not found: {show(expected.value)}")
        if closest is not None:
            record, wrong = closest
            lines.append(f"    closest: {describe(kind, records[record])}")
            lines.extend(f"      {m}" for m in wrong)
            shown.add(record)
    lines.extend(
        f"  not expected: {describe(kind, records[r])}"
        for r in verdict.unexpected
        if r not in shown
    )
    if not records:
        lines.append(f"  (there are no {kind})")
    return lines


def _at(offset: float) -> str:
    return format_duration(offset)


def _name(call: Call) -> str:
    """What a call is called in the test file."""
    if isinstance(call, MakeSilence):
        return "silence"
    if isinstance(call, ExpireSilence):
        return "expire-silence"
    if isinstance(call, MoveIncident):
        return f"{call.action} {call.incident}"
    if isinstance(call, SubmitRequest):
        return f"request {call.item}"
    if isinstance(call, MoveRequest):
        return f"{call.step}-request {call.request}"
    if isinstance(call, AskAccess):
        verb = "access" if call.verb == "grant" else "revoke-access"
        return f"{verb} {call.role} for {call.subject}"
    return f"{'approve' if call.approve else 'reject'}-access {call.grant}"
