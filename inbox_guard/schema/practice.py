"""The main config file's sections: the practitioner, hours, triage, risk, marks,
agenda, digest, calendar and state. Validated once into frozen models; loading and
merging files is :mod:`inbox_guard.config`'s job."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from .. import hours
from .checks import HHMM, RETAIN_DAYS, FolderName, Keyword, Strict, calendar_url, email
from .servers import Account, Smtp


class Therapist(Strict):
    name: str = Field(min_length=1)
    email: str
    addresses: tuple[str, ...] = ()
    emergency_text: str = Field(min_length=1)
    drafts_name_session: bool = True
    language: Literal["en", "de", "fr", "es"] = "en"  # of the holding replies

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        return email(v)

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(email(a) for a in v)

    @property
    def all_addresses(self) -> tuple[str, ...]:
        """``addresses`` with ``email`` always among them."""
        return self.addresses if self.email in self.addresses else (self.email, *self.addresses)


class Hours(Strict):
    mon: tuple[str, ...] = ()
    tue: tuple[str, ...] = ()
    wed: tuple[str, ...] = ()
    thu: tuple[str, ...] = ()
    fri: tuple[str, ...] = ()
    sat: tuple[str, ...] = ()
    sun: tuple[str, ...] = ()
    closed: tuple[str, ...] = ()

    @field_validator(*hours.WEEKDAYS)
    @classmethod
    def _day(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        hours.parse_day(list(v))
        return v

    @field_validator("closed")
    @classmethod
    def _closed(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for item in v:
            hours.parse_closed(item)
        return v


class Triage(Strict):
    clients_dir: str = "clients"
    keyword: Keyword = "$OutOfHours"
    drafts: Literal["per-window", "per-message", "off"] = "per-window"
    poll_minutes: int = Field(default=5, ge=1, le=1440)
    push: bool = True  # react at once to new mail where the server has IMAP IDLE
    lookback_days: int = Field(default=7, ge=0, le=3650)


class Risk(Strict):
    keyword: Keyword = "$NeedsAttention"
    phrases: tuple[str, ...] = ()
    alert: bool = True


class Mark(Strict):
    """How marks are shown in the practitioner's mail app (see marks.py)."""

    show: Literal["auto", "keyword", "gmail-label", "flag", "flag-colour", "folder"] = "auto"
    label: FolderName = ""  # Gmail label or folder; "" = "Out of hours" in therapist.language
    risk_label: FolderName = ""  # "" = "Needs attention" in therapist.language
    colour: Literal["orange", "yellow", "green", "blue", "purple", "grey"] = "blue"


class Agenda(Strict):
    dir: str = "agendas"
    include_subjects: bool = True


class Digest(Strict):
    to: str = ""
    at: str = "07:30"
    days: tuple[hours.Weekday, ...] = hours.WEEKDAYS[:5]
    deliver: Literal["imap", "smtp"] = "imap"
    include_subjects: bool = False
    send_empty: bool = False

    @field_validator("at")
    @classmethod
    def _at(cls, v: str) -> str:
        if not HHMM.fullmatch(v):
            raise ValueError(f'{v!r} is not a time like "07:30" (HH:MM, 00:00 to 23:59)')
        return v

    @field_validator("to")
    @classmethod
    def _to(cls, v: str) -> str:
        return email(v) if v else ""


class BriefConfig(Strict):
    """Before each session of a client who wrote out of hours since the previous one,
    a short brief to the practitioner (never to anyone else)."""

    enabled: bool = False
    minutes_before: int = Field(default=60, ge=5, le=24 * 60)
    deliver: Literal["imap", "smtp"] = "imap"


class CalendarConfig(Strict):
    ics: str = Field(min_length=1)  # a file (relative to this file) or an https URL
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    refresh_minutes: int = Field(default=60, ge=1)

    @field_validator("ics")
    @classmethod
    def _source(cls, v: str) -> str:
        calendar_url(v)  # a URL must pass the rule; a file is read when it is needed
        return v


class State(Strict):
    path: str = "state/inbox-guard.sqlite3"
    # PostgreSQL instead of the file: "postgresql://user@host:5432/dbname". The password
    # never goes here: libpq takes it from PGPASSWORD or ~/.pgpass.
    url: str = ""
    # With url: how soon a dead worker's practitioners are taken over (each worker
    # looks at its share twice in this time).
    lease_seconds: float = Field(default=10.0, ge=1.0, le=600.0)
    retain_days: int = 400

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError(f'{v!r} is not a PostgreSQL URL ("postgresql://user@host/db")')
        if parts.password is not None:
            raise ValueError(
                "keep the password out of the config: give it in PGPASSWORD or ~/.pgpass"
            )
        return v

    @field_validator("retain_days")
    @classmethod
    def _retain(cls, v: int) -> int:
        low, high = RETAIN_DAYS
        if not low <= v <= high:
            raise ValueError(f"{v} is out of range: keep between {low} and {high} days")
        return v


class MainConfig(Strict):
    timezone: str
    therapist: Therapist
    account: Account
    hours: Hours = Hours()
    triage: Triage = Triage()
    risk: Risk = Risk()
    agenda: Agenda = Agenda()
    mark: Mark = Mark()
    digest: Digest = Digest()
    brief: BriefConfig = BriefConfig()
    smtp: Smtp | None = None
    calendar: CalendarConfig | None = None
    sessions: CalendarConfig | None = None  # the same, as `sessions = { ics = "..." }`
    state: State = State()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f'{v!r} is not an IANA time zone (like "Europe/London")') from None
        return v

    @model_validator(mode="after")
    def _one_calendar(self) -> MainConfig:
        if self.sessions is not None and self.calendar is not None:
            raise ValueError("give the calendar once: sessions = { ics = ... } or [calendar]")
        return self

    @property
    def sessions_calendar(self) -> CalendarConfig | None:
        """Where sessions come from, whichever way the practitioner wrote it."""
        return self.sessions or self.calendar

    @property
    def calendar_key(self) -> str:
        """The key the practitioner wrote, for error messages."""
        return "sessions.ics" if self.sessions is not None else "calendar.ics"

    @model_validator(mode="after")
    def _digest_goes_to_the_practitioner(self) -> MainConfig:
        if self.digest.to and self.digest.to not in self.therapist.all_addresses:
            raise ValueError(f"digest.to {self.digest.to!r} must be one of therapist.addresses")
        if self.digest.deliver == "smtp" and self.smtp is None:
            raise ValueError('digest.deliver = "smtp" needs an [smtp] section')
        if self.brief.enabled and self.brief.deliver == "smtp" and self.smtp is None:
            raise ValueError('brief.deliver = "smtp" needs an [smtp] section')
        if self.smtp is not None and self.smtp.auth == "oauth2" and self.account.auth != "oauth2":
            raise ValueError(
                'smtp.auth = "oauth2" uses the account\'s sign-in, so it needs '
                'account.auth = "oauth2"'
            )
        return self
