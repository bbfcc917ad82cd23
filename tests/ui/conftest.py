"""Browser tests of the web UI: a real ``pyworkflow serve`` and Debian's Chromium via Playwright.

One server and one browser for the tests of this package (SQLite in a temp dir,
an API token, the server's embedded worker running ``tests.ui.ui_flows``), a
fresh browser context per test. Package scope, not session: Playwright's sync
API keeps its event loop marked running in the main thread while it is open,
and PyWorkflow's sync API (which later tests of a whole-suite session call)
refuses to run under a running loop. The test process starts runs through the
client on the same SQLite file (``embedded_worker=False``: the server's worker
runs them), from a thread of its own (``support.Client``).

Locally a missing Chromium or Playwright skips with the command to install it;
under ``CI=true`` it fails.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import pyworkflow
from tests.ui.support import Client, Served, serve, session_cookie

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

CHROMIUM = os.environ.get("PYWORKFLOW_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "ui-tests-token-5f0c2a7d9e1b4c3a"
#: Generous: the machine has 2 cores and other tests may be running.
WAIT_MS = 30_000


def _missing_browser() -> str | None:
    """What this machine lacks to run the browser tests, if anything."""
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"{CHROMIUM} is missing (Debian: apt-get install -y chromium)"
    return None


LACKS = _missing_browser()
if (
    LACKS is not None
    and importlib.util.find_spec("playwright") is None
    and not os.environ.get("CI")
):
    # the test modules import playwright: without it they are not collected (see the header)
    collect_ignore_glob = ["test_*.py"]


def pytest_report_header() -> str | None:
    if LACKS is None:
        return None
    return f"browser tests (tests/ui): {LACKS}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "browser: drives Debian's Chromium with Playwright (skipped if missing, "
        "a failure under CI=true)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="package")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``python -m pyworkflow serve`` with a token and its embedded worker, on a free port."""
    directory = tmp_path_factory.mktemp("ui-server")
    storage = f"sqlite:///{directory / 'pw.db'}"
    with serve(directory, storage, TOKEN) as served:
        yield served


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, one per session (never a Playwright-downloaded one)."""
    if LACKS is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests cannot run: {LACKS}")
        pytest.skip(LACKS)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Browser, served: Served) -> Iterator[BrowserContext]:
    """A fresh browser context (no cookies) at 1280x800."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=served.url)
    ctx.set_default_timeout(WAIT_MS)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    """A page of a context that is not signed in."""
    return context.new_page()


@pytest.fixture
def signed_in(context: BrowserContext, served: Served) -> Page:
    """A page whose context carries the session cookie the login form sets."""
    host = served.url.split("//", 1)[1].split(":", 1)[0]
    context.add_cookies(
        [
            {
                "name": "pyworkflow_ui",
                "value": session_cookie(served.token),
                "domain": host,
                "path": "/ui",
                "httpOnly": True,
                "sameSite": "Strict",
            }
        ]
    )
    return context.new_page()


@pytest.fixture
def client(served: Served) -> Iterator[Client]:
    """The client API on the server's storage (this process runs no worker)."""
    pyworkflow.configure(storage=served.storage, embedded_worker=False)
    runs = Client(served)
    try:
        yield runs
    finally:
        runs.close()
