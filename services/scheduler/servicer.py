"""SchedulerService: unpack, call one use case, pack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

import grpc

from services.scheduler import messages, use_cases
from services.scheduler.domain import Thresholds
from services.scheduler.runner import JobRunner
from services.scheduler.use_cases import AlertFilter, Reports
from workpulse.grpc_server import Servicer
from workpulse.interceptors import principal
from workpulse.scheduler.v1 import scheduler_pb2 as pb
from workpulse.scheduler.v1 import scheduler_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]
SERVICE_NAME = "workpulse.scheduler.v1.SchedulerService"


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServiceServicer):
    def __init__(self, reports: Reports, runner: JobRunner) -> None:
        self._reports = reports
        self._runner = runner

    async def GetDailySummary(self, request: pb.GetDailySummaryRequest, context: Context) -> pb.GetDailySummaryResponse:
        found = await use_cases.daily_summary(self._reports, principal(), request.user_id, request.date)
        return pb.GetDailySummaryResponse(summary=messages.summary(found))

    async def GetUserReport(self, request: pb.GetUserReportRequest, context: Context) -> pb.GetUserReportResponse:
        r = await use_cases.user_report(
            self._reports, principal(), request.user_id, request.start_date, request.end_date
        )
        return pb.GetUserReportResponse(
            user_id=r.user_id,
            start_date=r.range.start.isoformat(),
            end_date=r.range.end.isoformat(),
            total_work_seconds=r.total_work_seconds,
            total_active_seconds=r.total_active_seconds,
            total_idle_seconds=r.total_idle_seconds,
            total_agent_silent_seconds=r.total_agent_silent_seconds,
            average_productivity_score=r.average_productivity_score,
            days_worked=r.days_worked,
            daily_summaries=[messages.summary(s) for s in r.summaries],
        )

    async def ListTodaySummaries(
        self, request: pb.ListTodaySummariesRequest, context: Context
    ) -> pb.ListTodaySummariesResponse:
        found = await use_cases.today_summaries(self._reports, principal(), request.user_ids)
        return pb.ListTodaySummariesResponse(summaries=[messages.summary(s) for s in found])

    async def ListAlerts(self, request: pb.ListAlertsRequest, context: Context) -> pb.ListAlertsResponse:
        wanted = AlertFilter(
            user_id=request.user_id,
            type=messages.ALERT_TYPE_NAMES.get(request.type, "?"),
            acknowledged=request.acknowledged if request.HasField("acknowledged") else None,
            start_date=request.start_date,
            end_date=request.end_date,
            page_size=request.page_size or 50,
            page_token=request.page_token,
        )
        found, token = await use_cases.list_alerts(self._reports, principal(), wanted)
        return pb.ListAlertsResponse(alerts=[messages.alert(a) for a in found], next_page_token=token)

    async def AcknowledgeAlert(
        self, request: pb.AcknowledgeAlertRequest, context: Context
    ) -> pb.AcknowledgeAlertResponse:
        found = await use_cases.acknowledge_alert(self._reports, principal(), request.alert_id)
        return pb.AcknowledgeAlertResponse(alert=messages.alert(found))

    async def ExportSummaries(
        self, request: pb.ExportSummariesRequest, context: Context
    ) -> AsyncIterator[pb.ExportSummariesResponse]:
        batches = use_cases.export_summaries(
            self._reports, principal(), request.start_date, request.end_date, request.user_id
        )
        async for batch in batches:
            yield pb.ExportSummariesResponse(summaries=[messages.summary(s) for s in batch])

    async def GetAlertSettings(
        self, request: pb.GetAlertSettingsRequest, context: Context
    ) -> pb.GetAlertSettingsResponse:
        caller = principal()
        found = await use_cases.alert_settings(self._reports, caller)
        return pb.GetAlertSettingsResponse(settings=_settings(caller.tenant(), found))

    async def UpdateAlertSettings(
        self, request: pb.UpdateAlertSettingsRequest, context: Context
    ) -> pb.UpdateAlertSettingsResponse:
        caller = principal()
        saved = await use_cases.update_alert_settings(
            self._reports, caller, request.idle_minutes, request.overtime_hours
        )
        return pb.UpdateAlertSettingsResponse(settings=_settings(caller.tenant(), saved))

    async def RunJob(self, request: pb.RunJobRequest, context: Context) -> pb.RunJobResponse:
        as_of = request.as_of.ToDatetime(tzinfo=UTC) if request.HasField("as_of") else None
        run = await use_cases.run_job(self._runner, request.name, as_of)
        return pb.RunJobResponse(run=messages.job_run(run))


def _settings(org: str, t: Thresholds) -> pb.AlertSettings:
    return pb.AlertSettings(organization_id=org, idle_minutes=t.idle_minutes, overtime_hours=t.overtime_hours)


def mounted(servicer: SchedulerServicer) -> Servicer:
    """The servicer as the scheduler server mounts it: RunJob crosses every tenant, so services only."""
    add = scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server
    return Servicer(SERVICE_NAME, lambda server: add(servicer, server), service_methods=("RunJob",))
