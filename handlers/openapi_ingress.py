"""The OpenAPI entry of ``POST /ingress/{listener}`` (handlers/ingress.py), joined by handlers/openapi.py."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class IngressAccepted(BaseModel):
    status: Literal["accepted"]
    execution_id: str
    delivery_id: str | None
    duplicate: bool  # a redelivery: nothing new was started, execution_id is the first delivery's


class IngressRefusal(BaseModel):
    error: str
    reason: str  # the reference gateway's reason code (docs/ingress.md#answers)


_REFUSALS = {
    400: "Verified, but not a Pub/Sub push envelope (or a delivery id over 256 characters)",
    401: "The delivery did not verify (signature, timestamp, token, OIDC token)",
    403: "A genuine OIDC token for another audience or service account",
    409: "A copy of this delivery is being started right now (see Retry-After)",
    413: "Body over the listener's limit (refused before it is read)",
    429: "Over the listener's rate (see Retry-After)",
    502: "NoETL failed the start, or the listener's config could not be read from NoETL",
    503: "Google's signing keys cannot be fetched, or listener lookups are over budget (see Retry-After)",
    504: "NoETL did not answer the start in time",
}


def _json(schema: dict[str, str]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def ingress_operation(error_ref: dict[str, str]) -> dict[str, Any]:
    """No session: the listener's verification is the principal; every refusal names its reason."""
    refusal = _json({"$ref": f"#/components/schemas/{IngressRefusal.__name__}"})
    responses: dict[str, Any] = {
        "202": {
            "description": "One execution started (or, redelivered, the first one's id)",
            **_json({"$ref": f"#/components/schemas/{IngressAccepted.__name__}"}),
        },
        "404": {"description": "No such listener (the same answer as any unknown path)", **_json(error_ref)},
    }
    responses.update({str(code): {"description": text, **refusal} for code, text in _REFUSALS.items()})
    return {
        "summary": "Push ingress: a verified webhook or Pub/Sub push starts the listener's playbook",
        "description": "Verified per listener (HMAC-SHA256 signature, bearer token or Google's Pub/Sub OIDC "
        "token; GATEWAY_INGRESS_CONFIG) before the body is parsed. See docs/ingress.md.",
        "parameters": [
            {"name": "listener", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 128}}
        ],
        "requestBody": {"required": False, **_json({})},
        "responses": responses,
        "security": [{}],
    }
