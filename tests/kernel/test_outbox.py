"""The outbox publishes committed events once, never rolled-back ones, and survives a
relay that dies between commit and publish."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import eventually
from workpulse import outbox
from workpulse.db import UnitOfWork, create_engine
from workpulse.migrate import outbox_ddl
from workpulse.postgres import MAINTENANCE_ROLE
from workpulse.redisconn import Keys, events_stream


@pytest.fixture
async def schema(owner_engine: AsyncEngine) -> AsyncIterator[str]:
    name = f"kt_{uuid.uuid4().hex[:8]}"
    async with owner_engine.begin() as conn:
        await conn.execute(text(f"create schema {name}"))
        await conn.execute(text(f"grant usage on schema {name} to workpulse_app, workpulse_maintenance"))
        for ddl in outbox_ddl(name):
            await conn.execute(text(ddl))
    yield name
    async with owner_engine.begin() as conn:
        await conn.execute(text(f"drop schema {name} cascade"))


@pytest.fixture
def keys(redis_prefix: str) -> Keys:
    return Keys(f"{redis_prefix}:{uuid.uuid4().hex[:6]}")


async def _entries(client: aioredis.Redis, keys: Keys) -> list[dict[str, str]]:
    return [fields for _, fields in await client.xrange(events_stream(keys))]


async def test_committed_events_published_once_rolled_back_never(
    database_url: str, schema: str, keys: Keys, redis_client: aioredis.Redis
) -> None:
    app = UnitOfWork(create_engine(database_url))
    maintenance = create_engine(database_url, role=MAINTENANCE_ROLE)
    org = str(uuid.uuid4())
    async with app.tenant(org) as conn:
        await outbox.add(conn, schema, org, "SESSION_UPDATE", {"sessionId": "s1", "version": 2})
    with contextlib.suppress(RuntimeError):
        async with app.tenant(org) as conn:
            await outbox.add(conn, schema, org, "SESSION_UPDATE", {"sessionId": "rolled-back"})
            raise RuntimeError("abort the transaction")

    publisher = outbox.StreamPublisher(redis_client, keys, "kt")
    relay = outbox.OutboxRelay(maintenance, schema, {outbox.EVENTS_TOPIC: publisher}, listen_url=database_url)
    assert await relay.drain() == 1
    assert await relay.drain() == 0
    entries = await _entries(redis_client, keys)
    assert [json.loads(e["data"])["sessionId"] for e in entries] == ["s1"]
    assert entries[0]["org"] == org and entries[0]["type"] == "SESSION_UPDATE"
    await app.engine.dispose()
    await maintenance.dispose()


async def test_publish_then_crash_before_marking_causes_no_duplicate(
    database_url: str, schema: str, keys: Keys, redis_client: aioredis.Redis
) -> None:
    app = UnitOfWork(create_engine(database_url))
    maintenance = create_engine(database_url, role=MAINTENANCE_ROLE)
    org = str(uuid.uuid4())
    async with app.tenant(org) as conn:
        await outbox.add(conn, schema, org, "USER_ONLINE", {"userId": "u1"})
    publisher = outbox.StreamPublisher(redis_client, keys, "kt")

    async def publish_then_die(records: object) -> None:
        await publisher(records)  # type: ignore[arg-type]
        raise ConnectionError("relay died after publishing, before marking")

    crashing = outbox.OutboxRelay(maintenance, schema, {outbox.EVENTS_TOPIC: publish_then_die}, listen_url=database_url)
    with pytest.raises(ConnectionError):
        await crashing.drain()
    relay = outbox.OutboxRelay(maintenance, schema, {outbox.EVENTS_TOPIC: publisher}, listen_url=database_url)
    assert await relay.drain() == 1
    assert len(await _entries(redis_client, keys)) == 1
    await app.engine.dispose()
    await maintenance.dispose()


async def test_running_relay_is_woken_by_commit(
    database_url: str, schema: str, keys: Keys, redis_client: aioredis.Redis
) -> None:
    app = UnitOfWork(create_engine(database_url))
    maintenance = create_engine(database_url, role=MAINTENANCE_ROLE)
    publisher = outbox.StreamPublisher(redis_client, keys, "kt")
    relay = outbox.OutboxRelay(
        maintenance, schema, {outbox.EVENTS_TOPIC: publisher}, listen_url=database_url, poll_seconds=30
    )
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.3)  # let LISTEN register; the poll interval alone would take 30 s
        org = str(uuid.uuid4())
        async with app.tenant(org) as conn:
            await outbox.add(conn, schema, org, "SESSION_UPDATE", {"sessionId": "woken"})

        async def published() -> int:
            return len(await _entries(redis_client, keys))

        await eventually(published, timeout=5, what="event published after NOTIFY")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await app.engine.dispose()
        await maintenance.dispose()


async def test_tenant_transaction_sees_only_its_outbox_rows(database_url: str, schema: str) -> None:
    app = UnitOfWork(create_engine(database_url))
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    for org in (a, b):
        async with app.tenant(org) as conn:
            await outbox.add(conn, schema, org, "X", {})
    async with app.tenant(a) as conn:
        orgs = (await conn.execute(text(f"select organization_id::text from {schema}.outbox"))).scalars().all()
    assert orgs == [a]
    async with app.unscoped() as conn:
        assert (await conn.execute(text(f"select count(*) from {schema}.outbox"))).scalar() == 0
    with pytest.raises(Exception, match="row-level security"):
        async with app.tenant(a) as conn:
            await outbox.add(conn, schema, b, "X", {})
    await app.engine.dispose()


async def test_a_relay_stops_even_when_its_publisher_swallows_the_cancellation(database_url: str, schema: str) -> None:
    """redis-py can return a command's reply to a task that was cancelled meanwhile; the
    relay must still stop (else its process hangs on SIGTERM)."""
    app = UnitOfWork(create_engine(database_url))
    maintenance = create_engine(database_url, role=MAINTENANCE_ROLE)
    publishing = asyncio.Event()
    swallowed = 0

    async def swallowing_publisher(records: Sequence[outbox.OutboxRecord]) -> None:
        nonlocal swallowed
        publishing.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            swallowed += 1  # as redis-py does: the call returns as if it had completed

    relay = outbox.OutboxRelay(
        maintenance, schema, {outbox.EVENTS_TOPIC: swallowing_publisher}, listen_url=database_url, poll_seconds=0.05
    )
    org = str(uuid.uuid4())
    async with app.tenant(org) as conn:
        await outbox.add(conn, schema, org, "SESSION_UPDATE", {"sessionId": "s1"})
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.wait_for(publishing.wait(), 10)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done == {task} and task.cancelled() and swallowed == 1
    finally:
        task.cancel()
        await app.engine.dispose()
        await maintenance.dispose()
