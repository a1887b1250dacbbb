"""The ``[account]`` (IMAP) and ``[smtp]`` sections: where to connect and how to sign
in. A password comes from the environment or a command, never from the file; with
``auth = "oauth2"`` inbox-guard signs in itself (``inbox-guard login``)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from .checks import Strict, is_loopback


class PasswordSource(Strict):
    """A password comes from the environment or a command, never from the file."""

    password_env: str | None = None
    password_command: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_literal_password(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise ValueError(
                "passwords do not belong in config files; use password_env or password_command"
            )
        return data

    @model_validator(mode="after")
    def _one_source(self) -> PasswordSource:
        if self.password_env and self.password_command:
            raise ValueError("set password_env or password_command, not both")
        return self


Security = Literal["tls", "starttls", "plain"]


class _Server(PasswordSource):
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Security = "tls"
    ca_file: str | None = None
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _plain_only_on_loopback(self) -> _Server:
        if self.security == "plain" and not is_loopback(self.host):
            raise ValueError(
                f'security = "plain" is only allowed to a loopback host, not {self.host!r}; '
                'use "tls" or "starttls"'
            )
        return self


Provider = Literal["google", "microsoft"]


class Account(_Server):
    username: str = Field(min_length=1)
    inbox: str = "INBOX"
    drafts: str = ""

    auth: Literal["password", "xoauth2", "oauth2"] = "password"
    token_command: str | None = None  # with auth = "xoauth2": prints a fresh access token
    # auth = "oauth2": inbox-guard signs in itself (`inbox-guard login`) and keeps the tokens.
    provider: Provider | None = None
    client_id: str | None = None
    client_secret: str | None = None  # Google's installed-app secret (not secret, says Google)
    tenant: str | None = None  # Microsoft: "common", "organizations", "consumers" or a tenant
    token_store: Literal["file", "keyring"] = "file"
    authority: str | None = None  # Microsoft, advanced: another cloud's sign-in address
    auth_uri: str | None = None  # Google, advanced: as in Google's client_secret.json
    token_uri: str | None = None

    @model_validator(mode="after")
    def _needs_secret(self) -> Account:
        oauth2_keys = [
            k
            for k in (
                "provider",
                "client_id",
                "client_secret",
                "tenant",
                "authority",
                "auth_uri",
                "token_uri",
            )
            if getattr(self, k) is not None
        ]
        if self.auth != "oauth2" and oauth2_keys:
            raise ValueError(f'{oauth2_keys[0]} is only used with auth = "oauth2"')
        if self.auth == "xoauth2":
            if not self.token_command:
                raise ValueError('auth = "xoauth2" needs token_command')
        elif self.auth == "oauth2":
            _check_oauth2(self)
        elif not (self.password_env or self.password_command):
            raise ValueError("no password source: set password_env or password_command")
        if self.auth != "xoauth2" and self.token_command:
            raise ValueError('token_command is only used with auth = "xoauth2"')
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.security == "tls" else 143)


def _check_oauth2(account: Account) -> None:
    """``auth = "oauth2"``: one provider's keys, complete, and no password."""
    if account.password_env or account.password_command:
        raise ValueError(
            'auth = "oauth2" signs in with `inbox-guard login`, not a '
            "password: remove password_env / password_command"
        )
    if account.provider is None:
        raise ValueError('auth = "oauth2" needs provider = "google" or "microsoft"')
    if not account.client_id:
        raise ValueError(
            f'auth = "oauth2" needs client_id (from your {account.provider} app registration)'
        )
    other = {
        "google": ("tenant", "authority"),
        "microsoft": ("client_secret", "auth_uri", "token_uri"),
    }[account.provider]
    for key in other:
        if getattr(account, key) is not None:
            why = (
                " (device-code sign-in is a public-client flow: no secret)"
                if key == "client_secret"
                else ""
            )
            raise ValueError(f'{key} is not used with provider = "{account.provider}"{why}')
    if account.provider == "google" and not account.client_secret:
        raise ValueError(
            'provider = "google" needs client_secret (the one Google shows '
            "with a Desktop app's client ID)"
        )
    for key in ("authority", "auth_uri", "token_uri"):
        url = getattr(account, key)
        if url is not None and not (url.startswith("https://") and len(url) > 8):
            raise ValueError(f"{key} must be an https:// address, not {url!r}")
    if account.tenant is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", account.tenant):
        raise ValueError(f"tenant {account.tenant!r} is not a tenant name or id")


class Smtp(_Server):
    security: Security = "starttls"
    username: str | None = None
    auth: Literal["password", "oauth2"] = "password"  # oauth2: the account's own sign-in

    @model_validator(mode="after")
    def _password_with_username(self) -> Smtp:
        if self.auth == "oauth2":
            if not self.username:
                raise ValueError('auth = "oauth2" needs username')
            if self.password_env or self.password_command:
                raise ValueError(
                    'auth = "oauth2" uses the account\'s sign-in, not a '
                    "password: remove password_env / password_command"
                )
        elif self.username and not (self.password_env or self.password_command):
            raise ValueError("username is set but no password_env or password_command")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or {"tls": 465, "starttls": 587, "plain": 25}[self.security]
