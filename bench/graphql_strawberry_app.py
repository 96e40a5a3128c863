"""The gateway's GraphQL schema served by Starlette + Strawberry, for the benchmark only.

``python bench/graphql_strawberry_app.py --port 8101 --noetl http://127.0.0.1:8082 [--caches]``

Same types and field names as ``schema/schema.graphql`` (Strawberry camel-cases them),
``executePlaybook`` does the same NoETL call as the gateway (one shared aiohttp session,
orjson, payload + workload). Without ``--caches`` Strawberry runs in its default
configuration (parse + validate every request); with it, its ParserCache and
ValidationCache extensions are on. No session check and no access check: this side does
strictly less work per request than the gateway.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import strawberry
import uvicorn
from starlette.applications import Starlette
from strawberry.asgi import GraphQL
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.scalars import JSON
from strawberry.types import Info


@strawberry.type
class User:
    user_id: strawberry.ID
    email: str
    display_name: str
    roles: list[str]


@strawberry.type
class Execution:
    id: strawberry.ID
    execution_id: strawberry.ID
    request_id: str | None
    name: str | None
    status: str | None
    text_output: str | None


@strawberry.type
class ProxyResponse:
    success: bool
    data: JSON | None
    error: str | None


@strawberry.input
class ProxyRequestInput:
    method: str
    endpoint: str
    body: JSON | None = None


class Upstream:
    """The NoETL base URL and the one HTTP client of the process."""

    base_url = ""
    http: aiohttp.ClientSession | None = None


async def noetl_json(method: str, path: str, body: Any) -> tuple[int, Any]:
    assert Upstream.http is not None
    data = orjson.dumps(body) if body is not None else None
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    async with Upstream.http.request(method, f"{Upstream.base_url}/api/{path}", data=data, headers=headers) as resp:
        raw = await resp.read()
        return resp.status, orjson.loads(raw) if raw else None


@strawberry.type
class Query:
    @strawberry.field
    def health(self) -> str:
        return "ok"

    @strawberry.field
    def version(self) -> str:
        return "bench"

    @strawberry.field
    def me(self) -> User | None:
        return None

    @strawberry.field
    async def execution(self, id: strawberry.ID) -> JSON | None:
        status, answer = await noetl_json("GET", f"executions/{id}", None)
        return answer if status < 400 else None


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def execute_playbook(
        self, info: Info, name: str, variables: JSON | None = None, client_id: str | None = None
    ) -> Execution:
        body: dict[str, Any] = {
            "path": name,
            "payload": variables or {},
            "workload": variables or {},
            "resource_kind": "playbook",
        }
        status, answer = await noetl_json("POST", "execute", body)
        if status >= 400 or not isinstance(answer, dict):
            raise RuntimeError(f"NoETL execute failed with status {status}")
        execution_id = str(answer["execution_id"])
        return Execution(
            id=strawberry.ID(execution_id),
            execution_id=strawberry.ID(execution_id),
            request_id=None,
            name=answer.get("name") or name,
            status=answer.get("status"),
            text_output=None,
        )

    @strawberry.mutation
    async def proxy_request(self, input: ProxyRequestInput) -> ProxyResponse:
        status, answer = await noetl_json(input.method, input.endpoint.removeprefix("/api/"), input.body)
        return ProxyResponse(success=status < 400, data=answer, error=None if status < 400 else str(status))


def make_app(noetl_url: str, caches: bool) -> Starlette:
    extensions: list[Any] = [ParserCache(maxsize=512), ValidationCache(maxsize=512)] if caches else []
    schema = strawberry.Schema(query=Query, mutation=Mutation, extensions=extensions)
    Upstream.base_url = noetl_url.rstrip("/")

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        Upstream.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=200, limit_per_host=200), auto_decompress=False
        )
        yield
        await Upstream.http.close()

    app = Starlette(lifespan=lifespan)
    app.add_route("/graphql", GraphQL(schema, graphql_ide=None))  # type: ignore[arg-type]  # an ASGI app, as documented
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--noetl", required=True)
    parser.add_argument("--caches", action="store_true", help="ParserCache + ValidationCache on")
    args = parser.parse_args()
    uvicorn.run(
        make_app(args.noetl, args.caches), host="127.0.0.1", port=args.port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
