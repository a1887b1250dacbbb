"""The loopback OAuth2 authorization server (tests.authserver), driven the way clients
drive Google's and Microsoft's: plain HTTP requests, Authlib's OAuth2Session and MSAL.
Every check is on what the server answers over the wire."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msal
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

from .authserver import AuthServer

USER = "alex@example.org"
OTHER = "sam@example.net"
IMAP_MS = "https://outlook.office.com/IMAP.AccessAsUser.All"
IMAP_GOOGLE = "https://mail.google.com/"
REDIRECT = "http://127.0.0.1:53682/callback"
PUBLIC = "public-app"
SECRET_ID, SECRET = "web-app", "s3cret-value"


@contextmanager
def started(**options: Any) -> Iterator[AuthServer]:
    server = AuthServer(**options).start()
    server.add_client(PUBLIC)
    server.add_client(SECRET_ID, SECRET)
    server.add_user(USER)
    server.add_user(OTHER)
    try:
        yield server
        assert server.errors == []  # no request ended in a 500
    finally:
        server.stop()


@pytest.fixture
def server() -> Iterator[AuthServer]:
    with started() as server:
        yield server


@pytest.fixture
def microsoft() -> Iterator[AuthServer]:
    with started(aadsts=True) as server:
        yield server


def post(server: AuthServer, path: str, **data: str) -> requests.Response:
    return requests.post(server.url + path, data=data, verify=str(server.ca_file), timeout=10)


def introspect(server: AuthServer, token: str) -> dict[str, Any]:
    answer = requests.post(server.introspection_url, data={"token": token}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def claims(id_token: str) -> dict[str, Any]:
    payload = id_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize(server: AuthServer, path: str = "/o/oauth2/auth", **params: str) -> requests.Response:
    """The browser's visit to the authorization endpoint; the redirect is not followed."""
    return requests.get(
        server.url + path,
        params=params,
        verify=str(server.ca_file),
        allow_redirects=False,
        timeout=10,
    )


def redirected(answer: requests.Response) -> tuple[str, dict[str, str]]:
    assert answer.status_code == 302, answer.text
    where = urlsplit(answer.headers["Location"])
    return (
        f"{where.scheme}://{where.netloc}{where.path}",
        {k: v[0] for k, v in parse_qs(where.query).items()},
    )


def code_for(
    server: AuthServer,
    client_id: str = PUBLIC,
    scope: str = f"openid email {IMAP_GOOGLE}",
    state: str = "st-1",
) -> tuple[str, str]:
    """(code, verifier) after the signed-in user approves."""
    verifier, challenge = pkce()
    server.signed_in = USER
    _, query = redirected(
        authorize(
            server,
            response_type="code",
            client_id=client_id,
            redirect_uri=REDIRECT,
            scope=scope,
            state=state,
            code_challenge=challenge,
            code_challenge_method="S256",
        )
    )
    return query["code"], verifier


def exchange(
    server: AuthServer, code: str, verifier: str | None, **extra: str
) -> requests.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": PUBLIC,
        **extra,
    }
    if verifier is not None:
        data["code_verifier"] = verifier
    return post(server, "/token", **data)


def refresh(
    server: AuthServer, token: str, path: str = "/token", **extra: str
) -> requests.Response:
    return post(
        server, path, grant_type="refresh_token", refresh_token=token, client_id=PUBLIC, **extra
    )


def error_of(answer: requests.Response) -> str:
    assert answer.status_code in (400, 401), (answer.status_code, answer.text)
    return str(answer.json()["error"])


# -- TLS and discovery -----------------------------------------------------------------------


def test_https_with_its_own_ca_for_127_0_0_1_and_localhost(server: AuthServer) -> None:
    assert server.url.startswith("https://127.0.0.1:")
    answer = requests.get(
        f"{server.url}/.well-known/openid-configuration", verify=str(server.ca_file), timeout=10
    )
    assert answer.json()["token_endpoint"] == f"{server.url}/token"
    port = urlsplit(server.url).port
    local = requests.get(
        f"https://localhost:{port}/.well-known/openid-configuration",
        verify=str(server.ca_file),
        timeout=10,
    )
    assert local.status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(server.url + "/.well-known/openid-configuration", timeout=10)


def test_microsoft_discovery_per_tenant(server: AuthServer) -> None:
    config = requests.get(
        f"{server.url}/contoso/v2.0/.well-known/openid-configuration",
        verify=str(server.ca_file),
        timeout=10,
    ).json()
    base = f"{server.url}/contoso/oauth2/v2.0"
    assert config["issuer"] == f"{server.url}/contoso/v2.0"
    assert config["authorization_endpoint"] == f"{base}/authorize"
    assert config["token_endpoint"] == f"{base}/token"
    assert config["device_authorization_endpoint"] == f"{base}/devicecode"


# -- authorization code + PKCE -------------------------------------------------------------


def test_authorization_code_with_pkce_echoes_state_and_issues_tokens(server: AuthServer) -> None:
    code, verifier = code_for(server, state="xyz-42")
    answer = exchange(server, code, verifier)
    assert answer.status_code == 200, answer.text
    token = answer.json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 3600
    assert token["refresh_token"] and token["access_token"]
    assert set(token["scope"].split()) == {"openid", "email", IMAP_GOOGLE}
    id_claims = claims(token["id_token"])
    assert (id_claims["email"], id_claims["aud"], id_claims["iss"]) == (USER, PUBLIC, server.url)
    assert introspect(server, token["access_token"])["username"] == USER
    assert server.grants == [("authorization_code", USER)]


def test_the_redirect_goes_to_the_loopback_uri_asked_with_the_state(server: AuthServer) -> None:
    _, challenge = pkce()
    server.signed_in = USER
    for redirect in ("http://127.0.0.1:40001/", "http://localhost:9/oauth/cb?x=1"):
        where, query = redirected(
            authorize(
                server,
                response_type="code",
                client_id=PUBLIC,
                redirect_uri=redirect,
                scope=IMAP_GOOGLE,
                state="s t&ate",
                code_challenge=challenge,
                code_challenge_method="S256",
            )
        )
        assert where == redirect.split("?")[0]
        assert query["state"] == "s t&ate" and query["code"]


def test_no_id_token_without_openid(server: AuthServer) -> None:
    code, verifier = code_for(server, scope=IMAP_GOOGLE)
    token = exchange(server, code, verifier).json()
    assert "id_token" not in token and token["scope"] == IMAP_GOOGLE


def test_a_missing_or_wrong_code_verifier_is_refused(server: AuthServer) -> None:
    code, verifier = code_for(server)
    assert error_of(exchange(server, code, None)) == "invalid_request"
    assert error_of(exchange(server, code, pkce()[0])) == "invalid_grant"
    assert exchange(server, code, verifier).status_code == 200
    assert error_of(exchange(server, code, verifier)) == "invalid_grant"  # used once
    assert server.grants == [("authorization_code", USER)]


def test_pkce_s256_is_required_even_for_a_confidential_client(server: AuthServer) -> None:
    server.signed_in = USER
    _, challenge = pkce()
    common = {
        "response_type": "code",
        "client_id": SECRET_ID,
        "redirect_uri": REDIRECT,
        "state": "abc",
    }
    _, query = redirected(authorize(server, **common))
    assert (query["error"], query["state"]) == ("invalid_request", "abc")
    _, query = redirected(
        authorize(server, **common, code_challenge=challenge, code_challenge_method="plain")
    )
    assert query["error"] == "invalid_request"


def test_a_confidential_client_authenticates_by_post_or_basic(server: AuthServer) -> None:
    for auth in ("post", "basic", "wrong"):
        code, verifier = code_for(server, client_id=SECRET_ID)
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        }
        if auth == "post":
            data |= {"client_id": SECRET_ID, "client_secret": SECRET}
            answer = requests.post(
                server.url + "/token", data=data, verify=str(server.ca_file), timeout=10
            )
        else:
            secret = SECRET if auth == "basic" else "not-it"
            answer = requests.post(
                server.url + "/token",
                data=data,
                auth=(SECRET_ID, secret),
                verify=str(server.ca_file),
                timeout=10,
            )
        if auth == "wrong":
            assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
        else:
            assert answer.status_code == 200 and answer.json()["access_token"], answer.text
    code, verifier = code_for(server, client_id=SECRET_ID)  # no secret at all
    assert error_of(exchange(server, code, verifier, client_id=SECRET_ID)) == "invalid_client"


def test_nobody_signed_in_means_access_denied_with_the_state(server: AuthServer) -> None:
    _, challenge = pkce()
    server.signed_in = None
    where, query = redirected(
        authorize(
            server,
            response_type="code",
            client_id=PUBLIC,
            redirect_uri=REDIRECT,
            scope=IMAP_GOOGLE,
            state="q",
            code_challenge=challenge,
            code_challenge_method="S256",
        )
    )
    assert where == REDIRECT and (query["error"], query["state"]) == ("access_denied", "q")
    assert "code" not in query
    server.signed_in = "stranger@example.org"  # not a user of this server
    _, query = redirected(
        authorize(
            server,
            response_type="code",
            client_id=PUBLIC,
            redirect_uri=REDIRECT,
            state="q",
            code_challenge=challenge,
            code_challenge_method="S256",
        )
    )
    assert query["error"] == "access_denied"


def test_a_bad_client_or_redirect_uri_is_not_redirected_to(server: AuthServer) -> None:
    server.signed_in = USER
    _, challenge = pkce()
    for client_id, redirect in (
        ("nobody", REDIRECT),
        (PUBLIC, "https://evil.example/cb"),
        (PUBLIC, "http://192.0.2.1:8080/cb"),
    ):
        answer = authorize(
            server,
            response_type="code",
            client_id=client_id,
            redirect_uri=redirect,
            code_challenge=challenge,
            code_challenge_method="S256",
        )
        assert answer.status_code == 400 and "Location" not in answer.headers
        assert answer.json()["error"] in ("invalid_client", "invalid_request")


def test_an_authorization_code_expires_on_the_server_clock(server: AuthServer) -> None:
    code, verifier = code_for(server)
    server.advance(601)
    assert error_of(exchange(server, code, verifier)) == "invalid_grant"


# -- refresh ---------------------------------------------------------------------------------


def test_refresh_rotates_and_revokes_the_old_token_at_once(server: AuthServer) -> None:
    code, verifier = code_for(server)
    first = exchange(server, code, verifier).json()
    assert server.refresh_tokens(USER) == [first["refresh_token"]]
    answer = refresh(server, first["refresh_token"])
    assert answer.status_code == 200, answer.text
    second = answer.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert claims(second["id_token"])["preferred_username"] == USER
    assert server.refresh_tokens(USER) == [second["refresh_token"]]
    assert error_of(refresh(server, first["refresh_token"])) == "invalid_grant"
    assert refresh(server, second["refresh_token"]).status_code == 200
    assert server.grants == [
        ("authorization_code", USER),
        ("refresh_token", USER),
        ("refresh_token", USER),
    ]
    assert introspect(server, first["access_token"])["active"] is True  # until it expires


def test_without_rotation_the_refresh_token_is_kept() -> None:
    with started(rotate=False) as server:
        code, verifier = code_for(server)
        first = exchange(server, code, verifier).json()
        for _ in range(2):
            answer = refresh(server, first["refresh_token"])
            assert answer.status_code == 200, answer.text
            assert "refresh_token" not in answer.json()
        assert server.refresh_tokens(USER) == [first["refresh_token"]]
        assert [g for g, _ in server.grants].count("refresh_token") == 2


def test_a_refresh_token_past_its_lifetime_is_refused_google_style() -> None:
    with started(refresh_lifetime=7 * 86400, rotate=False) as server:
        code, verifier = code_for(server)
        token = exchange(server, code, verifier).json()
        server.advance(7 * 86400 - 60)
        assert refresh(server, token["refresh_token"]).status_code == 200
        server.advance(61)
        answer = refresh(server, token["refresh_token"])
        assert error_of(answer) == "invalid_grant"
        assert answer.json()["error_description"] == "Token has been expired or revoked."
        assert server.refresh_tokens(USER) == []


def test_a_refresh_asking_a_wider_scope_is_refused(server: AuthServer) -> None:
    code, verifier = code_for(server, scope=IMAP_GOOGLE)
    token = exchange(server, code, verifier).json()
    assert (
        error_of(refresh(server, token["refresh_token"], scope=f"{IMAP_GOOGLE} openid"))
        == "invalid_scope"
    )


# -- expiry, revocation, introspection ----------------------------------------------------------


def test_access_tokens_expire_on_the_server_clock() -> None:
    with started(access_lifetime=300) as server:
        code, verifier = code_for(server)
        token = exchange(server, code, verifier).json()
        assert token["expires_in"] == 300
        answer = introspect(server, token["access_token"])
        assert answer["active"] is True and answer["username"] == USER
        assert abs(answer["exp"] - (server.now() + 300)) < 5
        assert IMAP_GOOGLE in answer["scope"].split()
        server.advance(299)
        assert server.access_token_valid(token["access_token"])
        server.advance(2)
        assert introspect(server, token["access_token"]) == {"active": False}
        assert not server.access_token_valid(token["access_token"])
        assert refresh(server, token["refresh_token"]).status_code == 200  # refresh still works


def test_revoking_a_user_stops_every_token_at_once(server: AuthServer) -> None:
    tokens = []
    for _ in range(2):
        code, verifier = code_for(server)
        tokens.append(exchange(server, code, verifier).json())
    server.signed_in = None
    other_code, other_verifier = code_for(server)  # code_for signs USER in again
    server.revoke(USER)
    for token in tokens:
        assert introspect(server, token["access_token"]) == {"active": False}
        answer = refresh(server, token["refresh_token"])
        assert error_of(answer) == "invalid_grant"
        assert answer.json()["error_description"] == "Token has been expired or revoked."
    assert error_of(exchange(server, other_code, other_verifier)) == "invalid_grant"
    assert server.refresh_tokens(USER) == []
    code, verifier = code_for(server)  # signing in again works
    assert introspect(server, exchange(server, code, verifier).json()["access_token"])["active"]


def test_introspection_is_plain_http_on_loopback_and_needs_no_client(server: AuthServer) -> None:
    assert server.introspection_url.startswith("http://127.0.0.1:")
    assert introspect(server, "no-such-token") == {"active": False}
    missing = requests.post(server.introspection_url, data={}, timeout=10)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    code, verifier = code_for(server)
    token = exchange(server, code, verifier).json()
    as_refresh = introspect(server, token["refresh_token"])
    assert as_refresh["active"] is True and as_refresh["username"] == USER
    not_here = requests.post(
        server.url + "/introspect",
        data={"token": token["access_token"]},
        verify=str(server.ca_file),
        timeout=10,
    )
    assert not_here.status_code == 404


# -- device authorization ------------------------------------------------------------------------


def device_start(
    server: AuthServer, path: str = "/device/code", scope: str = IMAP_GOOGLE
) -> dict[str, Any]:
    answer = post(server, path, client_id=PUBLIC, scope=scope)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def device_poll(server: AuthServer, device_code: str, path: str = "/token") -> requests.Response:
    return post(
        server,
        path,
        grant_type="urn:ietf:params:oauth:grant-type:device_code",
        device_code=device_code,
        client_id=PUBLIC,
    )


def test_device_flow_with_plain_requests(server: AuthServer) -> None:
    flow = device_start(server, scope=f"openid {IMAP_GOOGLE}")
    assert flow["interval"] == 1 and flow["expires_in"] > 0
    assert flow["verification_uri"] == flow["verification_url"] == f"{server.url}/device"
    page = requests.get(flow["verification_uri"], verify=str(server.ca_file), timeout=10)
    assert page.status_code == 200 and "user_code" in page.text
    assert error_of(device_poll(server, flow["device_code"])) == "authorization_pending"
    with pytest.raises(ValueError, match="No such user"):
        server.approve_device(flow["user_code"], "stranger@example.org")
    server.approve_device(flow["user_code"], USER)
    answer = device_poll(server, flow["device_code"])
    assert answer.status_code == 200, answer.text
    token = answer.json()
    assert claims(token["id_token"])["preferred_username"] == USER and token["refresh_token"]
    assert introspect(server, token["access_token"])["username"] == USER
    assert error_of(device_poll(server, flow["device_code"])) in (
        "invalid_request",
        "invalid_grant",
    )
    assert server.grants == [("urn:ietf:params:oauth:grant-type:device_code", USER)]


def test_device_flow_declined_or_expired(server: AuthServer) -> None:
    declined = device_start(server)
    server.deny_device(declined["user_code"])
    assert error_of(device_poll(server, declined["device_code"])) == "access_denied"
    late = device_start(server)
    server.advance(late["expires_in"] + 1)
    assert error_of(device_poll(server, late["device_code"])) == "expired_token"
    with pytest.raises(ValueError, match="unknown or has expired"):
        server.approve_device(late["user_code"], USER)
    assert server.grants == []


# -- Authlib's client ------------------------------------------------------------------------


def test_authlib_oauth2_session_code_flow_and_refresh() -> None:
    with started(rotate=False) as server:
        with OAuth2Session(
            SECRET_ID,
            SECRET,
            scope=f"openid email {IMAP_GOOGLE}",
            redirect_uri=REDIRECT,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_post",
        ) as client:
            client.verify = str(server.ca_file)
            client.trust_env = False  # else REQUESTS_CA_BUNDLE, if set, overrides verify
            verifier = secrets.token_urlsafe(48)
            uri, state = client.create_authorization_url(
                server.url + "/o/oauth2/auth", code_verifier=verifier
            )
            server.signed_in = USER
            browser = requests.get(
                uri, verify=str(server.ca_file), allow_redirects=False, timeout=10
            )
            token = client.fetch_token(
                server.url + "/token",
                authorization_response=browser.headers["Location"],
                state=state,
                code_verifier=verifier,
            )
            assert claims(token["id_token"])["email"] == USER
            refreshed = client.refresh_token(server.url + "/token")
            assert refreshed["access_token"] != token["access_token"]
            assert refreshed["refresh_token"] == token["refresh_token"]  # kept by the session
        assert server.grants == [("authorization_code", USER), ("refresh_token", USER)]


# -- MSAL on the Microsoft-like endpoints -----------------------------------------------------


class Msal:
    def __init__(self, server: AuthServer, tenant: str = "common") -> None:
        self.http = requests.Session()
        self.http.verify = str(server.ca_file)
        self.http.trust_env = False  # else REQUESTS_CA_BUNDLE, if set, overrides verify
        self.app = msal.PublicClientApplication(
            PUBLIC,
            authority=f"{server.url}/{tenant}",
            instance_discovery=False,
            http_client=self.http,
        )

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def ms_app(microsoft: AuthServer) -> Iterator[Msal]:
    app = Msal(microsoft)
    yield app
    app.close()


def signed_in_with_msal(server: AuthServer, app: Msal) -> dict[str, Any]:
    flow = app.app.initiate_device_flow(scopes=[IMAP_MS])
    server.approve_device(flow["user_code"], USER)
    result = app.app.acquire_token_by_device_flow(flow)
    assert "access_token" in result, result
    return result  # type: ignore[no-any-return]


def test_msal_device_flow_polls_until_the_user_approves(
    microsoft: AuthServer, ms_app: Msal
) -> None:
    flow = ms_app.app.initiate_device_flow(scopes=[IMAP_MS])
    assert flow["interval"] == 1
    assert flow["verification_uri"] == f"{microsoft.url}/devicelogin"
    assert flow["message"] == (
        f"To sign in, use a web browser to open the page {microsoft.url}/devicelogin "
        f"and enter the code {flow['user_code']} to authenticate."
    )
    waits: list[int] = []

    def user_acts_while_the_app_waits(flow: dict[str, Any]) -> bool:
        if not waits:
            microsoft.approve_device(flow["user_code"], USER)
        waits.append(1)
        return False

    result = ms_app.app.acquire_token_by_device_flow(
        flow, exit_condition=user_acts_while_the_app_waits
    )
    assert "access_token" in result, result
    assert waits  # it was pending at first
    assert result["id_token_claims"]["preferred_username"] == USER
    assert set(result["scope"].split()) >= {IMAP_MS, "openid", "offline_access"}
    assert claims(result["id_token"])["iss"] == f"{microsoft.url}/common/v2.0"
    assert introspect(microsoft, result["access_token"])["username"] == USER
    assert [a["username"] for a in ms_app.app.get_accounts()] == [USER]


def test_msal_device_flow_declined(microsoft: AuthServer, ms_app: Msal) -> None:
    flow = ms_app.app.initiate_device_flow(scopes=[IMAP_MS])
    microsoft.deny_device(flow["user_code"])
    result = ms_app.app.acquire_token_by_device_flow(flow)
    assert result["error"] == "access_denied" and "access_token" not in result


def test_msal_silent_refresh_rotates(microsoft: AuthServer, ms_app: Msal) -> None:
    first = signed_in_with_msal(microsoft, ms_app)
    [old_refresh] = microsoft.refresh_tokens(USER)
    [account] = ms_app.app.get_accounts()
    result = ms_app.app.acquire_token_silent_with_error([IMAP_MS], account, force_refresh=True)
    assert result and "access_token" in result, result
    assert result["access_token"] != first["access_token"]
    assert claims(result["id_token"])["preferred_username"] == USER
    [new_refresh] = microsoft.refresh_tokens(USER)
    assert new_refresh != old_refresh
    answer = refresh(microsoft, old_refresh, path="/common/oauth2/v2.0/token")
    assert error_of(answer) == "invalid_grant"
    assert answer.json()["error_description"].startswith("AADSTS50173: ")
    assert microsoft.grants[-1] == ("refresh_token", USER)
    # MSAL holds the new one: another silent refresh works
    again = ms_app.app.acquire_token_silent_with_error([IMAP_MS], account, force_refresh=True)
    assert again and "access_token" in again, again


def test_msal_after_revocation_gets_invalid_grant_aadsts50173(
    microsoft: AuthServer, ms_app: Msal
) -> None:
    first = signed_in_with_msal(microsoft, ms_app)
    microsoft.revoke(USER)
    assert introspect(microsoft, first["access_token"]) == {"active": False}
    [account] = ms_app.app.get_accounts()
    result = ms_app.app.acquire_token_silent_with_error([IMAP_MS], account, force_refresh=True)
    assert result and result["error"] == "invalid_grant", result
    assert result["error_description"].startswith("AADSTS50173: ")


def test_msal_after_refresh_lifetime_gets_invalid_grant_aadsts70008() -> None:
    with started(aadsts=True, refresh_lifetime=90 * 86400) as server:
        app = Msal(server, tenant="organizations")
        try:
            signed_in_with_msal(server, app)
            server.advance(90 * 86400)
            [account] = app.app.get_accounts()
            result = app.app.acquire_token_silent_with_error([IMAP_MS], account, force_refresh=True)
            assert result and result["error"] == "invalid_grant", result
            assert result["error_description"].startswith("AADSTS70008: ")
        finally:
            app.close()


def test_the_clock_starts_at_real_time_and_only_moves_forward(server: AuthServer) -> None:
    import time

    assert abs(server.now() - time.time()) < 5
    before = server.now()
    server.advance(3600)
    assert server.now() - before >= 3600
    with pytest.raises(ValueError):
        server.advance(-1)
