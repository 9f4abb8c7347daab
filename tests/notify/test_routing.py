"""The route tree: parsing with inheritance, Alertmanager's matching, stable ids, errors."""

from __future__ import annotations

import pytest

from tocsin.model import Incident, IncidentState
from tocsin.notify.routing import Route, parse_route
from tocsin.records.views import route_labels
from tocsin.yamlsrc import SourceError, load_yaml, value_mark

RECEIVERS = ("default", "pager", "dba", "slack", "mail")
POLICIES = ("ops", "dba-policy")


def parse(text: str) -> Route:
    """Parse an incidents file holding a `route:` section."""
    data = load_yaml(text, name="incidents.yaml")
    return parse_route(
        data["route"],
        value_mark(data, "route", data.mark),
        receivers=RECEIVERS,
        policies=POLICIES,
    )


def error(text: str) -> str:
    """Return the error a broken route section gives."""
    with pytest.raises(SourceError) as caught:
        parse(text)
    return str(caught.value)


def receivers(route: Route, **labels: str) -> list[str]:
    """Return the receivers of the routes these labels match."""
    return [r.receiver for r in route.match(labels)]


TREE = """\
route:
  receiver: default
  group_by: [service]
  routes:
    - matchers: [priority=P1]
      receiver: pager
      continue: true
      escalation: ops
    - matchers: ['service=~db.*']
      receiver: dba
      group_wait: 1m
      routes:
        - matchers: [env=prod]
          receiver: pager
          send_resolved: false
    - matchers: [team=web]
      receiver: slack
"""


def test_the_root_has_alertmanagers_defaults() -> None:
    """Test that a bare root route waits 30s, then 5m between changes, repeats every 4h."""
    route = parse("route: {receiver: default}\n")
    assert (route.receiver, route.group_by, route.send_resolved, route.escalation) == (
        "default",
        (),
        True,
        None,
    )
    assert (route.group_wait, route.group_interval, route.repeat_interval) == (30, 300, 14400)


def test_children_inherit_what_they_do_not_set() -> None:
    """Test that a child takes its parent's receiver, group_by, timings and flags unless set."""
    route = parse(TREE)
    dba = route.routes[1]
    assert (dba.receiver, dba.group_by, dba.group_wait, dba.group_interval) == (
        "dba",
        ("service",),
        60,
        300,
    )
    prod = dba.routes[0]
    assert (prod.receiver, prod.group_wait, prod.send_resolved, prod.escalation) == (
        "pager",
        60,
        False,
        None,
    )
    assert route.routes[0].escalation == "ops"


def test_the_deepest_matching_route_wins() -> None:
    """Test that a nested match is taken over its parent, and the parent when no child matches."""
    route = parse(TREE)
    assert receivers(route, service="db1", env="prod") == ["pager"]
    assert receivers(route, service="db1", env="test") == ["dba"]
    assert [r.id for r in route.match({"service": "db1", "env": "prod"})] == [
        route.routes[1].routes[0].id
    ]


def test_continue_lets_later_siblings_match_and_a_plain_match_stops_them() -> None:
    """Test that `continue: true` goes on to siblings, and the first plain match ends the search."""
    route = parse(TREE)
    assert receivers(route, priority="P1", service="db2", team="web") == ["pager", "dba"]
    assert receivers(route, priority="P1", service="web") == ["pager"]
    assert receivers(route, team="web") == ["slack"]


def test_no_matching_child_leaves_the_root() -> None:
    """Test that an incident no child takes goes to the root's receiver."""
    assert receivers(parse(TREE), service="web", priority="P3") == ["default"]


def test_matchers_see_priority_service_and_labels_but_not_state() -> None:
    """Test that routes match on an incident's fields and labels, and acking keeps the route."""
    route = parse(
        "route:\n  receiver: default\n  routes:\n"
        "    - {matchers: [priority=P1, state=closed], receiver: pager}\n"
        "    - {matchers: [service=db], receiver: dba}\n"
        "    - {matchers: [rack=~r1.*, urgency=high], receiver: slack}\n"
    )
    incident = Incident(
        id=1,
        fingerprint="f",
        rule="disk",
        key="web1",
        title="disk full",
        state=IncidentState.NEW,
        priority="P1",
        impact="high",
        urgency="high",
        first_seen=0.0,
        last_seen=0.0,
        service="web",
        labels={"rack": "r12", "state": "closed"},
    )
    assert receivers(route, **route_labels(incident)) == ["pager"]  # the label, not the state
    incident.state = IncidentState.ACKNOWLEDGED
    assert receivers(route, **route_labels(incident)) == ["pager"]
    incident.labels["state"] = "open"
    assert receivers(route, **route_labels(incident)) == ["slack"]
    incident.service = "db"
    assert receivers(route, **route_labels(incident)) == ["dba"]


def test_route_labels_put_lifecycle_fields_over_labels_of_the_same_name() -> None:
    """Test that a label called 'impact' cannot pose as the incident's impact."""
    incident = Incident(
        id=1,
        fingerprint="f",
        rule="disk",
        key="web1",
        title="t",
        state=IncidentState.ON_HOLD,
        priority="P2",
        impact="medium",
        urgency="low",
        first_seen=0.0,
        last_seen=0.0,
        labels={"impact": "high", "host": "web1"},
    )
    labels = route_labels(incident)
    assert (labels["impact"], labels["urgency"]) == ("medium", "low")
    assert "state" not in labels
    assert (labels["host"], labels["rule"], labels["priority"]) == ("web1", "disk", "P2")


def test_route_ids_survive_a_new_sibling_and_tell_twins_apart() -> None:
    """Test that ids follow what a route is, not where it is, and twin siblings differ."""
    before = parse(TREE)
    after = parse(
        TREE.replace("  routes:\n", "  routes:\n    - {matchers: [x=y], receiver: mail}\n", 1)
    )
    assert [r.id for r in after.routes[1:]] == [r.id for r in before.routes]
    assert after.routes[2].routes[0].id == before.routes[1].routes[0].id
    twins = parse(
        "route:\n  receiver: default\n  routes:\n"
        "    - {matchers: [a=b], receiver: pager}\n"
        "    - {matchers: [a=b], receiver: pager}\n"
    )
    ids = [r.id for r in twins.walk()]
    assert len(set(ids)) == 3
    assert ids == [
        r.id
        for r in parse(
            "route:\n  receiver: default\n  routes:\n"
            "    - {matchers: [a=b], receiver: pager}\n"
            "    - {matchers: [a=b], receiver: pager}\n"
        ).walk()
    ]


def test_a_changed_group_by_gives_a_new_id() -> None:
    """Test that changing group_by changes the id, so old groups are not restored into it."""
    before = parse("route: {receiver: default, group_by: [service]}\n")
    after = parse("route: {receiver: default, group_by: [service, host]}\n")
    timings = parse("route: {receiver: default, group_by: [service], group_wait: 1s}\n")
    assert before.id != after.id
    assert before.id == timings.id


def test_group_by_dots_means_every_label() -> None:
    """Test that ['...'] becomes None (one group per incident)."""
    assert parse("route: {receiver: default, group_by: ['...']}\n").group_by is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "route:\n  receiver: default\n  routes:\n    - receiver: pagr\n",
            "incidents.yaml:4:17: unknown receiver 'pagr' (did you mean 'pager'?) "
            "(receivers are defined under 'receivers')",
        ),
        (
            "route:\n  receiver: nobody\n",
            "incidents.yaml:2:13: unknown receiver 'nobody' "
            "(receivers are defined under 'receivers')",
        ),
        (
            "route:\n  receiver: default\n  escalation: opss\n",
            "incidents.yaml:3:15: unknown escalation policy 'opss' (did you mean 'ops'?) "
            "(policies are defined under 'escalation_policies')",
        ),
        (
            "route:\n  receiver: default\n  matchers: [a=b]\n",
            "incidents.yaml:3:3: the root route takes every incident, so it has no 'matchers'; "
            "put routes with 'matchers' under 'routes'",
        ),
        (
            "route:\n  receiver: default\n  continue: true\n",
            "incidents.yaml:3:3: the root route takes every incident, so it has no 'continue'; "
            "put routes with 'matchers' under 'routes'",
        ),
        (
            "route:\n  group_by: [service]\n",
            "incidents.yaml:2:3: the root route needs a 'receiver': "
            "who hears of what no child route takes",
        ),
        (
            "route:\n  receiver: default\n  group_wait: soon\n",
            "incidents.yaml:3:15: 'group_wait' must be a duration like 250ms, 10s, 5m, 1h or 2d, "
            "not 'soon'",
        ),
        (
            "route:\n  receiver: default\n  routes:\n    - {receiver: dba, group_interval: 0s}\n",
            "incidents.yaml:4:39: 'group_interval' must be longer than zero, like 5m",
        ),
        (
            "route:\n  receiver: default\n  repeat_interval: 0\n",
            "incidents.yaml:3:20: 'repeat_interval' must be longer than zero, like 5m",
        ),
        (
            "route:\n  receiver: default\n  group_by: ['...', host]\n",
            "incidents.yaml:3:13: 'group_by' lists '...' (every label) with other labels; "
            "give ['...'] alone, or only label names",
        ),
        (
            "route:\n  receiver: default\n  group_by: [host, host]\n",
            "incidents.yaml:3:20: 'group_by' lists 'host' twice",
        ),
        (
            "route:\n  receiver: default\n  group_by: [1host]\n",
            "incidents.yaml:3:14: a group_by label '1host' is not a valid label name "
            "(use letters, digits, '_' and '.', not starting with a digit)",
        ),
        (
            "route:\n  receiver: default\n  routes:\n    - {matcher: [a=b], receiver: dba}\n",
            "incidents.yaml:4:8: unknown route option 'matcher' (did you mean 'matchers'?)",
        ),
        (
            "route:\n  receiver: default\n  routes:\n    - {matchers: [a==b], receiver: dba}\n",
            "incidents.yaml:4:19: matcher 'a==b' uses '=='; write a single '=' for equality",
        ),
        (
            "route:\n  receiver: default\n  routes:\n    - {receiver: null}\n",
            "incidents.yaml:4:18: 'receiver' is empty: name a receiver, "
            "or leave it out to keep the parent's",
        ),
        (
            "route:\n  receiver: default\n  routes: {receiver: dba}\n",
            "incidents.yaml:3:11: 'routes' must be a list, not a mapping",
        ),
        (
            "route:\n  receiver: default\n  send_resolved: 'no'\n",
            "incidents.yaml:3:18: 'send_resolved' must be true or false, not text",
        ),
    ],
)
def test_config_errors_name_the_place_and_the_fix(text: str, expected: str) -> None:
    """Test the exact error text of broken route sections."""
    assert error(text) == expected
