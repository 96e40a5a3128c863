"""What push sources send: GitHub-style signed webhooks, Pub/Sub push envelopes with an OIDC token,
and a listener file for ``GATEWAY_INGRESS_CONFIG``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import yaml

from tests.support.jwks import SigningKey

GITHUB_SECRET = "github-webhook-secret-0123456789abcdef"
BEARER_TOKEN = "alertmanager-token-0123456789abcdef"
STAMPED_SECRET = "stamped-webhook-secret-0123456789abcdef"
AUDIENCE = "https://gateway.test/ingress/billing"
SERVICE_ACCOUNT = "pubsub-push@proj.iam.gserviceaccount.com"
PLAYBOOK = "tests/noop"  # a stand-in playbook that does nothing


def signature(secret: str, body: bytes, stamp: str | None = None) -> str:
    """``sha256=<hex>`` over the body (or ``{stamp}.{body}``), as GitHub signs."""
    signed = body if stamp is None else stamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def github_delivery(
    payload: dict[str, Any], secret: str = GITHUB_SECRET, **headers: str
) -> tuple[bytes, dict[str, str]]:
    """A GitHub push webhook: body and headers (``X-GitHub-Delivery`` fresh unless given)."""
    body = orjson.dumps(payload)
    sent = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": signature(secret, body),
        "User-Agent": "GitHub-Hookshot/test",
    }
    sent.update({name.replace("_", "-"): value for name, value in headers.items()})
    return body, sent


def oidc_token(key: SigningKey, **overrides: Any) -> str:
    """The token Google signs for a push subscription (claims as Google sets them)."""
    now = int(time.time())
    claims = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "azp": "1234567890",
        "email": SERVICE_ACCOUNT,
        "email_verified": True,
        "sub": "1234567890",
        "iat": now,
        "exp": now + 3600,
        **overrides,
    }
    return key.sign(claims)


def pubsub_push(data: dict[str, Any], message_id: str | None = None, **attributes: str) -> bytes:
    """A Pub/Sub push body: the message data base64-encoded in the envelope."""
    envelope = {
        "message": {
            "data": base64.b64encode(orjson.dumps(data)).decode(),
            "attributes": attributes,
            "messageId": message_id or str(uuid.uuid4().int)[:16],
            "publishTime": "2024-01-01T00:00:00.000Z",
        },
        "subscription": "projects/proj/subscriptions/billing-push",
    }
    return orjson.dumps(envelope)


def listener_file(tmp_path: Path, **extra: dict[str, Any]) -> str:
    """A listener file with one listener per verification kind (plus ``extra``); returns its path."""
    secret_file = tmp_path / "stamped.secret"
    secret_file.write_text(STAMPED_SECRET + "\n")
    listeners: dict[str, Any] = {
        "github": {
            "catalog_path": "subscriptions/github",
            "verify": {"type": "hmac_sha256", "header": "X-Hub-Signature-256", "secret_env": "TEST_GITHUB_SECRET"},
            "dispatch": {"playbook": PLAYBOOK},
            "directives": {"X-GitHub-Event": "github_event"},
        },
        "stamped": {
            "verify": {
                "type": "hmac_sha256",
                "header": "X-Signature",
                "timestamp_header": "X-Signature-Timestamp",
                "tolerance_secs": 300,
                "secret_file": str(secret_file),
            },
            "dispatch": {"playbook": PLAYBOOK},
            "delivery_id_header": "X-Delivery",
        },
        "alerts": {
            "verify": {"type": "bearer", "secret_env": "TEST_BEARER_TOKEN"},
            "dispatch": {"playbook": PLAYBOOK},
            "delivery_id_header": "X-Delivery",
        },
        "billing": {
            "source": "pubsub",
            "verify": {"type": "pubsub_oidc", "audience": AUDIENCE, "service_account": SERVICE_ACCOUNT},
            "dispatch": {"playbook": PLAYBOOK, "payload_from": "message.json"},
            "directives": ["eventType"],
        },
        "small": {
            "verify": {"type": "bearer", "secret_env": "TEST_BEARER_TOKEN"},
            "dispatch": {"playbook": PLAYBOOK},
            "max_body_bytes": 1024,
        },
        **extra,
    }
    path = tmp_path / "ingress.yaml"
    path.write_text(yaml.safe_dump({"listeners": listeners}, sort_keys=False))
    return str(path)


LISTENER_SECRETS = {"TEST_GITHUB_SECRET": GITHUB_SECRET, "TEST_BEARER_TOKEN": BEARER_TOKEN}
