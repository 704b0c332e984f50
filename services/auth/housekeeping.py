"""Periodic clean-up of identity rows that can no longer matter, and of published outbox rows.
Safe with any number of replicas (plain, idempotent deletes on the maintenance engine)."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from workpulse.outbox import purge_published

logger = logging.getLogger("workpulse.auth.housekeeping")

# Spent refresh tokens are kept until they expire: a replay before then must still be
# recognised as reuse (and revoke its family). After expiry a replay is simply invalid.
_EXPIRED_REFRESH_TOKENS = "delete from auth.refresh_tokens where expires_at < now() - make_interval(days => :days)"
_OLD_INVITES = "delete from auth.invites where expires_at < now() - make_interval(days => :days)"


async def purge(maintenance: AsyncEngine, *, retention_days: int) -> dict[str, int]:
    """Deletes refresh tokens and invites expired more than ``retention_days`` ago."""
    async with maintenance.begin() as conn:
        tokens = await conn.execute(text(_EXPIRED_REFRESH_TOKENS), {"days": retention_days})
        invites = await conn.execute(text(_OLD_INVITES), {"days": retention_days})
    events = await purge_published(maintenance, "auth")
    return {"refresh_tokens": int(tokens.rowcount or 0), "invites": int(invites.rowcount or 0), "outbox_rows": events}


async def run(maintenance: AsyncEngine, *, retention_days: int, interval_seconds: float) -> None:
    """Cleans up every interval until cancelled; a failed round is logged and retried."""
    while True:
        try:
            purged = await purge(maintenance, retention_days=retention_days)
            if any(purged.values()):
                logger.info("housekeeping", extra={"fields": purged})
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("housekeeping failed; will retry", exc_info=True)
        await asyncio.sleep(interval_seconds)
