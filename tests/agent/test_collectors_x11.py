"""The X11 collector and the watchdog against a real X server (Xvfb + openbox)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from functools import partial

import pytest

from agent.collectors import choose_backend
from agent.collectors.base import UNKNOWN_APP, WindowSample
from agent.collectors.watchdog import GuardedCollector
from agent.collectors.x11 import X11Backend, X11Unavailable, decode_text
from tests.agent.desktop import Desktop

UNKNOWN = WindowSample(UNKNOWN_APP)


@pytest.fixture
def backend(desktop: Desktop) -> Iterator[X11Backend]:
    opened = X11Backend(desktop.display)
    yield opened
    opened.close()


def test_the_sample_follows_the_focus(desktop: Desktop, backend: X11Backend) -> None:
    clock = desktop.open(["xclock"])
    logo = desktop.open(["xlogo", "-title", "Logo window"])

    desktop.focus(clock)
    assert backend.active_window() == WindowSample("XClock", "xclock")
    desktop.focus(logo)
    assert backend.active_window() == WindowSample("XLogo", "Logo window")
    desktop.focus(clock)
    assert backend.active_window().app == "XClock"


def test_the_title_is_read_in_every_encoding_clients_use(desktop: Desktop, backend: X11Backend) -> None:
    # In a UTF-8 locale Xt writes a non-Latin-1 title as a COMPOUND_TEXT WM_NAME (Latin-1
    # with a UTF-8 segment); in the C locale it writes the raw UTF-8 bytes as STRING.
    clock = desktop.open(["xclock", "-title", "Zürich ✓ clock"], env={"LC_ALL": "C.UTF-8"})
    desktop.focus(clock)
    assert backend.active_window().title == "Zürich ✓ clock"
    clock = desktop.open(["xclock", "-title", "Zürich ✓ clock"], env={"LC_ALL": "C"})
    desktop.focus(clock)
    assert backend.active_window().title == "Zürich ✓ clock"
    # GTK and Qt set _NET_WM_NAME as UTF8_STRING, which wins over WM_NAME.
    desktop.set_title(clock, "Ünïcode ✓ — 日本")
    assert backend.active_window() == WindowSample("XClock", "Ünïcode ✓ — 日本")


def test_idle_time_grows_without_input_and_drops_after_it(desktop: Desktop, backend: X11Backend) -> None:
    desktop.mousemove(10, 10)
    first = backend.idle_seconds()
    time.sleep(0.6)
    later = backend.idle_seconds()
    desktop.mousemove(400, 300)
    after_input = backend.idle_seconds()

    assert first is not None and later is not None and after_input is not None
    assert later >= first + 0.5
    assert after_input < 0.5 < later


def test_no_focused_window_reads_as_unknown(desktop: Desktop, backend: X11Backend) -> None:
    assert backend.active_window() == UNKNOWN
    logo = desktop.open(["xlogo"])
    desktop.focus(logo)
    assert backend.active_window().app == "XLogo"
    desktop.close_window(logo)
    assert backend.active_window() == UNKNOWN


def test_a_window_closed_between_two_reads_reads_as_unknown(desktop: Desktop, backend: X11Backend) -> None:
    eyes = desktop.open(["xeyes"])
    assert backend.window_sample(eyes).app == "XEyes"
    desktop.close_window(eyes)
    # The X server answers BadWindow: the backend reports unknown and stays usable.
    assert backend.window_sample(eyes) == UNKNOWN
    assert backend.idle_seconds() is not None


def test_without_the_screensaver_extension_idle_is_unknowable() -> None:
    desktop = Desktop(server_args=["-extension", "MIT-SCREEN-SAVER"])
    try:
        backend = X11Backend(desktop.display)
        logo = desktop.open(["xlogo"])
        desktop.focus(logo)
        assert backend.idle_seconds() is None
        assert backend.active_window().app == "XLogo"
        backend.close()
    finally:
        desktop.close()


def test_a_dead_display_raises_a_clear_error(desktop: Desktop, backend: X11Backend) -> None:
    desktop.kill_server()
    with pytest.raises(X11Unavailable, match="went away"):
        backend.active_window()
    with pytest.raises(X11Unavailable):
        backend.idle_seconds()
    backend.close()  # releasing a broken connection does not raise
    with pytest.raises(X11Unavailable, match="cannot open"):
        X11Backend(desktop.display)


def test_choose_backend_picks_x11_on_a_reachable_display(desktop: Desktop) -> None:
    choice = choose_backend(desktop.env, "linux")
    assert choice.name == "x11"
    chosen = choice()
    try:
        assert chosen.idle_seconds() is not None
    finally:
        chosen.close()


def test_choose_backend_falls_back_when_no_server_answers(desktop: Desktop) -> None:
    desktop.kill_server()
    choice = choose_backend(desktop.env, "linux")
    assert choice.name == "unknown"
    assert "no X server answers" in choice.reason


def test_compound_text_keeps_latin1_and_utf8_segments() -> None:
    assert decode_text(b"Z\xfcrich \x1b%G\xe2\x9c\x93\x1b%@ clock", "compound") == "Zürich ✓ clock"
    assert decode_text(b"caf\xe9", "string") == "café"  # Latin-1, as the ICCCM says
    assert decode_text("café".encode(), "string") == "café"  # UTF-8 in STRING, as xdotool writes it


# The watchdog: a hung call and a dead display must not stall the agent.


class HangingBackend:
    """A backend whose first window read blocks until released, like a wedged X server."""

    name = "hanging"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.closed = threading.Event()

    def active_window(self) -> WindowSample:
        self.release.wait(30)
        return WindowSample("late")

    def idle_seconds(self) -> float | None:
        return 1.0

    def close(self) -> None:
        self.closed.set()


class HealthyBackend:
    name = "healthy"

    def active_window(self) -> WindowSample:
        return WindowSample("Editor", "notes.txt")

    def idle_seconds(self) -> float | None:
        return 2.5

    def close(self) -> None:
        return None


async def test_a_hung_call_is_abandoned_and_the_backend_rebuilt(caplog: pytest.LogCaptureFixture) -> None:
    hung = HangingBackend()
    built = iter([hung, HealthyBackend()])
    collector = GuardedCollector(lambda: next(built), timeout=0.2, backoff=0.05)
    caplog.set_level(logging.INFO, "workpulse.agent.collectors")

    started = time.monotonic()
    assert await collector.active_window() == UNKNOWN
    assert time.monotonic() - started < 1.0
    assert collector.restarts == 1
    assert not collector.working

    await asyncio.sleep(0.06)  # the backoff
    # The hung call still blocks its own thread; the new backend has a thread of its own.
    assert await collector.active_window() == WindowSample("Editor", "notes.txt")
    assert await collector.idle_seconds() == 2.5
    assert collector.name == "healthy" and collector.restarts == 1

    hung.release.set()
    assert await asyncio.to_thread(hung.closed.wait, 5), "the abandoned backend is closed once its call returns"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no answer within 0.2s" in warnings[0].getMessage()
    assert any("works again" in r.getMessage() for r in caplog.records)
    collector.close()


async def test_a_failing_backend_is_retried_with_backoff_and_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    attempts: list[float] = []

    def broken() -> HealthyBackend:
        attempts.append(time.monotonic())
        raise X11Unavailable("cannot open X display ':99'")

    now = [0.0]
    collector = GuardedCollector(broken, timeout=0.5, backoff=1.0, max_backoff=4.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, "workpulse.agent.collectors")
    for second in range(20):
        now[0] = float(second)
        assert await collector.idle_seconds() is None
    # Retries at 0, 1, 3, 7, 11, 15, 19: doubling delays up to the cap, not one per call.
    assert len(attempts) == 7
    assert collector.restarts == 0  # nothing was built, so nothing was abandoned
    assert len(caplog.records) == 1


async def test_a_display_that_dies_under_the_collector(desktop: Desktop) -> None:
    logo = desktop.open(["xlogo"])
    desktop.focus(logo)
    collector = GuardedCollector(partial(X11Backend, desktop.display), timeout=1.0, backoff=0.05)
    assert (await collector.active_window()).app == "XLogo"

    desktop.kill_server()
    for _ in range(3):
        started = time.monotonic()
        assert await collector.active_window() == UNKNOWN
        assert await collector.idle_seconds() is None
        assert time.monotonic() - started < 1.0
        await asyncio.sleep(0.06)
    assert collector.restarts == 1
    collector.close()


async def test_a_frozen_x_server_times_out_and_recovers(desktop: Desktop) -> None:
    logo = desktop.open(["xlogo"])
    desktop.focus(logo)
    collector = GuardedCollector(partial(X11Backend, desktop.display), timeout=0.5, backoff=0.05)
    assert (await collector.active_window()).app == "XLogo"

    desktop.pause_server()
    started = time.monotonic()
    assert await collector.active_window() == UNKNOWN
    assert time.monotonic() - started < 1.5
    assert collector.restarts == 1

    desktop.resume_server()
    await asyncio.sleep(0.06)
    assert (await collector.active_window()).app == "XLogo"
    collector.close()
