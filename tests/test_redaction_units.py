"""The byte-level redactor on its own: every nesting form, every chunk boundary, bounded carry.

The HTTP behaviour (proxy, proxyRequest, execution(id)) is in tests/test_credential_redaction.py;
these cases pin the filter's edge cases that are cheaper to enumerate without a server.
"""

from __future__ import annotations

import json

import orjson
import pytest

from gateway.access.redaction import (
    MAX_CARRY_BYTES,
    RedactionError,
    StreamRedactor,
    redact_bytes,
    redact_json,
    visible_json,
)

SECRETS = ("sess_ABC", "eyJ.cb.sig", "AUTH0SECRET", "REFRESH", "REPRTOK", "UPPER", "PRETTY")
DOC = {
    "a": 1,
    "session_token": "sess_ABC",
    "nested": [{"callback_token": "eyJ.cb.sig", "x": "y"}],
    # JSON text in JSON text in JSON, with a quote and backslashes inside the innermost value.
    "ctx": json.dumps(
        {"auth0_token": "AUTH0SECRET", "inner": json.dumps({"auth0_refresh_token": 'REFRESH"q\\\\', "k": "v"})}
    ),
    "pretty": json.dumps({"w": {"session_token": "PRETTY"}}, indent=2),
    "repr": "{'session_token': 'REPRTOK', 'a': 1}",  # a Python repr quoted in an error text
    "Session_Token": "UPPER",
    "note": "session_token",  # the key's name as a value is not a credential
    "n": None,
    "session_token2": "kept",
}
RAW = json.dumps(DOC).encode()


def stream(parts: list[bytes]) -> bytes:
    redactor = StreamRedactor()
    return b"".join(redactor.feed(part) for part in parts) + redactor.finish()


def test_every_form_is_redacted_and_the_json_stays_valid() -> None:
    out = redact_bytes(RAW)
    assert [s for s in SECRETS if s.encode() in out] == []
    doc = json.loads(out)
    assert doc["session_token"] == doc["nested"][0]["callback_token"] == doc["Session_Token"] == "[redacted]"
    ctx = json.loads(doc["ctx"])
    assert ctx["auth0_token"] == "[redacted]"
    assert json.loads(ctx["inner"]) == {"auth0_refresh_token": "[redacted]", "k": "v"}
    assert json.loads(doc["pretty"]) == {"w": {"session_token": "[redacted]"}}
    assert doc["repr"] == "{'session_token': '[redacted]', 'a': 1}"
    assert (doc["note"], doc["n"], doc["session_token2"], doc["a"]) == ("session_token", None, "kept", 1)


def test_every_chunk_boundary_gives_the_same_answer() -> None:
    whole = redact_bytes(RAW)
    for cut in range(len(RAW) + 1):
        assert stream([RAW[:cut], RAW[cut:]]) == whole, cut
    assert stream([RAW[i : i + 1] for i in range(len(RAW))]) == whole


def test_only_a_possible_key_is_held_back() -> None:
    """A live stream is not delayed: bytes that cannot start a credential key go out at once."""
    redactor = StreamRedactor()
    assert redactor.feed(b'data: {"step": "one", "n": 1}\n\n') == b'data: {"step": "one", "n": 1}\n\n'
    assert redactor.feed(b'{"x": 1, "sess') == b'{"x": 1, '
    assert redactor.feed(b'ion_token": "abc", "y": 2}') == b'"session_token": "[redacted]", "y": 2}'
    assert redactor.finish() == b""


def test_an_unfinished_value_is_dropped_to_the_end() -> None:
    assert stream([b'{"callback_token": "abc', b"def"]) == b'{"callback_token": "[redacted]"'


def test_a_hostile_key_beyond_the_carry_window_is_refused() -> None:
    redactor = StreamRedactor()
    with pytest.raises(RedactionError):
        redactor.feed(b'{"session_token"' + b" " * (MAX_CARRY_BYTES + 10))


@pytest.mark.parametrize("value", [{"a": [1, "x"]}, "plain", None, 3])
def test_json_values_without_credentials_are_returned_as_they_are(value: object) -> None:
    assert redact_json(value) is value


def test_admins_see_json_unchanged() -> None:
    doc = {"workload": {"session_token": "s"}}
    assert visible_json(doc, ["admin"], ["admin"]) is doc
    assert visible_json(doc, ["analyst"], ["admin"]) == {"workload": {"session_token": "[redacted]"}}
    assert orjson.dumps(visible_json(doc, [], ["admin"])) == b'{"workload":{"session_token":"[redacted]"}}'
