"""What graphql_bench.py and apq_bench.py both send: the mutation, the JSON calls, the sign-in, the answer check.

Kept in one place so both scripts measure the same request and judge its answer the same way.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

# The example mutation, aimed at the stand-in's no-op playbook so that the stand-in does
# the same (minimal) work for every target.
MUTATION = """mutation {
  executePlaybook(
    name: "tests/noop"
    variables: { query: "Flights from SFO to JFK tomorrow" }
  ) { id executionId requestId status }
}"""


def http_json(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    """Status and decoded JSON answer of one call (an HTTP error status is an answer, not an exception)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def executed(answer: Any) -> bool:
    """The mutation's answer names an execution (the stand-in started the playbook)."""
    return bool((answer or {}).get("data", {}).get("executePlaybook", {}).get("executionId"))


def login(gateway: str) -> str:
    """A session token from the gateway (the stand-in accepts any ``good-*`` Auth0 token)."""
    status, answer = http_json("POST", f"{gateway}/api/auth/login", {"auth0_token": "good-bench"})
    if status != 200:
        raise RuntimeError(f"login failed: {status} {answer}")
    return str(answer["session_token"])
