"""Shard routing end to end: two NoETL stand-ins as shards 0 and 1 behind one gateway (real nats-server).

Each stand-in knows only the executions it owns, and records every call, so a call that
lands on the wrong shard shows twice: a 404 in the answer and a recorded call on the wrong
stand-in. Execution-scoped calls (path, event-post body, GraphQL ``execution(id)``,
``proxyRequest``) go to the owner; ``execute`` and the rest go to the default; one shard down
fails only its own executions (502), and readiness lists every shard.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tornado.ioloop import IOLoop

from gateway.noetl.shards import shard_for
from tests.conftest import GatewayFactory, Standin, run_standin
from tests.standin.server import Execution
from tests.support.gateway import GatewayInstance, call
from tests.support.graphql_client import error_codes
from tests.support.nats_server import NatsServer
from tests.support.signin import SignedIn, login

SNOWFLAKE = 320_816_801_799_737_344


def owned_by(shard: int, count: int = 2) -> str:
    """An execution id (snowflake-sized) that shard ``shard`` of ``count`` owns."""
    return str(next(eid for eid in range(SNOWFLAKE, SNOWFLAKE + 100) if shard_for(eid, count) == shard))


ID0, ID1 = owned_by(0), owned_by(1)


@pytest.fixture
def shard1(io_loop: IOLoop, nats_server: NatsServer) -> Iterator[Standin]:
    """A second stand-in: NoETL shard 1 (the ``standin`` fixture is shard 0 and the default)."""
    yield from run_standin(io_loop, nats_server)


@pytest.fixture
def shards(standin: Standin, shard1: Standin) -> tuple[Standin, Standin]:
    """Shard 0 knows ID0 only, shard 1 knows ID1 only."""
    standin.state.executions[ID0] = Execution(ID0, "tests/noop", {}, status="COMPLETED", result={"on": 0})
    shard1.state.executions[ID1] = Execution(ID1, "tests/noop", {}, status="COMPLETED", result={"on": 1})
    return standin, shard1


@pytest.fixture
def sharded(io_loop: IOLoop, make_gateway: GatewayFactory, shards: tuple[Standin, Standin], client: Any) -> SignedIn:
    """Alice on a gateway with ``NOETL_SHARDS`` = the two stand-ins (``NOETL_BASE_URL`` = shard 0)."""

    async def start() -> SignedIn:
        gw = await make_gateway(NOETL_SHARDS=f"0={shards[0].url},1={shards[1].url}")
        return SignedIn(gw, client, await login(client, gw))

    signed_in: SignedIn = io_loop.run_sync(start, timeout=20)
    return signed_in


def paths_seen(standin: Standin, execution_id: str) -> list[str]:
    return [call.path for call in standin.state.calls if execution_id in call.path or _names(call.body, execution_id)]


def _names(body: Any, execution_id: str) -> bool:
    return isinstance(body, dict) and str(body.get("execution_id")) == execution_id


# -- execution-scoped calls land on the owner --------------------------------------------------


@pytest.mark.gen_test
async def test_execution_paths_go_to_the_owning_shard(sharded: SignedIn, shards: tuple[Standin, Standin]) -> None:
    for shard, execution_id in enumerate((ID0, ID1)):
        status, body, _ = await sharded.call("GET", f"/noetl/executions/{execution_id}")
        assert status == 200 and body["result"] == {"on": shard}, body
        status, body, _ = await sharded.call("GET", f"/noetl/executions/{execution_id}/status?x=1")
        assert status == 200 and body["completed"] is True
        status, body, _ = await sharded.call("GET", f"/noetl/executions/{execution_id}/events")
        assert status == 200 and body["execution_id"] == execution_id
        status, body, _ = await sharded.call("POST", f"/noetl/executions/{execution_id}/cancel", {"reason": "t"})
        assert status == 200 and body == {"execution_id": execution_id, "status": "CANCELLED"}, body
        status, _, _ = await sharded.call("GET", f"/noetl/vars/{execution_id}")
        assert status == 200
    expected = ["/api/executions/{}", "/api/executions/{}/status", "/api/executions/{}/events"]
    expected += ["/api/executions/{}/cancel", "/api/vars/{}"]
    for owner, other, execution_id in ((0, 1, ID0), (1, 0, ID1)):
        assert paths_seen(shards[owner], execution_id) == [path.format(execution_id) for path in expected]
        assert paths_seen(shards[other], execution_id) == []


@pytest.mark.gen_test
async def test_event_posts_go_where_their_body_says(sharded: SignedIn, shards: tuple[Standin, Standin]) -> None:
    cases = [
        ("/noetl/events", {"execution_id": ID1, "step": "start", "event_type": "step.enter"}, 1),
        ("/noetl/events", {"execution_id": int(ID0), "step": "x"}, 0),  # a JSON number is read too
        ("/noetl/events/batch", {"execution_id": ID1, "worker_id": "w", "events": [{"step": "a"}]}, 1),
        ("/noetl/events/batch", {"execution_id": ID0, "events": []}, 0),
    ]
    for path, body, owner in cases:
        status, answer, _ = await sharded.call("POST", path, body)
        assert status == 200 and answer["path"] == "/api" + path[len("/noetl") :]
        (landed,) = [c for c in shards[owner].state.calls if c.path.endswith(path[len("/noetl") :])][-1:]
        assert landed.body == body  # forwarded byte for byte after being read for the id
        assert not [c for c in shards[1 - owner].state.calls if c.body == body]
    # No id, or not JSON: the default (shard 0), as the reference does; NoETL answers for itself.
    for raw in (b'{"step": "x"}', b"not json"):
        status, answer, _ = await sharded.call("POST", "/noetl/events", raw=raw)
        assert status == 200 and answer["body_size"] == len(raw)
    assert [c.body_size for c in shards[0].state.calls_to("/api/events")][-2:] == [13, 8]


@pytest.mark.gen_test
async def test_an_oversized_event_post_is_refused_before_it_is_read(
    make_gateway: GatewayFactory, shards: tuple[Standin, Standin], client: Any
) -> None:
    gw = await make_gateway(NOETL_SHARDS=f"0={shards[0].url},1={shards[1].url}", GATEWAY_SHARD_BODY_MAX_BYTES="1000")
    alice = SignedIn(gw, client, await login(client, gw))
    big = {"execution_id": ID1, "payload": "x" * 2000}
    status, body, _ = await alice.call("POST", "/noetl/events", big)
    assert status == 413 and "error" in body
    assert not shards[1].state.calls_to("/api/events")


@pytest.mark.gen_test
async def test_starts_and_unscoped_calls_go_to_the_default(sharded: SignedIn, shards: tuple[Standin, Standin]) -> None:
    status, body, _ = await sharded.call("POST", "/noetl/execute", {"path": "tests/noop", "payload": {}})
    assert status == 200, body
    status, _, _ = await sharded.call("POST", "/noetl/catalog/list", {})
    assert status == 200
    status, _, _ = await sharded.call("GET", "/noetl/executions")
    assert status == 200
    assert shards[0].state.calls_to("/api/execute", "POST") and shards[0].state.calls_to("/api/catalog/list")
    assert not [c for c in shards[1].state.calls if c.path in ("/api/execute", "/api/catalog/list", "/api/executions")]


@pytest.mark.gen_test
async def test_graphql_calls_go_to_the_owning_shard(sharded: SignedIn, shards: tuple[Standin, Standin]) -> None:
    status, body, _ = await sharded.gql(
        "query($a: ID!, $b: ID!) { a: execution(id: $a) { status result } b: execution(id: $b) { status result } }",
        {"a": ID0, "b": ID1},
    )
    assert status == 200 and "errors" not in body, body
    assert body["data"]["a"]["result"] == {"on": 0} and body["data"]["b"]["result"] == {"on": 1}
    # The status confirmation (executions/{id}/status) follows the same rule.
    assert shards[1].state.calls_to(f"/api/executions/{ID1}/status")
    assert not shards[0].state.calls_to(f"/api/executions/{ID1}/status")
    proxy = """mutation($m: String!, $e: String!, $b: JSON) {
      proxyRequest(input: {method: $m, endpoint: $e, body: $b}) { success data }
    }"""
    status, body, _ = await sharded.gql(proxy, {"m": "GET", "e": f"/api/executions/{ID1}?verbose=1"})
    assert body["data"]["proxyRequest"]["data"]["result"] == {"on": 1}, body
    status, body, _ = await sharded.gql(proxy, {"m": "POST", "e": "/api/events", "b": {"execution_id": ID1}})
    assert body["data"]["proxyRequest"]["success"] is True, body
    assert [c.body for c in shards[1].state.calls_to("/api/events")] == [{"execution_id": ID1}]
    assert not shards[0].state.calls_to("/api/events")


# -- one shard down ---------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_a_shard_down_fails_only_its_executions(sharded: SignedIn, shards: tuple[Standin, Standin]) -> None:
    await shards[1].go_down()
    status, body, _ = await sharded.call("GET", f"/noetl/executions/{ID1}")
    assert status == 502 and body == {"error": "NoETL shard 1 is unreachable"}
    status, body, _ = await sharded.call("POST", "/noetl/events", {"execution_id": ID1})
    assert status == 502 and body == {"error": "NoETL shard 1 is unreachable"}
    status, body, _ = await sharded.gql("query($id: ID!) { execution(id: $id) { status } }", {"id": ID1})
    assert error_codes(body) == ["UPSTREAM_UNAVAILABLE"], body
    assert shards[1].url not in str(body)  # the shard's address never reaches a client
    # Everything else still works: shard 0's executions, starts, GraphQL.
    status, body, _ = await sharded.call("GET", f"/noetl/executions/{ID0}")
    assert status == 200 and body["result"] == {"on": 0}
    status, body, _ = await sharded.gql("query($id: ID!) { execution(id: $id) { result } }", {"id": ID0})
    assert body["data"]["execution"]["result"] == {"on": 0}
    status, _, _ = await sharded.call("POST", "/noetl/execute", {"path": "tests/noop", "payload": {}})
    assert status == 200
    shards[1].come_back()
    status, body, _ = await sharded.call("GET", f"/noetl/executions/{ID1}")
    assert status == 200 and body["result"] == {"on": 1}


# -- readiness --------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_readiness_lists_every_shard(sharded: SignedIn, shards: tuple[Standin, Standin], client: Any) -> None:
    url = f"{sharded.url}/health/ready"
    status, body, _ = await call(client, "GET", url)
    assert status == 200 and body["status"] == "ready", body
    assert body["shards"] == [{"shard_index": 0, "noetl": "reachable"}, {"shard_index": 1, "noetl": "reachable"}]
    await shards[1].go_down()
    status, body, _ = await call(client, "GET", url)
    assert status == 200 and body["status"] == "degraded" and body["noetl"] == "reachable"
    assert body["shards"][1] == {"shard_index": 1, "noetl": "unreachable"}
    await shards[0].go_down()  # the default too: nothing can start
    status, body, _ = await call(client, "GET", url)
    assert status == 503 and body["status"] == "unavailable"
    assert [shard["noetl"] for shard in body["shards"]] == ["unreachable", "unreachable"]


@pytest.mark.gen_test
async def test_readiness_without_shards_is_unchanged(gateway: GatewayInstance, client: Any) -> None:
    status, body, _ = await call(client, "GET", f"{gateway.url}/health/ready")
    assert (
        status == 200 and "shards" not in body and set(body) == {"status", "nats", "noetl", "playbook_state", "version"}
    )


# -- GET /sharding/preview --------------------------------------------------------------------


@pytest.mark.gen_test
async def test_preview_answers_like_the_reference(sharded: SignedIn, client: Any) -> None:
    status, body, _ = await call(
        client, "GET", f"{sharded.url}/sharding/preview?execution_id={SNOWFLAKE}&shard_count=16"
    )
    assert status == 200  # public, like the reference: no session
    assert body == {
        "execution_id": SNOWFLAKE,
        "shard_count": 16,
        "shard_index": 14,  # tests/test_shard_vectors.py's pinned table
        "source": "noetl-gateway",
        "hash_function": "twox_hash::XxHash64",
        "seed": 0,
    }
    status, body, _ = await call(client, "GET", f"{sharded.url}/sharding/preview?execution_id={ID1}")
    assert status == 200 and body["shard_count"] == 2 and body["shard_index"] == 1  # this gateway's map
    assert "http" not in str(body)  # never a shard's address


@pytest.mark.gen_test
async def test_preview_without_shards_counts_one(gateway: GatewayInstance, client: Any) -> None:
    status, body, _ = await call(client, "GET", f"{gateway.url}/sharding/preview?execution_id=-1")
    assert status == 200 and (body["shard_count"], body["shard_index"]) == (1, 0)


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "execution_id is required"),
        ("execution_id=abc", "execution_id must be a decimal 64-bit integer"),
        ("execution_id=9223372036854775808", "execution_id must be a decimal 64-bit integer"),
        ("execution_id=1&shard_count=0", "shard_count must be between 1 and 1024"),
        ("execution_id=1&shard_count=1025", "shard_count must be between 1 and 1024"),
        ("execution_id=1&shard_count=-2", "shard_count must be a whole number"),
    ],
)
async def test_preview_refuses_bad_input_with_json(
    gateway: GatewayInstance, client: Any, query: str, message: str
) -> None:
    status, body, headers = await call(client, "GET", f"{gateway.url}/sharding/preview?{query}")
    assert status == 400 and body == {"error": message}
    assert headers["Content-Type"] == "application/json"
