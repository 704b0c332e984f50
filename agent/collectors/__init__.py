"""Platform collectors: what the focused window is and how long the user has been idle.

``choose_backend`` decides once, at start-up, which backend this desktop gets and returns
its factory; the agent runs that factory through ``GuardedCollector``, which builds the
backend, guards every call with a timeout and rebuilds it after a failure.
``LockMonitor`` adds logind's screen lock and suspend, which count as idle at once.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

from agent.collectors.base import UNKNOWN_APP, Backend, WindowSample
from agent.collectors.logind import LockMonitor
from agent.collectors.unknown import UnknownBackend
from agent.collectors.watchdog import GuardedCollector

__all__ = [
    "OVERRIDE_VARIABLE",
    "UNKNOWN_APP",
    "Backend",
    "BackendChoice",
    "GuardedCollector",
    "LockMonitor",
    "WindowSample",
    "choose_backend",
]

_log = logging.getLogger("workpulse.agent.collectors")

#: Forces a backend ("x11", "unknown", "windows", "macos"), whatever the platform says.
OVERRIDE_VARIABLE = "WORKPULSE_AGENT_BACKEND"
_BACKEND_NAMES = ("x11", "unknown", "windows", "macos")
# The platforms where an X server is the desktop, if there is a desktop at all.
_X11_PLATFORMS = ("linux", "freebsd", "openbsd", "netbsd", "dragonfly")


@dataclass(frozen=True, slots=True)
class BackendChoice:
    """A backend factory that also says which backend it builds and why it was chosen."""

    name: str
    reason: str
    build: Callable[[], Backend]

    def __call__(self) -> Backend:
        return self.build()


def choose_backend(
    environ: Mapping[str, str] = os.environ,
    platform: str = sys.platform,
    *,
    x11_reachable: Callable[[str], bool] | None = None,
) -> BackendChoice:
    """The factory of this desktop's backend; logs which one and why.

    ``x11_reachable`` answers whether an X server answers on a display (default: connect
    to it, with a timeout); tests pass a stand-in.
    """
    name, why = _decide(environ, platform, x11_reachable or _x11_reachable)
    _log.info("activity collector: %s (%s)", name, why)
    return BackendChoice(name, why, _builder(name, environ, why))


def _builder(name: str, environ: Mapping[str, str], why: str) -> Callable[[], Backend]:
    # Imported on demand: only the chosen platform's module is ever loaded.
    if name == "x11":
        from agent.collectors.x11 import X11Backend

        return partial(X11Backend, environ.get("DISPLAY") or None)
    if name == "windows":
        from agent.collectors.windows import WindowsBackend

        return WindowsBackend
    if name == "macos":
        from agent.collectors.macos import MacBackend

        return MacBackend
    return partial(UnknownBackend, why)


def _decide(environ: Mapping[str, str], platform: str, x11_reachable: Callable[[str], bool]) -> tuple[str, str]:
    forced = environ.get(OVERRIDE_VARIABLE, "").strip().lower()
    if forced in _BACKEND_NAMES:
        return forced, f"{OVERRIDE_VARIABLE}={forced}"
    if forced:
        _log.warning("%s=%r is not one of %s: ignored", OVERRIDE_VARIABLE, forced, ", ".join(_BACKEND_NAMES))
    if platform == "win32":
        return "windows", "Windows"
    if platform == "darwin":
        return "macos", "macOS"
    if not platform.startswith(_X11_PLATFORMS):
        return "unknown", f"no collector for platform {platform!r}"
    display = environ.get("DISPLAY", "")
    wayland = bool(environ.get("WAYLAND_DISPLAY")) or environ.get("XDG_SESSION_TYPE") == "wayland"
    if not display:
        if wayland:
            return "unknown", "a Wayland session without X: its windows and idle time cannot be read"
        return "unknown", "no DISPLAY: no graphical session to read"
    if wayland:
        # XWayland serves X clients only: native Wayland windows would all read as
        # whatever X window last had the focus, which is worse than "unknown".
        return "unknown", (
            f"a Wayland session: XWayland on {display} cannot see native Wayland windows "
            f"(set {OVERRIDE_VARIABLE}=x11 to read X clients anyway)"
        )
    if not x11_reachable(display):
        return "unknown", f"no X server answers on DISPLAY={display}"
    return "x11", f"X server on DISPLAY={display}"


def _x11_reachable(display: str) -> bool:
    from agent.collectors.x11 import display_reachable

    return display_reachable(display)
