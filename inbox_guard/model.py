"""The domain's types: a client, a practitioner's settings as the program uses them, a
contact (an out-of-hours message and what was done about it), and the service's own
trouble. The pure core (:mod:`decide`, the digest, :mod:`compose`) depends on this
module alone; :mod:`config` builds its settings from the files and :mod:`store` keeps
its contacts, so neither file reading nor SQLite is a step away from the decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from . import hours
from .sessions import Sessions

if TYPE_CHECKING:
    from .schema import Hours, MainConfig

# A message whose steps failed this many passes running is retried only once a day
# from then on, and listed in every digest until it is done.
MAX_ATTEMPTS = 3
RETRY_AFTER = timedelta(days=1)


def resolve(base: Path, path: str) -> Path:
    """Relative paths in the main file are relative to the main file's folder."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


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
    # Where relative state and agenda paths go ($INBOX_GUARD_DATA; the image sets /data),
    # else the main file's folder.
    data_dir: Path | None = None

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
            for c in self.clients.values()
            if c.hours is not None
        }

    def schedule_for(self, client: Client) -> hours.Schedule:
        """The client's own contact window where agreed (the practice's closed dates
        still apply), else the practice's hours."""
        return self._client_schedules.get(client.id, self.schedule)

    def resolve(self, path: str) -> Path:
        return resolve(self.base, path)

    @property
    def clients_dir(self) -> Path:
        return self.resolve(self.main.triage.clients_dir)

    @property
    def agenda_dir(self) -> Path:
        return resolve(self.data_dir or self.base, self.main.agenda.dir)

    @property
    def state_path(self) -> Path:
        return resolve(self.data_dir or self.base, self.main.state.path)

    @property
    def state_schema(self) -> str:
        """With ``state.url``: the practitioner's schema in that database."""
        return f"inbox_guard_{self.name}" if self.name else "inbox_guard"

    @property
    def templates_dir(self) -> Path:
        return self.base / "templates"

    @property
    def mail_domain(self) -> str:
        """The practitioner's own domain, for the Message-IDs of what inbox-guard writes."""
        return self.main.therapist.email.rpartition("@")[2]

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


@dataclass(frozen=True)
class Problem:
    """One kind of trouble the service had (a server down, a refused login, a calendar
    that could not be fetched): when it began, when it was last seen, how often."""

    what: str
    first: datetime
    last: datetime
    times: int


@dataclass(frozen=True)
class Unread:
    """A message that could not be read or screened: retried like a contact."""

    mailbox: str
    uidvalidity: int
    uid: int
    received: datetime | None
    error: str
    attempts: int
    first: datetime
    last: datetime


@dataclass(frozen=True)
class Contact:
    key: str
    client: str
    mailbox: str
    uidvalidity: int
    uid: int
    received: datetime
    address: str
    message_id: str | None
    refs: tuple[str, ...]
    subject: str | None
    draft: bool
    suppressed: str | None
    window: str
    session: datetime | None
    agenda: str
    risk: bool
    alert: bool = False
    keyword_done: int = 0
    agenda_done: bool = False
    draft_tried: bool = False
    draft_done: bool = False
    alert_done: bool = False
    attempts: int = 0
    base: str = ""  # the key of the first copy: copies of one message share it
    risk_done: int = 0
    last_error: str | None = None
    last_attempt: datetime | None = None
    was_flagged: bool = False
    reply_from: str | None = None

    @property
    def given_up(self) -> bool:
        """Failed :data:`MAX_ATTEMPTS` passes running: now retried once a day."""
        return self.attempts >= MAX_ATTEMPTS
