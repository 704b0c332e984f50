"""Fixtures of the agent's tests: a real X desktop (Xvfb, openbox, X clients)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.agent.desktop import Desktop, skipped_for_desktop


@pytest.fixture
def desktop() -> Iterator[Desktop]:
    """A fresh X server with a window manager per test (tests may kill or freeze it)."""
    running = Desktop()
    try:
        yield running
    finally:
        running.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Says why desktop tests were skipped even without ``-rs``."""
    for reason in skipped_for_desktop(terminalreporter.stats.get("skipped", [])):
        terminalreporter.write_line(f"desktop tests skipped: {reason}", yellow=True)
