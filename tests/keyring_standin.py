"""A stand-in for the OS keyring (macOS Keychain, Secret Service), which a test
machine has none of: a `keyring` backend keeping its secrets in the JSON file that
``IG_TEST_KEYRING`` names. Chosen with ``PYTHON_KEYRING_BACKEND=
tests.keyring_standin.FileKeyring``; it goes through the keyring package's real API."""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend


class FileKeyring(KeyringBackend):
    priority = 1

    @property
    def _file(self) -> Path:
        return Path(os.environ["IG_TEST_KEYRING"])

    def _all(self) -> dict[str, str]:
        try:
            return dict(json.loads(self._file.read_text()))
        except FileNotFoundError:
            return {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._all().get(f"{service}\x00{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        entries = self._all()
        entries[f"{service}\x00{username}"] = password
        self._file.write_text(json.dumps(entries))

    def delete_password(self, service: str, username: str) -> None:
        entries = self._all()
        entries.pop(f"{service}\x00{username}", None)
        self._file.write_text(json.dumps(entries))
