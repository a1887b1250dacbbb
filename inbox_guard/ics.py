"""Sessions from the practitioner's calendar (an iCalendar export).

``[calendar] ics`` (or ``sessions = { ics = ... }``) names a file or an https URL
(http only to a loopback host; ``webcal://`` is fetched as https; see
:func:`inbox_guard.schema.calendar_url_problem`, which also holds every redirect).
Events are expanded with recurring-ical-events (RRULE, EXDATE and moved instances),
cancelled ones (STATUS:CANCELLED) are skipped, and each event is given to the clients
it belongs to: one of their emails is an attendee, or its summary contains their
``calendar_summary``. A client file's own ``sessions`` still wins.

A URL is fetched with a timeout, at most every ``refresh_minutes``, and the copy kept
beside the state file; when a fetch fails, the last good copy is used and the log and
the next digest say so.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import date, datetime, timedelta
from http.client import HTTPMessage
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

from .errors import ConfigError
from .files import write_private
from .model import Client, Settings
from .schema import calendar_url, calendar_url_problem
from .sessions import Sessions

log = logging.getLogger(__name__)

HORIZON = timedelta(days=400)  # how far ahead sessions are read
# How far back: a day, or with the pre-session brief on, far enough for the sessions
# before (the brief compares the interval since the previous session with earlier ones).
PAST, PAST_FOR_BRIEFS = timedelta(days=1), timedelta(days=200)


def _addresses(value: object) -> set[str]:
    values = value if isinstance(value, list) else [value] if value else []
    return {str(v).lower().removeprefix("mailto:").strip() for v in values}


def sessions_from_ics(
    data: bytes, clients: list[Client], tz: ZoneInfo, start: datetime, end: datetime
) -> dict[str, tuple[datetime, ...]]:
    """Naive local session starts per client id, from ``start`` to ``end``. Pure."""
    import icalendar
    import recurring_ical_events

    try:
        cal = icalendar.Calendar.from_ical(data)
        events = recurring_ical_events.of(cal).between(start, end)
    except Exception as exc:  # the libraries raise many kinds for a broken file
        raise ValueError(f"not a readable iCalendar file: {exc}") from exc
    found: dict[str, set[datetime]] = {c.id: set() for c in clients}
    for ev in events:
        if str(ev.get("STATUS", "")).upper() == "CANCELLED":
            continue
        begin = ev.decoded("DTSTART")
        if not isinstance(begin, datetime):
            continue  # all-day events are not sessions
        local = (begin.astimezone(tz) if begin.tzinfo else begin).replace(tzinfo=None)
        attendees = _addresses(ev.get("ATTENDEE"))
        summary = str(ev.get("SUMMARY", "")).lower()
        for c in clients:
            by_mail = bool(attendees & set(c.emails))
            by_name = bool(c.calendar_summary) and str(c.calendar_summary).lower() in summary
            if by_mail or by_name:
                found[c.id].add(local)
    return {cid: tuple(sorted(starts)) for cid, starts in found.items()}


def cache_path(settings: Settings) -> Path:
    """Beside the state file and named after it, so practitioners sharing a state
    folder keep their own copies."""
    return settings.state_path.with_name(settings.state_path.stem + ".calendar.ics")


class _HeldRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only where the calendar rule allows a fetch, and refuses the
    others before anything is sent there."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        problem = calendar_url_problem(newurl, redirected_from=req.full_url)
        if problem is not None:
            fp.close()
            raise urllib.error.URLError(f"redirect not followed: {problem}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener() -> urllib.request.OpenerDirector:
    """http and https only (no file:, ftp: or data:), redirects held to the rule."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        _HeldRedirects(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def _read(settings: Settings, note: Callable[[str], None]) -> bytes:
    cal = settings.main.sessions_calendar
    assert cal is not None
    where = f"{settings.path}: {settings.main.calendar_key}"
    try:
        url = calendar_url(cal.ics)  # checked again before every fetch
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if url is None:
        path = settings.resolve(cal.ics)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None
    cache = cache_path(settings)
    if cache.exists() and time.time() - cache.stat().st_mtime < cal.refresh_minutes * 60:
        return cache.read_text("utf-8", "surrogateescape").encode("utf-8", "surrogateescape")
    try:
        with _opener().open(url, timeout=cal.timeout_seconds) as resp:
            data: bytes = resp.read()
        write_private(cache, data.decode("utf-8", "surrogateescape"))
        return data
    except (OSError, ValueError) as exc:
        if cache.exists():
            problem = (
                f"calendar: cannot fetch {_safe(url)} ({_reason(exc)}); using the "
                f"copy from {date.fromtimestamp(cache.stat().st_mtime)}"
            )
            log.warning("%s", problem)
            note(problem)
            return cache.read_text("utf-8", "surrogateescape").encode("utf-8", "surrogateescape")
        raise ConfigError(
            f"{where}: cannot fetch {_safe(url)} ({_reason(exc)}) and no earlier copy is kept"
        ) from None


def _reason(exc: Exception) -> str:
    """Why a fetch failed, without the URL (urllib puts it in some messages)."""
    if isinstance(exc, urllib.error.HTTPError):
        refused = " (a redirect that is not followed)" if 300 <= exc.code < 400 else ""
        return f"HTTP {exc.code}{refused}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc)


def _safe(url: str) -> str:
    """A URL without its query or credentials (calendar URLs often carry a secret)."""
    p = urllib.parse.urlparse(url)
    port = f":{p.port}" if p.port else ""
    return f"{p.scheme}://{p.hostname}{port}{p.path}"


def _ignore(_problem: str) -> None:
    pass


def with_calendar(
    settings: Settings, now: datetime, note: Callable[[str], None] = _ignore
) -> Settings:
    """``settings`` with calendar sessions for the clients whose file gives none.
    ``note`` hears of trouble worth a line in the digest (a fetch that failed while an
    earlier copy could be used)."""
    if settings.main.sessions_calendar is None:
        return settings
    todo = [c for c in settings.clients.values() if c.sessions == Sessions()]
    if not todo:
        return settings
    past = PAST_FOR_BRIEFS if settings.main.brief.enabled else PAST
    try:
        found = sessions_from_ics(
            _read(settings, note), todo, settings.tz, now - past, now + HORIZON
        )
    except ValueError as exc:
        raise ConfigError(f"{settings.path}: {settings.main.calendar_key}: {exc}") from None
    clients = dict(settings.clients)
    for cid, starts in found.items():
        clients[cid] = dataclasses.replace(clients[cid], sessions=Sessions(dates=starts))
    return dataclasses.replace(settings, clients=clients)
