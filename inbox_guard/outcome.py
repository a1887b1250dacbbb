"""What a pass reports: the counts and, per message, what was done (``once`` prints it,
``once --json`` writes it as JSON, ``demo`` shows it). The field names are a contract:
scripts read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict


class Flagged(TypedDict):
    """A message marked out of hours (``once --json``'s ``flagged``)."""

    uid: int
    message_id: str | None
    client: str
    received: str  # ISO 8601, the practice's local time
    draft: bool
    agenda: str  # the agenda file, relative to agenda.dir's parent
    risk: bool
    suppressed: str | None  # why no draft, when there is none


class Ignored(TypedDict):
    """A client's message left alone (an auto-reply, a list): ``ignored``."""

    uid: int
    client: str
    reason: str


class Failed(TypedDict):
    """A message with a step that failed this pass (retried later): ``errors``."""

    uid: int
    error: str


class PassJson(TypedDict):
    scanned: int
    flagged: list[Flagged]
    ignored: list[Ignored]
    errors: list[Failed]


@dataclass
class PassResult:
    scanned: int = 0
    flagged: list[Flagged] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)
    errors: list[Failed] = field(default_factory=list)

    def as_json(self) -> PassJson:
        return {
            "scanned": self.scanned,
            "flagged": self.flagged,
            "ignored": self.ignored,
            "errors": self.errors,
        }
