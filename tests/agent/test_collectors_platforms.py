"""The Windows and macOS collectors with fake APIs, the backend choice, the unknown
backend, and the logind lock state (unit, and for real without a bus)."""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field

import pytest
from dbus_fast import Message, MessageType, Variant

from agent.collectors import OVERRIDE_VARIABLE, LockMonitor, choose_backend
from agent.collectors.base import UNKNOWN_APP, WindowSample
from agent.collectors.logind import (
    MANAGER_INTERFACE,
    MANAGER_PATH,
    PROPERTIES_INTERFACE,
    SESSION_INTERFACE,
    LockState,
)
from agent.collectors.macos import MacBackend
from agent.collectors.unknown import UnknownBackend
from agent.collectors.windows import WindowsBackend

UNKNOWN = WindowSample(UNKNOWN_APP)


@dataclass
class FakeWin32:
    hwnd: int = 0x1A2B
    pid: int = 4242
    image: str | None = r"C:\Program Files\Mozilla Firefox\firefox.exe"
    title: str = "WorkPulse — Mozilla Firefox"
    last_input: int | None = 1_000
    ticks: int = 1_000
    asked_pids: list[int] = field(default_factory=list)

    def foreground_window(self) -> int:
        return self.hwnd

    def window_process_id(self, hwnd: int) -> int:
        return self.pid if hwnd == self.hwnd else 0

    def process_image_path(self, pid: int) -> str | None:
        self.asked_pids.append(pid)
        return self.image

    def window_title(self, hwnd: int) -> str:
        return self.title if hwnd == self.hwnd else ""

    def last_input_tick(self) -> int | None:
        return self.last_input

    def tick_count(self) -> int:
        return self.ticks


def test_windows_reports_the_executable_stem_and_the_title() -> None:
    backend = WindowsBackend(FakeWin32())
    assert backend.active_window() == WindowSample("firefox", "WorkPulse — Mozilla Firefox")
    assert WindowsBackend(FakeWin32(image=r"C:\Windows\System32\notepad.EXE")).active_window().app == "notepad"


def test_windows_access_denied_keeps_the_title_but_not_the_app() -> None:
    # OpenProcess fails for elevated and protected processes (Task Manager, antivirus).
    assert WindowsBackend(FakeWin32(image=None, title="Task Manager")).active_window() == WindowSample(
        UNKNOWN_APP, "Task Manager"
    )


def test_windows_without_a_foreground_window_or_process_is_unknown() -> None:
    assert WindowsBackend(FakeWin32(hwnd=0)).active_window() == UNKNOWN
    api = FakeWin32(pid=0, title="")
    assert WindowsBackend(api).active_window() == UNKNOWN
    assert api.asked_pids == [], "no process is opened for pid 0"


@pytest.mark.parametrize(
    ("last_input", "ticks", "idle"),
    [
        (4_000, 10_000, 6.0),
        (10_000, 10_000, 0.0),
        # GetTickCount wrapped (49.7 days of uptime) between the last input and now.
        (2**32 - 1_000, 500, 1.5),
        (2**32 - 1, 0, 0.001),
    ],
)
def test_windows_idle_time_survives_the_tick_wrap_around(last_input: int, ticks: int, idle: float) -> None:
    assert WindowsBackend(FakeWin32(last_input=last_input, ticks=ticks)).idle_seconds() == pytest.approx(idle)


def test_windows_idle_is_unknowable_when_last_input_fails() -> None:
    assert WindowsBackend(FakeWin32(last_input=None)).idle_seconds() is None


@pytest.mark.skipif(sys.platform == "win32", reason="checks the non-Windows guard")
def test_the_real_win32_api_is_never_touched_elsewhere() -> None:
    with pytest.raises(RuntimeError, match="only on Windows"):
        WindowsBackend()


@dataclass
class FakeMac:
    app: str | None = "Safari"
    idle: float | None = 12.5

    def frontmost_app_name(self) -> str | None:
        return self.app

    def seconds_since_input(self) -> float | None:
        return self.idle


def test_macos_reports_the_frontmost_app_without_a_title() -> None:
    backend = MacBackend(FakeMac())
    assert backend.active_window() == WindowSample("Safari", "")
    assert backend.idle_seconds() == 12.5


@pytest.mark.parametrize("app", [None, ""])
def test_macos_without_a_frontmost_app_is_unknown(app: str | None) -> None:
    assert MacBackend(FakeMac(app=app)).active_window() == UNKNOWN


@pytest.mark.parametrize("idle", [None, -1.0, math.nan])
def test_macos_idle_readings_that_are_no_measurement_are_unknown(idle: float | None) -> None:
    assert MacBackend(FakeMac(idle=idle)).idle_seconds() is None


@pytest.mark.skipif(sys.platform == "darwin", reason="checks the non-macOS guard")
def test_pyobjc_is_never_imported_elsewhere() -> None:
    with pytest.raises(RuntimeError, match="only on macOS"):
        MacBackend()
    assert "AppKit" not in sys.modules and "Quartz" not in sys.modules


def test_the_unknown_backend_never_raises_and_says_why() -> None:
    backend = UnknownBackend("a Wayland session")
    for _ in range(3):
        assert backend.active_window() == UNKNOWN
        assert backend.idle_seconds() is None
    backend.close()
    backend.close()
    assert backend.name == "unknown" and backend.reason == "a Wayland session"


X_ANSWERS = {":0": True, ":1": False}


@pytest.mark.parametrize(
    ("platform", "environ", "expected", "why"),
    [
        ("win32", {}, "windows", "Windows"),
        ("darwin", {"DISPLAY": ":0"}, "macos", "macOS"),
        ("linux", {"DISPLAY": ":0"}, "x11", "X server on DISPLAY=:0"),
        ("linux", {"DISPLAY": ":0", "XDG_SESSION_TYPE": "x11"}, "x11", "X server"),
        ("freebsd14", {"DISPLAY": ":0"}, "x11", "X server"),
        ("linux", {"DISPLAY": ":1"}, "unknown", "no X server answers on DISPLAY=:1"),
        ("linux", {}, "unknown", "no DISPLAY"),
        ("linux", {"XDG_SESSION_TYPE": "wayland"}, "unknown", "Wayland session without X"),
        ("linux", {"WAYLAND_DISPLAY": "wayland-0"}, "unknown", "Wayland session without X"),
        ("linux", {"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, "unknown", "XWayland"),
        ("linux", {"DISPLAY": ":0", "XDG_SESSION_TYPE": "wayland"}, "unknown", "XWayland"),
        ("linux", {"DISPLAY": ":0", "WAYLAND_DISPLAY": "w-0", OVERRIDE_VARIABLE: "x11"}, "x11", "=x11"),
        ("linux", {"DISPLAY": ":0", OVERRIDE_VARIABLE: "unknown"}, "unknown", "=unknown"),
        ("linux", {OVERRIDE_VARIABLE: " Windows "}, "windows", "=windows"),
        ("win32", {OVERRIDE_VARIABLE: "macos"}, "macos", "=macos"),
        ("linux", {"DISPLAY": ":0", OVERRIDE_VARIABLE: "wayland"}, "x11", "X server"),
        ("sunos5", {"DISPLAY": ":0"}, "unknown", "no collector for platform 'sunos5'"),
    ],
)
def test_choose_backend(
    platform: str, environ: dict[str, str], expected: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "workpulse.agent.collectors")
    choice = choose_backend(environ, platform, x11_reachable=X_ANSWERS.__getitem__)
    assert (choice.name, why in choice.reason) == (expected, True), choice.reason
    decisions = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert decisions == [f"activity collector: {expected} ({choice.reason})"]


def test_an_unknown_override_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    choose_backend({OVERRIDE_VARIABLE: "wayland"}, "linux", x11_reachable=X_ANSWERS.__getitem__)
    assert any(r.levelno == logging.WARNING and "wayland" in r.getMessage() for r in caplog.records)


def test_the_unknown_choice_builds_a_backend_that_says_why() -> None:
    choice = choose_backend({"XDG_SESSION_TYPE": "wayland"}, "linux")
    backend = choice()
    assert isinstance(backend, UnknownBackend) and backend.reason == choice.reason


# logind: the signal handling, fed messages as the bus would deliver them.

LOGIND_NAME = ":1.7"
SESSION = "/org/freedesktop/login1/session/_32"


def _sleep(start: bool, sender: str = LOGIND_NAME) -> Message:
    return Message(
        message_type=MessageType.SIGNAL,
        sender=sender,
        path=MANAGER_PATH,
        interface=MANAGER_INTERFACE,
        member="PrepareForSleep",
        signature="b",
        body=[start],
    )


def _properties(changed: dict[str, Variant], path: str = SESSION, interface: str = SESSION_INTERFACE) -> Message:
    return Message(
        message_type=MessageType.SIGNAL,
        sender=LOGIND_NAME,
        path=path,
        interface=PROPERTIES_INTERFACE,
        member="PropertiesChanged",
        signature="sa{sv}as",
        body=[interface, changed, []],
    )


def _lock(locked: bool, **where: str) -> Message:
    return _properties({"LockedHint": Variant("b", locked)}, **where)


def test_a_locked_session_counts_as_locked_until_unlocked() -> None:
    state = LockState(LOGIND_NAME, SESSION)
    state.handle_message(_lock(True))
    assert state.locked
    state.handle_message(_properties({"IdleHint": Variant("b", False)}))  # another property
    assert state.locked
    state.handle_message(_lock(False))
    assert not state.locked


def test_suspend_counts_as_locked_until_the_wake_up() -> None:
    state = LockState(LOGIND_NAME, SESSION)
    state.handle_message(_sleep(True))
    state.handle_message(_lock(True))
    state.handle_message(_lock(False))  # unlocked during the suspend: still asleep
    assert state.locked
    state.handle_message(_sleep(False))
    assert not state.locked


@pytest.mark.parametrize(
    "message",
    [
        _lock(True, path="/org/freedesktop/login1/session/_99"),  # another user's session
        _lock(True, interface="org.freedesktop.login1.User"),
        _sleep(True, sender=":1.666"),  # forged by another client on the bus
    ],
)
def test_signals_that_are_not_logind_about_this_session_are_ignored(message: Message) -> None:
    state = LockState(LOGIND_NAME, SESSION)
    assert state.handle_message(message) is None
    assert not state.locked


def test_a_method_call_looking_like_the_signal_is_ignored() -> None:
    state = LockState(LOGIND_NAME, SESSION)
    call = Message(
        sender=LOGIND_NAME,
        path=MANAGER_PATH,
        interface=MANAGER_INTERFACE,
        member="PrepareForSleep",
        signature="b",
        body=[True],
    )
    state.handle_message(call)
    assert not state.locked


async def test_without_a_system_bus_nothing_is_locked_and_nothing_fails(
    tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "workpulse.agent.collectors")
    monitor = LockMonitor(bus_address=f"unix:path={tmp_path}/no-such-bus")
    await monitor.start()
    assert not monitor.locked and not monitor.watching
    await monitor.close()
    await monitor.close()
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and "not watched" in notes[0] and "no-such-bus" in notes[0]
