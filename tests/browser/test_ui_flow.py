"""The UI fixture in headless Chromium against a real gateway process, the stand-in and NATS.

The UI is served from http://127.0.0.1:<p1>, the gateway is http://localhost:<p2>: another
origin, so every call is a real cross-origin request the browser checks.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.png import distinct_colours
from tests.browser.stack import UiStack, eventually, http_json
from tests.browser.ui import login, open_ui, run_playbook, session_storage, sign_in, stream, wait_live
from tests.standin.playbooks import PROGRESS_RESULT

ROOT = Path(__file__).resolve().parents[2]
DOCS_SCREENSHOT = ROOT / "docs" / "images" / "ui-result.png"
CLOSED = 2  # EventSource.CLOSED

FETCH_LOGIN = """async (gateway) => {
  try {
    const response = await fetch(gateway + "/api/auth/login", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({auth0_token: "good-cors"}),
    });
    const body = await response.json();
    return "status " + response.status + " " + body.status;
  } catch (error) {
    return "refused " + error.name;
  }
}"""


def test_cors_allows_the_ui_origin_and_the_browser_refuses_another(page: Page, ui_stack: UiStack) -> None:
    open_ui(page, ui_stack)
    assert page.evaluate(FETCH_LOGIN, ui_stack.gateway_url) == "status 200 authenticated"

    assert ui_stack.standin.state is not None
    logins = len(ui_stack.standin.state.calls_to("/api/execute"))
    page.goto(ui_stack.page_url(ui_stack.stranger))  # same UI, an origin not in CORS_ALLOWED_ORIGINS
    assert page.evaluate(FETCH_LOGIN, ui_stack.gateway_url) == "refused TypeError"
    sign_in(page, "good-stranger")
    expect(page.locator("#login-error")).to_contain_text("Cannot reach the gateway")
    expect(page.locator("#app-view")).to_be_hidden()
    # The preflight got no Access-Control-Allow-Origin: the browser never sent the POST.
    assert len(ui_stack.standin.state.calls_to("/api/execute")) == logins


def test_login_keeps_the_session_in_the_page_and_a_reload_resumes_the_stream(
    page: Page, context: BrowserContext, ui_stack: UiStack
) -> None:
    first = login(page, ui_stack, "good-browser")
    expect(page.locator("#user")).to_have_text("alice@example.com")
    stored = session_storage(page)
    token = stored["noetl.session"]
    assert '"token":"sess_' in token
    assert stored["noetl.clientId"] == first["clientId"]
    assert "session_token=sess_" in first["url"]

    page.reload()  # the tab keeps its session: validate, then the same SSE client again
    again = wait_live(page)
    assert again["clientId"] == first["clientId"]
    assert f"client_id={first['clientId']}" in again["url"]

    # A session token (e.g. from another tab) signs in through /api/auth/validate.
    session_token = re.search(r'"token":"([^"]+)"', token).group(1)  # type: ignore[union-attr]
    other = context.browser.new_context()  # type: ignore[union-attr]
    try:
        second = other.new_page()
        open_ui(second, ui_stack)
        sign_in(second, session_token, kind="session")
        wait_live(second)
        expect(second.locator("#user")).to_have_text("alice@example.com")
        sign_in_rejected = other.new_page()
        open_ui(sign_in_rejected, ui_stack)
        sign_in(sign_in_rejected, "reject-this-token")
        expect(sign_in_rejected.locator("#login-error")).to_have_text("Auth0 token rejected")
        sign_in(sign_in_rejected, "sess_not_a_real_session", kind="session")
        expect(sign_in_rejected.locator("#login-error")).to_have_text("Session is invalid or expired")
    finally:
        other.close()


def test_execute_shows_live_progress_then_the_result(page: Page, ui_stack: UiStack, artifacts: Path) -> None:
    login(page, ui_stack)
    ui_stack.standin.close_gate(PROGRESS_RESULT)
    try:
        run = run_playbook(page, PROGRESS_RESULT)
        expect(run.locator(".steps")).to_have_text("start: working")
        expect(run.locator(".badge")).to_have_text("RUNNING")
        assert run.locator("progress").evaluate("bar => bar.value") == 0.5
        expect(run.locator("pre.result")).to_be_hidden()
    finally:
        ui_stack.standin.open_gate(PROGRESS_RESULT)
    expect(run.locator(".badge")).to_have_text("COMPLETED")
    expect(run.locator("pre.result")).to_contain_text('"answer": 42')
    expect(run.locator("pre.result")).to_contain_text('"query": "Flights from SFO to JFK tomorrow"')
    expect(run.locator("pre.result")).not_to_contain_text("callback_token")

    page.click("#refresh-executions")  # so the picture shows every panel
    expect(
        page.locator(f"#executions tr[data-execution-id='{run.get_attribute('data-execution-id')}']")
    ).to_be_visible()
    shot = artifacts / "ui-result.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    assert distinct_colours(shot) > 50, "the result screenshot looks blank"
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1" or not DOCS_SCREENSHOT.exists():
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)


def test_subscribe_mode_follows_a_run_over_graphql_ws_from_another_origin(page: Page, ui_stack: UiStack) -> None:
    """The npm graphql-ws client's browser bundle (the vendored one), on the UI's own origin:
    the WebSocket handshake passes the Origin check, and the run's progress and result arrive
    through playbookEvents (the page ignores the event stream's copies in this mode)."""
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    login(page, ui_stack, mode="subscription")
    assert page.evaluate("window.noetlUI.subscribe") is True
    ui_stack.standin.close_gate(PROGRESS_RESULT)
    try:
        run = run_playbook(page, PROGRESS_RESULT)
        expect(run.locator(".steps")).to_have_text("start: working")
        expect(run.locator(".badge")).to_have_text("RUNNING")
    finally:
        ui_stack.standin.open_gate(PROGRESS_RESULT)
    expect(run.locator(".badge")).to_have_text("COMPLETED")
    expect(run.locator("pre.result")).to_contain_text('"answer": 42')
    expect(page.locator("#execute-error")).to_have_text("")
    assert sockets == [ui_stack.gateway_url.replace("http", "ws", 1) + "/graphql"]


def test_executions_panel_lists_through_the_proxy(page: Page, ui_stack: UiStack) -> None:
    login(page, ui_stack, "good:carol@example.com")
    run = run_playbook(page, PROGRESS_RESULT)
    execution_id = run.get_attribute("data-execution-id")
    expect(run.locator(".badge")).to_have_text("COMPLETED")
    assert ui_stack.standin.state is not None
    listed_before = len(ui_stack.standin.state.calls_to("/api/executions", "GET"))

    page.click("#refresh-executions")
    row = page.locator(f"#executions tr[data-execution-id='{execution_id}']")
    expect(row).to_contain_text(PROGRESS_RESULT)
    expect(row).to_contain_text("COMPLETED")
    calls = ui_stack.standin.state.calls_to("/api/executions", "GET")
    assert len(calls) == listed_before + 1
    headers = {k.lower(): v for k, v in calls[-1].headers.items()}
    assert headers["x-noetl-user-email"] == "carol@example.com"  # added by the gateway
    assert "authorization" not in headers  # the session token stays at the gateway


def test_logout_closes_the_stream_and_ends_the_session(page: Page, ui_stack: UiStack) -> None:
    login(page, ui_stack, "good-logout")
    token = re.search(r'"token":"([^"]+)"', session_storage(page)["noetl.session"]).group(1)  # type: ignore[union-attr]
    eventually(lambda: ui_stack.metric("gateway_sse_clients") == 1, what="one open stream at the gateway")

    page.click("#logout")
    expect(page.locator("#login-view")).to_be_visible()
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "closed")
    assert stream(page)["readyState"] == CLOSED
    assert session_storage(page) == {}
    eventually(lambda: ui_stack.metric("gateway_sse_clients") == 0, what="the gateway saw the stream close")
    status, answer = http_json("POST", f"{ui_stack.direct_url}/api/auth/validate", {"session_token": token})
    assert (status, answer["valid"]) == (200, False)


def test_sse_unauthorized_error_returns_to_login(page: Page, ui_stack: UiStack) -> None:
    login(page, ui_stack, "good-elsewhere")
    token = re.search(r'"token":"([^"]+)"', session_storage(page)["noetl.session"]).group(1)  # type: ignore[union-attr]

    # The session is logged out somewhere else: the gateway ends the stream with error -32002.
    status, _ = http_json("POST", f"{ui_stack.direct_url}/api/auth/logout", {"session_token": token})
    assert status == 200
    expect(page.locator("#login-view")).to_be_visible()
    expect(page.locator("#login-error")).to_have_text("Session logged out")
    state = stream(page)
    assert state["readyState"] == CLOSED and state["url"] is None  # no reconnect attempt
    assert session_storage(page) == {}


def test_result_of_a_run_started_before_a_gateway_restart_still_arrives(
    page: Page, context: BrowserContext, ui_stack: UiStack
) -> None:
    before = login(page, ui_stack, "good-restart")
    results_sent = len(ui_stack.standin.callback_replies("/api/internal/callback/async"))
    ui_stack.standin.close_gate(PROGRESS_RESULT)
    try:
        run = run_playbook(page, PROGRESS_RESULT)
        expect(run.locator(".steps")).to_have_text("start: working")
        seen = stream(page)["lastEventId"]

        ui_stack.stop_gateway()  # SIGTERM: the stream gets its retry hint and ends
        expect(page.locator("#stream-status")).to_have_attribute("data-state", "reconnecting")
        context.set_offline(True)  # keep the page away until the result is parked in NATS
        ui_stack.restarts += 1
        ui_stack.start_gateway()  # same port, same NATS, same callback secret
    finally:
        ui_stack.standin.open_gate(PROGRESS_RESULT)

    # Nobody holds the client now: the new process answers "queued" and keeps the result.
    replies = eventually(
        lambda: ui_stack.standin.callback_replies("/api/internal/callback/async")[results_sent:], what="result sent"
    )
    assert replies == [(202, {"status": "queued", "clientDisconnected": True})]
    expect(run.locator(".badge")).to_have_text("RUNNING")

    context.set_offline(False)
    after = wait_live(page)
    expect(run.locator(".badge")).to_have_text("COMPLETED")
    expect(run.locator("pre.result")).to_contain_text('"answer": 42')
    assert after["clientId"] == before["clientId"]
    assert after["connects"] >= 2
    assert f"client_id={before['clientId']}" in after["url"]
    assert f"last_event_id={seen}" in after["url"]


def test_the_blank_check_sees_a_blank_screenshot(page: Page, artifacts: Path) -> None:
    """The screenshot check above would catch a blank page (the detector itself works)."""
    page.set_content("<body style='margin:0;background:#ffffff'></body>")
    shot = artifacts / "blank.png"
    page.screenshot(path=str(shot), full_page=True)
    assert distinct_colours(shot) == 1
