"""Housekeeping forgets idempotency keys past their retention, and only those."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.sessions.housekeeping import purge_applied_batches
from workpulse.db import create_engine
from workpulse.postgres import MAINTENANCE_ROLE


async def test_purge_forgets_only_expired_keys(owner_engine: AsyncEngine, database_url: str) -> None:
    org = str(uuid.uuid4())
    async with owner_engine.begin() as conn:
        for key, age_days in [("old-1", 40), ("old-2", 31), ("fresh", 29), ("new", 0)]:
            await conn.execute(
                text(
                    "insert into sessions.applied_batches (organization_id, idempotency_key, session_id, applied_at) "
                    "values (:org, :key, :sid, now() - make_interval(days => :age))"
                ),
                {"org": org, "key": key, "sid": str(uuid.uuid4()), "age": age_days},
            )
    maintenance = create_engine(database_url, role=MAINTENANCE_ROLE, pool_size=1)
    try:
        assert await purge_applied_batches(maintenance, 30, batch=1) >= 2
    finally:
        await maintenance.dispose()
    async with owner_engine.connect() as conn:
        left = (
            await conn.execute(
                text("select idempotency_key from sessions.applied_batches where organization_id = :org order by 1"),
                {"org": org},
            )
        ).scalars()
        assert list(left) == ["fresh", "new"]
