"""What every platform collector provides: the active window and the time since input.

A collector reads; it never hooks input. Calls are blocking and may hang (a stuck X
server): callers go through ``agent.collectors.watchdog``, never straight to a backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

UNKNOWN_APP = "unknown"


@dataclass(frozen=True, slots=True)
class WindowSample:
    """The window that has the user's focus. ``app`` is ``"unknown"`` when nothing tells."""

    app: str
    title: str = ""
    url: str = ""


class Backend(Protocol):
    """One platform's way of reading the desktop."""

    #: Short name for logs and ``status`` ("x11", "windows", "macos", "unknown").
    name: str

    def active_window(self) -> WindowSample:
        """The focused window now."""
        ...

    def idle_seconds(self) -> float | None:
        """Seconds since the user's last keyboard or mouse input; None when unknowable."""
        ...

    def close(self) -> None:
        """Releases the display connection or handles; the backend is not used after."""
        ...
