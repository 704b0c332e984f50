"""Daily partitions of activity_logs, created ahead and dropped after retention.

The DDL runs inside SECURITY DEFINER functions of the ingest schema (see the migration),
so only the maintenance role's EXECUTE right is needed: call these with the maintenance
engine, on paths reserved to service identities. Both are idempotent and serialised by
an advisory lock, so replicas and the scheduler may call them concurrently.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def ensure_partitions(maintenance: AsyncEngine, first_day: date, last_day: date) -> list[str]:
    """Creates the missing daily partitions for [first_day, last_day]; returns their names.
    Rows already in the DEFAULT partition for those days move into the new partition."""
    async with maintenance.begin() as conn:
        rows = await conn.execute(
            text("select ingest.ensure_activity_partitions(:first, :last)"), {"first": first_day, "last": last_day}
        )
        return [str(r[0]) for r in rows]


async def drop_partitions_before(maintenance: AsyncEngine, cutoff: date) -> list[str]:
    """Drops the daily partitions whose days all end on or before ``cutoff``."""
    async with maintenance.begin() as conn:
        rows = await conn.execute(text("select ingest.drop_activity_partitions_before(:cutoff)"), {"cutoff": cutoff})
        return [str(r[0]) for r in rows]
