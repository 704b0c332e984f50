"""Linux/BSD X11: the focused window from EWMH, the idle time from the XScreenSaver extension.

Two readings and no hooks: the root window's ``_NET_ACTIVE_WINDOW`` (kept by every EWMH
window manager) and the server's own input idle counter (MIT-SCREEN-SAVER). No keyboard
or pointer event is ever selected, so no keystroke reaches this process.

python-xlib has no type information; everything it returns is ``Any`` and stays inside
this module, behind methods that return plain typed values.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from Xlib import X, Xatom, error
from Xlib.display import Display

from agent.collectors.base import UNKNOWN_APP, WindowSample

#: The window closed between two requests (reading its class, then its title): not a failure.
_WINDOW_GONE = (error.BadWindow, error.BadDrawable)
#: The server went away or the socket broke: this connection is finished.
_CONNECTION_LOST = (error.ConnectionClosedError, OSError)
_ATOM_NAMES = ("_NET_ACTIVE_WINDOW", "_NET_WM_NAME", "UTF8_STRING", "COMPOUND_TEXT")


class X11Unavailable(RuntimeError):
    """The X display cannot be opened or went away; a new backend has to be built."""


class X11Backend:
    """Reads one X display through a connection it owns; ``close()`` closes it.

    Not thread-safe: the watchdog calls each backend from its one worker thread.
    """

    name = "x11"

    def __init__(self, display_name: str | None = None) -> None:
        self.display_name = display_name
        try:
            self._display: Any = Display(display_name)
        except (error.DisplayError, *_CONNECTION_LOST) as exc:
            raise X11Unavailable(f"cannot open X display {display_name!r}: {exc}") from exc
        try:
            with self._connection():
                self._root: Any = self._display.screen().root
                self._atoms = {name: int(self._display.intern_atom(name)) for name in _ATOM_NAMES}
                # python-xlib adds the extension's methods only when the server has it.
                self._has_idle = bool(self._display.has_extension("MIT-SCREEN-SAVER"))
        except X11Unavailable:
            self.close()
            raise

    def active_window(self) -> WindowSample:
        with self._connection():
            window_id = self._active_window_id()
            if not window_id:
                return WindowSample(UNKNOWN_APP)
            return self._sample(window_id)

    def window_sample(self, window_id: int) -> WindowSample:
        """What ``active_window`` reports for this window; unknown once it is closed."""
        with self._connection():
            return self._sample(window_id)

    def idle_seconds(self) -> float | None:
        if not self._has_idle:
            return None
        with self._connection():
            return float(self._root.screensaver_query_info().idle) / 1000.0

    def close(self) -> None:
        # Closing a connection whose server is gone raises; it is released either way.
        with contextlib.suppress(*_CONNECTION_LOST):
            self._display.close()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[None]:
        try:
            yield
        except _CONNECTION_LOST as exc:
            raise X11Unavailable(f"X display {self.display_name!r} went away: {exc}") from exc

    def _active_window_id(self) -> int:
        prop = self._root.get_full_property(self._atoms["_NET_ACTIVE_WINDOW"], Xatom.WINDOW)
        # No EWMH window manager (no property), or nothing focused (None, i.e. 0).
        if prop is None or len(prop.value) == 0:
            return 0
        return int(prop.value[0])

    def _sample(self, window_id: int) -> WindowSample:
        window = self._display.create_resource_object("window", window_id)
        try:
            wm_class = self._text_property(window, Xatom.WM_CLASS)
            title = self._text_property(window, self._atoms["_NET_WM_NAME"]) or self._text_property(
                window, Xatom.WM_NAME
            )
        except _WINDOW_GONE:
            return WindowSample(UNKNOWN_APP)
        return WindowSample(app_from_wm_class(wm_class), title.rstrip("\0"))

    def _text_property(self, window: Any, atom: int) -> str:
        prop = window.get_full_property(atom, X.AnyPropertyType)
        if prop is None or not isinstance(prop.value, bytes):
            return ""
        return decode_text(prop.value, self._text_encoding(int(prop.property_type)))

    def _text_encoding(self, type_atom: int) -> str:
        if type_atom == self._atoms["UTF8_STRING"]:
            return "utf-8"
        if type_atom == self._atoms["COMPOUND_TEXT"]:
            return "compound"
        return "string"


def app_from_wm_class(wm_class: str) -> str:
    """``WM_CLASS`` is "instance\\0class\\0": the class ("XClock", "firefox") names the
    application; the instance is the fallback when a client leaves the class empty."""
    parts = wm_class.split("\0")
    instance = parts[0] if parts else ""
    app_class = parts[1] if len(parts) > 1 else ""
    return app_class or instance or UNKNOWN_APP


def decode_text(value: bytes, encoding: str) -> str:
    """A text property's bytes as a string.

    ``STRING`` is Latin-1 by the ICCCM, but many clients (xdotool among them) put UTF-8
    there: valid UTF-8 is taken as such. ``COMPOUND_TEXT`` is what Xlib writes for
    non-Latin-1 titles of old toolkits: Latin-1 with UTF-8 segments.
    """
    if encoding == "utf-8":
        return value.decode("utf-8", errors="replace")
    if encoding == "compound":
        return _decode_compound_text(value)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


_UTF8_START = b"\x1b%G"
_UTF8_END = b"\x1b%@"


def _decode_compound_text(value: bytes) -> str:
    """Compound text as libX11 produces it for Unicode: Latin-1, with ``ESC % G`` ...
    ``ESC % @`` around UTF-8. Other ISO 2022 designations (legacy CJK sets) are rare in
    titles; their escape sequences are dropped and their bytes read as Latin-1."""
    out: list[str] = []
    rest = value
    while rest:
        start = rest.find(_UTF8_START)
        plain, rest = (rest, b"") if start < 0 else (rest[:start], rest[start + len(_UTF8_START) :])
        out.append(_strip_designations(plain).decode("latin-1"))
        if start >= 0:
            end = rest.find(_UTF8_END)
            utf8, rest = (rest, b"") if end < 0 else (rest[:end], rest[end + len(_UTF8_END) :])
            out.append(utf8.decode("utf-8", errors="replace"))
    return "".join(out)


def _strip_designations(segment: bytes) -> bytes:
    # An ISO 2022 designation is ESC, intermediate bytes (0x20-0x2F), then a final byte.
    out = bytearray()
    i = 0
    while i < len(segment):
        if segment[i] == 0x1B:
            i += 1
            while i < len(segment) and 0x20 <= segment[i] <= 0x2F:
                i += 1
            i += 1
            continue
        out.append(segment[i])
        i += 1
    return bytes(out)


def display_reachable(display_name: str, timeout: float = 2.0) -> bool:
    """Whether an X server answers on ``display_name`` within ``timeout`` seconds.

    The probe runs in a daemon thread: connecting to a stopped server blocks, and a
    blocked probe must not block the agent's start-up (the thread is left behind).
    """
    finished = threading.Event()
    answers: list[bool] = []

    def probe() -> None:
        try:
            X11Backend(display_name).close()
            answers.append(True)
        except X11Unavailable:
            answers.append(False)
        finally:
            finished.set()

    threading.Thread(target=probe, name="x11-probe", daemon=True).start()
    return finished.wait(timeout) and answers == [True]
