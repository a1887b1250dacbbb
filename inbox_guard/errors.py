"""The one exception tree of inbox-guard.

    InboxGuardError
     ├── ConfigError          bad config or client file          -> exit 2
     ├── MailboxError         anything the IMAP side reports     -> exit 1
     │    ├── ConnectError    cannot reach the server / TLS      -> exit 3
     │    └── AuthError       the server refused the login       -> exit 3
     ├── DeliveryError        SMTP delivery of digest or alert   -> exit 1
     └── StoreError           the state database                 -> exit 1

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


class AuthError(MailboxError):
    exit_code = 3


class DeliveryError(InboxGuardError):
    exit_code = 1


class StoreError(InboxGuardError):
    exit_code = 1
