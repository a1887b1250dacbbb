"""``auth = "oauth2"`` without a server: the config's rules, the token store's file
(mode, atomic replacement, lock), and the one-line errors. The flows themselves run
against a real authorization server in tests/test_login.py."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from inbox_guard import signin
from inbox_guard.config import load
from inbox_guard.errors import ConfigError, SignInNeeded
from inbox_guard.signin import common
from inbox_guard.tokens import TokenStore

from .configs import write

MAIN = """\
timezone = "Europe/London"
[therapist]
name = "Alex"
email = "alex@example.org"
emergency_text = "Call 999."
[account]
host = "outlook.office365.com"
username = "alex@example.org"
{account}
[hours]
mon = ["09:00-17:00"]
{extra}
"""

MICROSOFT = 'auth = "oauth2"\nprovider = "microsoft"\nclient_id = "11111111-2222"'
GOOGLE = (
    'auth = "oauth2"\nprovider = "google"\nclient_id = "123.apps.googleusercontent.com"\n'
    'client_secret = "GOCSPX-synthetic"'
)


def config(tmp_path: Path, account: str = MICROSOFT, extra: str = "") -> Path:
    return write(tmp_path, MAIN.format(account=account, extra=textwrap.dedent(extra)))


def test_both_providers_load(tmp_path: Path) -> None:
    ms = load(config(tmp_path)).main.account
    assert (ms.auth, ms.provider, ms.client_id, ms.token_store) == (
        "oauth2",
        "microsoft",
        "11111111-2222",
        "file",
    )
    g = load(config(tmp_path, GOOGLE)).main.account
    assert (g.provider, g.client_secret) == ("google", "GOCSPX-synthetic")


@pytest.mark.parametrize(
    ("account", "expected"),
    [
        ('auth = "oauth2"\nclient_id = "x"', 'account: auth = "oauth2" needs provider'),
        ('auth = "oauth2"\nprovider = "microsoft"', "needs client_id (from your microsoft app"),
        ('auth = "oauth2"\nprovider = "yahoo"\nclient_id = "x"', "account.provider: "),
        (MICROSOFT + '\npassword_env = "PW"', "signs in with `inbox-guard login`, not a password"),
        (
            MICROSOFT + '\nclient_secret = "s"',
            "client_secret is not used with provider = "
            '"microsoft" (device-code sign-in is a public',
        ),
        (MICROSOFT + '\ntoken_uri = "https://x.example/token"', "token_uri is not used with"),
        (GOOGLE + '\ntenant = "organizations"', 'tenant is not used with provider = "google"'),
        ('auth = "oauth2"\nprovider = "google"\nclient_id = "x"', "needs client_secret"),
        (MICROSOFT + '\nauthority = "http://login.example/t"', "authority must be an https://"),
        (MICROSOFT + '\ntenant = "a/b"', "tenant 'a/b' is not a tenant name or id"),
        ('password_env = "PW"\nprovider = "google"', 'provider is only used with auth = "oauth2"'),
        (
            'password_env = "PW"\ntoken_command = "x"',
            'token_command is only used with auth = "xoauth2"',
        ),
        (MICROSOFT + '\ntoken_store = "vault"', "account.token_store: "),
    ],
)
def test_mistakes_are_one_line_naming_the_key(tmp_path: Path, account: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(config(tmp_path, account))
    said = str(caught.value)
    assert "\n" not in said
    assert str(tmp_path / "main.toml") in said
    assert expected in said


def test_smtp_oauth2_needs_the_account_signed_in_that_way(tmp_path: Path) -> None:
    smtp = """
        [digest]
        deliver = "smtp"
        [smtp]
        host = "smtp.office365.com"
        username = "alex@example.org"
        auth = "oauth2"
        """
    settings = load(config(tmp_path, extra=smtp))
    assert signin.scopes(settings) == [signin.MICROSOFT_IMAP, signin.MICROSOFT_SMTP]
    with pytest.raises(ConfigError, match=r"smtp\.auth = \"oauth2\" uses the account's sign-in"):
        load(config(tmp_path, 'password_env = "PW"', extra=smtp))


def test_scopes_ask_for_the_minimum(tmp_path: Path) -> None:
    assert signin.scopes(load(config(tmp_path))) == [signin.MICROSOFT_IMAP]
    assert signin.scopes(load(config(tmp_path, GOOGLE))) == [
        "openid",
        "email",
        "https://mail.google.com/",
    ]


def test_the_token_file_is_owner_only_beside_the_state(tmp_path: Path) -> None:
    settings = load(config(tmp_path))
    store = TokenStore(settings)
    assert store.path == tmp_path / "state" / "inbox-guard.tokens.json"
    assert store.read() is None
    with store.locked():
        store.write({"provider": "microsoft", "client_id": "11111111-2222", "who": "a"})
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert store.read() == {
        "provider": "microsoft",
        "client_id": "11111111-2222",
        "who": "a",
        "version": 1,
    }
    # Replaced whole: no temporary file is left beside it.
    assert sorted(p.name for p in store.path.parent.iterdir()) == [
        "inbox-guard.tokens.json",
        "inbox-guard.tokens.lock",
    ]


def test_no_sign_in_yet_is_one_line_saying_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SignInNeeded) as caught:
        signin.Tokens(load(config(tmp_path))).get()
    assert str(caught.value) == ("no sign-in kept for alex@example.org: run `inbox-guard login`")


@pytest.mark.parametrize("text", ["", "{", "[]", '{"version": 7}'])
def test_a_damaged_token_file_asks_for_a_new_login(tmp_path: Path, text: str) -> None:
    settings = load(config(tmp_path))
    store = TokenStore(settings)
    store.path.parent.mkdir(mode=0o700)
    store.path.write_text(text)
    with pytest.raises(SignInNeeded, match="is unreadable: run `inbox-guard login`"):
        signin.Tokens(settings).get()


def test_a_sign_in_for_another_client_id_is_not_used(tmp_path: Path) -> None:
    settings = load(config(tmp_path))
    store = TokenStore(settings)
    with store.locked():
        store.write({"provider": "microsoft", "client_id": "an-older-registration"})
    with pytest.raises(SignInNeeded, match="made for another provider or client_id"):
        signin.Tokens(settings).get()


def test_login_refuses_a_password_account(tmp_path: Path) -> None:
    path = write(tmp_path, MAIN.format(account='password_env = "PW"', extra=""))
    done = subprocess.run(
        [sys.executable, "-m", "inbox_guard", "--config", str(path), "login"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"inbox-guard: {path}: account.auth is 'password': `login` is for "
        'auth = "oauth2" (with provider = "google" or "microsoft")'
    )


def test_the_keyring_store_without_a_keyring_says_so(tmp_path: Path) -> None:
    path = config(tmp_path, MICROSOFT + '\ntoken_store = "keyring"')
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    done = subprocess.run(
        [sys.executable, "-m", "inbox_guard", "--config", str(path), "once"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().endswith(
        "no OS keyring was found on this machine, or it is "
        "disabled (on a server, "
        'use token_store = "file")'
    )


def test_id_token_claims_are_read_without_trusting_them_for_more_than_a_name() -> None:
    import base64

    body = base64.urlsafe_b64encode(json.dumps({"email": "alex@example.org"}).encode())
    assert common.claims(f"h.{body.decode().rstrip('=')}.s") == {"email": "alex@example.org"}
    for junk in (None, "", "a.b", "a.!!!.c", "a.bnVsbA.c"):
        assert common.claims(junk) == {}


def test_provider_errors_are_one_line_without_trace_ids() -> None:
    said = common.said(
        "invalid_grant",
        "AADSTS70008: The provided authorization code or "
        "refresh token has expired due to inactivity.\r\nTrace ID: 0a1b\r\n"
        "Correlation ID: 2c3d\r\nTimestamp: 2026-11-23 10:00:00Z",
    )
    assert said == (
        "invalid_grant: AADSTS70008: The provided authorization code or refresh "
        "token has expired due to inactivity."
    )
