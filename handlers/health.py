"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from gateway.version import __version__
from handlers.base import BaseHandler
from handlers.openapi import build_openapi


class HealthHandler(BaseHandler):
    """``200 ok`` while the loop runs: the liveness probe."""

    route_name = "health"

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("ok")


class ReadyHandler(BaseHandler):
    """Readiness: NoETL reachable (else 503); NATS missing is 'degraded' but still serving."""

    route_name = "health"

    async def get(self) -> None:
        noetl = self.services.noetl
        # The default URL and every shard at once: readiness costs one round trip, not n.
        noetl_ok, shards_ok = await asyncio.gather(noetl.ping(timeout=2.0), noetl.ping_shards(timeout=2.0))
        link = self.services.nats
        if not link.enabled:
            nats_state = "disabled"
        else:
            nats_state = "connected" if link.connected else "disconnected"
        if not noetl_ok:
            status, code = "unavailable", 503
        elif nats_state != "connected" or not all(shards_ok):
            # One shard down fails only its own executions: the gateway still serves the rest.
            status, code = "degraded", 200
        else:
            status, code = "ready", 200
        answer: dict[str, Any] = {
            "status": status,
            "nats": nats_state,
            "noetl": "reachable" if noetl_ok else "unreachable",
            # Where playbook/state frames come from: NoETL's event mirror, polling, or off.
            "playbook_state": self.services.live.playbook_state_source,
            "version": __version__,
        }
        if shards_ok:  # only with shard routing on: the answer is unchanged without it
            answer["shards"] = [
                {"shard_index": index, "noetl": "reachable" if ok else "unreachable"}
                for index, ok in enumerate(shards_ok)
            ]
        self.write_json(answer, status=code)


class MetricsHandler(BaseHandler):
    """Prometheus text format."""

    route_name = "metrics"

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.metrics.render())


class OpenApiHandler(BaseHandler):
    """The OpenAPI 3.1 document of the REST endpoints (generated from the pydantic models)."""

    route_name = "openapi"
    _document: bytes | None = None

    def get(self) -> None:
        if OpenApiHandler._document is None:  # immutable, built on first use
            OpenApiHandler._document = orjson.dumps(build_openapi())
        self.set_header("Content-Type", "application/json")
        self.finish(OpenApiHandler._document)


default_handlers = [
    (r"/health", HealthHandler),
    (r"/health/ready", ReadyHandler),
    (r"/metrics", MetricsHandler),
    (r"/openapi.json", OpenApiHandler),
]
