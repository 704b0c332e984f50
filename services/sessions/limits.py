"""Per-user request budgets, shared by every replica through Redis.

Generous by default (a well-behaved client never meets them); service identities are
exempt. The limiter counts in memory and reconciles with Redis in the background
(workpulse.ratelimit.BufferedRateLimiter); while Redis is unreachable each replica
enforces the budget on its own.
"""

from __future__ import annotations

from workpulse.identity import Principal
from workpulse.ratelimit import Limiter
from workpulse.redisconn import Keys

READ = "read"
WRITE = "write"


class RequestBudget:
    def __init__(self, limiter: Limiter, keys: Keys, *, reads_per_minute: int, writes_per_minute: int) -> None:
        self._limiter = limiter
        self._keys = keys
        self._limits = {READ: reads_per_minute, WRITE: writes_per_minute}

    async def spend(self, caller: Principal, kind: str) -> None:
        """Counts one request of ``kind``; RateLimited past the user's budget for the minute."""
        if caller.is_service or caller.organization_id is None:
            return
        key = self._keys.tenant(caller.organization_id, "ratelimit", "sessions", kind, caller.subject)
        await self._limiter.hit(key, limit=self._limits[kind], window_seconds=60, what=f"session {kind}s")
