"""The gateway's own REST endpoints that take a JSON body: documented in OpenAPI, bounded by the body limit."""

from __future__ import annotations

REST_JSON_ENDPOINTS = (
    "/api/auth/login",
    "/api/auth/validate",
    "/api/auth/check-access",
    "/api/auth/logout",
    "/api/internal/callback",
    "/api/internal/callback/async",
    "/api/internal/progress",
)
