"""PostgreSQL itself keeps tenants apart in ingest's tables: the runtime role sees the
current tenant's activity and outbox rows without any WHERE clause, and none without a
tenant; both tenants' rows are made here, so the check never passes on an empty table."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.ingest.conftest import Stack, UserFactory, event
from workpulse.db import UnitOfWork, create_engine
from workpulse.ingest.v1 import ingest_pb2 as pb

TABLES = ("ingest.activity_logs", "ingest.outbox")


async def test_runtime_role_sees_only_its_tenants_activity(
    stack: Stack, make_user: UserFactory, database_url: str, owner_engine: AsyncEngine
) -> None:
    ours, theirs = make_user(), make_user()
    for user in (ours, theirs):
        session = await stack.start(user)
        request = pb.RecordActivityRequest(session_id=session.id, event=event(30, at=datetime.now(UTC)))
        await stack.ingest.RecordActivity(request, metadata=user.md)
    async with owner_engine.connect() as conn:
        for table in TABLES:
            rows = await conn.execute(
                text(f"select count(*) from {table} where organization_id = :o"), {"o": theirs.org}
            )
            assert rows.scalar_one() > 0, table
    uow = UnitOfWork(create_engine(database_url, pool_size=1))
    try:
        for table in TABLES:
            async with uow.tenant(ours.org) as conn:
                seen = (await conn.execute(text(f"select distinct organization_id::text from {table}"))).scalars()
                assert list(seen) == [ours.org], table
            async with uow.unscoped() as conn:
                assert (await conn.execute(text(f"select count(*) from {table}"))).scalar_one() == 0, table
        with pytest.raises(DBAPIError, match="row-level security"):
            async with uow.tenant(ours.org) as conn:
                await conn.execute(
                    text(
                        'insert into ingest.activity_logs (organization_id, session_id, user_id, "timestamp", '
                        "activity_type, duration_seconds, client_event_id) "
                        "values (:org, :sid, :uid, now(), 'active', 1, 'planted')"
                    ),
                    {"org": theirs.org, "sid": str(uuid.uuid4()), "uid": theirs.id},
                )
    finally:
        await uow.engine.dispose()
