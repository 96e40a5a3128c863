"""The one error family: every error a client may see is a PublicError, mapped once per wire format."""

from __future__ import annotations

import pytest

from gateway.access.refusals import AccessDenied
from gateway.auth.auth0 import Auth0Error
from gateway.auth.service import AuthError
from gateway.auth.tokens import CallbackTokenError
from gateway.errors import (
    BadExecutionInput,
    ClientNotOwned,
    ExecutionRefused,
    PublicError,
    TooManyPending,
)
from gateway.noetl.client import UpstreamError, UpstreamFailure, UpstreamTimeout, UpstreamUnavailable
from handlers.errors import ApiError
from handlers.json_body import RequestProblem
from schema.errors import public_extensions


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ApiError(404, "Not found"), 404, "BAD_REQUEST"),
        (ApiError(401, "Missing authentication token"), 401, "UNAUTHENTICATED"),
        (AuthError(401, "Invalid credentials"), 401, "UPSTREAM_ERROR"),
        (AuthError(504, "No answer"), 504, "UPSTREAM_UNAVAILABLE"),
        (Auth0Error(503, "keys"), 503, "UPSTREAM_UNAVAILABLE"),
        (CallbackTokenError(403, "mismatch"), 403, "FORBIDDEN"),
        (RequestProblem(415, "Content-Type"), 415, "BAD_REQUEST"),
        (ExecutionRefused("no"), 400, "BAD_USER_INPUT"),
        (BadExecutionInput("no"), 400, "BAD_USER_INPUT"),
        (AccessDenied("no"), 403, "FORBIDDEN"),
        (ClientNotOwned(), 400, "BAD_USER_INPUT"),
        (TooManyPending(3), 429, "RATE_LIMITED"),
        (UpstreamUnavailable("down"), 502, "UPSTREAM_UNAVAILABLE"),
        (UpstreamTimeout("slow"), 504, "UPSTREAM_UNAVAILABLE"),
        (UpstreamError("bad", 500, gateway_status=503), 503, "UPSTREAM_ERROR"),
    ],
)
def test_every_domain_error_is_a_public_error(error: PublicError, status: int, code: str) -> None:
    assert isinstance(error, PublicError)
    assert (error.status, error.code) == (status, code)
    assert error.public
    if not isinstance(error, ApiError):  # str() of an ApiError is Tornado's "HTTP 404: Not Found"
        assert str(error) == error.public


def test_api_error_stays_a_tornado_http_error() -> None:
    """Tornado answers HTTPError itself (status, headers), so ApiError keeps being one."""
    from tornado.web import HTTPError

    error = ApiError(429, "Too many", headers={"Retry-After": "3"}, errors=[])
    assert isinstance(error, HTTPError) and error.status_code == 429 == error.status
    assert error.headers == {"Retry-After": "3"} and error.extra == {"errors": []}


def test_graphql_extensions_of_the_family() -> None:
    assert public_extensions(UpstreamError("NoETL answered 404", 404)) == {
        "code": "UPSTREAM_ERROR",
        "upstreamStatus": 404,
    }
    assert public_extensions(AccessDenied("No execute permission")) == {"code": "FORBIDDEN"}
    assert isinstance(UpstreamFailure("x"), PublicError)
