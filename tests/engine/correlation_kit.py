"""Drive an engine on a virtual clock: events at offsets from T0 in, outputs as tuples out."""

from __future__ import annotations

from typing import Any

from testkit import make_event
from tocsin.engine.clock import ManualClock
from tocsin.engine.pipeline import BatchResult, Engine

T0 = 1_795_564_800.0

Out = tuple[float, str, str, str, str, int]


def outputs(result: BatchResult) -> list[Out]:
    """(offset, rule, action, op, key, count) for every output of a batch."""
    return [
        (round(o.time - T0, 6), o.rule, o.action, o.op, o.key, o.count)
        for o in result.outputs or []
    ]


class Run:
    """One engine and its clock, with the wall clock following the events."""

    def __init__(self, engine: Engine, clock: ManualClock) -> None:
        self.engine = engine
        self.clock = clock
        self.results: list[BatchResult] = []

    def at(self, offset: float, message: str, **kw: Any) -> list[Out]:
        """Process one event stamped T0+offset, the wall clock at the newest time so far."""
        return self.batch([(offset, message, kw)])

    def batch(self, items: list[tuple[float, str, dict[str, Any]]]) -> list[Out]:
        """Process several events in one batch."""
        events = [make_event(m, time=T0 + offset, **kw) for offset, m, kw in items]
        self.clock.advance_to(max(e.time for e in events))
        result = self.engine.process(events)
        self.results.append(result)
        return outputs(result)

    def idle(self, offset: float) -> list[Out]:
        """Let the wall clock reach T0+offset with no input."""
        self.clock.advance_to(T0 + offset)
        result = self.engine.tick()
        self.results.append(result)
        return outputs(result)
