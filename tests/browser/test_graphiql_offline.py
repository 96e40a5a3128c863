"""GraphiQL in headless Chromium with no network beyond the gateway: every request that leaves
loopback is aborted, and the page must still render, load the schema and run a query — under the
page's own Content-Security-Policy, with no violation reported."""

from __future__ import annotations

from urllib.parse import urlparse

from playwright.sync_api import BrowserContext, Page, Request, Route, expect

from tests.browser.stack import UiStack, http_json

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""
SET_QUERY = """(text) => {
  document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.setValue(text);
}"""


def test_graphiql_renders_and_runs_a_query_offline_under_a_self_only_csp(
    page: Page, context: BrowserContext, ui_stack: UiStack
) -> None:
    status, answer = http_json("POST", f"{ui_stack.direct_url}/api/auth/login", {"auth0_token": "good-graphiql"})
    assert status == 200, answer
    context.add_cookies([{"name": "session_token", "value": answer["session_token"], "url": ui_stack.direct_url}])

    blocked: list[str] = []

    def only_loopback(route: Route) -> None:
        if urlparse(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_loopback)
    context.add_init_script(RECORD_CSP_VIOLATIONS)
    requested: list[Request] = []
    page.on("request", lambda request: requested.append(request))

    response = page.goto(f"{ui_stack.direct_url}/graphql")
    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "http" not in csp

    expect(page.locator(".graphiql-container")).to_be_visible()
    expect(page.locator(".graphiql-execute-button")).to_be_visible()
    # The schema arrived through introspection (the doc explorer can list the root types).
    introspection = [r for r in requested if r.method == "POST" and "__schema" in (r.post_data or "")]
    assert introspection, [r.url for r in requested]
    assert introspection[0].response() is not None and introspection[0].response().status == 200  # type: ignore[union-attr]

    page.evaluate(SET_QUERY, "{ health me { email } }")
    page.locator(".graphiql-execute-button").click()
    result = page.locator(".graphiql-response")
    expect(result).to_contain_text('"health": "ok"')
    expect(result).to_contain_text('"email": "alice@example.com"')

    assert blocked == [], f"the page tried to leave loopback: {blocked}"
    assert page.evaluate("window.__cspViolations") == []
    origins = {f"{urlparse(r.url).scheme}://{urlparse(r.url).netloc}" for r in requested if r.url.startswith("http")}
    assert origins == {ui_stack.direct_url}, origins
