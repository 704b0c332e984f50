"""The logind monitor over a real D-Bus daemon (a private one), with a fake logind on it."""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusBool, DBusObjectPath, DBusStr
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_method, dbus_property, dbus_signal

from agent.collectors import LockMonitor
from agent.collectors.logind import LOGIND, MANAGER_INTERFACE, MANAGER_PATH, SESSION_INTERFACE
from tests.support import eventually

SESSION = "/org/freedesktop/login1/session/_31"


class FakeManager(ServiceInterface):
    def __init__(self) -> None:
        super().__init__(MANAGER_INTERFACE)
        self.asked: list[str] = []

    @dbus_method()
    def GetSession(self, name: DBusStr) -> DBusObjectPath:
        self.asked.append(name)
        return SESSION

    @dbus_signal()
    def PrepareForSleep(self, start: bool) -> DBusBool:
        return start


class FakeSession(ServiceInterface):
    def __init__(self) -> None:
        super().__init__(SESSION_INTERFACE)
        self.locked = False

    @dbus_property(access=PropertyAccess.READ)
    def LockedHint(self) -> DBusBool:
        return self.locked

    def lock(self, locked: bool) -> None:
        self.locked = locked
        self.emit_properties_changed({"LockedHint": locked})


@dataclass
class PrivateBus:
    address: str
    daemon: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.daemon.poll() is None:
            self.daemon.terminate()
            self.daemon.wait(10)


@pytest.fixture
def private_bus(tmp_path: Path) -> Iterator[PrivateBus]:
    """A private D-Bus daemon (session policy: any client may own any name)."""
    if shutil.which("dbus-daemon") is None:
        pytest.skip("dbus-daemon not installed (apt-get install dbus-daemon)")
    address = f"unix:path={tmp_path}/bus"
    daemon = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--address={address}", "--print-address=1"],
        stdout=subprocess.PIPE,
    )
    assert daemon.stdout is not None
    daemon.stdout.readline()  # printed once the daemon listens
    bus = PrivateBus(address, daemon)
    yield bus
    bus.stop()
    daemon.stdout.close()


@pytest.fixture
def bus_address(private_bus: PrivateBus) -> str:
    return private_bus.address


@pytest.fixture
async def logind(bus_address: str) -> AsyncIterator[tuple[FakeManager, FakeSession, MessageBus]]:
    bus = await MessageBus(bus_address=bus_address).connect()
    manager, session = FakeManager(), FakeSession()
    bus.export(MANAGER_PATH, manager)
    bus.export(SESSION, session)
    await bus.request_name(LOGIND)
    yield manager, session, bus
    bus.disconnect()
    with contextlib.suppress(Exception):  # EOFError when the daemon went first
        await bus.wait_for_disconnect()


async def _eventually(condition: Callable[[], bool]) -> None:
    async def check() -> bool:
        return condition()

    await eventually(check, timeout=5, interval=0.01, what="the signal")


async def test_the_monitor_follows_lock_and_sleep(
    bus_address: str, logind: tuple[FakeManager, FakeSession, MessageBus]
) -> None:
    manager, session, _ = logind
    session.locked = True  # locked before the agent starts
    monitor = LockMonitor(bus_address=bus_address)
    await monitor.start()
    try:
        assert monitor.watching and monitor.locked
        assert manager.asked == ["auto"]

        session.lock(False)
        await _eventually(lambda: not monitor.locked)
        manager.PrepareForSleep(True)
        await _eventually(lambda: monitor.locked)
        manager.PrepareForSleep(False)
        await _eventually(lambda: not monitor.locked)
        session.lock(True)
        await _eventually(lambda: monitor.locked)
    finally:
        await monitor.close()
    assert not monitor.watching and not monitor.locked


async def test_a_bus_without_logind_leaves_the_monitor_unlocked(
    bus_address: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "workpulse.agent.collectors")
    monitor = LockMonitor(bus_address=bus_address)
    await monitor.start()
    assert not monitor.watching and not monitor.locked
    assert [r.getMessage() for r in caplog.records if "not watched" in r.getMessage()]
    await monitor.close()


async def test_losing_the_bus_forgets_a_lock(
    private_bus: PrivateBus, logind: tuple[FakeManager, FakeSession, MessageBus]
) -> None:
    _, session, _ = logind
    session.locked = True
    monitor = LockMonitor(bus_address=private_bus.address)
    await monitor.start()
    assert monitor.locked
    private_bus.stop()  # the system bus restarted, say
    await _eventually(lambda: not monitor.watching)
    assert not monitor.locked
    await monitor.close()
