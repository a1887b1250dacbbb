"""Sessions from the practitioner's calendar (an iCalendar export).

``[calendar] ics`` (or ``sessions = { ics = ... }``) names a file or an https URL.
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
from pathlib import Path
from zoneinfo import ZoneInfo

from .config import Client, Settings
from .errors import ConfigError
from .files import write_private
from .sessions import Sessions

log = logging.getLogger(__name__)

HORIZON = timedelta(days=400)  # how far ahead sessions are read


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


def _read(settings: Settings, note: Callable[[str], None]) -> bytes:
    cal = settings.main.sessions_calendar
    assert cal is not None
    source = cal.ics
    if urllib.parse.urlparse(source).scheme not in ("http", "https"):
        path = settings.resolve(source)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{settings.path}: {settings.main.calendar_key}: cannot read {path}: {exc.strerror}"
            ) from None
    cache = cache_path(settings)
    if cache.exists() and time.time() - cache.stat().st_mtime < cal.refresh_minutes * 60:
        return cache.read_text("utf-8", "surrogateescape").encode("utf-8", "surrogateescape")
    try:
        with urllib.request.urlopen(source, timeout=cal.timeout_seconds) as resp:  # noqa: S310
            data: bytes = resp.read()
        write_private(cache, data.decode("utf-8", "surrogateescape"))
        return data
    except (OSError, ValueError) as exc:
        if cache.exists():
            problem = (f"calendar: cannot fetch {_safe(source)} ({_reason(exc)}); using the "
                       f"copy from {date.fromtimestamp(cache.stat().st_mtime)}")
            log.warning("%s", problem)
            note(problem)
            return cache.read_text("utf-8", "surrogateescape").encode("utf-8", "surrogateescape")
        raise ConfigError(
            f"{settings.path}: {settings.main.calendar_key}: cannot fetch {_safe(source)} "
            f"({_reason(exc)}) and no earlier copy is kept"
        ) from None


def _reason(exc: Exception) -> str:
    """Why a fetch failed, without the URL (urllib puts it in some messages)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
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
    try:
        found = sessions_from_ics(
            _read(settings, note), todo, settings.tz, now - timedelta(days=1), now + HORIZON
        )
    except ValueError as exc:
        raise ConfigError(f"{settings.path}: {settings.main.calendar_key}: {exc}") from None
    clients = dict(settings.clients)
    for cid, starts in found.items():
        clients[cid] = dataclasses.replace(clients[cid], sessions=Sessions(dates=starts))
    return dataclasses.replace(settings, clients=clients)
