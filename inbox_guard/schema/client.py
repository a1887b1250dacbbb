"""A client file (``clients/<id>.toml``): name, addresses, sessions, and what is
agreed with this client (own contact hours, own draft template, notes only)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, field_validator, model_validator

from .. import hours
from ..sessions import Sessions, parse_rrule
from .checks import Strict, email
from .practice import Hours


class SessionsSpec(Strict):
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
    def _valid(self) -> SessionsSpec:
        if (self.rrule is None) == (self.dates is None):
            raise ValueError("give either rrule (with start) or dates")
        if self.rrule is not None:
            if self.start is None:
                raise ValueError('rrule needs a start, like "2026-09-02T10:00"')
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


class ClientFile(Strict):
    name: str = Field(min_length=1)
    emails: tuple[str, ...] = Field(min_length=1)
    sessions: SessionsSpec | None = None
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
        return tuple(email(e) for e in v)
