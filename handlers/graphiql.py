"""The GraphiQL page served at ``GET /graphql`` (``Accept: text/html``).

GraphiQL (3.5 MB of JavaScript) is loaded from unpkg at pinned versions with Subresource
Integrity, so a tampered CDN file is refused by the browser. Without internet access the
page falls back to a small built-in editor (query, variables, token, run) that needs no
external file. The page holds no data; every operation it sends is authenticated like
any other (the ``session_token`` cookie, or an ``Authorization`` header set in
GraphiQL's headers tab).
"""

from __future__ import annotations

import secrets

CDN = "https://unpkg.com"
ASSETS = {
    "react": (
        f"{CDN}/react@18.3.1/umd/react.production.min.js",
        "sha384-DGyLxAyjq0f9SPpVevD6IgztCFlnMF6oW/XQGmfe+IsZ8TqEiDrcHkMLKI6fiB/Z",
    ),
    "react-dom": (
        f"{CDN}/react-dom@18.3.1/umd/react-dom.production.min.js",
        "sha384-gTGxhz21lVGYNMcdJOyq01Edg0jhn/c22nsx0kyqP0TxaV5WVdsSH1fSDUf5YJj1",
    ),
    "graphiql": (
        f"{CDN}/graphiql@3.8.3/graphiql.min.js",
        "sha384-HbRVEFG0JGJZeAHCJ9Xm2+tpknBQ7QZmNlO/DgZtkZ0aJSypT96YYGRNod99l9Ie",
    ),
    "graphiql-css": (
        f"{CDN}/graphiql@3.8.3/graphiql.min.css",
        "sha384-Mq3vbRBY71jfjQAt/DcjxUIYY33ksal4cgdRt9U/hNPvHBCaT2JfJ/PTRiPKf0aM",
    ),
}

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>noetl-gateway GraphiQL</title>
<link rel="stylesheet" href="{css_url}" integrity="{css_sri}" crossorigin="anonymous">
<style nonce="{nonce}">
  html, body, #graphiql {{ height: 100%; margin: 0; }}
  #fallback {{ font-family: system-ui, sans-serif; padding: 1rem; max-width: 60rem; }}
  #fallback textarea, #fallback input {{ width: 100%; font-family: monospace; box-sizing: border-box; }}
  #fallback pre {{ background: #f4f4f4; padding: .5rem; white-space: pre-wrap; }}
</style>
</head>
<body>
<div id="graphiql"></div>
<script src="{react_url}" integrity="{react_sri}" crossorigin="anonymous"></script>
<script src="{react_dom_url}" integrity="{react_dom_sri}" crossorigin="anonymous"></script>
<script src="{graphiql_url}" integrity="{graphiql_sri}" crossorigin="anonymous"></script>
<script nonce="{nonce}">
(function () {{
  var endpoint = window.location.pathname;
  function fallback() {{
    var root = document.getElementById("graphiql");
    root.id = "fallback";
    var title = document.createElement("h1");
    title.textContent = "noetl-gateway GraphQL";
    var note = document.createElement("p");
    note.textContent = "GraphiQL could not be loaded from {cdn} (offline?). " +
      "This minimal editor posts to " + endpoint + ".";
    function field(label, tag, rows, value) {{
      var wrap = document.createElement("p");
      var caption = document.createElement("label");
      caption.textContent = label;
      var input = document.createElement(tag);
      if (rows) {{ input.rows = rows; }}
      input.value = value;
      wrap.appendChild(caption); wrap.appendChild(document.createElement("br")); wrap.appendChild(input);
      root.appendChild(wrap);
      return input;
    }}
    root.appendChild(title); root.appendChild(note);
    var query = field("Query", "textarea", 10, "{{ health version me {{ email roles }} }}");
    var variables = field("Variables (JSON object)", "textarea", 4, "{{}}");
    var token = field("Session token (empty: use the session_token cookie)", "input", 0, "");
    var run = document.createElement("button");
    run.textContent = "Run";
    var output = document.createElement("pre");
    root.appendChild(run); root.appendChild(output);
    run.addEventListener("click", function () {{
      var vars;
      try {{ vars = variables.value.trim() ? JSON.parse(variables.value) : null; }}
      catch (e) {{ output.textContent = "Variables are not valid JSON: " + e.message; return; }}
      var headers = {{ "Content-Type": "application/json", "Accept": "application/json" }};
      if (token.value.trim()) {{ headers["Authorization"] = "Bearer " + token.value.trim(); }}
      fetch(endpoint, {{ method: "POST", headers: headers, credentials: "same-origin",
                        body: JSON.stringify({{ query: query.value, variables: vars }}) }})
        .then(function (r) {{ return r.text(); }})
        .then(function (text) {{
          try {{ output.textContent = JSON.stringify(JSON.parse(text), null, 2); }}
          catch (e) {{ output.textContent = text; }}
        }})
        .catch(function (e) {{ output.textContent = "Request failed: " + e; }});
    }});
  }}
  function start() {{
    if (!(window.React && window.ReactDOM && window.GraphiQL)) {{ fallback(); return; }}
    var fetcher = window.GraphiQL.createFetcher({{ url: endpoint }});
    var root = window.ReactDOM.createRoot(document.getElementById("graphiql"));
    var props = {{ fetcher: fetcher, defaultEditorToolsVisibility: true }};
    root.render(window.React.createElement(window.GraphiQL, props));
  }}
  if (document.readyState === "complete") {{ start(); }} else {{ window.addEventListener("load", start); }}
}})();
</script>
</body>
</html>
"""


def new_nonce() -> str:
    """A fresh CSP nonce for one page."""
    return secrets.token_urlsafe(18)


def render_page(nonce: str) -> str:
    """The HTML page; ``nonce`` must match the Content-Security-Policy header."""
    return _PAGE.format(
        nonce=nonce,
        cdn=CDN,
        css_url=ASSETS["graphiql-css"][0],
        css_sri=ASSETS["graphiql-css"][1],
        react_url=ASSETS["react"][0],
        react_sri=ASSETS["react"][1],
        react_dom_url=ASSETS["react-dom"][0],
        react_dom_sri=ASSETS["react-dom"][1],
        graphiql_url=ASSETS["graphiql"][0],
        graphiql_sri=ASSETS["graphiql"][1],
    )


def content_security_policy(nonce: str) -> str:
    """Scripts only from the pinned CDN files and this page's nonce; requests only to us."""
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src 'nonce-{nonce}' {CDN}",
            f"style-src 'self' 'unsafe-inline' {CDN}",
            f"font-src 'self' data: {CDN}",
            f"img-src 'self' data: {CDN}",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
