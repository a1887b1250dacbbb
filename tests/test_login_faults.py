"""``auth = "oauth2"`` when the provider, the proxy or the machine misbehaves: a token
endpoint answering 5xx, HTML or odd JSON, a keyring that is locked or disabled, a
read-only state folder, ids with dots in a group practice. Each is one line with the
right exit status, and nothing is asked of the practitioner that cannot be kept.
(Found by an adversarial review; each test failed before its fix.)

Real servers only: tests/authserver.py (Authlib on loopback HTTPS), with a few canned
answers added on its token endpoints to play a broken provider or proxy. The token
problems here all happen before inbox-guard opens its IMAP connection, so no Dovecot
is needed: the config names a loopback port nothing listens on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Response

from .authserver import AuthServer
from .conftest import Account, write_practice
from .dovecot import free_port
from .oauth_flow import (
    G_CLIENT,
    G_SECRET,
    MS_CLIENT,
    USER,
    Lines,
    Signed,
    finish,
    login_google,
    login_microsoft,
    provider_keys,
)

OTHER = "sam@example.org"


class Canned:
    """What the broken token endpoints answer; "pass" hands the request to the real one."""

    def __init__(self) -> None:
        self.mode = "pass"
        self.status = 200
        self.body = "{}"
        self.ctype = "application/json"

    def answer(self, status: int, body: str, ctype: str = "application/json") -> None:
        self.mode, self.status, self.body, self.ctype = "canned", status, body, ctype


@pytest.fixture
def broken() -> Iterator[tuple[AuthServer, Canned]]:
    """An AuthServer whose Microsoft tenant ``tenant-0001`` token endpoint and Google
    ``/bad/token`` endpoint answer what the test says (else the real answer)."""
    canned = Canned()
    server = AuthServer()

    def token() -> Any:
        if canned.mode == "pass":
            return server.app.view_functions["token"]()
        return Response(canned.body, status=canned.status, content_type=canned.ctype)

    server.app.add_url_rule(
        "/tenant-0001/oauth2/v2.0/token", endpoint="canned-ms", view_func=token, methods=["POST"]
    )
    server.app.add_url_rule("/bad/token", endpoint="canned-g", view_func=token, methods=["POST"])
    server.start()
    server.add_client(MS_CLIENT)
    server.add_client(G_CLIENT, G_SECRET)
    server.add_user(USER)
    server.add_user(OTHER)
    try:
        yield server, canned
    finally:
        server.stop()


def offline(tmp_path: Path, auth: AuthServer, provider: str, extra_keys: str = "") -> Signed:
    """A practice whose IMAP server is never reached (a free loopback port)."""
    port = free_port()
    write_practice(tmp_path, Account(types.SimpleNamespace(port=port), USER, ""))  # type: ignore[arg-type]
    p = Signed(tmp_path, auth, None, provider)  # type: ignore[arg-type]
    keys = provider_keys(auth, provider)
    if provider == "google":
        keys = keys.replace(f'{auth.url}/token"', f'{auth.url}/bad/token"')
    p.config.write_text(
        p.config.read_text().replace('password_env = "IG_TEST_PASSWORD"', keys + extra_keys)
    )
    return p


def google_due_for_renewal(tmp_path: Path, auth: AuthServer) -> Signed:
    """Signed in with Google, the access token kept marked as expired: the next
    command asks the token endpoint."""
    p = offline(tmp_path, auth, "google")
    assert login_google(p).returncode == 0
    record = p.kept()
    record["expires_at"] = 0
    p.tokens.write_text(json.dumps(record))
    return p


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def expire_msal_access_token(p: Signed) -> None:
    record = p.kept()
    cache = json.loads(record["msal_cache"])  # type: ignore[arg-type]
    for entry in cache["AccessToken"].values():
        entry["expires_on"] = entry["extended_expires_on"] = str(int(time.time()) - 60)
    record["msal_cache"] = json.dumps(cache)
    p.tokens.write_text(json.dumps(record))


# -- 1. a group practice: ids with a dot share one tokens file --------------------------


GROUP = """\
timezone = "Europe/London"

[therapist]
name = "Practice"
emergency_text = "In an emergency call 999."

[account]
host = "127.0.0.1"
port = {port}
security = "plain"
{keys}

[hours]
mon = ["09:00-17:00"]

[[accounts]]
id = "dr.morgan"
account = {{ username = "{a}" }}
therapist = {{ email = "{a}" }}

[[accounts]]
id = "dr.lee"
account = {{ username = "{b}" }}
therapist = {{ email = "{b}" }}
"""


def test_group_practitioners_with_dotted_ids_keep_separate_sign_ins(
    tmp_path: Path, broken: tuple[AuthServer, Canned]
) -> None:
    """ACCOUNT_ID allows '.', and the docs promise ``state/<id>.tokens.json``; but
    tokens._paths cuts the state file's name at its FIRST dot, so "dr.morgan" and
    "dr.lee" both keep their sign-in in ``state/dr.tokens.json``: the second login
    replaces the first practitioner's tokens."""
    auth, _ = broken
    cfg = tmp_path / "config"
    for ident in ("dr.morgan", "dr.lee"):
        (cfg / "clients" / ident).mkdir(parents=True)
    (cfg / "inbox-guard.toml").write_text(
        GROUP.format(port=free_port(), keys=provider_keys(auth, "microsoft"), a=USER, b=OTHER)
    )
    p = Signed(tmp_path, auth, None, "microsoft")  # type: ignore[arg-type]

    assert login_microsoft(p, "--account", "dr.morgan").returncode == 0
    proc = p.popen("--account", "dr.lee", "login")
    out = Lines(proc.stdout)
    auth.approve_device(out.wait(r"enter the code (\S+)").group(1), OTHER)
    assert finish(proc, out).returncode == 0

    check = p.cli("--account", "dr.morgan", "check")
    assert check.returncode == 0, check.stderr
    assert f"signed in as {USER} (microsoft)" in check.stdout, check.stdout


# -- 2. Microsoft's token endpoint in trouble --------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "ctype"),
    [
        (500, "<html><body>Internal Server Error</body></html>", "text/html"),
        (503, '{"error": "temporarily_unavailable"}', "application/json"),
        (200, "<html>a captive portal</html>", "text/html"),
    ],
)
def test_microsoft_token_endpoint_failure_is_one_line_exit_3(
    tmp_path: Path, broken: tuple[AuthServer, Canned], status: int, body: str, ctype: str
) -> None:
    """Before the fix: 5xx -> "internal error: MsalServiceError: HTTP Error: 500", exit 1; a
    body that is not JSON -> MSAL's own ERROR log line and 13-line traceback on stderr,
    then "internal error: JSONDecodeError", exit 1. Neither is caught in
    signin.microsoft.Microsoft.access_token (only requests.RequestException is)."""
    auth, canned = broken
    p = offline(tmp_path, auth, "microsoft")
    assert login_microsoft(p).returncode == 0
    expire_msal_access_token(p)
    canned.answer(status, body, ctype)
    done = p.cli("once")
    line = one_line(done)
    assert done.returncode == 3, line
    assert "internal error" not in line


# -- 3. Google's token endpoint giving a malformed answer --------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"token_type": "Bearer", "expires_in": 3600},  # no access_token
        {
            "access_token": "ya29.renewed-token-text",
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token_expires_in": "soon",
        },
        {"error": {"code": 401, "message": "Request had invalid authentication credentials."}},
        {"access_token": "ya29.renewed-token-text", "token_type": "Bearer", "expires_in": 1e999},
    ],
)
def test_google_malformed_token_answer_is_one_clean_line(
    tmp_path: Path, broken: tuple[AuthServer, Canned], body: dict[str, Any]
) -> None:
    """Before the fix: KeyError 'access_token' / ValueError float('soon') / TypeError in _said
    (error not a string) / OverflowError int(inf): each "internal error", exit 1."""
    auth, canned = broken
    p = google_due_for_renewal(tmp_path, auth)
    canned.answer(200, json.dumps(body))
    done = p.cli("once")
    line = one_line(done)
    assert done.returncode == 3, line
    assert "internal error" not in line


def test_google_server_error_is_not_called_unreachable(
    tmp_path: Path, broken: tuple[AuthServer, Canned]
) -> None:
    """A 500 page is an answer; it used to read "cannot reach the sign-in server
    127.0.0.1: HTTPError" (requests.HTTPError is caught as RequestException before the
    "not OAuth2" branch meant for it), sending the practitioner to check the network."""
    auth, canned = broken
    p = google_due_for_renewal(tmp_path, auth)
    canned.answer(500, "<html>Server Error</html>", "text/html")
    done = p.cli("once")
    line = one_line(done)
    assert done.returncode == 3
    assert "cannot reach" not in line, line


# -- 4. a huge expires_in -------------------------------------------------------------


def test_check_survives_a_huge_expires_in(
    tmp_path: Path, broken: tuple[AuthServer, Canned]
) -> None:
    """The renewal keeps expires_at = now + 1e20; `check` then dies in
    cli._signin_line: "internal error: OverflowError: timestamp out of range"."""
    auth, canned = broken
    p = google_due_for_renewal(tmp_path, auth)
    canned.answer(
        200,
        json.dumps(
            {
                "access_token": "ya29.renewed-token-text",
                "token_type": "Bearer",
                "expires_in": 10**20,
            }
        ),
    )
    p.cli("once")  # renews (then cannot reach IMAP: not the point)
    done = p.cli("check")
    assert done.returncode == 0, done.stderr


# -- 5. the keyring ----------------------------------------------------------------------


KEYRINGS = '''
from keyring.backend import KeyringBackend
from keyring.errors import KeyringLocked


class Locked(KeyringBackend):
    """Secret Service when the login keyring is locked and the prompt dismissed."""
    priority = 1

    def get_password(self, service, username):
        raise KeyringLocked("Failed to unlock the collection!")

    def set_password(self, service, username, password):
        raise KeyringLocked("Failed to unlock the collection!")

    def delete_password(self, service, username):
        raise KeyringLocked("Failed to unlock the collection!")
'''


def with_keyring(p: Signed, tmp_path: Path, backend: str) -> dict[str, str]:
    folder = tmp_path / "keyrings"
    folder.mkdir(exist_ok=True)
    (folder / "breaker_keyrings.py").write_text(KEYRINGS)
    p.config.write_text(
        p.config.read_text().replace(
            'provider = "microsoft"', 'provider = "microsoft"\ntoken_store = "keyring"'
        )
    )
    return {**p.env(), "PYTHON_KEYRING_BACKEND": backend, "PYTHONPATH": str(folder)}


def test_a_disabled_keyring_is_refused_not_claimed(
    tmp_path: Path, broken: tuple[AuthServer, Canned]
) -> None:
    """`keyring --disable` selects keyring.backends.null.Keyring, which keeps nothing:
    `login` refuses it before asking anyone to sign in, rather than claiming to keep
    the sign-in there."""
    auth, _ = broken
    p = offline(tmp_path, auth, "microsoft")
    env = with_keyring(p, tmp_path, "keyring.backends.null.Keyring")
    done = subprocess.run(
        [sys.executable, "-m", "inbox_guard", "--config", str(p.config), "login"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""  # no code was shown: nobody was asked to sign in
    assert done.stderr.strip().endswith(
        "no OS keyring was found on this machine, or it is "
        'disabled (on a server, use token_store = "file")'
    )
    assert not [g for g in auth.grants if g[1] == USER]


def test_a_locked_keyring_is_one_clear_line(
    tmp_path: Path, broken: tuple[AuthServer, Canned]
) -> None:
    """keyring.errors.KeyringLocked escapes TokenStore: "internal error: KeyringLocked:
    ... (run with --debug for details)", exit 1, from `check`, `once` and `run`."""
    auth, _ = broken
    p = offline(tmp_path, auth, "microsoft")
    env = with_keyring(p, tmp_path, "breaker_keyrings.Locked")
    done = subprocess.run(
        [sys.executable, "-m", "inbox_guard", "--config", str(p.config), "once"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    line = one_line(done)
    assert "internal error" not in line, line


# -- 6. login that cannot keep what it got ------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a private read-only mount (unshare -m)")
def test_login_says_it_cannot_keep_the_sign_in_before_asking_for_it(
    tmp_path: Path, broken: tuple[AuthServer, Canned]
) -> None:
    """State folder read-only: the practitioner used to complete the whole device-code
    sign-in, the provider issues tokens, and only then: "internal error: OSError:
    [Errno 30] Read-only file system: '.../inbox-guard.tokens.lock'", exit 1."""
    auth, _ = broken
    p = offline(tmp_path, auth, "microsoft")
    state = p.tokens.parent
    state.mkdir(parents=True)
    script = (
        f"mount --bind {state} {state} && mount -o remount,bind,ro {state} && "
        f"exec {sys.executable} -m inbox_guard --config {p.config} login"
    )
    proc = subprocess.Popen(
        ["unshare", "-m", "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
        env=p.env(),
        cwd=Path(__file__).parent.parent,
    )
    out = Lines(proc.stdout)
    try:
        code = out.wait(r"enter the code (\S+)", timeout=30).group(1)
    except AssertionError:
        done = finish(proc, out)
        assert done.returncode in (1, 2) and "internal error" not in done.stderr, done.stderr
        return
    auth.approve_device(code, USER)
    done = finish(proc, out)
    pytest.fail(f"asked for a sign-in it could not keep: {done.stderr.strip()}")


def test_a_tokens_path_that_is_a_folder_is_one_clear_line(
    tmp_path: Path, broken: tuple[AuthServer, Canned]
) -> None:
    """TokenStore._raw catches only FileNotFoundError: "internal error:
    IsADirectoryError: ...", exit 1."""
    auth, _ = broken
    p = offline(tmp_path, auth, "google")
    p.tokens.mkdir(parents=True)
    done = p.cli("once")
    line = one_line(done)
    assert "internal error" not in line, line


# -- 7. the loopback page ---------------------------------------------------------------


def test_the_loopback_page_does_not_say_signed_in_after_a_refusal(
    tmp_path: Path, broken: tuple[AuthServer, Canned]
) -> None:
    """_Redirect's handler answers "Signed in: you can close this window" whatever the
    redirect carries, access_denied included."""
    auth, _ = broken
    p = offline(tmp_path, auth, "google")
    proc = p.popen("login", "--no-browser")
    out = Lines(proc.stdout)
    url = out.wait(r"^(https://\S+)").group(1)
    auth.signed_in = None  # the user declines: Google redirects with error=access_denied
    back = requests.get(url, verify=str(auth.ca_file), allow_redirects=False, timeout=30)
    assert "error=access_denied" in back.headers["Location"]
    page = requests.get(back.headers["Location"], timeout=30).text
    finish(proc, out)
    assert "Signed in" not in page, page


# -- 8. the hint in a group practice -----------------------------------------------------


def test_unreadable_sign_in_names_the_account_in_a_group_practice(
    tmp_path: Path, broken: tuple[AuthServer, Canned]
) -> None:
    """tokens.TokenStore.read says "run `inbox-guard login`", which in a group practice
    fails ("choose one with --account"); every other sign-in message uses _login_hint."""
    auth, _ = broken
    cfg = tmp_path / "config"
    for ident in ("morgan", "lee"):
        (cfg / "clients" / ident).mkdir(parents=True)
    (cfg / "inbox-guard.toml").write_text(
        GROUP.replace("dr.", "").format(
            port=free_port(), keys=provider_keys(auth, "microsoft"), a=USER, b=OTHER
        )
    )
    tokens = cfg / "state" / "morgan.tokens.json"
    tokens.parent.mkdir(parents=True)
    tokens.write_text("not json")
    p = Signed(tmp_path, auth, None, "microsoft")  # type: ignore[arg-type]
    done = p.cli("--account", "morgan", "once")
    assert done.returncode == 3
    assert "`inbox-guard --account morgan login`" in one_line(done), done.stderr
