"""Redis client factory and key naming.

Keys carry the deployment prefix and, where a tenant owns them, a ``{org}`` hash tag so
a tenant's keys share a Redis Cluster slot.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis


def create_client(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, decode_responses=True, health_check_interval=30)


def raise_if_cancelled() -> None:
    """Re-raises a cancellation that redis-py swallowed mid-command (redis 8.1: a task
    cancelled while a command is in flight often gets the reply instead of
    ``CancelledError``). Every loop that calls Redis checks once per pass: a loop that
    went on after it would never stop, and its process would hang on SIGTERM."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def tenant(self, organization_id: str, *parts: str) -> str:
        return ":".join((self.prefix, "{" + organization_id + "}", *parts))
