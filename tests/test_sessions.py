"""Next session: RRULE or dates, strictly after an instant, local across DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inbox_guard.sessions import Sessions, next_session, parse_rrule

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")


def weekly(day: str = "WE", start: datetime = datetime(2026, 9, 2, 10, 0)) -> Sessions:
    return Sessions(rule=parse_rrule(f"FREQ=WEEKLY;BYDAY={day}", start))


def test_weekly_rule_gives_the_next_wednesday() -> None:
    sunday_night = datetime(2026, 11, 22, 23, 40, tzinfo=LONDON)
    assert next_session(weekly(), sunday_night, LONDON) == datetime(2026, 11, 25, 10, 0, tzinfo=LONDON)


def test_a_session_starting_exactly_now_is_not_next() -> None:
    at = datetime(2026, 11, 25, 10, 0, tzinfo=LONDON)
    assert next_session(weekly(), at, LONDON) == datetime(2026, 12, 2, 10, 0, tzinfo=LONDON)


def test_weekly_session_stays_at_local_time_across_dst() -> None:
    # 10:00 London is 09:00 UTC in summer and 10:00 UTC in winter.
    before = next_session(weekly(), datetime(2026, 10, 20, tzinfo=UTC), LONDON)
    after = next_session(weekly(), datetime(2026, 10, 27, tzinfo=UTC), LONDON)
    assert before is not None and after is not None
    assert before.astimezone(UTC).hour == 9 and after.astimezone(UTC).hour == 10
    assert (before.hour, after.hour) == (10, 10)


def test_date_list_and_exhausted_list() -> None:
    s = Sessions(dates=(datetime(2026, 11, 25, 10), datetime(2026, 12, 2, 10)))
    assert next_session(s, datetime(2026, 11, 26, tzinfo=LONDON), LONDON) == datetime(
        2026, 12, 2, 10, tzinfo=LONDON
    )
    assert next_session(s, datetime(2026, 12, 3, tzinfo=LONDON), LONDON) is None
    assert next_session(Sessions(), datetime(2026, 12, 3, tzinfo=LONDON), LONDON) is None


def test_finite_rule_ends() -> None:
    s = Sessions(rule=parse_rrule("FREQ=WEEKLY;COUNT=2", datetime(2026, 11, 2, 18, 0)))
    assert next_session(s, datetime(2026, 11, 20, tzinfo=NEW_YORK), NEW_YORK) is None


def test_session_in_repeated_hour_after_first_pass_through_it() -> None:
    # New York falls back on 2026-11-01: 01:30 happens twice. A session at 01:30
    # (first occurrence) is "after" 01:10 of the first pass, not after 01:40 of the second.
    s = Sessions(dates=(datetime(2026, 11, 1, 1, 30),))
    first_pass = datetime(2026, 11, 1, 1, 10, tzinfo=NEW_YORK)
    second_pass = datetime(2026, 11, 1, 1, 40, tzinfo=NEW_YORK).replace(fold=1)
    assert next_session(s, first_pass, NEW_YORK) is not None
    assert next_session(s, second_pass, NEW_YORK) is None


@pytest.mark.parametrize("bad", ["FREQ=FORTNIGHTLY", "BYDAY=XX;FREQ=WEEKLY", "nonsense"])
def test_bad_rrules_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="RRULE"):
        parse_rrule(bad, datetime(2026, 9, 2, 10))


@given(
    after=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2030, 1, 1),
                       timezones=st.just(UTC)),
    day=st.sampled_from(["MO", "TU", "WE", "TH", "FR", "SA", "SU"]),
)
def test_next_weekly_session_is_after_and_within_a_week(after: datetime, day: str) -> None:
    nxt = next_session(weekly(day, datetime(2025, 12, 29, 10, 0)), after, LONDON)
    assert nxt is not None
    assert after < nxt.astimezone(UTC) <= after + timedelta(days=7, hours=1)
    assert (nxt.hour, nxt.minute) == (10, 0)
