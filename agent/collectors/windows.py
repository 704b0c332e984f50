"""Windows: the foreground window and its process through user32/kernel32 (ctypes).

The backend's logic runs against the small ``Win32Api`` protocol; the ctypes
implementation of it exists only on Windows (``ctypes.windll`` and ``WinDLL`` are not
there elsewhere), so the logic is tested anywhere with a fake. Nothing hooks input:
idle time is ``GetLastInputInfo``, the system's own last-input tick.

Known limit: a Store (UWP) app's foreground window belongs to ``ApplicationFrameHost``,
which is then the app reported.
"""

from __future__ import annotations

import sys
from pathlib import PureWindowsPath
from typing import Protocol

from agent.collectors.base import UNKNOWN_APP, WindowSample

# GetTickCount and LASTINPUTINFO.dwTime are 32-bit millisecond counters that wrap every
# 49.7 days; their difference is taken modulo 2**32 so a wrap in between stays correct.
_TICK_MODULUS = 1 << 32


class Win32Api(Protocol):
    """The few Win32 calls the backend needs, with ctypes details kept out."""

    def foreground_window(self) -> int:
        """``GetForegroundWindow``; 0 when no window has the focus (e.g. while locked)."""
        ...

    def window_process_id(self, hwnd: int) -> int:
        """``GetWindowThreadProcessId``'s process id; 0 when the window is gone."""
        ...

    def process_image_path(self, pid: int) -> str | None:
        """``QueryFullProcessImageNameW``; None when access is denied or the process is gone."""
        ...

    def window_title(self, hwnd: int) -> str:
        """``GetWindowTextW``; empty when the window has no title or is gone."""
        ...

    def last_input_tick(self) -> int | None:
        """``GetLastInputInfo``'s ``dwTime``; None when the call fails."""
        ...

    def tick_count(self) -> int:
        """``GetTickCount``: milliseconds since boot, 32 bits."""
        ...


class WindowsBackend:
    """The foreground window's executable (its stem, e.g. ``"chrome"``) and title."""

    name = "windows"

    def __init__(self, api: Win32Api | None = None) -> None:
        self._api = api if api is not None else win32_api()

    def active_window(self) -> WindowSample:
        hwnd = self._api.foreground_window()
        if not hwnd:
            return WindowSample(UNKNOWN_APP)
        title = self._api.window_title(hwnd)
        pid = self._api.window_process_id(hwnd)
        # Elevated and protected processes refuse even limited query access: the title
        # is still worth keeping.
        path = self._api.process_image_path(pid) if pid else None
        app = PureWindowsPath(path).stem if path else ""
        return WindowSample(app or UNKNOWN_APP, title)

    def idle_seconds(self) -> float | None:
        last = self._api.last_input_tick()
        if last is None:
            return None
        # Read "now" after the last input so the difference is never negative (mod 2**32).
        return ((self._api.tick_count() - last) % _TICK_MODULUS) / 1000.0

    def close(self) -> None:
        # No handle outlives a call: each process handle is closed where it is opened.
        return None


if sys.platform != "win32":

    def win32_api() -> Win32Api:
        """The real API, from user32 and kernel32; only on Windows."""
        raise RuntimeError(f"the Win32 API is only on Windows (this is {sys.platform})")

else:
    import ctypes
    from ctypes import wintypes

    _PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
    _MAX_PATH_CHARS = 32768  # the longest path Windows accepts, in UTF-16 units

    class _LastInputInfo(ctypes.Structure):
        _fields_ = [("cbSize", wintypes.UINT), ("dwTime", wintypes.DWORD)]

    class _CtypesWin32Api:
        """ctypes bindings with explicit signatures: handles are pointer-sized, and
        ctypes' default ``int`` return type would truncate them on 64-bit Windows."""

        def __init__(self) -> None:
            user32 = ctypes.WinDLL("user32", use_last_error=True)
            kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
            self._foreground = user32.GetForegroundWindow
            self._foreground.argtypes = []
            self._foreground.restype = wintypes.HWND
            self._thread_process = user32.GetWindowThreadProcessId
            self._thread_process.argtypes = [wintypes.HWND, ctypes.POINTER(wintypes.DWORD)]
            self._thread_process.restype = wintypes.DWORD
            self._text_length = user32.GetWindowTextLengthW
            self._text_length.argtypes = [wintypes.HWND]
            self._text_length.restype = ctypes.c_int
            self._text = user32.GetWindowTextW
            self._text.argtypes = [wintypes.HWND, wintypes.LPWSTR, ctypes.c_int]
            self._text.restype = ctypes.c_int
            self._last_input = user32.GetLastInputInfo
            self._last_input.argtypes = [ctypes.POINTER(_LastInputInfo)]
            self._last_input.restype = wintypes.BOOL
            self._tick = kernel32.GetTickCount
            self._tick.argtypes = []
            self._tick.restype = wintypes.DWORD
            self._open = kernel32.OpenProcess
            self._open.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
            self._open.restype = wintypes.HANDLE
            self._image_name = kernel32.QueryFullProcessImageNameW
            self._image_name.argtypes = [
                wintypes.HANDLE,
                wintypes.DWORD,
                wintypes.LPWSTR,
                ctypes.POINTER(wintypes.DWORD),
            ]
            self._image_name.restype = wintypes.BOOL
            self._close_handle = kernel32.CloseHandle
            self._close_handle.argtypes = [wintypes.HANDLE]
            self._close_handle.restype = wintypes.BOOL
            # One buffer, reused: every call of a backend runs on its one worker thread.
            self._path_buffer = ctypes.create_unicode_buffer(_MAX_PATH_CHARS)

        def foreground_window(self) -> int:
            return int(self._foreground() or 0)

        def window_process_id(self, hwnd: int) -> int:
            pid = wintypes.DWORD(0)
            self._thread_process(hwnd, ctypes.byref(pid))
            return int(pid.value)

        def process_image_path(self, pid: int) -> str | None:
            handle = self._open(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
            if not handle:
                return None
            try:
                size = wintypes.DWORD(_MAX_PATH_CHARS)
                if not self._image_name(handle, 0, self._path_buffer, ctypes.byref(size)):
                    return None
                return str(self._path_buffer[: size.value])
            finally:
                self._close_handle(handle)

        def window_title(self, hwnd: int) -> str:
            # For another process's window this reads the cached caption without sending
            # it a message, so a hung application cannot hang the call.
            length = int(self._text_length(hwnd))
            if length <= 0:
                return ""
            buffer = ctypes.create_unicode_buffer(length + 1)
            copied = int(self._text(hwnd, buffer, length + 1))
            return str(buffer.value[:copied])

        def last_input_tick(self) -> int | None:
            info = _LastInputInfo(cbSize=ctypes.sizeof(_LastInputInfo), dwTime=0)
            if not self._last_input(ctypes.byref(info)):
                return None
            return int(info.dwTime)

        def tick_count(self) -> int:
            return int(self._tick())

    def win32_api() -> Win32Api:
        """The real API, from user32 and kernel32; only on Windows."""
        return _CtypesWin32Api()
