"""A relative account.ca_file is found beside the main config file, whatever folder
inbox-guard is started from: the TLS login uses the file the config names."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import PASSWORD_ENV, Account, write_practice
from .dovecot import Dovecot


@pytest.fixture(scope="module")
def tls_dovecot() -> Iterator[Dovecot]:
    with Dovecot(tls=True) as server:
        yield server


def test_a_relative_ca_file_works_from_any_working_folder(
    tmp_path: Path, tls_dovecot: Dovecot
) -> None:
    user, password = tls_dovecot.user("relative-ca")
    p = write_practice(tmp_path / "practice", Account(tls_dovecot, user, password))
    shutil.copy(tls_dovecot.cert, p.config.parent / "private-ca.pem")
    text = p.config.read_text().replace(
        f"port = {tls_dovecot.port}", f"port = {tls_dovecot.tls_port}"
    )
    text = text.replace('security = "plain"', 'security = "tls"\nca_file = "private-ca.pem"')
    p.config.write_text(text.replace('host = "127.0.0.1"', 'host = "localhost"'))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "inbox_guard", "--config", str(p.config), "check", "--connect"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=elsewhere,
        env={**os.environ, PASSWORD_ENV: password},
    )
    assert done.returncode == 0, done.stderr
    assert "(tls) login ok" in done.stdout
