"""RSA keys made in the test and a local JWKS endpoint (Auth0 stand-in for key material only)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from tests.support.nats_server import free_port


class SigningKey:
    """One RSA key pair with a kid."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**public, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": self.kid, **header})


class JwksServer:
    """Serves ``/.well-known/jwks.json`` with the keys a test chooses; counts fetches."""

    def __init__(self) -> None:
        self.keys: list[SigningKey] = []
        self.fetches = 0
        self.port = free_port()
        self.server: HTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    def start(self) -> JwksServer:
        owner = self

        class Handler(RequestHandler):
            def get(self) -> None:
                owner.fetches += 1
                self.set_header("Content-Type", "application/json")
                self.finish(json.dumps({"keys": [key.jwk() for key in owner.keys]}))

        self.server = HTTPServer(Application([(r"/.well-known/jwks.json", Handler)]))
        self.server.listen(self.port, address="127.0.0.1")
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def serve_jwks(kid: str) -> Iterator[JwksServer]:
    """A fixture's body: a JWKS with one signing key ``kid``, started in the test's loop, stopped after it."""
    server = JwksServer().start()
    server.keys.append(SigningKey(kid))
    yield server
    server.stop()


def claims(domain: str, audience: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": f"https://{domain}/", "aud": audience, "sub": "auth0|123", "iat": now, "exp": now + 600, **overrides}
