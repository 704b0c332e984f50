"""SQL for activity logs and totals hand-offs, on a connection the caller owns (never commits)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.ingest.domain import MAX_CLOCK_SKEW, NewEvent, TotalsDelta
from workpulse.db import DriverConnection

SCHEMA = "ingest"
TOTALS_TOPIC = "session_totals"
TOTALS_EVENT = "SESSION_TOTALS_DELTA"
ACTIVITY_RECORDED = "ACTIVITY_RECORDED"

# Duplicates are skipped by the primary key; an event whose client id came without a
# timestamp is also a duplicate of any stored event of the session with that client id,
# and one whose client id came with another timestamp than the stored one's is a conflict
# (one id names one event), also not stored. That search is bounded below by the earliest
# moment any event of the session can carry (its start less the largest clock skew
# allowed), so the partitions of days before the session are pruned at run time: its
# cost follows the session, not the organization's whole history.
# Written for psycopg directly: %(name)b sends each array in binary, which costs a third
# of the text format's client-side encoding (the hot path of a 500-event batch).
_INSERT_EVENTS = """
    insert into ingest.activity_logs (organization_id, session_id, user_id, "timestamp", activity_type,
        duration_seconds, app_name, url, screenshot_timestamp, client_event_id)
    select %(org)b::uuid, e.session_id, e.user_id, e.ts, e.activity_type, e.duration, e.app_name, e.url,
        e.shot, e.cid
    from unnest(%(sessions)b::uuid[], %(users)b::uuid[], %(stamps)b::timestamptz[], %(types)b::text[],
        %(durations)b::integer[], %(apps)b::text[], %(urls)b::text[], %(shots)b::timestamptz[], %(cids)b::text[],
        %(any_stamp)b::boolean[], %(chosen)b::boolean[], %(earliest)b::timestamptz[])
        as e(session_id, user_id, ts, activity_type, duration, app_name, url, shot, cid, any_stamp, chosen, earliest)
    where not e.chosen or not exists (
        select 1 from ingest.activity_logs a
        where a.organization_id = %(org)b::uuid and a.session_id = e.session_id and a.client_event_id = e.cid
          and a."timestamp" >= e.earliest and (e.any_stamp or a."timestamp" <> e.ts))
    on conflict do nothing
    returning session_id::text, client_event_id, "timestamp"
"""

# Writes of a session, and its stop, are serialised by an advisory lock on the session
# (its own two-key space: the one-key locks of outbox relays never collide with it),
# taken before anything is decided: a stop waits for the writes in flight and later
# writes see its end; and a write's de-duplication sees what an earlier write of the
# session committed (one client id at two timestamps in racing writes is a conflict, not
# two events). A lock writes no tuple and no WAL, unlike the bounds row every write used
# to upsert for the same purpose. One statement points the transaction at the tenant and
# takes the locks, in the order given (sorted: no deadlock between writes).
_BOUNDS_LOCKS = 1_148_093_441  # the lock space of session bounds (any fixed int4)
_ENTER = """
    select set_config('app.organization_id', %(org)s, true),
        (select count(pg_advisory_xact_lock(%(space)s, hashtext(s::uuid::text)))
         from unnest(%(sessions)s::text[]) as s)
"""

# Read in a statement after the locks: its snapshot is taken once they are held, so it
# sees any stop that committed before them (a stop waits for the writes holding them).
_ENDS = """
    select b.session_id::text, b.end_time from ingest.session_bounds b
    where b.organization_id = %(org)s::uuid and b.session_id = any(%(sessions)s::uuid[]) and b.end_time is not null
"""

_STORED_STAMPS = """
    select a.session_id::text, a.client_event_id, a."timestamp"
    from ingest.activity_logs a
    join unnest(%(sessions)s::uuid[], %(cids)s::text[]) as w(session_id, cid)
      on a.session_id = w.session_id and a.client_event_id = w.cid
    where a.organization_id = %(org)s::uuid and a."timestamp" >= %(earliest)s
"""

_CLOSE_LOCK = "select pg_advisory_xact_lock(%(space)s, hashtext(%(session)s::uuid::text))"

# After _CLOSE_LOCK (every write of the session in flight has committed): the end is the
# later of the database's clock and the latest stored stamp, so no event stored before
# the close lies after it (an agent's clock may run a little ahead). A stop is rare, so
# reading that stamp from the events (every partition's key index) costs nothing that
# matters; a write never pays for it.
_CLOSE_SESSION = """
    insert into ingest.session_bounds as b (organization_id, session_id, end_time)
    select %(org)s::uuid, %(session)s::uuid, greatest(clock_timestamp(), max(a."timestamp"))
    from ingest.activity_logs a
    where a.organization_id = %(org)s::uuid and a.session_id = %(session)s::uuid
    on conflict (organization_id, session_id) do update
        set end_time = coalesce(b.end_time, excluded.end_time)
    returning end_time
"""

# Every outbox row of a write in one statement. No NOTIFY: at one commit per request it
# would wake the events relay once per request; the relay polls every quarter second
# instead and publishes the ACTIVITY_RECORDED events of all writes since in one pass.
_INSERT_OUTBOX = """
    insert into ingest.outbox (organization_id, topic, event_type, payload)
    select %(org)s::uuid, r.topic, r.event_type, r.payload
    from unnest(%(topics)s::text[], %(types)s::text[], %(payloads)s::jsonb[]) as r(topic, event_type, payload)
    returning id, topic, payload ->> 'session_id' as session_id
"""


@dataclass(frozen=True, slots=True)
class PendingHandoff:
    """A totals hand-off committed with its events, not yet confirmed applied by sessions."""

    id: int
    delta: TotalsDelta

    @property
    def idempotency_key(self) -> str:
        return f"ingest:{self.id}"


def _pending(row: Any) -> PendingHandoff:
    payload: dict[str, Any] = row.payload if isinstance(row.payload, dict) else json.loads(row.payload)
    return PendingHandoff(
        int(row.id),
        TotalsDelta(
            organization_id=str(row.organization_id),
            session_id=str(payload["session_id"]),
            user_id=str(payload["user_id"]),
            active_seconds=int(payload["active_seconds"]),
            idle_seconds=int(payload["idle_seconds"]),
            last_activity_at=datetime.fromisoformat(str(payload["last_activity_at"])),
            event_count=int(payload["event_count"]),
        ),
    )


class ActivityLogRepository:
    """The statements of a group commit, on a :meth:`UnitOfWork.direct` transaction."""

    def __init__(self, conn: DriverConnection) -> None:
        self._conn = conn

    async def insert_new(
        self, organization_id: str, rows: Sequence[tuple[str, str, NewEvent]], starts: Mapping[str, datetime]
    ) -> set[tuple[str, str, datetime]]:
        """Stores (session id, user id, event) rows; returns the (session id, client event id,
        timestamp) of those that were new. ``starts`` holds each session's start time."""
        if not rows:
            return set()
        params = {
            "org": organization_id,
            "sessions": [s for s, _, _ in rows],
            "users": [u for _, u, _ in rows],
            "stamps": [e.timestamp for _, _, e in rows],
            "types": [e.activity_type for _, _, e in rows],
            "durations": [e.duration_seconds for _, _, e in rows],
            "apps": [e.app_name for _, _, e in rows],
            "urls": [e.url for _, _, e in rows],
            "shots": [e.screenshot_timestamp for _, _, e in rows],
            "cids": [e.client_event_id for _, _, e in rows],
            "any_stamp": [e.match_any_timestamp for _, _, e in rows],
            "chosen": [e.client_chose_id for _, _, e in rows],
            "earliest": [starts[s] - MAX_CLOCK_SKEW for s, _, _ in rows],
        }
        async with self._conn.cursor(binary=True) as cursor:
            await cursor.execute(_INSERT_EVENTS, params)
            found = await cursor.fetchall()
        return {(r[0], r[1], r[2]) for r in found}

    async def enter(self, organization_id: str, sessions: Sequence[str]) -> None:
        """Points the transaction at the tenant and holds the sessions' write locks until
        it ends (a stop and other writes of those sessions wait for it)."""
        await self._conn.execute(_ENTER, {"org": organization_id, "space": _BOUNDS_LOCKS, "sessions": sorted(sessions)})

    async def ends(self, organization_id: str, sessions: Sequence[str]) -> dict[str, datetime]:
        """The end of each of those sessions that has one (read after :meth:`enter`)."""
        if not sessions:
            return {}
        cursor = await self._conn.execute(_ENDS, {"org": organization_id, "sessions": list(sessions)})
        return {str(sid): end for sid, end in await cursor.fetchall()}

    async def stored_stamps(
        self, organization_id: str, wanted: Sequence[tuple[str, str]], earliest: datetime
    ) -> set[tuple[str, str, datetime]]:
        """The (session id, client event id, timestamp) stored for those (session, client
        event id) pairs, stamped at ``earliest`` or later."""
        cursor = await self._conn.execute(
            _STORED_STAMPS,
            {
                "org": organization_id,
                "sessions": [s for s, _ in wanted],
                "cids": [c for _, c in wanted],
                "earliest": earliest,
            },
        )
        return {(str(s), str(c), ts) for s, c, ts in await cursor.fetchall()}

    async def close_session(self, organization_id: str, session_id: str) -> datetime:
        """Ends the session's window for good (idempotent); returns its end."""
        await self._conn.execute(_CLOSE_LOCK, {"space": _BOUNDS_LOCKS, "session": session_id})
        cursor = await self._conn.execute(_CLOSE_SESSION, {"org": organization_id, "session": session_id})
        row = await cursor.fetchone()
        assert row is not None
        end: datetime = row[0]
        return end

    async def record_outbox(
        self, organization_id: str, deltas: Sequence[TotalsDelta], recorded: Sequence[Mapping[str, Any]]
    ) -> dict[str, int]:
        """Writes one hand-off per delta and one ACTIVITY_RECORDED event per payload;
        returns the hand-off id of each session."""
        if not deltas and not recorded:
            return {}
        topics = [TOTALS_TOPIC] * len(deltas) + ["events"] * len(recorded)
        types = [TOTALS_EVENT] * len(deltas) + [ACTIVITY_RECORDED] * len(recorded)
        payloads = [json.dumps(d.payload()) for d in deltas] + [json.dumps(p) for p in recorded]
        cursor = await self._conn.execute(
            _INSERT_OUTBOX, {"org": organization_id, "topics": topics, "types": types, "payloads": payloads}
        )
        rows = await cursor.fetchall()
        return {str(session_id): int(row_id) for row_id, topic, session_id in rows if topic == TOTALS_TOPIC}


class HandoffRepository:
    """Totals hand-offs live in the service's outbox under their own topic, committed in
    the same transaction as their events; the row id is the idempotency key."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def lock_pending_for_session(self, session_id: str) -> list[PendingHandoff]:
        """The session's unconfirmed hand-offs, locked (waiting for a redelivery in progress)."""
        rows = await self._conn.execute(
            text(
                "select id, organization_id, payload from ingest.outbox "
                "where topic = :topic and published_at is null and payload ->> 'session_id' = :sid "
                "order by id for update"
            ),
            {"topic": TOTALS_TOPIC, "sid": session_id},
        )
        return [_pending(r) for r in rows]

    async def lock_stale(self, older_than_seconds: float, limit: int) -> list[PendingHandoff]:
        """Hand-offs older than the in-line path needs, skipping any another replica holds."""
        rows = await self._conn.execute(
            text(
                "select id, organization_id, payload from ingest.outbox "
                "where topic = :topic and published_at is null "
                "and created_at < now() - make_interval(secs => :age) "
                "order by id limit :n for update skip locked"
            ),
            {"topic": TOTALS_TOPIC, "age": older_than_seconds, "n": limit},
        )
        return [_pending(r) for r in rows]

    async def mark_applied_unless_busy(self, ids: Sequence[int]) -> None:
        """Marks what no one else holds: a locked row is being settled, which marks it too
        (waiting here could deadlock with a settle locking in another order)."""
        if ids:
            await self._conn.execute(
                text(
                    "update ingest.outbox set published_at = now() where id in ("
                    "select id from ingest.outbox where id = any(:ids) and published_at is null "
                    "for update skip locked)"
                ),
                {"ids": list(ids)},
            )

    async def mark_applied(self, ids: Sequence[int]) -> None:
        """Marks rows this transaction has locked."""
        if ids:
            await self._conn.execute(
                text("update ingest.outbox set published_at = now() where id = any(:ids) and published_at is null"),
                {"ids": list(ids)},
            )
