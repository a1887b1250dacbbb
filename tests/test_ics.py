"""Sessions from an iCalendar export: expansion, matching, fetching, and the agenda."""

from __future__ import annotations

import http.server
import os
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from inbox_guard import config
from inbox_guard.cli import main
from inbox_guard.errors import ConfigError
from inbox_guard.ics import cache_path, sessions_from_ics, with_calendar
from inbox_guard.model import Client
from inbox_guard.sessions import Sessions

from .conftest import PASSWORD_ENV, Account, Capsys, Practice, message, write_practice

LONDON = ZoneInfo("Europe/London")

ICS = """\
BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//inbox-guard tests//EN
BEGIN:VEVENT
UID:jane-weekly@example.org
DTSTART;TZID=Europe/London:20261104T100000
DTEND;TZID=Europe/London:20261104T105000
RRULE:FREQ=WEEKLY;BYDAY=WE
EXDATE;TZID=Europe/London:20261118T100000
SUMMARY:Session
ATTENDEE;CN=Jane:mailto:Jane@Example.org
END:VEVENT
BEGIN:VEVENT
UID:jane-weekly@example.org
RECURRENCE-ID;TZID=Europe/London:20261125T100000
DTSTART;TZID=Europe/London:20261125T100000
DTEND;TZID=Europe/London:20261125T105000
STATUS:CANCELLED
SUMMARY:Session
ATTENDEE:mailto:jane@example.org
END:VEVENT
BEGIN:VEVENT
UID:sam-1@example.org
DTSTART:20261119T160000Z
SUMMARY:Coaching - Sam L. (room 2)
END:VEVENT
BEGIN:VEVENT
UID:holiday@example.org
DTSTART;VALUE=DATE:20261120
SUMMARY:Practice closed - Sam L. (not a session)
END:VEVENT
END:VCALENDAR
"""

JANE = Client(
    id="jane-doe", name="Jane", emails=("jane@example.org",), sessions=Sessions(), active=True
)
SAM = Client(
    id="sam-lee",
    name="Sam",
    emails=("sam@example.net",),
    sessions=Sessions(),
    active=True,
    calendar_summary="Sam L.",
)


def test_weekly_rule_exdate_cancelled_instance_and_summary_matching() -> None:
    found = sessions_from_ics(
        ICS.encode(),
        [JANE, SAM],
        LONDON,
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 12, 10, tzinfo=UTC),
    )
    assert found["jane-doe"] == (
        datetime(2026, 11, 4, 10),
        datetime(2026, 11, 11, 10),  # 18th excluded, 25th cancelled
        datetime(2026, 12, 2, 10),
        datetime(2026, 12, 9, 10),
    )
    assert found["sam-lee"] == (datetime(2026, 11, 19, 16),)  # the all-day event is not a session


def test_a_broken_calendar_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a readable iCalendar file"):
        sessions_from_ics(
            b"BEGIN:VCALENDAR\nthis is not ical",
            [JANE],
            LONDON,
            datetime(2026, 11, 1, tzinfo=UTC),
            datetime(2026, 12, 1, tzinfo=UTC),
        )


def calendar_practice(root: Path, account: Account, ics_line: str, inline: bool = False) -> Path:
    """A practice whose sessions come from a calendar: ``[calendar]``, or with ``inline``
    the issue's ``sessions = { ... }`` spelling at the top of the main file."""
    p = write_practice(
        root,
        account,
        extra=""
        if inline
        else f"""
        [calendar]
        {ics_line}
        """,
    )
    if inline:
        text = p.config.read_text()
        top = 'timezone = "Europe/London"\n'
        p.config.write_text(
            text.replace(top, top + f"sessions = {{ {ics_line.replace(chr(10), ', ')} }}\n")
        )
    clients = p.config.parent / "clients"
    (clients / "jane-doe.toml").write_text('name = "Jane Doe"\nemails = ["jane@example.org"]\n')
    (clients / "sam-lee.toml").write_text(
        'name = "Sam"\nemails = ["sam@example.net"]\ncalendar_summary = "Sam L."\n'
    )
    (p.config.parent / "calendar.ics").write_text(ICS)
    return p.config


@pytest.mark.parametrize("inline", [False, True], ids=["[calendar]", "sessions = {}"])
def test_calendar_drives_agenda_files_to_the_right_dates(
    tmp_path: Path,
    account: Account,
    capsys: Capsys,
    monkeypatch: pytest.MonkeyPatch,
    inline: bool,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, account.password)
    calendar_practice(tmp_path, account, 'ics = "calendar.ics"', inline=inline)
    p = Practice(tmp_path, account)
    account.append(message(), datetime(2026, 11, 15, 23, 40, tzinfo=UTC))
    result = p.once_json(capsys, "--now", "2026-11-16T08:00")
    # Wed 18th is an EXDATE, Wed 25th is cancelled: the next real session is 2 December.
    assert [f["agenda"] for f in result["flagged"]] == ["agendas/jane-doe/2026-12-02.md"]


@pytest.fixture
def ics_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    served = tmp_path / "served"
    served.mkdir()
    (served / "cal.ics").write_text(ICS)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **k: object) -> None:
            super().__init__(*a, directory=str(served), **k)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cal.ics?token=s3cret", served
    finally:
        server.shutdown()
        server.server_close()


def test_calendar_url_is_fetched_cached_and_falls_back_when_down(
    tmp_path: Path,
    account: Account,
    ics_server: tuple[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, served = ics_server
    cfg = calendar_practice(tmp_path, account, f'ics = "{url}"\nrefresh_minutes = 1')
    settings = config.load(cfg)
    now = datetime(2026, 11, 16, 8, tzinfo=UTC)
    notes: list[str] = []
    fresh = with_calendar(settings, now, note=notes.append)
    assert fresh.clients["sam-lee"].sessions.dates == (datetime(2026, 11, 19, 16),)
    cache = cache_path(settings)
    assert cache.parent == settings.state_path.parent
    assert cache.stat().st_mode & 0o777 == 0o600
    assert notes == []
    # The server goes away and the copy is older than refresh_minutes: the copy is used.
    (served / "cal.ics").unlink()
    os.utime(cache, (0, 0))
    again = with_calendar(settings, now, note=notes.append)
    assert again.clients["jane-doe"].sessions == fresh.clients["jane-doe"].sessions
    assert "calendar: cannot fetch http://127.0.0.1" in caplog.text
    assert notes == [
        f"calendar: cannot fetch {url.split('?')[0]} (HTTP 404); using the copy from 1970-01-01"
    ]
    assert "s3cret" not in caplog.text


def test_a_calendar_that_cannot_be_fetched_is_reported_in_the_next_digest(
    tmp_path: Path,
    account: Account,
    ics_server: tuple[str, Path],
    capsys: Capsys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, account.password)
    url, served = ics_server
    calendar_practice(tmp_path, account, f'ics = "{url}"\nrefresh_minutes = 1')
    p = Practice(tmp_path, account)
    p.once_json(capsys)  # fetched and kept
    (served / "cal.ics").unlink()
    os.utime(cache_path(config.load(p.config)), (0, 0))
    account.append(message(), datetime(2026, 11, 15, 23, 40, tzinfo=UTC))
    result = p.once_json(capsys, "--now", "2026-11-16T08:00")  # from cron: the kept copy
    assert [f["agenda"] for f in result["flagged"]] == ["agendas/jane-doe/2026-12-02.md"]
    code, out, err = p.run("digest", "--dry-run", "--now", "2026-11-16T08:05", capsys=capsys)
    assert code == 0, err
    assert "inbox-guard had trouble since the last digest" in out
    assert "calendar: cannot fetch http://127.0.0.1" in out and "(HTTP 404)" in out
    assert "s3cret" not in out
    # Reported once: after a delivered digest it is forgotten.
    code, _, err = p.run("digest", "--now", "2026-11-16T08:06", capsys=capsys)
    assert code == 0, err
    code, out, _ = p.run("digest", "--dry-run", "--now", "2026-11-16T08:07", capsys=capsys)
    assert "had trouble" not in out


def test_the_calendar_is_given_once(tmp_path: Path, account: Account) -> None:
    cfg = calendar_practice(tmp_path, account, 'ics = "calendar.ics"', inline=True)
    assert config.load(cfg).main.sessions_calendar is not None
    cfg.write_text(cfg.read_text() + '\n[calendar]\nics = "other.ics"\n')
    with pytest.raises(ConfigError, match="give the calendar once"):
        config.load(cfg)


def test_a_missing_calendar_file_is_named_as_written(
    tmp_path: Path, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, account.password)
    cfg = calendar_practice(tmp_path, account, 'ics = "gone.ics"', inline=True)
    with pytest.raises(
        ConfigError, match=r"inbox-guard.toml: sessions.ics: cannot read .*gone.ics"
    ):
        with_calendar(config.load(cfg), datetime(2026, 11, 16, 8, tzinfo=LONDON))


def test_plain_http_calendar_url_is_refused_for_remote_hosts(
    tmp_path: Path, account: Account
) -> None:
    cfg = calendar_practice(tmp_path, account, 'ics = "http://calendar.example.org/x.ics"')
    with pytest.raises(ConfigError, match=r"calendar\.ics: a calendar URL must use https"):
        config.load(cfg)


# Redirects are held to the calendar rule: checked before anything is sent to the new
# place. socket.connect is audited (a real event, not a mock) so a test can tell.
_connects: list[list[object]] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event == "socket.connect" and _connects:
        _connects[-1].append(args[1])


@pytest.fixture
def connects() -> Iterator[list[object]]:
    """The addresses this process connects to while the test runs."""
    if not getattr(_audit, "installed", False):
        sys.addaudithook(_audit)  # cannot be removed; idle while no test watches
        _audit.installed = True  # type: ignore[attr-defined]
    seen: list[object] = []
    _connects.append(seen)
    try:
        yield seen
    finally:
        _connects.remove(seen)


@pytest.fixture
def redirecting_server(tmp_path: Path) -> Iterator[str]:
    """A loopback server: /cal.ics is the calendar, /away sends the client to plain
    http on a non-loopback address, /home back to this server by another loopback name,
    /file to a file: URL."""

    class Redirects(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            port = self.server.server_address[1]  # type: ignore[index]  # (a socket address)
            target = {
                "/away": "http://192.0.2.1/x.ics?token=s3cret",
                "/home": f"http://localhost:{port}/cal.ics?token=s3cret",
                "/file": "file:///etc/passwd",
            }.get(self.path.split("?")[0])
            if target is not None:
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = ICS.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/calendar")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirects)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_redirect_to_plain_http_elsewhere_fails_before_connecting(
    tmp_path: Path, account: Account, redirecting_server: str, connects: list[object]
) -> None:
    cfg = calendar_practice(
        tmp_path, account, f'ics = "{redirecting_server}/away?token=s3cret"\ntimeout_seconds = 2'
    )
    settings = config.load(cfg)
    with pytest.raises(ConfigError) as err:
        with_calendar(settings, datetime(2026, 11, 16, 8, tzinfo=UTC))
    message = str(err.value)
    assert message.startswith(f"{cfg}: calendar.ics: cannot fetch {redirecting_server}/away (")
    assert "redirect not followed" in message and "must use https" in message
    assert "s3cret" not in message and "\n" not in message
    assert [a for a in connects if "192.0.2.1" in str(a)] == []
    assert connects, "the first request did connect (to the loopback server)"
    assert not cache_path(settings).exists()


def test_a_redirect_to_a_file_url_is_not_followed(
    tmp_path: Path, account: Account, redirecting_server: str
) -> None:
    cfg = calendar_practice(tmp_path, account, f'ics = "{redirecting_server}/file"')
    with pytest.raises(ConfigError, match=r"calendar.ics: cannot fetch .*/file \(HTTP 302"):
        with_calendar(config.load(cfg), datetime(2026, 11, 16, 8, tzinfo=UTC))


def test_a_redirect_to_another_loopback_url_is_followed(
    tmp_path: Path, account: Account, redirecting_server: str
) -> None:
    cfg = calendar_practice(tmp_path, account, f'ics = "{redirecting_server}/home"', inline=True)
    settings = config.load(cfg)
    fetched = with_calendar(settings, datetime(2026, 11, 16, 8, tzinfo=UTC))
    assert fetched.clients["sam-lee"].sessions.dates == (datetime(2026, 11, 19, 16),)
    assert cache_path(settings).read_text() == ICS


@pytest.mark.parametrize(
    ("ics", "inline", "key"),
    [
        ("HTTP://evil.example/cal.ics", False, "calendar.ics"),
        ("http://evil.example#@127.0.0.1/x.ics", True, "sessions.ics"),
        ("http://127.0.0.1@evil.example/", False, "calendar.ics"),
        ("https://127.0.0.1@evil.example/", True, "sessions.ics"),
    ],
)
def test_a_refused_calendar_url_names_the_key_as_written(
    tmp_path: Path, account: Account, capsys: Capsys, ics: str, inline: bool, key: str
) -> None:
    cfg = calendar_practice(tmp_path, account, f'ics = "{ics}"', inline=inline)
    code = main(["--config", str(cfg), "check", "--now", "2026-11-16T08:00"])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.startswith(f"inbox-guard: {cfg}: {key}: a calendar URL must ")
    assert err.count("\n") == 1 and "evil" not in err
