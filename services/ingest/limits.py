"""Per-user request budget shared by every replica through Redis.

Generous (a well-behaved agent sends a batch every few seconds, so it never meets it);
service identities are exempt; if Redis is unreachable the budget is not enforced rather
than refusing activity.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from workpulse.identity import Principal
from workpulse.ratelimit import RateLimiter
from workpulse.redisconn import Keys

logger = logging.getLogger("workpulse.ingest.limits")


class RequestBudget:
    def __init__(self, limiter: RateLimiter | None, keys: Keys, *, requests_per_minute: int) -> None:
        self._limiter = limiter
        self._keys = keys
        self._limit = requests_per_minute

    async def spend(self, caller: Principal) -> None:
        """Counts one request or batch; RateLimited past the user's budget for the minute."""
        if self._limiter is None or caller.is_service or caller.organization_id is None:
            return
        key = self._keys.tenant(caller.organization_id, "ratelimit", "ingest", caller.subject)
        try:
            await self._limiter.hit(key, limit=self._limit, window_seconds=60, what="activity requests")
        except RedisError:
            logger.warning("rate limiter unavailable; request allowed", exc_info=True)
