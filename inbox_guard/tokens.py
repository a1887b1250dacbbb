"""Where ``auth = "oauth2"`` keeps its sign-in, and the lock around changing it.

The record is a small JSON object: the provider and client it was made for, who
signed in, the scopes granted, the current access token and its expiry, and what
renews it (Google: the refresh token; Microsoft: MSAL's token cache, which holds the
refresh token and rotates it). It lives in a file beside the state file
(``<state>.tokens.json``, 0600 in a 0700 folder, replaced atomically), or in the OS
keyring with ``token_store = "keyring"``. Its text never goes to a log or an error.

Every change happens under an exclusive lock on ``<state>.tokens.lock``, re-reading
the record first, so ``run``, ``once`` and ``login`` never renew with a refresh token
another process has just rotated away.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .config import Settings
from .errors import ConfigError, SignInNeeded
from .files import FILE_MODE, private_dir, write_private

KEYRING_SERVICE = "inbox-guard"

Record = dict[str, Any]


def _paths(settings: Settings) -> tuple[Path, Path]:
    state = settings.state_path
    stem = state.name.split(".", 1)[0] or "inbox-guard"
    return state.with_name(f"{stem}.tokens.json"), state.with_name(f"{stem}.tokens.lock")


class TokenStore:
    """The kept sign-in of one account: ``read`` / ``write`` under ``locked()``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.account = settings.main.account
        self.path, self._lock_path = _paths(settings)
        self.keyring = self.account.token_store == "keyring"
        self._key = f"{self.account.provider}:{self.account.client_id}:{self.account.username}"

    @property
    def where(self) -> str:
        if self.keyring:
            return f"the OS keyring ({KEYRING_SERVICE}, {self._key})"
        return str(self.path)

    @contextmanager
    def locked(self) -> Iterator[None]:
        private_dir(self._lock_path.parent)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _raw(self) -> str | None:
        if self.keyring:
            found = _keyring(self.settings.path).get_password(KEYRING_SERVICE, self._key)
            return None if found is None else str(found)
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def read(self) -> Record | None:
        """The kept record, or None when nobody has signed in yet."""
        raw = self._raw()
        if raw is None:
            return None
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        if not isinstance(record, dict) or record.get("version") != 1:
            raise SignInNeeded(
                f"the sign-in kept in {self.where} is unreadable: run `inbox-guard login`"
            )
        return record

    def write(self, record: Record) -> None:
        text = json.dumps({**record, "version": 1}, sort_keys=True)
        if self.keyring:
            _keyring(self.settings.path).set_password(KEYRING_SERVICE, self._key, text)
        else:
            write_private(self.path, text)

    def fingerprint(self) -> str:
        """Changes whenever the record does: the service watches it to try again at
        once after a new ``login``. Without the record's text in it."""
        raw = self._raw() or ""
        return hashlib.sha256(raw.encode()).hexdigest()


def _keyring(config_file: Path) -> Any:
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        raise ConfigError(
            f"{config_file}: account.token_store = \"keyring\" needs the keyring package: "
            "pip install 'inbox-guard[keyring]'"
        ) from None
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring):
        raise ConfigError(
            f"{config_file}: account.token_store = \"keyring\": no OS keyring was found "
            "on this machine (on a server, use token_store = \"file\")"
        )
    return keyring
