"""Header work every request does, without the general-purpose costs of Tornado's own paths.

* ``header_value``: ``HTTPHeaders.get`` is ``Mapping.get``, so a header the request does not
  carry raises and catches a KeyError inside (≈ 0.4 µs warm, more on a cold request), and every
  request asks for several that most never send (``Origin``, ``X-Request-Id``, ``Content-Length``).
* ``CheapDefaults.clear()``: Tornado's reset of a response, its ``Date`` text made once per second
  instead of by ``email.utils.formatdate`` for every response (≈ 2.5 µs).
  tests/test_http_headers.py keeps it equal to Tornado's.
"""

from __future__ import annotations

import time
from http.client import responses

import tornado
from tornado.httputil import HTTPHeaders, format_timestamp
from tornado.web import RequestHandler

_SERVER = f"TornadoServer/{tornado.version}"
_DEFAULT_CONTENT_TYPE = "text/html; charset=UTF-8"


def header_value(headers: HTTPHeaders, name: str) -> str | None:
    """What ``headers.get(name)`` answers (repeated headers joined by ","), without the KeyError."""
    values = headers.get_list(name)
    if not values:
        return None
    return values[0] if len(values) == 1 else ",".join(values)


class _DateText:
    """The HTTP ``Date`` text of the current second (HTTP dates have no finer resolution)."""

    second = -1
    text = ""

    @classmethod
    def now(cls) -> str:
        second = int(time.time())
        if second != cls.second:
            cls.text = format_timestamp(second)
            cls.second = second
        return cls.text


def default_response_headers() -> HTTPHeaders:
    """The headers Tornado's ``RequestHandler.clear()`` starts a response with, same order."""
    return HTTPHeaders({"Server": _SERVER, "Content-Type": _DEFAULT_CONTENT_TYPE, "Date": _DateText.now()})


class CheapDefaults(RequestHandler):
    """A handler whose ``clear()`` is Tornado's with ``default_response_headers``."""

    def clear(self) -> None:
        """Tornado's ``RequestHandler.clear()``, the default headers from ``default_response_headers``."""
        self._headers = default_response_headers()
        self.set_default_headers()
        self._write_buffer = []
        self._status_code = 200
        self._reason = responses[200]
