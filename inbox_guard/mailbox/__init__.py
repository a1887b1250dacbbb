"""The one package that talks IMAP (imapclient).

Everything IMAP-specific lives here: TLS, login, SPECIAL-USE, UIDVALIDITY, batching
into compact UID sets. Library and socket exceptions are translated once, at this
boundary, into :mod:`inbox_guard.errors`. Client messages are only ever read with
BODY.PEEK (their \\Seen flag never changes) and only ever given keywords/flags.

Its modules: :mod:`.session` (connecting, logging in, selecting, translating errors),
:mod:`.reading` (new UIDs, headers, text windows, IDLE), :mod:`.writing` (marks,
copies, drafts), :mod:`.parse` (pure: FETCH answers and IMAP syntax) and
:mod:`.protocol_log` (what ``--debug`` may log of the conversation).
"""

from __future__ import annotations

from . import protocol_log
from .parse import Fetched, Status, TextWindow, special_folder, uid_set
from .reading import Reading
from .writing import Writing

protocol_log.install()

__all__ = ["Fetched", "Mailbox", "Status", "TextWindow", "special_folder", "uid_set"]


class Mailbox(Reading, Writing):
    """A logged-in IMAP connection and the few operations a pass needs."""
