"""Group commit: concurrent submissions under one key share one commit.

Submissions queue per key (for ingest, an organization: one transaction runs under one
tenant). At most ``max_concurrent`` commits run at once in the process (about the size of
the connection pool, so callers queue here, in order, rather than on the pool); a free
slot takes everything queued for the key waiting longest, up to ``max_size`` (the sum of
the submissions' sizes; a submission larger than that still goes, alone). A lone
submission commits at once, so an idle process adds no wait; a busy one makes fewer,
larger commits instead of queueing callers on row locks.

A flush has two steps: ``commit`` runs inside the slot (the transaction), ``complete``
after the slot is released (work that waits on other services must not hold a
transaction slot). ``complete`` answers each submission, in order, with its result or
the exception it gets. Nothing here knows what is being committed.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
I = TypeVar("I")  # noqa: E741 - the item type, beside K, C and R
C = TypeVar("C")
R = TypeVar("R")


@dataclass(slots=True)
class _Submission(Generic[I, R]):
    item: I
    done: asyncio.Future[R]


class GroupCommit(Generic[K, I, C, R]):
    def __init__(
        self,
        commit: Callable[[K, list[I]], Awaitable[C]],
        complete: Callable[[K, list[I], C], Awaitable[list[R | BaseException]]],
        *,
        size: Callable[[I], int] = lambda _: 1,
        max_size: int = 4000,
        max_concurrent: int = 4,
    ) -> None:
        self._commit = commit
        self._complete = complete
        self._size = size
        self._max_size = max_size
        self._max_concurrent = max_concurrent
        # Keys with queued submissions, the longest waiting first.
        self._queues: OrderedDict[K, list[_Submission[I, R]]] = OrderedDict()
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, key: K, item: I) -> R:
        """Commits ``item`` with whatever else is queued under ``key``; its result."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(key, []).append(_Submission(item, done))
        self._start_flushes()
        return await done

    @property
    def running(self) -> int:
        """Commits holding a slot now."""
        return self._running

    def _start_flushes(self) -> None:
        while self._queues and self._running < self._max_concurrent:
            key, queue = next(iter(self._queues.items()))
            batch: list[_Submission[I, R]] = []
            size = 0
            while queue and (not batch or size + self._size(queue[0].item) <= self._max_size):
                submission = queue.pop(0)
                batch.append(submission)
                size += self._size(submission.item)
            if queue:
                self._queues.move_to_end(key)
            else:
                del self._queues[key]
            self._running += 1
            task = asyncio.create_task(self._flush(key, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush(self, key: K, batch: list[_Submission[I, R]]) -> None:
        slot_held = True

        def release_slot() -> None:
            nonlocal slot_held
            if slot_held:
                slot_held = False
                self._running -= 1
                self._start_flushes()

        items = [s.item for s in batch]
        try:
            committed = await self._commit(key, items)
            release_slot()
            results = await self._complete(key, items, committed)
            if len(results) != len(batch):
                raise AssertionError(f"complete answered {len(results)} of {len(batch)} submissions")
        except BaseException as exc:
            for submission in batch:
                if not submission.done.done():
                    submission.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for submission, result in zip(batch, results, strict=True):
                if submission.done.done():  # its caller gave up waiting
                    continue
                if isinstance(result, BaseException):
                    submission.done.set_exception(result)
                else:
                    submission.done.set_result(result)
        finally:
            release_slot()

    async def close(self) -> None:
        """Waits for flushes in progress (their callers are owed an answer)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
