"""Per-user request budget shared by every replica through Redis.

Generous (a well-behaved agent sends a batch every few seconds, so it never meets it);
service identities are exempt. The limiter counts in memory and reconciles with Redis in
the background (workpulse.ratelimit.BufferedRateLimiter): no round trip per request, and
while Redis is unreachable each replica enforces the budget on its own.
"""

from __future__ import annotations

from workpulse.identity import Principal
from workpulse.ratelimit import Limiter
from workpulse.redisconn import Keys


class RequestBudget:
    def __init__(self, limiter: Limiter | None, keys: Keys, *, requests_per_minute: int) -> None:
        self._limiter = limiter
        self._keys = keys
        self._limit = requests_per_minute

    async def spend(self, caller: Principal) -> None:
        """Counts one request or batch; RateLimited past the user's budget for the minute."""
        if self._limiter is None or caller.is_service or caller.organization_id is None:
            return
        key = self._keys.tenant(caller.organization_id, "ratelimit", "ingest", caller.subject)
        await self._limiter.hit(key, limit=self._limit, window_seconds=60, what="activity requests")
