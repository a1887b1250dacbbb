"""Passwords come from the environment or a command, read only when connecting."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .config import _Secret
from .errors import ConfigError


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
