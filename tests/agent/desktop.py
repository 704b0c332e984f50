"""A real X desktop for tests: Xvfb, the openbox window manager, real X clients, xdotool.

``Desktop()`` starts ``Xvfb`` on a free display (it reports the number on ``-displayfd``)
and ``openbox`` on it, and waits until the window manager has taken over. Tests open
real windows (``xclock``, ``xeyes``, ``xlogo``), focus them, move the mouse and can kill
or freeze the X server under the code they test. Missing programs skip the test with
the package to install.

WM_CLASS (instance, class) of the clients used: xclock ("xclock", "XClock"),
xeyes ("xeyes", "XEyes"), xlogo ("xlogo", "XLogo").

The helper watches the display through python-xlib on a connection of its own, never
through the code under test.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from Xlib import X, Xatom, error
from Xlib.display import Display

INSTALL_HINT = "apt-get install xvfb openbox xdotool x11-apps"
_SERVER_NEEDS = {"Xvfb": "Xvfb", "openbox": "openbox", "xdotool": "xdotool"}
_TIMEOUT = 10.0


class Desktop:
    """One X server with a window manager; ``close()`` (or the fixture) tears it down."""

    def __init__(self, server_args: Sequence[str] = ()) -> None:
        missing = [name for name in _SERVER_NEEDS if shutil.which(name) is None]
        if missing:
            pytest.skip(f"{', '.join(missing)} not installed ({INSTALL_HINT})")
        self._folder = tempfile.TemporaryDirectory(prefix="wp-desktop-")
        self._clients: dict[int, subprocess.Popen[bytes]] = {}
        self._paused = False
        self._server_log = open(Path(self._folder.name) / "xvfb.log", "w+b")  # noqa: SIM115 (closed in close())
        self._server = self._start_server(server_args)
        try:
            self.display = f":{self._read_display_number()}"
            #: This process's environment as an X session on this display.
            self.env = {**os.environ, "DISPLAY": self.display, "XDG_SESSION_TYPE": "x11"}
            self.env.pop("WAYLAND_DISPLAY", None)
            self._x: Any = Display(self.display)
            self._root: Any = self._x.screen().root
            # Root property changes (client list, active window) wake the waits below.
            self._root.change_attributes(event_mask=X.PropertyChangeMask)
            self._wm = self._start_wm()
            # openbox claims the screen (_NET_SUPPORTING_WM_CHECK) well before it manages
            # windows, and a window mapped in between stayed unmanaged: _NET_CLIENT_LIST is
            # the last property its start-up sets.
            self._wait_until(lambda: self._has_root_property("_NET_CLIENT_LIST"), "openbox to start")
        except BaseException:
            self.close()
            raise

    def open(self, cmd: list[str], env: Mapping[str, str] | None = None) -> int:
        """Starts an X client (``env``: extra variables); returns its window's id once the
        window manager shows it."""
        if shutil.which(cmd[0]) is None:
            pytest.skip(f"{cmd[0]} not installed ({INSTALL_HINT})")
        before = set(self._client_list())
        process = subprocess.Popen(
            cmd, env={**self.env, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        found: list[int] = []

        def mapped() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"{cmd} exited with {process.returncode} before showing a window")
            found[:] = [w for w in self._client_list() if w not in before and self._viewable(w)]
            return bool(found)

        try:
            self._wait_until(mapped, f"a window of {cmd}")
        except BaseException:
            _stop(process)
            raise
        self._clients[found[0]] = process
        return found[0]

    def focus(self, window_id: int) -> None:
        """Gives the window the input focus and waits until the window manager says so."""
        # Under openbox ``windowactivate`` is ignored (no pager source); focus is not.
        self._xdotool("windowfocus", "--sync", str(window_id))
        self._wait_until(lambda: self.active_window_id() == window_id, f"window {window_id} to be active")

    def mousemove(self, x: int, y: int) -> None:
        """Moves the pointer (an XTEST input event: it resets the server's idle time)."""
        self._xdotool("mousemove", "--sync", str(x), str(y))

    def set_title(self, window_id: int, title: str) -> None:
        """Sets ``_NET_WM_NAME`` as UTF8_STRING, the way GTK and Qt applications do."""
        window = self._x.create_resource_object("window", window_id)
        window.change_property(
            self._x.intern_atom("_NET_WM_NAME"), self._x.intern_atom("UTF8_STRING"), 8, title.encode()
        )
        self._x.sync()

    def close_window(self, window_id: int) -> None:
        """Ends the client that owns the window; returns once the window is gone."""
        process = self._clients.pop(window_id)
        _stop(process)
        self._wait_until(lambda: window_id not in self._client_list(), f"window {window_id} to close")

    def active_window_id(self) -> int:
        """The window manager's ``_NET_ACTIVE_WINDOW``; 0 when nothing has the focus."""
        value = self._root_property("_NET_ACTIVE_WINDOW", Xatom.WINDOW)
        return int(value[0]) if value else 0

    def kill_server(self) -> None:
        """Kills Xvfb at once (SIGKILL): every client's connection breaks."""
        self._resume()
        self._server.kill()
        self._server.wait(_TIMEOUT)

    def pause_server(self) -> None:
        """Stops Xvfb (SIGSTOP): every X request hangs until ``resume_server``."""
        os.kill(self._server.pid, signal.SIGSTOP)
        self._paused = True

    def resume_server(self) -> None:
        self._resume()

    def close(self) -> None:
        """Ends the clients, the window manager and the server; safe to call twice."""
        self._resume()
        with contextlib.suppress(Exception):
            self._x.close()
        wm: subprocess.Popen[bytes] | None = getattr(self, "_wm", None)
        for process in [*self._clients.values(), *([wm] if wm else []), self._server]:
            _stop(process)
        self._clients.clear()
        self._server_log.close()
        self._folder.cleanup()

    def _start_server(self, server_args: Sequence[str]) -> subprocess.Popen[bytes]:
        self._display_pipe, write_end = os.pipe()
        command = ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1280x800x24", "-nolisten", "tcp"]
        try:
            return subprocess.Popen(
                [*command, *server_args],
                pass_fds=(write_end,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._server_log,
            )
        finally:
            os.close(write_end)  # Xvfb holds the only writer: its exit ends the read below

    def _read_display_number(self) -> int:
        """Xvfb writes the display number it chose once it accepts connections."""
        received = b""
        deadline = time.monotonic() + _TIMEOUT
        try:
            while not received.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                readable, _, _ = select.select([self._display_pipe], [], [], max(remaining, 0))
                chunk = os.read(self._display_pipe, 16) if readable else b""
                if not chunk:
                    self._server_log.seek(0)
                    output = self._server_log.read().decode(errors="replace")
                    raise RuntimeError(f"Xvfb did not start (exit {self._server.poll()}):\n{output}")
                received += chunk
        finally:
            os.close(self._display_pipe)
        return int(received)

    def _start_wm(self) -> subprocess.Popen[bytes]:
        # An empty config home: the user's own openbox settings must not change focus rules.
        env = {**self.env, "XDG_CONFIG_HOME": self._folder.name}
        env.pop("SESSION_MANAGER", None)
        return subprocess.Popen(
            ["openbox", "--sm-disable"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _xdotool(self, *args: str) -> None:
        subprocess.run(["xdotool", *args], env=self.env, check=True, timeout=_TIMEOUT, capture_output=True)

    def _client_list(self) -> list[int]:
        return [int(w) for w in self._root_property("_NET_CLIENT_LIST", Xatom.WINDOW)]

    def _root_property(self, name: str, property_type: int) -> Sequence[int]:
        prop = self._root.get_full_property(self._x.intern_atom(name), property_type)
        return list(prop.value) if prop is not None else []

    def _has_root_property(self, name: str) -> bool:
        return self._root.get_full_property(self._x.intern_atom(name), X.AnyPropertyType) is not None

    def _viewable(self, window_id: int) -> bool:
        window = self._x.create_resource_object("window", window_id)
        try:
            return bool(window.get_attributes().map_state == X.IsViewable)
        except error.BadWindow:
            return False

    def _wait_until(self, condition: Callable[[], bool], what: str) -> None:
        """Waits for ``condition``, woken by root property changes; re-checks at least every
        50 ms for changes no root event announces (a window becoming viewable)."""
        deadline = time.monotonic() + _TIMEOUT
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out waiting for {what}")
            if not self._x.pending_events():
                select.select([self._x], [], [], min(remaining, 0.05))
            while self._x.pending_events():
                self._x.next_event()

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._server.pid, signal.SIGCONT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(_TIMEOUT)


def skipped_for_desktop(reports: Sequence[Any]) -> list[str]:
    """The distinct skip reasons of ``reports`` that name this helper's packages."""
    reasons = {
        str(report.longrepr[2]).removeprefix("Skipped: ") for report in reports if isinstance(report.longrepr, tuple)
    }
    return sorted(reason for reason in reasons if INSTALL_HINT in reason)


__all__ = ["INSTALL_HINT", "Desktop", "skipped_for_desktop"]
