"""NoETL stand-in: a real HTTP server speaking the NoETL REST contract the gateway uses.

DEVELOPMENT STAND-IN — not NoETL. It runs scripted playbooks (auth0 login, validate,
check access, async playbooks that call back over HTTP or NATS) and records every
request so tests can assert on what the gateway sent. The demo (`make demo`) runs it too.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from tests.standin import playbooks


@dataclass
class RecordedCall:
    """One request the stand-in received."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    body_size: int


@dataclass
class Execution:
    """A started playbook."""

    execution_id: str
    path: str
    variables: dict[str, Any]
    status: str = "RUNNING"
    result: Any = None
    error: Any = None
    created_at: float = field(default_factory=time.time)
    completion_inferred: bool = False  # NoETL could only infer the end (no terminal event)
    version: int = 1  # the catalog version that ran
    resource_kind: str | None = None  # what the execute call asked for (None: left out)
    task: asyncio.Task[None] | None = None  # the running script (POST …/cancel stops it)
    completed_steps: list[str] = field(default_factory=list)  # as /status lists them (tests/standin/lifecycle.py)


PlaybookFn = Callable[["PlaybookRun"], Awaitable[None]]


class StandinState:
    """Everything the stand-in knows; tests read and steer it directly."""

    def __init__(self, nats_url: str | None = None) -> None:
        self.calls: list[RecordedCall] = []
        self.executions: dict[str, Execution] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.validate_api = True
        self.validate_failure: str | None = None  # "db_down" | "no_credential"
        self.denied_paths: set[str] = set()
        self.callback_transport = "http"  # or "nats"
        self.nats_url = nats_url
        self.playbooks: dict[str, PlaybookFn] = dict(playbooks.DEFAULT_PLAYBOOKS)
        # Catalog ids as NoETL gives them (one per registered version); execute by catalog_id uses them.
        self.catalog: dict[int, str] = {
            playbooks.CATALOG_BASE_ID + index: path for index, path in enumerate(sorted(self.playbooks))
        }
        self.gates: dict[str, asyncio.Event] = {}
        self.execute_status: int | None = None  # force an error status on /api/execute
        self.execute_delay = 0.0
        # Catalog entries registered as agents (NoETL 4.26: resource_kind "agent" runs only these,
        # "playbook" never does); a test adds the path and a scripted playbook for it.
        self.agents: set[str] = set()
        # NoETL 4.26 has no POST /api/executions/{id}/rerun; tests switch it on (reference contract).
        self.rerun_route = False
        # GET /api/executions/{id} with a top-level "workload" (this stand-in's old shape); False
        # answers as NoETL 4.26 does: the workload only in the playbook.initialized event.
        self.detail_workload = True
        self.tasks: set[asyncio.Task[None]] = set()
        self.callback_replies: list[tuple[str, int, Any]] = []
        self.callback_log: list[tuple[str, Any, int, Any]] = []  # (url, request id, status, answer)
        self._ids = itertools.count(int(time.time() * 1000) * 1000)
        self._http: aiohttp.ClientSession | None = None
        self._nats: Any = None

    def calls_to(self, path: str, method: str | None = None) -> list[RecordedCall]:
        """Recorded calls whose path equals ``path``."""
        return [c for c in self.calls if c.path == path and (method is None or c.method == method)]

    def catalog_id_of(self, path: str) -> int:
        """The catalog id of a registered playbook."""
        return next(cid for cid, known in self.catalog.items() if known == path)

    def new_execution_id(self) -> str:
        return str(next(self._ids))

    async def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    async def nats(self) -> Any:
        import nats

        if self._nats is None or not self._nats.is_connected:
            if not self.nats_url:
                raise RuntimeError("stand-in has no NATS URL")
            self._nats = await nats.connect(self.nats_url, allow_reconnect=False)
        return self._nats

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=2)
        if self._http is not None:
            await self._http.close()
        if self._nats is not None:
            try:
                await self._nats.close()
            except Exception:
                pass


class PlaybookRun:
    """What a scripted playbook sees: its variables and ways to call the gateway back."""

    def __init__(self, state: StandinState, execution: Execution) -> None:
        self.state = state
        self.execution = execution
        self.variables = execution.variables

    async def gate(self) -> None:
        """Wait while a test holds this playbook's gate closed."""
        gate = self.state.gates.get(self.execution.path)
        if gate is not None:
            await gate.wait()

    async def post(self, path: str, body: dict[str, Any], *, token: bool = True) -> tuple[int, Any]:
        """POST to ``{gateway_url}{path}`` with the callback token, like an http tool step."""
        headers = {"Content-Type": "application/json"}
        if token and self.variables.get("callback_token"):
            headers["Authorization"] = f"Bearer {self.variables['callback_token']}"
        if self.variables.get("traceparent"):  # a playbook continuing the gateway's trace in its callback
            headers["traceparent"] = str(self.variables["traceparent"])
        session = await self.state.http()
        url = f"{self.variables['gateway_url']}{path}"
        async with session.post(url, data=orjson.dumps(body), headers=headers) as resp:
            raw = await resp.read()
            answer = orjson.loads(raw) if raw else None
            self.state.callback_replies.append((path, resp.status, answer))
            self.state.callback_log.append((url, body.get("request_id"), resp.status, answer))
            return resp.status, answer

    async def callback(self, status: str, data: dict[str, Any], transport: str | None = None) -> None:
        """Answer a waiting gateway request (login/check-access/validate)."""
        body = {
            "request_id": self.variables["request_id"],
            "execution_id": self.execution.execution_id,
            "status": status,
            "data": data,
        }
        if self.execution.result is None:
            self.execution.result = data  # NoETL keeps what a step produced (a login's session token too)
        if (transport or self.state.callback_transport) == "nats":
            nc = await self.state.nats()
            await nc.publish(self.variables["callback_subject"], orjson.dumps(body))
            await nc.flush()
        else:
            await self.post("/api/internal/callback", body)


class _Handler(RequestHandler):
    """Records the request, answers JSON."""

    @property
    def state(self) -> StandinState:
        state: StandinState = self.settings["state"]
        return state

    def prepare(self) -> None:
        body: Any = None
        raw = self.request.body or b""
        if raw:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = None
        self.state.calls.append(
            RecordedCall(
                self.request.method or "",
                self.request.path,
                self.request.query,
                dict(self.request.headers),
                body,
                len(raw),
            )
        )
        self.body = body

    def reply(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps(payload))


class HealthHandler(_Handler):
    def get(self) -> None:
        self.reply({"status": "ok"})


class ExecuteHandler(_Handler):
    async def post(self) -> None:
        state = self.state
        if state.execute_delay:
            await asyncio.sleep(state.execute_delay)
        if state.execute_status is not None:
            self.reply({"detail": "scripted failure"}, state.execute_status)
            return
        body = self.body if isinstance(self.body, dict) else {}
        path = body.get("path")
        if body.get("catalog_id"):  # as NoETL 4.26: the catalog id wins over path
            path = state.catalog.get(int(body["catalog_id"]))
            if path is None:
                self.reply({"detail": f"Executable catalog entry not found: catalog_id={body['catalog_id']}"}, 404)
                return
        if not path:
            self.reply({"detail": [{"loc": ["body", "path"], "msg": "field required"}]}, 422)
            return
        playbook = state.playbooks.get(path)
        if playbook is None:
            self.reply({"detail": f"Playbook '{path}' not found"}, 404)
            return
        kind = body.get("resource_kind")
        if kind is not None and str(kind).strip().lower() not in ("playbook", "agent"):
            self.reply({"detail": f"Catalog kind '{kind}' is not executable"}, 422)
            return
        if kind is not None and (str(kind).strip().lower() == "agent") != (path in state.agents):
            self.reply({"detail": f"Executable catalog entry not found: {path}"}, 404)  # NoETL 4.26's kind filter
            return
        variables = body.get("workload") or body.get("payload") or {}
        execution = Execution(state.new_execution_id(), path, variables, resource_kind=kind)
        if isinstance(body.get("version"), int):
            execution.version = body["version"]
        state.executions[execution.execution_id] = execution
        task = asyncio.ensure_future(_run(playbook, PlaybookRun(state, execution)))
        execution.task = task
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
        self.reply({"execution_id": execution.execution_id, "status": "started", "commands_generated": 1})


async def _run(playbook: PlaybookFn, run: PlaybookRun) -> None:
    try:
        await playbook(run)
        if run.execution.status == "RUNNING":
            run.execution.status = "COMPLETED"
    except asyncio.CancelledError:
        run.execution.status = "CANCELLED"
        raise
    except Exception as exc:
        run.execution.status = "FAILED"
        run.execution.error = repr(exc)


class CatalogResourceHandler(_Handler):
    """``POST /api/catalog/resource {"catalog_id"}`` → the entry (NoETL 4.26's shape, content left out)."""

    def post(self) -> None:
        body = self.body if isinstance(self.body, dict) else {}
        try:
            catalog_id = int(str(body.get("catalog_id")))
        except ValueError:
            self.reply({"detail": "catalog_id must be an integer"}, 422)
            return
        path = self.state.catalog.get(catalog_id)
        if path is None:
            self.reply({"detail": f"Catalog entry not found: {catalog_id}"}, 404)
            return
        self.reply({"catalog_id": str(catalog_id), "path": path, "kind": "Playbook", "version": 1, "content": ""})


def execution_events(execution: Execution) -> list[dict[str, Any]]:
    """Events as NoETL 4.26 returns them: each keeps its step context, which holds the workload —
    sometimes as a JSON object, sometimes as JSON text in a string (and that text may nest more)."""
    workload = execution.variables
    return [
        {
            "event_id": f"{execution.execution_id}01",
            "event_type": "playbook_started",
            "node_name": execution.path,
            "status": "STARTED",
            "context": orjson.dumps({"workload": workload, "args": orjson.dumps(workload).decode()}).decode(),
        },
        {
            "event_id": f"{execution.execution_id}02",
            "event_type": "step_completed",
            "node_name": "start",
            "status": execution.status,
            "context": {"workload": workload},
            "result": execution.result,
        },
    ]


def initialized_event(execution: Execution) -> dict[str, Any]:
    """NoETL 4.26's first event: the workload the run started with, in ``context.result.workload``."""
    return {
        "execution_id": execution.execution_id,
        "event_id": int(f"{execution.execution_id}00"),
        "event_type": "playbook.initialized",
        "node_name": execution.path,
        "status": "INITIALIZED",
        "context": {
            "status": "initialized",
            "result": {"workload": execution.variables, "playbook_path": execution.path},
        },
    }


class ExecutionHandler(_Handler):
    def get(self, execution_id: str) -> None:
        if not execution_id.isdigit():
            self.reply({"detail": "invalid execution id"}, 500)  # what NoETL 4.26 does
            return
        execution = self.state.executions.get(execution_id)
        if execution is None:
            self.reply({"detail": "Execution not found"}, 404)
            return
        if self.get_argument("event_type", None) == "playbook.initialized":  # NoETL 4.26's event filter
            answer: dict[str, Any] = {
                "execution_id": execution.execution_id,
                "path": execution.path,
                "version": execution.version,
                "status": execution.status,
                "events": [initialized_event(execution)],
            }
            if self.state.detail_workload:
                answer["workload"] = execution.variables
            self.reply(answer)
            return
        self.reply(
            {
                "execution_id": execution.execution_id,
                "path": execution.path,
                "version": execution.version,
                "status": execution.status,
                "start_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(execution.created_at)),
                "end_time": None,
                "progress": 100 if execution.status in ("COMPLETED", "FAILED") else 50,
                "result": execution.result,
                "error": execution.error,
                "workload": execution.variables,
                "events": execution_events(execution),
            }
        )


class ExecutionStatusHandler(_Handler):
    """``/api/executions/{id}/status`` as NoETL 4.26 shapes it (completion may be only inferred)."""

    def get(self, execution_id: str) -> None:
        execution = self.state.executions.get(execution_id)
        if execution is None:
            self.reply({"detail": "Execution not found"}, 404)
            return
        done = execution.status in ("COMPLETED", "FAILED")
        self.reply(
            {
                "execution_id": execution.execution_id,
                "completed": done,
                "failed": execution.status == "FAILED",
                "completion_inferred": done and execution.completion_inferred,
                "current_step": execution.completed_steps[-1] if execution.completed_steps else None,
                "completed_steps": list(execution.completed_steps),
            }
        )


class ExecutionListHandler(_Handler):
    def get(self) -> None:
        full = self.get_argument("full", "false").lower() == "true"  # NoETL 4.26's list with workloads
        items: list[dict[str, Any]] = []
        for e in self.state.executions.values():
            item: dict[str, Any] = {"execution_id": e.execution_id, "path": e.path, "status": e.status}
            if full:
                item.update(workload=e.variables, result=e.result, events=execution_events(e))
            items.append(item)
        self.reply({"items": items, "total": len(items)})


class ExecutionEventsHandler(_Handler):
    """``/api/executions/{id}/events``, streamed event by event.

    ``?pad=N`` adds N more events (each ~3 KiB, each with the workload) for large answers;
    ``?split=key|escape|value`` sends an event with a ``callback_token`` in JSON text cut in two
    at that place, and sends the second half only once gate ``standin/events-split`` opens.
    Whole answers instead: gzip-encoded whatever was asked (``?gzip=1``), a 206 whatever was
    asked (``?partial=1``), or a 206 slice when a ``Range`` header arrives.
    """

    async def get(self, execution_id: str) -> None:
        execution = self.state.executions.get(execution_id)
        if execution is None:
            self.reply({"detail": "Execution not found"}, 404)
            return
        self.set_header("Content-Type", "application/json")
        whole = orjson.dumps({"execution_id": execution_id, "events": execution_events(execution)})
        if self.get_argument("partial", "0") == "1" or self.request.headers.get("Range", "").startswith("bytes="):
            self.set_status(206)
            self.set_header("Content-Range", f"bytes 30-{len(whole) - 1}/{len(whole)}")
            self.finish(whole[30:])
            return
        if self.get_argument("gzip", "0") == "1":
            self.set_header("Content-Encoding", "gzip")
            self.finish(gzip.compress(whole))
            return
        self.write(b'{"execution_id": "%s", "events": [' % execution_id.encode())
        events = execution_events(execution)
        pad = int(self.get_argument("pad", "0"))
        filler = "x" * 3000
        for n in range(pad):
            context = {"workload": execution.variables, "n": n, "filler": filler}
            events.append({"event_id": f"pad{n}", "event_type": "step_completed", "context": orjson.dumps(context)})
        pending = b""
        for n, event in enumerate(events):
            if isinstance(event.get("context"), bytes):
                event["context"] = event["context"].decode()
            pending += (b", " if n else b"") + orjson.dumps(event)
            if len(pending) >= 64 * 1024:
                self.write(pending)
                await self.flush()
                pending = b""
        split = self.get_argument("split", "")
        if split:
            token = str(execution.variables.get("callback_token", ""))
            context = orjson.dumps({"marker": "split-here", "callback_token": token}).decode()
            text = orjson.dumps({"event_id": "split", "context": context})
            at = text.index(token.encode())
            cut = {"key": text.index(b"callback_token") + 4, "escape": at - 1, "value": at + len(token) // 2}[split]
            self.write(pending + (b", " if events else b"") + text[:cut])
            await self.flush()
            pending = text[cut:]
            await self.state.gates.setdefault("standin/events-split", asyncio.Event()).wait()
        self.finish(pending + b"]}")


class RerunHandler(_Handler):
    """``POST /api/executions/{id}/rerun {workload, resource_kind}`` as the reference gateway expects it
    (no NoETL has it: 404 unless ``state.rerun_route``); the new run gets the original workload
    with ``workload`` merged over it."""

    def post(self, execution_id: str) -> None:
        state = self.state
        original = state.executions.get(execution_id)
        if not state.rerun_route:
            self.reply({"detail": "Not Found"}, 404)
            return
        if original is None:
            self.reply({"detail": f"Execution {execution_id} not found"}, 404)
            return
        body = self.body if isinstance(self.body, dict) else {}
        overrides = body.get("workload") if isinstance(body.get("workload"), dict) else {}
        variables = {**original.variables, **overrides}
        execution = Execution(state.new_execution_id(), original.path, variables, version=original.version)
        state.executions[execution.execution_id] = execution
        task = asyncio.ensure_future(_run(state.playbooks[original.path], PlaybookRun(state, execution)))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
        self.reply({"execution_id": execution.execution_id, "path": original.path, "status": "started"})


class ValidateSessionHandler(_Handler):
    def post(self) -> None:
        if not self.state.validate_api:
            self.reply({"detail": "Not Found"}, 404)
            return
        if self.state.validate_failure == "db_down":  # what NoETL 4.26 answers when its auth DB is down
            self.reply({"status": "error", "valid": False, "user": None, "error": "connection failed"})
            return
        if self.state.validate_failure == "no_credential":
            self.reply({"detail": "Credential not found"}, 404)
            return
        body = self.body if isinstance(self.body, dict) else {}
        record = self.state.sessions.get(str(body.get("session_token")))
        if record is None or not record.get("valid", True):
            self.reply(
                {
                    "status": "ok",
                    "valid": False,
                    "user": None,
                    "expires_at": None,
                    "error": "Session not found or expired",
                }
            )
            return
        self.reply(
            {"status": "ok", "valid": True, "user": record["user"], "expires_at": record["expires_at"], "error": None}
        )


class EchoHandler(_Handler):
    """Any other /api/* path: echo what arrived (the proxy's tests read it)."""

    def _echo(self, *args: Any) -> None:
        self.reply(
            {
                "method": self.request.method,
                "path": self.request.path,
                "query": self.request.query,
                "headers": dict(self.request.headers),
                "body_size": len(self.request.body or b""),
            }
        )

    get = post = put = patch = delete = _echo

    def head(self, *args: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish()


def make_standin_app(state: StandinState, extra_routes: list[Any] | None = None) -> Application:
    """The stand-in's Tornado application."""
    routes: list[Any] = [
        (r"/api/health", HealthHandler),
        (r"/api/execute", ExecuteHandler),
        (r"/api/catalog/resource", CatalogResourceHandler),
        (r"/api/executions", ExecutionListHandler),
        (r"/api/executions/([^/]+)", ExecutionHandler),
        (r"/api/executions/([^/]+)/status", ExecutionStatusHandler),
        (r"/api/executions/([^/]+)/events", ExecutionEventsHandler),
        (r"/api/executions/([^/]+)/rerun", RerunHandler),
        (r"/api/auth/session/validate", ValidateSessionHandler),
        *(extra_routes or []),
        (r"/api/(.*)", EchoHandler),
    ]
    return Application(routes, state=state)


def start_standin(port: int, state: StandinState, address: str = "127.0.0.1") -> HTTPServer:
    """Listen on ``address:port`` in the running loop."""
    from tests.standin.auth_api import AUTH_API_ROUTES
    from tests.standin.ingress_routes import INGRESS_ROUTES
    from tests.standin.proxy_routes import PROXY_ROUTES

    server = HTTPServer(
        make_standin_app(state, [*PROXY_ROUTES, *AUTH_API_ROUTES, *INGRESS_ROUTES]), max_body_size=1 << 40
    )
    server.listen(port, address=address)
    return server
