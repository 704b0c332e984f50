"""Storing one group commit's activity in one transaction: de-duplicate, insert the new
events, and write their session's totals hand-off and ACTIVITY_RECORDED event beside them.

A commit carries writes of any organizations (concurrent requests of different tenants
share its BEGIN, COMMIT and WAL flush); each organization's statements run after the
transaction is pointed at it, so row-level security decides every statement exactly as in
a transaction of that tenant alone."""

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
    # Whether the caller's policy shares their current app; not unless it says so.
    share_app: bool = False


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """What a commit stored: per write (in order) its events that were new, and the
    hand-offs committed with them (one per session that got new events)."""

    fresh: list[list[NewEvent]]
    handoffs: list[PendingHandoff]
    # (organization, session) of which some submitted event was already stored: an
    # earlier attempt of it may have died between its commit and its hand-off.
    repeated: frozenset[tuple[str, str]]
    # Per write, its events refused on what the transaction found: stamped after the
    # session's final end, or an id stored with another timestamp.
    refused: list[dict[tuple[str, datetime], RejectReason]]


class ActivityStore:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def store(self, writes: list[ActivityWrite]) -> StoredBatch:
        """Commits writes of any organizations in one transaction: each organization's
        statements run with it as the tenant (row-level security decides each of them as
        in a transaction of its own); one commit instead of one per organization."""
        tenants = sorted({w.window.organization_id for w in writes})
        # One order for every transaction (tenants, then sessions and events), so
        # concurrent resends of the same events wait on each other instead of deadlocking.
        parts = {org: _TenantWrite(org, [w for w in writes if w.window.organization_id == org]) for org in tenants}

        async def transaction() -> dict[str, _TenantResult]:
            async with self._uow.direct(None) as conn:
                log = ActivityLogRepository(conn)
                results = {}
                for org, part in parts.items():
                    results[org] = await part.commit(log)
                return results

        results = await _reconnecting(lambda: self._uow.retrying(transaction))
        fresh: list[list[NewEvent]] = []
        refusals: list[dict[tuple[str, datetime], RejectReason]] = []
        repeated: set[tuple[str, str]] = set()
        for w, mine in zip(writes, _owned(writes), strict=True):
            stored, refused, _ = results[w.window.organization_id]
            sid = w.window.session_id
            new = [e for e in mine if (sid, *e.key) in stored]
            no = {e.key: reason for e in w.events if (reason := refused.get((sid, *e.key))) is not None}
            if len(new) + len(no) < len(w.events):
                repeated.add((w.window.organization_id, sid))
            fresh.append(new)
            refusals.append(no)
        handoffs = [h for org in tenants for h in results[org][2]]
        return StoredBatch(fresh, handoffs, frozenset(repeated), refusals)

    async def close(self, organization_id: str, session_id: str) -> datetime:
        """Ends the session's window for good (see ActivityLogRepository.close_session)."""

        async def transaction() -> datetime:
            async with self._uow.direct(organization_id) as conn:
                return await ActivityLogRepository(conn).close_session(organization_id, session_id)

        return await _reconnecting(lambda: self._uow.retrying(transaction))


Identity = tuple[str, str, datetime]  # (session id, client event id, timestamp)
_TenantResult = tuple[set[Identity], dict[Identity, RejectReason], list[PendingHandoff]]


class _TenantWrite:
    """One organization's part of a commit: its statements, the first of which points the
    transaction at it as the tenant."""

    def __init__(self, organization_id: str, writes: list[ActivityWrite]) -> None:
        self._org = organization_id
        self._writes = writes
        self._windows = {w.window.session_id: w.window for w in writes}
        # A session's writes in one commit are one user's; should a policy change fall
        # between them, the app is shared only when every one of them allows it.
        self._shares: dict[str, bool] = {}
        for w in writes:
            self._shares[w.window.session_id] = self._shares.get(w.window.session_id, True) and w.share_app
        self._rows = sorted(
            (
                (w.window.session_id, w.window.user_id, e)
                for w, mine in zip(writes, _owned(writes), strict=True)
                for e in mine
            ),
            key=lambda r: (r[0], r[2].client_event_id, r[2].timestamp),
        )
        self._sessions = sorted({session_id for session_id, _, _ in self._rows})

    async def commit(self, log: ActivityLogRepository) -> _TenantResult:
        """(stored identities, refusals, hand-offs) of this organization's writes."""
        org, rows, windows = self._org, self._rows, self._windows
        # The locks first, so the sessions' ends cannot move while this write decides.
        await log.enter(org, self._sessions)
        ends = await log.ends(org, self._sessions)
        refused: dict[Identity, RejectReason] = {}
        kept = []
        for row in rows:
            end = ends.get(row[0])
            if end is not None and row[2].timestamp > end:
                refused[(row[0], *row[2].key)] = RejectReason.AFTER_SESSION_END
            else:
                kept.append(row)
        starts = {sid: w.start_time for sid, w in windows.items()}
        stored = await log.insert_new(org, kept, starts)
        refused |= await _conflicts(log, org, self._writes, stored, refused, starts)
        every = len(stored) == len(kept)
        new_by_session: dict[str, list[NewEvent]] = defaultdict(list)
        for session_id, _, event in kept:
            if every or (session_id, *event.key) in stored:
                new_by_session[session_id].append(event)
        deltas = [d for sid, new in new_by_session.items() if (d := totals_delta(windows[sid], new))]
        recorded = [_recorded_event(d, self._shares[d.session_id]) for d in deltas]
        ids = await log.record_outbox(org, deltas, recorded)
        return stored, refused, [PendingHandoff(ids[d.session_id], d) for d in deltas]


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


def _recorded_event(delta: TotalsDelta, share_app: bool) -> dict[str, object]:
    """The ACTIVITY_RECORDED event of a write, one per session and transaction; its
    ``appName`` (the latest event's app) null unless the user's policy shares it."""
    return {
        "sessionId": delta.session_id,
        "userId": delta.user_id,
        "eventCount": delta.event_count,
        "activeSeconds": delta.active_seconds,
        "idleSeconds": delta.idle_seconds,
        "lastActivityAt": delta.last_activity_at.isoformat(),
        "appName": delta.last_app_name if share_app else None,
    }
