"""Per-user request budgets, shared by every replica through Redis.

Generous by default (a well-behaved client never meets them); service identities are
exempt. If Redis is unreachable the budget is not enforced rather than failing requests.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from workpulse.identity import Principal
from workpulse.ratelimit import RateLimiter
from workpulse.redisconn import Keys

logger = logging.getLogger("workpulse.sessions.limits")

READ = "read"
WRITE = "write"


class RequestBudget:
    def __init__(self, limiter: RateLimiter, keys: Keys, *, reads_per_minute: int, writes_per_minute: int) -> None:
        self._limiter = limiter
        self._keys = keys
        self._limits = {READ: reads_per_minute, WRITE: writes_per_minute}

    async def spend(self, caller: Principal, kind: str) -> None:
        """Counts one request of ``kind``; RateLimited past the user's budget for the minute."""
        if caller.is_service or caller.organization_id is None:
            return
        key = self._keys.tenant(caller.organization_id, "ratelimit", "sessions", kind, caller.subject)
        try:
            await self._limiter.hit(key, limit=self._limits[kind], window_seconds=60, what=f"session {kind}s")
        except RedisError:
            logger.warning("rate limiter unavailable; request allowed", exc_info=True)
