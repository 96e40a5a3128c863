"""No session, Auth0 or callback token (nor a URL password) reaches a log line (CONTRACT §9)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import aiohttp
import orjson
import pytest

from gateway.logging import flush_logging, scrub
from tests.conftest import Standin
from tests.support.gateway import GatewayInstance, call
from tests.support.logs import production_logging


@pytest.fixture
def captured_log() -> Iterator[io.StringIO]:
    """The production logging setup (JSON lines), writing into a buffer."""
    with production_logging("json", "DEBUG") as buffer:
        yield buffer


AUTH0_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhdXRoMHwxMjMifQ.c2lnbmF0dXJlLXNlY3JldA"


@pytest.mark.gen_test
async def test_no_token_in_logs(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, captured_log: io.StringIO
) -> None:
    status, login, _ = await call(
        client, "POST", f"{gateway.url}/api/auth/login", {"auth0_token": "good" + AUTH0_TOKEN}
    )
    assert status == 200
    session_token = login["session_token"]
    callback_token = standin.state.calls_to("/api/execute")[-1].body["workload"]["callback_token"]
    # Tokens in every place a client might put them, including failures that get logged at WARNING.
    await call(client, "GET", f"{gateway.url}/nope?session_token={session_token}&x=1")
    await call(
        client,
        "POST",
        f"{gateway.url}/api/internal/callback?callback_token={callback_token}",
        {"request_id": "r"},
        headers={"Authorization": f"Bearer {callback_token}"},
    )
    await call(client, "POST", f"{gateway.url}/api/auth/validate", {"session_token": session_token})
    await call(client, "POST", f"{gateway.url}/api/auth/logout", headers={"X-Session-Token": session_token})
    # After logout the stream answers one error event and closes, so its access line is written now.
    await call(client, "GET", f"{gateway.url}/events?session_token={session_token}")
    await call(client, "POST", f"{gateway.url}/api/auth/login", {"auth0_token": "reject" + AUTH0_TOKEN})

    flush_logging()  # lines are written by a background thread; write what it still holds
    text = captured_log.getvalue()
    assert text, "nothing was logged: the capture is broken"
    lines = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    assert all({"ts", "level", "logger", "msg", "request_id"} <= set(entry) for entry in lines)
    assert any(entry["logger"] == "gateway.access" for entry in lines)
    for secret in (session_token, callback_token, AUTH0_TOKEN, AUTH0_TOKEN.split(".")[1]):
        assert secret not in text


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("GET /events?session_token=abc.def-123 200", "abc.def-123"),
        ('{"auth0_token": "zzz-secret"}', "zzz-secret"),
        ("Authorization: Bearer qqq.www.eee", "qqq.www.eee"),
        ("connect nats://user:hunter2@host:4222", "hunter2"),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJyaWQiOiJ4In0.sig", "eyJyaWQiOiJ4In0"),
        ("password=p4ss&x=1", "p4ss"),
        # Not ASCII: the quick pre-check cannot rule these out ("ſ" matches "s" under (?i)).
        ("Authorization: Baſic qqq-www", "qqq-www"),
        ("GET /ünïcode?Session_Token=abc.def-9 200", "abc.def-9"),
    ],
)
def test_scrub_patterns(line: str, secret: str) -> None:
    assert secret not in scrub(line)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_tracebacks_are_scrubbed_in_both_formats(fmt: str) -> None:
    """An exception's message may quote a header or a query string: its traceback is scrubbed too."""
    with production_logging(fmt, "INFO") as buffer:
        session_token = "sess_Zq8" + "x" * 30
        bearer = "abc.def-ghi_jkl"
        try:
            raise ValueError(f"upstream: Authorization: Bearer {bearer}; url=/events?session_token={session_token}")
        except ValueError:
            logging.getLogger("gateway.test").exception("request failed")
        try:
            raise KeyError(f"x-session-token: {session_token}")
        except KeyError:
            logging.getLogger("gateway.test").error("lookup failed", exc_info=True, stack_info=True)
    text = buffer.getvalue()
    assert "Traceback" in text and "ValueError" in text and "KeyError" in text  # the traceback is there
    assert session_token not in text and bearer not in text
