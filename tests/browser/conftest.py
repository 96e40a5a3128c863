"""Fixtures of the browser tests: headless Debian Chromium driven by Playwright (sync API).

No browser is downloaded: Playwright drives /usr/bin/chromium (``make test`` installs it with
apt-get when missing). A missing browser or Playwright is a skip on a developer machine and a
failure in CI (CI=true), like a missing nats-server.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.stack import UiStack
from tests.support.missing import fail_in_ci_else_skip
from tests.support.nats_server import NatsServer, require_binary

try:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


def chromium_binary() -> str | None:
    """Debian's chromium (apt-get install chromium), never a Playwright download."""
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if sync_playwright is None:
        message = "playwright (Python package) not installed (run `make test`, which installs it)"
        fail_in_ci_else_skip(message)
    require_binary("chromium", chromium_binary())
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One headless Chromium per module; each test gets its own context (fresh storage).

    ``launch`` starts Chromium on an empty user-data dir of its own and deletes it on close.
    """
    launched = playwright.chromium.launch(executable_path=chromium_binary(), headless=True, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture(scope="module")
def ui_stack(nats_server: NatsServer, artifacts: Path) -> Iterator[UiStack]:
    stack = UiStack(nats_server.url, artifacts).start()
    yield stack
    stack.stop()


class PageErrors(list[str]):
    """Uncaught errors of the page's JavaScript; a test ends with none."""


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1100, "height": 900})
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A page whose uncaught JavaScript errors fail the test."""
    errors = PageErrors()
    opened = context.new_page()
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    assert not errors, f"uncaught errors in the page: {errors}"
