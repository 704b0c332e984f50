"""The collector for desktops nothing can read: a pure Wayland session, no display at all.

Native Wayland has no portable way for one client to see another's window or the input
idle time (each compositor has its own protocol, if any), so the agent still records
work time but reports the app as unknown and the idle time as unknowable.
"""

from __future__ import annotations

from agent.collectors.base import UNKNOWN_APP, WindowSample


class UnknownBackend:
    """Reads nothing and never fails; ``reason`` says why it was chosen (for ``status``)."""

    name = "unknown"

    def __init__(self, reason: str = "") -> None:
        self.reason = reason

    def active_window(self) -> WindowSample:
        return WindowSample(UNKNOWN_APP)

    def idle_seconds(self) -> float | None:
        return None

    def close(self) -> None:
        return None
