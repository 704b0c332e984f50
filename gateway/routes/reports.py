"""Reports and alerts: daily summaries, a user's range report, alerts and their
acknowledgement, alert thresholds, and a CSV export of an organization's summaries.

The scheduler service owns every rule (who sees what, date parsing, ranges); these
handlers translate query strings and pack the original's snake_case bodies.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import grpc
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import BaseRoute, Route

from gateway.callers import ADMINS, MANAGING
from gateway.errors import HTTPError
from gateway.openapi import documented
from gateway.rpc import call, http_error_of, outgoing_metadata, parse_body, peers
from gateway.wire import Body, WholeNumber, iso, query_id, uuid_field
from workpulse.scheduler.v1 import scheduler_pb2 as pb
from workpulse.scheduler.v1 import scheduler_pb2_grpc

ALERT_TYPE_NAME = {pb.ALERT_TYPE_INACTIVE: "INACTIVE_ALERT", pb.ALERT_TYPE_OVERTIME: "OVERTIME_ALERT"}
ALERT_TYPE_WIRE = {name: wire for wire, name in ALERT_TYPE_NAME.items()}
CSV_COLUMNS = (
    "date",
    "user_id",
    "timezone",
    "total_work_seconds",
    "active_seconds",
    "idle_seconds",
    "productivity_score",
    "sessions_count",
    "top_apps",
    # Last, so the original's columns keep their places.
    "agent_silent_seconds",
)


class SettingsBody(Body):
    idle_minutes: WholeNumber = Field(ge=1, le=1440, description="minutes without activity before an INACTIVE_ALERT")
    # Stored to the hundredth (numeric(4, 2)): anything below 0.01 would be stored as 0.
    overtime_hours: float = Field(
        ge=0.01, le=24, description="hours of work in a local day before an OVERTIME_ALERT, to the hundredth"
    )


def _stub(request: Request) -> scheduler_pb2_grpc.SchedulerServiceAsyncStub:
    stub: scheduler_pb2_grpc.SchedulerServiceAsyncStub = peers(request).stub(
        "scheduler", scheduler_pb2_grpc.SchedulerServiceStub
    )
    return stub


def summary_json(s: pb.DailySummary) -> dict[str, Any]:
    """The original's daily summary, field for field."""
    return {
        "user_id": s.user_id,
        "date": s.date,
        "total_work_seconds": s.total_work_seconds,
        "active_seconds": s.active_seconds,
        "idle_seconds": s.idle_seconds,
        "agent_silent_seconds": s.agent_silent_seconds,
        "productivity_score": s.productivity_score,
        "sessions_count": s.sessions_count,
    }


def alert_json(a: pb.Alert) -> dict[str, Any]:
    return {
        "id": a.id,
        "organization_id": a.organization_id,
        "user_id": a.user_id,
        "session_id": a.session_id or None,
        "type": ALERT_TYPE_NAME.get(a.type),
        "message": a.message,
        "alert_date": a.alert_date,
        "created_at": iso(a.created_at, a.HasField("created_at")),
        "resolved_at": iso(a.resolved_at, a.HasField("resolved_at")),
        "acknowledged_by": a.acknowledged_by or None,
        "acknowledged_at": iso(a.acknowledged_at, a.HasField("acknowledged_at")),
        "idle_minutes": a.idle_minutes if a.type == pb.ALERT_TYPE_INACTIVE else None,
        "work_hours": a.work_hours if a.type == pb.ALERT_TYPE_OVERTIME else None,
    }


@documented(
    "One user's daily summary; ?date=YYYY-MM-DD&userId= (employees: only themselves)",
    response="DailySummary",
    query={
        "date": "date: the local date (YYYY-MM-DD); today in the user's zone when absent",
        "userId": "uuid: whose summary; the caller's when absent",
    },
    errors=(400, 401, 403, 404, 503),
)
async def daily(request: Request) -> JSONResponse:
    reply = await call(
        request,
        _stub(request).GetDailySummary,
        pb.GetDailySummaryRequest(user_id=query_id(request, "userId"), date=request.query_params.get("date", "")),
    )
    return JSONResponse(summary_json(reply.summary))


@documented(
    "Each member's today so far, computed live; ?userIds=a,b (employees: only themselves)",
    response="TodaySummaries",
    query={"userIds": "string: comma-separated user ids, at most 500; every member you may see when absent"},
    errors=(400, 401, 403, 503),
)
async def today(request: Request) -> JSONResponse:
    raw = request.query_params.get("userIds", "")
    named = [part.strip() for part in raw.split(",") if part.strip()]
    reply = await call(request, _stub(request).ListTodaySummaries, pb.ListTodaySummariesRequest(user_ids=named))
    return JSONResponse({"summaries": [summary_json(s) for s in reply.summaries]})


@documented(
    "One user's summaries over ?startDate=&endDate= (inclusive, at most 366 days)",
    response="UserReport",
    query={
        "startDate": "date!: first day (YYYY-MM-DD)",
        "endDate": "date!: last day, inclusive; at most 366 days after startDate",
    },
    errors=(400, 401, 403, 404, 503),
)
async def user_report(request: Request) -> JSONResponse:
    q = request.query_params
    reply = await call(
        request,
        _stub(request).GetUserReport,
        pb.GetUserReportRequest(
            user_id=uuid_field(request.path_params["user_id"], "userId"),
            start_date=q.get("startDate", ""),
            end_date=q.get("endDate", ""),
        ),
    )
    return JSONResponse(
        {
            "user_id": reply.user_id,
            "start_date": reply.start_date,
            "end_date": reply.end_date,
            "total_work_seconds": reply.total_work_seconds,
            "total_active_seconds": reply.total_active_seconds,
            "total_idle_seconds": reply.total_idle_seconds,
            "total_agent_silent_seconds": reply.total_agent_silent_seconds,
            "average_productivity_score": reply.average_productivity_score,
            "days_worked": reply.days_worked,
            "daily_summaries": [summary_json(s) for s in reply.daily_summaries],
        }
    )


def _alert_filter(request: Request) -> pb.ListAlertsRequest:
    q = request.query_params
    kind = q.get("type", "")
    if kind and kind not in ALERT_TYPE_WIRE:
        raise HTTPError(400, "type: must be INACTIVE_ALERT or OVERTIME_ALERT")
    acknowledged = q.get("acknowledged")
    if acknowledged not in (None, "", "true", "false"):
        raise HTTPError(400, "acknowledged: must be true or false")
    size = q.get("pageSize") or q.get("page_size") or "0"
    if not (size.isascii() and size.isdigit()) or len(size) > 4:
        raise HTTPError(400, "pageSize: must be a whole number up to 500")
    message = pb.ListAlertsRequest(
        user_id=query_id(request, "userId"),
        type=ALERT_TYPE_WIRE.get(kind, pb.ALERT_TYPE_UNSPECIFIED),
        start_date=q.get("startDate", ""),
        end_date=q.get("endDate", ""),
        page_size=int(size),
        page_token=q.get("pageToken") or q.get("page_token") or "",
    )
    if acknowledged:
        message.acknowledged = acknowledged == "true"
    return message


@documented(
    "Alerts, newest first; ?userId=&type=&acknowledged=&startDate=&endDate=&pageSize=&pageToken=",
    response="AlertPage",
    query={
        "userId": "uuid: one user's alerts (employees: only their own)",
        "type": "enum INACTIVE_ALERT|OVERTIME_ALERT: one kind of alert",
        "acknowledged": "boolean: only acknowledged (true) or unacknowledged (false) alerts",
        "startDate": "date: alerts of this local date or later",
        "endDate": "date: alerts of this local date or earlier",
        "pageSize": "int 0..500: alerts per page; 50 when 0 or absent",
        "page_size": "int 0..500: alias of pageSize",
        "pageToken": "string: next_page_token of the previous page",
        "page_token": "string: alias of pageToken",
    },
    errors=(400, 401, 403, 503),
)
async def list_alerts(request: Request) -> JSONResponse:
    reply = await call(request, _stub(request).ListAlerts, _alert_filter(request))
    return JSONResponse(
        {"alerts": [alert_json(a) for a in reply.alerts], "next_page_token": reply.next_page_token or None}
    )


@documented(
    "Acknowledge an alert (managers and admins; employees their own); idempotent",
    response="Alert",
    errors=(400, 401, 403, 404, 503),
)
async def acknowledge(request: Request) -> JSONResponse:
    alert_id = uuid_field(request.path_params["alert_id"], "id")
    reply = await call(request, _stub(request).AcknowledgeAlert, pb.AcknowledgeAlertRequest(alert_id=alert_id))
    return JSONResponse(alert_json(reply.alert))


def _settings_json(s: pb.AlertSettings) -> dict[str, Any]:
    return {"organization_id": s.organization_id, "idle_minutes": s.idle_minutes, "overtime_hours": s.overtime_hours}


@documented("The organization's alert thresholds", response="AlertSettings", errors=(401, 503))
async def get_settings(request: Request) -> JSONResponse:
    reply = await call(request, _stub(request).GetAlertSettings, pb.GetAlertSettingsRequest())
    return JSONResponse(_settings_json(reply.settings))


@documented(
    "Change the organization's alert thresholds (admins)",
    roles=ADMINS,
    body=SettingsBody,
    response="AlertSettings",
    errors=(400, 401, 403, 413, 415, 503),
)
async def put_settings(request: Request) -> JSONResponse:
    body = await parse_body(request, SettingsBody)
    reply = await call(
        request,
        _stub(request).UpdateAlertSettings,
        pb.UpdateAlertSettingsRequest(idle_minutes=body.idle_minutes, overtime_hours=body.overtime_hours),
    )
    return JSONResponse(_settings_json(reply.settings))


# A cell starting with one of these is a formula in Excel, LibreOffice and Sheets
# (OWASP "CSV Injection"); app names come from employees' machines.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(text: str) -> str:
    """``text`` as a spreadsheet shows it and never evaluates: a leading apostrophe."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _csv_rows(summaries: Any) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for s in summaries:
        apps = ";".join(f"{a.app_name}={a.active_seconds}" for a in s.top_apps)
        score = f"{s.productivity_score:.2f}"
        # Every text cell; the numbers are the server's own.
        row = [inert(s.date), inert(s.user_id), inert(s.timezone), s.total_work_seconds, s.active_seconds]
        writer.writerow([*row, s.idle_seconds, score, s.sessions_count, inert(apps), s.agent_silent_seconds])
    return out.getvalue()


@documented(
    "The organization's daily summaries as CSV; ?startDate=&endDate=&userId= (managers and admins)",
    roles=MANAGING,
    response=str,
    media_type="text/csv",
    query={
        "startDate": "date!: first day (YYYY-MM-DD)",
        "endDate": "date!: last day, inclusive; at most 366 days after startDate",
        "userId": "uuid: one user's summaries; everyone's when absent",
    },
    headers={"Content-Disposition": 'attachment; filename="summaries_<startDate>_<endDate>.csv"'},
    errors=(400, 401, 403, 404, 503),
)
async def export_csv(request: Request) -> StreamingResponse:
    q = request.query_params
    message = pb.ExportSummariesRequest(
        start_date=q.get("startDate", ""), end_date=q.get("endDate", ""), user_id=query_id(request, "userId")
    )
    stream = _stub(request).ExportSummaries(
        message, metadata=outgoing_metadata(request), timeout=peers(request).timeout
    )
    # The first message (or error) arrives before the response starts, so bad input and
    # forbidden callers get their 4xx instead of a truncated 200.
    try:
        first = await stream.read()
    except grpc.aio.AioRpcError as exc:
        raise http_error_of(exc) from None

    async def body() -> AsyncIterator[str]:
        yield ",".join(CSV_COLUMNS) + "\r\n"
        if not isinstance(first, pb.ExportSummariesResponse):
            return
        yield _csv_rows(first.summaries)
        async for more in stream:
            yield _csv_rows(more.summaries)

    name = f"summaries_{message.start_date}_{message.end_date}.csv"
    return StreamingResponse(
        body(), media_type="text/csv; charset=utf-8", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


routes: list[BaseRoute] = [
    Route("/reports/daily", daily, methods=["GET"]),
    Route("/reports/today", today, methods=["GET"]),
    Route("/reports/user/{user_id}", user_report, methods=["GET"]),
    Route("/reports/export.csv", export_csv, methods=["GET"]),
    Route("/alerts", list_alerts, methods=["GET"]),
    Route("/alerts/settings", get_settings, methods=["GET"]),
    Route("/alerts/settings", put_settings, methods=["PUT"]),
    Route("/alerts/{alert_id}/acknowledge", acknowledge, methods=["POST"]),
]
