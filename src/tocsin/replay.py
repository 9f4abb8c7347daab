"""`tocsin replay`: run files through the rules on their own timestamps, with a throwaway store."""

from __future__ import annotations

import datetime
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from pathlib import Path
from typing import TextIO

from tocsin.config import CorrelationConfig
from tocsin.engine.clock import SystemClock
from tocsin.engine.muting import Muter
from tocsin.engine.pipeline import Engine
from tocsin.model import Event, IncidentChange
from tocsin.parsers import make_parser
from tocsin.records.incidents import REOPEN_WINDOW, IncidentBook
from tocsin.records.priority import PriorityMatrix
from tocsin.rules.loader import RuleSet
from tocsin.rules.types import ActionOutput
from tocsin.store.base import CommitBatch
from tocsin.store.sqlite import SqliteStore

__all__ = ["ReplaySummary", "replay"]

_BATCH = 4096
_COMMIT_CHANGES = 50_000  # a throwaway store: commit in large groups, like the daemon under load
_COLUMNS = ("time", "rule", "action", "op", "count", "key", "title")


@dataclass(slots=True)
class ReplaySummary:
    """What a replay did, for the stderr summary."""

    lines: int = 0
    events: int = 0
    parse_errors: int = 0
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)  # (rule, stage)
    first_failures: list[str] = field(default_factory=list)
    outputs: int = 0
    elapsed: float = 0.0
    matches: Counter[str] = field(default_factory=Counter)
    ops: Counter[str] = field(default_factory=Counter)
    late: int = 0
    future: int = 0
    evicted: Counter[str] = field(default_factory=Counter)
    timers_pending: int = 0

    def render(self) -> str:
        """Return the human summary."""
        rate = self.lines / self.elapsed if self.elapsed > 0 else 0.0
        lines = [
            f"lines: {self.lines}  events: {self.events}  parse errors: {self.parse_errors}",
            f"actions: {self.outputs}  "
            + "  ".join(f"{op}: {n}" for op, n in sorted(self.ops.items())),
            f"elapsed: {self.elapsed:.3f}s  lines/s: {rate:,.0f}",
            "matches per rule:",
        ]
        lines.extend(f"  {rule}: {n}" for rule, n in self.matches.most_common())
        if self.late or self.future:
            lines.append(
                f"events processed as now: {self.late} later than the lateness, "
                f"{self.future} stamped ahead of the clock"
            )
        if self.evicted:
            lines.append("keys evicted at max_keys:")
            lines.extend(f"  {rule}: {n}" for rule, n in self.evicted.most_common())
        if self.timers_pending:
            lines.append(
                f"timers still pending after the last event: {self.timers_pending} "
                "(live, they fire once event time passes them)"
            )
        if self.failures:
            lines.append("failures (rule raised on the data, counted as not matching/not done):")
            lines.extend(f"  {r} [{stage}]: {n}" for (r, stage), n in self.failures.most_common())
            lines.extend(f"  e.g. {text}" for text in self.first_failures)
        return "\n".join(lines)


def _read_lines(path: Path) -> Iterator[list[str]]:
    """Yield a file's lines in batches, decoded with replacement so bad bytes lose nothing."""
    with path.open("rb") as handle:
        tail = b""
        while True:
            chunk = handle.read(1 << 20)
            if not chunk:
                if tail:
                    yield [tail.decode("utf-8", "replace").rstrip("\r")]
                return
            data = tail + chunk
            end = data.rfind(b"\n") + 1
            tail = data[end:]
            if end:
                # One decode per chunk, not per line; newlines never occur inside a UTF-8 sequence.
                text = data[:end].decode("utf-8", "replace")
                yield [line.removesuffix("\r") for line in text.split("\n")[:-1]]


def _iso(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, tz=datetime.UTC).isoformat()


class _Printer:
    """Writes outputs as table rows or JSON lines; timestamps repeat, so their text is cached."""

    def __init__(self, out: TextIO, fmt: str) -> None:
        self._out = out
        self._fmt = fmt
        self._iso_of: dict[float, str] = {}
        if fmt == "table":
            out.write("  ".join(c.upper() for c in _COLUMNS) + "\n")

    def _iso(self, when: float) -> str:
        text = self._iso_of.get(when)
        if text is None:
            if len(self._iso_of) > 4096:
                self._iso_of.clear()
            text = self._iso_of[when] = _iso(when)
        return text

    def write(self, outputs: Sequence[ActionOutput]) -> None:
        if self._fmt == "jsonl":
            # One f-string per row with the C string encoder: a dict per row costs 3x more.
            q = encode_basestring
            self._out.writelines(
                f'{{"time": "{self._iso(o.time)}", "rule": {q(o.rule)}, "action": {q(o.action)}, '
                f'"op": {q(o.op)}, "key": {q(o.key)}, "fingerprint": {q(o.fingerprint)}, '
                f'"title": {q(o.title)}, "count": {o.count:d}}}\n'
                for o in outputs
            )
            return
        self._out.writelines(
            f"{self._iso(o.time)}  {o.rule}  {o.action}  {o.op}  {o.count}  {o.key}  {o.title}\n"
            for o in outputs
        )


def replay(
    files: Sequence[Path],
    *,
    ruleset: RuleSet,
    priorities: PriorityMatrix,
    correlation: CorrelationConfig | None = None,
    muter: Muter | None = None,
    reopen_window: float = REOPEN_WINDOW,
    parser: str = "auto",
    year: int | None = None,
    tz: datetime.tzinfo | None = None,
    fmt: str = "table",
    out: TextIO,
) -> ReplaySummary:
    """Run each file in order through the rules; windows and timers follow the events' times.

    The wall clock only judges stamps too far in the future, as it does live. Maintenance
    windows and inhibition (from `muter`) apply on event time as they do live; silences are
    the running daemon's, so a replay has none.
    """
    summary = ReplaySummary()
    correlation = correlation or CorrelationConfig()
    book = IncidentBook(priorities=priorities, reopen_window=reopen_window)
    engine = Engine(
        rules=ruleset.rules,
        lists=ruleset.lists,
        book=book,
        clock=SystemClock(),
        record_outputs=True,
        lateness=correlation.lateness,
        skew=correlation.clock_skew,
        max_keys=correlation.max_keys,
        muter=muter,
    )
    printer = _Printer(out, fmt)
    store = SqliteStore(path=":memory:")
    store.open()
    started = time.perf_counter()
    pending: list[IncidentChange] = []  # single-threaded: snapshots can wait for the commit
    try:
        for path in files:
            # Without --year, BSD stamps get the year they most likely have when read today.
            parse = make_parser(parser, origin=str(path), year=year, tz=tz, now=time.time)
            for lines in _read_lines(path):
                read_at = time.time()
                for start in range(0, len(lines), _BATCH):
                    events: list[Event] = [
                        parse(line, read_at) for line in lines[start : start + _BATCH]
                    ]
                    result = engine.process(events)
                    pending.extend(result.changes)
                    if len(pending) >= _COMMIT_CHANGES:
                        store.commit(CommitBatch.of(pending, []))
                        pending.clear()
                    summary.lines += len(events)
                    summary.events += len(events)
                    summary.matches.update(result.matches)
                    summary.late += result.late
                    summary.future += result.future
                    summary.evicted.update(result.evicted)
                    for failure in result.failures:
                        summary.failures[failure.rule, failure.stage] += 1
                        if len(summary.first_failures) < 5:
                            summary.first_failures.append(
                                f"{failure.rule} [{failure.stage}]: {failure.error}"
                            )
                    outputs = result.outputs or []
                    summary.outputs += len(outputs)
                    summary.ops.update(o.op for o in outputs)
                    printer.write(outputs)
            summary.parse_errors += parse.errors
        store.commit(CommitBatch.of(pending, []))
        summary.timers_pending = engine.pending_timers()
    finally:
        store.close()
    summary.elapsed = time.perf_counter() - started
    return summary
