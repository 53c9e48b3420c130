"""Fixtures of the browser tests: a real ASGI server (uvicorn, as `make run`; tests/support/live_server.py),
headless Chromium, pages that fail the test on any JavaScript error.

The server is a separate process against the test database, so the tests use
``transactional_db`` (what a test writes must be committed for the server to see it).
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.live_server import ASYNC_UNSAFE, AsgiServer
from tests.support.live_server import tail as _tail

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = ROOT / "var" / "e2e"
#: Playwright's sync API keeps its event loop "running" in this thread (it lives in a
#: greenlet), and Django refuses ORM calls from a thread with a running loop. The loop is
#: suspended while test code runs, so the ORM calls are safe; the flag says so to Django,
#: for the browser tests only, and is kept out of the server and worker processes
#: (ASYNC_UNSAFE, tests/support/live_server.py).


def password_of(username: str) -> str:
    """The password `tests.conftest.make_user` gives a user."""
    return "pw-" + username + "-123!"


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch):
    monkeypatch.setenv(ASYNC_UNSAFE, "true")


@pytest.fixture(autouse=True)
def fast_password_hashing():
    """Overrides the fixture of tests/conftest.py: keep the real password hashers here.

    Users made by the tests log in through the server, which only knows the real
    hashers, so an MD5 hash written by the test process could never be checked there.
    """


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the server's and the workers' logs to a failed (or erroring) browser test."""
    report = yield
    if report.failed:
        for title, path in getattr(item, "_e2e_logs", {}).items():
            report.sections.append((title, _tail(path)))
    return report


def _remember_log(request, title: str, path: Path) -> None:
    logs = getattr(request.node, "_e2e_logs", None)
    if logs is None:
        logs = request.node._e2e_logs = {}
    logs[title] = path


# --- The server -----------------------------------------------------------------------------


@pytest.fixture
def asgi_server(transactional_db, request):
    server = AsgiServer()
    _remember_log(request, "uvicorn log (tail)", server.log_path)
    try:
        server.wait_until_healthy()
        yield server
    finally:
        server.stop()


@pytest.fixture
def start_worker(start_worker, request):
    """The real RQ worker of tests/conftest.py, without the flag above, its log kept for reports."""

    def start():
        saved = os.environ.pop(ASYNC_UNSAFE, None)
        try:
            worker = start_worker()
        finally:
            if saved is not None:
                os.environ[ASYNC_UNSAFE] = saved
        _remember_log(request, f"worker log {worker.proc.pid} (tail)", worker.log_path)
        return worker

    return start


# --- The browser ----------------------------------------------------------------------------


@pytest.fixture(scope="package")
def browser():
    """Headless Chromium for all browser tests of this package.

    Package scope, not session: while Playwright runs, its event loop counts as running in
    this thread, which would make Django refuse ORM calls in the tests run after these.
    """
    if not CHROMIUM.exists():
        pytest.fail(
            f"The browser tests need Chromium at {CHROMIUM}. Run `make test` (it installs the Debian "
            "packages in scripts/apt-test-packages.txt), or `apt-get install chromium` as root.",
            pytrace=False,
        )
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=10_000)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class PageProblems:
    """JavaScript errors (console errors, uncaught exceptions) and server errors seen by pages.

    One console error is not counted: Chromium logs "Failed to load resource" for every
    page answered with a 4xx status, also when that status is the point (a used invitation
    link answers 410). Only documents the page navigated to are excused; a failing
    stylesheet, script, icon or htmx request still counts.
    """

    def __init__(self) -> None:
        self.console: list[tuple[str, str, str]] = []  # (label, text, url)
        self.other: list[str] = []
        self.documents_with_4xx: set[str] = set()
        self.failures_expected: list[str] = []

    def excuse_failed_load(self, url: str) -> None:
        """A request to ``url`` fails on purpose (aborted by the test's route, or answered
        with the 4xx the test is about): excuse the one "Failed to load resource" line
        Chromium logs for it (it logs one for every failed fetch, handled or not)."""
        self.failures_expected.append(url)

    def watch(self, page, label: str) -> None:
        def on_console(message):
            if message.type == "error":
                location = message.location or {}
                self.console.append((label, message.text, location.get("url", "")))

        def on_response(response):
            if response.status >= 500:
                self.other.append(f"[{label}] HTTP {response.status} from {response.request.method} {response.url}")
            elif response.status >= 400 and response.request.is_navigation_request():
                self.documents_with_4xx.add(response.url)

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.other.append(f"[{label}] uncaught exception: {error}"))
        page.on("response", on_response)

    def items(self) -> list[str]:
        found = list(self.other)
        for label, text, url in self.console:
            if text.startswith("Failed to load resource") and url in self.documents_with_4xx:
                continue
            if text.startswith("Failed to load resource") and url in self.failures_expected:
                self.failures_expected.remove(url)
                continue
            found.append(f"[{label}] console error: {text} ({url or '?'})")
        return found


@pytest.fixture
def new_page(browser, asgi_server, request):
    """`new_page()`: a page in a fresh browser context (its own cookies: another person).

    At teardown the test fails if any page had a JavaScript error or a 5xx response.
    ``new_page.problems`` is the record (for ``excuse_failed_load``).
    """
    problems = PageProblems()
    contexts = []

    def make(label: str | None = None):
        context = browser.new_context(base_url=asgi_server.url, viewport={"width": 1280, "height": 800})
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        problems.watch(page, label or f"context {len(contexts)}")
        return page

    make.problems = problems
    yield make
    for context in contexts:
        context.close()
    found = problems.items()
    if found:
        pytest.fail("JavaScript errors in the browser:\n" + "\n".join(found), pytrace=False)


@pytest.fixture
def page(new_page):
    return new_page("page")


# --- Helpers --------------------------------------------------------------------------------


def log_in(page, username: str, password: str | None = None) -> None:
    """Log in through the login form."""
    from playwright.sync_api import expect

    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password or password_of(username))
    page.get_by_role("button", name="Log in").click()
    expect(page).not_to_have_url(re.compile(r"/accounts/login/"))


def sign_up(page, username: str, password: str) -> None:
    """Fill in and send the sign-up form (the page must show it)."""
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password confirmation").fill(password)
    page.get_by_role("button", name="Sign up").click()


def in_thread(function, *args, **kwargs):
    """Call ``function`` in a thread of its own, outside Playwright's event loop.

    For code that talks to the channel layer (enqueueing a job publishes an event):
    `async_to_sync` refuses to run in a thread whose event loop is running.
    """
    from django.db import connections

    def call():
        try:
            return function(*args, **kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result()


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


__all__ = ["in_thread", "log_in", "password_of", "screenshot", "sign_up"]
