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

from services.ingest.domain import MAX_CLOCK_SKEW, NewEvent, RejectReason, SessionWindow, TotalsDelta, totals_delta
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
    # Per write, its events refused on what the transaction found: stamped after the
    # session's final end, or an id stored with another timestamp.
    refused: list[dict[tuple[str, datetime], RejectReason]]


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
        latest: dict[str, datetime] = {}
        for session_id, _, event in rows:
            latest[session_id] = max(latest.get(session_id, event.timestamp), event.timestamp)

        async def transaction() -> tuple[set[Identity], dict[Identity, RejectReason], list[PendingHandoff]]:
            async with self._uow.direct(organization_id) as conn:
                log = ActivityLogRepository(conn)
                # First, so the sessions' ends cannot move while this write decides.
                ends = await log.hold_bounds(organization_id, latest) if rows else {}
                refused: dict[Identity, RejectReason] = {}
                kept = []
                for row in rows:
                    end = ends.get(row[0])
                    if end is not None and row[2].timestamp > end:
                        refused[(row[0], *row[2].key)] = RejectReason.AFTER_SESSION_END
                    else:
                        kept.append(row)
                starts = {sid: w.start_time for sid, w in windows.items()}
                stored = await log.insert_new(organization_id, kept, starts)
                refused |= await _conflicts(log, organization_id, writes, stored, refused, starts)
                every = len(stored) == len(kept)
                new_by_session: dict[str, list[NewEvent]] = defaultdict(list)
                for session_id, _, event in kept:
                    if every or (session_id, *event.key) in stored:
                        new_by_session[session_id].append(event)
                deltas = [d for sid, new in new_by_session.items() if (d := totals_delta(windows[sid], new))]
                recorded = [_recorded_event(d) for d in deltas]
                ids = await log.record_outbox(organization_id, deltas, recorded)
            return stored, refused, [PendingHandoff(ids[d.session_id], d) for d in deltas]

        stored, refused, handoffs = await _reconnecting(lambda: self._uow.retrying(transaction))
        fresh = [
            [e for e in mine if (w.window.session_id, *e.key) in stored] for w, mine in zip(writes, owned, strict=True)
        ]
        refusals = [
            {e.key: reason for e in w.events if (reason := refused.get((w.window.session_id, *e.key))) is not None}
            for w in writes
        ]
        repeated = frozenset(
            w.window.session_id
            for w, new, no in zip(writes, fresh, refusals, strict=True)
            if len(new) + len(no) < len(w.events)
        )
        return StoredBatch(fresh, handoffs, repeated, refusals)

    async def close(self, organization_id: str, session_id: str) -> datetime:
        """Ends the session's window for good (see ActivityLogRepository.close_session)."""

        async def transaction() -> datetime:
            async with self._uow.direct(organization_id) as conn:
                return await ActivityLogRepository(conn).close_session(organization_id, session_id)

        return await _reconnecting(lambda: self._uow.retrying(transaction))


Identity = tuple[str, str, datetime]  # (session id, client event id, timestamp)


async def _conflicts(
    log: ActivityLogRepository,
    organization_id: str,
    writes: list[ActivityWrite],
    stored: set[Identity],
    refused: dict[Identity, RejectReason],
    starts: dict[str, datetime],
) -> dict[Identity, RejectReason]:
    """The events not stored whose client-chosen id is stored with another timestamp.
    Asked only when some such event was not new (a resend, or a conflict): its row is
    then either itself (a duplicate) or another timestamp's (a conflict)."""
    unsure = (
        {
            (w.window.session_id, *e.key)
            for w in writes
            for e in w.events
            if e.client_chose_id and not e.match_any_timestamp
        }
        - stored
        - refused.keys()
    )
    if not unsure:
        return {}
    earliest = min(starts[s] for s, _, _ in unsure) - MAX_CLOCK_SKEW
    found = await log.stored_stamps(organization_id, sorted({(s, c) for s, c, _ in unsure}), earliest)
    return {identity: RejectReason.EVENT_ID_CONFLICT for identity in unsure - found}


def _owned(writes: list[ActivityWrite]) -> list[list[NewEvent]]:
    """The events each write stores: the same event may come in two writes of one flush
    (a resend racing the first attempt); the first write owns it, the others see it as a
    duplicate. A client-chosen id names one event whatever its timestamp, so the first
    write owns the id: a later one with another timestamp is a conflict (see _conflicts),
    not a second event the insert could not see."""
    seen: set[tuple[str, str, datetime | None]] = set()
    owned: list[list[NewEvent]] = []
    for w in writes:
        mine = []
        for e in w.events:
            identity = (w.window.session_id, e.client_event_id, None if e.client_chose_id else e.timestamp)
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
