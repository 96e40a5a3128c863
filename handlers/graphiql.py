"""The GraphiQL page served at ``GET /graphql`` (``Accept: text/html``) and its files.

Everything the page loads comes from this gateway: GraphiQL, React, ReactDOM and the
``graphql-ws`` client are vendored from npm into ``handlers/static/graphiql/`` (pinned in the
``package.json`` + ``package-lock.json`` there; ``make graphiql`` refreshes them) and served
under ``/graphql/assets/``. So the page works offline, behind a corporate proxy and under a
strict Content-Security-Policy that allows only ``'self'`` (plus ``data:`` for the fonts and
icons embedded in GraphiQL's own stylesheet). The page holds no data; every operation it sends is
authenticated like any other (the ``session_token`` cookie, or an ``Authorization`` header set
in GraphiQL's headers tab).
"""

from __future__ import annotations

import functools
import hashlib
from http.client import responses
from pathlib import Path
from typing import Any

import orjson
from tornado.web import HTTPError, StaticFileHandler

ASSET_DIR = Path(__file__).resolve().parent / "static" / "graphiql"
SCRIPTS = ("react.production.min.js", "react-dom.production.min.js", "graphiql.min.js", "graphql-ws.min.js", "start.js")
STYLES = ("graphiql.min.css", "page.css")
SERVED = frozenset((*SCRIPTS, *STYLES))

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>noetl-gateway GraphiQL</title>
{styles}
</head>
<body>
<div id="graphiql">Loading GraphiQL&hellip;</div>
<noscript>GraphiQL needs JavaScript. Without it, send operations with any HTTP client
(POST JSON to this URL).</noscript>
{scripts}
</body>
</html>
"""


@functools.cache
def asset_versions() -> dict[str, str]:
    """Content hash of each served file: the ``?v=`` that lets browsers keep it for a year."""
    return {name: hashlib.sha256((ASSET_DIR / name).read_bytes()).hexdigest()[:16] for name in sorted(SERVED)}


def assets_prefix(page_path: str) -> str:
    """Where the files are, relative to the page: works behind an ingress that strips a path prefix."""
    return "assets/" if page_path.endswith("/") else "graphql/assets/"


def render_page(page_path: str) -> str:
    """The HTML page: no inline script or style, so the CSP needs no nonce."""
    prefix = assets_prefix(page_path)
    versions = asset_versions()
    styles = "\n".join(f'<link rel="stylesheet" href="{prefix}{name}?v={versions[name]}">' for name in STYLES)
    scripts = "\n".join(f'<script src="{prefix}{name}?v={versions[name]}"></script>' for name in SCRIPTS)
    return _PAGE.format(styles=styles, scripts=scripts)


def content_security_policy() -> str:
    """Only this origin: scripts, styles, requests (HTTP and the graphql-ws WebSocket); no framing."""
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "font-src 'self' data:",
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


class GraphiQLAssetHandler(StaticFileHandler):
    """The vendored files (and nothing else of that folder); cached for a year when versioned."""

    route_name = "graphiql"

    def set_default_headers(self) -> None:
        """No MIME sniffing: a script is only ever run as the type it was served with."""
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cross-Origin-Resource-Policy", "same-origin")

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        """Serve only the files the page uses (not package.json, the lock file, licences, scripts)."""
        if self.path not in SERVED:
            raise HTTPError(404)
        return super().validate_absolute_path(root, absolute_path)

    def get_cache_time(self, path: str, modified: Any, mime_type: str) -> int:
        """A year for ``?v=<content hash>`` (a new file gets a new URL); otherwise revalidate."""
        return self.CACHE_MAX_AGE if self.get_query_argument("v", "") == asset_versions().get(path) else 0

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """JSON like every other error of the gateway."""
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps({"error": responses.get(status_code, "Error")}))
