"""Headless Chromium (Debian's) driven by Playwright, for the report and dashboard tests.

Playwright's own browser downloads are never used: the tests launch ``/usr/bin/chromium``
(``executable_path``), which ``.ci/run`` installs. Without it a test is skipped locally
and fails in CI (``CI=true``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._images import require_chromium

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic", "--hide-scrollbars",
]


@contextmanager
def chromium_page(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A fresh page of a headless Chromium whose requests to anywhere but this machine fail.

    The page's ``blocked`` attribute lists every URL it tried to load from elsewhere.
    """
    executable = require_chromium()
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - a test dependency only

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=FLAGS, headless=True, timeout=120_000)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            context.set_default_timeout(60_000)
            page = context.new_page()
            page.blocked = []

            def _route(route: Any) -> None:
                url = route.request.url
                if url.startswith(("file:", "data:", "blob:", "about:", "http://127.0.0.1", "http://localhost")):
                    route.continue_()
                else:
                    page.blocked.append(url)
                    route.abort()

            page.route("**/*", _route)
            yield page
        finally:
            browser.close()
