"""Command line entry point: ``noetl-gateway`` / ``python -m gateway``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import secrets
import signal
import socket
import sys

from tornado.netutil import bind_sockets

from gateway.access.policy_file import load_route_policy
from gateway.app import make_app, make_server
from gateway.config import ConfigError, GatewayConfig, env_names, load_config
from gateway.ingress.listeners import load_listeners
from gateway.logging import setup_logging, stop_logging
from gateway.prefork import run_workers
from gateway.services import Services
from gateway.version import __version__
from schema.safelist import load_safelist

log = logging.getLogger("gateway.main")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="noetl-gateway",
        description="API gateway of the NoETL workflow platform. Configuration comes from the environment "
        "(and an optional TOML/YAML file named by GATEWAY_CONFIG); see README.md.",
        epilog="Environment variables: " + ", ".join(env_names()),
    )
    parser.add_argument("--port", type=int, help="HTTP port (overrides ROUTER_PORT)")
    parser.add_argument("--bind", help="bind address (overrides GATEWAY_BIND)")
    parser.add_argument(
        "--processes", type=int, help="worker processes sharing the port (overrides GATEWAY_PROCESSES; 0 = per core)"
    )
    parser.add_argument("--version", action="version", version=f"noetl-gateway {__version__}")
    return parser.parse_args(argv)


def listen_sockets(config: GatewayConfig, workers: int = 1) -> list[list[socket.socket]]:
    """Bind the port before forking: one set of listening sockets per worker.

    Several workers each get their own ``SO_REUSEPORT`` socket, so the kernel spreads new
    connections over them. With one shared socket the worker that wakes first accepts a whole
    burst: measured with wrk -c50 (bench/processes_bench.py), one of two workers got every
    connection. The supervisor keeps every socket open, so a restarted worker finds its own
    again, with the connections waiting in it.
    """
    try:
        if workers == 1:
            return [bind_sockets(config.router_port, address=config.gateway_bind, backlog=2048)]
        sets: list[list[socket.socket]] = []
        port = config.router_port
        for _ in range(workers):
            sockets = bind_sockets(port, address=config.gateway_bind, backlog=2048, reuse_port=True)
            port = sockets[0].getsockname()[1]  # ROUTER_PORT=0: every worker on the port the first got
            sets.append(sockets)
        return sets
    except OSError as exc:
        raise ConfigError(
            f"ROUTER_PORT: cannot listen on {config.gateway_bind}:{config.router_port} ({exc.strerror})"
        ) from None


async def serve(config: GatewayConfig, sockets: list[socket.socket]) -> None:
    """Run until SIGTERM/SIGINT, then stop gracefully."""
    # Handlers first: a SIGTERM during the NATS wait below must not be lost (PID 1 ignores
    # signals it has no handler for).
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    services = Services.create(config)
    app = make_app(config, services)
    server = make_server(app, config)
    # Connect NATS (bounded wait) before accepting: a worker that took a callback before its NATS
    # link was up could not forward it to the sibling that waits for it.
    await services.start()
    server.add_sockets(sockets)
    log.info(
        "noetl-gateway %s listening on %s:%d (NoETL %s)",
        __version__,
        config.gateway_bind,
        config.router_port,
        config.noetl_base_url,
    )
    await stop.wait()

    log.info("stopping: no new connections, closing streams, finishing in-flight requests")
    server.stop()
    await services.run_shutdown_hooks()
    if not await services.wait_idle(config.gateway_shutdown_grace_secs):
        log.warning(
            "%d request(s) still running after %.0fs; closing them",
            services.inflight,
            config.gateway_shutdown_grace_secs,
        )
    try:
        await asyncio.wait_for(server.close_all_connections(), 2.0)
    except TimeoutError:
        pass
    await services.close()
    log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    """Parse, configure, serve. A bad configuration is one line on stderr and exit code 2."""
    args = parse_args(argv)
    env = dict(os.environ)
    if args.port is not None:
        env["ROUTER_PORT"] = str(args.port)
    if args.bind:
        env["GATEWAY_BIND"] = args.bind
    if args.processes is not None:
        env["GATEWAY_PROCESSES"] = str(args.processes)
    try:
        config = load_config(env)
        load_route_policy(config)  # a bad GATEWAY_ROUTE_POLICY stops start-up here, naming the line
        load_listeners(config)  # so does a bad GATEWAY_INGRESS_CONFIG (or a listener secret that is not set)
        if config.gateway_graphql_safelist:  # a bad manifest stops start-up here, naming the file
            load_safelist(config.gateway_graphql_safelist)
    except ConfigError as exc:
        print(f"noetl-gateway: invalid configuration: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.gateway_log_format, config.gateway_log_level)
    skip_unused_record_fields()
    processes = config.gateway_processes or os.cpu_count() or 1
    if processes > 1 and not config.nats_enabled:
        print(
            "noetl-gateway: invalid configuration: GATEWAY_PROCESSES: more than one process needs NATS "
            "(NATS_URL is empty; in-process state cannot be shared between processes)",
            file=sys.stderr,
        )
        return 2
    try:
        socket_sets = listen_sockets(config, processes)
    except ConfigError as exc:
        print(f"noetl-gateway: {exc}", file=sys.stderr)
        return 2
    if processes == 1:
        return run_one(config, socket_sets[0])
    if not config.gateway_callback_secret:
        # One key for all workers, or a callback reaching a sibling would be refused.
        config = config.model_copy(update={"gateway_callback_secret": secrets.token_urlsafe(48)})
    every_socket = [sock for sockets in socket_sets for sock in sockets]

    def worker(index: int) -> int:
        for sock in every_socket:  # a worker listens on its own sockets only
            if sock not in socket_sets[index]:
                sock.close()
        return run_one(config, socket_sets[index])

    return run_workers(processes, every_socket, worker)


def skip_unused_record_fields() -> None:
    """Log records without caller, thread and process fields, which no gateway format prints.

    The logging HOWTO's own switches ("Optimization"); they save the stack walk and lookups
    behind every access-log line. Set here, not in setup_logging(): tests keep caller info.
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def tune_gc() -> None:
    """Fewer full collections: with 10k SSE streams each one stalls the loop for ~1 s.

    Measured (bench/sse_bench.py, 10k clients, one callback each): 20.9 s with the default
    thresholds, 10.2 s with these. ``freeze()`` keeps start-up objects out of every collection.
    """
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def run_one(config: GatewayConfig, sockets: list[socket.socket]) -> int:
    """Serve in this process until stopped."""
    tune_gc()
    try:
        asyncio.run(serve(config, sockets))
    except KeyboardInterrupt:
        pass
    finally:
        stop_logging()  # the lines of the graceful stop reach the log (a forked worker ends in os._exit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
