"""SessionsReportingService: the scheduler's cross-tenant, set-based reads of work sessions.

Service identities only. Each RPC is one SQL statement over this service's own tables on
the maintenance engine, streamed back in batches. Owned by the scheduler work (issue 5).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from workpulse.errors import InvalidArgument
from workpulse.grpc_server import Servicer
from workpulse.sessions.v1 import sessions_reporting_pb2 as pb
from workpulse.sessions.v1 import sessions_reporting_pb2_grpc
from workpulse.timestamps import to_datetime

Context = grpc.aio.ServicerContext[Any, Any]
SERVICE_NAME = "workpulse.sessions.v1.SessionsReportingService"
DEFAULT_BATCH = 10000
MAX_WINDOWS = 20000

# Seconds of each overlapping session inside the window (an active session, and any
# session, ends at as_of at the latest), floored per session; one row per window.
# The windows arrive as one JSON document of [organization, user, start, end] (bounds in
# microseconds since the epoch): one text parameter instead of four arrays of 10,000 values
# the driver would quote one by one. Rows come back keyed by window ordinal.
_WORK_TOTALS = """
with w as (
    select cast(r ->> 0 as uuid) as org, cast(r ->> 1 as uuid) as usr,
           timestamptz 'epoch' + cast(r ->> 2 as bigint) * interval '1 microsecond' as ws,
           timestamptz 'epoch' + cast(r ->> 3 as bigint) * interval '1 microsecond' as we, k
    from jsonb_array_elements(cast(:windows as jsonb)) with ordinality as t(r, k)
)
select w.k,
       sum(floor(extract(epoch from least(coalesce(s.end_time, :as_of), :as_of, w.we) - greatest(s.start_time, w.ws))))
           ::bigint,
       count(*)::int
from w
join sessions.work_sessions s
  on s.organization_id = w.org and s.user_id = w.usr
 and s.start_time < least(w.we, :as_of) and coalesce(s.end_time, :as_of) > w.ws
group by w.k
"""

# Sessions without active input for the idle threshold (the latest active event, or the
# start), with the time since anything was received for them: the scheduler tells an idle
# user (the agent keeps reporting, idle) from a silent agent (nothing arrives) with it.
_IDLE_SESSIONS = """
with t as (
    select * from unnest(cast(:orgs as uuid[]), cast(:minutes as int[])) as t(org, idle_minutes)
)
select s.organization_id::text, s.user_id::text, s.id::text,
       floor(extract(epoch from :as_of - coalesce(s.last_active_at, s.start_time)))::bigint,
       floor(extract(epoch from :as_of - coalesce(s.last_received_at, s.start_time)))::bigint
from sessions.work_sessions s
left join t on t.org = s.organization_id
where s.status = 'active' and s.start_time <= :as_of
  and coalesce(s.last_active_at, s.start_time)
      <= :as_of - make_interval(mins => coalesce(t.idle_minutes, :default_minutes))
"""


class SessionsReportingServicer(sessions_reporting_pb2_grpc.SessionsReportingServiceServicer):
    def __init__(self, maintenance: AsyncEngine) -> None:
        self._engine = maintenance

    async def StreamWorkTotals(
        self, request: pb.StreamWorkTotalsRequest, context: Context
    ) -> AsyncIterator[pb.StreamWorkTotalsResponse]:
        if len(request.windows) > MAX_WINDOWS:
            raise InvalidArgument(f"at most {MAX_WINDOWS} windows per call", field="windows")
        as_of = to_datetime(request.as_of) if request.HasField("as_of") else datetime.now(UTC)
        windows = request.windows
        params = {
            "windows": json.dumps(
                [[w.organization_id, w.user_id, _micros(w.start), _micros(w.end)] for w in windows],
                separators=(",", ":"),
            ),
            "as_of": as_of,
        }
        # At most MAX_WINDOWS rows: buffered, so PostgreSQL plans for the whole result.
        async with self._engine.connect() as conn:
            result = await conn.execute(text(_WORK_TOTALS), params)
            for rows in result.partitions(request.batch_size or DEFAULT_BATCH):
                yield pb.StreamWorkTotalsResponse(
                    totals=[
                        pb.WorkTotal(
                            organization_id=windows[k - 1].organization_id,
                            user_id=windows[k - 1].user_id,
                            window_start=windows[k - 1].start,
                            worked_seconds=worked,
                            sessions_count=count,
                        )
                        for k, worked, count in rows
                    ]
                )

    async def StreamIdleSessions(
        self, request: pb.StreamIdleSessionsRequest, context: Context
    ) -> AsyncIterator[pb.StreamIdleSessionsResponse]:
        if request.default_idle_minutes <= 0:
            raise InvalidArgument("default_idle_minutes must be positive", field="default_idle_minutes")
        params = {
            "orgs": [t.organization_id for t in request.thresholds],
            "minutes": [t.idle_minutes for t in request.thresholds],
            "default_minutes": request.default_idle_minutes,
            "as_of": to_datetime(request.as_of) if request.HasField("as_of") else datetime.now(UTC),
        }
        async with self._engine.connect() as conn:
            result = await conn.stream(text(_IDLE_SESSIONS), params)
            async for rows in result.partitions(request.batch_size or DEFAULT_BATCH):
                orgs, users, sessions, idle, silent = zip(*rows, strict=True) if rows else ((), (), (), (), ())
                yield pb.StreamIdleSessionsResponse(
                    organization_ids=orgs,
                    user_ids=users,
                    session_ids=sessions,
                    idle_seconds=idle,
                    silent_seconds=silent,
                )


def _micros(ts: Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def reporting_servicer(maintenance: AsyncEngine) -> Servicer:
    """The servicer to mount on the sessions server (see ``contributed_servicers``)."""
    servicer = SessionsReportingServicer(maintenance)
    add = sessions_reporting_pb2_grpc.add_SessionsReportingServiceServicer_to_server
    return Servicer(
        SERVICE_NAME,
        lambda server: add(servicer, server),
        service_methods=("StreamWorkTotals", "StreamIdleSessions"),
    )
