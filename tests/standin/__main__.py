"""Run the NoETL stand-in on its own: ``python -m tests.standin --port 8082 [--nats-url URL]``.

DEVELOPMENT STAND-IN — not NoETL. Used by the demo and by tests that run the gateway as a
separate process; never used by ``make run``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from tests.standin.server import StandinState, start_standin


async def serve(port: int, nats_url: str | None, address: str) -> None:
    state = StandinState(nats_url=nats_url)
    server = start_standin(port, state, address=address)
    print(f"NoETL stand-in (development only, NOT NoETL) listening on http://{address}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    await state.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--nats-url", default=None, help="for playbooks that answer over NATS")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.nats_url, args.address))


if __name__ == "__main__":
    main()
