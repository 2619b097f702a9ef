"""Headless Chromium for the dashboard's browser test (import as ``from browser import …``).

Debian's own ``chromium`` driven by Playwright, never a browser Playwright
downloads. Where either is missing the test is skipped, and the run's summary
says so in a banner (see ``pytest_terminal_summary`` in ``tests/conftest.py``):
a skipped browser test must not pass unnoticed.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SKIPPED = "BROWSER TEST SKIPPED"


def missing_browser() -> str | None:
    """Why the browser test cannot run here (a sentence starting with SKIPPED), or None."""
    if not os.access(CHROMIUM, os.X_OK):
        return (f"{SKIPPED}: Debian's chromium is not installed ({CHROMIUM}); "
                "`apt-get install -y chromium` (make test does it as root)")
    if importlib.util.find_spec("playwright") is None:
        return f"{SKIPPED}: playwright is not installed; pip install -e '.[dev]'"
    return None


@contextmanager
def chromium_page(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A page of a fresh headless Chromium; the browser is closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS,
                                             headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()
