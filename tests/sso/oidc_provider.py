"""A small OpenID Connect provider for tests, on 127.0.0.1 in a thread.

It serves discovery, /authorize (redirects straight back with a code and the
state: the "user" is whoever the test says is signing in next), /token (an
RS256-signed ID token and an access token), /userinfo and /jwks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

CLIENT_ID = "tenure-test"
CLIENT_SECRET = "tenure-test-secret"
KID = "test-key-1"


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class Identity:
    sub: str
    preferred_username: str
    email: str = ""
    groups: list[str] = field(default_factory=list)
    given_name: str = ""
    family_name: str = ""

    def claims(self) -> dict[str, Any]:
        return {
            "sub": self.sub,
            "preferred_username": self.preferred_username,
            "email": self.email,
            "groups": list(self.groups),
            "given_name": self.given_name,
            "family_name": self.family_name,
        }


@dataclass
class Grant:
    identity: Identity
    nonce: str
    redirect_uri: str
    code_challenge: str = ""


class OIDCProvider:
    """Start with ``start()``; ``login_as`` picks who the next /authorize signs in."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.identity: Identity | None = None
        self.codes: dict[str, Grant] = {}
        self.tokens: dict[str, Identity] = {}
        self.requests: list[tuple[str, str]] = []
        # Knobs for the failure tests.
        self.nonce_override: str | None = None
        self.audience: str = CLIENT_ID
        self.groups_in_userinfo = True  # False: groups only in the ID token, as Entra ID does
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> OIDCProvider:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def login_as(self, identity: Identity) -> None:
        self.identity = identity

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "userinfo_endpoint": f"{self.url}/userinfo",
            "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def jwks(self) -> dict[str, Any]:
        public = self.key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "kid": KID,
                    "use": "sig",
                    "alg": "RS256",
                    "n": _b64(public.n),
                    "e": _b64(public.e),
                }
            ]
        }

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": self.audience,
            "iat": now,
            "exp": now + 300,
            "nonce": self.nonce_override if self.nonce_override is not None else grant.nonce,
            **grant.identity.claims(),
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": KID})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # stdlib name
                pass

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                provider.requests.append(("GET", url.path))
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/.well-known/openid-configuration":
                    self._json(200, provider.discovery())
                elif url.path == "/jwks":
                    self._json(200, provider.jwks())
                elif url.path == "/authorize":
                    self._authorize(query)
                elif url.path == "/userinfo":
                    auth = self.headers.get("Authorization", "")
                    identity = provider.tokens.get(auth.removeprefix("Bearer "))
                    if identity is None:
                        self._json(401, {"error": "invalid_token"})
                    else:
                        claims = identity.claims()
                        if not provider.groups_in_userinfo:
                            del claims["groups"]
                        self._json(200, claims)
                else:
                    self._json(404, {"error": "not_found"})

            def _authorize(self, query: dict[str, str]) -> None:
                if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
                    self._json(400, {"error": "invalid_request"})
                    return
                if provider.identity is None:
                    self._json(400, {"error": "login_required"})
                    return
                code = secrets.token_urlsafe(16)
                provider.codes[code] = Grant(
                    identity=provider.identity,
                    nonce=query.get("nonce", ""),
                    redirect_uri=query["redirect_uri"],
                    code_challenge=query.get("code_challenge", ""),
                )
                target = f"{query['redirect_uri']}?" + urlencode(
                    {"code": code, "state": query.get("state", "")}
                )
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                url = urlparse(self.path)
                provider.requests.append(("POST", url.path))
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if url.path != "/token":
                    self._json(404, {"error": "not_found"})
                    return
                if (form.get("client_id"), form.get("client_secret")) != (
                    CLIENT_ID,
                    CLIENT_SECRET,
                ):
                    self._json(401, {"error": "invalid_client"})
                    return
                grant = provider.codes.pop(form.get("code", ""), None)
                if grant is None or grant.redirect_uri != form.get("redirect_uri"):
                    self._json(400, {"error": "invalid_grant"})
                    return
                if grant.code_challenge and grant.code_challenge != _s256(
                    form.get("code_verifier", "")
                ):
                    self._json(400, {"error": "invalid_grant", "error_description": "PKCE"})
                    return
                access_token = secrets.token_urlsafe(24)
                provider.tokens[access_token] = grant.identity
                self._json(
                    200,
                    {
                        "access_token": access_token,
                        "token_type": "Bearer",
                        "expires_in": 300,
                        "id_token": provider.id_token(grant),
                    },
                )

        return Handler
