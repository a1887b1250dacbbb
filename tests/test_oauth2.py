"""XOAUTH2 through token_command, against Dovecot's oauth2 passdb asking a local
token-introspection endpoint (RFC 7662 style: POST token=..., JSON answer)."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from inbox_guard.credentials import login_secret
from inbox_guard.errors import AuthError
from inbox_guard.model import Settings
from inbox_guard.schema import MainConfig

from .conftest import Account, message, write_practice
from .dovecot import Dovecot

GOOD = "ya29.synthetic-good-token"
USER = "alex@example.org"


class Introspect(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        token = urllib.parse.parse_qs(body).get("token", [""])[0]
        answer = {"active": True, "username": USER} if token == GOOD else {"active": False}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def oauth_dovecot() -> Iterator[Dovecot]:
    endpoint = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Introspect)
    threading.Thread(target=endpoint.serve_forever, daemon=True).start()
    server = Dovecot()
    ext = server.root / "oauth2.conf.ext"
    ext.write_text(
        "introspection_mode = post\n"
        f"introspection_url = http://127.0.0.1:{endpoint.server_address[1]}/introspect\n"
        "username_attribute = username\nactive_attribute = active\nactive_value = true\n"
        "force_introspection = yes\n"
    )
    server.write_config(
        extra=(
            "auth_mechanisms = plain login xoauth2 oauthbearer\n"
            f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {ext}\n}}\n"
        )
    )
    server.start()
    try:
        yield server
    finally:
        server.cleanup()
        endpoint.shutdown()
        endpoint.server_close()


def oauth_practice(tmp_path: Path, server: Dovecot, token_command: str) -> Path:
    account = Account(server, USER, "")
    p = write_practice(tmp_path, account)
    text = p.config.read_text().replace(
        'password_env = "IG_TEST_PASSWORD"', f'auth = "xoauth2"\ntoken_command = "{token_command}"'
    )
    p.config.write_text(text)
    return p.config


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "IG_TEST_PASSWORD"}
    return subprocess.run(
        [sys.executable, "-m", "inbox_guard", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_token_command_logs_in_with_xoauth2(tmp_path: Path, oauth_dovecot: Dovecot) -> None:
    from imapclient import IMAPClient

    with IMAPClient("127.0.0.1", port=oauth_dovecot.port, ssl=False) as c:
        c.oauth2_login(USER, GOOD)
        c.append("INBOX", message(), msg_time=datetime(2026, 11, 15, 23, 40, tzinfo=UTC))
    config = oauth_practice(tmp_path, oauth_dovecot, f"echo {GOOD}")
    done = run(config, "once", "--json", "--now", "2026-11-16T08:00")
    assert done.returncode == 0, done.stderr
    assert [f["client"] for f in json.loads(done.stdout)["flagged"]] == ["jane-doe"]


def test_a_refused_token_says_so_without_showing_it(tmp_path: Path, oauth_dovecot: Dovecot) -> None:
    config = oauth_practice(tmp_path, oauth_dovecot, "echo ya29.expired-token")
    done = run(config, "once")
    assert done.returncode == 3
    assert "refused the OAuth2 token for 'alex@example.org' (expired, revoked" in done.stderr
    assert "ya29.expired-token" not in done.stderr + done.stdout


def test_a_failing_token_helper_is_named(tmp_path: Path, oauth_dovecot: Dovecot) -> None:
    config = oauth_practice(
        tmp_path, oauth_dovecot, "echo refresh token expired, log in again >&2; exit 4"
    )
    done = run(config, "once")
    assert done.returncode == 3
    assert done.stderr.strip().endswith(
        "account.token_command: the token helper failed (exit 4): refresh token expired, log in again"
    )


def test_a_helper_asking_for_authorisation_does_not_leak_its_url_query(tmp_path: Path) -> None:
    # pizauth, before the first authorisation, prints a URL carrying the client secret.
    url = "https://login.example.net/oauth2/authorize?client_id=abc&client_secret=s3cret"
    main = MainConfig.model_validate(
        {
            "timezone": "UTC",
            "therapist": {"name": "Alex", "email": USER, "emergency_text": "Call 999."},
            "account": {
                "host": "imap.example.net",
                "username": USER,
                "auth": "xoauth2",
                "token_command": (
                    f"echo 'Token unavailable until authorised with URL {url}' >&2; exit 1"
                ),
            },
        }
    )
    secret = login_secret(Settings(path=tmp_path / "inbox-guard.toml", main=main, clients={}))
    with pytest.raises(AuthError) as caught:
        secret.get()
    said = str(caught.value)
    assert said.endswith(
        "failed (exit 1): Token unavailable until authorised with URL "
        "https://login.example.net/oauth2/authorize?…"
    )
    assert "s3cret" not in said
