"""Opening hours: pure, zone-aware, DST-correct, exclusive ends, closed dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inbox_guard.hours import (
    Schedule,
    is_open,
    is_out_of_hours,
    parse_closed,
    parse_day,
    parse_interval,
    window_key,
)

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")


def schedule(tz: ZoneInfo = LONDON, closed: tuple[str, ...] = ()) -> Schedule:
    week = {d: parse_day(["09:00-17:00"]) for d in range(5)}
    week[1] = parse_day(["09:00-12:30", "13:30-17:00"])
    return Schedule(tz=tz, days=week, closed=tuple(parse_closed(c) for c in closed))


def local(tz: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=tz).replace(fold=fold)  # type: ignore[misc,arg-type]


def test_interval_end_is_exclusive_and_start_inclusive() -> None:
    s = schedule()
    assert is_open(local(LONDON, 2026, 11, 16, 9, 0), s)
    assert is_open(local(LONDON, 2026, 11, 16, 16, 59, 59), s)
    assert is_out_of_hours(local(LONDON, 2026, 11, 16, 17, 0, 0), s)
    assert is_out_of_hours(local(LONDON, 2026, 11, 16, 8, 59, 59), s)


def test_lunch_gap_and_weekend_are_out_of_hours() -> None:
    s = schedule()
    assert is_out_of_hours(local(LONDON, 2026, 11, 17, 13, 0), s)  # Tuesday lunch
    assert is_out_of_hours(local(LONDON, 2026, 11, 21, 11, 0), s)  # Saturday


def test_closed_dates_are_inclusive() -> None:
    s = schedule(closed=("2026-12-24..2027-01-02", "2027-04-05"))
    assert is_out_of_hours(local(LONDON, 2026, 12, 24, 10, 0), s)
    assert is_out_of_hours(local(LONDON, 2027, 1, 1, 10, 0), s)  # a Friday
    assert is_open(local(LONDON, 2027, 1, 4, 10, 0), s)
    assert is_out_of_hours(local(LONDON, 2027, 4, 5, 10, 0), s)


def test_instant_is_judged_in_the_practice_zone_not_the_senders() -> None:
    s = schedule()
    # 08:30 in London is 09:30 in Berlin; the practice is in London, so closed.
    berlin = datetime(2026, 11, 16, 9, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert is_out_of_hours(berlin, s)


@pytest.mark.parametrize(
    ("tz", "day"),
    [(LONDON, date(2026, 3, 29)), (NEW_YORK, date(2026, 3, 8))],
)
def test_spring_forward_day_uses_local_wall_clock(tz: ZoneInfo, day: date) -> None:
    # Make the DST Sunday an open day from 01:00 to 04:00; the skipped hour
    # (01:00-02:00 London, 02:00-03:00 New York) has no instants, the rest follow the wall.
    s = Schedule(tz=tz, days={6: parse_day(["01:00-04:00"])})
    start = datetime.combine(day, datetime.min.time(), tzinfo=tz).astimezone(UTC)
    for minutes in range(0, 6 * 60, 7):
        instant = start + timedelta(minutes=minutes)
        wall = instant.astimezone(tz)
        expected = 60 <= wall.hour * 60 + wall.minute < 240
        assert is_open(instant, s) == expected, wall


@pytest.mark.parametrize(
    ("tz", "day", "repeated_hour"),
    [(LONDON, date(2026, 10, 25), 1), (NEW_YORK, date(2026, 11, 1), 1)],
)
def test_fall_back_repeated_hour_counts_both_times(
    tz: ZoneInfo, day: date, repeated_hour: int
) -> None:
    s = Schedule(tz=tz, days={6: parse_day([f"0{repeated_hour}:00-0{repeated_hour}:30"])})
    first = local(tz, day.year, day.month, day.day, repeated_hour, 15, fold=0)
    second = local(tz, day.year, day.month, day.day, repeated_hour, 15, fold=1)
    assert first.astimezone(UTC) != second.astimezone(UTC)
    assert is_open(first, s) and is_open(second, s)
    assert is_out_of_hours(local(tz, day.year, day.month, day.day, repeated_hour, 45, fold=1), s)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("9-17", "not an interval"),
        ("09:00-17", "not an interval"),
        ("17:00-09:00", "ends before"),
        ("25:00-26:00", "out of range"),
        ("09:00-24:30", "out of range"),
    ],
)
def test_bad_intervals_are_explained(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_interval(text)


def test_overlapping_intervals_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        parse_day(["09:00-13:00", "12:00-17:00"])


def test_window_key_names_the_last_closing_time() -> None:
    s = schedule()
    fri_evening = local(LONDON, 2026, 11, 20, 22, 0)
    sunday = local(LONDON, 2026, 11, 22, 23, 40)
    monday_early = local(LONDON, 2026, 11, 23, 8, 0)
    monday_evening = local(LONDON, 2026, 11, 23, 18, 0)
    assert window_key(fri_evening, s) == "2026-11-20T17:00"
    assert window_key(sunday, s) == window_key(fri_evening, s) == window_key(monday_early, s)
    assert window_key(monday_evening, s) == "2026-11-23T17:00"
    assert window_key(local(LONDON, 2026, 11, 17, 13, 0), s) == "2026-11-17T12:30"


ZONES = st.sampled_from(
    [LONDON, NEW_YORK, ZoneInfo("Australia/Lord_Howe"), ZoneInfo("Asia/Kolkata"), ZoneInfo("UTC")]
)
INSTANTS = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
)


# The test schedule written out again, independently of hours.py: minutes of the
# local day when the practice is open, by weekday (Monday 0), and its closed dates.
OPEN_MINUTES = {d: [(9 * 60, 17 * 60)] for d in range(5)} | {
    1: [(9 * 60, 12 * 60 + 30), (13 * 60 + 30, 17 * 60)]
}
CLOSED = (date(2026, 12, 24), date(2027, 1, 2))


@settings(max_examples=300)
@given(instant=INSTANTS, tz=ZONES)
def test_every_instant_is_in_or_out_as_the_wall_clock_says(instant: datetime, tz: ZoneInfo) -> None:
    s = schedule(tz, closed=("2026-12-24..2027-01-02",))
    wall = instant.astimezone(tz)
    minutes = wall.hour * 60 + wall.minute
    closed = CLOSED[0] <= wall.date() <= CLOSED[1]
    expected = not closed and any(
        start <= minutes < end for start, end in OPEN_MINUTES.get(wall.weekday(), [])
    )
    assert is_open(instant, s) == expected
    assert is_out_of_hours(instant, s) == (not expected)


@settings(max_examples=200)
@given(instant=INSTANTS, tz=ZONES, gap=st.integers(min_value=1, max_value=72 * 60))
def test_same_window_exactly_when_no_opening_lies_between(
    instant: datetime, tz: ZoneInfo, gap: int
) -> None:
    s = schedule(tz)
    later = instant + timedelta(minutes=gap)
    if is_open(instant, s) or is_open(later, s):
        return
    opened_between = any(is_open(instant + timedelta(minutes=m), s) for m in range(0, gap + 1))
    assert (window_key(instant, s) == window_key(later, s)) == (not opened_between)


@pytest.mark.parametrize(
    "text", ["9999-12-31", "2026-12-24..9999-12-31", "1999-12-31", "0001-01-01..2026-01-01"]
)
def test_closed_dates_outside_2000_to_2100_are_refused(text: str) -> None:
    with pytest.raises(
        ValueError, match=r"is out of range \(dates from 2000-01-01 to 2100-12-31\)"
    ):
        parse_closed(text)


def test_closed_dates_at_the_ends_of_the_range_are_fine() -> None:
    assert parse_closed("2000-01-01..2100-12-31") == (date(2000, 1, 1), date(2100, 12, 31))
    s = schedule(closed=("2100-12-31",))
    assert is_out_of_hours(local(LONDON, 2100, 12, 31, 10), s)
    assert window_key(local(LONDON, 2100, 12, 31, 10), s) == "2100-12-30T17:00"
