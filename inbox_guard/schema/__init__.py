"""The config files' schema: what may be written in the main file and in a client file,
as frozen pydantic models that refuse unknown keys.

- :mod:`.practice` — the main file's sections (``MainConfig``);
- :mod:`.servers` — ``[account]`` and ``[smtp]``: where to connect, how to sign in;
- :mod:`.client` — a client file (``ClientFile``);
- :mod:`.checks` — the field checks they share (addresses, keywords, calendar URLs).

Reading, merging and cross-checking files is :mod:`inbox_guard.config`; the domain view
the rest of the program uses is :mod:`inbox_guard.model`.
"""

from .checks import RETAIN_DAYS, calendar_url, calendar_url_problem, is_loopback
from .client import ClientFile, SessionsSpec
from .practice import (
    Agenda,
    BriefConfig,
    CalendarConfig,
    Digest,
    Hours,
    MainConfig,
    Mark,
    Risk,
    State,
    Therapist,
    Triage,
)
from .servers import Account, PasswordSource, Provider, Security, Smtp

__all__ = [
    "RETAIN_DAYS",
    "Account",
    "Agenda",
    "BriefConfig",
    "CalendarConfig",
    "ClientFile",
    "Digest",
    "Hours",
    "MainConfig",
    "Mark",
    "PasswordSource",
    "Provider",
    "Risk",
    "Security",
    "SessionsSpec",
    "Smtp",
    "State",
    "Therapist",
    "Triage",
    "calendar_url",
    "calendar_url_problem",
    "is_loopback",
]
