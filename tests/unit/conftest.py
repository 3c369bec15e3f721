"""Shared unit-test fixtures."""

import os
import shutil

import pytest


@pytest.fixture
def chromium() -> str:
    """Headless Chromium for rendering the HTML reports: skipped when it is not installed,
    required in CI (scripts/bootstrap --reports installs it)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (scripts/bootstrap --reports installs it)")
        pytest.skip("no chromium: scripts/bootstrap --reports installs it")
    return exe
