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
"""

from __future__ import annotations

import base64
import html
import http.server
import json
import logging
import queue
import re
import secrets
import sys
import threading
import time
import urllib.parse
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import AuthError, ConnectError, InboxGuardError, SignInNeeded
from .model import Settings
from .schema import Account
from .tokens import Record, TokenStore, login_hint

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
    return SignInNeeded(f"sign-in for {settings.main.account.username} has expired or was "
                        f"revoked: run {login_hint(settings)}")


def _claims(id_token: str | None) -> dict[str, Any]:
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


def _said(error: object, description: object) -> str:
    """The provider's own words, one line, without Microsoft's trace ids."""
    error = " ".join(str(error).split())[:100] if error else ""
    text = _TRACE.sub("", str(description or "").strip())
    text = " ".join(text.split())[:300]
    return f"{error}: {text}" if text and error else (text or error or "no reason given")


MAX_LIFETIME = 10 * 365 * 86400.0  # seconds: a longer lifetime is not believed


def _lifetime(value: object) -> float:
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


def _access_token(answer: object, who: str) -> str:
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


def _hide(record: Record) -> None:
    """Register the record's secrets with the log filter (on every handler there is)."""
    found = [record.get("access_token"), record.get("refresh_token")]
    try:
        cache = json.loads(record.get("msal_cache") or "{}")
        found += [entry.get("secret") for kind in ("AccessToken", "RefreshToken", "IdToken")
                  for entry in cache.get(kind, {}).values()]
    except (ValueError, AttributeError):
        pass
    _REDACT.secrets.update(s for s in found if isinstance(s, str) and len(s) >= 8)
    for handler in logging.getLogger().handlers:
        if _REDACT not in handler.filters:
            handler.addFilter(_REDACT)


@dataclass(frozen=True)
class Status:
    """What ``check --connect`` and ``login`` say about the kept sign-in."""

    provider: str
    who: str
    expires_at: float  # the access token's, seconds since the epoch
    scopes: tuple[str, ...]
    refresh_expires_at: float | None = None  # when the provider said (Google "testing")
    where: str = ""


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return 0.0


def status_of(record: Record, where: str) -> Status:
    scopes = record.get("scopes")
    refresh = record.get("refresh_expires_at")
    return Status(
        provider=str(record.get("provider", "?")), who=str(record.get("who") or "(not said)"),
        expires_at=_number(record.get("expires_at")),
        scopes=tuple(str(x) for x in scopes) if isinstance(scopes, list) else (),
        refresh_expires_at=_number(refresh) if refresh is not None else None, where=where,
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
        self._provider: _Provider | None = None

    def get(self, fresh: bool = False) -> str:
        with self.store.locked():
            record = self.store.read()
            if record is None:
                raise SignInNeeded(f"no sign-in kept for {self.account.username}: run "
                                   f"{login_hint(self.settings)}")
            if (record.get("provider"), record.get("client_id")) != (
                    self.account.provider, self.account.client_id):
                raise SignInNeeded(
                    f"the sign-in kept in {self.store.where} was made for another provider "
                    f"or client_id: run {login_hint(self.settings)}")
            _hide(record)
            if self._provider is None:  # kept: MSAL fetches its authority's metadata once
                self._provider = _provider(self.settings, self.clock)
            token, renewed = self._provider.access_token(record, fresh)
            if renewed is not None:
                _hide(renewed)
                self.store.write(renewed)
            return token

    def status(self) -> Status | None:
        record = self.store.read()
        return status_of(record, self.store.where) if record else None


def login(settings: Settings, say: Callable[[str], None], browser: bool = True,
          clock: Clock = time.time) -> Status:
    """Sign in interactively and keep the tokens; say what the practitioner must do."""
    store = TokenStore(settings)
    store.ready()  # before the practitioner signs in, not after
    record = _provider(settings, clock).login(say, browser)
    _hide(record)
    with store.locked():
        store.write(record)
    return status_of(record, store.where)


def _provider(settings: Settings, clock: Clock) -> _Provider:
    if settings.main.account.provider == "google":
        return _Google(settings, clock)
    return _Microsoft(settings, clock)


class _Provider:
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
            "provider": self.account.provider, "client_id": self.account.client_id,
            "who": who, "scopes": (granted or " ".join(scopes(self.settings))).split(),
            "expires_at": self.clock() + _lifetime(expires_in),
        }

    def _unreachable(self, host: str, exc: Exception) -> ConnectError:
        reason = type(exc).__name__
        return ConnectError(f"cannot reach the sign-in server {host}: {reason}")


# -- Microsoft: MSAL, device code -----------------------------------------------------


class _Microsoft(_Provider):
    def _authority(self) -> str:
        return self.account.authority or MICROSOFT_AUTHORITY + (self.account.tenant or "common")

    def _host(self) -> str:
        return urllib.parse.urlsplit(self._authority()).hostname or self._authority()

    def _failed(self, exc: Exception) -> InboxGuardError:
        """MSAL's and requests' exceptions as one line each."""
        import msal.exceptions
        import requests

        if isinstance(exc, requests.RequestException):
            return self._unreachable(self._host(), exc)
        if isinstance(exc, msal.exceptions.MsalError):
            return AuthError(f"the sign-in server {self._host()} answered with an error: "
                             + _said(type(exc).__name__, str(exc).splitlines()[0]))
        return AuthError(f"the sign-in server {self._host()} gave an answer that is not "
                         "OAuth2")

    _made: tuple[Any, Any] | None = None

    def _app(self, cache_text: str | None) -> tuple[Any, Any]:
        """MSAL's application, made once (it asks the authority for its metadata), with
        its token cache loaded from ``cache_text`` each time: the kept record is the
        truth, another process may have renewed it."""
        if self._made is not None:
            app, cache = self._made
            cache.deserialize(cache_text)
            return app, cache
        import msal
        import requests

        cache = msal.SerializableTokenCache()
        if cache_text:
            cache.deserialize(cache_text)
        authority = self._authority()
        host = urllib.parse.urlsplit(authority).hostname or authority
        try:
            app = msal.PublicClientApplication(
                self.account.client_id, authority=authority, token_cache=cache,
                timeout=HTTP_TIMEOUT,
                instance_discovery=False if self.account.authority else None,
            )
        except requests.RequestException as exc:
            raise self._unreachable(host, exc) from None
        except ValueError as exc:  # MSAL: the authority's discovery document is missing
            raise AuthError(
                f"{self.settings.path}: account.tenant / authority: {host} does not know "
                f"{authority!r} ({str(exc).splitlines()[0][:200]})") from None
        self._made = (app, cache)
        return app, cache

    def login(self, say: Callable[[str], None], browser: bool) -> Record:
        import msal.exceptions
        import requests

        app, cache = self._app(None)
        wanted = scopes(self.settings)
        try:
            flow = app.initiate_device_flow(scopes=wanted)
            if "user_code" not in flow:
                raise AuthError("Microsoft did not start the sign-in: "
                                + _said(flow.get("error"), flow.get("error_description")))
            minutes = max(1, int(flow.get("expires_in", 900)) // 60)
            say(f"To sign in {self.account.username} with Microsoft, open "
                f"{flow['verification_uri']} in any browser and enter the code "
                f"{flow['user_code']} (valid for {minutes} minutes).")
            result = app.acquire_token_by_device_flow(flow)
        except (requests.RequestException, msal.exceptions.MsalError, ValueError) as exc:
            raise self._failed(exc) from None
        if "access_token" not in result:
            raise AuthError("Microsoft sign-in did not complete: "
                            + _said(result.get("error"), result.get("error_description")))
        _access_token(result, f"the sign-in server {self._host()}")
        claims = result.get("id_token_claims") or {}
        who = claims.get("preferred_username") or claims.get("email")
        record = self._base(who, result.get("scope"), result.get("expires_in"))
        record["msal_cache"] = cache.serialize()
        record["home_account_id"] = (result.get("id_token_claims") or {}).get("sub")
        record["access_token"] = result["access_token"]
        return record

    def access_token(self, record: Record, fresh: bool) -> tuple[str, Record | None]:
        import msal.exceptions
        import requests

        app, cache = self._app(record.get("msal_cache"))
        accounts = app.get_accounts(username=record.get("who")) or app.get_accounts()
        if not accounts:
            raise expired(self.settings)
        try:
            result = app.acquire_token_silent_with_error(
                scopes(self.settings), account=accounts[0], force_refresh=fresh)
        except (requests.RequestException, msal.exceptions.MsalError, ValueError) as exc:
            raise self._failed(exc) from None
        if not result:
            raise expired(self.settings)
        if "access_token" not in result:
            error = result.get("error")
            if error in ("invalid_grant", "interaction_required", "consent_required"):
                raise SignInNeeded(f"{expired(self.settings)} (Microsoft: "
                                   f"{_said(error, result.get('error_description'))})")
            raise AuthError("Microsoft refused to renew the sign-in for "
                            f"{self.account.username}: "
                            + _said(error, result.get("error_description")))
        token = _access_token(result, f"the sign-in server {self._host()}")
        if not cache.has_state_changed:
            return token, None
        record = {**record, "msal_cache": cache.serialize(), "access_token": token,
                  "expires_at": self.clock() + _lifetime(result.get("expires_in"))}
        if result.get("scope"):
            record["scopes"] = str(result["scope"]).split()
        return token, record


# -- Google: Authlib, installed app with PKCE on a loopback redirect ------------------


class _Google(_Provider):
    def _session(self, redirect_uri: str | None = None) -> Any:
        from authlib.integrations.requests_client import OAuth2Session

        return OAuth2Session(
            self.account.client_id, self.account.client_secret,
            scope=" ".join(scopes(self.settings)), redirect_uri=redirect_uri,
            code_challenge_method="S256", token_endpoint_auth_method="client_secret_post",
        )

    @property
    def _token_uri(self) -> str:
        return self.account.token_uri or GOOGLE_TOKEN_URI

    def _call(self, what: Callable[[], Any]) -> Any:
        import requests
        from authlib.integrations.base_client.errors import OAuthError

        host = urllib.parse.urlsplit(self._token_uri).hostname or self._token_uri
        try:
            answer = what()
        except requests.HTTPError as exc:  # a 5xx: the server is there, and failing
            status = exc.response.status_code if exc.response is not None else "?"
            raise AuthError(f"the sign-in server {host} answered HTTP {status}: try again "
                            "later") from None
        except requests.RequestException as exc:
            raise self._unreachable(host, exc) from None
        except OAuthError as exc:
            if exc.error == "invalid_grant":
                raise SignInNeeded(f"{expired(self.settings)} (Google: "
                                   f"{_said(exc.error, exc.description)})") from None
            raise AuthError(f"Google refused the sign-in for {self.account.username}: "
                            + _said(exc.error, exc.description)) from None
        except (ValueError, TypeError, KeyError, OverflowError):  # not JSON, or odd JSON
            raise AuthError(f"the sign-in server {host} gave an answer that is not "
                            "OAuth2") from None
        _access_token(answer, f"the sign-in server {host}")
        return answer

    def login(self, say: Callable[[str], None], browser: bool) -> Record:
        from authlib.common.security import generate_token

        redirect = _Redirect(login_hint(self.settings))
        try:
            session = self._session(redirect.uri)
            verifier = generate_token(64)
            url, state = session.create_authorization_url(
                self.account.auth_uri or GOOGLE_AUTH_URI, code_verifier=verifier,
                access_type="offline", prompt="consent", login_hint=self.account.username,
            )
            opened = browser and webbrowser.open(url)
            if opened:
                say(f"Your browser is opening Google's sign-in for {self.account.username}. "
                    f"If it does not, open this address:\n{url}")
            else:
                say(f"To sign in {self.account.username} with Google, open this address in "
                    f"a browser:\n{url}\nIf the browser is on another machine, it ends on an "
                    f"address starting {redirect.uri} that does not load: paste that "
                    "address here.")
            answer = redirect.wait(LOGIN_WAIT, paste=not opened)
        finally:
            redirect.close()
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(answer).query))
        if params.get("state") != state:
            raise AuthError("the sign-in answer does not belong to this login (its state "
                            f"differs): run {login_hint(self.settings)} again")
        if "code" not in params:
            raise AuthError("Google sign-in did not complete: "
                            + _said(params.get("error"), params.get("error_description")))
        token = self._call(lambda: session.fetch_token(
            self._token_uri, grant_type="authorization_code", code=params["code"],
            code_verifier=verifier, redirect_uri=redirect.uri))
        if not token.get("refresh_token"):
            raise AuthError("Google gave no refresh token, so the sign-in could not be kept: "
                            "remove inbox-guard's access in your Google account and log in "
                            "again")
        claims = _claims(token.get("id_token"))
        record = self._base(claims.get("email"), token.get("scope"), token.get("expires_in"))
        record["access_token"] = token["access_token"]
        record["refresh_token"] = str(token["refresh_token"])
        if token.get("refresh_token_expires_in"):
            record["refresh_expires_at"] = self.clock() + _lifetime(
                token["refresh_token_expires_in"])
        return record

    def access_token(self, record: Record, fresh: bool) -> tuple[str, Record | None]:
        left = _number(record.get("expires_at")) - self.clock()
        if not fresh and record.get("access_token") and left > RENEW_BEFORE:
            return str(record["access_token"]), None
        if not record.get("refresh_token"):
            raise expired(self.settings)
        session = self._session()
        token = self._call(lambda: session.refresh_token(
            self._token_uri, refresh_token=record["refresh_token"]))
        record = {**record, "access_token": token["access_token"],
                  "expires_at": self.clock() + _lifetime(token.get("expires_in"))}
        if token.get("refresh_token") and isinstance(token["refresh_token"], str):
            record["refresh_token"] = token["refresh_token"]  # rotated: the old may be void
        if token.get("refresh_token_expires_in"):
            record["refresh_expires_at"] = self.clock() + _lifetime(
                token["refresh_token_expires_in"])
        if token.get("scope"):
            record["scopes"] = str(token["scope"]).split()
        return str(token["access_token"]), record


class _Redirect:
    """The loopback end of Google's installed-app flow (RFC 8252 7.3): a one-shot HTTP
    server on 127.0.0.1 that takes the browser's redirect; or the same address pasted
    into the terminal when the browser is on another machine."""

    def __init__(self, hint: str) -> None:
        self.answers: queue.Queue[str] = queue.Queue()
        self.path = "/" + secrets.token_hex(8)
        self.hint = hint
        answers = self.answers
        path = self.path

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                parts = urllib.parse.urlsplit(self.path)
                if parts.path != path:
                    self.send_error(404)
                    return
                query = dict(urllib.parse.parse_qsl(parts.query))
                said = ("Done: you can close this window and go back to the terminal."
                        if "code" in query and "error" not in query else
                        "The sign-in did not complete"
                        + (f" ({query['error'][:80]})" if query.get("error") else "")
                        + ": the terminal says what to do next.")
                body = ("<!doctype html><title>inbox-guard</title><p>" + html.escape(said)
                        + "</p>").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                answers.put(self.path)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _read_pasted(self) -> None:
        for line in sys.stdin:
            if "code=" in line or "error=" in line:
                self.answers.put(line.strip())
                return

    def wait(self, seconds: float, paste: bool) -> str:
        if paste:
            threading.Thread(target=self._read_pasted, daemon=True).start()
        try:
            return self.answers.get(timeout=seconds)
        except queue.Empty:
            raise AuthError(f"no sign-in within {seconds / 60:.0f} minutes: run "
                            f"{self.hint} again when ready") from None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
