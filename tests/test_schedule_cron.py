"""CronSpec: parsing, validation and the ticks of a cron expression in a time zone, DST included."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter  # type: ignore[import-untyped]  # croniter ships no type information

from pyworkflow.schedules.cron import SHORTCUTS, CronSpec

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def hm(ticks: list[datetime]) -> list[str]:
    return [t.strftime("%m-%d %H:%M:%S") for t in ticks]


# --- parsing and validation ------------------------------------------------------------------


def test_parse_keeps_the_expression_stripped_and_defaults_to_utc() -> None:
    spec = CronSpec.parse("  */5 * * * *\n")
    assert spec.expression == "*/5 * * * *"
    assert spec.timezone == "UTC"
    assert spec == CronSpec("*/5 * * * *", "UTC")
    assert hash(spec) == hash(CronSpec.parse("*/5 * * * *"))
    assert spec != CronSpec.parse("*/5 * * * *", "Europe/Paris")
    assert not spec.has_seconds


@pytest.mark.parametrize(
    ("expression", "field", "value"),
    [
        ("61 * * * *", "minute", "61"),
        ("* 24 * * *", "hour", "24"),
        ("* * 0 * *", "day-of-month", "0"),
        ("* * * 13 *", "month", "13"),
        ("* * * * 8", "day-of-week", "8"),
        ("* * * foo *", "month", "foo"),
        ("* * * * funday", "day-of-week", "funday"),
        ("*/0 * * * *", "minute", "*/0"),
        ("1-70 * * * *", "minute", "1-70"),
        ("60 * * * * *", "second", "60"),
        ("* 60 * * * *", "minute", "60"),
        ("H * * * *", "minute", "H"),
        ("0 R * * *", "hour", "R"),
        ("0 H(0-5) * * *", "hour", "H(0-5)"),
    ],
)
def test_a_wrong_field_is_named(expression: str, field: str, value: str) -> None:
    with pytest.raises(ValueError) as info:
        CronSpec.parse(expression)
    message = str(info.value)
    assert f"cron expression {expression!r}" in message
    assert f"the {field} field {value!r}" in message


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("* * * * * * *", "has 7 field(s)"),
        ("* * * *", "has 4 field(s)"),
        ("garbage", "has 1 field(s)"),
        ("@reboot", "unknown shortcut"),
        ("@every 5m", "unknown shortcut"),
        ("0 0 31 2 *", "can never occur"),
        ("0 0 30 feb *", "can never occur"),
    ],
)
def test_a_wrong_expression_is_named(expression: str, says: str) -> None:
    with pytest.raises(ValueError) as info:
        CronSpec.parse(expression)
    message = str(info.value)
    assert f"cron expression {expression!r}" in message
    assert says in message
    if "field(s)" in message or "shortcut" in message:
        assert "5 fields" in message and "6 with seconds first" in message and "@hourly" in message


def test_an_empty_expression_says_what_to_write() -> None:
    with pytest.raises(ValueError, match=r"empty: use 5 fields"):
        CronSpec.parse("   ")


def test_non_text_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"cron expression must be a str, not int: 5"):
        CronSpec.parse(5)  # type: ignore[arg-type]  # the wrong type is the point
    with pytest.raises(TypeError, match=r"time zone must be a str .* not NoneType"):
        CronSpec.parse("* * * * *", None)  # type: ignore[arg-type]  # the wrong type is the point


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "utc ", "../../etc/passwd", "Europe/"])
def test_an_unknown_time_zone_is_named(zone: str) -> None:
    with pytest.raises(ValueError) as info:
        CronSpec.parse("* * * * *", zone)
    assert f"unknown time zone {zone!r}" in str(info.value)
    assert "IANA" in str(info.value)


def test_direct_construction_validates_too() -> None:
    with pytest.raises(ValueError, match="minute field"):
        CronSpec("99 * * * *")
    with pytest.raises(ValueError, match="unknown time zone 'Nowhere'"):
        CronSpec("* * * * *", "Nowhere")


# --- UTC basics --------------------------------------------------------------------------------


def test_next_after_is_strictly_after() -> None:
    spec = CronSpec.parse("*/15 * * * *")
    assert spec.next_after(utc(2026, 1, 1, 10, 0)) == utc(2026, 1, 1, 10, 15)
    assert spec.next_after(utc(2026, 1, 1, 10, 14, 59, 999999)) == utc(2026, 1, 1, 10, 15)
    assert spec.next_after(utc(2026, 1, 1, 23, 50)) == utc(2026, 1, 2, 0, 0)
    tick = spec.next_after(utc(2026, 1, 1, 10, 0))
    assert tick.tzinfo is UTC


def test_next_after_accepts_any_aware_datetime_and_answers_in_utc() -> None:
    spec = CronSpec.parse("0 12 * * *")
    after = datetime(2026, 6, 1, 13, 30, tzinfo=PARIS)  # 11:30 UTC
    assert spec.next_after(after) == utc(2026, 6, 1, 12, 0)
    assert spec.next_after(after).utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused() -> None:
    spec = CronSpec.parse("* * * * *")
    with pytest.raises(ValueError, match="after must be an aware datetime"):
        spec.next_after(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="start must be an aware datetime"):
        spec.ticks(datetime(2026, 1, 1), utc(2026, 1, 2), 10)
    with pytest.raises(ValueError, match="end must be an aware datetime"):
        spec.ticks(utc(2026, 1, 1), datetime(2026, 1, 2), 10)
    with pytest.raises(TypeError, match="after must be a datetime, not str"):
        spec.next_after("2026-01-01")  # type: ignore[arg-type]  # the wrong type is the point


def test_names_ranges_steps_and_lists() -> None:
    weekdays = CronSpec.parse("30 9 * * MON-fri")
    # 2026-01-02 is a Friday.
    assert hm(weekdays.ticks(utc(2026, 1, 2), utc(2026, 1, 6, 23, 59), 10)) == [
        "01-02 09:30:00",
        "01-05 09:30:00",
        "01-06 09:30:00",
    ]
    months = CronSpec.parse("0 0 1 jan,Jul *")
    assert months.ticks(utc(2026, 1, 1), utc(2027, 12, 31), 10) == [
        utc(2026, 1, 1),
        utc(2026, 7, 1),
        utc(2027, 1, 1),
        utc(2027, 7, 1),
    ]
    stepped = CronSpec.parse("0-30/10,45 8-9 * * *")
    assert hm(stepped.ticks(utc(2026, 1, 1), utc(2026, 1, 1, 23), 20)) == [
        "01-01 08:00:00",
        "01-01 08:10:00",
        "01-01 08:20:00",
        "01-01 08:30:00",
        "01-01 08:45:00",
        "01-01 09:00:00",
        "01-01 09:10:00",
        "01-01 09:20:00",
        "01-01 09:30:00",
        "01-01 09:45:00",
    ]


def test_day_of_month_or_day_of_week_as_in_classic_cron() -> None:
    # The 13th, or any Friday. 2026-02-13 is a Friday; 2026-03-13 is a Friday as well.
    spec = CronSpec.parse("0 0 13 * fri")
    assert hm(spec.ticks(utc(2026, 2, 1), utc(2026, 2, 28), 10)) == [
        "02-06 00:00:00",
        "02-13 00:00:00",
        "02-20 00:00:00",
        "02-27 00:00:00",
    ]


@pytest.mark.parametrize(
    ("shortcut", "first", "second"),
    [
        ("@hourly", utc(2026, 5, 5, 11), utc(2026, 5, 5, 12)),
        ("@daily", utc(2026, 5, 6), utc(2026, 5, 7)),
        ("@midnight", utc(2026, 5, 6), utc(2026, 5, 7)),
        ("@weekly", utc(2026, 5, 10), utc(2026, 5, 17)),  # Sundays
        ("@monthly", utc(2026, 6, 1), utc(2026, 7, 1)),
        ("@yearly", utc(2027, 1, 1), utc(2028, 1, 1)),
        ("@annually", utc(2027, 1, 1), utc(2028, 1, 1)),
        ("@Daily", utc(2026, 5, 6), utc(2026, 5, 7)),
    ],
)
def test_shortcuts(shortcut: str, first: datetime, second: datetime) -> None:
    spec = CronSpec.parse(shortcut)
    after = utc(2026, 5, 5, 10, 30)  # a Tuesday
    assert spec.next_after(after) == first
    assert spec.next_after(first) == second
    assert spec.expression == shortcut
    assert shortcut.lower() in SHORTCUTS


def test_six_fields_put_the_seconds_first() -> None:
    every_second = CronSpec.parse("*/1 * * * * *")
    assert every_second.has_seconds
    assert every_second.next_after(utc(2026, 1, 1, 0, 0, 0, 500000)) == utc(2026, 1, 1, 0, 0, 1)
    assert every_second.ticks(utc(2026, 1, 1), utc(2026, 1, 1, 0, 0, 3), 10) == [
        utc(2026, 1, 1, 0, 0, s) for s in range(4)
    ]
    # Second 30 of minute 5 of every hour: the first field is the second, not the minute.
    spec = CronSpec.parse("30 5 * * * *")
    assert spec.ticks(utc(2026, 1, 1), utc(2026, 1, 1, 2), 10) == [
        utc(2026, 1, 1, 0, 5, 30),
        utc(2026, 1, 1, 1, 5, 30),
    ]


def test_ticks_bounds_are_inclusive() -> None:
    spec = CronSpec.parse("0 * * * *")
    assert spec.ticks(utc(2026, 1, 1, 10), utc(2026, 1, 1, 12), 10) == [
        utc(2026, 1, 1, 10),
        utc(2026, 1, 1, 11),
        utc(2026, 1, 1, 12),
    ]
    just_inside = spec.ticks(utc(2026, 1, 1, 9, 59, 59, 999999), utc(2026, 1, 1, 12, 0, 0, 1), 10)
    assert len(just_inside) == 3
    just_outside = spec.ticks(utc(2026, 1, 1, 10, 0, 0, 1), utc(2026, 1, 1, 11, 59, 59, 999999), 10)
    assert just_outside == [utc(2026, 1, 1, 11)]
    assert spec.ticks(utc(2026, 1, 1, 10), utc(2026, 1, 1, 10), 10) == [utc(2026, 1, 1, 10)]
    assert spec.ticks(utc(2026, 1, 1, 12), utc(2026, 1, 1, 10), 10) == []


def test_ticks_limit_keeps_the_oldest() -> None:
    spec = CronSpec.parse("0 * * * *")
    assert spec.ticks(utc(2026, 1, 1), utc(2026, 1, 2), 2) == [
        utc(2026, 1, 1, 0),
        utc(2026, 1, 1, 1),
    ]
    assert spec.ticks(utc(2026, 1, 1), utc(2026, 1, 2), 0) == []
    assert len(spec.ticks(utc(2026, 1, 1), utc(2026, 1, 2), 1000)) == 25
    with pytest.raises(ValueError, match="limit must be 0 or more, got -1"):
        spec.ticks(utc(2026, 1, 1), utc(2026, 1, 2), -1)
    with pytest.raises(TypeError, match="limit must be an int"):
        spec.ticks(utc(2026, 1, 1), utc(2026, 1, 2), 2.0)  # type: ignore[arg-type]  # on purpose


def test_a_day_of_every_second() -> None:
    spec = CronSpec.parse("* * * * * *", "Europe/Paris")
    ticks = spec.ticks(utc(2026, 6, 1), utc(2026, 6, 2), 100_000)
    assert len(ticks) == 86_401
    assert ticks[0] == utc(2026, 6, 1) and ticks[-1] == utc(2026, 6, 2)
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(ticks))
    assert spec.ticks(utc(2026, 6, 1), utc(2026, 6, 2), 10) == ticks[:10]


# --- time zones and daylight saving ------------------------------------------------------------


def test_local_wall_clock_in_winter_and_summer() -> None:
    spec = CronSpec.parse("0 9 * * *", "Europe/Paris")
    assert spec.next_after(utc(2026, 1, 15)) == utc(2026, 1, 15, 8)  # CET, UTC+1
    assert spec.next_after(utc(2026, 7, 15)) == utc(2026, 7, 15, 7)  # CEST, UTC+2


def test_paris_spring_gap_daily() -> None:
    # 2026-03-29: 02:00 CET -> 03:00 CEST (01:00 UTC); 02:30 does not exist, fires at 03:30 CEST.
    spec = CronSpec.parse("30 2 * * *", "Europe/Paris")
    assert spec.ticks(utc(2026, 3, 27), utc(2026, 3, 31), 10) == [
        utc(2026, 3, 27, 1, 30),
        utc(2026, 3, 28, 1, 30),
        utc(2026, 3, 29, 1, 30),
        utc(2026, 3, 30, 0, 30),
    ]
    assert spec.next_after(utc(2026, 3, 29, 1, 29)) == utc(2026, 3, 29, 1, 30)
    assert spec.next_after(utc(2026, 3, 29, 1, 30)) == utc(2026, 3, 30, 0, 30)


def test_paris_spring_gap_hourly_is_one_tick() -> None:
    spec = CronSpec.parse("0 * * * *", "Europe/Paris")
    # 02:00 local does not exist: it maps to 03:00 CEST, which is also the 03:00 tick.
    assert spec.ticks(utc(2026, 3, 28, 23), utc(2026, 3, 29, 3), 10) == [
        utc(2026, 3, 28, 23),  # 00:00 CET
        utc(2026, 3, 29, 0),  # 01:00 CET
        utc(2026, 3, 29, 1),  # 02:00 (skipped) = 03:00 CEST
        utc(2026, 3, 29, 2),  # 04:00 CEST
        utc(2026, 3, 29, 3),  # 05:00 CEST
    ]
    assert spec.next_after(utc(2026, 3, 29, 0)) == utc(2026, 3, 29, 1)
    assert spec.next_after(utc(2026, 3, 29, 1)) == utc(2026, 3, 29, 2)


def test_paris_spring_gap_with_ticks_inside_and_after_it() -> None:
    # 02:15 and 02:45 are skipped, 03:15 and 03:45 exist: the same instants, one tick each.
    spec = CronSpec.parse("15,45 2,3 * * *", "Europe/Paris")
    assert spec.ticks(utc(2026, 3, 29), utc(2026, 3, 29, 23), 10) == [
        utc(2026, 3, 29, 1, 15),
        utc(2026, 3, 29, 1, 45),
    ]


def test_next_after_just_after_the_gap_still_sees_a_skipped_time() -> None:
    # At 01:40 UTC (03:40 CEST) the wall clock is past 02:45, yet 02:45 fires at 03:45 CEST.
    spec = CronSpec.parse("45 2 * * *", "Europe/Paris")
    assert spec.next_after(utc(2026, 3, 29, 1, 40)) == utc(2026, 3, 29, 1, 45)
    # An aware time written in the gap is read with fold=0: 02:30 CET = 01:30 UTC.
    assert spec.next_after(datetime(2026, 3, 29, 2, 30, tzinfo=PARIS)) == utc(2026, 3, 29, 1, 45)


def test_paris_fall_back_daily_fires_at_the_first_occurrence() -> None:
    # 2026-10-25: 03:00 CEST -> 02:00 CET (01:00 UTC); 02:30 happens at 00:30 and 01:30 UTC.
    spec = CronSpec.parse("30 2 * * *", "Europe/Paris")
    assert spec.ticks(utc(2026, 10, 24), utc(2026, 10, 27), 10) == [
        utc(2026, 10, 24, 0, 30),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 26, 1, 30),
    ]
    assert spec.next_after(utc(2026, 10, 25, 0, 30)) == utc(2026, 10, 26, 1, 30)


def test_paris_fall_back_hourly_skips_the_second_occurrence() -> None:
    spec = CronSpec.parse("0 * * * *", "Europe/Paris")
    assert spec.ticks(utc(2026, 10, 24, 23), utc(2026, 10, 25, 3), 10) == [
        utc(2026, 10, 24, 23),  # 01:00 CEST
        utc(2026, 10, 25, 0),  # 02:00 CEST, the first 02:00
        utc(2026, 10, 25, 2),  # 03:00 CET; 01:00 UTC (02:00 CET, the second 02:00) does not fire
        utc(2026, 10, 25, 3),  # 04:00 CET
    ]


def test_next_after_from_inside_the_repeated_hour() -> None:
    # 01:15 UTC is 02:15 CET, the second time 02:15 happens: the rest of that hour already fired.
    after = utc(2026, 10, 25, 1, 15)
    assert CronSpec.parse("0 * * * *", "Europe/Paris").next_after(after) == utc(2026, 10, 25, 2)
    assert CronSpec.parse("*/30 * * * *", "Europe/Paris").next_after(after) == utc(2026, 10, 25, 2)
    assert CronSpec.parse("* * * * *", "Europe/Paris").next_after(after) == utc(2026, 10, 25, 2)
    assert CronSpec.parse("30 2 * * *", "Europe/Paris").next_after(after) == utc(
        2026, 10, 26, 1, 30
    )
    # The same instant written as a Paris time with fold=1.
    # (PEP 495: an ambiguous time never compares equal across zones, so compare in UTC.)
    second_occurrence = datetime(2026, 10, 25, 2, 15, fold=1, tzinfo=PARIS)
    assert second_occurrence.astimezone(UTC) == after
    assert CronSpec.parse("* * * * *", "Europe/Paris").next_after(second_occurrence) == utc(
        2026, 10, 25, 2
    )
    # From inside the first occurrence, the ticks of that hour are still ahead.
    first = utc(2026, 10, 25, 0, 15)  # 02:15 CEST
    assert CronSpec.parse("30 2 * * *", "Europe/Paris").next_after(first) == utc(
        2026, 10, 25, 0, 30
    )


def test_new_york_spring_forward_and_fall_back() -> None:
    # 2026-03-08: 02:00 EST -> 03:00 EDT (07:00 UTC). 02:30 fires at 03:30 EDT = 07:30 UTC.
    daily = CronSpec.parse("30 2 * * *", "America/New_York")
    assert daily.ticks(utc(2026, 3, 7), utc(2026, 3, 10), 10) == [
        utc(2026, 3, 7, 7, 30),
        utc(2026, 3, 8, 7, 30),
        utc(2026, 3, 9, 6, 30),
    ]
    # 2026-11-01: 02:00 EDT -> 01:00 EST (06:00 UTC). 01:30 happens at 05:30 and 06:30 UTC.
    repeated = CronSpec.parse("30 1 * * *", "America/New_York")
    assert repeated.ticks(utc(2026, 10, 31), utc(2026, 11, 3), 10) == [
        utc(2026, 10, 31, 5, 30),
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 2, 6, 30),
    ]
    assert repeated.next_after(utc(2026, 11, 1, 6)) == utc(2026, 11, 2, 6, 30)
    hourly = CronSpec.parse("0 * * * *", "America/New_York")
    assert hourly.ticks(utc(2026, 3, 8, 5), utc(2026, 3, 8, 9), 10) == [
        utc(2026, 3, 8, 5),  # 00:00 EST
        utc(2026, 3, 8, 6),  # 01:00 EST
        utc(2026, 3, 8, 7),  # 02:00 (skipped) = 03:00 EDT
        utc(2026, 3, 8, 8),  # 04:00 EDT
        utc(2026, 3, 8, 9),
    ]
    assert hourly.ticks(utc(2026, 11, 1, 4), utc(2026, 11, 1, 8), 10) == [
        utc(2026, 11, 1, 4),  # 00:00 EDT
        utc(2026, 11, 1, 5),  # 01:00 EDT, the first 01:00
        utc(2026, 11, 1, 7),  # 02:00 EST; 06:00 UTC (01:00 EST) does not fire
        utc(2026, 11, 1, 8),
    ]


def test_every_second_across_both_changes() -> None:
    spec = CronSpec.parse("* * * * * *", "Europe/Paris")
    spring = spec.ticks(utc(2026, 3, 29), utc(2026, 3, 30), 100_000)
    # The 3600 skipped seconds fire on the same instants as 03:00-03:59 CEST: no hole, no repeat.
    assert len(spring) == 86_401
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(spring))
    autumn = spec.ticks(utc(2026, 10, 25), utc(2026, 10, 26), 100_000)
    # The second occurrence of 02:00-02:59 does not fire: one hour without ticks.
    assert len(autumn) == 86_401 - 3600
    gaps = [(a, b) for a, b in itertools.pairwise(autumn) if b - a != timedelta(seconds=1)]
    assert gaps == [(utc(2026, 10, 25, 0, 59, 59), utc(2026, 10, 25, 2))]


# --- against a brute-force reading of the rules ------------------------------------------------


def _reference(expression: str, zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Every naive local minute that matches, read with fold=0, kept if in [start, end]."""
    naive = (start - timedelta(days=1)).replace(tzinfo=None)
    stop = (end + timedelta(days=1)).replace(tzinfo=None)
    found: set[datetime] = set()
    while naive <= stop:
        if croniter.match(expression, naive):
            instant = naive.replace(tzinfo=zone).astimezone(UTC)
            if start <= instant <= end:
                found.add(instant)
        naive += timedelta(minutes=1)
    return sorted(found)


@pytest.mark.parametrize(
    ("expression", "zone", "day"),
    [
        ("*/20 * * * *", "Europe/Paris", utc(2026, 3, 29)),
        ("*/20 * * * *", "Europe/Paris", utc(2026, 10, 25)),
        ("10,35 2 * * *", "Australia/Lord_Howe", utc(2026, 10, 3, 12)),  # 30-minute change
        ("10,35 1,2 * * *", "Australia/Lord_Howe", utc(2026, 4, 4, 12)),
        ("0,30 * * * *", "Pacific/Apia", utc(2011, 12, 29)),  # Samoa skipped 2011-12-30
        ("15 */3 * * *", "America/New_York", utc(2026, 3, 8)),
        ("5 0 * * *", "America/Santiago", utc(2026, 9, 5, 12)),  # change at local midnight
    ],
)
def test_ticks_and_next_after_match_the_rules(expression: str, zone: str, day: datetime) -> None:
    tz = ZoneInfo(zone)
    start, end = day - timedelta(days=1), day + timedelta(days=2)
    expected = _reference(expression, tz, start, end)
    spec = CronSpec.parse(expression, zone)
    assert spec.ticks(start, end, 10_000) == expected
    # next_after from every 11th minute of the window, inside gaps and repeated hours included.
    probe = start
    while probe < expected[-1]:
        want = next(t for t in expected if t > probe)
        assert spec.next_after(probe) == want, probe
        probe += timedelta(minutes=11)
