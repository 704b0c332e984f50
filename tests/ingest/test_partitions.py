"""Daily partitions: created ahead idempotently, rows stranded in DEFAULT moved into the new
day, old days dropped; only the maintenance role may run them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ingest.partitions import drop_partitions_before, ensure_partitions
from workpulse.db import create_engine
from workpulse.postgres import MAINTENANCE_ROLE


@pytest.fixture
async def maintenance(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, role=MAINTENANCE_ROLE, pool_size=1)
    yield engine
    await engine.dispose()


async def _partition_of(owner: AsyncEngine, client_event_id: str) -> str:
    async with owner.connect() as conn:
        found = await conn.execute(
            text("select tableoid::regclass::text from ingest.activity_logs where client_event_id = :c"),
            {"c": client_event_id},
        )
        return str(found.scalar_one())


async def test_new_days_adopt_rows_from_default_and_old_days_are_dropped(
    maintenance: AsyncEngine, owner_engine: AsyncEngine
) -> None:
    far = date(2031, 5, 17)
    marker = f"stranded-{uuid.uuid4().hex}"
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                'insert into ingest.activity_logs (organization_id, session_id, user_id, "timestamp", '
                "activity_type, duration_seconds, client_event_id) values (gen_random_uuid(), gen_random_uuid(), "
                "gen_random_uuid(), :ts, 'active', 60, :c)"
            ),
            {"ts": datetime(2031, 5, 17, 13, tzinfo=UTC), "c": marker},
        )
    assert await _partition_of(owner_engine, marker) == "ingest.activity_logs_default"

    created = await ensure_partitions(maintenance, far - timedelta(days=1), far + timedelta(days=1))
    assert created == ["activity_logs_p20310516", "activity_logs_p20310517", "activity_logs_p20310518"]
    assert await ensure_partitions(maintenance, far, far) == []
    assert await _partition_of(owner_engine, marker) == "ingest.activity_logs_p20310517"

    # Days older than any other test's partitions (the database is shared by the suite).
    await ensure_partitions(maintenance, date(1990, 3, 1), date(1990, 3, 2))
    assert await drop_partitions_before(maintenance, date(1990, 3, 2)) == ["activity_logs_p19900301"]
    assert await drop_partitions_before(maintenance, date(1990, 3, 2)) == []
    async with owner_engine.connect() as conn:
        kept = await conn.execute(text("select to_regclass('ingest.activity_logs_p19900302')::text"))
        assert kept.scalar_one() == "ingest.activity_logs_p19900302"
    # Leave no old partitions behind: the scheduler's retention test drops everything old.
    assert await drop_partitions_before(maintenance, date(1990, 3, 3)) == ["activity_logs_p19900302"]


async def test_the_runtime_role_cannot_create_partitions(database_url: str) -> None:
    app = create_engine(database_url, pool_size=1)
    try:
        with pytest.raises(DBAPIError, match="permission denied"):
            await ensure_partitions(app, date(2032, 1, 1), date(2032, 1, 1))
    finally:
        await app.dispose()
