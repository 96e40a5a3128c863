"""What a test does with the UI fixture, in the words of a user (a tiny page object)."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Locator, Page, expect

from tests.browser.stack import UiStack


def open_ui(page: Page, stack: UiStack, mode: str = "") -> None:
    """``mode="subscription"``: runs are followed through the GraphQL subscription over graphql-ws."""
    page.goto(stack.page_url() + (f"&live={mode}" if mode else ""))
    expect(page.locator("#gateway-url")).to_have_text(stack.gateway_url)


def sign_in(page: Page, token: str, kind: str = "auth0") -> None:
    """Fill the login form and submit it."""
    page.fill("#token", token)
    page.check(f"input[name=kind][value={kind}]")
    page.click("#login-button")


def login(page: Page, stack: UiStack, token: str = "good-browser", mode: str = "") -> dict[str, Any]:
    """Open the UI, sign in, wait for the live stream; returns the stream's state."""
    open_ui(page, stack, mode)
    sign_in(page, token)
    expect(page.locator("#app-view")).to_be_visible()
    return wait_live(page)


def wait_live(page: Page) -> dict[str, Any]:
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "live")
    return stream(page)


def stream(page: Page) -> dict[str, Any]:
    """readyState, url, clientId, lastEventId, connects of the UI's EventSource."""
    return page.evaluate("window.noetlUI.stream()")


def session_storage(page: Page) -> dict[str, Any]:
    """The page's sessionStorage, where the UI keeps its session."""
    return page.evaluate("Object.fromEntries(Object.entries(sessionStorage))")


def run_playbook(page: Page, path: str, variables: str = '{"query": "Flights from SFO to JFK tomorrow"}') -> Locator:
    """Submit the execute form; returns the run's list item once the mutation answered."""
    page.fill("#playbook", path)
    page.fill("#variables", variables)
    before = page.locator("li.run").count()
    page.click("#execute-button")
    expect(page.locator("li.run")).to_have_count(before + 1)
    run = page.locator("li.run").first
    expect(run).not_to_have_attribute("data-execution-id", "")
    return run
