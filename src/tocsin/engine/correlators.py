"""Per-rule, per-key correlation state machines; pure, driven by the engine on event time.

Each correlator keeps its keys in a dict in least-recently-used order (a touched key moves to
the end), so the oldest idle key is evicted first when a rule reaches its key limit, and
idle keys are swept from the front. Timers live in the engine's one heap; a correlator only
checks, when one fires, that its key still wants it. A key's state dumps to a JSON-able list
so the store can persist it with the read offsets and the engine can rebuild it after a crash.
"""

from __future__ import annotations

import datetime
import math
from bisect import bisect_left, bisect_right, insort
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from tocsin.model import Event
from tocsin.records.incidents import STORM_KEY
from tocsin.rules.correlation import (
    AbsenceSpec,
    CorrelationSpec,
    ExpectSpec,
    FlappingSpec,
    GroupSpec,
    HysteresisSpec,
    NewValueSpec,
    SpikeSpec,
    StormSpec,
    SuppressSpec,
    ThresholdSpec,
)
from tocsin.rules.types import CompiledAction, Hit, Rule

__all__ = [
    "FLAPPING_PREFIX",
    "STATE_FORMAT",
    "Correlator",
    "Effects",
    "Flapping",
    "Storm",
    "build_correlator",
]


FLAPPING_PREFIX = "flapping: "  # how a flapping key's mute reason starts

# Bump when any dump() layout changes: saved state of another layout then starts fresh.
STATE_FORMAT = 2


class Effects(Protocol):
    """What a correlator may do: run actions, count into or resolve incidents, set timers."""

    lists: Mapping[str, list[Any]]

    def act(self, rule: Rule, actions: Sequence[CompiledAction], hit: Hit) -> None:
        """Run actions for a hit, each failure recorded and the rest still run."""

    def absorb(self, hit: Hit) -> None:
        """Count the hit into its rule's open incident for the key, running no action."""

    def resolve(self, rule: Rule, key: str, time: float) -> None:
        """Resolve the rule's open incident for the key, if any."""

    def schedule(self, due: float, correlator: Correlator, key: str) -> None:
        """Call `correlator.timer(key, due, ...)` once event time passes `due`."""

    def evicted(self, rule: Rule) -> None:
        """Count a key pushed out by the rule's key limit."""

    def note(self, rule: Rule, key: str, time: float, reason: str, note: str) -> None:
        """Set why the open incident of the rule and key is muted ("" for none), with a note."""


class Correlator:
    """Base: the key store, its bound, idle sweeping and the change log for persistence.

    Whatever changes a key's state also makes it the most recently used, so the keys changed
    since the last dump are always the newest ones: their order is cheap to save.
    """

    __slots__ = ("dirty", "max_keys", "name", "order", "rule", "states", "track")

    def __init__(self, rule: Rule, *, max_keys: int, track: bool) -> None:
        self.rule = rule
        self.name = rule.id  # its state's name in the store; guards add a suffix
        self.order = 0  # the rule's place in the rule set: timers due together fire in it
        self.max_keys = max_keys
        # An OrderedDict, not a dict: taking the oldest key from a dict walks the holes that
        # earlier removals left at its front, which made eviction cost ~100 us at 100k keys.
        self.states: OrderedDict[str, Any] = OrderedDict()
        self.track = track  # keep `dirty` for the store (the daemon); replay does not
        self.dirty: set[str] = set()

    def hit(self, hit: Hit, fx: Effects) -> None:
        """Handle one matching event."""
        raise NotImplementedError

    def timer(self, key: str, due: float, fx: Effects) -> None:
        """Handle a timer the key asked for; ignore it if the key no longer wants it."""

    def expires(self, state: Any) -> float:
        """When the key's state stops mattering and may be dropped (inf: never by itself)."""
        return math.inf

    def due(self, state: Any) -> float | None:
        """The timer the state needs, to re-arm after a restore or reload."""
        return None

    def dump(self, state: Any) -> list[Any]:
        """The state as JSON-able data."""
        raise NotImplementedError

    def load(self, data: list[Any]) -> Any:
        """The state from `dump`'s data."""
        raise NotImplementedError

    def _get(self, key: str) -> Any:
        """Return the key's state and mark it most recently used."""
        state = self.states.get(key)
        if state is not None:
            self.states.move_to_end(key)
        return state

    def _put(self, key: str, state: Any, fx: Effects) -> None:
        """Store a key's state, evicting the least recently used key at the limit."""
        states = self.states
        if key not in states and len(states) >= self.max_keys:
            oldest, _ = states.popitem(last=False)
            fx.evicted(self.rule)
            if self.track:
                self.dirty.add(oldest)
        states[key] = state
        if self.track:
            self.dirty.add(key)

    def forget(self, key: str) -> None:
        """Start the key afresh: its incident was cleared, so its next event is news."""
        self._drop(key)

    def _drop(self, key: str) -> None:
        if self.states.pop(key, None) is not None and self.track:
            self.dirty.add(key)

    def _changed(self, key: str) -> None:
        if self.track:
            self.dirty.add(key)

    def sweep(self, now: float, budget: int = 100_000) -> int:
        """Drop idle keys from the least recently used end; stop at the first live one."""
        states = self.states
        swept = 0
        while states and swept < budget:
            key = next(iter(states))
            if self.expires(states[key]) >= now:
                break
            del states[key]
            swept += 1
            if self.track:
                self.dirty.add(key)
        return swept


class Suppress(Correlator):
    """SingleWithSuppress; state: the time until which repeats are absorbed."""

    __slots__ = ("within",)

    def __init__(self, rule: Rule, spec: SuppressSpec, *, max_keys: int, track: bool) -> None:
        super().__init__(rule, max_keys=max_keys, track=track)
        self.within = spec.within

    def hit(self, hit: Hit, fx: Effects) -> None:
        """Act on the first event; absorb repeats up to `within` after it."""
        until = self._get(hit.key)
        if until is not None and hit.time <= until:
            fx.absorb(hit)
            return
        self._put(hit.key, hit.time + self.within, fx)
        fx.act(self.rule, self.rule.actions, hit)

    def expires(self, state: Any) -> float:
        """Idle once the suppression has run out."""
        return float(state)

    def dump(self, state: Any) -> list[Any]:
        """[until]."""
        return [state]

    def load(self, data: list[Any]) -> Any:
        """From [until]."""
        return float(data[0])


class Threshold(Correlator):
    """SingleWithThreshold; state: [absorb-until (0: armed), event times in the window...]."""

    __slots__ = ("count", "within")

    def __init__(self, rule: Rule, spec: ThresholdSpec, *, max_keys: int, track: bool) -> None:
        super().__init__(rule, max_keys=max_keys, track=track)
        self.count = spec.count
        self.within = spec.within

    def hit(self, hit: Hit, fx: Effects) -> None:
        """Count the event into the window; act on the count-th, then absorb until re-armed."""
        key = hit.key
        t = hit.time
        window: list[float] | None = self._get(key)
        if window is None:
            window = [0.0]
            self._put(key, window, fx)
        else:
            if window[0] and t <= window[0]:
                fx.absorb(hit)
                return
            if window[0]:  # the window that fired has passed: re-arm
                del window[:]
                window.append(0.0)
            self._changed(key)
        insort(window, t, 1)
        # Events more than `within` before the newest fall out: the window slides.
        start = bisect_left(window, window[-1] - self.within, 1)
        if start > 1:
            del window[1:start]
        if len(window) - 1 < self.count:
            return
        hit.count = len(window) - 1
        hit.since = window[1]
        window[0] = window[1] + self.within
        del window[1:]
        fx.act(self.rule, self.rule.actions, hit)

    def expires(self, state: Any) -> float:
        """Idle when neither absorbing nor holding events that could still count."""
        return float(max(state[0], state[-1] + self.within if len(state) > 1 else 0.0))

    def dump(self, state: Any) -> list[Any]:
        """[until, times...]."""
        return list(state)

    def load(self, data: list[Any]) -> Any:
        """From [until, times...]."""
        return [float(x) for x in data]


class _Raised:
    """Hysteresis state: the raise window's times, or, once raised, the times since."""

    __slots__ = ("due", "raised", "times")

    def __init__(self, times: list[float], *, raised: bool = False, due: float = 0.0) -> None:
        self.times = times
        self.raised = raised
        self.due = due


class Hysteresis(Correlator):
    """SingleWith2Thresholds: raise on N1 in T1; resolve once at most N2 arrive in T2."""

    __slots__ = ("spec",)

    def __init__(self, rule: Rule, spec: HysteresisSpec, *, max_keys: int, track: bool) -> None:
        super().__init__(rule, max_keys=max_keys, track=track)
        self.spec = spec

    def hit(self, hit: Hit, fx: Effects) -> None:
        """Count towards raising, or, once raised, into the incident and the clear window."""
        spec = self.spec
        key = hit.key
        t = hit.time
        state: _Raised | None = self._get(key)
        if state is None:
            state = _Raised([])
            self._put(key, state, fx)
        else:
            self._changed(key)
        times = state.times
        insort(times, t)
        if state.raised:
            fx.absorb(hit)
            return
        start = bisect_left(times, times[-1] - spec.within)
        del times[:start]
        if len(times) < spec.count:
            return
        hit.count = len(times)
        hit.since = times[0]
        state.raised = True
        state.times = []
        state.due = t + spec.clear_within
        fx.schedule(state.due, self, key)
        fx.act(self.rule, self.rule.actions, hit)

    def timer(self, key: str, due: float, fx: Effects) -> None:
        """Resolve if the last `clear_within` held few enough events, else check again later."""
        state: _Raised | None = self._get(key)
        if state is None or not state.raised or state.due != due:
            return
        spec = self.spec
        times = state.times
        # The window (due - clear_within, due]: an event exactly clear_within old is out.
        first = bisect_right(times, due - spec.clear_within)
        inside = bisect_right(times, due) - first
        if inside <= spec.clear_max:
            self._drop(key)
            fx.resolve(self.rule, key, due)
            return
        # Too many: look again when the oldest event that keeps it too many leaves the window.
        del times[:first]
        state.due = times[inside - spec.clear_max - 1] + spec.clear_within
        self._changed(key)
        fx.schedule(state.due, self, key)

    def expires(self, state: Any) -> float:
        """A raised key waits for its clear; an armed one is idle once its window passed."""
        if state.raised or not state.times:
            return math.inf if state.raised else 0.0
        return float(state.times[-1]) + self.spec.within

    def due(self, state: Any) -> float | None:
        """A raised key's next clear check."""
        return float(state.due) if state.raised else None

    def dump(self, state: Any) -> list[Any]:
        """[raised, due, times...]."""
        return [state.raised, state.due, *state.times]

    def load(self, data: list[Any]) -> Any:
        """From [raised, due, times...]."""
        return _Raised([float(x) for x in data[2:]], raised=bool(data[0]), due=float(data[1]))


class _Seen:
    """The last event of a key (for absence and expect), and whether its timer fired."""

    __slots__ = ("captures", "event", "fired", "last")

    def __init__(
        self, last: float, event: Event, captures: dict[str, Any], *, fired: bool = False
    ) -> None:
        self.last = last
        self.event = event
        self.captures = captures  # a timer's actions render from the event that set it
        self.fired = fired

    def hit(self, rule: Rule, key: str, time: float, fx: Effects) -> Hit:
        """Rebuild the hit of the remembered event, for actions a timer runs."""
        hit = Hit(self.event, rule, self.captures, fx.lists, time=time)
        hit.key = key
        return hit

    def dump(self) -> list[Any]:
        """[last, fired, event, captures]."""
        return [self.last, self.fired, self.event.to_dict(), self.captures]

    @classmethod
    def load(cls, data: list[Any]) -> _Seen:
        """From `dump` data."""
        return cls(float(data[0]), Event.from_dict(data[2]), dict(data[3]), fired=bool(data[1]))


class Absence(Correlator):
    """Heartbeat: act when a key has been silent for `within`; its next event resolves."""

    __slots__ = ("within",)

    def __init__(self, rule: Rule, spec: AbsenceSpec, *, max_keys: int, track: bool) -> None:
        super().__init__(rule, max_keys=max_keys, track=track)
        self.within = spec.within

    def hit(self, hit: Hit, fx: Effects) -> None:
        """Note the arrival (resolving a silence that fired); arm the timer if none is set."""
        key = hit.key
        state: _Seen | None = self._get(key)
        if state is None:
            self._put(key, _Seen(hit.time, hit.event, hit.captures), fx)
            fx.schedule(hit.time + self.within, self, key)
            return
        self._changed(key)
        if not state.fired and hit.time > state.last + self.within:
            # Read before its timer fired (within the lateness), but the silence happened.
            self.timer(key, state.last + self.within, fx)
        if state.fired:
            state.fired = False
            fx.resolve(self.rule, key, hit.time)
            fx.schedule(hit.time + self.within, self, key)
        if hit.time >= state.last:
            state.last = hit.time
            state.event = hit.event
            state.captures = hit.captures
        # Otherwise the pending timer is still the right one, or reschedules itself.

    def timer(self, key: str, due: float, fx: Effects) -> None:
        """Fire if the key is still silent; if it spoke since, wait from its last event."""
        state: _Seen | None = self._get(key)
        if state is None or state.fired:
            return
        expected = state.last + self.within
        if expected > due:
            fx.schedule(expected, self, key)
            return
        state.fired = True
        self._changed(key)
        fx.act(self.rule, self.rule.actions, state.hit(self.rule, key, expected, fx))

    def due(self, state: Any) -> float | None:
        """Silent keys wait for their next event, others for `within` after the last one."""
        return None if state.fired else float(state.last) + self.within

    def dump(self, state: Any) -> list[Any]:
        """The remembered last event."""
        return list(state.dump())

    def load(self, data: list[Any]) -> Any:
        """From `dump` data."""
        return _Seen.load(data)


class Expect(Correlator):
    """PairWithWindow: after this rule's event the follow-up must match within `within`."""

    __slots__ = ("spec",)

    def __init__(self, rule: Rule, spec: ExpectSpec, *, max_keys: int, track: bool) -> None:
        super().__init__(rule, max_keys=max_keys, track=track)
        self.spec = spec

    def hit(self, hit: Hit, fx: Effects) -> None:
        """Start waiting for the follow-up (the rule's actions run); a repeat is absorbed.

        A start at or after the deadline of the wait before it first times that one out, so
        the new run is watched too.
        """
        key = hit.key
        state: _Seen | None = self._get(key)
        if state is not None and hit.time < state.last + self.spec.within:
            fx.absorb(hit)
            return
        if state is not None:
            self.timer(key, state.last + self.spec.within, fx)
        self._put(key, _Seen(hit.time, hit.event, hit.captures), fx)
        fx.schedule(hit.time + self.spec.within, self, key)
        fx.act(self.rule, self.rule.actions, hit)

    def arrive(self, hit: Hit, fx: Effects) -> None:
        """The follow-up matched: stop waiting and run `on_arrival`."""
        state: _Seen | None = self.states.get(hit.key)
        if state is None or not state.last <= hit.time <= state.last + self.spec.within:
            return  # before the start, or after the deadline: the timeout will tell
        self._drop(hit.key)
        fx.act(self.rule, self.spec.on_arrival, hit)

    def timer(self, key: str, due: float, fx: Effects) -> None:
        """No follow-up in time: run `on_timeout` with the event that started the wait."""
        state: _Seen | None = self.states.get(key)
        if state is None or state.last + self.spec.within != due:
            return
        self._drop(key)
        fx.act(self.rule, self.spec.on_timeout, state.hit(self.rule, key, due, fx))

    def due(self, state: Any) -> float | None:
        """Each waiting key times out `within` after its start."""
        return float(state.last) + self.spec.within

    def dump(self, state: Any) -> list[Any]:
        """The start event."""
        return list(state.dump())

    def load(self, data: list[Any]) -> Any:
        """From `dump` data."""
        return _Seen.load(data)


class Group(Correlator):
    """EventGroup: act when `count` member rules matched one key within `within`."""

    __slots__ = ("spec",)

    def __init__(self, rule: Rule, spec: GroupSpec, *, max_keys: int, track: bool) -> None:
        super().__init__(rule, max_keys=max_keys, track=track)
        self.spec = spec

    def hit(self, hit: Hit, fx: Effects) -> None:
        """A group rule has no events of its own."""
        raise AssertionError("group rules are fed through member()")

    def member(self, member: str, hit: Hit, fx: Effects) -> None:
        """A member rule matched: note when; act once enough members are inside the window."""
        key = hit.key
        seen: dict[str, float] | None = self._get(key)
        if seen is None:
            seen = {}
            self._put(key, seen, fx)
        else:
            self._changed(key)
        seen[member] = max(seen.get(member, hit.time), hit.time)
        newest = max(seen.values())
        for name in [m for m, when in seen.items() if when < newest - self.spec.within]:
            del seen[name]
        if len(seen) < self.spec.count:
            return
        self._drop(key)
        own = Hit(hit.event, self.rule, hit.captures, hit.lists, time=hit.time)
        own.key = key
        own.count = len(seen)
        own.since = min(seen.values())
        fx.act(self.rule, self.rule.actions, own)

    def expires(self, state: Any) -> float:
        """Idle once its newest member match is `within` old."""
        return max(state.values()) + self.spec.within if state else 0.0

    def dump(self, state: Any) -> list[Any]:
        """[[member, time]...]."""
        return [[name, when] for name, when in state.items()]

    def load(self, data: list[Any]) -> Any:
        """From [[member, time]...]."""
        return {str(name): float(when) for name, when in data}


SPIKE_BUCKETS = 10  # buckets per `within`: window edges are within/10-granular


class _Rate:
    """Spike state: counts per time bucket, oldest first, so memory does not grow with the rate."""

    __slots__ = ("buckets", "first", "fresh", "until")

    def __init__(
        self, buckets: deque[list[int]], *, first: int, until: float = 0.0, fresh: int = 0
    ) -> None:
        self.buckets = buckets  # [bucket index (floor(time / width)), events], indexes ascending
        self.first = first  # the bucket the key was first seen in: history before it is unknown
        self.until = until  # absorbing after an act until then; 0: armed
        self.fresh = fresh  # events since the key (re-)armed: what an act adds to the incident


class Spike(Correlator):
    """ElastAlert's spike: act when a key's count in `within` jumps to `ratio` x its usual rate.

    Counts go into buckets of width within/10, so the windows are bucket-granular. The current
    window is the bucket holding t and the 9 before it: (t - within, t] with its old edge rounded
    up to a bucket edge, so it spans 0.9 to 1 x within, never counts an event `within` old, and
    may miss up to a bucket's worth at its old end. The reference window is the R buckets before
    it (R = reference / width, rounded); the usual rate is its count x 10 / R (the reference count
    scaled to `within`). Only reference buckets since the key was first seen count as history,
    so a young key is compared with the rate it really had; with no history at all, any
    `min_count` events are a spike.
    """

    __slots__ = ("min_count", "ratio", "ref_buckets", "width", "within")

    def __init__(self, rule: Rule, spec: SpikeSpec, *, max_keys: int, track: bool) -> None:
        super().__init__(rule, max_keys=max_keys, track=track)
        self.ratio = spec.ratio
        self.within = spec.within
        self.min_count = spec.min_count
        self.width = spec.within / SPIKE_BUCKETS
        self.ref_buckets = max(1, round(spec.reference / self.width))

    def hit(self, hit: Hit, fx: Effects) -> None:
        """Count the event; act on a spike, then absorb for `within` and re-arm."""
        key = hit.key
        t = hit.time
        index = math.floor(t / self.width)
        state: _Rate | None = self._get(key)
        if state is None:
            state = _Rate(deque(), first=index)
            self._put(key, state, fx)
        else:
            self._changed(key)
            if state.buckets and state.buckets[-1][0] <= index - SPIKE_BUCKETS - self.ref_buckets:
                state.first = index  # silent beyond every window: as new as a swept key
            else:
                state.first = min(state.first, index)
        self._count(state.buckets, index)
        if state.until:
            if t <= state.until:
                fx.absorb(hit)
                return
            state.until = 0.0  # the spike's `within` has passed: re-arm
            state.fresh = 0
        state.fresh += 1
        current = reference = 0
        since = index
        edge = index - SPIKE_BUCKETS  # the newest reference bucket
        for at, count in reversed(state.buckets):
            if at > index:  # newer than a late event: not in its windows
                continue
            if at > edge:
                current += count
                since = at
            elif at > edge - self.ref_buckets:
                reference += count
            else:
                break
        # current >= ratio x reference x 10 / R, without dividing; R counts only known history.
        known = max(0, min(self.ref_buckets, edge - state.first + 1))
        if current < self.min_count or current * known < self.ratio * reference * SPIKE_BUCKETS:
            return
        hit.count = min(state.fresh, current)  # absorbed events are in the incident already
        hit.since = since * self.width
        state.until = t + self.within
        state.fresh = 0
        fx.act(self.rule, self.rule.actions, hit)

    def _count(self, buckets: deque[list[int]], index: int) -> None:
        """Add one event to its bucket; drop buckets no reference window can reach any more."""
        if buckets and buckets[-1][0] == index:
            buckets[-1][1] += 1
            return
        if not buckets or buckets[-1][0] < index:
            buckets.append([index, 1])
            oldest = index - SPIKE_BUCKETS - self.ref_buckets  # the newest bucket out of reach
            while buckets[0][0] <= oldest:
                buckets.popleft()
            return
        # A late event: find its bucket from the newest end, unless it is already out of reach.
        if index <= buckets[-1][0] - SPIKE_BUCKETS - self.ref_buckets:
            return
        for pos in range(len(buckets) - 1, -1, -1):
            if buckets[pos][0] == index:
                buckets[pos][1] += 1
                return
            if buckets[pos][0] < index:
                buckets.insert(pos + 1, [index, 1])
                return
        buckets.appendleft([index, 1])

    def expires(self, state: Any) -> float:
        """Idle when not absorbing and the newest bucket has left every reference window."""
        reach = (state.buckets[-1][0] + SPIKE_BUCKETS + self.ref_buckets) * self.width
        return float(max(state.until, reach))

    def dump(self, state: Any) -> list[Any]:
        """[until, fresh, first, [bucket, count]...]."""
        buckets = ([at, count] for at, count in state.buckets)
        return [state.until, state.fresh, state.first, *buckets]

    def load(self, data: list[Any]) -> Any:
        """From [until, fresh, first, [bucket, count]...]."""
        buckets = deque([int(at), int(count)] for at, count in data[3:])
        return _Rate(buckets, first=int(data[2]), until=float(data[0]), fresh=int(data[1]))


class _Values:
    """New-value state: each value's last sighting, least recently seen first."""

    __slots__ = ("newest", "seen")

    def __init__(self, seen: dict[str, float]) -> None:
        self.seen = seen
        self.newest = max(seen.values(), default=-math.inf)  # when the key last spoke


class NewValue(Correlator):
    """ElastAlert's new_term: act the first time a key shows a value, e.g. a user on a host.

    Known values do nothing (they are not absorbed: a new value is news, a known one is not).
    A value unseen for more than `forget_after` is forgotten, so it is new again; past
    `max_values` the least recently seen value is forgotten too, and would be new again.
    """

    __slots__ = ("forget_after", "max_values", "value")

    def __init__(self, rule: Rule, spec: NewValueSpec, *, max_keys: int, track: bool) -> None:
        super().__init__(rule, max_keys=max_keys, track=track)
        self.value = spec.value
        self.forget_after = math.inf if spec.forget_after is None else spec.forget_after
        self.max_values = spec.max_values

    def hit(self, hit: Hit, fx: Effects) -> None:
        """Note the value's sighting; act if it was not known (or forgotten)."""
        # A value that fails to render raises TemplateRenderError here, before any state
        # changes; the engine records it as a "correlate" failure and the event does nothing.
        value = self.value.render(hit.variables)
        t = hit.time
        state: _Values | None = self._get(hit.key)
        if state is None:
            state = _Values({})
            self._put(hit.key, state, fx)
        else:
            self._changed(hit.key)
        seen = state.seen
        last = seen.pop(value, None)
        new = last is None or t - last > self.forget_after  # seen exactly that long ago: known
        seen[value] = t if last is None else max(last, t)
        state.newest = max(state.newest, t)
        # Forget from the least recently seen end: values unseen too long, then beyond the bound.
        cutoff = t - self.forget_after
        while True:
            first = next(iter(seen))
            if len(seen) <= self.max_values and seen[first] >= cutoff:
                break
            del seen[first]
        if new:
            fx.act(self.rule, self.rule.actions, hit)

    def expires(self, state: Any) -> float:
        """Idle once every value is forgotten (never without `forget_after`)."""
        return float(state.newest + self.forget_after)

    def dump(self, state: Any) -> list[Any]:
        """[[value, last seen]...], least recently seen first."""
        return [[value, when] for value, when in state.seen.items()]

    def load(self, data: list[Any]) -> Any:
        """From [[value, last seen]...]."""
        return _Values({str(value): float(when) for value, when in data})


class _Flap:
    """Flapping state of one key: recent open/resolve times, and since when it flaps."""

    __slots__ = ("changes", "flapping", "since", "times")

    def __init__(
        self, times: list[float], *, flapping: bool = False, since: float = 0.0, changes: int = 0
    ) -> None:
        self.times = times
        self.flapping = flapping
        self.since = since
        self.changes = changes  # open/resolve changes since it started flapping


class Flapping(Correlator):
    """Holds the notifications of a key whose incident keeps opening and resolving.

    It flaps at `changes` opens/resolves within `within` and settles once none came for
    `within` (hysteresis: raising needs many changes, settling needs none), then says so once.
    """

    __slots__ = ("spec",)

    def __init__(self, rule: Rule, spec: FlappingSpec, *, max_keys: int, track: bool) -> None:
        super().__init__(rule, max_keys=max_keys, track=track)
        self.spec = spec
        self.name = f"{rule.id}#flapping"

    def hit(self, hit: Hit, fx: Effects) -> None:
        """Guards see incident changes, not hits."""
        raise AssertionError("flapping is fed through change()")

    def change(self, key: str, time: float, fx: Effects) -> None:
        """Count an open or resolve of the key's incident."""
        state: _Flap | None = self._get(key)
        if state is None:
            state = _Flap([])
            self._put(key, state, fx)
        else:
            self._changed(key)
        insort(state.times, time)
        start = bisect_left(state.times, state.times[-1] - self.spec.within)
        del state.times[:start]
        if state.flapping:
            state.changes += 1
        elif len(state.times) >= self.spec.changes:
            state.flapping = True
            state.since = state.times[0]
            state.changes = len(state.times)
            fx.schedule(state.times[-1] + self.spec.within, self, key)

    def held(self, key: str) -> str | None:
        """Why the key's notifications are held, or None if it does not flap."""
        state: _Flap | None = self.states.get(key)
        if state is None or not state.flapping:
            return None
        return (
            f"{FLAPPING_PREFIX}{state.changes} opens/resolves since {_iso(state.since)}; "
            f"notifications held until quiet for {self.spec.within:g}s"
        )

    def timer(self, key: str, due: float, fx: Effects) -> None:
        """Settle once quiet for `within`, with one summarising note; else look again later."""
        state: _Flap | None = self._get(key)
        if state is None or not state.flapping:
            return
        quiet_at = state.times[-1] + self.spec.within
        if quiet_at > due:
            fx.schedule(quiet_at, self, key)
            return
        self._drop(key)
        fx.note(
            self.rule,
            key,
            due,
            "",
            f"flapping settled: {state.changes} opens/resolves between {_iso(state.since)} "
            f"and {_iso(state.times[-1])}; notifications resume",
        )

    def expires(self, state: Any) -> float:
        """A flapping key waits to settle; others are idle once their changes are old."""
        if state.flapping:
            return math.inf
        return float(state.times[-1]) + self.spec.within if state.times else 0.0

    def due(self, state: Any) -> float | None:
        """A flapping key's settle check."""
        return float(state.times[-1]) + self.spec.within if state.flapping else None

    def dump(self, state: Any) -> list[Any]:
        """[flapping, since, changes, times...]."""
        return [state.flapping, state.since, state.changes, *state.times]

    def load(self, data: list[Any]) -> Any:
        """From `dump` data."""
        return _Flap(
            [float(x) for x in data[3:]],
            flapping=bool(data[0]),
            since=float(data[1]),
            changes=int(data[2]),
        )


class Storm(Correlator):
    """Folds a rule's new incidents into one summary while keys appear too fast.

    State (one key, "*"): the times of recent would-be new incidents (at most new_keys + 1),
    and how many were folded. The storm ends once a window of `within` holds no more than
    `new_keys` of them.
    """

    __slots__ = ("spec",)

    def __init__(self, rule: Rule, spec: StormSpec, *, max_keys: int, track: bool) -> None:
        super().__init__(rule, max_keys=max_keys, track=track)
        self.spec = spec
        self.name = f"{rule.id}#storm"

    def hit(self, hit: Hit, fx: Effects) -> None:
        """Guards see would-be incidents, not hits."""
        raise AssertionError("storm is fed through fold()")

    def fold(self, time: float, fx: Effects) -> int:
        """Note a would-be new incident; return how many are folded so far (0: open it)."""
        state: list[float] | None = self._get("*")
        if state is None:
            state = [0.0]
            self._put("*", state, fx)
        else:
            self._changed("*")
        times = state
        insort(times, time, 1)
        start = bisect_left(times, times[-1] - self.spec.within, 1)
        del times[1:start]
        limit = self.spec.new_keys
        if times[0] == 0.0 and len(times) - 1 <= limit:
            return 0
        if len(times) - 1 > limit + 1:
            del times[1 : len(times) - limit - 1]  # only the rate matters: keep new_keys + 1
        if times[0] == 0.0:
            fx.schedule(times[1] + self.spec.within, self, "*")
        times[0] += 1
        return int(times[0])

    def timer(self, key: str, due: float, fx: Effects) -> None:
        """End the storm once the window (due - within, due] holds no more than new_keys."""
        state: list[float] | None = self._get("*")
        if state is None or state[0] == 0.0:
            return
        recent = state[1:]  # the newest new_keys + 1 at most
        if len(recent) > self.spec.new_keys and recent[0] > due - self.spec.within:
            fx.schedule(recent[0] + self.spec.within, self, "*")
            return
        self._drop("*")
        fx.resolve(self.rule, STORM_KEY, due)

    def expires(self, state: Any) -> float:
        """Storming waits for its end; otherwise idle once the recent times are old."""
        if state[0]:
            return math.inf
        return float(state[-1]) + self.spec.within if len(state) > 1 else 0.0

    def due(self, state: Any) -> float | None:
        """While storming, the check for its end."""
        return float(state[1]) + self.spec.within if state[0] else None

    def dump(self, state: Any) -> list[Any]:
        """[folded, times...]."""
        return list(state)

    def load(self, data: list[Any]) -> Any:
        """From [folded, times...]."""
        return [float(x) for x in data]


def _iso(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.UTC).isoformat(timespec="seconds")


def build_correlator(
    rule: Rule, spec: CorrelationSpec, *, max_keys: int, track: bool
) -> Correlator:
    """Return the state machine for a rule's correlation mode."""
    if isinstance(spec, SuppressSpec):
        return Suppress(rule, spec, max_keys=max_keys, track=track)
    if isinstance(spec, ThresholdSpec):
        return Threshold(rule, spec, max_keys=max_keys, track=track)
    if isinstance(spec, HysteresisSpec):
        return Hysteresis(rule, spec, max_keys=max_keys, track=track)
    if isinstance(spec, AbsenceSpec):
        return Absence(rule, spec, max_keys=max_keys, track=track)
    if isinstance(spec, ExpectSpec):
        return Expect(rule, spec, max_keys=max_keys, track=track)
    if isinstance(spec, SpikeSpec):
        return Spike(rule, spec, max_keys=max_keys, track=track)
    if isinstance(spec, NewValueSpec):
        return NewValue(rule, spec, max_keys=max_keys, track=track)
    return Group(rule, spec, max_keys=max_keys, track=track)
