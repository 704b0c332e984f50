"""Fan-out: one reader of the events stream per process, bounded queues per subscriber.

Every realtime replica reads the whole stream with XREAD (no consumer group: each
replica serves its own subscribers) and hands each event only to the subscribers in its
audience, found through an index by organization and by user, so an event costs work
proportional to its audience, not to the number of connections.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from services.realtime.domain import Event, Viewer
from services.realtime.stream import EventStream
from workpulse.redisconn import raise_if_cancelled

logger = logging.getLogger("workpulse.realtime.hub")

Observer = Callable[[Sequence[Event]], Awaitable[object]]


_EVERYONE = "*"


def _audience_of(viewer: Viewer) -> tuple[str, str]:
    return (viewer.organization_id, _EVERYONE if viewer.sees_organization else viewer.user_id)


class Subscription:
    """A subscriber's bounded queue; overflow is remembered, not hidden."""

    def __init__(self, viewer: Viewer, capacity: int) -> None:
        self.viewer = viewer
        self.capacity = capacity
        self.overflowed = False
        self.wake = asyncio.Event()
        self._pending: deque[Event] = deque()

    def offer(self, event: Event) -> None:
        if self.overflowed:
            return
        if len(self._pending) >= self.capacity:
            self.overflowed = True
            self._pending.clear()
        else:
            self._pending.append(event)
        self.wake.set()

    def take(self) -> list[Event]:
        """Everything waiting, oldest first."""
        taken = list(self._pending)
        self._pending.clear()
        self.wake.clear()
        return taken


class EventHub:
    def __init__(
        self,
        stream: EventStream,
        *,
        queue_capacity: int,
        observers: Sequence[Observer] = (),
        block_ms: int = 2000,
        batch: int = 500,
    ) -> None:
        self.stream = stream
        self._capacity = queue_capacity
        self._observers = list(observers)
        self._block_ms = block_ms
        self._batch = batch
        # (organization, user) -> subscribers of that user's events; user "*": of all of them.
        self._audiences: dict[tuple[str, str], set[Subscription]] = {}
        self._observed: asyncio.Queue[list[Event]] = asyncio.Queue(maxsize=1000)
        self.position = ""
        self.started = asyncio.Event()
        # When this replica began reading the stream (epoch seconds): it has seen every
        # event since, and none before (the agent-silence sweep needs to know which).
        self.watching_since: float | None = None

    def subscribe(self, viewer: Viewer) -> Subscription:
        sub = Subscription(viewer, self._capacity)
        self._audiences.setdefault(_audience_of(viewer), set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        key = _audience_of(sub.viewer)
        members = self._audiences.get(key)
        if members is not None:
            members.discard(sub)
            if not members:
                del self._audiences[key]

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._audiences.values())

    def deliver(self, event: Event) -> None:
        for sub in self._audiences.get((event.organization_id, _EVERYONE), ()):
            sub.offer(event)
        if event.user_id is not None:
            for sub in self._audiences.get((event.organization_id, event.user_id), ()):
                sub.offer(event)

    async def run(self) -> None:
        """Tails the stream until cancelled; observers run beside it, never delaying delivery."""
        async with asyncio.TaskGroup() as group:
            if self._observers:
                group.create_task(self._observe())
            group.create_task(self._tail())

    async def _tail(self) -> None:
        backoff = 0.1
        while True:
            try:
                if not self.position:
                    self.position = await self.stream.last_id()
                    self.watching_since = time.time()
                    self.started.set()
                events = await self.stream.read_live(self.position, block_ms=self._block_ms, count=self._batch)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("reading the events stream failed; retrying", exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            raise_if_cancelled()
            if not events:
                continue
            self.position = events[-1].id
            for event in events:
                self.deliver(event)
            try:
                self._observed.put_nowait(events)
            except asyncio.QueueFull:
                logger.warning("observers fell behind; %d events not observed", len(events))

    async def _observe(self) -> None:
        while True:
            events = await self._observed.get()
            for observe in self._observers:
                try:
                    await observe(events)
                except Exception:
                    logger.warning("an events observer failed", exc_info=True)
                raise_if_cancelled()
