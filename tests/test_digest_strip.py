"""The digest's 24-hour strip: every hour once, noon to noon, bars in proportion to the
busiest hour of the last 28 days, so a cluster late at night shows as one."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from inbox_guard.digest.content import LEVELS, ClientSummary, level, strip

COUNTS = st.dictionaries(st.integers(min_value=0, max_value=23), st.integers(0, 500))


@given(COUNTS)
def test_the_strip_has_every_hour_once_noon_to_noon_with_its_count(counts: dict[int, int]) -> None:
    hours = strip(counts)
    assert [h for h, _ in hours] == [*range(12, 24), *range(12)]
    assert all(n == counts.get(h, 0) for h, n in hours)


@given(COUNTS)
def test_bars_are_in_proportion_to_the_busiest_hour(counts: dict[int, int]) -> None:
    peak = max(counts.values(), default=0)
    levels = {h: level(n, peak) for h, n in strip(counts)}
    for h, lv in levels.items():
        n = counts.get(h, 0)
        assert 0 <= lv <= LEVELS
        assert (lv == 0) == (n == 0)  # a single contact is never invisible
        if n == peak and n:
            assert lv == LEVELS
    for a in counts:  # more contacts never make a lower bar
        for b in counts:
            if counts[a] <= counts[b]:
                assert levels[a] <= levels[b]


def test_a_late_night_cluster_reads_as_one_stretch() -> None:
    summary = ClientSummary(
        client="jane-doe",
        name="Jane",
        items=[],
        next_session=datetime(2026, 11, 18, 10, tzinfo=UTC),
        hours=[(23, 4), (0, 3), (1, 1), (19, 1)],
        total=9,
    )
    # noon ... 19h ... 23h 00h 01h ... 11h: the night's contacts side by side
    assert summary.sparkline == "·······▂···█▆▂" + "·" * 10
