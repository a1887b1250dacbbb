"""The one exception tree of inbox-guard.

    InboxGuardError
     ├── ConfigError          bad config or client file          -> exit 2
     ├── MailboxError         anything the IMAP side reports     -> exit 1
     │    ├── ConnectError    cannot reach the server / TLS      -> exit 3
     │    │    └── ConnectionLost  it hung up mid-command      -> exit 3
     │    └── AuthError       the server refused the login       -> exit 3
     │         └── SignInNeeded  auth = "oauth2": no sign-in kept, or it expired or
     │                           was revoked: `inbox-guard login` again  -> exit 3
     ├── DeliveryError        SMTP delivery of digest or alert   -> exit 1
     └── StoreError           the state database                 -> exit 1
          └── BusyError       another process holds the state file -> exit 1

Library exceptions are translated once, at the module that talks to the library,
with ``raise ... from exc``; messages never contain a password.
"""

from __future__ import annotations


class InboxGuardError(Exception):
    exit_code = 1


class ConfigError(InboxGuardError):
    exit_code = 2


class MailboxError(InboxGuardError):
    exit_code = 1


class ConnectError(MailboxError):
    exit_code = 3


class ConnectionLost(ConnectError):
    """The connection broke or the server closed it during a command (not a timeout).
    Some servers hang up on a command about one message they cannot read, so a pass
    logs in again and goes on without that message."""


class AuthError(MailboxError):
    exit_code = 3


class SignInNeeded(AuthError):
    """The provider no longer honours the kept sign-in (expired, revoked, or never
    made). Nothing but the practitioner running ``inbox-guard login`` can fix it, so
    the service tells them once, by the digest's route, and waits for a new sign-in."""


class DeliveryError(InboxGuardError):
    exit_code = 1


class StoreError(InboxGuardError):
    exit_code = 1


class BusyError(StoreError):
    """Another inbox-guard holds the state file's lock (an overlapping cron job, or
    ``once`` while ``run`` works). Exit status 1, like any other failure."""

    exit_code = 1
