"""End-to-end tests drive a real headless Chromium against a live Django server.

They skip with a message where Chromium, Playwright or the built viewer bundle is missing; CI installs all three.
"""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from fixtures.browser import CHROMIUM, VIEWPORT, launch_chromium
from tests.missing import missing

# Playwright's sync API runs an event loop in this thread; the ORM calls of the test itself are still sync.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def _skip_reason() -> str | None:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        return f"Chromium not installed ({CHROMIUM}): apt-get install chromium (CI does)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Python playwright not installed (pip install -r requirements.txt)"
    if not Path(settings.VITE_MANIFEST).exists():
        return f"viewer bundle not built ({settings.VITE_MANIFEST}): run make frontend"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    reason = _skip_reason()
    if reason:
        # Only a missing browser may skip, and not where CI installed one (REQUIRE_BROWSER=1): Playwright and
        # the viewer bundle are installed by `make test` itself, so their absence is a failure.
        if reason.startswith("Chromium not installed"):
            missing("REQUIRE_BROWSER", reason)
        pytest.fail(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    messages: list[str] = []
    page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
    page.console_messages = messages
    yield page
    context.close()
