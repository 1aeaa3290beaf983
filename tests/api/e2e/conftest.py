"""Browser tests: Debian's Chromium driven by Playwright (never ``playwright install``), against
the real app under uvicorn on SQLite.

Without ``/usr/bin/chromium`` these tests skip, except in CI (``CI=true``), where they fail:
``make test`` installs the package first (``make browser``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import IN_CI

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = Path("/usr/bin/chromium")
EXPECT_TIMEOUT_MS = 15_000


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"the browser tests need {reason} in CI (make browser installs it)")
    pytest.skip(f"no browser: {reason} (apt-get install chromium)")


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The browser tests run on SQLite only: the store's backends have their own tests."""
    return f"sqlite:///{tmp_path / 'journey.sqlite'}"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        _unavailable(str(CHROMIUM))
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:  # pragma: no cover - a dev dependency
        _unavailable("the playwright package")
    # a turn on a cold, busy CI machine can take seconds; a wait ends as soon as it holds
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield launched
        finally:
            launched.close()
