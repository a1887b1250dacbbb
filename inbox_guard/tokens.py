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

from .errors import ConfigError, SignInNeeded, StoreError
from .files import FILE_MODE, private_dir, write_private
from .model import Settings

KEYRING_SERVICE = "inbox-guard"

Record = dict[str, Any]


def login_hint(settings: Settings) -> str:
    """The command that signs this practitioner in, as they would type it."""
    cmd = "inbox-guard" + (f" --account {settings.name}" if settings.name else "")
    return f"`{cmd} login`"


def _paths(settings: Settings) -> tuple[Path, Path]:
    """``state/dr.morgan.sqlite3`` -> ``state/dr.morgan.tokens.json`` (and ``.lock``)."""
    state = settings.state_path
    stem = state.stem or "inbox-guard"
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
        try:
            private_dir(self._lock_path.parent)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            raise self._cannot("keep", exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _cannot(self, what: str, exc: BaseException) -> StoreError:
        why = (
            exc.strerror
            if isinstance(exc, OSError) and exc.strerror
            else (
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
            )
        )
        extra = ' (unlock it, or use token_store = "file")' if self.keyring else ""
        return StoreError(f"cannot {what} the sign-in in {self.where}: {why}{extra}")

    def _raw(self) -> str | None:
        if self.keyring:
            ring = _keyring(self.settings.path)
            try:
                found = ring.get_password(KEYRING_SERVICE, self._key)
            except ring.errors.KeyringError as exc:
                raise self._cannot("read", exc) from None
            return None if found is None else str(found)
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeError) as exc:
            raise self._cannot("read", exc) from None

    def ready(self) -> None:
        """Fail now, not after the practitioner has signed in, if the sign-in could
        not be kept (a read-only folder, a locked or missing keyring)."""
        with self.locked():
            self._raw()
            if not self.keyring and not os.access(self.path.parent, os.W_OK):
                raise StoreError(
                    f"cannot keep the sign-in in {self.where}: its folder is not writable"
                )

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
                f"the sign-in kept in {self.where} is unreadable: run {login_hint(self.settings)}"
            )
        return record

    def write(self, record: Record) -> None:
        text = json.dumps({**record, "version": 1}, sort_keys=True)
        if self.keyring:
            ring = _keyring(self.settings.path)
            try:
                ring.set_password(KEYRING_SERVICE, self._key, text)
            except ring.errors.KeyringError as exc:
                raise self._cannot("keep", exc) from None
        else:
            try:
                write_private(self.path, text)
            except OSError as exc:
                raise self._cannot("keep", exc) from None

    def fingerprint(self) -> str:
        """Changes whenever the record does: the service watches it to try again at
        once after a new ``login``. Without the record's text in it."""
        raw = self._raw() or ""
        return hashlib.sha256(raw.encode()).hexdigest()


def _keyring(config_file: Path) -> Any:
    try:
        import keyring
        import keyring.errors
        from keyring.backends import fail, null
    except ImportError:
        raise ConfigError(
            f'{config_file}: account.token_store = "keyring" needs the keyring package: '
            "pip install 'inbox-guard[keyring]'"
        ) from None
    backend = keyring.get_keyring()
    if isinstance(backend, (fail.Keyring, null.Keyring)):  # none, or `keyring --disable`
        raise ConfigError(
            f'{config_file}: account.token_store = "keyring": no OS keyring was found '
            'on this machine, or it is disabled (on a server, use token_store = "file")'
        )
    return keyring
