"""What a command opens around its work: the state store (or, for a dry run, a copy
that is never written back) with a logged-in mailbox; a mailbox only to look in;
and the state file again, to keep trouble for the next digest. Imported by each
command when it runs, so `--help` stays quick."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime

from .credentials import login_secret
from .errors import InboxGuardError, StoreError
from .mailbox import Mailbox
from .model import Settings
from .store import Store


def remember(settings: Settings, notes: list[str], clock: datetime) -> None:
    """Keep trouble for the next digest (as the service does), when the state file
    can be used; a run from cron then hears of its failures the next morning."""

    if not notes:
        return
    with suppress(StoreError):  # busy included: whoever holds it is doing the work
        store = Store.open_for(settings, wait=0)
        try:
            for what in notes:
                store.note_problem(what, clock)
        finally:
            store.close()


@contextmanager
def looking(settings: Settings, note: Callable[[str], None]) -> Iterator[Mailbox | None]:
    """A mailbox to look in, or None (with a note) when the server cannot be reached."""

    try:
        mailbox = Mailbox.connect(settings.main.account, login_secret(settings))
    except InboxGuardError as exc:
        note(f"note: cannot look in Drafts ({exc})")
        yield None
        return
    try:
        yield mailbox
    finally:
        mailbox.logout()


@contextmanager
def session(settings: Settings, dry_run: bool) -> Iterator[tuple[Mailbox, Store]]:
    """A logged-in mailbox and the state store (a throwaway copy for dry runs)."""

    store = Store.snapshot_for(settings) if dry_run else Store.open_for(settings)
    try:
        mailbox = Mailbox.connect(settings.main.account, login_secret(settings))
        try:
            yield mailbox, store
        finally:
            mailbox.logout()
    finally:
        store.close()
