"""The events stream's retention in a real realtime server and real Redis: old entries are
trimmed, and a trim that Redis refuses is logged, not hidden."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis

from services.realtime.main import Settings, build
from tests.support import eventually
from workpulse.redisconn import Keys, events_stream

ENTRIES = 500  # several of Redis's stream nodes (100 entries each): approximate trimming drops whole nodes


@asynccontextmanager
async def _realtime(prefix: str, retention_seconds: float) -> AsyncIterator[None]:
    settings = Settings(grpc_port=0, redis_prefix=prefix, events_retention_seconds=retention_seconds)
    running, cleanup = await build(settings)
    try:
        yield
    finally:
        await running.server.stop(0.5)
        await cleanup()


async def test_entries_older_than_the_retention_are_trimmed(
    settings_env: dict[str, str], rt_prefix: str, redis: aioredis.Redis
) -> None:
    stream = events_stream(Keys(rt_prefix))
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(ENTRIES):
            pipe.xadd(stream, {"type": "SESSION_UPDATE", "org": "o", "ts": "", "data": f'{{"n": {n}}}'})
        ids = [str(i) for i in await pipe.execute()]
    async with _realtime(rt_prefix, retention_seconds=1.0):

        async def oldest_gone() -> bool:
            return not await redis.xrange(stream, ids[0], ids[0])

        await eventually(oldest_gone, timeout=10, what="the oldest entry trimmed")
    assert await redis.xlen(stream) < ENTRIES


async def test_a_trim_redis_refuses_is_logged_with_its_error(
    settings_env: dict[str, str], rt_prefix: str, redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # The stream's key holds another type: Redis answers every XTRIM with WRONGTYPE.
    await redis.set(events_stream(Keys(rt_prefix)), "not a stream")
    caplog.set_level(logging.WARNING)
    async with _realtime(rt_prefix, retention_seconds=1.0):

        async def logged() -> list[logging.LogRecord]:
            return [r for r in caplog.records if "trimming the events stream failed" in r.getMessage()]

        (first, *_) = await eventually(logged, timeout=10, what="a warning about the failed trim")
    assert first.levelno == logging.WARNING
    assert first.exc_info is not None and "WRONGTYPE" in str(first.exc_info[1])
