"""Configuration: the main TOML file and one TOML file per client.

Validated once, here, into frozen models; nothing deeper reads files or the
environment for settings. Every problem becomes one :class:`ConfigError` line naming
the file, the key and what is wrong.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import stat
import tomllib
import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from . import hours
from .errors import ConfigError
from .rules import normalise_address

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails
from .sessions import Sessions, parse_rrule

DEFAULT_PATH = Path("config/inbox-guard.toml")
ENV_VAR = "INBOX_GUARD_CONFIG"

_EMAIL = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
# An IMAP keyword is an RFC 3501 atom: printable 7-bit ASCII (0x21-0x7e) without the
# atom-specials ( ) { % * " \ ] -- so it never starts with "\", the mark of a system
# flag. "$" is fine ("$OutOfHours").
_KEYWORD_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - set('(){%*"\\]')
_HHMM = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
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
        return "give a calendar file as a path (like \"calendar.ics\"), not a file:// URL"
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
    url = "https:" + source[webcal.end():] if webcal else source
    problem = calendar_url_problem(url)
    if problem is not None:
        raise ValueError(problem)
    return url


def _email(value: str) -> str:
    value = value.strip().lower()
    if not _EMAIL.match(value):
        raise ValueError(f"{value!r} is not an email address")
    return normalise_address(value)


def _imap_keyword(value: str) -> str:
    if not value or not set(value) <= _KEYWORD_CHARS:
        raise ValueError(
            f"{value!r} is not a valid IMAP keyword (use ASCII letters, digits and $ _ - . "
            "without spaces, like \"$OutOfHours\")"
        )
    return value


Keyword = Annotated[str, AfterValidator(_imap_keyword)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Secret(_Strict):
    """A password comes from the environment or a command, never from the file."""

    password_env: str | None = None
    password_command: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_literal_password(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise ValueError(
                "passwords do not belong in config files; use password_env or password_command"
            )
        return data

    @model_validator(mode="after")
    def _one_source(self) -> _Secret:
        if self.password_env and self.password_command:
            raise ValueError("set password_env or password_command, not both")
        return self


class Therapist(_Strict):
    name: str = Field(min_length=1)
    email: str
    addresses: tuple[str, ...] = ()
    emergency_text: str = Field(min_length=1)
    drafts_name_session: bool = True
    language: Literal["en", "de", "fr", "es"] = "en"  # of the holding replies

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        return _email(v)

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_email(a) for a in v)

    @property
    def all_addresses(self) -> tuple[str, ...]:
        """``addresses`` with ``email`` always among them."""
        return self.addresses if self.email in self.addresses else (self.email, *self.addresses)


Security = Literal["tls", "starttls", "plain"]


class _Server(_Secret):
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Security = "tls"
    ca_file: str | None = None
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _plain_only_on_loopback(self) -> _Server:
        if self.security == "plain" and not is_loopback(self.host):
            raise ValueError(
                f"security = \"plain\" is only allowed to a loopback host, not {self.host!r}; "
                "use \"tls\" or \"starttls\""
            )
        return self


Provider = Literal["google", "microsoft"]


class Account(_Server):
    username: str = Field(min_length=1)
    inbox: str = "INBOX"
    drafts: str = ""

    auth: Literal["password", "xoauth2", "oauth2"] = "password"
    token_command: str | None = None  # with auth = "xoauth2": prints a fresh access token
    # auth = "oauth2": inbox-guard signs in itself (`inbox-guard login`) and keeps the tokens.
    provider: Provider | None = None
    client_id: str | None = None
    client_secret: str | None = None  # Google's installed-app secret (not secret, says Google)
    tenant: str | None = None  # Microsoft: "common", "organizations", "consumers" or a tenant
    token_store: Literal["file", "keyring"] = "file"
    authority: str | None = None  # Microsoft, advanced: another cloud's sign-in address
    auth_uri: str | None = None  # Google, advanced: as in Google's client_secret.json
    token_uri: str | None = None

    @model_validator(mode="after")
    def _needs_secret(self) -> Account:
        oauth2_keys = [k for k in ("provider", "client_id", "client_secret", "tenant",
                                   "authority", "auth_uri", "token_uri")
                       if getattr(self, k) is not None]
        if self.auth != "oauth2" and oauth2_keys:
            raise ValueError(f"{oauth2_keys[0]} is only used with auth = \"oauth2\"")
        if self.auth == "xoauth2":
            if not self.token_command:
                raise ValueError("auth = \"xoauth2\" needs token_command")
        elif self.auth == "oauth2":
            _check_oauth2(self)
        elif not (self.password_env or self.password_command):
            raise ValueError("no password source: set password_env or password_command")
        if self.auth != "xoauth2" and self.token_command:
            raise ValueError("token_command is only used with auth = \"xoauth2\"")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.security == "tls" else 143)


def _check_oauth2(account: Account) -> None:
    """``auth = "oauth2"``: one provider's keys, complete, and no password."""
    if account.password_env or account.password_command:
        raise ValueError("auth = \"oauth2\" signs in with `inbox-guard login`, not a "
                         "password: remove password_env / password_command")
    if account.provider is None:
        raise ValueError("auth = \"oauth2\" needs provider = \"google\" or \"microsoft\"")
    if not account.client_id:
        raise ValueError(f"auth = \"oauth2\" needs client_id (from your {account.provider} "
                         "app registration)")
    other = {"google": ("tenant", "authority"),
             "microsoft": ("client_secret", "auth_uri", "token_uri")}[account.provider]
    for key in other:
        if getattr(account, key) is not None:
            why = (" (device-code sign-in is a public-client flow: no secret)"
                   if key == "client_secret" else "")
            raise ValueError(f"{key} is not used with provider = \"{account.provider}\"{why}")
    if account.provider == "google" and not account.client_secret:
        raise ValueError("provider = \"google\" needs client_secret (the one Google shows "
                         "with a Desktop app's client ID)")
    for key in ("authority", "auth_uri", "token_uri"):
        url = getattr(account, key)
        if url is not None and not (url.startswith("https://") and len(url) > 8):
            raise ValueError(f"{key} must be an https:// address, not {url!r}")
    if account.tenant is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", account.tenant):
        raise ValueError(f"tenant {account.tenant!r} is not a tenant name or id")


class Smtp(_Server):
    security: Security = "starttls"
    username: str | None = None
    auth: Literal["password", "oauth2"] = "password"  # oauth2: the account's own sign-in

    @model_validator(mode="after")
    def _password_with_username(self) -> Smtp:
        if self.auth == "oauth2":
            if not self.username:
                raise ValueError("auth = \"oauth2\" needs username")
            if self.password_env or self.password_command:
                raise ValueError("auth = \"oauth2\" uses the account's sign-in, not a "
                                 "password: remove password_env / password_command")
        elif self.username and not (self.password_env or self.password_command):
            raise ValueError("username is set but no password_env or password_command")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or {"tls": 465, "starttls": 587, "plain": 25}[self.security]


class Hours(_Strict):
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


class Triage(_Strict):
    clients_dir: str = "clients"
    keyword: Keyword = "$OutOfHours"
    drafts: Literal["per-window", "per-message", "off"] = "per-window"
    poll_minutes: int = Field(default=5, ge=1, le=1440)
    push: bool = True  # react at once to new mail where the server has IMAP IDLE
    lookback_days: int = Field(default=7, ge=0, le=3650)


class Risk(_Strict):
    keyword: Keyword = "$NeedsAttention"
    phrases: tuple[str, ...] = ()
    alert: bool = True


def _folder_name(value: str) -> str:
    if value != value.strip() or any(ord(c) < 0x20 or c in "*%\"" for c in value):
        raise ValueError(f"{value!r} is not usable as a label or folder name")
    return value


FolderName = Annotated[str, AfterValidator(_folder_name)]


class Mark(_Strict):
    """How marks are shown in the practitioner's mail app (see marks.py)."""

    show: Literal["auto", "keyword", "gmail-label", "flag", "flag-colour", "folder"] = "auto"
    label: FolderName = ""  # Gmail label or folder; "" = "Out of hours" in therapist.language
    risk_label: FolderName = ""  # "" = "Needs attention" in therapist.language
    colour: Literal["orange", "yellow", "green", "blue", "purple", "grey"] = "blue"


class Agenda(_Strict):
    dir: str = "agendas"
    include_subjects: bool = True


class Digest(_Strict):
    to: str = ""
    at: str = "07:30"
    days: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = (
        "mon", "tue", "wed", "thu", "fri",
    )
    deliver: Literal["imap", "smtp"] = "imap"
    include_subjects: bool = False
    send_empty: bool = False

    @field_validator("at")
    @classmethod
    def _at(cls, v: str) -> str:
        if not _HHMM.fullmatch(v):
            raise ValueError(f"{v!r} is not a time like \"07:30\" (HH:MM, 00:00 to 23:59)")
        return v

    @field_validator("to")
    @classmethod
    def _to(cls, v: str) -> str:
        return _email(v) if v else ""


class CalendarConfig(_Strict):
    ics: str = Field(min_length=1)  # a file (relative to this file) or an https URL
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    refresh_minutes: int = Field(default=60, ge=1)

    @field_validator("ics")
    @classmethod
    def _source(cls, v: str) -> str:
        calendar_url(v)  # a URL must pass the rule; a file is read when it is needed
        return v


class State(_Strict):
    path: str = "state/inbox-guard.sqlite3"
    retain_days: int = 400

    @field_validator("retain_days")
    @classmethod
    def _retain(cls, v: int) -> int:
        low, high = RETAIN_DAYS
        if not low <= v <= high:
            raise ValueError(f"{v} is out of range: keep between {low} and {high} days")
        return v


class MainConfig(_Strict):
    timezone: str
    therapist: Therapist
    account: Account
    hours: Hours = Hours()
    triage: Triage = Triage()
    risk: Risk = Risk()
    agenda: Agenda = Agenda()
    mark: Mark = Mark()
    digest: Digest = Digest()
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
            raise ValueError(f"{v!r} is not an IANA time zone (like \"Europe/London\")") from None
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
            raise ValueError(
                f"digest.to {self.digest.to!r} must be one of therapist.addresses"
            )
        if self.digest.deliver == "smtp" and self.smtp is None:
            raise ValueError("digest.deliver = \"smtp\" needs an [smtp] section")
        if self.smtp is not None and self.smtp.auth == "oauth2" and self.account.auth != "oauth2":
            raise ValueError("smtp.auth = \"oauth2\" uses the account's sign-in, so it needs "
                             "account.auth = \"oauth2\"")
        return self


class _SessionsSpec(_Strict):
    """``{ rrule = "...", start = "..." }`` or ``{ dates = [...] }``, local times."""

    rrule: str | None = None
    start: datetime | None = None
    dates: tuple[datetime, ...] | None = None

    @field_validator("start")
    @classmethod
    def _start(cls, v: datetime | None) -> datetime | None:
        if v is not None and not hours.in_range(v.date()):
            raise ValueError(f"{v.isoformat()} is out of range ({hours.DATE_RANGE})")
        return v

    @field_validator("dates")
    @classmethod
    def _dates(cls, v: tuple[datetime, ...] | None) -> tuple[datetime, ...] | None:
        for d in v or ():
            if not hours.in_range(d.date()):
                raise ValueError(f"{d.isoformat()} is out of range ({hours.DATE_RANGE})")
        return v

    @model_validator(mode="after")
    def _valid(self) -> _SessionsSpec:
        if (self.rrule is None) == (self.dates is None):
            raise ValueError("give either rrule (with start) or dates")
        if self.rrule is not None:
            if self.start is None:
                raise ValueError("rrule needs a start, like \"2026-09-02T10:00\"")
            if self.start.tzinfo is not None:
                raise ValueError("start is local to the practice's timezone; give no offset")
            parse_rrule(self.rrule, self.start)
        if any(d.tzinfo is not None for d in self.dates or ()):
            raise ValueError("dates are local to the practice's timezone; give no offset")
        return self

    def build(self) -> Sessions:
        if self.rrule is not None and self.start is not None:
            return Sessions(rule=parse_rrule(self.rrule, self.start))
        return Sessions(dates=tuple(sorted(self.dates or ())))


class ClientFile(_Strict):
    name: str = Field(min_length=1)
    emails: tuple[str, ...] = Field(min_length=1)
    sessions: _SessionsSpec | None = None
    active: bool = True
    hours: Hours | None = None  # this client's agreed contact window, if not the practice's
    draft_template: str | None = None  # a file in config/templates/ for this client's drafts
    notes_only: bool = False  # mark and note, never draft
    calendar_summary: str | None = None  # calendar events whose summary contains this

    @field_validator("draft_template")
    @classmethod
    def _template_name(cls, v: str | None) -> str | None:
        if v is not None and (not v or "/" in v or "\\" in v or v.startswith(".")):
            raise ValueError(f"{v!r} must be a file name in config/templates/")
        return v

    @field_validator("emails")
    @classmethod
    def _emails(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_email(e) for e in v)


@dataclass(frozen=True)
class Client:
    id: str
    name: str
    emails: tuple[str, ...]
    sessions: Sessions
    active: bool
    hours: Hours | None = None
    draft_template: str | None = None
    notes_only: bool = False
    calendar_summary: str | None = None


@dataclass(frozen=True)
class Settings:
    """Everything loaded and checked: the main file, the clients, derived schedule."""

    path: Path
    main: MainConfig
    clients: dict[str, Client]
    name: str = ""  # the practitioner's id in a group practice ("" for a single one)

    @property
    def base(self) -> Path:
        return self.path.parent

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.main.timezone)

    @cached_property
    def schedule(self) -> hours.Schedule:
        return _schedule(self.tz, self.main.hours)

    @cached_property
    def _client_schedules(self) -> dict[str, hours.Schedule]:
        practice = self.main.hours.closed
        return {
            c.id: _schedule(self.tz, c.hours, extra_closed=practice)
            for c in self.clients.values() if c.hours is not None
        }

    def schedule_for(self, client: Client) -> hours.Schedule:
        """The client's own contact window where agreed (the practice's closed dates
        still apply), else the practice's hours."""
        return self._client_schedules.get(client.id, self.schedule)

    def resolve(self, path: str) -> Path:
        """Relative paths in the main file are relative to the main file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base / p

    @property
    def clients_dir(self) -> Path:
        return self.resolve(self.main.triage.clients_dir)

    @property
    def agenda_dir(self) -> Path:
        return self.resolve(self.main.agenda.dir)

    @property
    def state_path(self) -> Path:
        return self.resolve(self.main.state.path)

    @property
    def templates_dir(self) -> Path:
        return self.base / "templates"

    @property
    def digest_to(self) -> str:
        return self.main.digest.to or self.main.therapist.email

    @cached_property
    def client_by_email(self) -> dict[str, Client]:
        return {e: c for c in self.clients.values() if c.active for e in c.emails}


def _schedule(tz: ZoneInfo, h: Hours, extra_closed: tuple[str, ...] = ()) -> hours.Schedule:
    days = {i: hours.parse_day(list(getattr(h, name))) for i, name in enumerate(hours.WEEKDAYS)}
    closed = tuple(hours.parse_closed(c) for c in (*extra_closed, *h.closed))
    return hours.Schedule(tz=tz, days={k: v for k, v in days.items() if v}, closed=closed)


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def _message(err: ErrorDetails) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key is missing"
    return msg


def _validation_error(
    file: Path, exc: ValidationError, prefix: tuple[int | str, ...] = ()
) -> ConfigError:
    errors = exc.errors()
    first = errors[0]
    more = len({_where(e["loc"]) for e in errors}) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
    return ConfigError(f"{file}: {_where((*prefix, *first['loc']))}: {_message(first)}{tail}")


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{file}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from None


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_PATH


def _load_client(file: Path) -> Client:
    data = _read_toml(file)
    try:
        cf = ClientFile.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(file, exc) from None
    sessions = cf.sessions.build() if cf.sessions else Sessions()
    return Client(
        id=file.stem, name=cf.name, emails=cf.emails, sessions=sessions, active=cf.active,
        hours=cf.hours, draft_template=cf.draft_template, notes_only=cf.notes_only,
        calendar_summary=cf.calendar_summary,
    )


def _with_ca_files(settings: Settings, where: tuple[int | str, ...]) -> MainConfig:
    """``main`` with each ``ca_file`` resolved against the main file's folder (the TLS
    code opens it as given); one that does not exist is an error now, not at login."""
    main = settings.main
    for section in ("account", "smtp"):
        server = getattr(main, section)
        if server is None or not server.ca_file:
            continue
        path = settings.resolve(server.ca_file)
        if not path.is_file():
            key = _where((*where, section, "ca_file"))
            problem = "is not a file" if path.exists() else "does not exist"
            raise ConfigError(f"{settings.path}: {key}: {path} {problem}")
        resolved = server.model_copy(update={"ca_file": str(path)})
        main = main.model_copy(update={section: resolved})
    return main


SQLITE_HEADER = b"SQLite format 3\x00"


def _check_state_path(settings: Settings, where: tuple[int | str, ...]) -> None:
    """The state file is absent, empty or an SQLite database, in a folder (or a folder
    yet to be made). Nothing is changed, and at most the first 16 bytes are read."""
    path = settings.state_path
    key = _where((*where, "state", "path"))
    fail = f"{settings.path}: {key}: {path}"
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{fail}: {parent} is not a folder")
            break
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"{fail}: cannot be used: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{fail} is a folder; give a file, like \"state/inbox-guard.sqlite3\"")
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{fail} is not a regular file (left as it is)")
    try:
        with path.open("rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise ConfigError(f"{fail}: cannot read: {exc.strerror}") from None
    if head and head != SQLITE_HEADER:
        raise ConfigError(f"{fail} is not an inbox-guard state file (left as it is)")


def _build(file: Path, data: dict[str, Any], name: str = "",
           where: tuple[int | str, ...] = ()) -> Settings:
    """One practitioner's settings from their (merged) main table and client files."""
    try:
        main = MainConfig.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(file, exc, where) from None
    main = _with_ca_files(Settings(path=file, main=main, clients={}, name=name), where)
    settings = Settings(path=file, main=main, clients={}, name=name)
    _check_state_path(settings, where)
    key = _where((*where, "triage", "clients_dir"))
    cdir = settings.clients_dir
    if not cdir.is_dir():
        raise ConfigError(f"{file}: {key}: {cdir} is not a folder")
    clients: dict[str, Client] = {}
    owner: dict[str, Path] = {}
    therapist = set(main.therapist.all_addresses)
    templates = settings.templates_dir
    for cfile in sorted(cdir.glob("*.toml")):
        if cfile.name.startswith("."):
            continue  # hidden: an editor's lock or backup file (".#jane.toml")
        if not ACCOUNT_ID.fullmatch(cfile.stem):
            raise ConfigError(
                f"{cfile}: file name: {cfile.stem!r} is not a valid client id (a letter or "
                "digit first, then letters, digits, '.', '_', '-'; at most 64)"
            )
        client = _load_client(cfile)
        if client.draft_template and not (templates / client.draft_template).is_file():
            raise ConfigError(
                f"{cfile}: draft_template: {templates / client.draft_template} does not exist"
            )
        for e in client.emails:
            if e in therapist:
                raise ConfigError(f"{cfile}: emails: {e!r} is one of the therapist's addresses")
            if e in owner:
                raise ConfigError(f"{cfile}: emails: {e!r} is also a client email in {owner[e]}")
            owner[e] = cfile
        clients[client.id] = client
    return Settings(path=file, main=main, clients=clients, name=name)


ACCOUNT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _merge(shared: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """``own`` over ``shared``, table by table (a value, or a list, is replaced whole)."""
    out = dict(shared)
    for k, v in own.items():
        old = out.get(k)
        out[k] = _merge(old, v) if isinstance(v, dict) and isinstance(old, dict) else v
    return out


def _practitioners(file: Path) -> list[Settings]:
    """The practitioners in one main file: itself, or each of its ``[[accounts]]``.

    With ``[[accounts]]``, the file's other keys are shared by every account (each can
    override any of them), and each account's clients, agendas and state live in
    ``clients/<id>``, ``agendas/<id>`` and ``state/<id>.sqlite3`` unless it says
    otherwise, so nothing of one practitioner's is mixed with another's."""
    data = _read_toml(file)
    if "accounts" not in data:
        return [_build(file, data)]
    accounts = data["accounts"]
    if not isinstance(accounts, list) or not accounts \
            or not all(isinstance(a, dict) for a in accounts):
        raise ConfigError(f"{file}: accounts: give one [[accounts]] table per practitioner")
    shared = {k: v for k, v in data.items() if k != "accounts"}
    out: list[Settings] = []
    for i, entry in enumerate(accounts):
        ident = entry.get("id")
        if not isinstance(ident, str) or not ACCOUNT_ID.fullmatch(ident):
            problem = "required key is missing" if ident is None else f"{ident!r} is not valid"
            raise ConfigError(
                f"{file}: accounts[{i}].id: {problem} (a short name for the practitioner, "
                "like \"alex\": letters, digits, '.', '_', '-')"
            )
        namespaced = {"triage": {"clients_dir": f"clients/{ident}"},
                      "agenda": {"dir": f"agendas/{ident}"},
                      "state": {"path": f"state/{ident}.sqlite3"}}
        own = {k: v for k, v in entry.items() if k != "id"}
        merged = _merge(_merge(namespaced, shared), own)
        out.append(_build(file, merged, ident, ("accounts", i)))
    return out


def load_all(path: str | os.PathLike[str] | None = None) -> list[Settings]:
    """Every practitioner the config names: one main file; a main file with
    ``[[accounts]]``; or a folder holding one main file per practitioner. Each has
    their own clients, hours, digest and state."""
    where = config_path(path)
    if not where.is_dir():
        practices = _practitioners(where)
    else:
        files = sorted(f for f in where.glob("*.toml") if f.is_file())
        if not files:
            raise ConfigError(f"{where}: no main config files (*.toml) in this folder")
        practices = []
        for f in files:
            found = _practitioners(f)
            if len(found) == 1 and not found[0].name:
                found = [dataclasses.replace(found[0], name=f.stem)]
            practices.extend(found)
    names: dict[str, Path] = {}
    states: dict[Path, str] = {}
    for s in practices:
        label = f"{s.path}" + (f" ({s.name})" if s.name else "")
        if s.name in names:
            raise ConfigError(f"{s.path}: practitioner {s.name!r} is also in {names[s.name]}")
        names[s.name] = s.path
        state = s.state_path.resolve()
        if state in states:
            raise ConfigError(
                f"{label}: state.path: {state} is also the state file of {states[state]}; "
                "each practitioner needs their own"
            )
        states[state] = label
    return practices


def load(path: str | os.PathLike[str] | None = None, account: str | None = None) -> Settings:
    """Load and check one practitioner's settings (``account`` picks one where the
    config names several); raise ConfigError."""
    where = config_path(path)
    practices = load_all(where)
    names = [s.name for s in practices]
    if account is not None:
        for s in practices:
            if s.name == account:
                return s
        raise ConfigError(
            f"{where}: --account: no practitioner {account!r} here"
            + (f" (there are: {', '.join(names)})" if any(names) else "")
        )
    if len(practices) > 1:
        raise ConfigError(
            f"{where}: holds {len(practices)} practitioners ({', '.join(names)}); choose one "
            "with --account (`run` and `check` serve them all)"
        )
    return practices[0]
