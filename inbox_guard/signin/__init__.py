"""Signing in to Google or Microsoft for ``auth = "oauth2"``.

``inbox-guard login`` signs in once: Microsoft by the device-code flow with MSAL
(a URL and a code, typed into any browser: it works over SSH on a server); Google by
the installed-app flow with PKCE on a loopback redirect (Google does not allow the
full-mail scope over device code). The tokens are kept by :mod:`inbox_guard.tokens`.

Before each IMAP (or SMTP) login, :class:`Tokens` gives a current access token,
renewing it shortly before it expires, and at once when the server refuses it (one
retry). A refresh token the provider rotates is saved atomically before the new
access token is used. A grant that has expired or been revoked becomes one
:class:`SignInNeeded` line. No token text ever reaches a log or an error message.

MSAL and Authlib are imported only here, and only when an account signs in this way.

The package: :mod:`.common` (scopes, limits, the provider base, log redaction),
:mod:`.microsoft` and :mod:`.google` (one provider each); here, the two things the rest
of the program uses: :class:`Tokens` and :func:`login`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import SignInNeeded
from ..model import Settings
from ..tokens import Record, TokenStore, login_hint
from .common import (
    MICROSOFT_IMAP,
    MICROSOFT_SMTP,
    Clock,
    Provider,
    expired,
    hide,
    number,
    scopes,
)

__all__ = [
    "MICROSOFT_IMAP",
    "MICROSOFT_SMTP",
    "Status",
    "Tokens",
    "expired",
    "login",
    "scopes",
    "status_of",
]


@dataclass(frozen=True)
class Status:
    """What ``check --connect`` and ``login`` say about the kept sign-in."""

    provider: str
    who: str
    expires_at: float  # the access token's, seconds since the epoch
    scopes: tuple[str, ...]
    refresh_expires_at: float | None = None  # when the provider said (Google "testing")
    where: str = ""


def status_of(record: Record, where: str) -> Status:
    scopes = record.get("scopes")
    refresh = record.get("refresh_expires_at")
    return Status(
        provider=str(record.get("provider", "?")),
        who=str(record.get("who") or "(not said)"),
        expires_at=number(record.get("expires_at")),
        scopes=tuple(str(x) for x in scopes) if isinstance(scopes, list) else (),
        refresh_expires_at=number(refresh) if refresh is not None else None,
        where=where,
    )


class Tokens:
    """The access token for one account, kept current. It is the login secret for
    ``auth = "oauth2"``: ``get()`` before logging in, ``get(fresh=True)`` after the
    server refused a token."""

    def __init__(self, settings: Settings, clock: Clock = time.time) -> None:
        self.settings = settings
        self.account = settings.main.account
        self.store = TokenStore(settings)
        self.clock = clock
        self._provider: Provider | None = None

    def get(self, fresh: bool = False) -> str:
        with self.store.locked():
            record = self.store.read()
            if record is None:
                raise SignInNeeded(
                    f"no sign-in kept for {self.account.username}: run {login_hint(self.settings)}"
                )
            if (record.get("provider"), record.get("client_id")) != (
                self.account.provider,
                self.account.client_id,
            ):
                raise SignInNeeded(
                    f"the sign-in kept in {self.store.where} was made for another provider "
                    f"or client_id: run {login_hint(self.settings)}"
                )
            hide(record)
            if self._provider is None:  # kept: MSAL fetches its authority's metadata once
                self._provider = _provider(self.settings, self.clock)
            token, renewed = self._provider.access_token(record, fresh)
            if renewed is not None:
                hide(renewed)
                self.store.write(renewed)
            return token

    def status(self) -> Status | None:
        record = self.store.read()
        return status_of(record, self.store.where) if record else None


def login(
    settings: Settings, say: Callable[[str], None], browser: bool = True, clock: Clock = time.time
) -> Status:
    """Sign in interactively and keep the tokens; say what the practitioner must do."""
    store = TokenStore(settings)
    store.ready()  # before the practitioner signs in, not after
    record = _provider(settings, clock).login(say, browser)
    hide(record)
    with store.locked():
        store.write(record)
    return status_of(record, store.where)


def _provider(settings: Settings, clock: Clock) -> Provider:
    if settings.main.account.provider == "google":
        from .google import Google

        return Google(settings, clock)
    from .microsoft import Microsoft

    return Microsoft(settings, clock)
