"""Storing one group commit's activity in one transaction: de-duplicate, insert the new
events, and write their session's totals hand-off and ACTIVITY_RECORDED event beside them."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy.exc import OperationalError

from services.ingest.domain import NewEvent, SessionWindow, TotalsDelta, totals_delta
from services.ingest.repository import ActivityLogRepository, PendingHandoff
from workpulse.db import UnitOfWork

logger = logging.getLogger("workpulse.ingest.store")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ActivityWrite:
    """One caller's admitted events for one session."""

    window: SessionWindow
    events: list[NewEvent]


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """What a commit stored: per write (in order) its events that were new, and the
    hand-offs committed with them (one per session that got new events)."""

    fresh: list[list[NewEvent]]
    handoffs: list[PendingHandoff]
    # Sessions of which some submitted event was already stored: an earlier attempt of
    # it may have died between its commit and its hand-off.
    repeated: frozenset[str]


class ActivityStore:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def store(self, organization_id: str, writes: list[ActivityWrite]) -> StoredBatch:
        windows = {w.window.session_id: w.window for w in writes}
        owned = _owned(writes)
        # One order for every transaction, so concurrent resends of the same events
        # wait on each other instead of deadlocking.
        rows = sorted(
            ((w.window.session_id, w.window.user_id, e) for w, mine in zip(writes, owned, strict=True) for e in mine),
            key=lambda r: (r[0], r[2].client_event_id, r[2].timestamp),
        )

        async def transaction() -> tuple[set[tuple[str, str, datetime]], list[PendingHandoff]]:
            async with self._uow.direct(organization_id) as conn:
                log = ActivityLogRepository(conn)
                starts = {sid: w.start_time for sid, w in windows.items()}
                stored = await log.insert_new(organization_id, rows, starts)
                every = len(stored) == len(rows)
                new_by_session: dict[str, list[NewEvent]] = defaultdict(list)
                for session_id, _, event in rows:
                    if every or (session_id, event.client_event_id, event.timestamp) in stored:
                        new_by_session[session_id].append(event)
                deltas = [d for sid, new in new_by_session.items() if (d := totals_delta(windows[sid], new))]
                recorded = [_recorded_event(d) for d in deltas]
                ids = await log.record_outbox(organization_id, deltas, recorded)
            return stored, [PendingHandoff(ids[d.session_id], d) for d in deltas]

        stored, handoffs = await _reconnecting(lambda: self._uow.retrying(transaction))
        every = len(stored) == len(rows)
        fresh = [
            mine if every else [e for e in mine if (w.window.session_id, e.client_event_id, e.timestamp) in stored]
            for w, mine in zip(writes, owned, strict=True)
        ]
        repeated = frozenset(
            w.window.session_id for w, new in zip(writes, fresh, strict=True) if len(new) < len(w.events)
        )
        return StoredBatch(fresh, handoffs, repeated)


def _owned(writes: list[ActivityWrite]) -> list[list[NewEvent]]:
    """The events each write stores: the same event may come in two writes of one flush
    (a resend racing the first attempt); the first write owns it, the others see it as a
    duplicate."""
    seen: set[tuple[str, str, datetime | None]] = set()
    owned: list[list[NewEvent]] = []
    for w in writes:
        mine = []
        for e in w.events:
            identity = (w.window.session_id, e.client_event_id, None if e.match_any_timestamp else e.timestamp)
            if identity not in seen:
                seen.add(identity)
                mine.append(e)
        owned.append(mine)
    return owned


async def _reconnecting(work: Callable[[], Awaitable[T]], attempts: int = 3) -> T:
    """Runs ``work`` again when the database refused or lost the connection (a server out
    of connection slots, a failover). Safe even if a lost COMMIT had succeeded: the events
    are then duplicates, and their session's pending hand-off is settled before replying."""
    for n in range(attempts):
        try:
            return await work()
        except OperationalError:
            if n == attempts - 1:
                raise
            logger.warning("database connection failed; retrying the write", exc_info=True)
            await asyncio.sleep(random.uniform(0.5, 1.0) * 0.1 * 2**n)
    raise AssertionError("unreachable")


def _recorded_event(delta: TotalsDelta) -> dict[str, object]:
    """The ACTIVITY_RECORDED event of a write, one per session and transaction."""
    return {
        "sessionId": delta.session_id,
        "userId": delta.user_id,
        "eventCount": delta.event_count,
        "activeSeconds": delta.active_seconds,
        "idleSeconds": delta.idle_seconds,
        "lastActivityAt": delta.last_activity_at.isoformat(),
    }
