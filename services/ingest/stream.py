"""Flow control for the agent stream: a bounded number of batches in flight.

The next message is read from the stream only when a slot is free, so an agent that
sends faster than batches are made durable is held back by HTTP/2 flow control instead
of filling the server's memory. Acknowledgements go out as batches complete.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

Req = TypeVar("Req")
Ack = TypeVar("Ack")

_END = object()


async def acknowledged(
    requests: AsyncIterator[Req], handle: Callable[[Req], Awaitable[Ack]], *, max_in_flight: int
) -> AsyncIterator[Ack]:
    """Yields ``handle(request)`` for every request, at most ``max_in_flight`` at a time."""
    slots = asyncio.Semaphore(max_in_flight)
    acks: asyncio.Queue[object] = asyncio.Queue()
    running: set[asyncio.Task[None]] = set()

    async def one(request: Req) -> None:
        try:
            await acks.put(await handle(request))
        except BaseException as exc:
            await acks.put(exc)
            raise
        finally:
            slots.release()

    async def read() -> None:
        try:
            while True:
                await slots.acquire()
                try:
                    request = await anext(requests)
                except StopAsyncIteration:
                    break
                task = asyncio.create_task(one(request))
                running.add(task)
                task.add_done_callback(running.discard)
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        except BaseException as exc:
            await acks.put(exc)
            raise
        await acks.put(_END)

    reader = asyncio.create_task(read())
    try:
        while True:
            item = await acks.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        reader.cancel()
        for task in list(running):
            task.cancel()
        with contextlib.suppress(BaseException):
            await reader
