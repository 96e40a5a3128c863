"""A verified delivery read as a message, and the workload it starts the playbook with.

Runs only after verification (gateway/ingress/verify.py). A webhook's message is its body (JSON,
or text when it is not JSON) and its headers; a Pub/Sub push is unwrapped:
``{"message": {"data": base64, "attributes": {...}, "messageId"}, "subscription"}``.

The workload is the payload (``dispatch.payload_from``; merged when it is an object, else under
``body``), then the allowed directives (header or attribute → field), then the gateway's own
``ingress`` block — ``{listener, subscription, source, delivery_id, received_at}`` — which nothing
from the delivery can overwrite. Only allowlisted names ever become fields, and the allowlist
can never name a credential or the proof (gateway/ingress/spec.py), so ``Authorization``,
``Cookie`` and the signature header never reach NoETL.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.ingress.listeners import Listener
from gateway.ingress.rejections import IngressRejected
from gateway.ingress.spec import WORKLOAD_KEY

# Who sends what, when the listener names no delivery-id header: GitHub, then the reference's.
WEBHOOK_DELIVERY_HEADERS = ("X-GitHub-Delivery", "X-Message-Id")
MAX_DELIVERY_ID = 256


@dataclass(frozen=True, slots=True)
class Message:
    """What the workload is built from."""

    payload: Any
    delivery_id: str | None
    directives: dict[str, str]


def read_message(listener: Listener, headers: Mapping[str, str], body: bytes) -> Message:
    """The message of a verified delivery; 400 when a Pub/Sub push is not an envelope."""
    spec = listener.spec
    if spec.source == "pubsub":
        envelope, data, attributes, message_id = _unwrap_pubsub(body)
        payload = {"message.json": data, "body.json": envelope, "message.attributes": attributes}[
            spec.dispatch.payload_from
        ]
        channel: Mapping[str, str] = {name.lower(): value for name, value in attributes.items()}
        candidates = [headers.get(spec.delivery_id_header)] if spec.delivery_id_header else [message_id]
    else:
        payload = {} if spec.dispatch.payload_from == "message.attributes" else _decoded(body)
        channel = headers
        names = (spec.delivery_id_header,) if spec.delivery_id_header else WEBHOOK_DELIVERY_HEADERS
        candidates = [headers.get(name) for name in names]
    delivery_id = next((value.strip() for value in candidates if value and value.strip()), None)
    if delivery_id is not None and len(delivery_id) > MAX_DELIVERY_ID:
        raise IngressRejected(400, "bad_delivery_id", f"The delivery id is longer than {MAX_DELIVERY_ID} characters")
    directives = {
        field: str(channel[name]) for name, field in spec.allowed_directives.items() if channel.get(name) is not None
    }
    return Message(payload=payload, delivery_id=delivery_id, directives=directives)


def build_workload(listener: Listener, message: Message, received_at: str) -> dict[str, Any]:
    """Payload, then directives, then the gateway's ``ingress`` block (see the module docstring)."""
    payload = message.payload
    workload: dict[str, Any] = dict(payload) if isinstance(payload, dict) else {"body": payload}
    workload.update(message.directives)
    workload[WORKLOAD_KEY] = {
        "listener": listener.name,
        "subscription": listener.subscription,
        "source": listener.spec.source,
        "delivery_id": message.delivery_id,
        "received_at": received_at,
    }
    return workload


def _decoded(raw: bytes) -> Any:
    """JSON when it is JSON, else the text (a form-encoded webhook, plain text); empty: {}."""
    if not raw.strip():
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


def _unwrap_pubsub(raw: bytes) -> tuple[dict[str, Any], Any, dict[str, str], str | None]:
    not_envelope = IngressRejected(400, "malformed_envelope", "The body is not a Pub/Sub push envelope")
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise not_envelope from None
    message = envelope.get("message") if isinstance(envelope, dict) else None
    if not isinstance(message, dict):
        raise not_envelope
    encoded = message.get("data") or ""
    attributes = message.get("attributes") or {}
    if not isinstance(encoded, str) or not isinstance(attributes, dict):
        raise not_envelope
    try:
        data = _decoded(base64.b64decode(encoded, validate=True)) if encoded else {}
    except (binascii.Error, ValueError):
        raise IngressRejected(400, "malformed_envelope", "The message data is not base64") from None
    message_id = message.get("messageId") or message.get("message_id")
    return envelope, data, {str(k): str(v) for k, v in attributes.items()}, str(message_id) if message_id else None
