"""Checks the config schema shares: an e-mail address, an IMAP keyword, a label or
folder name, and the one rule for a calendar URL (also applied to every fetch and
redirect by :mod:`inbox_guard.ics`). Pure functions; a problem is a ValueError whose
text pydantic turns into the config error's last part."""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from ..rules import normalise_address

_EMAIL = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
# An IMAP keyword is an RFC 3501 atom: printable 7-bit ASCII (0x21-0x7e) without the
# atom-specials ( ) { % * " \ ] -- so it never starts with "\", the mark of a system
# flag. "$" is fine ("$OutOfHours").
KEYWORD_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - set('(){%*"\\]')
HHMM = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
RETAIN_DAYS = (1, 3650)


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def calendar_url_problem(url: str, redirected_from: str | None = None) -> str | None:
    """Why ``url`` may not be fetched as the calendar, or None when it may.

    The one rule for a calendar URL, applied when the config is read, before every
    fetch and to every redirect: http or https (in any case); https to any host, http
    only to a loopback host; no user name or password. A redirect from another host
    never leads to a loopback one. The answer never repeats the URL (its query often
    holds a secret)."""
    if any(c <= " " or c == "\x7f" for c in url):
        return "a calendar URL must not contain spaces or control characters"
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # a port that is not a number is a ValueError
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    scheme = parts.scheme.lower()
    if scheme == "file":
        return 'give a calendar file as a path (like "calendar.ics"), not a file:// URL'
    if scheme not in ("http", "https"):
        return "a calendar URL must use https (http only to a loopback host)"
    if "@" in parts.netloc:
        return "a calendar URL must not hold a user name or password (user@host)"
    host = parts.hostname
    if not host:
        return "a calendar URL needs a host, like https://calendar.example.org/..."
    if scheme == "http" and not is_loopback(host):
        return "a calendar URL must use https (http only to a loopback host)"
    if redirected_from is not None and is_loopback(host):
        origin = urllib.parse.urlsplit(redirected_from).hostname
        if not (origin and is_loopback(origin)):
            return "a calendar on another host may not redirect to this machine"
    return None


_WEBCAL = re.compile(r"webcals?:", re.IGNORECASE)
_URL_SCHEMES = ("http", "https", "webcal", "webcals")


def calendar_url(source: str) -> str | None:
    """The URL to fetch for a ``[calendar] ics`` value, or None when it names a file.

    Anything with ``://``, or starting ``http:``, ``https:`` or ``webcal:``, is a URL;
    ``webcal://`` (how calendar apps offer a subscription) is fetched as ``https://``.
    A URL that :func:`calendar_url_problem` refuses is a ValueError."""
    try:
        scheme = urllib.parse.urlsplit(source).scheme.lower()
    except ValueError:
        scheme = ""
    if "://" not in source and scheme not in _URL_SCHEMES:
        return None
    webcal = _WEBCAL.match(source)
    url = "https:" + source[webcal.end() :] if webcal else source
    problem = calendar_url_problem(url)
    if problem is not None:
        raise ValueError(problem)
    return url


def email(value: str) -> str:
    value = value.strip().lower()
    if not _EMAIL.match(value):
        raise ValueError(f"{value!r} is not an email address")
    return normalise_address(value)


def imap_keyword(value: str) -> str:
    if not value or not set(value) <= KEYWORD_CHARS:
        raise ValueError(
            f"{value!r} is not a valid IMAP keyword (use ASCII letters, digits and $ _ - . "
            'without spaces, like "$OutOfHours")'
        )
    return value


Keyword = Annotated[str, AfterValidator(imap_keyword)]


class Strict(BaseModel):
    """Frozen, and an unknown key is an error (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def folder_name(value: str) -> str:
    if value != value.strip() or any(ord(c) < 0x20 or c in '*%"' for c in value):
        raise ValueError(f"{value!r} is not usable as a label or folder name")
    return value


FolderName = Annotated[str, AfterValidator(folder_name)]
