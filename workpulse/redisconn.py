"""Redis client factory and key naming.

Keys carry the deployment prefix and, where a tenant owns them, a ``{org}`` hash tag so
a tenant's keys share a Redis Cluster slot.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


def create_client(url: str) -> aioredis.Redis:
    """A client that survives a Redis restart: a pooled connection the server closed fails
    its next command with "Connection closed by server", so a command is retried once on
    a fresh connection after a connection or timeout error (from_url's default is no retry).
    Retrying is safe for how this project uses Redis: reads, idempotent scripts and
    stream appends de-duplicated by event id; a counter may count one extra request."""
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        health_check_interval=30,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=1),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


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


def events_stream(keys: Keys) -> str:
    """The one stream every service publishes to and realtime consumes (here, not beside
    the outbox, so realtime reads it without loading SQLAlchemy: 25 MiB of its memory)."""
    return keys.key("{events}", "stream")
