"""Coalescing the in-line totals hand-offs of concurrent writes into batch calls.

A hand-off goes to sessions on the event loop's next turn when fewer than
``max_in_flight`` calls are out, with every hand-off queued in the same turn (a group
commit's hand-offs arrive together: one call, not one for the first and another for the
rest); otherwise it waits for a call to return and leaves with every hand-off queued
meanwhile, in one ``ApplyActivityBatch``. An idle process adds no wait; a busy one makes fewer, larger
calls instead of one per session (each call and transaction costs sessions more than the
statement it carries). Every hand-off keeps its own idempotency key, so batching changes
nothing about counting: a batch retried after a lost answer counts each key once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from services.ingest.domain import SessionTotals
from services.ingest.repository import PendingHandoff
from workpulse.errors import NotFound

Send = Callable[[list[PendingHandoff]], Awaitable[list[SessionTotals | NotFound]]]


class ApplyQueue:
    def __init__(self, send: Send, *, max_in_flight: int = 2, max_batch: int = 500) -> None:
        self._send = send
        self._max_in_flight = max_in_flight
        self._max_batch = max_batch
        self._queue: list[tuple[PendingHandoff, asyncio.Future[SessionTotals]]] = []
        self._in_flight = 0
        self._calls: set[asyncio.Task[None]] = set()
        self._pump_scheduled = False

    async def apply(self, handoff: PendingHandoff) -> SessionTotals:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[SessionTotals] = loop.create_future()
        self._queue.append((handoff, done))
        if not self._pump_scheduled:
            self._pump_scheduled = True
            loop.call_soon(self._scheduled_pump)
        return await done

    def _scheduled_pump(self) -> None:
        self._pump_scheduled = False
        self._pump()

    def _pump(self) -> None:
        while self._queue and self._in_flight < self._max_in_flight:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            self._in_flight += 1
            call = asyncio.create_task(self._call(batch))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)

    async def _call(self, batch: list[tuple[PendingHandoff, asyncio.Future[SessionTotals]]]) -> None:
        try:
            outcomes = await self._send([handoff for handoff, _ in batch])
        except BaseException as exc:
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, done), outcome in zip(batch, outcomes, strict=True):
                if done.done():  # its caller gave up waiting
                    continue
                if isinstance(outcome, NotFound):
                    done.set_exception(outcome)
                else:
                    done.set_result(outcome)
        finally:
            self._in_flight -= 1
            self._pump()

    async def close(self) -> None:
        """Waits for the calls in flight (their callers are owed an answer)."""
        if self._calls:
            await asyncio.gather(*self._calls, return_exceptions=True)
