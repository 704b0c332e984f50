"""The sampling loop: collector → policy → merged events → outbox.

The window is sampled every ``window_sample_seconds`` and idle time read every
``idle_sample_seconds`` (and at every sample while idle, so the return of the user is
seen at once); the policy sets both. A locked screen or a suspend counts as idle at
once. Nothing is recorded without a session, outside the tracking hours, or for a
window a drop rule matches; what is recorded has already been redacted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

from agent.collectors.base import WindowSample
from agent.merging import ACTIVE, IDLE, Merger, OpenEvent
from agent.outbox import Outbox, StoredEvent
from agent.policy import Policy

logger = logging.getLogger("workpulse.agent.recorder")

OPEN_EVENT = "open_event"


class Collector(Protocol):
    async def active_window(self) -> WindowSample: ...

    async def idle_seconds(self) -> float | None: ...


class Recorder:
    def __init__(
        self,
        collector: Collector,
        outbox: Outbox,
        policy: Callable[[], Policy],
        session: Callable[[], str | None],
        *,
        locked: Callable[[], bool] = lambda: False,
        on_events: Callable[[], None] = lambda: None,
        flush_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._collector = collector
        self._outbox = outbox
        self._policy = policy
        self._session = session
        self._locked = locked
        self._on_events = on_events
        self._clock = clock
        self._sleep = sleep
        self._merger = Merger(flush_seconds)
        self._idle_read_at = float("-inf")
        self._idle_seconds: float | None = None
        # What ``status`` shows: the last sample as it would be recorded.
        self.app: str | None = None
        self.activity: str | None = None
        self.recording = False

    def recover(self) -> None:
        """Stores the event that was open when the agent last stopped (crash included)."""
        saved = self._outbox.get_state(OPEN_EVENT)
        if isinstance(saved, dict):
            event = OpenEvent.from_json(saved).closed(saved["last_seen"] + self._merger.interval)
            if event is not None:
                self._store([event])
        self._outbox.delete_state(OPEN_EVENT)

    async def run(self) -> None:
        self.recover()
        while True:
            started = self._clock()
            await self.tick()
            policy = self._policy()
            await self._sleep(max(0.0, policy.window_sample_seconds - (self._clock() - started)))

    async def tick(self) -> None:
        policy = self._policy()
        self._merger.interval = float(policy.window_sample_seconds)
        sample = await self._collector.active_window()
        now = self._clock()
        idle = await self._idle(now, policy)
        self.activity = IDLE if idle else ACTIVE
        session_id = self._session()
        tracking = policy.tracking(datetime.fromtimestamp(now, UTC))
        allowed = policy.apply(sample) if tracking else None
        if tracking and allowed is None and session_id is not None:
            self._outbox.count("dropped_by_policy")  # samples a drop rule kept off the device
        self.app = allowed.app if allowed is not None else None
        self.recording = session_id is not None and allowed is not None
        if session_id is None or allowed is None:
            done = self._merger.pause(now)
        else:
            done = self._merger.observe(now, session_id, self.activity, allowed)
        self._store(done)
        # The open event is kept on disk as it grows (one small write per sample), so a
        # crash loses at most one sample of it.
        current = self._merger.open
        if current is None:
            self._outbox.delete_state(OPEN_EVENT)
        else:
            self._outbox.put_state(OPEN_EVENT, current.to_json())

    def stop(self) -> None:
        """Ends the open event now (a clean shutdown)."""
        self._store(self._merger.pause(self._clock()))
        self._outbox.delete_state(OPEN_EVENT)

    async def _idle(self, now: float, policy: Policy) -> bool:
        if self._locked():
            return True
        was_idle = self.activity == IDLE
        if was_idle or now - self._idle_read_at >= policy.idle_sample_seconds:
            self._idle_seconds = await self._collector.idle_seconds()
            self._idle_read_at = now
        if self._idle_seconds is None:
            return False  # nothing tells: the user counts as active while a window has focus
        # Between reads the idle time grows with the clock (no input seen means none read).
        return self._idle_seconds + (now - self._idle_read_at) >= policy.idle_threshold_seconds

    def _store(self, events: list[StoredEvent]) -> None:
        if not events:
            return
        dropped = self._outbox.append(events)
        for e in events:
            # The device's own record of what it measured (the title stays out of logs).
            logger.info(
                "event recorded",
                extra={
                    "fields": {
                        "client_event_id": e.client_event_id,
                        "session_id": e.session_id,
                        "activity": e.activity,
                        "duration": e.duration,
                        "app": e.app,
                    }
                },
            )
        if dropped:
            logger.warning("disk cap reached: oldest events dropped", extra={"fields": {"dropped": dropped}})
        self._on_events()
