"""Several relays (replicas) draining one outbox at once publish its events in outbox id
order, each once: one relay per outbox and topic publishes at a time (an advisory lock),
so a later batch never overtakes an earlier one held by another relay."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from workpulse import outbox
from workpulse.db import UnitOfWork, create_engine
from workpulse.migrate import outbox_ddl
from workpulse.postgres import MAINTENANCE_ROLE

TRANSACTIONS = 60
RELAYS = 3


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


class Recorder:
    """What every relay publishes, in the order it is published; each publish takes a
    little while (as publishing to Redis does), so relays overlap."""

    def __init__(self) -> None:
        self.published: list[tuple[int, str]] = []  # (outbox id, "<transaction>:<A|B>")
        self.publishers: list[int] = []  # the relay of each batch

    def handler(self, relay: int) -> outbox.Handler:
        async def publish(records: Sequence[outbox.OutboxRecord]) -> None:
            self.publishers.append(relay)
            await asyncio.sleep(random.uniform(0, 0.004))
            for r in records:
                self.published.append((r.id, f"{r.payload['n']}:{r.payload['part']}"))
                await asyncio.sleep(0)

        return publish

    def relays(self, engines: list[AsyncEngine], schema: str, database_url: str) -> list[outbox.OutboxRelay]:
        return [
            outbox.OutboxRelay(
                engine, schema, {outbox.EVENTS_TOPIC: self.handler(n)}, listen_url=database_url, batch_size=3
            )
            for n, engine in enumerate(engines)
        ]


async def _commit_pairs(app: UnitOfWork, schema: str, org: str, numbers: range) -> None:
    """One transaction per number, each adding two events: A, then B."""
    for n in numbers:
        async with app.tenant(org) as conn:
            await outbox.add(conn, schema, org, "PAIR_A", {"n": n, "part": "A"})
            await outbox.add(conn, schema, org, "PAIR_B", {"n": n, "part": "B"})


async def _stored_ids(owner_engine: AsyncEngine, schema: str) -> list[int]:
    async with owner_engine.connect() as conn:
        return list((await conn.execute(text(f"select id from {schema}.outbox order by id"))).scalars())


async def _drain_until(relay: outbox.OutboxRelay, recorder: Recorder, expected: int, deadline: float) -> None:
    """One replica's loop: a batch at a time, pausing briefly between (as a busy relay's
    other work would), so the replicas take turns."""
    while len(recorder.published) < expected and time.monotonic() < deadline:
        await relay.drain_once(outbox.EVENTS_TOPIC)
        await asyncio.sleep(random.uniform(0, 0.002))


def _assert_in_order_once(published: list[tuple[int, str]], stored: list[int]) -> None:
    ids = [i for i, _ in published]
    overtaken = [(a, b) for a, b in itertools.pairwise(ids) if b <= a]
    assert not overtaken, f"published out of outbox order (earlier id after later): {overtaken[:10]}"
    assert ids == stored, "every committed event published exactly once"
    labels = [label for _, label in published]
    assert labels == [f"{n}:{part}" for n in range(len(stored) // 2) for part in "AB"]


async def test_concurrent_relays_publish_a_backlog_in_outbox_order_once_each(
    database_url: str, schema: str, owner_engine: AsyncEngine
) -> None:
    app = UnitOfWork(create_engine(database_url, pool_size=2))
    replicas = [create_engine(database_url, role=MAINTENANCE_ROLE, pool_size=2) for _ in range(RELAYS)]
    org = str(uuid.uuid4())
    try:
        await _commit_pairs(app, schema, org, range(TRANSACTIONS))
        stored = await _stored_ids(owner_engine, schema)
        assert len(stored) == 2 * TRANSACTIONS
        recorder = Recorder()
        relays = recorder.relays(replicas, schema, database_url)
        deadline = time.monotonic() + 30
        await asyncio.gather(*(_drain_until(r, recorder, len(stored), deadline) for r in relays))
        _assert_in_order_once(recorder.published, stored)
        assert len(recorder.publishers) == len(stored) // 3
        assert len(set(recorder.publishers)) > 1, "one relay did all the work: the relays never overlapped"
        assert [await r.drain() for r in relays] == [0] * RELAYS  # nothing left
    finally:
        await app.engine.dispose()
        for engine in replicas:
            await engine.dispose()


async def test_concurrent_relays_keep_the_order_while_transactions_commit(
    database_url: str, schema: str, owner_engine: AsyncEngine
) -> None:
    """Transactions commit one after another while three relays drain: each new event is
    published after every earlier one."""
    app = UnitOfWork(create_engine(database_url, pool_size=2))
    replicas = [create_engine(database_url, role=MAINTENANCE_ROLE, pool_size=2) for _ in range(RELAYS)]
    org = str(uuid.uuid4())
    recorder = Recorder()
    relays = recorder.relays(replicas, schema, database_url)
    try:
        deadline = time.monotonic() + 30
        drains = [asyncio.create_task(_drain_until(r, recorder, 2 * TRANSACTIONS, deadline)) for r in relays]
        await _commit_pairs(app, schema, org, range(TRANSACTIONS))
        await asyncio.gather(*drains)
        _assert_in_order_once(recorder.published, await _stored_ids(owner_engine, schema))
        assert len(set(recorder.publishers)) > 1, "one relay did all the work: the relays never overlapped"
    finally:
        await app.engine.dispose()
        for engine in replicas:
            await engine.dispose()
