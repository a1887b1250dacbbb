"""Secrets come from the environment, a command or the kept sign-in, read only when
connecting: a password; for ``auth = "xoauth2"`` an OAuth2 access token printed by
``token_command``; for ``auth = "oauth2"`` the access token :mod:`inbox_guard.signin`
keeps current."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Protocol

from .errors import AuthError, ConfigError
from .model import Settings
from .schema import Account, PasswordSource


def password(secret: PasswordSource, section: str, config_file: Path) -> str:
    where = f"{config_file}: {section}"
    if secret.password_env:
        value = os.environ.get(secret.password_env)
        if not value:
            raise ConfigError(
                f"{where}.password_env: environment variable {secret.password_env} is not set"
            )
        return value
    if secret.password_command:
        try:
            done = subprocess.run(
                secret.password_command,
                shell=True,
                capture_output=True,
                text=True,
                timeout=60,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise ConfigError(f"{where}.password_command: timed out after 60 s") from None
        if done.returncode != 0:
            raise ConfigError(f"{where}.password_command: exited with status {done.returncode}")
        value = done.stdout.splitlines()[0] if done.stdout else ""
        if not value:
            raise ConfigError(f"{where}.password_command: printed nothing")
        return value
    raise ConfigError(f"{where}: no password source: set password_env or password_command")


_QUERY = re.compile(r"(\bhttps?://[^\s?#]+)[?#]\S*")


def _without_queries(text: str) -> str:
    """Helpers print authorisation URLs whose query can hold a client secret."""
    return _QUERY.sub(r"\1?…", text)


class Secret(Protocol):
    """What a login needs, asked for at each (re)connection. ``fresh``: the server has
    just refused the last one, so renew it if that is possible."""

    def get(self, fresh: bool = False) -> str: ...


class Fixed:
    def __init__(self, value: str) -> None:
        self.value = value

    def get(self, fresh: bool = False) -> str:
        return self.value


class _Password:
    def __init__(self, account: Account, config_file: Path) -> None:
        self.account, self.config_file = account, config_file

    def get(self, fresh: bool = False) -> str:
        return password(self.account, "account", self.config_file)


class _TokenCommand:
    def __init__(self, account: Account, config_file: Path) -> None:
        self.account, self.config_file = account, config_file

    def get(self, fresh: bool = False) -> str:
        return _token_from_command(self.account, self.config_file)


def login_secret(settings: Settings) -> Secret:
    """The account's login secret, by its ``auth``."""
    account = settings.main.account
    if account.auth == "oauth2":
        from .signin import Tokens

        return Tokens(settings)
    if account.auth == "xoauth2":
        return _TokenCommand(account, settings.path)
    return _Password(account, settings.path)


def _token_from_command(account: Account, config_file: Path) -> str:
    where = f"{config_file}: account.token_command"
    try:
        done = subprocess.run(
            account.token_command or "",
            shell=True,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise AuthError(f"{where}: the token helper timed out after 60 s") from None
    if done.returncode != 0:
        said = _without_queries((done.stderr.strip().splitlines() or [""])[-1])[:200]
        raise AuthError(
            f"{where}: the token helper failed (exit {done.returncode})"
            + (f": {said}" if said else "")
        )
    token = done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""
    if not token:
        raise AuthError(f"{where}: the token helper printed no token")
    return token
