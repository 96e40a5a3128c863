"""A standard-library HTTP server on a daemon thread: the small servers tests run beside the
gateway (the stand-in Auth0 issuer's JWKS, the UI's static origin, the OTLP trace receiver)."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Any, Self


class ThreadedHttpServer:
    """``handler`` served on ``host:port`` (``port=0``: a free one) until ``stop()``."""

    def __init__(self, handler: Any, host: str = "127.0.0.1", port: int = 0, name: str = "http") -> None:
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.host = host
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"{name}-{self.port}", daemon=True)

    def start(self) -> Self:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
