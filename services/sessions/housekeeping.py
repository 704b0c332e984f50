"""Periodic clean-up of what only needs to live for a while: spent idempotency keys and
published outbox rows. Safe with any number of replicas (plain, idempotent deletes)."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from workpulse.outbox import purge_published

logger = logging.getLogger("workpulse.sessions.housekeeping")


async def purge_applied_batches(maintenance: AsyncEngine, retention_days: int, *, batch: int = 10_000) -> int:
    """Forgets idempotency keys older than the retention. Ingest re-delivers a hand-off
    within minutes, so a key that old can never be presented again."""
    total = 0
    while True:
        async with maintenance.begin() as conn:
            result = await conn.execute(
                text(
                    "delete from sessions.applied_batches where ctid in ("
                    " select ctid from sessions.applied_batches"
                    " where applied_at < now() - make_interval(days => :days) limit :batch)"
                ),
                {"days": retention_days, "batch": batch},
            )
        deleted = int(result.rowcount or 0)
        total += deleted
        if deleted < batch:
            return total


async def run(maintenance: AsyncEngine, *, retention_days: int, interval_seconds: float) -> None:
    """Cleans up every interval until cancelled; a failed round is logged and retried."""
    while True:
        try:
            keys = await purge_applied_batches(maintenance, retention_days)
            events = await purge_published(maintenance, "sessions")
            if keys or events:
                logger.info("housekeeping", extra={"fields": {"idempotency_keys": keys, "outbox_rows": events}})
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("housekeeping failed; will retry", exc_info=True)
        await asyncio.sleep(interval_seconds)
