"""Finding the one message at fault: a batch the server refuses (or that fails for any
reason but the state file) is halved until the single message to blame is found and
reported, so one bad message never holds back the others. Used by reading (FETCH) and
by marking (STORE, COPY); only for work that is safe to repeat."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from .errors import ConnectError, ConnectionLost, StoreError
from .mailbox import Mailbox

log = logging.getLogger("inbox_guard.triage")

T = TypeVar("T")
R = TypeVar("R")
REDIALS = 30  # logins again per pass after the server hung up on a read


def reason(exc: BaseException) -> str:
    """One line for the log, the JSON and the digest (never a traceback)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:299] + "…"


class Redials:
    """How often one pass may log in again after the server hung up on a read."""

    def __init__(self, mailbox: Mailbox, budget: int = REDIALS) -> None:
        self.mailbox = mailbox
        self.left = budget

    def __call__(self, exc: ConnectError) -> bool:
        """Log in again (a failure to raises, ending the pass); True while there is
        budget left to look for the message at fault, False once the rest of the batch
        should be reported as not read this time (so the pass still records progress)."""
        log.warning(
            "the server hung up (%s); logging in again to go on without the message at fault", exc
        )
        self.mailbox.reconnect()
        self.left -= 1
        return self.left >= 0


def isolate(
    items: Sequence[T],
    work: Callable[[list[T]], R],
    fault: Callable[[T, Exception], None],
    redial: Redials | None = None,
) -> Iterator[tuple[list[T], R]]:
    """Run ``work`` over ``items`` in one go; when the server refuses it (or anything
    else goes wrong but the state file), halve and try again, so the one item at
    fault is found and reported without holding back the others. With ``redial``,
    also when the server hangs up (it may, on a message it cannot read): log in
    again and go on. Only for work that is safe to repeat (reads, STORE +FLAGS)."""
    if not items:
        return
    try:
        yield list(items), work(list(items))
    except ConnectionLost as exc:
        if redial is None:
            raise
        if not redial(exc) or len(items) == 1:
            for item in items:  # each is tried again on the next pass
                fault(item, exc)
            return
        mid = len(items) // 2
        yield from isolate(items[:mid], work, fault, redial)
        yield from isolate(items[mid:], work, fault, redial)
    except (ConnectError, StoreError):
        raise  # a timeout or a refused login is the server's trouble, not a message's
    except Exception as exc:
        if len(items) == 1:
            fault(items[0], exc)
            return
        mid = len(items) // 2
        yield from isolate(items[:mid], work, fault, redial)
        yield from isolate(items[mid:], work, fault, redial)
