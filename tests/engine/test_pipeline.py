"""The pure engine: rules in load order, actions, incidents, on a virtual clock."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from testkit import make_event
from tocsin.engine.clock import ManualClock
from tocsin.engine.pipeline import Engine
from tocsin.model import IncidentState

Build = Callable[[str], Engine]

SSH = r"""
lists:
  admin_users: [root, admin]
rules:
  - id: ssh-admin
    match:
      program: sshd
      message: {regex: 'Failed password for (?P<user>\S+) from (?P<ip>[0-9.]+)'}
    when: "user in lists.admin_users"
    key: "{{ ip }}"
    actions:
      - incident: {title: "Admin failures from {{ ip }}", impact: high, urgency: high, labels: {user: "{{ user }}"}}
  - id: ssh-any
    match:
      program: sshd
      message: {regex: 'Failed password for (?P<user>\S+) from (?P<ip>[0-9.]+)'}
    key: "{{ ip }}"
    actions:
      - incident: {title: "Failures from {{ ip }}", impact: low, urgency: low}
"""


def ssh(user: str, ip: str, t: float = 1_795_564_800.0) -> object:
    """Build an sshd failure event."""
    return make_event(f"Failed password for {user} from {ip} port 22 ssh2", program="sshd", time=t)


def test_first_match_wins_and_when_filters(engine_for: Build) -> None:
    """Test that `when` decides between two rules and only the first matching rule acts."""
    engine = engine_for(SSH)
    result = engine.process([ssh("root", "10.0.0.1"), ssh("bob", "10.0.0.2")])  # type: ignore[list-item]
    assert result.matches == {"ssh-admin": 1, "ssh-any": 1}
    assert [(o.rule, o.op, o.key, o.title) for o in result.outputs or []] == [
        ("ssh-admin", "open", "10.0.0.1", "Admin failures from 10.0.0.1"),
        ("ssh-any", "open", "10.0.0.2", "Failures from 10.0.0.2"),
    ]
    admin = engine.book.get("ssh-admin:10.0.0.1")
    assert admin is not None
    assert (admin.priority, admin.labels) == ("P1", {"user": "root"})


def test_same_fingerprint_updates_the_open_incident(engine_for: Build) -> None:
    """Test that repeats raise the count and last-seen of one incident, not a second one."""
    engine = engine_for(SSH)
    t0 = 1_795_564_800.0
    engine.process([ssh("bob", "10.0.0.2", t0), ssh("bob", "10.0.0.2", t0 + 5)])  # type: ignore[list-item]
    result = engine.process([ssh("eve", "10.0.0.2", t0 + 9)])  # type: ignore[list-item]
    assert [(o.op, o.count) for o in result.outputs or []] == [("update", 3)]
    incident = engine.book.get("ssh-any:10.0.0.2")
    assert incident is not None
    assert (incident.id, incident.count, incident.first_seen, incident.last_seen) == (
        1,
        3,
        t0,
        t0 + 9,
    )
    assert len(engine.book) == 1


def test_captures_become_fields_only_on_match(engine_for: Build) -> None:
    """Test that a matching rule's captures land in event.fields and a failed `when` adds none."""
    engine = engine_for(SSH)
    event = ssh("root", "10.9.9.9")
    engine.process([event])  # type: ignore[list-item]
    assert event.fields == {"user": "root", "ip": "10.9.9.9"}  # type: ignore[attr-defined]


PAIR = r"""
rules:
  - id: link-down
    match: {message: {regex: 'Interface (?P<ifname>\S+), changed state to down'}}
    key: "{{ event.host }}:{{ ifname }}"
    actions: [{incident: {title: "{{ ifname }} down"}}]
  - id: link-up
    match: {message: {regex: 'Interface (?P<ifname>\S+), changed state to up'}}
    key: "{{ event.host }}:{{ ifname }}"
    actions: [{resolve: {rule: link-down}}]
"""


def test_resolve_closes_the_matching_incident_only(engine_for: Build) -> None:
    """Test that a clear event resolves the incident with the same key and no other."""
    engine = engine_for(PAIR)
    down1 = make_event("Interface Gi0/1, changed state to down", host="r1")
    down2 = make_event("Interface Gi0/2, changed state to down", host="r1")
    up1 = make_event("Interface Gi0/1, changed state to up", host="r1", time=1_795_564_860.0)
    up_unknown = make_event("Interface Gi0/9, changed state to up", host="r1")
    result = engine.process([down1, down2, up1, up_unknown])
    assert [(o.rule, o.op, o.key) for o in result.outputs or []] == [
        ("link-down", "open", "r1:Gi0/1"),
        ("link-down", "open", "r1:Gi0/2"),
        ("link-up", "resolve", "r1:Gi0/1"),
    ]
    resolved = [c.incident for c in result.changes if c.op == "resolve"]
    assert resolved[0].state is IncidentState.RESOLVED
    assert resolved[0].resolved_at == 1_795_564_860.0
    assert engine.book.get("link-down:r1:Gi0/1") is None
    assert engine.book.get("link-down:r1:Gi0/2") is not None
    again = engine.process([down1])
    assert [(o.op, o.count) for o in again.outputs or []] == [("open", 1)]


def test_continue_and_drop(engine_for: Build) -> None:
    """Test that `continue` lets later rules see the event and `drop` stops it for good."""
    engine = engine_for(
        """
rules:
  - id: tag-all
    continue: true
    match: {}
    actions: [{log: {message: "saw {{ event.message }}"}}]
  - id: drop-cron
    match: {program: CRON}
    actions: [drop]
  - id: catch-all
    match: {}
    actions: [{incident: {title: "{{ event.program }}"}}]
"""
    )
    result = engine.process([make_event("x", program="CRON"), make_event("y", program="app")])
    assert result.matches == {"tag-all": 2, "drop-cron": 1, "catch-all": 1}
    assert result.dropped == 1
    assert [log.message for log in result.logs] == ["saw x", "saw y"]
    assert [(o.rule, o.action) for o in result.outputs or []] == [
        ("tag-all", "log"),
        ("drop-cron", "drop"),
        ("tag-all", "log"),
        ("catch-all", "incident"),
    ]


def test_failing_action_is_isolated(engine_for: Build) -> None:
    """Test that an action raising is recorded and the rest of the batch still runs."""
    engine = engine_for(PAIR)

    class Boom:
        kind = "boom"

        def run(self, hit: object, env: object) -> None:
            raise RuntimeError("kaput")

        def referenced_rules(self) -> tuple[str, ...]:
            return ()

    engine.rules[0].actions.insert(0, Boom())
    result = engine.process(
        [
            make_event("Interface A, changed state to down", host="h"),
            make_event("Interface B, changed state to down", host="h"),
        ]
    )
    assert [(f.rule, f.stage) for f in result.failures] == [
        ("link-down", "boom"),
        ("link-down", "boom"),
    ]
    assert [o.key for o in result.outputs or []] == ["h:A", "h:B"]


WORDS = ["alpha", "beta", "gamma", "delta", "error", "fail", "ok", "x1", "42"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(WORDS), min_size=0, max_size=6).map(" ".join), max_size=30)
)
def test_prefilter_never_changes_the_outcome(messages: list[str]) -> None:
    """Test that the RE2 Set prefilter gives exactly the matches of trying every rule."""
    import tempfile
    from pathlib import Path

    from tocsin.actions.registry import ACTION_KINDS
    from tocsin.records.incidents import IncidentBook
    from tocsin.records.priority import PriorityMatrix
    from tocsin.rules.loader import load_rules

    text = """
rules:
  - {id: r1, match: {message: {regex: 'alpha.*beta'}}, actions: [{log: a}]}
  - {id: r2, match: {message: {contains: error}}, continue: true, actions: [{log: b}]}
  - {id: r3, match: {message: {startswith: fail}}, actions: [{log: c}]}
  - {id: r4, match: {any: [{message: {contains: gamma}}, {message: {endswith: '42'}}]}, actions: [{log: d}]}
  - {id: r5, match: {message: {regex: '\\bx1\\b'}}, actions: [{log: e}]}
"""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.yaml"
        path.write_text(text)
        ruleset = load_rules([path], kinds=ACTION_KINDS)
    assert not ruleset.errors

    def run(prefiltered: bool) -> list[tuple[str, str]]:
        rules = (
            ruleset.rules
            if prefiltered
            else [
                type(r)(**{**{s: getattr(r, s) for s in r.__slots__}, "prefilter": None})
                for r in ruleset.rules
            ]
        )
        engine = Engine(
            rules=rules,
            lists={},
            book=IncidentBook(priorities=PriorityMatrix()),
            clock=ManualClock(),
            record_outputs=True,
        )
        result = engine.process([make_event(m) for m in messages])
        return [(o.rule, o.title) for o in result.outputs or []]

    assert run(True) == run(False)


def test_rule_errors_on_bad_data_are_failures_not_crashes(engine_for: Build) -> None:
    """Test that a rule raising on one event's data is recorded and the batch goes on."""
    engine = engine_for(
        """
rules:
  - id: big
    match: {fields.n: {gt: 5}}
    actions: [{incident: {title: "big"}}]
  - id: keyed
    match: {program: app}
    key: "{{ fields.port + 1 }}"
    actions: [{incident: {title: "port"}}]
  - id: text
    match: {message: {regex: 'cut'}}
    actions: [{incident: {title: "cut"}}]
"""
    )
    events = [
        make_event("x", fields={"n": 10**400}),
        make_event("y", program="app", fields={"port": "22"}),
        make_event("cut \ud83d here"),
        make_event("z", fields={"n": 6}),
    ]
    result = engine.process(events)
    assert [(f.rule, f.stage) for f in result.failures] == [("keyed", "key")]
    assert [(o.rule, o.op) for o in result.outputs or []] == [("text", "open"), ("big", "open")]


JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(max_size=120),  # may hold lone surrogates and anything else
            st.sampled_from(["sshd", "kernel", "CRON", "", "app"]),
            st.dictionaries(st.sampled_from(["port", "n", "user", "ip"]), JSONISH, max_size=3),
        ),
        max_size=20,
    )
)
def test_bundled_rules_never_raise_on_any_event(
    items: list[tuple[str, str, dict[str, object]]],
) -> None:
    """Test that the shipped rules process arbitrary events without raising."""
    from pathlib import Path

    from tocsin.actions.registry import ACTION_KINDS
    from tocsin.records.incidents import IncidentBook
    from tocsin.records.priority import PriorityMatrix
    from tocsin.rules.loader import load_rules

    ruleset = load_rules([Path(__file__).parents[2] / "rules"], kinds=ACTION_KINDS)
    engine = Engine(
        rules=ruleset.rules,
        lists=ruleset.lists,
        book=IncidentBook(priorities=PriorityMatrix()),
        clock=ManualClock(),
        record_outputs=True,
    )
    events = [make_event(m, program=p, fields=dict(f)) for m, p, f in items]
    result = engine.process(events)
    assert result.events == len(events)


def test_key_sees_captures_as_fields(engine_for: Build) -> None:
    """Test that `{{ fields.NAME }}` in a key reads the rule's own capture, over the event's field."""
    engine = engine_for(
        """
rules:
  - id: k
    match: {message: {regex: 'user (?P<user>\\w+)'}}
    key: "{{ fields.user }}"
    actions: [{incident: {title: "{{ user }}"}}]
"""
    )
    result = engine.process(
        [make_event("user bob", fields={"user": "json-user"}), make_event("user eve")]
    )
    assert [o.key for o in result.outputs or []] == ["bob", "eve"]
