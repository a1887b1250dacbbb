"""Google sign-in: the installed-app flow with PKCE (Authlib's OAuth2Session) on a
loopback redirect, or the final address pasted into the terminal (``--no-browser``);
renewal with the refresh token, saved first when Google rotates it."""

from __future__ import annotations

import html
import http.server
import queue
import secrets
import sys
import threading
import urllib.parse
import webbrowser
from collections.abc import Callable
from typing import Any

from ..errors import AuthError, SignInNeeded
from ..tokens import Record, login_hint
from .common import (
    GOOGLE_AUTH_URI,
    GOOGLE_TOKEN_URI,
    LOGIN_WAIT,
    RENEW_BEFORE,
    Provider,
    access_token_of,
    claims,
    expired,
    lifetime,
    number,
    said,
    scopes,
)


class Google(Provider):
    def _session(self, redirect_uri: str | None = None) -> Any:
        from authlib.integrations.requests_client import OAuth2Session

        return OAuth2Session(
            self.account.client_id,
            self.account.client_secret,
            scope=" ".join(scopes(self.settings)),
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_post",
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
            raise AuthError(
                f"the sign-in server {host} answered HTTP {status}: try again later"
            ) from None
        except requests.RequestException as exc:
            raise self._unreachable(host, exc) from None
        except OAuthError as exc:
            if exc.error == "invalid_grant":
                raise SignInNeeded(
                    f"{expired(self.settings)} (Google: {said(exc.error, exc.description)})"
                ) from None
            raise AuthError(
                f"Google refused the sign-in for {self.account.username}: "
                + said(exc.error, exc.description)
            ) from None
        except (ValueError, TypeError, KeyError, OverflowError):  # not JSON, or odd JSON
            raise AuthError(
                f"the sign-in server {host} gave an answer that is not OAuth2"
            ) from None
        access_token_of(answer, f"the sign-in server {host}")
        return answer

    def login(self, say: Callable[[str], None], browser: bool) -> Record:
        from authlib.common.security import generate_token

        redirect = Redirect(login_hint(self.settings))
        try:
            session = self._session(redirect.uri)
            verifier = generate_token(64)
            url, state = session.create_authorization_url(
                self.account.auth_uri or GOOGLE_AUTH_URI,
                code_verifier=verifier,
                access_type="offline",
                prompt="consent",
                login_hint=self.account.username,
            )
            opened = browser and webbrowser.open(url)
            if opened:
                say(
                    f"Your browser is opening Google's sign-in for {self.account.username}. "
                    f"If it does not, open this address:\n{url}"
                )
            else:
                say(
                    f"To sign in {self.account.username} with Google, open this address in "
                    f"a browser:\n{url}\nIf the browser is on another machine, it ends on an "
                    f"address starting {redirect.uri} that does not load: paste that "
                    "address here."
                )
            answer = redirect.wait(LOGIN_WAIT, paste=not opened)
        finally:
            redirect.close()
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(answer).query))
        if params.get("state") != state:
            raise AuthError(
                "the sign-in answer does not belong to this login (its state "
                f"differs): run {login_hint(self.settings)} again"
            )
        if "code" not in params:
            raise AuthError(
                "Google sign-in did not complete: "
                + said(params.get("error"), params.get("error_description"))
            )
        token = self._call(
            lambda: session.fetch_token(
                self._token_uri,
                grant_type="authorization_code",
                code=params["code"],
                code_verifier=verifier,
                redirect_uri=redirect.uri,
            )
        )
        if not token.get("refresh_token"):
            raise AuthError(
                "Google gave no refresh token, so the sign-in could not be kept: "
                "remove inbox-guard's access in your Google account and log in "
                "again"
            )
        identity = claims(token.get("id_token"))
        record = self._base(identity.get("email"), token.get("scope"), token.get("expires_in"))
        record["access_token"] = token["access_token"]
        record["refresh_token"] = str(token["refresh_token"])
        if token.get("refresh_token_expires_in"):
            record["refresh_expires_at"] = self.clock() + lifetime(
                token["refresh_token_expires_in"]
            )
        return record

    def access_token(self, record: Record, fresh: bool) -> tuple[str, Record | None]:
        left = number(record.get("expires_at")) - self.clock()
        if not fresh and record.get("access_token") and left > RENEW_BEFORE:
            return str(record["access_token"]), None
        if not record.get("refresh_token"):
            raise expired(self.settings)
        session = self._session()
        token = self._call(
            lambda: session.refresh_token(self._token_uri, refresh_token=record["refresh_token"])
        )
        record = {
            **record,
            "access_token": token["access_token"],
            "expires_at": self.clock() + lifetime(token.get("expires_in")),
        }
        if token.get("refresh_token") and isinstance(token["refresh_token"], str):
            record["refresh_token"] = token["refresh_token"]  # rotated: the old may be void
        if token.get("refresh_token_expires_in"):
            record["refresh_expires_at"] = self.clock() + lifetime(
                token["refresh_token_expires_in"]
            )
        if token.get("scope"):
            record["scopes"] = str(token["scope"]).split()
        return str(token["access_token"]), record


class Redirect:
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
            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                if parts.path != path:
                    self.send_error(404)
                    return
                query = dict(urllib.parse.parse_qsl(parts.query))
                said = (
                    "Done: you can close this window and go back to the terminal."
                    if "code" in query and "error" not in query
                    else "The sign-in did not complete"
                    + (f" ({query['error'][:80]})" if query.get("error") else "")
                    + ": the terminal says what to do next."
                )
                body = (
                    "<!doctype html><title>inbox-guard</title><p>" + html.escape(said) + "</p>"
                ).encode()
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
            raise AuthError(
                f"no sign-in within {seconds / 60:.0f} minutes: run {self.hint} again when ready"
            ) from None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
