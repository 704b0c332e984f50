"""Fixed-window rate limits kept in Redis, so every replica shares the counters."""

from __future__ import annotations

import redis.asyncio as aioredis

from workpulse.errors import RateLimited

# INCR and set the expiry in one round trip; returns the count and the remaining TTL.
_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('TTL', KEYS[1])}
"""


class RateLimiter:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._hit = client.register_script(_HIT)

    async def hit(self, key: str, *, limit: int, window_seconds: int, what: str) -> None:
        """Counts one attempt; raises :class:`RateLimited` past ``limit`` per window."""
        count, ttl = await self._hit(keys=[key], args=[window_seconds])
        if int(count) > limit:
            raise RateLimited(f"too many {what}; retry later", retry_after=int(ttl) if int(ttl) > 0 else 1)

    async def reset(self, key: str) -> None:
        await self._client.delete(key)
