"""SQL of the scheduler's own tables, on a connection the caller's unit of work owns."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scheduler.domain import (
    INACTIVE_ALERT,
    Alert,
    AlertDraft,
    AppUsage,
    DailySummary,
    JobRun,
    Thresholds,
)

SCHEMA = "scheduler"

_SUMMARY_COLUMNS = (
    "organization_id::text, user_id::text, date, timezone, total_work_seconds, active_seconds, idle_seconds, "
    "productivity_score::float8, sessions_count, top_apps, computed_at"
)
_ALERT_COLUMNS = (
    "id::text, organization_id::text, user_id::text, session_id::text, type, alert_date, message, created_at, "
    "resolved_at, acknowledged_by::text, acknowledged_at, idle_minutes, work_hours::float8"
)


def _summary(row: Sequence[Any]) -> DailySummary:
    apps = tuple(AppUsage(str(name), int(seconds)) for name, seconds in (row[9] or []))
    return DailySummary(
        row[0], row[1], row[2], row[3], int(row[4]), int(row[5]), int(row[6]), float(row[7]), int(row[8]), apps, row[10]
    )


def _alert(row: Sequence[Any]) -> Alert:
    return Alert(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        row[9],
        row[10],
        row[11],
        float(row[12]) if row[12] is not None else None,
    )


def _json_rows(rows: Sequence[Sequence[Any]]) -> str:
    """Rows as one JSON array of arrays: a single text parameter the driver sends as is
    (a dozen array parameters of thousands of strings each cost more to quote than the
    statement takes to run). ``_columns`` reads it back with one typed column per index."""
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"), default=str)


def _columns(param: str, *types: str) -> str:
    picks = ", ".join(f"cast(r ->> {i} as {t})" for i, t in enumerate(types))
    return f"select {picks} from jsonb_array_elements(cast(:{param} as jsonb)) as r"


async def upsert_summaries(conn: AsyncConnection, summaries: Sequence[DailySummary], computed_at: datetime) -> int:
    """Inserts or refreshes summaries; a row whose figures did not change is left as it was."""
    if not summaries:
        return 0
    rows = [
        (
            s.organization_id,
            s.user_id,
            s.date,
            s.timezone,
            s.total_work_seconds,
            s.active_seconds,
            s.idle_seconds,
            s.productivity_score,
            s.sessions_count,
            [[a.app_name, a.active_seconds] for a in s.top_apps],
        )
        for s in summaries
    ]
    source = _columns("rows", "uuid", "uuid", "date", "text", "bigint", "bigint", "bigint", "numeric", "int", "jsonb")
    result = await conn.execute(
        text(
            "insert into scheduler.daily_summaries (organization_id, user_id, date, timezone, total_work_seconds, "
            " active_seconds, idle_seconds, productivity_score, sessions_count, top_apps, computed_at) "
            f"select s.*, cast(:at as timestamptz) from ({source}) as s "
            "on conflict (organization_id, user_id, date) do update set "
            " timezone = excluded.timezone, total_work_seconds = excluded.total_work_seconds, "
            " active_seconds = excluded.active_seconds, idle_seconds = excluded.idle_seconds, "
            " productivity_score = excluded.productivity_score, sessions_count = excluded.sessions_count, "
            " top_apps = excluded.top_apps, computed_at = excluded.computed_at "
            "where (daily_summaries.timezone, daily_summaries.total_work_seconds, daily_summaries.active_seconds, "
            " daily_summaries.idle_seconds, daily_summaries.productivity_score, daily_summaries.sessions_count, "
            " daily_summaries.top_apps) is distinct from (excluded.timezone, excluded.total_work_seconds, "
            " excluded.active_seconds, excluded.idle_seconds, excluded.productivity_score, excluded.sessions_count, "
            " excluded.top_apps)"
        ),
        {"rows": _json_rows(rows), "at": computed_at},
    )
    return int(result.rowcount or 0)


async def insert_alerts(conn: AsyncConnection, drafts: Sequence[AlertDraft], created_at: datetime) -> int:
    """Inserts the alerts that do not exist yet and, in the same statement, their outbox
    events; an alert already raised for its session (or user) and day is left alone."""
    if not drafts:
        return 0
    rows = [
        (d.organization_id, d.user_id, d.session_id, d.type, d.alert_date, d.message, d.idle_minutes, d.work_hours)
        for d in drafts
    ]
    source = _columns("rows", "uuid", "uuid", "uuid", "text", "date", "text", "int", "numeric")
    result = await conn.execute(
        text(
            "with new as ("
            " insert into scheduler.alerts (organization_id, user_id, session_id, type, alert_date, message, "
            "  idle_minutes, work_hours, created_at) "
            f" select x.*, cast(:at as timestamptz) from ({source}) as x "
            " on conflict do nothing returning *) "
            "insert into scheduler.outbox (organization_id, event_type, payload) "
            "select organization_id, type, case when type = 'INACTIVE_ALERT' then "
            " jsonb_build_object('alertId', id, 'userId', user_id, 'sessionId', session_id, 'message', message, "
            "  'idleMinutes', idle_minutes, 'date', alert_date) "
            " else jsonb_build_object('alertId', id, 'userId', user_id, 'message', message, "
            "  'workHours', work_hours, 'date', alert_date) end "
            "from new"
        ),
        {"rows": _json_rows(rows), "at": created_at},
    )
    inserted = int(result.rowcount or 0)
    if inserted:
        await conn.execute(text("select pg_notify('scheduler_outbox', '')"))
    return inserted


async def resolve_inactive(conn: AsyncConnection, still_idle: Sequence[str], as_of: datetime, since: date) -> int:
    """Marks resolved the recent inactive alerts whose session is no longer idle."""
    result = await conn.execute(
        text(
            "update scheduler.alerts set resolved_at = :at "
            f"where type = '{INACTIVE_ALERT}' and resolved_at is null and alert_date >= :since "
            "and created_at <= :at and session_id not in "
            "(select cast(s as uuid) from json_array_elements_text(cast(:idle as json)) as s)"
        ),
        {"at": as_of, "since": since, "idle": json.dumps(list(still_idle))},
    )
    return int(result.rowcount or 0)


async def all_thresholds(conn: AsyncConnection) -> dict[str, Thresholds]:
    rows = await conn.execute(
        text("select organization_id::text, idle_minutes, overtime_hours::float8 from scheduler.alert_settings")
    )
    return {org: Thresholds(idle, hours) for org, idle, hours in rows}


async def thresholds_of(conn: AsyncConnection, organization_id: str) -> Thresholds:
    row = (
        await conn.execute(
            text(
                "select idle_minutes, overtime_hours::float8 from scheduler.alert_settings where organization_id = :org"
            ),
            {"org": organization_id},
        )
    ).first()
    return Thresholds(row[0], row[1]) if row else Thresholds()


async def save_thresholds(conn: AsyncConnection, organization_id: str, thresholds: Thresholds) -> None:
    await conn.execute(
        text(
            "insert into scheduler.alert_settings (organization_id, idle_minutes, overtime_hours) "
            "values (:org, :idle, :hours) on conflict (organization_id) do update set "
            "idle_minutes = excluded.idle_minutes, overtime_hours = excluded.overtime_hours, updated_at = now()"
        ),
        {"org": organization_id, "idle": thresholds.idle_minutes, "hours": thresholds.overtime_hours},
    )


# -- reports (tenant transactions: RLS limits every statement to the caller's organization)


async def summaries_of(conn: AsyncConnection, user_id: str, start: date, end: date) -> list[DailySummary]:
    rows = await conn.execute(
        text(
            f"select {_SUMMARY_COLUMNS} from scheduler.daily_summaries "
            "where organization_id = nullif(current_setting('app.organization_id', true), '')::uuid "
            "and user_id = :user and date between :start and :end order by date"
        ),
        {"user": user_id, "start": start, "end": end},
    )
    return [_summary(r) for r in rows]


async def stream_summaries(
    conn: AsyncConnection, start: date, end: date, user_id: str | None, batch: int
) -> AsyncIterator[list[DailySummary]]:
    user_filter = "and user_id = :user " if user_id else ""
    result = await conn.stream(
        text(
            f"select {_SUMMARY_COLUMNS} from scheduler.daily_summaries "
            "where organization_id = nullif(current_setting('app.organization_id', true), '')::uuid "
            f"and date between :start and :end {user_filter}order by date, user_id"
        ),
        {"start": start, "end": end, "user": user_id},
    )
    async for rows in result.partitions(batch):
        yield [_summary(r) for r in rows]


async def list_alerts(
    conn: AsyncConnection,
    *,
    user_id: str | None,
    alert_type: str | None,
    acknowledged: bool | None,
    start: date | None,
    end: date | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Alert]:
    clauses = ["organization_id = nullif(current_setting('app.organization_id', true), '')::uuid"]
    params: dict[str, Any] = {"limit": limit}
    if user_id:
        clauses.append("user_id = :user")
        params["user"] = user_id
    if alert_type:
        clauses.append("type = :type")
        params["type"] = alert_type
    if acknowledged is not None:
        clauses.append("acknowledged_at is not null" if acknowledged else "acknowledged_at is null")
    if start:
        clauses.append("alert_date >= :start")
        params["start"] = start
    if end:
        clauses.append("alert_date <= :end")
        params["end"] = end
    if after:
        clauses.append("(created_at, id) < (:after_at, cast(:after_id as uuid))")
        params["after_at"], params["after_id"] = after
    rows = await conn.execute(
        text(
            f"select {_ALERT_COLUMNS} from scheduler.alerts where {' and '.join(clauses)} "
            "order by created_at desc, id desc limit :limit"
        ),
        params,
    )
    return [_alert(r) for r in rows]


async def get_alert(conn: AsyncConnection, alert_id: str) -> Alert | None:
    row = (
        await conn.execute(
            text(
                f"select {_ALERT_COLUMNS} from scheduler.alerts "
                "where organization_id = nullif(current_setting('app.organization_id', true), '')::uuid "
                "and id = :id"
            ),
            {"id": alert_id},
        )
    ).first()
    return _alert(row) if row else None


async def acknowledge_alert(conn: AsyncConnection, alert_id: str, by: str) -> Alert | None:
    """Keeps the first acknowledgement: a second one changes nothing."""
    await conn.execute(
        text(
            "update scheduler.alerts set acknowledged_by = :by, acknowledged_at = now() "
            "where organization_id = nullif(current_setting('app.organization_id', true), '')::uuid "
            "and id = :id and acknowledged_at is null"
        ),
        {"id": alert_id, "by": by},
    )
    return await get_alert(conn, alert_id)


# -- job runs (maintenance engine: not a tenant table)


def _run(row: Sequence[Any]) -> JobRun:
    return JobRun(row[0], row[1], row[2], row[3], int(row[4]), row[5], int(row[6]))


_RUN_COLUMNS = "job, slot, started_at, finished_at, rows, error, attempts"


async def get_run(conn: AsyncConnection, job: str, slot: datetime) -> JobRun | None:
    row = (
        await conn.execute(
            text(f"select {_RUN_COLUMNS} from scheduler.job_runs where job = :job and slot = :slot"),
            {"job": job, "slot": slot},
        )
    ).first()
    return _run(row) if row else None


async def start_run(conn: AsyncConnection, job: str, slot: datetime, runner: str) -> JobRun:
    row = (
        await conn.execute(
            text(
                "insert into scheduler.job_runs (job, slot, started_at, attempts, runner) "
                "values (:job, :slot, clock_timestamp(), 1, :runner) "
                "on conflict (job, slot) do update set started_at = clock_timestamp(), finished_at = null, "
                " error = null, rows = 0, attempts = job_runs.attempts + 1, runner = excluded.runner "
                f"returning {_RUN_COLUMNS}"
            ),
            {"job": job, "slot": slot, "runner": runner},
        )
    ).one()
    return _run(row)


async def finish_run(conn: AsyncConnection, job: str, slot: datetime, rows: int, error: str | None) -> JobRun:
    row = (
        await conn.execute(
            text(
                "update scheduler.job_runs set finished_at = case when cast(:error as text) is null "
                " then clock_timestamp() end, rows = :rows, error = cast(:error as text) "
                "where job = :job and slot = :slot "
                f"returning {_RUN_COLUMNS}"
            ),
            {"job": job, "slot": slot, "rows": rows, "error": error},
        )
    ).one()
    return _run(row)


async def finished_slots(conn: AsyncConnection, job: str, since: datetime) -> set[datetime]:
    rows = await conn.execute(
        text("select slot from scheduler.job_runs where job = :job and slot > :since and finished_at is not null"),
        {"job": job, "since": since},
    )
    return {r[0] for r in rows}


async def latest_slot(conn: AsyncConnection, job: str) -> datetime | None:
    """The newest slot this job ever started (finished or not)."""
    value = (
        await conn.execute(text("select max(slot) from scheduler.job_runs where job = :job"), {"job": job})
    ).scalar()
    return value if isinstance(value, datetime) else None
