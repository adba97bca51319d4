"""The headless Chromium the browser tests drive (Debian's package, not Playwright's download): one per test
module, registered for every test file by tests/conftest.py (pytest_plugins).

Screenshots for the docs (docs/screenshots/*.png) are written only when asked: `UPDATE_SCREENSHOTS=1 make test`
(or the browser test files alone). Otherwise the tests take them into a temporary folder, so they still run that
code, and a test run leaves the tracked pictures as they are.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
DOCS = Path(__file__).resolve().parent.parent / "docs"
UPDATE_SCREENSHOTS = os.environ.get("UPDATE_SCREENSHOTS") == "1"


def docs_output(relative: str, scratch: Path) -> Path:
    """Where a browser test writes a picture or figure for docs/: ``docs/<relative>`` with UPDATE_SCREENSHOTS=1,
    else the same name under ``scratch`` (a test's tmp_path)."""
    path = (DOCS if UPDATE_SCREENSHOTS else scratch) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium. "
            "Install it with `apt-get install -y chromium` (Playwright's own browser download is not used)."
        )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
