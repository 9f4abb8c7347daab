"""On-call schedules: wall-clock handoffs across DST, layers, active windows, overrides, parsing."""

from __future__ import annotations

import datetime
import itertools
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.oncall.schedule import OnCallSchedule, Shift, parse_oncall
from tocsin.yamlsrc import SourceError, load_yaml, value_mark

BERLIN = ZoneInfo("Europe/Berlin")
HOUR = 3600.0


def parse(text: str) -> dict[str, OnCallSchedule]:
    """Parse a config file holding an `oncall:` section."""
    data = load_yaml(text, name="oncall.yaml")
    return parse_oncall(data["oncall"], value_mark(data, "oncall", data.mark))


def one(rotations: str, overrides: str = "") -> OnCallSchedule:
    """Parse one Europe/Berlin schedule from rotation (and override) lines in flow style."""
    text = f"oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n{rotations}"
    if overrides:
        text += f"    overrides:\n{overrides}"
    return parse(text)["s"]


def at(text: str, fold: int = 0) -> float:
    """Return epoch seconds of a Berlin wall time like '2026-03-29 09:00'."""
    wall = datetime.datetime.fromisoformat(text)
    return wall.replace(tzinfo=BERLIN, fold=fold).timestamp()


def local(moment: float) -> str:
    """Show an instant as Berlin wall time with its offset, so failures read as times."""
    return datetime.datetime.fromtimestamp(moment, BERLIN).strftime("%a %Y-%m-%d %H:%M%z")


def shown(shifts: list[Shift]) -> list[tuple[str, str, str]]:
    """Show shifts as Berlin wall times."""
    return [(local(start), local(end), who) for start, end, who in shifts]


def test_weekly_handoff_stays_at_nine_across_spring_dst() -> None:
    """Test that a weekly 09:00 handoff stays at local 09:00 when CET becomes CEST."""
    schedule = one(
        "      - {name: w, start: '2026-03-16 09:00', length: 1w, members: [alice, bob]}\n"
    )
    got = schedule.shifts(at("2026-03-20 00:00"), at("2026-04-08 00:00"))
    assert shown(got) == [
        ("Fri 2026-03-20 00:00+0100", "Mon 2026-03-23 09:00+0100", "alice"),
        ("Mon 2026-03-23 09:00+0100", "Mon 2026-03-30 09:00+0200", "bob"),
        ("Mon 2026-03-30 09:00+0200", "Mon 2026-04-06 09:00+0200", "alice"),
        ("Mon 2026-04-06 09:00+0200", "Wed 2026-04-08 00:00+0200", "bob"),
    ]
    # The DST week is an hour short in real time.
    assert got[1][1] - got[1][0] == 7 * 24 * HOUR - HOUR


def test_daily_handoff_stays_at_nine_across_autumn_dst() -> None:
    """Test that a daily 09:00 handoff stays at local 09:00 when CEST becomes CET."""
    schedule = one("      - {name: d, start: '2026-10-20 09:00', length: 1d, members: [a, b, c]}\n")
    got = schedule.shifts(at("2026-10-24 09:00"), at("2026-10-27 09:00"))
    assert shown(got) == [
        ("Sat 2026-10-24 09:00+0200", "Sun 2026-10-25 09:00+0100", "b"),
        ("Sun 2026-10-25 09:00+0100", "Mon 2026-10-26 09:00+0100", "c"),
        ("Mon 2026-10-26 09:00+0100", "Tue 2026-10-27 09:00+0100", "a"),
    ]
    assert got[0][1] - got[0][0] == 25 * HOUR
    assert schedule.who(at("2026-10-25 08:59")) == "b"
    assert schedule.who(at("2026-10-25 09:00")) == "c"


def test_handoffs_at_skipped_and_repeated_wall_times() -> None:
    """Test that a skipped handoff happens at the jump and a repeated one the first time."""
    schedule = one("      - {name: h, start: '2026-03-28 02:30', length: 1d, members: [a, b]}\n")
    # 02:30 does not exist on 2026-03-29: b takes over when the clock jumps to 03:00.
    assert schedule.who(at("2026-03-29 01:59")) == "a"
    assert schedule.who(at("2026-03-29 03:00")) == "b"
    (_, handoff, _), _ = schedule.shifts(at("2026-03-29 00:00"), at("2026-03-29 12:00"))
    assert local(handoff) == "Sun 2026-03-29 03:00+0200"
    autumn = one("      - {name: h, start: '2026-10-24 02:30', length: 1d, members: [a, b]}\n")
    assert autumn.who(at("2026-10-25 02:29", fold=0)) == "a"
    assert autumn.who(at("2026-10-25 02:30", fold=0)) == "b"
    assert autumn.who(at("2026-10-25 02:10", fold=1)) == "b"


def test_nobody_before_start_and_members_cycle() -> None:
    """Test that a rotation covers nobody before its start, then cycles through its members."""
    schedule = one("      - {name: h, start: '2026-01-01 06:00', length: 8h, members: [a, b, c]}\n")
    assert schedule.who(at("2026-01-01 05:59")) is None
    assert [schedule.who(at("2026-01-01 06:00") + i * 8 * HOUR) for i in range(5)] == [
        "a",
        "b",
        "c",
        "a",
        "b",
    ]
    assert schedule.shifts(at("2026-01-01 00:00"), at("2026-01-01 06:00")) == []


def test_later_layer_wins_where_active() -> None:
    """Test that a business-hours layer beats the 24/7 layer below it, and only then."""
    schedule = one(
        "      - {name: base, start: '2026-01-05 09:00', length: 1w, members: [night]}\n"
        "      - {name: day, start: '2026-01-05 09:00', length: 1d, members: [ann, ben],\n"
        "         active: {weekdays: ['mon:fri'], from: '09:00', to: '18:00'}}\n"
    )
    assert schedule.who(at("2026-01-06 10:00")) == "ben"
    assert schedule.who(at("2026-01-06 18:00")) == "night"
    assert schedule.who(at("2026-01-10 10:00")) == "night"  # a Saturday
    assert shown(schedule.shifts(at("2026-01-09 00:00"), at("2026-01-10 00:00"))) == [
        ("Fri 2026-01-09 00:00+0100", "Fri 2026-01-09 09:00+0100", "night"),
        ("Fri 2026-01-09 09:00+0100", "Fri 2026-01-09 18:00+0100", "ann"),
        ("Fri 2026-01-09 18:00+0100", "Sat 2026-01-10 00:00+0100", "night"),
    ]


def test_later_layer_before_its_start_leaves_lower_layer() -> None:
    """Test that a layer that has not started yet does not hide the one below."""
    schedule = one(
        "      - {name: old, start: '2026-01-01 09:00', length: 1w, members: [old]}\n"
        "      - {name: new, start: '2026-02-01 09:00', length: 1w, members: [new]}\n"
    )
    assert schedule.who(at("2026-02-01 08:59")) == "old"
    assert schedule.who(at("2026-02-01 09:00")) == "new"


def test_active_window_crossing_midnight_counts_from_its_starting_day() -> None:
    """Test that a Friday 22:00-06:00 window runs into Saturday morning and no other night."""
    schedule = one(
        "      - {name: n, start: '2026-01-01 00:00', length: 1w, members: [owl],\n"
        "         active: {weekdays: [fri], from: '22:00', to: '06:00'}}\n"
    )
    assert schedule.who(at("2026-01-09 21:59")) is None
    assert schedule.who(at("2026-01-09 22:00")) == "owl"
    assert schedule.who(at("2026-01-10 05:59")) == "owl"
    assert schedule.who(at("2026-01-10 06:00")) is None
    assert schedule.who(at("2026-01-10 23:00")) is None
    assert schedule.who(at("2026-01-09 02:00")) is None  # Thursday night
    assert shown(schedule.shifts(at("2026-01-05 00:00"), at("2026-01-12 00:00"))) == [
        ("Fri 2026-01-09 22:00+0100", "Sat 2026-01-10 06:00+0100", "owl"),
    ]


def test_active_weekdays_alone_cover_whole_days() -> None:
    """Test that `active` with weekdays only covers those days from midnight to midnight."""
    schedule = one(
        "      - {name: w, start: '2026-01-01 00:00', length: 1w, members: [x],\n"
        "         active: {weekdays: [saturday, sun]}}\n"
    )
    assert shown(schedule.shifts(at("2026-01-05 00:00"), at("2026-01-12 00:00"))) == [
        ("Sat 2026-01-10 00:00+0100", "Mon 2026-01-12 00:00+0100", "x"),
    ]


def test_overrides_beat_rotations_and_later_overrides_win() -> None:
    """Test that an override beats every layer, and a later override an earlier one."""
    schedule = one(
        "      - {name: w, start: '2026-01-05 09:00', length: 1w, members: [alice]}\n",
        "      - {who: dave, from: '2026-02-10 18:00', to: '2026-02-11 09:00'}\n"
        "      - {who: erin, from: '2026-02-11 00:00', to: '2026-02-11 01:00'}\n",
    )
    assert schedule.who(at("2026-02-10 17:59")) == "alice"
    assert schedule.who(at("2026-02-10 18:00")) == "dave"
    assert schedule.who(at("2026-02-11 00:30")) == "erin"
    assert schedule.who(at("2026-02-11 01:00")) == "dave"
    assert schedule.who(at("2026-02-11 09:00")) == "alice"


EXAMPLE = """\
oncall:
  - name: ops-primary
    time_zone: Europe/Berlin
    rotations:
      - name: weekly
        start: "2026-01-05 09:00"
        length: 1w
        members: [alice, bob, carol]
        active: {weekdays: [mon, tue, wed, thu, fri], from: "09:00", to: "18:00"}
    overrides:
      - {who: dave, from: "2026-02-10 18:00", to: "2026-02-11 09:00"}
"""


def test_shifts_over_a_week_of_the_documented_example() -> None:
    """Test the documented example over one week: business hours only, plus the override."""
    schedule = parse(EXAMPLE)["ops-primary"]
    assert schedule.time_zone == BERLIN
    got = schedule.shifts(at("2026-02-09 00:00"), at("2026-02-16 00:00"))
    assert shown(got) == [
        ("Mon 2026-02-09 09:00+0100", "Mon 2026-02-09 18:00+0100", "carol"),
        ("Tue 2026-02-10 09:00+0100", "Tue 2026-02-10 18:00+0100", "carol"),
        ("Tue 2026-02-10 18:00+0100", "Wed 2026-02-11 09:00+0100", "dave"),
        ("Wed 2026-02-11 09:00+0100", "Wed 2026-02-11 18:00+0100", "carol"),
        ("Thu 2026-02-12 09:00+0100", "Thu 2026-02-12 18:00+0100", "carol"),
        ("Fri 2026-02-13 09:00+0100", "Fri 2026-02-13 18:00+0100", "carol"),
    ]
    assert schedule.who(at("2026-02-16 09:00")) == "alice"
    assert schedule.shifts(at("2026-02-10 00:00"), at("2026-02-10 00:00")) == []


def test_empty_section_means_no_schedules() -> None:
    """Test that an empty `oncall:` section gives no schedules."""
    assert parse("oncall:\n") == {}


def test_merges_consecutive_turns_of_the_same_member() -> None:
    """Test that a one-member rotation gives one shift, not one per handoff."""
    schedule = one("      - {name: w, start: '2026-01-01 09:00', length: 1d, members: [solo]}\n")
    assert shown(schedule.shifts(at("2026-01-02 00:00"), at("2026-01-09 00:00"))) == [
        ("Fri 2026-01-02 00:00+0100", "Fri 2026-01-09 00:00+0100", "solo"),
    ]


@settings(max_examples=150, deadline=None)
@given(
    start_hour=st.integers(min_value=0, max_value=23),
    length=st.sampled_from(["1h", "3h", "8h", "1d", "2d", "1w"]),
    window=st.sampled_from(
        ["", "{from: '01:30', to: '02:30'}", "{weekdays: [sun, mon], from: '22:00', to: '03:00'}"]
    ),
    begin=st.floats(min_value=at("2026-03-27 00:00"), max_value=at("2026-03-30 00:00")),
    span=st.floats(min_value=1.0, max_value=4 * 86400.0),
    offsets=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=8),
    autumn=st.booleans(),
)
def test_who_equals_the_shift_covering_t(
    *,
    start_hour: int,
    length: str,
    window: str,
    begin: float,
    span: float,
    offsets: list[float],
    autumn: bool,
) -> None:
    """Test that who(t) is the person of the shift covering t, or None where none does."""
    active = f", active: {window}" if window else ""
    schedule = one(
        "      - {name: base, start: '2026-03-20 02:00', length: 1d, members: [a, b]}\n"
        f"      - {{name: top, start: '2026-03-25 {start_hour:02d}:30', length: {length},\n"
        f"         members: [c, d, e]{active}}}\n",
        "      - {who: o, from: '2026-03-29 01:45', to: '2026-03-29 03:15'}\n"
        "      - {who: o, from: '2026-10-25 03:15', to: '2026-10-25 04:00'}\n",
    )
    if autumn:
        begin += at("2026-10-24 00:00") - at("2026-03-27 00:00")
    end = begin + span
    shifts = schedule.shifts(begin, end)
    for (_, first_end, first), (second_start, _, second) in itertools.pairwise(shifts):
        assert first_end <= second_start
        assert first_end < second_start or first != second
    for offset in offsets:
        moment = begin + offset * (end - begin)
        if moment >= end:
            continue
        covering: list[str | None] = [
            who for start, until, who in shifts if start <= moment < until
        ]
        assert (covering or [None]) == [schedule.who(moment)]
    for start, _, who in shifts:
        assert schedule.who(start) == who


ERRORS = [
    pytest.param(
        "oncall: {name: s}\n",
        "oncall.yaml:1:9: 'oncall' must be a list, not a mapping",
        id="0",
    ),
    pytest.param(
        "oncall:\n  - {name: s, time_zone: Mars/Base, rotations: []}\n",
        "oncall.yaml:2:26: on-call schedule 's': unknown time zone 'Mars/Base' (use an IANA name like Europe/Berlin or UTC)",
        id="1",
    ),
    pytest.param(
        "oncall:\n  - {name: s, time_zone: UTC, rotation: []}\n",
        "oncall.yaml:2:31: on-call schedule 's': unknown option 'rotation' (did you mean 'rotations'?)",
        id="2",
    ),
    pytest.param(
        "oncall:\n  - {name: s, time_zone: UTC}\n",
        "oncall.yaml:2:5: on-call schedule 's': missing required key 'rotations'",
        id="3",
    ),
    pytest.param(
        "oncall:\n  - {name: ' ', time_zone: UTC, rotations: []}\n",
        "oncall.yaml:2:12: on-call schedule 1: 'name' must not be empty",
        id="4",
    ),
    pytest.param(
        "oncall:\n  - {name: s, time_zone: UTC, rotations: []}\n",
        "oncall.yaml:2:42: on-call schedule 's': 'rotations' needs at least one rotation",
        id="5",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05 09:00', length: 1w, members: []}\n",
        "oncall.yaml:5:67: on-call schedule 's': rotation 'r': 'members' needs at least one member",
        id="6",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05 09:00', length: 1w, members: [a, 7]}\n",
        "oncall.yaml:5:71: on-call schedule 's': rotation 'r': a member must be text, not a number",
        id="7",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05 09:00', length: 1w, member: [a]}\n",
        "oncall.yaml:5:58: on-call schedule 's': rotation 'r': unknown rotation option 'member' (did you mean 'members'?)",
        id="8",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {start: '2026-01-05 09:00', length: 1w, members: [a]}\n",
        "oncall.yaml:5:9: on-call schedule 's': rotation 1: missing required key 'name'",
        id="9",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05', length: 1w, members: [a]}\n",
        "oncall.yaml:5:26: on-call schedule 's': rotation 'r': 'start' must be a local date and time like \"2026-01-05 09:00\"",
        id="10",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: 'monday 9', length: 1w, members: [a]}\n",
        "oncall.yaml:5:26: on-call schedule 's': rotation 'r': 'start' must be a local date and time like \"2026-01-05 09:00\"",
        id="11",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05 09:00+01:00', length: 1w, members: [a]}\n",
        "oncall.yaml:5:26: on-call schedule 's': rotation 'r': 'start' is local time in the schedule's time_zone: leave out the UTC offset",
        id="12",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05 09:00', length: 53w, members: [a]}\n",
        "oncall.yaml:5:54: on-call schedule 's': rotation 'r': 'length' must be from 1h to 52w, not 53w",
        id="13",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05 09:00', length: 0h, members: [a]}\n",
        "oncall.yaml:5:54: on-call schedule 's': rotation 'r': 'length' must be from 1h to 52w, not 0h",
        id="14",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05 09:00', length: 30m, members: [a]}\n",
        "oncall.yaml:5:54: on-call schedule 's': rotation 'r': 'length' must be like 12h, 1d or 1w, not '30m'",
        id="15",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05 09:00', length: 7, members: [a]}\n",
        "oncall.yaml:5:54: on-call schedule 's': rotation 'r': 'length' must be like 12h, 1d or 1w, not 7",
        id="16",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05 09:00', length: 1w, members: [a]}\n      - {name: r, start: '2026-01-05 09:00', length: 1w, members: [a]}\n",
        "oncall.yaml:6:16: on-call schedule 's': duplicate rotation name 'r' (first defined at oncall.yaml:5:16)",
        id="17",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05 09:00', length: 1w, members: [a], active: {weekdays: [mun]}}\n",
        "oncall.yaml:5:92: on-call schedule 's': rotation 'r': 'active': unknown weekday 'mun'; use names like monday or mon",
        id="18",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05 09:00', length: 1w, members: [a], active: {from: '09:00'}}\n",
        "oncall.yaml:5:80: on-call schedule 's': rotation 'r': 'active': 'from' and 'to' go together ('to' is missing)",
        id="19",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05 09:00', length: 1w, members: [a], active: {from: '09:00', to: '09:00'}}\n",
        "oncall.yaml:5:100: on-call schedule 's': rotation 'r': 'active': 'to' must differ from 'from'",
        id="20",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05 09:00', length: 1w, members: [a], active: {from: '9am', to: '18:00'}}\n",
        "oncall.yaml:5:87: on-call schedule 's': rotation 'r': 'active': 'from' must be a time from 00:00 to 23:59, not '9am'",
        id="21",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05 09:00', length: 1w, members: [a], active: {from: 09:00, to: 18:00}}\n",
        "oncall.yaml:5:98: on-call schedule 's': rotation 'r': 'active': 'to' must be quoted text like \"22:00\": unquoted, YAML reads 18:00 as the number 1080",
        id="22",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05 09:00', length: 1w, members: [a], active: {}}\n",
        "oncall.yaml:5:80: on-call schedule 's': rotation 'r': 'active': give 'weekdays', or 'from' and 'to', or all three",
        id="23",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05 09:00', length: 1w, members: [a], active: {until: '18:00'}}\n",
        "oncall.yaml:5:81: on-call schedule 's': rotation 'r': 'active': unknown option 'until'",
        id="24",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05 09:00', length: 1w, members: [a]}\n    overrides:\n      - {who: d, from: '2026-02-11 09:00', to: '2026-02-11 09:00'}\n",
        "oncall.yaml:7:48: on-call schedule 's': override 1: 'to' must be after 'from'",
        id="25",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05 09:00', length: 1w, members: [a]}\n    overrides:\n      - {who: d, from: '2026-02-11 09:00', to: '2026-02-10 09:00'}\n",
        "oncall.yaml:7:48: on-call schedule 's': override 1: 'to' must be after 'from'",
        id="26",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05 09:00', length: 1w, members: [a]}\n    overrides:\n      - {who: d, from: '2026-02-11 09:00'}\n",
        "oncall.yaml:7:9: on-call schedule 's': override 1: missing required key 'to'",
        id="27",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05 09:00', length: 1w, members: [a]}\n    overrides:\n      - {whom: d, from: '2026-02-11 09:00', to: '2026-02-12 09:00'}\n",
        "oncall.yaml:7:10: on-call schedule 's': override 1: unknown override option 'whom' (did you mean 'who'?)",
        id="28",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05 09:00', length: 1w, members: [a]}\n    overrides: {who: d}\n",
        "oncall.yaml:6:16: on-call schedule 's': 'overrides' must be a list, not a mapping",
        id="29",
    ),
    pytest.param(
        "oncall:\n  - name: s\n    time_zone: Europe/Berlin\n    rotations:\n      - {name: r, start: '2026-01-05 09:00', length: 1w, members: [a]}\n  - {name: s, time_zone: UTC, rotations: [{name: r, start: '2026-01-05 09:00', length: 1d, members: [b]}]}\n",
        "oncall.yaml:6:12: duplicate on-call schedule name 's' (first defined at oncall.yaml:2:11)",
        id="30",
    ),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_config_errors_name_file_line_and_problem(text: str, message: str) -> None:
    """Test that each config mistake is refused with its exact file:line message."""
    with pytest.raises(SourceError) as caught:
        parse(text)
    assert str(caught.value) == message
