"""Integration-test fixtures of this repository (the drlab plugin has the public ones)."""

import cli_runner
import pytest


@pytest.fixture(scope="session", autouse=True)
def _command_server():
    """Stop the warm command server (tests/integration/cli_runner.py) when this test
    process is done: pytest-xdist's workers end without running atexit handlers."""
    yield
    cli_runner.leave()
