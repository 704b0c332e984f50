"""Redis client factory and key naming.

Keys carry the deployment prefix and, where a tenant owns them, a ``{org}`` hash tag so
a tenant's keys share a Redis Cluster slot.
"""

from __future__ import annotations

import redis.asyncio as aioredis


def create_client(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, decode_responses=True, health_check_interval=30)


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def tenant(self, organization_id: str, *parts: str) -> str:
        return ":".join((self.prefix, "{" + organization_id + "}", *parts))
