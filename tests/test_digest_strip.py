"""The digest's 24-hour strip: every hour once, noon to noon, bars in proportion to the
busiest hour of the last 28 days, so a cluster late at night shows as one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from inbox_guard import compose
from inbox_guard.digest.content import LEVELS, ClientSummary, build, level, strip
from inbox_guard.digest.render import digest_message
from inbox_guard.model import Client, Contact, Settings
from inbox_guard.schema import MainConfig
from inbox_guard.sessions import Sessions

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


def _contact(received: datetime, n: int) -> Contact:
    return Contact(
        key=f"k{n}",
        client="jane-doe",
        mailbox="INBOX",
        uidvalidity=1,
        uid=n,
        received=received,
        address="jane@example.org",
        message_id=None,
        refs=(),
        subject=None,
        draft=False,
        suppressed="window",
        window="w",
        session=None,
        agenda="a.md",
        risk=False,
    )


def test_the_hours_are_listed_in_the_strips_order_as_the_readme_shows() -> None:
    main = MainConfig.model_validate(
        {
            "timezone": "UTC",
            "therapist": {"name": "Alex", "email": "alex@example.org", "emergency_text": "112"},
            "account": {"host": "localhost", "username": "a", "password_env": "X"},
        }
    )
    jane = Client(
        id="jane-doe",
        name="Jane Doe",
        emails=("jane@example.org",),
        sessions=Sessions(),
        active=True,
    )
    settings = Settings(path=Path("x.toml"), main=main, clients={"jane-doe": jane})
    now = datetime(2026, 11, 16, 7, 30, tzinfo=UTC)
    at = [(1, 19), (2, 23), (3, 23), (4, 23), (5, 23), (6, 0), (7, 0), (8, 0), (9, 1)]
    recent = [
        _contact(now - timedelta(days=d, hours=(7 - h) % 24, minutes=30), n)
        for n, (d, h) in enumerate(at)
    ]
    digest = build(recent[-1:], recent, settings, now, None)
    message = digest_message(settings, compose.env_for(settings), digest, "<d@x>", now)
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    text = part.get_content()
    assert (
        "  Last 28 days: 9 out-of-hours contacts, at 19h, 23h ×4, 00h ×3, 01h\n"
        "  noon to noon: 12h ·······▂···█▆▂·········· 12h\n"
    ) in text
