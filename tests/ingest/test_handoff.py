"""Totals hand-offs: stale ones are redelivered exactly once in effect, confirmed ones
are purged after the retention period."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ingest.handoff import TotalsHandoff
from services.ingest.sessions_peer import SessionsPeer
from tests.ingest.conftest import Stack, UserFactory
from tests.support import TokenFactory, eventually
from workpulse.db import UnitOfWork, create_engine
from workpulse.grpc_client import channel
from workpulse.identity import ServiceIdentity, load_private_key
from workpulse.postgres import MAINTENANCE_ROLE
from workpulse.sessions.v1 import sessions_pb2 as spb
from workpulse.sessions.v1 import sessions_pb2_grpc


@pytest.fixture
async def handoff(database_url: str, stack: Stack, tokens: TokenFactory) -> AsyncIterator[TotalsHandoff]:
    engine = create_engine(database_url, pool_size=2)
    maintenance = create_engine(database_url, role=MAINTENANCE_ROLE, pool_size=2)
    identity = ServiceIdentity("ingest", load_private_key(tokens.service_private), tokens.audience)
    peer_channel = channel(stack.sessions_address, identity=identity)
    yield TotalsHandoff(
        UnitOfWork(engine),
        maintenance,
        SessionsPeer(sessions_pb2_grpc.SessionsServiceStub(peer_channel)),  # type: ignore[arg-type]
        redeliver_after_seconds=0.0,
    )
    await peer_channel.close()
    await maintenance.dispose()
    await engine.dispose()


async def _pending_row(owner: AsyncEngine, org: str, session_id: str, user_id: str, published: str | None) -> int:
    payload = {
        "session_id": session_id,
        "user_id": user_id,
        "active_seconds": 42,
        "idle_seconds": 8,
        "last_activity_at": datetime.now(UTC).isoformat(),
        "event_count": 2,
    }
    async with owner.begin() as conn:
        found = await conn.execute(
            text(
                "insert into ingest.outbox (organization_id, topic, event_type, payload, published_at) "
                "values (:org, 'session_totals', 'SESSION_TOTALS_DELTA', cast(:p as jsonb), "
                "cast(:published as timestamptz)) returning id"
            ),
            {"org": org, "p": json.dumps(payload), "published": published},
        )
        return int(found.scalar_one())


async def _published(owner: AsyncEngine, row_id: int) -> object:
    async with owner.connect() as conn:
        found = await conn.execute(text("select published_at from ingest.outbox where id = :id"), {"id": row_id})
        return found.scalar_one_or_none()


async def test_a_stale_hand_off_is_applied_once_however_often_it_is_redelivered(
    handoff: TotalsHandoff, stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    user = make_user()
    session = await stack.start(user)
    row = await _pending_row(owner_engine, user.org, session.id, user.id, None)

    async def confirmed() -> bool:
        # This redeliverer, or the test server's own (both may run): either way, once.
        await handoff.redeliver_once()
        return await _published(owner_engine, row) is not None

    await eventually(confirmed, timeout=10, what="redelivery")
    # The same hand-off again (a mark lost after a crash): sessions counts the key once.
    async with owner_engine.begin() as conn:
        await conn.execute(text("update ingest.outbox set published_at = null where id = :id"), {"id": row})
    await eventually(confirmed, timeout=10, what="second redelivery")
    reply = await stack.sessions.GetSession(spb.GetSessionRequest(session_id=session.id), metadata=user.md)
    assert (reply.session.total_active_seconds, reply.session.total_idle_seconds) == (42, 8)


async def test_confirmed_rows_are_purged_after_the_retention(handoff: TotalsHandoff, owner_engine: AsyncEngine) -> None:
    org, sid, uid = (str(uuid.uuid4()) for _ in range(3))
    old = await _pending_row(owner_engine, org, sid, uid, "2000-01-01T00:00:00Z")
    recent = await _pending_row(owner_engine, org, sid, uid, datetime.now(UTC).isoformat())
    purge = asyncio.create_task(handoff.run_purge(3600, keep_hours=24))
    try:

        async def old_gone() -> bool:
            async with owner_engine.connect() as conn:
                found = await conn.execute(text("select count(*) from ingest.outbox where id = :id"), {"id": old})
                return found.scalar_one() == 0

        await eventually(old_gone, timeout=10, what="purge of the old row")
        assert await _published(owner_engine, recent) is not None
    finally:
        purge.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await purge
