"""Totals hand-offs to sessions: applied in line, confirmed lazily, redelivered if lost.

A hand-off row is committed with its events. The request that wrote it applies it right
away (read-your-writes) and queues its id to be marked applied. If that call failed or
the process died, the row stays unmarked: a resent batch settles its session's pending
rows before it is acknowledged, and :meth:`TotalsHandoff.run_redelivery` applies rows
older than the in-line path needs. Sessions counts each idempotency key once, so a row
applied twice (a redelivery racing a slow in-line call) is still counted once.

The kernel's OutboxRelay is not used for this topic: it claims every unpublished row the
moment it runs, so it would race each in-line apply and double the calls to sessions;
redelivery here only takes rows older than ``redeliver_after_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ingest.apply_queue import ApplyQueue
from services.ingest.domain import SessionTotals
from services.ingest.repository import SCHEMA, HandoffRepository, PendingHandoff
from services.ingest.sessions_peer import SessionsPeer
from workpulse.db import UnitOfWork
from workpulse.errors import NotFound, WorkPulseError
from workpulse.outbox import purge_published

logger = logging.getLogger("workpulse.ingest.handoff")


class TotalsHandoff:
    def __init__(
        self,
        uow: UnitOfWork,
        maintenance: AsyncEngine,
        sessions: SessionsPeer,
        *,
        redeliver_after_seconds: float = 3.0,
        redeliver_interval_seconds: float = 1.0,
    ) -> None:
        self._uow = uow
        self._maintenance = maintenance
        self._sessions = sessions
        self._age = redeliver_after_seconds
        self._interval = redeliver_interval_seconds
        self._applied: list[int] = []
        self._applied_added = asyncio.Event()
        self._inline = ApplyQueue(sessions.apply_many)

    async def apply(self, handoff: PendingHandoff) -> SessionTotals:
        """The in-line apply of a write's fresh hand-off (coalesced with concurrent ones)."""
        totals = await self._inline.apply(handoff)
        self._applied.append(handoff.id)
        self._applied_added.set()
        return totals

    async def settle_batch(
        self,
        handoffs: list[PendingHandoff],
        repeated: frozenset[tuple[str, str]],
        sessions: set[tuple[str, str]],
    ) -> dict[tuple[str, str], SessionTotals | BaseException]:
        """The totals of each of a write's (organization, session) once its hand-offs are
        applied; a session with repeated events also gets its earlier pending hand-offs
        applied (their first attempt may have died); a session with nothing new is only read."""
        own = {(h.delta.organization_id, h.delta.session_id): h for h in handoffs}

        async def settle(organization_id: str, session_id: str) -> SessionTotals:
            if (organization_id, session_id) in repeated:
                found = await self.settle_session(organization_id, session_id)
                if found is not None:
                    return found
            handoff = own.get((organization_id, session_id))
            if handoff is not None:
                return await self.apply(handoff)
            return await self._sessions.totals(organization_id, session_id)

        order = sorted(sessions)
        results = await asyncio.gather(*(settle(*s) for s in order), return_exceptions=True)
        return dict(zip(order, results, strict=True))

    async def settle_session(self, organization_id: str, session_id: str) -> SessionTotals | None:
        """Applies every pending hand-off of a session (waiting for one being redelivered);
        the totals after the last, or None when nothing was pending."""

        async def settle() -> SessionTotals | None:
            totals: SessionTotals | None = None
            async with self._uow.tenant(organization_id) as conn:
                repo = HandoffRepository(conn)
                pending = await repo.lock_pending_for_session(session_id)
                for handoff in pending:
                    totals = await self._sessions.apply(handoff)
                await repo.mark_applied([h.id for h in pending])
            return totals

        return await self._uow.retrying(settle)

    async def redeliver_once(self, limit: int = 200) -> int:
        """Applies stale hand-offs of every tenant; returns how many were confirmed."""
        async with self._maintenance.begin() as conn:
            repo = HandoffRepository(conn)
            pending = await repo.lock_stale(self._age, limit)
            done: list[int] = []
            for handoff in pending:
                try:
                    await self._sessions.apply(handoff)
                except NotFound:
                    # The session is gone for good: keep the row's data, stop retrying.
                    logger.error("hand-off for an unknown session dropped", extra={"fields": {"id": handoff.id}})
                except WorkPulseError:
                    logger.warning("hand-off redelivery failed; will retry", extra={"fields": {"id": handoff.id}})
                    break
                done.append(handoff.id)
            await repo.mark_applied(done)
        return len(done)

    async def run_redelivery(self) -> None:
        while True:
            try:
                while await self.redeliver_once() > 0:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("hand-off redelivery pass failed", exc_info=True)
            await asyncio.sleep(self._interval)

    async def flush_applied(self) -> None:
        """Marks the in-line applied hand-offs (a lost mark only costs one redelivery)."""
        ids, self._applied = self._applied, []
        if not ids:
            return
        async with self._maintenance.begin() as conn:
            await conn.execute(text("set local synchronous_commit = off"))
            await HandoffRepository(conn).mark_applied_unless_busy(ids)

    async def run_marker(self, interval: float = 0.1) -> None:
        while True:
            await self._applied_added.wait()
            self._applied_added.clear()
            try:
                await self.flush_applied()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("marking applied hand-offs failed; redelivery will confirm them", exc_info=True)
            await asyncio.sleep(interval)

    async def run_purge(self, interval_seconds: float, keep_hours: int) -> None:
        """Deletes outbox rows (hand-offs and events) confirmed more than ``keep_hours`` ago."""
        while True:
            try:
                removed = await purge_published(self._maintenance, SCHEMA, keep_hours)
                if removed:
                    logger.info("purged confirmed outbox rows", extra={"fields": {"rows": removed}})
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("outbox purge failed; will retry", exc_info=True)
            await asyncio.sleep(interval_seconds)

    async def close(self) -> None:
        await self._inline.close()
        with contextlib.suppress(Exception):
            await self.flush_applied()
