"""SQL for activity logs and totals hand-offs, on a connection the caller owns (never commits)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.ingest.domain import MAX_CLOCK_SKEW, NewEvent, TotalsDelta
from services.ingest.event_columns import (
    COLUMNS,
    SEP_SQL,
    integers_array,
    joined,
    random_ids,
    register_dumpers,
    stamps_array,
)
from workpulse.db import DriverConnection

SCHEMA = "ingest"
TOTALS_TOPIC = "session_totals"
TOTALS_EVENT = "SESSION_TOTALS_DELTA"
ACTIVITY_RECORDED = "ACTIVITY_RECORDED"
# An organization's agent policy changed: {organizationId, version, agentSilenceSeconds}
# (see services/ingest/policy_use_cases.py), so realtime learns the silence allowance.
AGENT_POLICY_UPDATED = "AGENT_POLICY_UPDATED"


# An event already stored is not stored again: one with a derived (or the server's) id
# when the same id is stored at the same timestamp; one whose client id came without a
# timestamp when the session has that client id stored at all; and one whose client id
# came with a timestamp likewise, as a duplicate if the stored one's is the same and a
# conflict if not (one id names one event; the caller tells the two apart). The search is
# bounded below by the earliest moment any event of the session can carry (its start less
# the largest clock skew allowed), and above by the latest any stored event can carry:
# admission refuses an event stamped more than the largest skew ahead of its replica's
# clock, and a replica's clock is taken to be within _CLOCK_ERROR of the database's. Both
# bounds are known when the statement starts, so the partitions outside them are pruned
# once: the search costs one index probe per event in the session's days (one partition,
# most of the day), not one in every partition created ahead, and follows the session,
# not the organization's history. Both OFFSET 0 keep it that (the planner may not pull
# the search up into an anti-join, which reads every stored event of the organization in
# the bounds, nor the events' subquery into the statement, whose session column is then
# an expression the probe cannot use the primary key for).
#
# The search sees every event stored before, so no ON CONFLICT is needed (its speculative
# insertion cost a sixth of the statement): every write of a session holds the session's
# lock (see _ENTER) from before this statement takes its snapshot, so an earlier write has
# committed and is seen, and a later one waits. Two rows of one statement with the same
# key (a client choosing the id another event derived, at its timestamp) are the one
# case the search cannot see: such a statement skips repeats on the key instead
# (_INSERT_EVENTS_SKIPPING_REPEATS). A writer that broke the lock's rule would fail on the
# primary key, and its events be resent: never stored twice.
#
# Encoded for the server's cost and the client's (a 500-event batch is the hot path):
# - text columns are one string each, split by the server (string_to_array): joining in
#   Python is C-speed, while psycopg's array dumpers loop in Python per element (a fifth
#   of a microsecond per value, twelve values per event). The separator is a control
#   character admission refuses in any text (the count of separators is checked anyway:
#   text that would split wrongly is refused, never stored shifted); '' stands for NULL
#   (admission stores an empty app name or URL as NULL).
# - timestamps and durations are binary arrays encoded here (event_columns), the session and
#   user are given once per session and indexed per event (not at all for one session),
#   a column that is NULL throughout is not sent (unnest pads it with NULLs), and the
#   kind of id (d: derived or the server's, c: chosen by the client, a: chosen, without a
#   timestamp) is one character per event.
# - the events' ids are made here, not by the column's default (see event_columns.random_ids).
# - nothing is returned: the row count says whether every row was new (normally so), and
#   only when it says not is _STORED_NOW asked which were (a row per event returned and
#   read cost the server and the client a microsecond or two each).
_CLOCK_ERROR = timedelta(hours=1)
_INSERT_EVENTS = f"""
    insert into ingest.activity_logs (organization_id, id, session_id, user_id, "timestamp", activity_type,
        duration_seconds, app_name, url, screenshot_timestamp, client_event_id, title)
    select %(org)s::uuid, e.id, e.session_id, e.user_id, e.ts, e.activity_type, e.duration, e.app_name, e.url,
        e.shot, e.cid, e.title
    from (
        select e.id, (%(sessions)s::uuid[])[coalesce(e.si, 1)] as session_id,
            (%(users)s::uuid[])[coalesce(e.si, 1)] as user_id, e.ts, e.activity_type, e.duration, e.app_name,
            e.url, e.shot, e.cid, e.kind, e.title
        from unnest(%(ids)b, %(stamps)b, string_to_array(%(types)s, {SEP_SQL}), %(durations)b,
            string_to_array(%(apps)s, {SEP_SQL}, ''), string_to_array(%(urls)s, {SEP_SQL}, ''),
            %(shots)b::timestamptz[], string_to_array(%(cids)s, {SEP_SQL}), string_to_array(%(kinds)s, null),
            string_to_array(%(of_session)s, ',')::integer[], string_to_array(%(titles)s, {SEP_SQL}, ''))
            as e(id, ts, activity_type, duration, app_name, url, shot, cid, kind, si, title)
        offset 0
    ) as e
    where not exists (
        select 1 from ingest.activity_logs a
        where a.organization_id = %(org)s::uuid and a.session_id = e.session_id and a.client_event_id = e.cid
          and a."timestamp" >= %(earliest)s
          and a."timestamp" <= now() + interval '{int((MAX_CLOCK_SKEW + _CLOCK_ERROR).total_seconds())} seconds'
          and (e.kind <> 'd' or a."timestamp" = e.ts)
        offset 0)
    {{on_conflict}}
"""
_INSERT_EVENTS_SKIPPING_REPEATS = _INSERT_EVENTS.format(on_conflict="on conflict do nothing")
_INSERT_EVENTS = _INSERT_EVENTS.format(on_conflict="")

# Which of a batch's rows the insert stored, when it stored fewer than all: those stored
# with the ids the insert gave them (found by the primary key; ids are random, so a row
# stored before has another).
_STORED_NOW = """
    select a.session_id::text, a.client_event_id, a."timestamp"
    from unnest(%(sessions)s::uuid[], %(cids)s::text[], %(stamps)s::timestamptz[], %(ids)b)
        as w(session_id, cid, ts, id)
    join ingest.activity_logs a on a.organization_id = %(org)s::uuid and a.session_id = w.session_id
        and a.client_event_id = w.cid and a."timestamp" = w.ts and a.id = w.id
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
            # Hand-offs written before sessions kept the last input carry none.
            last_active_at=datetime.fromisoformat(str(payload["last_active_at"]))
            if payload.get("last_active_at")
            else None,
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
        # Columns by transposition (zip, attrgetter: C loops), not a comprehension per column.
        session_of, user_of, events = zip(*rows, strict=True)
        columns = zip(*map(COLUMNS, events), strict=True)
        (stamps, types, durations, apps, urls, shots, cids, any_stamp, chosen, titles) = columns
        # Sessions once each (a commit's part for one organization is mostly one session),
        # and per event the index of its own only when there are several.
        users = dict(zip(session_of, user_of, strict=True))
        sessions = list(users)
        of_session = None
        if len(sessions) > 1:
            number = {s: str(n) for n, s in enumerate(sessions, 1)}
            of_session = ",".join([number[s] for s in session_of])
        identities = set(zip(session_of, cids, stamps, strict=True))
        if any(any_stamp) or not all(chosen):
            kinds = "".join(["a" if a else "c" if c else "d" for a, c in zip(any_stamp, chosen, strict=True)])
        else:
            kinds = "c" * len(events)  # an agent's batch: every id chosen, every event stamped
        async with self._conn.cursor(binary=True) as cursor:
            register_dumpers(cursor)
            params = {
                "org": organization_id,
                "ids": random_ids(len(events)),
                "sessions": sessions,
                "users": [users[s] for s in sessions],
                "of_session": of_session,
                "stamps": stamps_array(cursor, stamps),
                "types": joined(types, "activity_type"),
                "durations": integers_array(durations),
                "apps": joined(apps, "app_name"),
                "urls": joined(urls, "url") if any(urls) else None,
                "titles": joined(titles, "title") if any(titles) else None,
                "shots": list(shots) if shots.count(None) < len(shots) else None,
                "cids": joined(cids, "client_event_id"),
                "kinds": kinds,
                "earliest": min(starts[s] for s in sessions) - MAX_CLOCK_SKEW,
            }
            await cursor.execute(
                _INSERT_EVENTS if len(identities) == len(rows) else _INSERT_EVENTS_SKIPPING_REPEATS, params
            )
            if cursor.rowcount == len(rows):
                return identities  # normally: every row was new, and nothing comes back to read
            mine = {"org": organization_id, "sessions": list(session_of), "cids": list(cids), "stamps": list(stamps)}
            await cursor.execute(_STORED_NOW, mine | {"ids": params["ids"]})
            return {(s, c, t) for s, c, t in await cursor.fetchall()}

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
