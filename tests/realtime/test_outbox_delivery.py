"""Only committed state reaches subscribers: through the outbox, its relay, the events
stream and realtime, with a rolled-back transaction and a process killed mid-publish."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.realtime.clients import GrpcListener
from tests.realtime.conftest import RealtimeServer, subscribe_request
from tests.support import ROOT, TokenFactory
from workpulse import outbox
from workpulse.db import UnitOfWork, create_engine
from workpulse.migrate import outbox_ddl
from workpulse.postgres import MAINTENANCE_ROLE


@pytest.fixture
async def schema(owner_engine: AsyncEngine) -> AsyncIterator[str]:
    """A throwaway event-producing schema with the standard outbox table."""
    name = f"rt_{uuid.uuid4().hex[:8]}"
    async with owner_engine.begin() as conn:
        await conn.execute(text(f"create schema {name}"))
        await conn.execute(text(f"grant usage on schema {name} to workpulse_app, workpulse_maintenance"))
        for ddl in outbox_ddl(name):
            await conn.execute(text(ddl))
    yield name
    async with owner_engine.begin() as conn:
        await conn.execute(text(f"drop schema {name} cascade"))


def _relay(database_url: str, schema: str, redis: aioredis.Redis, realtime: RealtimeServer) -> outbox.OutboxRelay:
    publisher = outbox.StreamPublisher(redis, realtime.keys, "rt-test")
    return outbox.OutboxRelay(
        create_engine(database_url, role=MAINTENANCE_ROLE),
        schema,
        {outbox.EVENTS_TOPIC: publisher},
        listen_url=database_url,
    )


async def test_rolled_back_transaction_emits_nothing_committed_one_arrives(
    database_url: str,
    schema: str,
    channel: grpc.aio.Channel,
    realtime: RealtimeServer,
    redis: aioredis.Redis,
    tokens: TokenFactory,
) -> None:
    org, user = str(uuid.uuid4()), str(uuid.uuid4())
    listener = await GrpcListener(channel, tokens.user(org, user), subscribe_request()).started()
    relay = _relay(database_url, schema, redis, realtime)
    running = asyncio.create_task(relay.run())
    uow = UnitOfWork(create_engine(database_url))
    with contextlib.suppress(RuntimeError):
        async with uow.tenant(org) as conn:
            await outbox.add(conn, schema, org, "SESSION_UPDATE", {"userId": user, "n": "rolled back"})
            raise RuntimeError("the change fails after its event was written")
    async with uow.tenant(org) as conn:
        await outbox.add(conn, schema, org, "SESSION_UPDATE", {"userId": user, "n": "committed"})
    await listener.recorder.wait(lambda r: bool(r.of_type("SESSION_UPDATE")))
    # A later event proves nothing else was on its way before it.
    async with uow.tenant(org) as conn:
        await outbox.add(conn, schema, org, "OVERTIME_ALERT", {"userId": user, "n": "later"})
    await listener.recorder.wait(lambda r: bool(r.of_type("OVERTIME_ALERT")))
    assert [e.data["n"] for e in listener.recorder.events] == ["committed", "later"]
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await listener.close()
    await uow.engine.dispose()


# Commits an event, then claims it in a relay whose publisher never finishes; the test
# SIGKILLs the process at that point, between commit and publish.
_DOOMED = textwrap.dedent(
    """
    import asyncio, sys
    from workpulse import outbox
    from workpulse.db import UnitOfWork, create_engine
    from workpulse.postgres import MAINTENANCE_ROLE

    url, schema, org, user = sys.argv[1:5]

    async def never_publish(records):
        print("claimed", flush=True)
        await asyncio.sleep(3600)

    async def main():
        uow = UnitOfWork(create_engine(url))
        async with uow.tenant(org) as conn:
            await outbox.add(conn, schema, org, "INACTIVE_ALERT", {"userId": user, "idleMinutes": 7})
        print("committed", flush=True)
        relay = outbox.OutboxRelay(create_engine(url, role=MAINTENANCE_ROLE), schema,
                                   {outbox.EVENTS_TOPIC: never_publish}, listen_url=url)
        await relay.drain()

    asyncio.run(main())
    """
)


async def test_process_killed_between_commit_and_publish_still_delivers(
    database_url: str,
    schema: str,
    channel: grpc.aio.Channel,
    realtime: RealtimeServer,
    redis: aioredis.Redis,
    tokens: TokenFactory,
) -> None:
    org, user = str(uuid.uuid4()), str(uuid.uuid4())
    listener = await GrpcListener(channel, tokens.user(org, role="manager"), subscribe_request()).started()
    doomed = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _DOOMED, database_url, schema, org, user, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    assert doomed.stdout is not None
    lines: list[str] = []
    while not lines or lines[-1] not in ("claimed", ""):
        lines.append((await asyncio.wait_for(doomed.stdout.readline(), 30)).decode().strip())
    doomed.kill()  # SIGKILL: no clean-up runs
    await doomed.wait()
    assert lines == ["committed", "claimed"]
    assert listener.recorder.events == []

    # The process comes back (any replica's relay will do): the committed event is delivered once.
    relay = _relay(database_url, schema, redis, realtime)
    assert await relay.drain() == 1
    assert await relay.drain() == 0
    await listener.recorder.wait(lambda r: bool(r.of_type("INACTIVE_ALERT")))
    assert [(e.type, e.data) for e in listener.recorder.events] == [
        ("INACTIVE_ALERT", {"userId": user, "idleMinutes": 7})
    ]
    await listener.close()
