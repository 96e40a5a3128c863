"""The header shortcuts of the hot paths (handlers/http_headers.py) answer what Tornado's own calls do."""

from __future__ import annotations

import time
from typing import Any

import pytest
from tornado.httputil import HTTPHeaders, format_timestamp
from tornado.web import RequestHandler

from handlers.base import BaseHandler
from handlers.http_headers import default_response_headers, header_value
from tests.support.waiting import wait_for


class _Plain(BaseHandler):
    def set_default_headers(self) -> None:  # the gateway's own headers are not what is compared here
        pass


def _after(clear: Any) -> dict[str, Any]:
    """A handler's state right after ``clear`` (no request: clear() reads none)."""
    handler = object.__new__(_Plain)
    clear(handler)
    state = dict(vars(handler))
    state["_headers"] = list(state["_headers"].get_all())
    return state


def test_clear_leaves_what_tornados_clear_leaves() -> None:
    # Same attributes, same default headers in the same order; only the Date text is reused.
    # A Tornado upgrade that changes its clear() fails here.
    for _ in range(3):  # the second may turn between the two calls
        ours, tornados = _after(BaseHandler.clear), _after(RequestHandler.clear)
        if ours == tornados:
            break
    assert ours == tornados
    assert [name for name, _ in ours["_headers"]] == ["Server", "Content-Type", "Date"]


@pytest.mark.gen_test
async def test_date_follows_the_clock() -> None:
    first = default_response_headers()["Date"]
    assert first in (format_timestamp(time.time() - 1), format_timestamp(time.time()))
    # The cached text moves on with the second (polled: the clock, not a sleep, decides).
    later = await wait_for(lambda: default_response_headers()["Date"] != first and default_response_headers(), 3.0)
    assert later["Date"] in (format_timestamp(time.time() - 1), format_timestamp(time.time()))


def test_header_value_answers_as_get_does() -> None:
    headers = HTTPHeaders()
    headers.add("Authorization", "Bearer x")
    headers.add("X-Forwarded-For", "10.0.0.1")
    headers.add("x-forwarded-for", "10.0.0.2")
    for name in ("Authorization", "authorization", "X-Forwarded-For", "Origin", "Content-Length"):
        assert header_value(headers, name) == headers.get(name), name
    assert header_value(headers, "X-Forwarded-For") == "10.0.0.1,10.0.0.2"
