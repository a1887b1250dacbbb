"""What both providers share: the scopes to ask for, the limits believed of a token
endpoint's answer, the provider base class, and the filter that keeps token text out
of every log."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from ..errors import AuthError, ConnectError, SignInNeeded
from ..model import Settings
from ..schema import Account
from ..tokens import Record, login_hint

GOOGLE_AUTH_URI = "https://accounts.google.com/o/oauth2/auth"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com/"
GOOGLE_MAIL = "https://mail.google.com/"  # IMAP and SMTP both
MICROSOFT_IMAP = "https://outlook.office.com/IMAP.AccessAsUser.All"
MICROSOFT_SMTP = "https://outlook.office.com/SMTP.Send"

RENEW_BEFORE = 300.0  # seconds: renew an access token this long before it expires
LOGIN_WAIT = 600.0  # seconds the loopback redirect waits for the browser
HTTP_TIMEOUT = 30.0

Clock = Callable[[], float]


def scopes(settings: Settings) -> list[str]:
    """What to ask for: the mailbox over IMAP, SMTP when the digest goes that way with
    this sign-in, and (Google) the address, to say who signed in. Microsoft's openid,
    profile and offline_access MSAL adds itself."""
    main = settings.main
    if main.account.provider == "google":
        return ["openid", "email", GOOGLE_MAIL]
    wanted = [MICROSOFT_IMAP]
    if main.digest.deliver == "smtp" and main.smtp is not None and main.smtp.auth == "oauth2":
        wanted.append(MICROSOFT_SMTP)
    return wanted


def expired(settings: Settings) -> SignInNeeded:
    return SignInNeeded(
        f"sign-in for {settings.main.account.username} has expired or was "
        f"revoked: run {login_hint(settings)}"
    )


def claims(id_token: str | None) -> dict[str, Any]:
    """An ID token's claims, unverified: it came straight from the token endpoint over
    TLS, which OpenID Connect Core 3.1.3.7 accepts in place of the signature. Used
    only to say who signed in."""
    if not id_token or id_token.count(".") != 2:
        return {}
    part = id_token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except ValueError:
        return {}
    return claims if isinstance(claims, dict) else {}


_TRACE = re.compile(r"\s*(Trace ID|Correlation ID|Timestamp):.*", re.S)


def said(error: object, description: object) -> str:
    """The provider's own words, one line, without Microsoft's trace ids."""
    error = " ".join(str(error).split())[:100] if error else ""
    text = _TRACE.sub("", str(description or "").strip())
    text = " ".join(text.split())[:300]
    return f"{error}: {text}" if text and error else (text or error or "no reason given")


MAX_LIFETIME = 10 * 365 * 86400.0  # seconds: a longer lifetime is not believed


def lifetime(value: object) -> float:
    """``expires_in`` as the provider gave it, made a sane number of seconds: missing,
    negative or nonsense counts as already expired (renewed at next use), and no more
    than ten years is believed."""
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return 0.0
    if seconds != seconds:  # NaN
        return 0.0
    return min(max(seconds, 0.0), MAX_LIFETIME)


def access_token_of(answer: object, who: str) -> str:
    """The access token in a token endpoint's answer, or one line saying it is not there."""
    token = answer.get("access_token") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token.strip():
        raise AuthError(f"{who} answered without an access token: try again later")
    return token


class _Redact(logging.Filter):
    """Belt and braces for ``--debug``: the libraries' own debug lines (MSAL, urllib3,
    Authlib) never carry a token we hold; if one ever did, it is cut out here."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            if any(secret in text for secret in self.secrets):
                for secret in self.secrets:
                    text = text.replace(secret, "[token]")
                record.msg, record.args = text, ()
        return True


_REDACT = _Redact()


def hide(record: Record) -> None:
    """Register the record's secrets with the log filter (on every handler there is)."""
    found = [record.get("access_token"), record.get("refresh_token")]
    try:
        cache = json.loads(record.get("msal_cache") or "{}")
        found += [
            entry.get("secret")
            for kind in ("AccessToken", "RefreshToken", "IdToken")
            for entry in cache.get(kind, {}).values()
        ]
    except (ValueError, AttributeError):
        pass
    _REDACT.secrets.update(s for s in found if isinstance(s, str) and len(s) >= 8)
    for handler in logging.getLogger().handlers:
        if _REDACT not in handler.filters:
            handler.addFilter(_REDACT)


class Provider:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.account: Account = settings.main.account
        self.clock = clock

    def login(self, say: Callable[[str], None], browser: bool) -> Record:
        raise NotImplementedError

    def access_token(self, record: Record, fresh: bool) -> tuple[str, Record | None]:
        """The token, and the record to keep when it changed (else None)."""
        raise NotImplementedError

    def _base(self, who: str | None, granted: str | None, expires_in: Any) -> Record:
        return {
            "provider": self.account.provider,
            "client_id": self.account.client_id,
            "who": who,
            "scopes": (granted or " ".join(scopes(self.settings))).split(),
            "expires_at": self.clock() + lifetime(expires_in),
        }

    def _unreachable(self, host: str, exc: Exception) -> ConnectError:
        reason = type(exc).__name__
        return ConnectError(f"cannot reach the sign-in server {host}: {reason}")


def number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return 0.0
