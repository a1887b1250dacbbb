"""Microsoft 365 sign-in: MSAL's device-code flow (an address and a code typed into
any browser, so it works over SSH), and MSAL's own cache for renewal."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

from ..errors import AuthError, InboxGuardError, SignInNeeded
from ..tokens import Record
from .common import (
    HTTP_TIMEOUT,
    MICROSOFT_AUTHORITY,
    Provider,
    access_token_of,
    expired,
    lifetime,
    said,
    scopes,
)


class Microsoft(Provider):
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
            return AuthError(
                f"the sign-in server {self._host()} answered with an error: "
                + said(type(exc).__name__, str(exc).splitlines()[0])
            )
        return AuthError(f"the sign-in server {self._host()} gave an answer that is not OAuth2")

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
                self.account.client_id,
                authority=authority,
                token_cache=cache,
                timeout=HTTP_TIMEOUT,
                instance_discovery=False if self.account.authority else None,
            )
        except requests.RequestException as exc:
            raise self._unreachable(host, exc) from None
        except ValueError as exc:  # MSAL: the authority's discovery document is missing
            raise AuthError(
                f"{self.settings.path}: account.tenant / authority: {host} does not know "
                f"{authority!r} ({str(exc).splitlines()[0][:200]})"
            ) from None
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
                raise AuthError(
                    "Microsoft did not start the sign-in: "
                    + said(flow.get("error"), flow.get("error_description"))
                )
            minutes = max(1, int(flow.get("expires_in", 900)) // 60)
            say(
                f"To sign in {self.account.username} with Microsoft, open "
                f"{flow['verification_uri']} in any browser and enter the code "
                f"{flow['user_code']} (valid for {minutes} minutes)."
            )
            result = app.acquire_token_by_device_flow(flow)
        except (requests.RequestException, msal.exceptions.MsalError, ValueError) as exc:
            raise self._failed(exc) from None
        if "access_token" not in result:
            raise AuthError(
                "Microsoft sign-in did not complete: "
                + said(result.get("error"), result.get("error_description"))
            )
        access_token_of(result, f"the sign-in server {self._host()}")
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
                scopes(self.settings), account=accounts[0], force_refresh=fresh
            )
        except (requests.RequestException, msal.exceptions.MsalError, ValueError) as exc:
            raise self._failed(exc) from None
        if not result:
            raise expired(self.settings)
        if "access_token" not in result:
            error = result.get("error")
            if error in ("invalid_grant", "interaction_required", "consent_required"):
                raise SignInNeeded(
                    f"{expired(self.settings)} (Microsoft: "
                    f"{said(error, result.get('error_description'))})"
                )
            raise AuthError(
                "Microsoft refused to renew the sign-in for "
                f"{self.account.username}: " + said(error, result.get("error_description"))
            )
        token = access_token_of(result, f"the sign-in server {self._host()}")
        if not cache.has_state_changed:
            return token, None
        record = {
            **record,
            "msal_cache": cache.serialize(),
            "access_token": token,
            "expires_at": self.clock() + lifetime(result.get("expires_in")),
        }
        if result.get("scope"):
            record["scopes"] = str(result["scope"]).split()
        return token, record
