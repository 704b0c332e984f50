"""macOS: the frontmost application (AppKit) and the HID idle time (Quartz), via pyobjc.

The backend's logic runs against the small ``MacApi`` protocol; the pyobjc implementation
is defined and imported only on macOS (pyobjc is installed only there), so the logic is
tested anywhere with a fake.

Window titles are not collected: reading another app's window title needs the
Accessibility permission (and ``CGWindowList`` names need Screen Recording), which the
agent does not ask for; the title is always empty.

Caveat of the AppKit call: ``NSRunningApplication`` values are refreshed by turns of the
process's main run loop; a process that never turns it can see a stale frontmost app.
"""

from __future__ import annotations

import math
import sys
from typing import Protocol

from agent.collectors.base import UNKNOWN_APP, WindowSample


class MacApi(Protocol):
    """The two readings the backend needs."""

    def frontmost_app_name(self) -> str | None:
        """``NSWorkspace.sharedWorkspace().frontmostApplication().localizedName()``;
        None when no application is frontmost."""
        ...

    def seconds_since_input(self) -> float | None:
        """``CGEventSourceSecondsSinceLastEventType`` for any input, HID system state."""
        ...


class MacBackend:
    """The frontmost application's localized name (e.g. ``"Safari"``); no title."""

    name = "macos"

    def __init__(self, api: MacApi | None = None) -> None:
        self._api = api if api is not None else macos_api()

    def active_window(self) -> WindowSample:
        return WindowSample(self._api.frontmost_app_name() or UNKNOWN_APP)

    def idle_seconds(self) -> float | None:
        seconds = self._api.seconds_since_input()
        # A negative or NaN reading is no measurement: unknown rather than "active now".
        if seconds is None or math.isnan(seconds) or seconds < 0:
            return None
        return seconds

    def close(self) -> None:
        return None


if sys.platform != "darwin":

    def macos_api() -> MacApi:
        """The real API, from pyobjc; only on macOS."""
        raise RuntimeError(f"AppKit and Quartz are only on macOS (this is {sys.platform})")

else:

    class _PyObjCApi:
        def __init__(self) -> None:
            # Imported here, not at module level: pyobjc exists only on macOS and loading
            # AppKit is slow; nothing should pay for it at import time.
            import AppKit
            import Quartz

            self._workspace = AppKit.NSWorkspace.sharedWorkspace()
            self._quartz = Quartz

        def frontmost_app_name(self) -> str | None:
            app = self._workspace.frontmostApplication()
            if app is None:
                return None
            name = app.localizedName()
            return str(name) if name else None

        def seconds_since_input(self) -> float | None:
            quartz = self._quartz
            seconds = quartz.CGEventSourceSecondsSinceLastEventType(
                quartz.kCGEventSourceStateHIDSystemState, quartz.kCGAnyInputEventType
            )
            return float(seconds)

    def macos_api() -> MacApi:
        """The real API, from pyobjc; only on macOS."""
        return _PyObjCApi()
