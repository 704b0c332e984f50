"""The events stream in Redis: live tail, replay after an id, retention."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
import redis.exceptions

from services.realtime.domain import Event, parse_stream_id
from workpulse.errors import Unavailable
from workpulse.redisconn import Keys, events_stream


@contextmanager
def store_errors() -> Iterator[None]:
    """A Redis outage surfaces as Unavailable (the caller may retry), not as an internal error."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise Unavailable("the events store is unavailable") from exc


@dataclass(frozen=True, slots=True)
class Replay:
    """The retained events after an id, and where reading stopped."""

    events: list[Event]
    # The id of the last entry read (visible to the reader or not); live events at or
    # before it were already covered by the replay.
    boundary: str
    # True when entries after the requested id were trimmed away or are too many to replay.
    gap: bool


class EventStream:
    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._client = client
        self.key = events_stream(keys)

    async def last_id(self) -> str:
        """The id of the newest entry, "0-0" for an empty stream."""
        newest = await self._client.xrevrange(self.key, "+", "-", count=1)
        return str(newest[0][0]) if newest else "0-0"

    async def read_live(self, after: str, *, block_ms: int, count: int) -> list[Event]:
        """Entries after ``after``, waiting up to ``block_ms`` for the first one."""
        reply: Any = await self._client.xread({self.key: after}, count=count, block=block_ms)
        if not reply:
            return []
        return [Event.from_entry(entry_id, fields) for entry_id, fields in _entries(reply[0][1])]

    async def replay(self, after: str, *, limit: int, page: int = 1000) -> Replay:
        """Up to ``limit`` entries after ``after``, in order; ``gap`` when some are no longer retained."""
        gap = await self._trimmed_after(after)
        events: list[Event] = []
        boundary = after
        while True:
            batch = _entries(await self._client.xrange(self.key, f"({boundary}", "+", count=page))
            for entry_id, fields in batch:
                events.append(Event.from_entry(entry_id, fields))
            if batch:
                boundary = batch[-1][0]
            if len(events) > limit:
                return Replay([], boundary, True)
            if len(batch) < page:
                return Replay(events, boundary, gap)

    async def _trimmed_after(self, after: str) -> bool:
        """Whether entries newer than ``after`` may have been removed (trimmed or deleted)."""
        try:
            info: dict[str, Any] = await self._client.xinfo_stream(self.key)
        except aioredis.ResponseError:  # no such key: nothing was ever trimmed
            return False
        position = parse_stream_id(after)
        if parse_stream_id(str(info.get("max-deleted-entry-id") or "0-0")) > position:
            return True
        added = info.get("entries-added")  # absent before Redis 7: assume trimming happened
        if added is not None and int(added) <= int(info["length"]):
            return False
        first = info.get("first-entry")
        oldest = str(first[0]) if first else str(info.get("last-generated-id") or "0-0")
        return parse_stream_id(oldest) > position

    async def trim_older_than(self, seconds: float) -> int:
        """Drops entries older than ``seconds`` (approximately, whole macro nodes)."""
        min_id = f"{int((time.time() - seconds) * 1000)}-0"
        return int(await self._client.xtrim(self.key, minid=min_id, approximate=True))


def _entries(raw: object) -> list[tuple[str, dict[str, str]]]:
    """Stream entries as the client returns them with decode_responses=True."""
    return cast(list[tuple[str, dict[str, str]]], raw)
