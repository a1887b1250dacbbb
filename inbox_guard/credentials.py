"""Secrets come from the environment or a command, read only when connecting:
a password, or for ``auth = "xoauth2"`` an OAuth2 access token from ``token_command``."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from .config import Account, _Secret
from .errors import AuthError, ConfigError


def password(secret: _Secret, section: str, config_file: Path) -> str:
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
                secret.password_command, shell=True, capture_output=True, text=True,
                timeout=60, stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise ConfigError(f"{where}.password_command: timed out after 60 s") from None
        if done.returncode != 0:
            raise ConfigError(
                f"{where}.password_command: exited with status {done.returncode}"
            )
        value = done.stdout.splitlines()[0] if done.stdout else ""
        if not value:
            raise ConfigError(f"{where}.password_command: printed nothing")
        return value
    raise ConfigError(f"{where}: no password source: set password_env or password_command")


_QUERY = re.compile(r"(\bhttps?://[^\s?#]+)[?#]\S*")


def _without_queries(text: str) -> str:
    """Helpers print authorisation URLs whose query can hold a client secret."""
    return _QUERY.sub(r"\1?…", text)


def login_secret(account: Account, config_file: Path) -> str:
    """What the IMAP login needs: the password, or a fresh OAuth2 access token."""
    if account.auth != "xoauth2":
        return password(account, "account", config_file)
    where = f"{config_file}: account.token_command"
    try:
        done = subprocess.run(
            account.token_command or "", shell=True, capture_output=True, text=True,
            timeout=60, stdin=subprocess.DEVNULL,
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
