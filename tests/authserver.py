"""A real OAuth2 authorization server for tests, on loopback.

Built from Authlib's server components (``authlib.integrations.flask_oauth2``) on Flask,
served by werkzeug over HTTPS on 127.0.0.1 with a private CA made per server. It stands in
for Google's and Microsoft's authorization servers and implements the flows they document:

* authorization code with PKCE (RFC 6749 + RFC 7636; S256 required for every client),
  loopback redirect URIs on any port (RFC 8252);
* device authorization (RFC 8628), with a verification page that approves or declines;
* refresh tokens, rotated Microsoft-style (the old one revoked at once) or kept
  Google-style, with an optional lifetime (Google's 7 days for apps in "testing");
* an ``id_token`` whenever the scope has ``openid`` (MSAL builds its account from it);
* token introspection (RFC 7662) on a second, plain-HTTP loopback listener, for
  Dovecot's oauth2 passdb, which posts ``token=`` without client authentication.

Endpoints, ``{tenant}`` being any string (MSAL's authority is ``f"{url}/{tenant}"``)::

    GET  /.well-known/openid-configuration                 Google-like discovery
    GET  /o/oauth2/auth, /o/oauth2/v2/auth                 Google-like authorize
    POST /token                                            Google-like token
    POST /device/code                                      Google-like device authorization
    GET  /{tenant}/v2.0/.well-known/openid-configuration   Microsoft-like discovery
    GET  /{tenant}/oauth2/v2.0/authorize                   Microsoft-like authorize
    POST /{tenant}/oauth2/v2.0/token                       Microsoft-like token
    POST /{tenant}/oauth2/v2.0/devicecode                  Microsoft-like device authorization
    GET/POST /device, /devicelogin                         the verification page
    GET  /jwks                                             the id_token signing key
    POST {introspection_url}                               RFC 7662, plain HTTP

Every expiry (access and refresh tokens, authorization and device codes) is judged by the
server's clock, ``now()``: real time plus whatever ``advance()`` added.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import shutil
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, grants, scope_to_list
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc8628 import (
    DeviceAuthorizationEndpoint,
    DeviceCodeGrant,
    DeviceCredentialDict,
)
from flask import Flask, jsonify, request
from joserfc import jwt
from joserfc.jwk import ECKey
from markupsafe import escape
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_TYPES = ("authorization_code", "refresh_token", DEVICE_GRANT)
CODE_LIFETIME = 600  # authorization codes, as RFC 6749 4.1.2 recommends at most
DEVICE_CODE_LIFETIME = 900  # Microsoft's; Google's is 1800

# Microsoft's wording; the trailing trace/correlation ids and timestamp are added per answer.
AADSTS_EXPIRED = (
    "AADSTS70008: The provided authorization code or refresh token has expired due to "
    "inactivity. Send a new interactive authorization request for this user and resource."
)
AADSTS_REVOKED = (
    "AADSTS50173: The provided grant has expired due to it being revoked, a fresh auth token "
    "is needed. The user might have changed or reset their password."
)
AADSTS_UNKNOWN = "AADSTS9002313: Invalid request. Request is malformed or invalid."
GOOGLE_EXPIRED_OR_REVOKED = "Token has been expired or revoked."


# -- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    username: str

    def get_user_id(self) -> str:
        return self.username


@dataclass(frozen=True)
class Client(ClientMixin):  # type: ignore[misc]
    client_id: str
    client_secret: str | None = None

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None  # every request names its loopback redirect URI

    def get_allowed_scope(self, scope: str | None) -> str:
        return scope or ""  # any scope asked is granted

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # RFC 8252 7.3: a loopback redirect on any port and path
        try:
            parts = urlsplit(redirect_uri)
            parts.port  # noqa: B018  (raises on a malformed port)
        except ValueError:
            return False
        return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost")

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and secrets.compare_digest(
            self.client_secret, client_secret
        )

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.client_secret is None:
            return method == "none"
        return method in ("client_secret_post", "client_secret_basic")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in GRANT_TYPES


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str | None
    scope: str
    username: str
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    expires_at: float

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass
class Token(TokenMixin):  # type: ignore[misc]
    """One token response: its access token and, if one was issued, its refresh token."""

    access_token: str
    refresh_token: str | None
    client_id: str
    username: str
    scope: str
    issued_at: float
    expires_in: int
    refresh_expires_at: float | None
    clock: Callable[[], float] = field(repr=False)
    access_revoked: bool = False
    refresh_revoked: bool = False
    refresh_superseded: bool = False  # revoked by rotation, not by the user or an admin

    def check_client(self, client: Client) -> bool:
        return self.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def expires_at(self) -> float:
        return self.issued_at + self.expires_in

    def is_expired(self) -> bool:
        return self.clock() >= self.expires_at()

    def is_revoked(self) -> bool:
        return self.access_revoked

    def refresh_expired(self) -> bool:
        return self.refresh_expires_at is not None and self.clock() >= self.refresh_expires_at

    def refresh_valid(self) -> bool:
        return (
            self.refresh_token is not None
            and not self.refresh_revoked
            and not self.refresh_expired()
        )


@dataclass
class _RefreshView:
    """A refresh token as the introspection endpoint sees it."""

    token: Token

    def is_expired(self) -> bool:
        return self.token.refresh_expired()

    def is_revoked(self) -> bool:
        return self.token.refresh_revoked


class DeviceCredential(DeviceCredentialDict):  # type: ignore[misc]
    """Authlib's dict credential, expiring by the server's clock."""

    clock: Callable[[], float]

    def is_expired(self) -> bool:
        return bool(self["expires_at"] <= self.clock())


# -- Authlib pieces ----------------------------------------------------------------------------


class _Server(AuthorizationServer):  # type: ignore[misc]
    owner: AuthServer


def _owner(grant: Any) -> AuthServer:
    return grant.server.owner  # type: ignore[no-any-return]


ALL_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS

    def save_authorization_code(self, code: str, req: Any) -> None:
        data = req.payload.data
        _owner(self)._save_code(
            AuthCode(
                code=code,
                client_id=req.client.get_client_id(),
                redirect_uri=req.payload.redirect_uri,
                scope=req.scope or "",
                username=req.user.username,
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                nonce=data.get("nonce"),
                expires_at=_owner(self).now() + CODE_LIFETIME,
            )
        )

    def query_authorization_code(self, code: str, client: Client) -> AuthCode | None:
        return _owner(self)._query_code(code, client)

    def delete_authorization_code(self, authorization_code: AuthCode) -> None:
        _owner(self)._delete_code(authorization_code.code)

    def authenticate_user(self, authorization_code: AuthCode) -> User:
        return User(authorization_code.username)


class S256Required(CodeChallenge):  # type: ignore[misc]
    """PKCE for every client, confidential ones too, and only with S256."""

    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge': PKCE is required.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS

    def authenticate_refresh_token(self, refresh_token: str) -> Token:
        return _owner(self)._query_refresh(refresh_token)

    def authenticate_user(self, refresh_token: Token) -> User:
        return User(refresh_token.username)

    def issue_token(self, user: User, refresh_token: Token) -> dict[str, Any]:
        scope = self.request.payload.scope or refresh_token.get_scope()
        return self.generate_token(  # type: ignore[no-any-return]
            user=user, scope=scope, include_refresh_token=_owner(self).rotate
        )

    def revoke_old_credential(self, refresh_token: Token) -> None:
        if _owner(self).rotate:
            _owner(self)._supersede(refresh_token)


class DeviceGrant(DeviceCodeGrant):  # type: ignore[misc]
    def query_device_credential(self, device_code: str) -> DeviceCredential | None:
        return _owner(self)._query_device(device_code)

    def query_user_grant(self, user_code: str) -> tuple[User | None, bool] | None:
        return _owner(self)._device_decision(user_code)

    def should_slow_down(self, credential: DeviceCredential) -> bool:
        return False

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        result = super().create_token_response()
        _owner(self)._consume_device(self.request.credential)  # a device code is used once
        return result  # type: ignore[no-any-return]


class DeviceEndpoint(DeviceAuthorizationEndpoint):  # type: ignore[misc]
    USER_CODE_TYPE = "string"
    EXPIRES_IN = DEVICE_CODE_LIFETIME
    INTERVAL = 1  # seconds between polls: tests stay quick

    def get_verification_uri(self) -> str:
        owner = self.server.owner
        return (
            f"{owner.url}/device" if request.path == "/device/code" else f"{owner.url}/devicelogin"
        )

    def save_device_credential(
        self, client_id: str, scope: str | None, data: dict[str, Any]
    ) -> None:
        owner: AuthServer = self.server.owner
        credential = DeviceCredential(
            client_id=client_id,
            scope=scope or "",
            device_code=data["device_code"],
            user_code=data["user_code"],
            expires_at=owner.now() + data["expires_in"],
        )
        credential.clock = owner.now
        owner._save_device(credential)

    def create_endpoint_response(self, req: Any) -> tuple[int, dict[str, Any], Any]:
        status, data, headers = super().create_endpoint_response(req)
        if request.path == "/device/code":
            data["verification_url"] = data["verification_uri"]  # Google's spelling
        else:
            data["message"] = (
                f"To sign in, use a web browser to open the page {data['verification_uri']} "
                f"and enter the code {data['user_code']} to authenticate."
            )
        return status, data, headers


class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    """RFC 7662, answering any caller on the loopback listener: Dovecot posts only
    ``token=``, without client authentication."""

    def authenticate_endpoint_client(self, req: Any) -> None:
        req.client = None
        return None

    def check_permission(self, token: Any, client: Any, req: Any) -> bool:
        return True

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return self.server.owner._query_any(token_string, token_type_hint)

    def introspect_token(self, token: Token | _RefreshView) -> dict[str, Any]:
        record = token.token if isinstance(token, _RefreshView) else token
        exp = record.refresh_expires_at if isinstance(token, _RefreshView) else record.expires_at()
        answer: dict[str, Any] = {
            "active": True,
            "username": record.username,
            "scope": record.scope,
            "client_id": record.client_id,
            "token_type": "Bearer",
            "sub": _subject(record.username),
            "iat": int(record.issued_at),
        }
        if exp is not None:
            answer["exp"] = int(exp)
        return answer


def _subject(username: str) -> str:
    return hashlib.sha256(username.encode()).hexdigest()[:32]


class _IdToken:
    """Grant extension: an ``id_token`` in every token response whose scope has openid."""

    def __init__(self, owner: AuthServer) -> None:
        self.owner = owner

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_create_token_response", self.add)

    def add(self, grant: Any, result: tuple[int, dict[str, Any], Any]) -> None:
        token = result[1]
        if "openid" in (scope_to_list(token.get("scope")) or []):
            code = grant.request.authorization_code
            token["id_token"] = self.owner._id_token(
                grant.request.uri,
                grant.request.client.get_client_id(),
                grant.request.user.username,
                getattr(code, "nonce", None),
            )


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


# -- the server --------------------------------------------------------------------------------


class AuthServer:
    """An OAuth2 authorization server on loopback HTTPS, built from Authlib's server
    components on Flask: a stand-in for Google's and Microsoft's authorization servers that
    implements the flows they document (see the module docstring for endpoints).

    ``access_lifetime``: seconds an access token works. ``refresh_lifetime``: seconds after
    issue that a refresh token stops working (None: never). ``rotate``: a refresh grant
    returns a new refresh token and revokes the old one at once (Microsoft); False keeps the
    old one and returns none (Google). ``aadsts``: ``invalid_grant`` descriptions start with
    Microsoft's AADSTS codes (70008 expired, 50173 revoked); otherwise Google's wording.
    """

    def __init__(
        self,
        *,
        access_lifetime: int = 3600,
        refresh_lifetime: int | None = None,
        rotate: bool = True,
        aadsts: bool = False,
    ) -> None:
        self.access_lifetime = access_lifetime
        self.refresh_lifetime = refresh_lifetime
        self.rotate = rotate
        self.aadsts = aadsts
        self.signed_in: str | None = None
        self.errors: list[BaseException] = []  # exceptions a request raised (a 500 answer)
        self._offset = 0.0
        self._lock = threading.Lock()  # guards every store below
        self._issuing = threading.Lock()  # one token request at a time: rotation is atomic
        self._clients: dict[str, Client] = {}
        self._users: set[str] = set()
        self._codes: dict[str, AuthCode] = {}
        self._by_access: dict[str, Token] = {}
        self._by_refresh: dict[str, Token] = {}
        self._devices: dict[str, DeviceCredential] = {}  # by device_code
        self._decisions: dict[str, tuple[User | None, bool]] = {}  # by user_code
        self._grants: list[tuple[str, str]] = []
        self._key = ECKey.generate_key("P-256", auto_kid=True)
        self._dir: Path | None = None
        self._servers: list[BaseWSGIServer] = []
        self._threads: list[threading.Thread] = []
        self._url = self._introspection_url = ""
        self.authorization = self._authorization_server()
        self.app = self._main_app()
        self.introspection_app = self._introspection_app()

    # -- the clock ---------------------------------------------------------------------

    def now(self) -> float:
        """The server's time: real time plus everything ``advance()`` added."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the server's clock only goes forward")
        with self._lock:
            self._offset += seconds

    # -- setup -------------------------------------------------------------------------

    def add_client(self, client_id: str, client_secret: str | None = None) -> None:
        """A public client (no secret: auth method "none") or a confidential one
        (client_secret_post and client_secret_basic)."""
        with self._lock:
            self._clients[client_id] = Client(client_id, client_secret)

    def add_user(self, username: str) -> None:
        with self._lock:
            self._users.add(username)

    @property
    def url(self) -> str:
        if not self._url:
            raise RuntimeError("the authorization server is not started")
        return self._url

    @property
    def introspection_url(self) -> str:
        if not self._introspection_url:
            raise RuntimeError("the authorization server is not started")
        return self._introspection_url

    @property
    def ca_file(self) -> Path:
        if self._dir is None:
            raise RuntimeError("the authorization server is not started")
        return self._dir / "ca.pem"

    def start(self) -> AuthServer:
        self._dir = Path(tempfile.mkdtemp(prefix="ig-authserver-"))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*_make_certificates(self._dir))
        # make_server binds and listens: connections queue until serve_forever runs.
        main = make_server(
            "127.0.0.1",
            0,
            self.app,
            threaded=True,
            request_handler=_QuietHandler,
            ssl_context=context,
        )
        plain = make_server(
            "127.0.0.1", 0, self.introspection_app, threaded=True, request_handler=_QuietHandler
        )
        self._url = f"https://127.0.0.1:{main.server_port}"
        self._introspection_url = f"http://127.0.0.1:{plain.server_port}/introspect"
        for server in (main, plain):
            thread = threading.Thread(
                target=server.serve_forever,
                args=(0.05,),
                daemon=True,
                name=f"authserver-{server.server_port}",
            )
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        self._servers.clear()
        self._threads.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> AuthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the user does at the browser ----------------------------------------------

    def approve_device(self, user_code: str, username: str) -> None:
        """The user opens the verification page, enters the code and approves as
        ``username``: a real POST to the page."""
        self._verification_page(user_code, username, "approve")

    def deny_device(self, user_code: str) -> None:
        self._verification_page(user_code, "", "deny")

    def _verification_page(self, user_code: str, username: str, action: str) -> None:
        answer = requests.post(
            f"{self.url}/devicelogin",
            verify=str(self.ca_file),
            timeout=10,
            data={"user_code": user_code, "username": username, "action": action},
        )
        if answer.status_code != 200:
            raise ValueError(f"the verification page refused ({answer.status_code}): {answer.text}")

    # -- administration and inspection --------------------------------------------------

    def revoke(self, username: str) -> None:
        """Every token of the user stops working at once (a password change, an admin
        revoking the app), and so do authorization codes not yet exchanged."""
        with self._lock:
            for token in self._by_access.values():
                if token.username == username:
                    token.access_revoked = token.refresh_revoked = True
            for code in [c for c, item in self._codes.items() if item.username == username]:
                del self._codes[code]

    @property
    def grants(self) -> list[tuple[str, str]]:
        """(grant_type, username) for every token issued, in order."""
        with self._lock:
            return list(self._grants)

    def refresh_tokens(self, username: str) -> list[str]:
        """The user's refresh tokens that work now, oldest first."""
        with self._lock:
            return [
                t.refresh_token
                for t in self._by_access.values()
                if t.username == username and t.refresh_token and t.refresh_valid()
            ]

    def access_token_valid(self, token: str) -> bool:
        with self._lock:
            record = self._by_access.get(token)
            return record is not None and not record.is_revoked() and not record.is_expired()

    # -- store, for the Authlib pieces --------------------------------------------------

    def _query_client(self, client_id: str) -> Client | None:
        with self._lock:
            return self._clients.get(client_id)

    def _user(self, username: str | None) -> User | None:
        with self._lock:
            return User(username) if username in self._users else None

    def _save_code(self, code: AuthCode) -> None:
        with self._lock:
            self._codes[code.code] = code

    def _query_code(self, code: str, client: Client) -> AuthCode | None:
        with self._lock:
            item = self._codes.get(code)
        if item is None or item.client_id != client.get_client_id():
            return None
        if item.expires_at <= self.now():
            raise InvalidGrantError(self._describe(AADSTS_EXPIRED, "Authorization code expired."))
        return item

    def _delete_code(self, code: str) -> None:
        with self._lock:
            self._codes.pop(code, None)

    def _save_token(self, token: dict[str, Any], req: Any) -> None:
        now = self.now()
        refresh = token.get("refresh_token")
        record = Token(
            access_token=token["access_token"],
            refresh_token=refresh,
            client_id=req.client.get_client_id(),
            username=req.user.username,
            scope=token.get("scope", ""),
            issued_at=now,
            expires_in=int(token.get("expires_in", self.access_lifetime)),
            refresh_expires_at=(
                now + self.refresh_lifetime
                if refresh and self.refresh_lifetime is not None
                else None
            ),
            clock=self.now,
        )
        with self._lock:
            self._by_access[record.access_token] = record
            if refresh:
                self._by_refresh[refresh] = record
            self._grants.append((req.payload.grant_type, record.username))

    def _query_refresh(self, refresh_token: str) -> Token:
        with self._lock:
            record = self._by_refresh.get(refresh_token)
            if record is None:
                raise InvalidGrantError(self._describe(AADSTS_UNKNOWN, "Bad Request"))
            if record.refresh_revoked:
                raise InvalidGrantError(self._describe(AADSTS_REVOKED, GOOGLE_EXPIRED_OR_REVOKED))
            if record.refresh_expired():
                raise InvalidGrantError(self._describe(AADSTS_EXPIRED, GOOGLE_EXPIRED_OR_REVOKED))
            return record

    def _supersede(self, record: Token) -> None:
        with self._lock:
            record.refresh_revoked = record.refresh_superseded = True

    def _query_any(self, token: str, hint: str | None) -> Token | _RefreshView | None:
        with self._lock:
            if hint != "refresh_token" and token in self._by_access:
                return self._by_access[token]
            if hint != "access_token" and token in self._by_refresh:
                return _RefreshView(self._by_refresh[token])
            return None

    def _save_device(self, credential: DeviceCredential) -> None:
        with self._lock:
            self._devices[credential["device_code"]] = credential

    def _query_device(self, device_code: str) -> DeviceCredential | None:
        with self._lock:
            return self._devices.get(device_code)

    def _device_decision(self, user_code: str) -> tuple[User | None, bool] | None:
        with self._lock:
            return self._decisions.get(user_code)

    def _consume_device(self, credential: DeviceCredential) -> None:
        with self._lock:
            self._devices.pop(credential["device_code"], None)
            self._decisions.pop(credential["user_code"], None)

    def _describe(self, aadsts: str, otherwise: str) -> str:
        if not self.aadsts:
            return otherwise
        stamp = datetime.fromtimestamp(self.now(), UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return (
            f"{aadsts} Trace ID: {uuid.uuid4()} Correlation ID: {uuid.uuid4()} Timestamp: {stamp}"
        )

    def _id_token(
        self, token_endpoint: str, client_id: str, username: str, nonce: str | None
    ) -> str:
        now = int(self.now())
        path = urlsplit(token_endpoint).path
        claims: dict[str, Any] = {
            "iss": self._issuer(path),
            "sub": _subject(username),
            "aud": client_id,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "preferred_username": username,
            "email": username,
            "email_verified": True,
        }
        if path != "/token":  # Microsoft's tenant endpoints
            claims["tid"] = path.split("/")[1]
            claims["oid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"user:{username}"))
        if nonce:
            claims["nonce"] = nonce
        return jwt.encode({"alg": "ES256", "kid": self._key.kid}, claims, self._key)

    def _issuer(self, path: str) -> str:
        segments = path.split("/")
        if len(segments) > 2 and segments[2] in ("oauth2", "v2.0"):
            return f"{self.url}/{segments[1]}/v2.0"
        return self.url

    # -- wiring ------------------------------------------------------------------------

    def _authorization_server(self) -> _Server:
        server = _Server(query_client=self._query_client, save_token=self._save_token)
        server.owner = self
        server.register_token_generator(
            "default",
            BearerTokenGenerator(
                lambda **_: generate_token(42),
                lambda **_: generate_token(48),
                lambda client, grant_type: self.access_lifetime,
            ),
        )
        id_token = _IdToken(self)
        server.register_grant(CodeGrant, [S256Required(required=True), id_token])
        server.register_grant(RefreshGrant, [id_token])
        server.register_grant(DeviceGrant, [id_token])
        server.register_endpoint(DeviceEndpoint)
        server.register_endpoint(Introspection)
        return server

    def _main_app(self) -> Flask:
        app = Flask(__name__)
        auth = self.authorization

        @app.get("/.well-known/openid-configuration")
        def google_discovery() -> Any:
            return jsonify(
                self._discovery(
                    self.url,
                    f"{self.url}/o/oauth2/v2/auth",
                    f"{self.url}/token",
                    f"{self.url}/device/code",
                )
            )

        @app.get("/<tenant>/v2.0/.well-known/openid-configuration")
        def microsoft_discovery(tenant: str) -> Any:
            base = f"{self.url}/{tenant}/oauth2/v2.0"
            return jsonify(
                self._discovery(
                    f"{self.url}/{tenant}/v2.0",
                    f"{base}/authorize",
                    f"{base}/token",
                    f"{base}/devicecode",
                )
            )

        @app.get("/jwks")
        def jwks() -> Any:
            return jsonify({"keys": [self._key.as_dict(private=False)]})

        def authorize(tenant: str | None = None) -> Any:
            user = self._user(self.signed_in)
            try:
                grant = auth.get_consent_grant(end_user=user)
            except OAuth2Error as error:
                # a bad client or redirect_uri: an error page, never a redirect (RFC 6749
                # 4.1.2.1); any other bad request: redirected with its error and state
                return auth.handle_error_response(None, error)
            return auth.create_authorization_response(grant=grant, grant_user=user)

        def token(tenant: str | None = None) -> Any:
            with self._issuing:
                return auth.create_token_response()

        def device_authorization(tenant: str | None = None) -> Any:
            return auth.create_endpoint_response("device_authorization")

        for rule in ("/o/oauth2/auth", "/o/oauth2/v2/auth", "/<tenant>/oauth2/v2.0/authorize"):
            app.add_url_rule(rule, view_func=authorize, methods=["GET"])
        for rule in ("/token", "/<tenant>/oauth2/v2.0/token"):
            app.add_url_rule(rule, view_func=token, methods=["POST"])
        for rule in ("/device/code", "/<tenant>/oauth2/v2.0/devicecode"):
            app.add_url_rule(rule, view_func=device_authorization, methods=["POST"])
        for rule in ("/device", "/devicelogin"):
            app.add_url_rule(rule, view_func=self._verification_view, methods=["GET", "POST"])
        app.register_error_handler(Exception, self._record_error)
        return app

    def _discovery(self, issuer: str, authorize: str, token: str, device: str) -> dict[str, Any]:
        return {
            "issuer": issuer,
            "authorization_endpoint": authorize,
            "token_endpoint": token,
            "device_authorization_endpoint": device,
            "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": list(GRANT_TYPES),
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "client_secret_basic",
                "none",
            ],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": [
                "iss",
                "sub",
                "aud",
                "iat",
                "exp",
                "preferred_username",
                "email",
                "nonce",
            ],
        }

    def _verification_view(self) -> Any:
        if request.method == "GET":
            code = escape(request.args.get("user_code", ""))
            return (
                "<!doctype html><title>Device sign-in</title><form method=post>"
                f"<input name=user_code value='{code}'><input name=username>"
                "<button name=action value=approve>Allow</button>"
                "<button name=action value=deny>Deny</button></form>"
            )
        user_code = request.form.get("user_code", "").strip().upper()
        action = request.form.get("action", "approve")
        with self._lock:
            pending = next((c for c in self._devices.values() if c["user_code"] == user_code), None)
            if pending is None or pending.is_expired():
                return "That code is unknown or has expired.", 400
            if action == "deny":
                self._decisions[user_code] = (None, False)
                return "You declined the sign-in. You can close this window."
            username = request.form.get("username", "")
            if username not in self._users:
                return f"No such user: {escape(username)}", 400
            self._decisions[user_code] = (User(username), True)
        return f"{escape(username)}, you have signed in. You can close this window."

    def _introspection_app(self) -> Flask:
        app = Flask(__name__)

        @app.post("/introspect")
        def introspect() -> Any:
            return self.authorization.create_endpoint_response("introspection")

        app.register_error_handler(Exception, self._record_error)
        return app

    def _record_error(self, error: Exception) -> Any:
        from werkzeug.exceptions import HTTPException

        if isinstance(error, HTTPException):
            return error  # 404, 405...: an ordinary answer
        self.errors.append(error)
        return jsonify({"error": "server_error", "error_description": repr(error)}), 500


def _make_certificates(folder: Path) -> tuple[str, str]:
    """A private CA (``ca.pem``) and a server certificate it signed for 127.0.0.1 and
    localhost; returns (certificate chain, key) paths for ``load_cert_chain``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def usage(**on: bool) -> x509.KeyUsage:
        names = (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        )
        return x509.KeyUsage(**{n: on.get(n, False) for n in names})

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "inbox-guard test OAuth2 CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (folder / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (folder / "server.key").chmod(0o600)
    return str(folder / "server.pem"), str(folder / "server.key")
