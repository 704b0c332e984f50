"""De-duplicating events sent without a timestamp, as an organization's history grows.

Each batch holds 10 events with client ids and no timestamp for a session started now;
the search for an earlier copy of each must cost the same whatever the organization has
stored before, in how many daily partitions. Measured straight on the repository (one
transaction per batch), median of 30 batches: with 10 days of partitions and no history,
then with 200 days of partitions and 100,000 stored events of other sessions.
"""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.ingest.domain import NewEvent
from services.ingest.repository import ActivityLogRepository
from tests.bench.harness import BenchEnv, Row
from workpulse.db import UnitOfWork, create_engine

BATCHES = 30


async def _median_batch_ms(uow: UnitOfWork, org: str, user: str, now: datetime) -> float:
    session = str(uuid.uuid4())
    took = []
    for n in range(BATCHES):
        rows = [
            (session, user, NewEvent(f"c{n}-{i}", now, "active", 1, None, None, None, match_any_timestamp=True))
            for i in range(10)
        ]
        started = time.perf_counter()
        async with uow.direct(org) as conn:
            await ActivityLogRepository(conn).insert_new(org, rows, {session: now})
        took.append(time.perf_counter() - started)
    return 1000 * statistics.median(took)


async def run(env: BenchEnv) -> list[Row]:
    owner = create_async_engine(env.database_url)
    uow = UnitOfWork(create_engine(env.database_url, pool_size=1))
    org, user, now = str(uuid.uuid4()), str(uuid.uuid4()), datetime.now(UTC)
    try:
        async with owner.begin() as conn:
            await conn.execute(
                text("select ingest.ensure_activity_partitions(cast(:a as date), cast(:b as date))"),
                {"a": (now - timedelta(days=10)).date(), "b": (now + timedelta(days=2)).date()},
            )
        young = await _median_batch_ms(uow, org, user, now)
        async with owner.begin() as conn:
            await conn.execute(
                text("select ingest.ensure_activity_partitions(cast(:a as date), cast(:b as date))"),
                {"a": (now - timedelta(days=200)).date(), "b": (now + timedelta(days=2)).date()},
            )
            await conn.execute(
                text(
                    'insert into ingest.activity_logs (organization_id, session_id, user_id, "timestamp", '
                    "activity_type, duration_seconds, client_event_id) "
                    "select cast(:org as uuid), gen_random_uuid(), cast(:user as uuid), "
                    "now() - (g % 200) * interval '1 day', 'active', 1, 'h' || g from generate_series(1, 100000) g"
                ),
                {"org": org, "user": user},
            )
            await conn.execute(text("analyze ingest.activity_logs"))
        old = await _median_batch_ms(uow, org, user, now)
    finally:
        await uow.engine.dispose()
        await owner.dispose()
    name = "de-dup of events without timestamp, 10 per batch"
    return [
        Row(name, "ms per batch: 10 days, no history", young),
        Row(name, "ms per batch: 200 days, 100k events", old, young, "10 days, no history", "~1x"),
    ]
