"""Screen lock and suspend from systemd-logind, over the D-Bus system bus (dbus-fast).

While the session is locked or the machine is going to sleep the user is idle at once,
whatever the idle counter says (it only starts over at the next input). logind tells
both: the session's ``LockedHint`` property (set by the desktop's screen locker through
``SetLockedHint``; lockers that never call it are not seen) and the manager's
``PrepareForSleep(true|false)`` signal around a suspend.

Without a system bus or logind (containers, CI, systems without systemd) this is logged
once and ``locked`` stays False: the idle counter alone decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

_log = logging.getLogger("workpulse.agent.collectors")

LOGIND = "org.freedesktop.login1"
MANAGER_PATH = "/org/freedesktop/login1"
MANAGER_INTERFACE = "org.freedesktop.login1.Manager"
SESSION_INTERFACE = "org.freedesktop.login1.Session"
PROPERTIES_INTERFACE = "org.freedesktop.DBus.Properties"
_BUS_PATH, _BUS_INTERFACE = "/org/freedesktop/DBus", "org.freedesktop.DBus"


class LogindUnavailable(RuntimeError):
    """logind answered a call with an error."""


class LockState:
    """The lock and sleep state of one logind session, kept from logind's signals.

    Only messages from ``logind_name`` (logind's unique bus name) are believed: any
    client may send a signal addressed to this connection.
    """

    def __init__(self, logind_name: str, session_path: str, *, locked_hint: bool = False) -> None:
        self.logind_name = logind_name
        self.session_path = session_path
        self.locked_hint = locked_hint
        self.sleeping = False

    @property
    def locked(self) -> bool:
        return self.locked_hint or self.sleeping

    def handle_message(self, message: Message) -> None:
        """Given every message the bus delivers; returns None so other handlers see it too."""
        if message.message_type is not MessageType.SIGNAL or message.sender != self.logind_name:
            return
        if (message.path, message.interface, message.member) == (MANAGER_PATH, MANAGER_INTERFACE, "PrepareForSleep"):
            self.sleeping = bool(message.body[0])
            _log.debug("logind: %s", "going to sleep" if self.sleeping else "woke up")
        elif (
            (message.path, message.interface, message.member)
            == (self.session_path, PROPERTIES_INTERFACE, "PropertiesChanged")
            and message.body[0] == SESSION_INTERFACE
            and "LockedHint" in message.body[1]
        ):
            self.locked_hint = bool(message.body[1]["LockedHint"].value)
            _log.debug("logind: session %s", "locked" if self.locked_hint else "unlocked")


class LockMonitor:
    """Follows logind for the agent: ``locked`` is True while locked or sleeping.

    ``session`` is the name given to logind's ``GetSession``: "auto" is the caller's
    session, or the user's graphical one when the agent runs outside any session (as a
    user service). ``bus_address`` replaces the system bus (tests).
    """

    def __init__(self, bus_address: str | None = None, *, session: str = "auto", timeout: float = 5.0) -> None:
        self._bus_address = bus_address
        self._session = session
        self._timeout = timeout
        self._bus: MessageBus | None = None
        self._state: LockState | None = None
        self._watch: asyncio.Task[None] | None = None

    @property
    def locked(self) -> bool:
        return self._state is not None and self._state.locked

    @property
    def watching(self) -> bool:
        """False without a bus or logind (and after the bus went away): ``locked`` is False."""
        return self._state is not None

    async def start(self) -> None:
        """Subscribes to logind; never raises."""
        try:
            self._state = await asyncio.wait_for(self._subscribe(), self._timeout)
        except Exception as exc:  # no bus, no logind, no session: the agent runs without
            bus = self._bus_address or "the system bus"
            _log.info("screen lock and suspend are not watched: no logind on %s (%s)", bus, _describe(exc))
            await self._disconnect()
            return
        assert self._bus is not None
        self._watch = asyncio.create_task(self._watch_disconnect(self._bus), name="logind-disconnect")
        _log.info("watching screen lock and suspend of logind session %s", self._state.session_path)

    async def close(self) -> None:
        watch, self._watch = self._watch, None
        await self._disconnect()
        if watch is not None:
            # Normally finished by the disconnect; cancelled only if that timed out.
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch

    async def _subscribe(self) -> LockState:
        bus = MessageBus(bus_address=self._bus_address, bus_type=BusType.SYSTEM)
        self._bus = bus
        await bus.connect()
        reply = await self._call(MANAGER_PATH, MANAGER_INTERFACE, "GetSession", "s", [self._session])
        state = LockState(str(reply.sender), str(reply.body[0]))
        # Subscribed before the first read, so a change in between is not lost.
        bus.add_message_handler(state.handle_message)
        await self._add_match(f"path='{MANAGER_PATH}',interface='{MANAGER_INTERFACE}',member='PrepareForSleep'")
        await self._add_match(
            f"path='{state.session_path}',interface='{PROPERTIES_INTERFACE}',member='PropertiesChanged',"
            f"arg0='{SESSION_INTERFACE}'"
        )
        hint = await self._call(
            state.session_path, PROPERTIES_INTERFACE, "Get", "ss", [SESSION_INTERFACE, "LockedHint"]
        )
        state.locked_hint = bool(hint.body[0].value)
        return state

    async def _add_match(self, rule: str) -> None:
        body = [f"type='signal',sender='{LOGIND}',{rule}"]
        await self._call(_BUS_PATH, _BUS_INTERFACE, "AddMatch", "s", body, destination=_BUS_INTERFACE)

    async def _call(
        self, path: str, interface: str, member: str, signature: str, body: list[Any], destination: str = LOGIND
    ) -> Message:
        assert self._bus is not None
        request = Message(
            destination=destination, path=path, interface=interface, member=member, signature=signature, body=body
        )
        reply = await self._bus.call(request)
        if reply.message_type is MessageType.ERROR:
            raise LogindUnavailable(f"{member}: {reply.error_name}: {' '.join(map(str, reply.body))}")
        return reply

    async def _watch_disconnect(self, bus: MessageBus) -> None:
        with contextlib.suppress(Exception):
            await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
        if self._bus is not bus:
            return  # closed on purpose
        # A stale "locked" would count the user idle for good: forget it.
        _log.info("system bus connection lost: screen lock and suspend are no longer watched")
        self._bus = self._state = None

    async def _disconnect(self) -> None:
        bus, self._bus, self._state = self._bus, None, None
        # A bus whose connect() failed has no socket: waiting for its end would never finish.
        if bus is None or not bus.connected:
            return
        bus.disconnect()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(bus.wait_for_disconnect(), self._timeout)  # type: ignore[no-untyped-call]


def _describe(exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return f"{type(exc).__name__}: {exc}"
