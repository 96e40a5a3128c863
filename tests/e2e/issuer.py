"""A stand-in Auth0 tenant: an RSA key the test owns, its JWKS served on loopback, tokens signed with it."""

from __future__ import annotations

import json
import time
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.support.threaded_http import ThreadedHttpServer

AUDIENCE = "https://noetl-gateway.e2e/api"


class TestIssuer(ThreadedHttpServer):
    """Signs RS256 tokens as ``http://127.0.0.1:{port}/`` and serves ``/.well-known/jwks.json``."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex[:16]
        self.rogue_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # not in the JWKS
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        self.jwks = json.dumps({"keys": [jwk]}).encode()
        self.jwks_requests = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/.well-known/jwks.json":
                    self.send_error(404)
                    return
                issuer.jwks_requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(issuer.jwks)))
                self.end_headers()
                self.wfile.write(issuer.jwks)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler, name="jwks")
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.jwks_url = f"{self.url}.well-known/jwks.json"

    def token(
        self,
        sub: str,
        email: str,
        name: str = "",
        *,
        audience: str = AUDIENCE,
        issuer: str | None = None,
        expires_in: float = 600,
        rogue: bool = False,
    ) -> str:
        """An Auth0-style ID token; ``rogue`` signs with a key the JWKS does not publish."""
        now = int(time.time())
        claims = {
            "iss": issuer if issuer is not None else self.url,
            "sub": sub,
            "aud": audience,
            "iat": now,
            "exp": int(now + expires_in),
            "email": email,
            "name": name,
        }
        key = self.rogue_key if rogue else self.key
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid})
