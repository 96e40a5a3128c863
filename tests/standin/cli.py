"""Command line of the NoETL stand-in (tests, the demo): serve until SIGTERM/SIGINT.

DEVELOPMENT STAND-IN — not NoETL; never used by ``make run``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from tests.standin.server import PlaybookFn, StandinState, start_standin


async def serve(port: int, nats_url: str | None, address: str, playbooks: dict[str, PlaybookFn] | None = None) -> None:
    """Listen until a stop signal; ``playbooks`` are added to the scripted defaults."""
    state = StandinState(nats_url=nats_url)
    state.playbooks.update(playbooks or {})
    server = start_standin(port, state, address=address)
    print(f"NoETL stand-in (development only, NOT NoETL) listening on http://{address}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    await state.close()


def main(description: str, playbooks: dict[str, PlaybookFn] | None = None) -> None:
    """Parse ``--port/--address/--nats-url`` and serve."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--nats-url", default=None, help="for playbooks that answer over NATS")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.nats_url, args.address, playbooks))
