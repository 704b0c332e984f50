"""IngestReportingService: the scheduler's cross-tenant, set-based reads of activity logs
and the partition maintenance it drives.

Service identities only; one SQL statement per RPC on the maintenance engine, streamed
back in batches. Owned by the scheduler work (issue 5).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from workpulse.errors import InvalidArgument
from workpulse.grpc_server import Servicer
from workpulse.ingest.v1 import ingest_reporting_pb2 as pb
from workpulse.ingest.v1 import ingest_reporting_pb2_grpc
from workpulse.timestamps import to_datetime

Context = grpc.aio.ServicerContext[Any, Any]
SERVICE_NAME = "workpulse.ingest.v1.IngestReportingService"
DEFAULT_BATCH = 2000
DEFAULT_TOP_APPS = 5
MAX_WINDOWS = 20000
REPORT_WORK_MEM = "128MB"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The windows of one call, loaded into a temporary table and analyzed, so PostgreSQL knows
# they are thousands of distinct users: it then hashes the windows and probes them with one
# scan of the day's partition (planned on an unnest() it guessed 200 distinct users and
# hashed the million events instead; per-user index probes would read the time-ordered
# heap at random). Dropped when the transaction ends. The windows arrive as one JSON
# document of [organization, user, start, end] (bounds in microseconds since the epoch):
# one text parameter instead of four arrays of 10,000 values the driver would quote one by one.
_WINDOWS = """
create temporary table report_windows on commit drop as
select cast(r ->> 0 as uuid) as org, cast(r ->> 1 as uuid) as usr,
       timestamptz 'epoch' + cast(r ->> 2 as bigint) * interval '1 microsecond' as ws,
       timestamptz 'epoch' + cast(r ->> 3 as bigint) * interval '1 microsecond' as we, k
from jsonb_array_elements(cast(:windows as jsonb)) with ordinality as t(r, k)
"""

# Sums per (window ordinal, app) over the events of the windows, then per window the
# totals and the top apps by active seconds. The bounds prune partitions. Windows without
# events are left out. per_app is planned on its own (materialized) so it can group by
# hashing; the caller disables sorts where an alternative exists, because the planner,
# misjudging how many events the range join keeps, would otherwise sort every event (and
# JIT, which those disabled sorts' costs would trigger, compiles longer than it saves).
_PER_WINDOW = """
select k, sum(active)::bigint as active, sum(idle)::bigint as idle,
       (array_agg(app_name order by active desc, app_name) filter (where app_name <> '' and active > 0))[1:(:top)]
           as apps,
       (array_agg(active order by active desc, app_name) filter (where app_name <> '' and active > 0))[1:(:top)]
           as secs
"""

# The (organization, user) range the call's windows span. The scheduler sends its windows
# in key order, so each call of a large run covers its own slice of the users: the events
# of the others are left out before grouping, and a run's cost grows with its users, not
# with users times calls. Windows in no particular order span everything, as before.
_KEY_RANGE = (
    "(a.organization_id, a.user_id) >= (cast(:first_org as uuid), cast(:first_user as uuid)) "
    "and (a.organization_id, a.user_id) <= (cast(:last_org as uuid), cast(:last_user as uuid))"
)

_ACTIVITY_TOTALS = f"""
with per_app as materialized (
    select w.k, a.app_name,
           coalesce(sum(a.duration_seconds) filter (where a.activity_type = 'active'), 0) as active,
           coalesce(sum(a.duration_seconds) filter (where a.activity_type = 'idle'), 0) as idle
    from ingest.activity_logs a
    join report_windows w on w.org = a.organization_id and w.usr = a.user_id
    where a."timestamp" >= :lower and a."timestamp" < :upper and a."timestamp" >= w.ws and a."timestamp" < w.we
      and {_KEY_RANGE}
    group by w.k, a.app_name
)
{_PER_WINDOW}
from per_app group by k
"""

# When every window of the call is the same span (one day in one time zone: a scheduled
# run's slot, or a manual run over one zone), the span alone decides which events count:
# the events are grouped per user and app first, like an aggregate over the whole day, and
# only those groups (tens of thousands, not a million events) are matched to the windows.
_ACTIVITY_TOTALS_ONE_SPAN = f"""
with per_app as materialized (
    select a.organization_id as org, a.user_id as usr, a.app_name,
           coalesce(sum(a.duration_seconds) filter (where a.activity_type = 'active'), 0) as active,
           coalesce(sum(a.duration_seconds) filter (where a.activity_type = 'idle'), 0) as idle
    from ingest.activity_logs a
    where a."timestamp" >= :lower and a."timestamp" < :upper and {_KEY_RANGE}
    group by a.organization_id, a.user_id, a.app_name
)
{_PER_WINDOW}
from per_app p join report_windows w on w.org = p.org and w.usr = p.usr
group by k
"""


class IngestReportingServicer(ingest_reporting_pb2_grpc.IngestReportingServiceServicer):
    def __init__(self, maintenance: AsyncEngine) -> None:
        self._engine = maintenance

    async def StreamActivityTotals(
        self, request: pb.StreamActivityTotalsRequest, context: Context
    ) -> AsyncIterator[pb.StreamActivityTotalsResponse]:
        if len(request.windows) > MAX_WINDOWS:
            raise InvalidArgument(f"at most {MAX_WINDOWS} windows per call", field="windows")
        if not request.windows:
            return
        windows = request.windows
        bounds = [(_micros(w.start), _micros(w.end)) for w in windows]
        keys = [(_uuid(w.organization_id), _uuid(w.user_id)) for w in windows]
        (first_org, first_user), (last_org, last_user) = min(keys), max(keys)
        params = {
            "windows": json.dumps(
                [[w.organization_id, w.user_id, ws, we] for w, (ws, we) in zip(windows, bounds, strict=True)],
                separators=(",", ":"),
            ),
            "lower": _EPOCH + timedelta(microseconds=min(ws for ws, _ in bounds)),
            "upper": _EPOCH + timedelta(microseconds=max(we for _, we in bounds)),
            "top": request.top_apps or DEFAULT_TOP_APPS,
            "first_org": str(first_org),
            "first_user": str(first_user),
            "last_org": str(last_org),
            "last_user": str(last_user),
        }
        # At most MAX_WINDOWS rows: buffered, so PostgreSQL plans for the whole result (a
        # server-side cursor would favour fast-start plans, slower here).
        async with self._engine.begin() as conn:
            # A day of events for thousands of users groups in memory rather than on disk.
            await conn.execute(text(f"set local work_mem = '{REPORT_WORK_MEM}'"))
            await conn.execute(text("set local enable_sort = off"))
            await conn.execute(text("set local jit = off"))
            await conn.execute(text(_WINDOWS), params)
            await conn.execute(text("analyze report_windows"))
            one_span = len(set(bounds)) == 1
            result = await conn.execute(text(_ACTIVITY_TOTALS_ONE_SPAN if one_span else _ACTIVITY_TOTALS), params)
            for rows in result.partitions(request.batch_size or DEFAULT_BATCH):
                totals = []
                for k, active, idle, apps, seconds in rows:
                    w = windows[k - 1]
                    totals.append(
                        pb.ActivityTotal(
                            organization_id=w.organization_id,
                            user_id=w.user_id,
                            window_start=w.start,
                            active_seconds=active,
                            idle_seconds=idle,
                            top_apps=[
                                pb.AppUsage(app_name=name, active_seconds=secs)
                                for name, secs in zip(apps or [], seconds or [], strict=True)
                            ],
                        )
                    )
                yield pb.StreamActivityTotalsResponse(totals=totals)

    async def EnsurePartitions(
        self, request: pb.EnsurePartitionsRequest, context: Context
    ) -> pb.EnsurePartitionsResponse:
        if not 0 <= request.days_ahead <= 366:
            raise InvalidArgument("days_ahead must be between 0 and 366", field="days_ahead")
        if request.retention_days < 0:
            raise InvalidArgument("retention_days must not be negative", field="retention_days")
        today = (to_datetime(request.as_of) if request.HasField("as_of") else datetime.now(UTC)).date()
        async with self._engine.begin() as conn:
            created = (
                await conn.execute(
                    text("select ingest.ensure_activity_partitions(:first, :last)"),
                    {"first": today, "last": today + timedelta(days=request.days_ahead)},
                )
            ).scalars()
            created_names = [str(c) for c in created]
            dropped_names: list[str] = []
            if request.retention_days > 0:
                dropped = await conn.execute(
                    text("select ingest.drop_activity_partitions_before(:cutoff)"),
                    {"cutoff": today - timedelta(days=request.retention_days)},
                )
                dropped_names = [str(d) for d in dropped.scalars()]
        return pb.EnsurePartitionsResponse(created=created_names, dropped=dropped_names)


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument("windows: organization_id and user_id must be UUIDs", field="windows") from None


def _micros(ts: Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def reporting_servicer(maintenance: AsyncEngine) -> Servicer:
    """The servicer to mount on the ingest server."""
    servicer = IngestReportingServicer(maintenance)
    add = ingest_reporting_pb2_grpc.add_IngestReportingServiceServicer_to_server
    return Servicer(
        SERVICE_NAME,
        lambda server: add(servicer, server),
        service_methods=("StreamActivityTotals", "EnsurePartitions"),
    )
