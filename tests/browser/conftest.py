"""Headless Chromium from Debian's package (Playwright cannot download browsers here)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("STEADYCAST_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(
        reason=f"{CHROMIUM} is missing: run `make browser` (apt-get install -y chromium)"
    )
    for item in items:
        if "tests/browser/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)
            if not CHROMIUM.exists():
                item.add_marker(skip)


@pytest.fixture
def page() -> Iterator[Any]:
    """A page of headless Chromium that can reach only this machine's test servers and local
    files (a page reaching for a CDN fails), and fails its test on any script error."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            p = browser.new_context(viewport={"width": 1366, "height": 800}).new_page()
            p.route(
                "**/*",
                lambda route: (
                    route.continue_()
                    if route.request.url.startswith(("http://127.0.0.1", "file://"))
                    else route.abort()
                ),
            )
            errors: list[str] = []
            p.on("pageerror", lambda exc: errors.append(str(exc)))
            p.set_default_timeout(15_000)
            yield p
            assert not errors, errors
        finally:
            browser.close()
