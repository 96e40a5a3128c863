"""``/graphql``: GraphQL over HTTP (CONTRACT §5), persisted queries, and the GraphiQL page with its files."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import orjson

from handlers.base import APIHandler
from handlers.errors import ApiError
from handlers.graphiql import ASSET_DIR, GraphiQLAssetHandler, content_security_policy, render_page
from handlers.graphql_http import (
    GRAPHQL_RESPONSE_JSON,
    GraphQLRequest,
    RequestProblem,
    choose_media_type,
    request_from_json,
    request_from_params,
    wants_html,
)
from schema.context import RequestContext
from schema.engine import GraphQLEngine, GraphQLOutcome, Outcome
from schema.errors import BAD_REQUEST, METHOD_NOT_ALLOWED, RATE_LIMITED, UNAUTHENTICATED, simple_error

# A GET answer depends on the session: only the caller's own browser may keep it, and must ask
# again each time (Tornado's ETag then turns an unchanged answer into a 304 without a body).
GET_CACHE_CONTROL = "private, no-cache"
GET_VARY = "Accept, Origin, Authorization, Cookie, X-Session-Token"
# Apollo Server's header on PersistedQueryNotFound: never cache it, the retry registers the hash.
NOT_FOUND_CACHE_CONTROL = "private, no-cache, must-revalidate"


class GraphQLHandler(APIHandler):
    """POST runs any operation, GET runs queries only; a browser GET gets GraphiQL."""

    route_name = "graphql"

    @property
    def engine(self) -> GraphQLEngine:
        """The schema and document cache ``make_app`` built."""
        return cast(GraphQLEngine, self.settings["graphql"])

    async def get(self) -> None:
        """GraphiQL for browsers, else a query from the URL parameters."""
        params = self.request.query_arguments
        if "query" not in params and "extensions" not in params and wants_html(self.request.headers.get("Accept")):
            self._write_graphiql()
            return
        await self._authenticate()
        request = self._parse(lambda: request_from_params(params))
        await self._run(request, allow_mutations=False)

    async def post(self) -> None:
        """Any operation, from a JSON body."""
        self.check_cookie_origin()
        await self._authenticate()
        request = self._parse(
            lambda: request_from_json(self.request.body or b"", self.request.headers.get("Content-Type"))
        )
        await self._run(request, allow_mutations=True)

    # -- steps -----------------------------------------------------------------------------

    async def _authenticate(self) -> None:
        """401 (or 429) JSON like every protected route; the body also carries a GraphQL error."""
        try:
            await self.require_session()
        except ApiError as exc:
            code = RATE_LIMITED if exc.status_code == 429 else UNAUTHENTICATED
            raise ApiError(
                exc.status_code, exc.public, headers=exc.headers, errors=[simple_error(exc.public, code)]
            ) from None

    def _parse(self, read: Callable[[], GraphQLRequest]) -> GraphQLRequest:
        try:
            return read()
        except RequestProblem as exc:
            raise ApiError(exc.status, exc.public, errors=[simple_error(exc.public, BAD_REQUEST)]) from None

    async def _run(self, request: GraphQLRequest, *, allow_mutations: bool) -> None:
        assert self.session is not None and self.session_token is not None
        context = RequestContext(self.services, self.session, self.session_token, self.request_id)
        result = await self.engine.run(
            request.query,
            request.variables,
            request.operation_name,
            context,
            allow_mutations=allow_mutations,
            extensions=request.extensions,
        )
        self._respond(result)

    def _respond(self, result: GraphQLOutcome) -> None:
        if result.outcome is Outcome.METHOD_NOT_ALLOWED:
            # Written here, not raised: send_error() would drop the Allow header.
            self.set_status(405)
            self.set_header("Allow", "POST")
            self.set_header("Content-Type", "application/json")
            self.finish(
                orjson.dumps({"error": result.message, "errors": [simple_error(result.message, METHOD_NOT_ALLOWED)]})
            )
            return
        if result.outcome is Outcome.BAD_REQUEST:
            raise ApiError(400, result.message, errors=result.body["errors"])
        if result.outcome is Outcome.NOT_ALLOWED:  # safelist: as Apollo Router answers, 403
            raise ApiError(403, result.message, errors=result.body["errors"])
        media = choose_media_type(self.request.headers.get("Accept"))
        status = 200
        if result.outcome is Outcome.REQUEST_ERROR and media == GRAPHQL_RESPONSE_JSON:
            status = 400
        self.set_status(status)
        self.set_header("Content-Type", f"{media}; charset=utf-8")
        if result.outcome is Outcome.PERSISTED_QUERY_NOT_FOUND:
            # 200 whatever the media type, as Apollo Server: clients retry with the text on this code,
            # and Apollo's link turns persisted queries off for good after a 400.
            self.set_header("Cache-Control", NOT_FOUND_CACHE_CONTROL)
            self.set_header("Vary", "Accept, Origin")
        elif result.outcome is Outcome.EXECUTED and self.request.method == "GET":
            self.set_header("Cache-Control", GET_CACHE_CONTROL)
            self.set_header("Vary", GET_VARY)
        else:
            self.set_header("Cache-Control", "no-store")
            self.set_header("Vary", "Accept, Origin")
        self.finish(orjson.dumps(result.body))

    def _write_graphiql(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", content_security_policy())
        self.set_header("Cache-Control", "no-cache")
        self.set_header("Vary", "Accept, Origin")
        self.set_header("Referrer-Policy", "no-referrer")
        self.finish(render_page(self.request.path))


default_handlers = [
    (r"/graphql/?", GraphQLHandler),
    (r"/graphql/assets/(.*)", GraphiQLAssetHandler, {"path": str(ASSET_DIR)}),
]
